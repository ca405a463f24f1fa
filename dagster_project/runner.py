"""Run a selection of assets in this process: how the CLI drives Dagster without duplicating it.

The in-process executor avoids a process start (and a fresh Dagster import) per step; with
DAGSTER_HOME set, runs are recorded in that instance and show up in the UI.
"""

import contextlib
import os
import re
import sys
import time
from collections.abc import Sequence
from datetime import date
from typing import Any

import dagster as dg
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
)

from dagster_project.console import Heartbeat, dbt_seconds, is_terminal


class PipelineError(RuntimeError):
    """A step failed; the message is the underlying error's, without Dagster's wrapping."""


def quiet_run_config(ops: dict[str, Any] | None = None) -> dict[str, Any]:
    config: dict[str, Any] = {
        # Failures are re-raised as PipelineError with a clean message; Dagster's own log of them
        # (a stack trace per failure) would bury it.
        "loggers": {"console": {"config": {"log_level": "CRITICAL"}}},
        "execution": {"config": {"in_process": {}}},
    }
    if ops:
        config["ops"] = ops
    return config


# One "planned" event per asset and run instead of one per partition (a run over 1,500
# sessions wrote 1,500 of them per asset). The price, per Dagster: partitions of a run that
# fails show as missing in the UI, not as failed. The Makefile sets it for `make ui` too.
PLANNED_EVENTS_ENV = "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"


def _instance() -> dg.DagsterInstance:
    home = os.environ.get("DAGSTER_HOME")
    if not home:
        return dg.DagsterInstance.ephemeral()  # an ephemeral instance sends no telemetry
    if os.environ.get("DAGSTER_DISABLE_TELEMETRY", "") in ("", "0", "false"):
        return dg.DagsterInstance.get()
    # This Dagster ignores DAGSTER_DISABLE_TELEMETRY and reads only dagster.yaml (whose absence
    # means "on", with a banner on the first run): the variable overrides the file here.
    from dagster._core.instance.ref import InstanceRef

    ref = InstanceRef.from_dir(
        os.path.expanduser(home), overrides={"telemetry": {"enabled": False}}
    )
    return dg.DagsterInstance.from_ref(ref)


def _user_error(result: dg.ExecuteInProcessResult) -> str:
    messages = []
    for event in result.all_events:
        if not (event.is_step_failure and event.step_failure_data):
            continue
        error = event.step_failure_data.error
        if error is None:
            messages.append(f"step {event.step_key} failed")
            continue
        error = error.cause or error  # the user's exception, not Dagster's wrapper
        message = re.sub(rf"^[\w.]*{re.escape(error.cls_name or '')}: ", "", error.message.strip())
        messages.append(
            f"{message}" if error.cls_name in _EXPECTED else f"{error.cls_name}: {message}"
        )
    return "\n".join(messages) or "the run failed"


# Errors whose message is written for the user; anything else keeps its class name as a hint.
_EXPECTED = {
    "IngestError",
    "ContractError",
    "Failure",
    "ValueError",
    "PipelineError",
    "BacktestError",
}


def gate_summary(result: dg.ExecuteInProcessResult) -> tuple[bool, str]:
    """Whether every blocking check passed, and a report naming failing expectations and rows."""
    lines, passed = [], True
    for evaluation in result.get_asset_check_evaluations():
        name = f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}"
        metadata = {key: value.value for key, value in evaluation.metadata.items()}
        if evaluation.passed:
            continue
        if evaluation.severity == dg.AssetCheckSeverity.WARN:
            lines.append(f"warning {name}:\n{metadata.get('warnings', '')}")
            continue
        passed = False
        lines.append(f"FAILED {name}: {metadata.get('failing_rows') or metadata}")
        if metadata.get("failing_sample"):
            lines.append(str(metadata["failing_sample"]))
    checked = len(result.get_asset_check_evaluations())
    lines.append(
        f"{checked} checks ran; {'all blocking checks passed' if passed else 'gate FAILED'}"
    )
    return passed, "\n".join(lines)


