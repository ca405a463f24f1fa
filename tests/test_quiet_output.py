"""Output a person can read (issue 16): no ANSI codes when piped, no telemetry banner, dbt's
per-node lines only with --verbose, a heartbeat on long work, cutoff warnings only for the
models that run."""

import io
import os
import re
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from dagster_project.checks import decided_models
from dagster_project.console import Heartbeat, _DbtEcho, current_note, note
from expectations.runner import GateRunner, knowledge_cutoff_warnings
from ingest.layout import DataLayout

ROOT = Path(__file__).resolve().parents[1]
NODE_LINE = re.compile(r"^\d+ of \d+ (START|OK)", re.MULTILINE)
WINDOW = ["--start", "2025-03-03", "--end", "2025-03-07"]


def _cli(data_dir: Path, home: Path, *args: str) -> str:
    """The CLI in a child process, stdout and stderr piped into one text."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DAGSTER_HOME": str(home),
        "DAGSTER_DISABLE_TELEMETRY": "1",
    }
    for name in ("STRAT_LLM_VERBOSE", "STRAT_LLM_WAREHOUSE", "DBT_USE_COLORS", "NO_COLOR"):
        env.pop(name, None)
    done = subprocess.run(
        [sys.executable, "-m", "dagster_project.cli", "--data-dir", str(data_dir), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        check=False,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout
    return done.stdout


@pytest.fixture(scope="module")
def piped_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """ingest and build in child processes with a fresh DAGSTER_HOME whose dagster.yaml is
    empty (what `make demo` makes): (data dir, Dagster home, everything printed)."""
    root = tmp_path_factory.mktemp("quiet")
    home = root / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").touch()
    data_dir = root / "data"
    printed = _cli(data_dir, home, "ingest", "--source", "sample")
    printed += _cli(data_dir, home, "build", *WINDOW)
    return data_dir, home, printed


def test_piped_output_has_no_ansi_no_banner_no_dbt_node_lines(piped_build):
    _, home, printed = piped_build
    assert "\x1b[" not in printed
    assert "Telemetry" not in printed and "Welcome to Dagster" not in printed
    assert not (home / ".telemetry").exists()  # no instance id written: telemetry is off
    assert not NODE_LINE.search(printed)
    assert "leakage gate:" in printed and "all blocking checks passed" in printed


def test_verbose_shows_dbt_node_lines_without_ansi_when_piped(piped_build):
    data_dir, home, _ = piped_build
    printed = _cli(data_dir, home, "--verbose", "build", "--force", *WINDOW)
    assert NODE_LINE.search(printed)
    assert "\x1b[" not in printed


def test_dbt_echo_drops_lines_unless_verbose_and_strips_colour_off_a_terminal():
    line = "3 of 70 OK created sql view model main.x ...... [\x1b[32mOK\x1b[0m in 0.04s]\n"
    quiet, shown = io.StringIO(), io.StringIO()
    _DbtEcho(quiet, show=False).write(line)
    _DbtEcho(shown, show=True).write(line)
    assert quiet.getvalue() == ""
    assert shown.getvalue() == "3 of 70 OK created sql view model main.x ...... [OK in 0.04s]\n"
    assert current_note() == " (dbt: 3 of 70 nodes done)"
    note("")


def test_heartbeat_prints_while_work_runs():
    stream = io.StringIO()
    with Heartbeat("building", every=0.05, stream=stream):
        note("dbt: 1 of 2 nodes done")
        time.sleep(0.3)
    note("")
    lines = stream.getvalue().splitlines()
    assert len(lines) >= 2
    assert re.fullmatch(r"  still building: \d+ s \(dbt: 1 of 2 nodes done\)", lines[-1])


def _warehouse(path: Path) -> Path:
    with duckdb.connect(str(path)) as connection:
        connection.execute(
            "create table models as select * from (values "
            "('Qwen/Qwen3.5-35B-A3B', date '2025-06-30'), ('Qwen/Qwen3.5-122B-A10B', null)) "
            "as t(model_id, knowledge_cutoff)"
        )
        connection.execute(
            "create table pit_snapshots as select * from (values "
            "(date '2025-03-03'), (date '2025-03-04')) as t(decision_date)"
        )
    return path


def test_cutoff_warnings_concern_only_the_models_that_run(tmp_path: Path):
    warehouse = _warehouse(tmp_path / "w.duckdb")
    runner = GateRunner()
    assert len(knowledge_cutoff_warnings(runner, warehouse)) == 2  # no filter: every model
    assert knowledge_cutoff_warnings(runner, warehouse, []) == []
    assert knowledge_cutoff_warnings(runner, warehouse, ["reference-rules-v1"]) == []
    [warning] = knowledge_cutoff_warnings(runner, warehouse, ["Qwen/Qwen3.5-35B-A3B"])
    assert warning.startswith("Qwen/Qwen3.5-35B-A3B: 2 decision date(s)")


def test_models_that_run_are_those_of_arms_with_decisions(tmp_path: Path):
    layout = DataLayout(tmp_path / "data")
    assert decided_models(layout) == []
    for arm, model in (("qwen__free", "Qwen/Qwen3.5-35B-A3B"), ("reference__free", "ref-v1")):
        path = layout.decision_file(arm, "us", date(2025, 3, 3))
        path.parent.mkdir(parents=True)
        pd.DataFrame({"arm": [arm], "model": [model]}).to_parquet(path)
    assert decided_models(layout) == ["Qwen/Qwen3.5-35B-A3B", "ref-v1"]
