"""The files source: a bad-input corpus with one clear message each, policies, idempotency."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from ingest.contract import TABLE_NAMES
from ingest.layout import DataLayout
from ingest.load import IngestError, format_summary, ingest_files, read_manifest
from ingest.validation import ContractError
from tests.conftest import TINY_US, replace_in_table, write_dataset

_replace = replace_in_table


def _append(table: str, line: str) -> Callable[[Path], None]:
    def mutate(folder: Path) -> None:
        with (folder / f"{table}.csv").open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")

    return mutate


def _write_bytes(table: str, data: bytes) -> Callable[[Path], None]:
    def mutate(folder: Path) -> None:
        (folder / f"{table}.csv").write_bytes(data)

    return mutate


def _remove(table: str) -> Callable[[Path], None]:
    return lambda folder: (folder / f"{table}.csv").unlink()


def _also_parquet(table: str) -> Callable[[Path], None]:
    def mutate(folder: Path) -> None:
        pd.read_csv(folder / f"{table}.csv", dtype=str).to_parquet(folder / f"{table}.parquet")

    return mutate


def _naive_parquet_news(folder: Path) -> None:
    frame = pd.read_csv(folder / "news.csv", dtype=str)
    frame["published_at"] = pd.to_datetime(frame["published_at"], utc=True).dt.tz_localize(None)
    (folder / "news.csv").unlink()
    frame.to_parquet(folder / "news.parquet")


# Row problems: the message names file, data row (1-based, header excluded) and reason.
ROW_CASES = {
    "naive timestamp": (
        _replace("news", "2025-03-02T20:00:00-05:00", "2025-03-02 20:00:00"),
        "us/news.csv row 1: published_at '2025-03-02 20:00:00' has no UTC offset",
    ),
    "unknown ticker": (
        _replace("prices", "BBB,2025-03-05", "ZZZ,2025-03-05"),
        "us/prices.csv row 6: ticker 'ZZZ' is not in us/universe.csv",
    ),
    "duplicate key": (
        _append("prices", "AAA,2025-03-05,10.8,11.0,10.4,10.6,950"),
        "us/prices.csv row 3: duplicate key (ticker=AAA, date=2025-03-05) also at row(s) 7",
    ),
    "high below low": (
        _replace("prices", "10.2,10.9,10.1,10.8", "10.2,9.0,10.1,10.8"),
        "us/prices.csv row 2: high 9.0 < low 10.1",
    ),
    "negative price": (
        _replace("prices", "49.5,48.0,48.2", "49.5,48.0,-48.2"),
        "us/prices.csv row 6: close -48.2 is not > 0",
    ),
    "open outside the day's range": (
        _replace("prices", "AAA,2025-03-03,10.0,", "AAA,2025-03-03,12.0,"),
        "us/prices.csv row 1: open 12.0 is outside low..high 9.8..10.5",
    ),
    "unparseable date": (
        _replace("prices", "AAA,2025-03-04", "AAA,2025-13-45"),
        "us/prices.csv row 2: date '2025-13-45' is not a date as YYYY-MM-DD",
    ),
    "date not a trading session": (
        _replace("benchmark", "2025-03-05,", "2025-03-08,"),
        "us/benchmark.csv row 3: date 2025-03-08 is not a XNYS trading session",
    ),
    "unparseable timestamp": (
        _replace("news", "2025-03-02T20:00:00-05:00", "2025-03-02T25:61:00-05:00"),
        "us/news.csv row 1: published_at '2025-03-02T25:61:00-05:00' is not an ISO 8601",
    ),
    "text in a number": (
        _replace("prices", ",1200\n", ",lots\n"),
        "us/prices.csv row 2: volume 'lots' is not a number",
    ),
    "empty required value": (
        _replace("news", "Alpha wins a contract", ""),
        "us/news.csv row 1: headline is empty",
    ),
    "fractional fiscal year": (
        _replace("reports", "r3,BBB,2024,", "r3,BBB,2024.5,"),
        "us/reports.csv row 3: fiscal_year '2024.5' is not a whole number",
    ),
    "report published before its period ended": (
        _replace("reports", "2025-02-27T07:30:00-05:00", "2024-12-30T07:30:00-05:00"),
        "us/reports.csv row 3: published_at 2024-12-30 12:30:00+00:00 is not after period_end",
    ),
    "restatement published at the same time": (
        _replace("reports", "2025-03-04T17:00:00-05:00", "2025-02-20T16:05:00-05:00"),
        "a restatement must have a later published_at",
    ),
    "restatement of a different period": (
        _replace("reports", "r2,AAA,2024,2024-12-31", "r2,AAA,2024,2024-09-30"),
        "AAA fiscal_year 2024 has different period_end values (2024-09-30, 2024-12-31)",
    ),
    "naive timestamps in parquet": (
        _naive_parquet_news,
        "us/news.parquet row 1: published_at",
    ),
    "duplicate news item for one ticker": (
        _append("news", "n1,AAA,2025-03-02T20:00:00-05:00,Alpha again,,Wire"),
        "us/news.csv row 4: duplicate key (news_id=n1, ticker=AAA) also at row(s) 1",
    ),
}

# File problems: nothing can be loaded from the file, whatever the policy.
FILE_CASES = {
    "missing column": (
        _write_bytes("prices", b"ticker,date,open,low,close,volume\nAAA,2025-03-03,1,1,1,1\n"),
        "us/prices.csv: missing required column(s) high",
    ),
    "empty file": (_write_bytes("news", b""), "us/news.csv: file is empty"),
    "wrong encoding": (
        _write_bytes("universe", "ticker,name\nAAA,Société Générale\n".encode("latin-1")),
        "us/universe.csv: not UTF-8 text (byte 0xe9",
    ),
    "missing file": (_remove("reports"), "no reports.csv or reports.parquet"),
    "two formats of one table": (
        _also_parquet("benchmark"),
        "both benchmark.csv and benchmark.parquet",
    ),
    "malformed csv": (
        _append("benchmark", "2025-03-06,1,2,3"),
        "us/benchmark.csv: not a readable CSV file",
    ),
    "duplicate column": (
        _write_bytes("benchmark", b"date,close,close\n2025-03-03,1,2\n"),
        "appear more than once",
    ),
}


def _layout(tmp_path: Path) -> DataLayout:
    return DataLayout(tmp_path / "data")


@pytest.mark.parametrize("case", sorted(ROW_CASES))
def test_bad_row_is_named_and_nothing_is_written(tiny_dataset: Path, tmp_path: Path, case: str):
    mutate, expected = ROW_CASES[case]
    mutate(tiny_dataset / "us")
    layout = _layout(tmp_path)
    with pytest.raises(IngestError) as error:
        ingest_files(layout, tiny_dataset)
    assert expected in str(error.value)
    assert "--on-bad-rows quarantine" in str(error.value)
    assert not (layout.data_dir / "raw").exists()


@pytest.mark.parametrize("case", sorted(FILE_CASES))
def test_bad_file_stops_with_its_name(tiny_dataset: Path, tmp_path: Path, case: str):
    mutate, expected = FILE_CASES[case]
    mutate(tiny_dataset / "us")
    layout = _layout(tmp_path)
    for policy in ("fail", "quarantine"):
        with pytest.raises(ContractError) as error:
            ingest_files(layout, tiny_dataset, on_bad_rows=policy)
        assert expected in str(error.value)
    assert not (layout.data_dir / "raw").exists()


def test_clean_dataset_loads_typed_and_in_utc(tiny_dataset: Path, tmp_path: Path):
    layout = _layout(tmp_path)
    [summary] = ingest_files(layout, tiny_dataset)
    assert {table: info.rows for table, info in summary.tables.items()} == {
        "universe": 2,
        "prices": 6,
        "benchmark": 3,
        "news": 3,
        "reports": 3,
        "corporate_actions": 0,  # optional files the dataset lacks: empty tables
        "risk_free": 0,
    }
    news = pq.read_table(layout.raw_file("us", "news"))
    assert str(news.schema.field("published_at").type) == "timestamp[us, tz=UTC]"
    first = news.to_pandas().sort_values("news_id").iloc[0]
    assert first["published_at"] == pd.Timestamp("2025-03-03T01:00:00Z")
    assert first["market"] == "us"
    reports = pq.read_table(layout.raw_file("us", "reports")).to_pandas()
    assert reports.loc[reports.report_id == "r3", "net_income"].isna().all()
    prices = pq.read_table(layout.raw_file("us", "prices")).to_pandas()
    assert (prices["adj_factor"] == 1.0).all()


def test_quarantine_loses_no_row(tiny_dataset: Path, tmp_path: Path):
    folder = tiny_dataset / "us"
    for case in ("high below low", "unknown ticker", "duplicate key", "naive timestamp"):
        ROW_CASES[case][0](folder)
    layout = _layout(tmp_path)
    files = {table: folder / f"{table}.csv" for table in TABLE_NAMES}
    rows_in = {
        table: len(pd.read_csv(path, dtype=str)) if path.exists() else 0  # optional: absent
        for table, path in files.items()
    }
    [summary] = ingest_files(layout, tiny_dataset, on_bad_rows="quarantine")
    for table in TABLE_NAMES:
        loaded = pq.read_table(layout.raw_file("us", table)).num_rows
        quarantine = layout.quarantine_file("us", table)
        rejected = pd.read_parquet(quarantine) if quarantine.exists() else pd.DataFrame()
        assert loaded + len(rejected) == rows_in[table], table
        assert summary.tables[table].quarantined == len(rejected)
    rejected = pd.read_parquet(layout.quarantine_file("us", "prices"))
    assert set(rejected["_row"]) == {2, 3, 6, 7}
    assert rejected["_reason"].str.len().gt(0).all()
    assert rejected["_source"].eq("us/prices.csv").all()
    # The original cells are kept so a rejected row can be fixed and re-ingested.
    assert "ZZZ" in set(rejected["ticker"])
    assert read_manifest(layout, "us")["quarantined"]["prices"] == 4


def test_reingest_is_idempotent_and_clears_stale_quarantine(tiny_dataset: Path, tmp_path: Path):
    layout = _layout(tmp_path)
    ROW_CASES["unknown ticker"][0](tiny_dataset / "us")
    ingest_files(layout, tiny_dataset, on_bad_rows="quarantine")
    assert layout.quarantine_file("us", "prices").exists()
    write_dataset(tiny_dataset.parent / "dataset", TINY_US)
    ingest_files(layout, tiny_dataset)
    first = {table: layout.raw_file("us", table).read_bytes() for table in TABLE_NAMES}
    manifest = layout.ingest_manifest("us").read_bytes()
    ingest_files(layout, tiny_dataset)
    assert {table: layout.raw_file("us", table).read_bytes() for table in TABLE_NAMES} == first
    assert layout.ingest_manifest("us").read_bytes() == manifest
    assert not layout.quarantine_file("us", "prices").exists()


def test_failed_ingest_keeps_previous_raw_data(tiny_dataset: Path, tmp_path: Path):
    layout = _layout(tmp_path)
    ingest_files(layout, tiny_dataset)
    before = layout.raw_file("us", "prices").read_bytes()
    ROW_CASES["negative price"][0](tiny_dataset / "us")
    with pytest.raises(IngestError):
        ingest_files(layout, tiny_dataset)
    assert layout.raw_file("us", "prices").read_bytes() == before


def test_missing_sessions_are_listed_and_can_be_accepted(tiny_dataset: Path, tmp_path: Path):
    _replace("prices", "AAA,2025-03-04,10.2,10.9,10.1,10.8,1200\n", "")(tiny_dataset / "us")
    layout = _layout(tmp_path)
    with pytest.raises(IngestError) as error:
        ingest_files(layout, tiny_dataset)
    assert "us: 1 series (AAA) miss 2025-03-04" in str(error.value)
    assert "--allow-missing-sessions" in str(error.value)
    ingest_files(layout, tiny_dataset, allow_missing_sessions=True)
    assert read_manifest(layout, "us")["missing_sessions_accepted"] == {"AAA": ["2025-03-04"]}


def test_extra_columns_are_reported_not_loaded(tiny_dataset: Path, tmp_path: Path):
    _write_bytes("benchmark", b"date,close,vwap\n2025-03-03,1,2\n2025-03-04,1,2\n2025-03-05,1,2\n")(
        tiny_dataset / "us"
    )
    layout = _layout(tmp_path)
    [summary] = ingest_files(layout, tiny_dataset)
    assert summary.ignored_columns == {"benchmark": ["vwap"]}
    assert "vwap" not in pq.read_table(layout.raw_file("us", "benchmark")).column_names


def test_unknown_market_folder_is_named(tiny_dataset: Path, tmp_path: Path):
    with pytest.raises(ContractError, match="no folder for market"):
        ingest_files(_layout(tmp_path), tiny_dataset, ["cn"])


def test_files_outside_the_contract_are_listed_not_loaded(tiny_dataset: Path, tmp_path: Path):
    (tiny_dataset / "us" / "dividends.csv").write_text("ticker,ex_date\n")
    (tiny_dataset / "us" / "extra").mkdir()
    (tiny_dataset / "hk").mkdir()
    (tiny_dataset / "README.md").write_text("notes\n")
    layout = _layout(tmp_path)
    [summary] = ingest_files(layout, tiny_dataset)
    listed = ["us/dividends.csv", "us/extra/", "README.md", "hk/"]
    assert summary.ignored_files == listed
    assert read_manifest(layout, "us")["ignored_files"] == listed
    text = format_summary([read_manifest(layout, "us")])
    assert "ignored files: us/dividends.csv, us/extra/" in text
    assert "ignored in the dataset folder: README.md, hk/" in text


def test_a_clean_dataset_lists_no_ignored_files(tiny_dataset: Path, tmp_path: Path):
    layout = _layout(tmp_path)
    [summary] = ingest_files(layout, tiny_dataset)
    assert summary.ignored_files == [] and "ignored" not in format_summary(
        [read_manifest(layout, "us")]
    )
