"""llm_decisions: one Parquet file per (arm, decision date), downstream of the leakage gate."""

import dataclasses
from collections import defaultdict
from datetime import date

import dagster as dg

from dagster_project.checks import PIT_SNAPSHOTS
from dagster_project.resources import DataDirResource
from dagster_project.warehouse_assets import DECISION_PARTITIONS
from ingest.calendars import MARKETS

ARM_PARTITIONS = dg.DynamicPartitionsDefinition(name="arm")
# Keys read "<arm>|<date>": Dagster orders the dimensions by name.
ARM_DATE_PARTITIONS = dg.MultiPartitionsDefinition(
    {"arm": ARM_PARTITIONS, "date": DECISION_PARTITIONS}
)


class InferConfig(dg.Config):
    """Overrides for a run; the arms' models come from the experiments file."""

    base_url: str | None = None
    concurrency: int | None = None
    markets: list[str] = list(MARKETS)
    experiments: str | None = None
    token_budget: int | None = None


def dates_by_arm(partition_keys: list[str]) -> dict[str, list[date]]:
    """Group "<arm>|<date>" keys of a run by arm, dates in order."""
    grouped: dict[str, list[date]] = defaultdict(list)
    for key in partition_keys:
        arm, day = key.split("|")
        grouped[arm].append(date.fromisoformat(day))
    return {arm: sorted(days) for arm, days in grouped.items()}


@dg.asset(
    partitions_def=ARM_DATE_PARTITIONS,
    deps=[
        dg.AssetDep(
            PIT_SNAPSHOTS,
            partition_mapping=dg.MultiToSingleDimensionPartitionMapping(
                partition_dimension_name="date"
            ),
        )
    ],
    # A backfill is one run: every date of an arm goes to the backend as one large batch.
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="inference",
    kinds={"parquet"},
    description="Decisions per arm and decision date (DESIGN §7), in "
    "data/landing/llm_decisions/arm=<slug>/date=<date>.parquet.",
)
def llm_decisions(
    context: dg.AssetExecutionContext, config: InferConfig, data_dir: DataDirResource
) -> dg.MaterializeResult:
    from inference.engine import run_arm
    from inference.experiments import load_experiment
    from inference.prompts import DEFAULT_TOKEN_BUDGET

    layout = data_dir.export_env()
    experiment = load_experiment(config.experiments)
    totals: dict[str, int] = defaultdict(int)
    for slug, days in dates_by_arm(context.partition_keys).items():
        arm = experiment.arm(slug, config.base_url)
        if config.concurrency:
            model = dataclasses.replace(arm.model, concurrency=config.concurrency)
            arm = dataclasses.replace(arm, model=model)
        context.log.info(f"{slug}: {len(days)} decision dates from {days[0]} to {days[-1]}")
        summary = run_arm(
            arm,
            days,
            data_dir=layout.data_dir,
            warehouse=layout.warehouse,
            cache_path=layout.response_cache,
            markets=config.markets,
            token_budget=config.token_budget or DEFAULT_TOKEN_BUDGET,
        )
        for name in (
            "decisions",
            "cache_hits",
            "calls",
            "failures",
            "parse_failures",
            "overridden",
        ):
            totals[name] += getattr(summary, name)
        totals["files"] += len(summary.files)
    return dg.MaterializeResult(
        metadata={name: dg.MetadataValue.int(value) for name, value in totals.items()}
    )
