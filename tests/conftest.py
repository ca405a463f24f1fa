"""Shared fixtures: a tiny valid dataset in the raw contract, written as CSV files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

REAL_CONTRACT = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "contract"

# 2025-03-03 .. 2025-03-07 are XNYS sessions (Mon-Fri, no holiday).
TINY_US = {
    "universe": "ticker,name,sector\nAAA,Alpha Corp,Tech\nBBB,Beta Inc,Energy\n",
    "prices": (
        "ticker,date,open,high,low,close,volume\n"
        "AAA,2025-03-03,10.0,10.5,9.8,10.2,1000\n"
        "AAA,2025-03-04,10.2,10.9,10.1,10.8,1200\n"
        "AAA,2025-03-05,10.8,11.0,10.4,10.5,900\n"
        "BBB,2025-03-03,50.0,51.0,49.0,50.5,300\n"
        "BBB,2025-03-04,50.5,50.9,48.7,49.0,350\n"
        "BBB,2025-03-05,49.0,49.5,48.0,48.2,310\n"
    ),
    "benchmark": "date,close\n2025-03-03,5000\n2025-03-04,5010.5\n2025-03-05,4990.25\n",
    "news": (
        "news_id,ticker,published_at,headline,body,source\n"
        "n1,AAA,2025-03-02T20:00:00-05:00,Alpha wins a contract,,Wire\n"
        "n2,BBB,2025-03-04T09:45:00-05:00,Beta cuts guidance,Details,Wire\n"
        "n2,AAA,2025-03-04T09:45:00-05:00,Beta cuts guidance,Details,Wire\n"
    ),
    "reports": (
        "report_id,ticker,fiscal_year,period_end,published_at,revenue,net_income,total_assets,"
        "total_equity,eps,operating_cash_flow,summary\n"
        "r1,AAA,2024,2024-12-31,2025-02-20T16:05:00-05:00,100,10,200,80,1.0,12,first\n"
        "r2,AAA,2024,2024-12-31,2025-03-04T17:00:00-05:00,100,8,200,78,0.8,12,restated\n"
        "r3,BBB,2024,2024-12-31,2025-02-27T07:30:00-05:00,500,,900,400,,40,\n"
    ),
}


def write_dataset(root: Path, tables: dict[str, str], market: str = "us") -> Path:
    folder = root / market
    folder.mkdir(parents=True, exist_ok=True)
    for table, text in tables.items():
        (folder / f"{table}.csv").write_text(text, encoding="utf-8")
    return root


def replace_in_table(table: str, old: str, new: str) -> Callable[[Path], None]:
    """An edit of a market folder: the first `old` in its CSV `table` replaced by `new`."""

    def apply(folder: Path) -> None:
        path = folder / f"{table}.csv"
        text = path.read_text(encoding="utf-8")
        assert old in text, f"fixture has no {old!r} in {table}"
        path.write_text(text.replace(old, new, 1), encoding="utf-8")

    return apply


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    return write_dataset(tmp_path / "dataset", TINY_US)


@pytest.fixture(scope="session")
def built_sample(tmp_path_factory: pytest.TempPathFactory):
    """The sample market ingested and built once per session (read-only: copy before editing)."""
    import os

    from dagster_project.cli import main
    from ingest.layout import DATA_DIR_ENV, WAREHOUSE_ENV, DataLayout

    saved = {name: os.environ.get(name) for name in (DATA_DIR_ENV, WAREHOUSE_ENV)}
    data_dir = tmp_path_factory.mktemp("sample") / "data"
    assert main(["--data-dir", str(data_dir), "ingest", "--source", "sample"]) == 0
    assert main(["--data-dir", str(data_dir), "build"]) == 0
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    return DataLayout(data_dir)


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory):
    """`strat-llm demo --out DIR` once per session: (the layout it leaves, what it printed)."""
    import contextlib
    import io
    import os

    from dagster_project.cli import main
    from ingest.layout import DATA_DIR_ENV, WAREHOUSE_ENV, DataLayout

    saved = {name: os.environ.get(name) for name in (DATA_DIR_ENV, WAREHOUSE_ENV)}
    out = tmp_path_factory.mktemp("demo") / "out"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["demo", "--out", str(out)]) == 0
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    return DataLayout(out), printed.getvalue()


@pytest.fixture
def sample_copy(built_sample, tmp_path: Path):
    """A private copy of the built sample that a test may tamper with."""
    import shutil

    from ingest.layout import DataLayout

    target = tmp_path / "data"
    shutil.copytree(built_sample.data_dir, target)
    return DataLayout(target)
