"""The real sample (../shared) through ingest and the warehouse: real quirks, PIT holds."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import pytest

from dagster_project.cli import main
from tests.conftest import REAL_CONTRACT
from tests.test_warehouse import PIT_RULES

pytestmark = pytest.mark.skipif(
    not REAL_CONTRACT.is_dir(),
    reason=f"real sample not present at {REAL_CONTRACT} (../shared is outside the repo)",
)


@pytest.fixture(scope="module")
def real_warehouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("real") / "data"
    common = ["--data-dir", str(data_dir)]
    ingest = [
        "ingest",
        "--source",
        "files",
        "--path",
        str(REAL_CONTRACT),
        "--allow-missing-sessions",
    ]
    assert main([*common, *ingest]) == 0
    assert main([*common, "build", "--start", "2024-12-16", "--end", "2025-08-01"]) == 0
    return data_dir / "warehouse.duckdb"


def _one(warehouse: Path, sql: str, *params: object) -> tuple:
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        return connection.execute(sql, list(params)).fetchall()[0]


def test_real_snapshots_hold_every_pit_rule(real_warehouse: Path):
    for rule, condition in PIT_RULES.items():
        (broken,) = _one(real_warehouse, f"select count(*) from pit_snapshots where {condition}")
        assert broken == 0, rule


def test_10k_filed_after_the_close_is_visible_the_next_session(real_warehouse: Path):
    query = (
        "select report.report_id from pit_snapshots"
        " where market = 'us' and ticker = 'MSFT' and decision_date = ?"
    )
    # MSFT's FY2025 10-K was accepted 2025-07-30 20:11 UTC (16:11 New York, after the close).
    assert _one(real_warehouse, query, date(2025, 7, 30)) == ("MSFT-FY2024-2024-07-30",)
    assert _one(real_warehouse, query, date(2025, 7, 31)) == ("MSFT-FY2025-2025-07-30",)


def test_missing_source_sessions_leave_the_last_known_price(real_warehouse: Path):
    # 2025-01-09 was an exchange closure and 2025-01-10 is missing from the source: the
    # decision for 2025-01-13 sees 2025-01-08 as its latest bar.
    (latest,) = _one(
        real_warehouse,
        "select max_price_date from pit_snapshots"
        " where market = 'us' and ticker = 'AAPL' and decision_date = '2025-01-13'",
    )
    assert latest == date(2025, 1, 8)


def test_real_news_is_shown_and_cn_has_none(real_warehouse: Path):
    (with_news,) = _one(
        real_warehouse, "select count(*) from pit_snapshots where market = 'us' and len(news) > 0"
    )
    assert with_news > 1000
    cn = _one(
        real_warehouse,
        "select count(*), sum(len(news)), count(report) from pit_snapshots where market = 'cn'",
    )
    assert cn[0] > 300 and cn[1] == 0 and cn[2] == 0
