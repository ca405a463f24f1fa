"""A rerun with nothing changed runs nothing; any change to its inputs makes it run again."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from dagster_project.checks import PIT_SNAPSHOTS
from dagster_project.runner import _not_materialized, build_warehouse, infer
from dagster_project.stamps import passed_gate, read_stamp
from ingest.layout import DataLayout

ARM = "reference__strict"
START, END = date(2025, 3, 3), date(2025, 3, 7)


@pytest.fixture
def recorded(sample_copy: DataLayout, tmp_path: Path, monkeypatch) -> DataLayout:
    """The sample with a persistent Dagster instance, as `make demo` and `make ui` have."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "dagster.yaml").write_text("")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("STRAT_LLM_DATA", str(sample_copy.data_dir))
    monkeypatch.setenv("STRAT_LLM_WAREHOUSE", str(sample_copy.warehouse))
    return sample_copy


def test_a_second_build_and_infer_run_nothing_until_something_changes(recorded: DataLayout):
    first = build_warehouse(START, END)
    assert "tables after the build" in first and "all blocking checks passed" in first
    assert build_warehouse(START, END).startswith("up to date: the 5 sessions")
    # a window not built yet is built
    assert "tables after the build" in build_warehouse(START, date(2025, 3, 10))

    config = {"markets": ["us"]}
    assert "decisions in" in infer([ARM], START, END, config)
    assert "up to date" in infer([ARM], START, END, config)
    # another configuration of the arm: its decisions are not current
    changed = {**config, "token_budget": 2500}
    assert "decisions in" in infer([ARM], START, END, changed)
    assert "up to date" in infer([ARM], START, END, changed)
    # a decision file gone: not current
    recorded.decision_file(ARM, "us", date(2025, 3, 5)).unlink()
    assert "decisions in" in infer([ARM], START, END, changed)

    # one snapshot changed behind the build's back: no gate verdict stands, and it is rebuilt
    with duckdb.connect(str(recorded.warehouse)) as connection:
        connection.execute(
            "update pit_snapshots set max_price_date = decision_date where decision_date = ?",
            [date(2025, 3, 4)],
        )
    assert passed_gate(recorded) is None
    assert "tables after the build" in build_warehouse(START, END)
    assert passed_gate(recorded) is not None
    # only the sessions of this build stand for the warehouse as it is now
    stamp = read_stamp(recorded)
    assert stamp is not None and stamp.sessions[0] == "2025-03-03"
    assert "up to date" in build_warehouse(START, END)
    assert "tables after the build" in build_warehouse(START, END, force=True)


def test_without_a_dagster_instance_nothing_counts_as_materialized():
    reason = _not_materialized(dg.DagsterInstance.ephemeral(), PIT_SNAPSHOTS, ["2025-03-03"])
    assert reason is not None and "DAGSTER_HOME is not set" in reason
