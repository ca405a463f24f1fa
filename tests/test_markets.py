"""Markets are independent: a dataset with one market builds, gates, infers and backtests it
alone, and a market ingested later is added beside the others without touching them."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import duckdb
import pytest

from dagster_project.cli import main
from ingest.layout import DATA_DIR_ENV, WAREHOUSE_ENV, DataLayout
from ingest.load import ingested_markets
from ingest.validation import ContractError

# Two weeks of XNYS sessions: enough for decisions on several dates and closed round trips.
US_START, US_END = date(2025, 3, 3), date(2025, 3, 14)
MENTIONS_CN = re.compile(r"\bcn\b", re.IGNORECASE)


@pytest.fixture(autouse=True)
def _restore_locations(monkeypatch: pytest.MonkeyPatch) -> None:
    # `main` exports the data directory to the environment; undo it after each test.
    for name in (DATA_DIR_ENV, WAREHOUSE_ENV):
        monkeypatch.setenv(name, "unused")
        monkeypatch.delenv(name)


def _us_only_dataset(root: Path) -> Path:
    """A bring-your-own-data folder with only us/: the synthetic us tables as Parquet files."""
    from ingest.sample import generate_sample_market

    folder = root / "us"
    folder.mkdir(parents=True)
    for table, frame in generate_sample_market("us", start=US_START, end=US_END).items():
        frame.to_parquet(folder / f"{table}.parquet", index=False)
    return root


def _fake_ingest(layout: DataLayout, *markets: str) -> None:
    for market in markets:
        layout.ingest_manifest(market).parent.mkdir(parents=True, exist_ok=True)
        layout.ingest_manifest(market).write_text("{}")


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_ingested_markets_are_those_with_a_manifest(tmp_path: Path):
    layout = DataLayout(tmp_path)
    with pytest.raises(ContractError, match="run `strat-llm ingest` first"):
        ingested_markets(layout)
    _fake_ingest(layout, "cn")
    (tmp_path / "raw" / "us").mkdir()  # a folder without a manifest is no ingest
    assert ingested_markets(layout) == ["cn"]
    assert ingested_markets(layout, ["cn", "cn"]) == ["cn"]
    _fake_ingest(layout, "us")
    assert ingested_markets(layout) == ["us", "cn"]


def test_naming_a_market_not_ingested_is_an_error_with_the_fix(tmp_path: Path, capsys):
    _fake_ingest(DataLayout(tmp_path), "us")
    DataLayout(tmp_path).warehouse.touch()  # past the "no warehouse" check, to the market's
    for argv in (
        ["infer", "--arm", "reference__free", "--start", "2025-03-03", "--end", "2025-03-04"],
        ["backtest"],
    ):
        code, printed = _cli(capsys, "--data-dir", str(tmp_path), *argv, "--market", "cn")
        assert code == 1
        assert "market cn was not ingested" in printed
        assert "strat-llm ingest" in printed and "--market cn" in printed


def test_ingesting_cn_later_adds_it_without_touching_us(tmp_path: Path, capsys):
    data = tmp_path / "data"
    code, _ = _cli(
        capsys, "--data-dir", str(data), "ingest", "--source", "files",
        "--path", str(_us_only_dataset(tmp_path / "dataset")),
    )  # fmt: skip
    assert code == 0
    layout = DataLayout(data)
    assert ingested_markets(layout) == ["us"]
    us_files = sorted(layout.raw_dir("us").iterdir())
    before = {path: path.read_bytes() for path in us_files}
    code, _ = _cli(
        capsys, "--data-dir", str(data), "ingest", "--source", "sample", "--market", "cn",
        "--start", "2025-03-03", "--end", "2025-03-07",
    )  # fmt: skip
    assert code == 0
    assert ingested_markets(layout) == ["us", "cn"]
    assert sorted(layout.raw_dir("us").iterdir()) == us_files
    assert {path: path.read_bytes() for path in us_files} == before


def test_a_us_only_dataset_runs_end_to_end(tmp_path: Path, capsys):
    data = str(tmp_path / "data")
    dataset = str(_us_only_dataset(tmp_path / "dataset"))
    printed = []
    for argv in (
        ["ingest", "--source", "files", "--path", dataset],
        ["build"],
        ["check"],
        ["infer", "--arm", "reference__free", "--start", "2025-03-04", "--end", "2025-03-14"],
        ["backtest"],
    ):
        code, output = _cli(capsys, "--data-dir", data, *argv)
        assert code == 0, f"{argv[0]} failed:\n{output}"
        assert not MENTIONS_CN.search(output), f"{argv[0]} mentions cn:\n{output}"
        printed.append(output)
    assert "gate FAILED" not in "".join(printed)

    layout = DataLayout(Path(data))
    assert not layout.raw_dir("cn").exists()
    assert not list(layout.landing_dir.glob("*/*/market=cn"))
    with duckdb.connect(str(layout.warehouse), read_only=True) as connection:
        for table in ("pit_snapshots", "backtest_daily", "backtest_metrics", "regime_metrics"):
            markets = connection.execute(f"select distinct market from {table}").fetchall()
            assert markets == [("us",)], table
        arms = {arm for (arm,) in connection.execute("select arm from backtest_metrics").fetchall()}
    assert {"reference__free", "buy_and_hold"} <= arms


def test_raw_contract_checks_pass_a_market_never_ingested(tiny_dataset: Path, tmp_path: Path):
    import dagster as dg

    from dagster_project.checks import RAW_CHECK_NAME, gate_check_selection, raw_contract_checks
    from dagster_project.definitions import defs
    from dagster_project.ingest_assets import raw_asset_key, raw_tables
    from dagster_project.resources import DataDirResource
    from ingest.load import ingest_files

    layout = DataLayout(tmp_path / "data")
    ingest_files(layout, tiny_dataset)
    layout.raw_file("us", "news").unlink()  # an ingested market with a file gone still fails

    def evaluations() -> dict[str, dg.AssetCheckEvaluation]:
        result = dg.materialize(
            [raw_tables, raw_contract_checks],
            selection=dg.AssetSelection.checks(raw_contract_checks),
            resources={"data_dir": DataDirResource(data_dir=str(layout.data_dir))},
            raise_on_error=False,
        )
        return {e.asset_key.to_user_string(): e for e in result.get_asset_check_evaluations()}

    found = evaluations()
    assert {key for key, e in found.items() if not e.passed} == {"raw/us/news"}
    assert "not_ingested" in found["raw/cn/prices"].metadata
    assert "not_ingested" not in found["raw/us/prices"].metadata

    selected = gate_check_selection(["us"]).resolve_checks(defs.resolve_asset_graph())
    raw_checks = {key.asset_key for key in selected if key.name == RAW_CHECK_NAME}
    assert raw_checks and all(key.path[1] == "us" for key in raw_checks)
    assert raw_asset_key("us", "prices") in raw_checks