def run_assets(
    assets: Sequence[Any],
    selection: Any,
    *,
    resources: dict[str, Any] | None = None,
    tags: dict[str, str] | None = None,
    ops: dict[str, Any] | None = None,
    instance: dg.DagsterInstance | None = None,
    checks_label: str = "leakage gate",
    heartbeat: str | None = "running",
) -> tuple[dg.ExecuteInProcessResult, str, str]:
    """Materialize a selection in one in-process run; raise PipelineError with a clean message
    when a blocking check (`checks_label`: the leakage gate) or a step fails. Returns the
    result, the checks' report and where the time went (`_timing`). A `heartbeat` line
    (`still <heartbeat>: 42 s`) goes to stderr every 10 s.
    """
    from dagster_project.resources import all_resources

    os.environ.setdefault(PLANNED_EVENTS_ENV, "1")
    started, dbt_before = time.monotonic(), dbt_seconds()
    with Heartbeat(heartbeat) if heartbeat else contextlib.nullcontext():
        result = dg.materialize(
            assets,
            selection=selection,
            run_config=quiet_run_config(ops),
            resources=resources if resources is not None else all_resources(),
            instance=instance or _instance(),
            tags=tags,
            raise_on_error=False,
        )
    passed, report = gate_summary(result)
    timing = _timing(time.monotonic() - started, dbt_seconds() - dbt_before)
    if not passed:
        raise PipelineError(f"{checks_label} failed; nothing downstream may run.\n{report}")
    if not result.success:
        raise PipelineError(_user_error(result))
    return result, report, timing


def _timing(run_seconds: float, dbt_run_seconds: float) -> str:
    """dbt's own time apart from the rest (Dagster's bookkeeping, the checks, Python steps)."""
    if not dbt_run_seconds:
        return f"run: {run_seconds:.1f} s"
    return (
        f"run: {run_seconds:.1f} s, of which dbt {dbt_run_seconds:.1f} s and "
        f"{run_seconds - dbt_run_seconds:.1f} s the rest (Dagster, checks, Python steps)"
    )


def check_gate() -> str:
    """Run the leakage gate's checks (raw contract, snapshots, knowledge cutoff) alone."""
    from dagster_project.checks import GATE_CHECKS, GATE_TAG, gate_check_selection
    from dagster_project.ingest_assets import raw_tables
    from dagster_project.location import location_for
    from dagster_project.warehouse_assets import warehouse_dbt_assets

    location = location_for()
    _, report, _ = run_assets(
        [raw_tables, warehouse_dbt_assets, location.pit_snapshot_assets, *GATE_CHECKS],
        gate_check_selection(_markets()),
        tags={GATE_TAG: "run"},
        heartbeat="checking",
    )
    return report


def _markets() -> list[str]:
    """The ingested markets: a build or a gate covers those alone (markets are independent)."""
    from ingest.layout import DataLayout
    from ingest.load import ingested_markets

    return ingested_markets(DataLayout.from_env())


def session_range(sessions: Sequence[date], start: date, end: date) -> tuple[date, date]:
    """The first and last session from start to end: the partition range a run covers."""
    from dagster_project.sessions import sessions_in_window

    inside = sessions_in_window(sessions, start, end)
    if not inside:
        span = f"{sessions[0]} .. {sessions[-1]}" if sessions else "none: nothing ingested"
        raise PipelineError(
            f"no session of the ingested calendars falls in {start} .. {end} (sessions: {span})"
        )
    return inside[0], inside[-1]


