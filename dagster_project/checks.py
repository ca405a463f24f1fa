"""The leakage gate as Dagster asset checks. Blocking: a failure stops every downstream asset
of the same run (inference, backtest) from materializing."""

from collections.abc import Sequence
from pathlib import Path

import dagster as dg

from dagster_project.ingest_assets import raw_asset_key
from dagster_project.resources import DataDirResource
from expectations.runner import GateReport, GateRunner, check_raw_file, run_gate
from ingest.calendars import MARKETS
from ingest.layout import DataLayout

PIT_SNAPSHOTS = dg.AssetKey("pit_snapshots")
RAW_CHECK_NAME = "raw_contract"
# Run tag: "run" makes the leakage gate check the warehouse even when a pass still stands.
GATE_TAG = "strat_llm/leakage_gate"
GATED_RAW_TABLES = ("universe", "prices", "benchmark", "news", "reports")


def gate_metadata(report: GateReport) -> dict[str, dg.MetadataValue]:
    failing = {outcome.expectation: outcome.unexpected_count for outcome in report.failures}
    samples = "\n".join(
        f"- **{outcome.expectation}**: "
        + (
            "; ".join(", ".join(f"{k}={v}" for k, v in row.items()) for row in outcome.sample)
            or f"observed {outcome.observed}"
        )
        for outcome in report.failures
    )
    return {
        "expectations": dg.MetadataValue.int(len(report.outcomes)),
        "failed_expectations": dg.MetadataValue.int(len(report.failures)),
        "failing_rows": dg.MetadataValue.json(failing),
        "failing_sample": dg.MetadataValue.md(samples or "none"),
        "checked_rows": dg.MetadataValue.int(
            max((outcome.checked_rows for outcome in report.outcomes), default=0)
        ),
    }


@dg.asset_check(
    asset=PIT_SNAPSHOTS,
    blocking=True,
    description="Leakage gate (Great Expectations): nothing in a snapshot is from on or after "
    "its decision; keys unique; only the allowed columns.",
)
def pit_snapshots_leakage_gate(
    context: dg.AssetCheckExecutionContext, data_dir: DataDirResource
) -> dg.AssetCheckResult:
    from dagster_project.stamps import passed_gate, record_gate_pass

    layout = data_dir.layout()
    # A pass stands while the warehouse file is unchanged (dagster_project/stamps.py), unless
    # the run asks for the gate itself (`strat-llm check`).
    standing = passed_gate(layout) if context.run.tags.get(GATE_TAG) != "run" else None
    if standing is not None:
        return dg.AssetCheckResult(
            passed=True,
            metadata={
                "expectations": dg.MetadataValue.int(standing.gate_expectations),
                "verdict": dg.MetadataValue.text(
                    f"passed at {standing.gate_passed_at} on this warehouse file, unchanged "
                    "since: not run again"
                ),
            },
        )
    report = run_gate(layout.warehouse)
    if report.passed:
        record_gate_pass(layout, len(report.outcomes))
    return dg.AssetCheckResult(passed=report.passed, metadata=gate_metadata(report))


@dg.asset_check(
    asset=PIT_SNAPSHOTS,
    blocking=False,
    description="Warns when decision dates are not after a model's training cutoff "
    "(memorisation risk); never blocks. Only the models that run: those of the arms with "
    "decisions under <data-dir>/landing/llm_decisions/ (none before the first `infer`).",
)
def pit_snapshots_knowledge_cutoff(data_dir: DataDirResource) -> dg.AssetCheckResult:
    from expectations.runner import knowledge_cutoff_warnings

    layout = data_dir.layout()
    models = decided_models(layout)
    warnings = knowledge_cutoff_warnings(GateRunner(), layout.warehouse, models)
    return dg.AssetCheckResult(
        passed=not warnings,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "warnings": dg.MetadataValue.md("\n".join(f"- {w}" for w in warnings) or "none"),
            "models_run": dg.MetadataValue.text(", ".join(models) or "none"),
        },
    )


def decided_models(layout: DataLayout) -> list[str]:
    """The model ids of every arm with decisions in the landing folder (the models that run)."""
    import duckdb

    if not any(Path(layout.landing_dir / "llm_decisions").glob("arm=*/market=*/*.parquet")):
        return []
    rows = duckdb.sql(
        f"select distinct model from read_parquet('{layout.decision_files}', union_by_name=true) "
        "order by model"
    ).fetchall()
    return [model for (model,) in rows if model]


@dg.multi_asset_check(
    specs=[
        dg.AssetCheckSpec(
            RAW_CHECK_NAME,
            asset=raw_asset_key(market, table),
            blocking=True,
            description="Raw contract re-checked on the written Parquet (keys, prices, times).",
        )
        for market in MARKETS
        for table in GATED_RAW_TABLES
    ],
    can_subset=True,
)
def raw_contract_checks(context: dg.AssetCheckExecutionContext, data_dir: DataDirResource):
    layout = data_dir.layout()
    runner = GateRunner()
    for check_key in context.selected_asset_check_keys:
        market, table = check_key.asset_key.path[1:]
        path = layout.raw_file(market, table)
        if not path.is_file() and not layout.ingest_manifest(market).is_file():
            # Markets are independent: one never ingested has no rows, hence none that break
            # the contract (dbt reads no rows for it either). The CLI does not even select it.
            yield dg.AssetCheckResult(
                asset_key=check_key.asset_key,
                check_name=RAW_CHECK_NAME,
                passed=True,
                metadata={"not_ingested": dg.MetadataValue.text(f"no rows: {market} not ingested")},
            )
            continue
        if not path.is_file():
            yield dg.AssetCheckResult(
                asset_key=check_key.asset_key,
                check_name=RAW_CHECK_NAME,
                passed=False,
                metadata={"missing": dg.MetadataValue.path(str(path))},
            )
            continue
        report = GateReport(outcomes=check_raw_file(runner, table, path))
        yield dg.AssetCheckResult(
            asset_key=check_key.asset_key,
            check_name=RAW_CHECK_NAME,
            passed=report.passed,
            metadata=gate_metadata(report),
        )


GATE_CHECKS = [pit_snapshots_leakage_gate, pit_snapshots_knowledge_cutoff, raw_contract_checks]


def gate_check_selection(markets: Sequence[str]) -> dg.AssetSelection:
    """The gate's checks for these markets: the snapshot checks and their raw contracts."""
    return dg.AssetSelection.checks(
        pit_snapshots_leakage_gate,
        pit_snapshots_knowledge_cutoff,
        *(
            dg.AssetCheckKey(raw_asset_key(market, table), RAW_CHECK_NAME)
            for market in markets
            for table in GATED_RAW_TABLES
        ),
    )
