"""Dagster wiring of the raw stage: definitions load, the asset ingests, the CLI drives it."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from dagster_project.cli import main
from dagster_project.definitions import defs
from dagster_project.ingest_assets import (
    raw_asset_key,
    raw_asset_keys,
    raw_tables,
    selected_markets,
)
from dagster_project.resources import DataDirResource


def test_definitions_load_every_raw_asset():
    keys = {spec.key for spec in defs.resolve_all_asset_specs()}
    assert set(raw_asset_keys(["us", "cn"])) <= keys
    assert raw_asset_key("cn", "sessions") in keys
    defs.resolve_implicit_global_asset_job_def()


def test_selected_markets_follow_the_selection():
    keys = {raw_asset_key("cn", "news"), raw_asset_key("cn", "prices")}
    assert selected_markets(keys) == ["cn"]
    assert selected_markets({raw_asset_key("us", "prices"), raw_asset_key("cn", "news")}) == [
        "us",
        "cn",
    ]


def test_files_ingest_materializes_with_metadata(tiny_dataset: Path, tmp_path: Path):
    result = dg.materialize(
        [raw_tables],
        selection=raw_asset_keys(["us"]),
        resources={"data_dir": DataDirResource(data_dir=str(tmp_path / "data"))},
        run_config={
            "ops": {"raw_tables": {"config": {"source": "files", "path": str(tiny_dataset)}}}
        },
    )
    assert result.success
    materializations = {
        event.asset_key: event.metadata
        for event in result.asset_materializations_for_node("raw_tables")
    }
    assert set(materializations) == set(raw_asset_keys(["us"]))
    sessions = materializations[raw_asset_key("us", "sessions")]
    assert sessions["first"].value == "2025-03-03" and sessions["calendar"].value == "XNYS"
    prices = materializations[raw_asset_key("us", "prices")]
    assert prices["dagster/row_count"].value == 6
    assert prices["first"].value == "2025-03-03" and prices["last"].value == "2025-03-05"
    assert "AAA" in prices["preview"].value
    assert (tmp_path / "data" / "raw" / "us" / "prices.parquet").is_file()


def test_cli_ingest_reports_bad_rows_and_exits_1(tiny_dataset: Path, tmp_path: Path, capsys):
    prices = tiny_dataset / "us" / "prices.csv"
    prices.write_text(prices.read_text().replace("49.5,48.0,48.2", "49.5,48.0,-48.2"))
    code = main(
        [
            "--data-dir",
            str(tmp_path / "data"),
            "ingest",
            "--source",
            "files",
            "--path",
            str(tiny_dataset),
        ]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "us/prices.csv row 6: close -48.2 is not > 0" in err
    assert "Traceback" not in err
    code = main(
        [
            "--data-dir",
            str(tmp_path / "data"),
            "ingest",
            "--source",
            "files",
            "--path",
            str(tiny_dataset),
            "--on-bad-rows",
            "quarantine",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "prices" in out and "quarantined 1" in out


def test_cli_rejects_files_source_without_path(tmp_path: Path, capsys):
    assert main(["--data-dir", str(tmp_path), "ingest", "--source", "files"]) == 2
    assert "needs --path" in capsys.readouterr().err