def build_warehouse(start: date, end: date, *, force: bool = False) -> str:
    """Materialize the dbt assets (pit_snapshots for the sessions start..end) in one run, gated;
    nothing when those sessions are built from the same inputs and shown in the instance
    (dagster_project/stamps.py), unless `force`."""
    from dagster_project.checks import GATE_CHECKS, PIT_SNAPSHOTS, gate_check_selection
    from dagster_project.ingest_assets import raw_tables
    from dagster_project.location import location_for
    from dagster_project.sessions import sessions_in_window
    from dagster_project.stamps import (
        read_stamp,
        record_build,
        warehouse_state,
        why_build_is_needed,
    )
    from dagster_project.warehouse_assets import warehouse_dbt_assets
    from ingest.layout import DataLayout

    layout = DataLayout.from_env()
    location = location_for(layout)
    first, last = session_range(location.sessions, start, end)
    sessions = sessions_in_window(location.sessions, first, last)
    instance = _instance()
    if not force:
        reason = why_build_is_needed(layout, sessions) or _not_materialized(
            instance, PIT_SNAPSHOTS, [day.isoformat() for day in sessions]
        )
        if reason is None:
            stamp = read_stamp(layout)
            assert stamp is not None
            return (
                f"up to date: the {len(sessions)} sessions {first} .. {last} are built from the "
                "same raw data and dbt project, and its snapshots are unchanged since; "
                f"leakage gate passed at {stamp.gate_passed_at}. Nothing was run (--force "
                "rebuilds)."
            )
    earlier, state_before = read_stamp(layout), warehouse_state(layout.warehouse)
    pit = location.pit_snapshot_assets
    result, report, timing = run_assets(
        [raw_tables, warehouse_dbt_assets, pit, *GATE_CHECKS],
        dg.AssetSelection.assets(warehouse_dbt_assets, pit) | gate_check_selection(_markets()),
        tags={
            ASSET_PARTITION_RANGE_START_TAG: first.isoformat(),
            ASSET_PARTITION_RANGE_END_TAG: last.isoformat(),
        },
        instance=instance,
        heartbeat="building",
    )
    record_build(layout, sessions, earlier, state_before)
    # One materialization per partition of the range; the row count is the table's.
    counts: dict[str, int] = {}
    for event in result.get_asset_materialization_events():
        materialization = event.materialization
        if "dagster/row_count" in materialization.metadata:
            key = materialization.asset_key.to_user_string()
            counts[key] = materialization.metadata["dagster/row_count"].value
    lines = [f"  {key}: {rows} rows" for key, rows in counts.items()]
    lines += ["leakage gate:", report, timing]
    return "tables after the build:\n" + "\n".join(lines)


def _not_materialized(
    instance: dg.DagsterInstance, key: dg.AssetKey, partitions: Sequence[str]
) -> str | None:
    """Why the instance does not show these partitions materialized (None when it does): an
    up-to-date warehouse is skipped only when the UI shows it built too."""
    if instance.is_ephemeral:
        return "no Dagster instance records earlier runs (DAGSTER_HOME is not set)"
    done = instance.get_materialized_partitions(key)
    missing = [partition for partition in partitions if partition not in done]
    if missing:
        return f"{len(missing)} partition(s) of {key.to_user_string()} not materialized"
    return None


def infer(
    arms: Sequence[str], start: date, end: date, config: dict[str, Any], *, force: bool = False
) -> str:
    """Decisions of these arms over the sessions start..end, gated: date after date, every arm
    and ticker of a date together. A Dagster run covers a box of partitions (a block of arms in
    the order they were added x a date range), so arms not adjacent in that order take one run
    each. A block whose decisions are all made and current, and shown materialized, is not run
    again unless `force` (`_why_infer_is_needed`)."""
    from dagster_project.checks import pit_snapshots_leakage_gate
    from dagster_project.inference_assets import (
        ARM_PARTITIONS,
        LLM_DECISIONS,
        llm_decisions_follow_their_book,
    )
    from dagster_project.location import location_for
    from dagster_project.sessions import sessions_in_window

    location = location_for()
    first, last = session_range(location.sessions, start, end)
    agents = location.agents
    instance = _instance()
    known = instance.get_dynamic_partitions(ARM_PARTITIONS.name)
    instance.add_dynamic_partitions(ARM_PARTITIONS.name, [a for a in arms if a not in known])
    order = instance.get_dynamic_partitions(ARM_PARTITIONS.name)
    book_check = llm_decisions_follow_their_book
    lines = []
    sessions = [day.isoformat() for day in sessions_in_window(location.sessions, first, last)]
    for block in _adjacent_blocks(list(dict.fromkeys(arms)), order):
        if not force and _why_infer_is_needed(instance, block, sessions, config) is None:
            lines.append(
                f"{', '.join(block)}: up to date: every snapshot of {first} .. {last} is "
                "decided on the snapshot and book that stand now, with this configuration. "
                "Nothing was asked (--force decides again)."
            )
            continue
        result, report, timing = run_assets(
            [location.pit_snapshot_assets, pit_snapshots_leakage_gate, agents, book_check],
            dg.AssetSelection.assets(agents)
            | dg.AssetSelection.checks(pit_snapshots_leakage_gate, book_check),
            tags={
                ASSET_PARTITION_RANGE_START_TAG: f"{block[0]}|{first.isoformat()}",
                ASSET_PARTITION_RANGE_END_TAG: f"{block[-1]}|{last.isoformat()}",
            },
            ops={"agents": {"config": config}},
            instance=instance,
            # On a terminal the progress bar of the decision dates shows the way.
            heartbeat=None if is_terminal(sys.stderr) else "inferring",
        )
        [materialization, *_] = [
            event.materialization
            for event in result.get_asset_materialization_events()
            if event.asset_key == LLM_DECISIONS
        ]
        counts = {key: value.value for key, value in materialization.metadata.items()}
        lines.append(
            f"{', '.join(block)}: {counts['decisions']} decisions in {counts['files']} files; "
            f"{counts['cache_hits']} cached, {counts['calls']} calls, {counts['parse_failures']} "
            f"unparseable, {counts['overridden']} overridden"
        )
        lines += [line for line in report.splitlines() if "made on a book" in line]
        lines.append(timing)
    return "\n".join(lines)


