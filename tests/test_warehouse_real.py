"""The real sample (../shared) through ingest and the warehouse: real quirks, PIT holds."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from dagster_project.cli import main
from ingest.layout import DataLayout
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


def test_catl_bonus_shares_and_dividend_are_a_total_return(real_warehouse: Path, tmp_path):
    """CATL (300750) went ex 8 bonus shares per 10 and 2.52 CNY on 2023-04-26 (its close fell
    from 385.90 to 224.50): buy-and-hold across it has no -40 % day, and the position's return
    that day is (1.8 x close_0426 + 2.52) / close_0425 - 1; fees are paid on the entry only."""
    data_dir = tmp_path / "data"
    shutil.copytree(real_warehouse.parent, data_dir)
    layout = DataLayout(data_dir)
    events = pd.read_parquet(layout.raw_file("cn", "corporate_actions"))  # as the ingest loaded it
    assert events[["ticker", "split_ratio", "cash_dividend"]].values.tolist() == [
        ["300750", 1.8, 2.52]
    ]
    args = ["--data-dir", str(data_dir), "backtest", "--market", "cn"]
    args += ["--baseline", "buy_and_hold", "--start", "2023-04-20", "--end", "2023-05-10"]
    assert main(args) == 0
    with duckdb.connect(str(layout.warehouse), read_only=True) as connection:
        rows = connection.execute(
            "select date, shares, position_value, cash, fees, daily_return, risk_free_return "
            "from backtest_daily where arm = 'buy_and_hold' and ticker = '300750' order by date"
        ).df()
    rows = rows.set_index(pd.to_datetime(rows["date"]))
    before, on = rows.loc["2023-04-25"], rows.loc["2023-04-26"]
    assert on["shares"] == before["shares"] * 1.8
    assert rows["daily_return"].min() > -0.1
    hand = (1.8 * 224.5 + 2.52) / 385.9 - 1
    dividend = before["shares"] * 2.52
    assert (on["position_value"] + dividend) / before["position_value"] - 1 == pytest.approx(
        hand, rel=1e-12
    )
    assert on["cash"] == pytest.approx(
        before["cash"] * (1 + on["risk_free_return"]) + dividend, rel=1e-12
    )
    # the sleeve: the stock's return on its invested share, the cash's rf on the rest
    equity_before = before["position_value"] + before["cash"]
    expected = (
        before["position_value"] * hand + before["cash"] * on["risk_free_return"]
    ) / equity_before
    assert on["daily_return"] == pytest.approx(expected, rel=1e-9)
    assert on["fees"] == 0 and (rows["fees"].iloc[1:] == 0).all() and rows["fees"].iloc[0] > 0
