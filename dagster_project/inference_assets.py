"""The agents: `llm_decisions` and `agent_book`, partitioned by arm x decision date, made together.

One step runs the range date after date (inference.engine.run_agents): the books after D-1
(backtest.book.BookKeeper) go into the prompts of D, and the decisions of D step the books
through D. Neither package imports the other; this module interleaves them.

Dependencies on the previous date partition: `llm_decisions` of D depends on its own D-1 (so
backfills run dates in order) and on `book` of D-1; `book` of D on its own D-1. Dagster does not
follow a self-dependency when it decides staleness for assets of 100 partitions or more, so the
`book` edge is what shows a decision partition stale once an earlier one is rematerialized.
"""

import dataclasses
from collections import defaultdict
from datetime import date

import dagster as dg

from dagster_project.checks import PIT_SNAPSHOTS
from dagster_project.ingest_assets import raw_asset_key
from dagster_project.resources import DataDirResource
from dagster_project.warehouse_assets import DECISION_PARTITIONS
from ingest.calendars import MARKETS

ARM_PARTITIONS = dg.DynamicPartitionsDefinition(name="arm")
# Keys read "<arm>|<date>": Dagster orders the dimensions by name.
ARM_DATE_PARTITIONS = dg.MultiPartitionsDefinition(
    {"arm": ARM_PARTITIONS, "date": DECISION_PARTITIONS}
)
# The same arm's previous date partition.
PREVIOUS_DATE = dg.MultiPartitionMapping(
    {
        "arm": dg.DimensionPartitionMapping("arm", dg.IdentityPartitionMapping()),
        "date": dg.DimensionPartitionMapping(
            "date", dg.TimeWindowPartitionMapping(start_offset=-1, end_offset=-1)
        ),
    }
)
LLM_DECISIONS = dg.AssetKey("llm_decisions")
BOOK = dg.AssetKey("agent_book")  # the dbt mart `book` reads it


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


def decide(
    arms: list,
    days: list[date],
    layout,
    *,
    markets: list[str] | tuple[str, ...] = MARKETS,
    token_budget: int | None = None,
    backend=None,
):
    """The arms' decisions and books over these dates: (summaries by arm, book files)."""
    from backtest.book import BookKeeper
    from inference.engine import run_agents
    from inference.prompts import DEFAULT_TOKEN_BUDGET

    keeper = BookKeeper(layout, [arm.slug for arm in arms], markets)
    summaries = run_agents(
        arms,
        days,
        layout=layout,
        books=keeper,
        markets=markets,
        token_budget=token_budget or DEFAULT_TOKEN_BUDGET,
        backend=backend,
    )
    return summaries, keeper.written


def run_agent_range(partition_keys: list[str], config: InferConfig, data_dir: DataDirResource):
    """Decide and book every (arm, date) partition of a run: (summaries by arm, book files)."""
    from inference.experiments import load_experiment

    layout = data_dir.export_env()
    experiment = load_experiment(config.experiments)
    grouped = dates_by_arm(partition_keys)
    arms = []
    for slug in grouped:
        arm = experiment.arm(slug, config.base_url)
        if config.concurrency:
            model = dataclasses.replace(arm.model, concurrency=config.concurrency)
            arm = dataclasses.replace(arm, model=model)
        arms.append(arm)
    days = sorted({day for dates in grouped.values() for day in dates})
    return decide(arms, days, layout, markets=config.markets, token_budget=config.token_budget)


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            LLM_DECISIONS,
            deps=[
                dg.AssetDep(
                    PIT_SNAPSHOTS,
                    partition_mapping=dg.MultiToSingleDimensionPartitionMapping(
                        partition_dimension_name="date"
                    ),
                ),
                dg.AssetDep(LLM_DECISIONS, partition_mapping=PREVIOUS_DATE),
                dg.AssetDep(BOOK, partition_mapping=PREVIOUS_DATE),
            ],
            group_name="inference",
            kinds={"parquet"},
            description="Decisions per arm, market and decision date (DESIGN §7), in "
            "data/landing/llm_decisions/arm=<slug>/market=<m>/date=<date>.parquet; the prompt "
            "of D shows the arm's book after D-1.",
        ),
        dg.AssetSpec(
            BOOK,
            deps=[
                dg.AssetDep(BOOK, partition_mapping=PREVIOUS_DATE),
                dg.AssetKey("market_rules"),
                *(raw_asset_key(market, "prices") for market in MARKETS),
            ],
            group_name="inference",
            kinds={"python", "parquet"},
            description="Each arm's book after session D (shares, cash, exposure, entry, "
            "unrealised return, last fill, blocked orders): the book of D-1 stepped through the "
            "decisions of D by the backtest's simulation, in "
            "data/landing/book/arm=<slug>/market=<m>/date=<date>.parquet.",
        ),
    ],
    partitions_def=ARM_DATE_PARTITIONS,
    # A backfill is one run: dates in order, every arm and ticker of a date in one batch.
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def agents(context: dg.AssetExecutionContext, config: InferConfig, data_dir: DataDirResource):
    # The book of D-1 is upstream of the decisions of D: Dagster wants it reported first.
    summaries, book_files = run_agent_range(list(context.partition_keys), config, data_dir)
    totals: dict[str, int] = defaultdict(int)
    for summary in summaries.values():
        for name in ("decisions", "cache_hits", "calls", "failures", "parse_failures"):
            totals[name] += getattr(summary, name)
        totals["overridden"] += summary.overridden
        totals["files"] += len(summary.files)
    yield dg.MaterializeResult(
        asset_key=BOOK, metadata={"files": dg.MetadataValue.int(len(book_files))}
    )
    yield dg.MaterializeResult(
        asset_key=LLM_DECISIONS,
        metadata={name: dg.MetadataValue.int(value) for name, value in totals.items()},
    )