def _why_infer_is_needed(
    instance: dg.DagsterInstance, arms: Sequence[str], sessions: Sequence[str], config: dict
) -> str | None:
    """Why these arms must decide the sessions again (None when they need not): partitions
    not materialized, or decisions not current (inference.up_to_date), or no standing gate."""
    from dagster_project.inference_assets import LLM_DECISIONS
    from dagster_project.stamps import passed_gate
    from inference.engine import config_hash, request_recipe
    from inference.experiments import load_experiment
    from inference.prompts import DEFAULT_TOKEN_BUDGET
    from inference.up_to_date import decisions_to_make
    from ingest.layout import DataLayout
    from ingest.load import ingested_markets

    keys = [f"{arm}|{day}" for arm in arms for day in sessions]
    reason = _not_materialized(instance, LLM_DECISIONS, keys)
    if reason:
        return reason
    layout = DataLayout.from_env()
    if passed_gate(layout) is None:
        return "no leakage gate pass stands for this warehouse"
    experiment = load_experiment(config.get("experiments"))
    budget = config.get("token_budget") or DEFAULT_TOKEN_BUDGET
    hashes = {
        arm: config_hash(request_recipe(experiment.arm(arm, config.get("base_url")), budget))
        for arm in arms
    }
    markets = ingested_markets(layout, config.get("markets"))
    first, last = date.fromisoformat(sessions[0]), date.fromisoformat(sessions[-1])
    undecided = decisions_to_make(layout, hashes, markets, first, last)
    return f"{undecided} decision(s) to make" if undecided else None


def _adjacent_blocks(arms: list[str], order: Sequence[str]) -> list[list[str]]:
    """The arms split into runs of neighbours in `order` (each block is one partition box)."""
    position = {arm: index for index, arm in enumerate(order)}
    blocks: list[list[str]] = []
    for arm in sorted(arms, key=position.__getitem__):
        if blocks and position[arm] == position[blocks[-1][-1]] + 1:
            blocks[-1].append(arm)
        else:
            blocks.append([arm])
    return blocks


def backtest(config: dict[str, Any]) -> str:
    """Simulate the chosen arms (and baselines), each over its own window, replacing only their
    results; then build the backtest and metric marts on every stored result."""
    from backtest.summary import portfolio_table
    from dagster_project.backtest_assets import backtest_dbt_assets, backtest_simulation
    from ingest.layout import DataLayout

    result, _, timing = run_assets(
        [backtest_simulation, backtest_dbt_assets],
        dg.AssetSelection.assets(backtest_simulation, backtest_dbt_assets),
        ops={"backtest_simulation": {"config": config}},
        checks_label="backtest checks (dbt tests)",
        heartbeat="backtesting",
    )
    lines = []
    for event in result.get_asset_materialization_events():
        materialization = event.materialization
        if materialization.asset_key.to_user_string() == "backtest_arms":
            metadata = {key: value.value for key, value in materialization.metadata.items()}
            lines.append(
                f"simulated {metadata['arms']} arms in {metadata['markets']} (other arms' "
                f"results kept): {metadata['decisions']} decisions "
                f"({metadata['untradable_decisions']} not tradable), {metadata['round_trips']} "
                "closed round trips"
            )
            lines.append(metadata["summary"])
    lines += [timing, portfolio_table(DataLayout.from_env().warehouse)]
    return "\n".join(lines)
