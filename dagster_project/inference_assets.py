"""The agents: `llm_decisions` and `agent_book`, partitioned by arm x decision date, made together.

One step runs the range date after date (inference.engine.run_agents): the books after D-1
(backtest.book.BookKeeper) go into the prompts of D, and the decisions of D step the books
through D. Neither package imports the other; this module interleaves them.

Dependencies on the previous date partition: `llm_decisions` of D depends on its own D-1 (so
backfills run dates in order) and on `agent_book` of D-1, which is what marks it stale in the UI
once D-1 is rematerialized: Dagster does not follow a self-dependency when it decides staleness
for assets of 100 partitions or more. `agent_book` declares no dependency on its own D-1 although
it has one: a self-dependency makes Dagster record no input provenance for it within the step,
and then no later decision partition could ever show stale. Dagster cannot show the rest of the
chain (the decisions of D+2 depend on D through the book of D+1, and a cycle between two assets is
not allowed); the asset check `llm_decisions_follow_their_book` lists every decision made on a
book that has changed since.
"""

import dataclasses
from collections import defaultdict
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg

from dagster_project.checks import PIT_SNAPSHOTS
from dagster_project.ingest_assets import raw_asset_key
from dagster_project.resources import DataDirResource
from ingest.calendars import MARKETS

if TYPE_CHECKING:  # the packages load inside the asset, off the CLI's start-up path
    from inference.backends.base import Backend
    from inference.engine import RunSummary
    from inference.experiments import Arm
    from ingest.layout import DataLayout

ARM_PARTITIONS = dg.DynamicPartitionsDefinition(name="arm")
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
    # None: every ingested market (a dataset may hold one market).
    markets: list[str] | None = None
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
    arms: Sequence["Arm"],
    days: Sequence[date],
    layout: "DataLayout",
    *,
    markets: Sequence[str] = MARKETS,
    token_budget: int | None = None,
    backend: "Backend | None" = None,
) -> tuple[dict[str, "RunSummary"], list[Path]]:
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


def run_agent_range(
    partition_keys: list[str], config: InferConfig, data_dir: DataDirResource
) -> tuple[dict[str, "RunSummary"], list[Path]]:
    """Decide and book every (arm, date) partition of a run: (summaries by arm, book files)."""
    from inference.experiments import load_experiment
    from ingest.load import ingested_markets

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
    markets = ingested_markets(layout, config.markets)
    return decide(arms, days, layout, markets=markets, token_budget=config.token_budget)


AGENT_SPECS = [
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
]


def arm_date_partitions(sessions: dg.PartitionsDefinition) -> dg.MultiPartitionsDefinition:
    """Arm x decision date; keys read "<arm>|<date>" (Dagster orders the dimensions by name)."""
    return dg.MultiPartitionsDefinition({"arm": ARM_PARTITIONS, "date": sessions})


def build_agents(sessions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    """The agents' asset over arm x these decision-date partitions (dagster_project/sessions.py)."""

    @dg.multi_asset(
        specs=AGENT_SPECS,
        partitions_def=arm_date_partitions(sessions),
        # A backfill is one run: dates in order, every arm and ticker of a date in one batch.
        backfill_policy=dg.BackfillPolicy.single_run(),
    )
    def agents(context: dg.AssetExecutionContext, config: InferConfig, data_dir: DataDirResource):
        summaries, book_files = run_agent_range(list(context.partition_keys), config, data_dir)
        totals: dict[str, int] = defaultdict(int)
        for summary in summaries.values():
            for name in ("decisions", "cache_hits", "calls", "no_answer", "parse_failures"):
                totals[name] += getattr(summary, name)
            totals["overridden"] += summary.overridden
            totals["files"] += len(summary.files)
        unanswered = no_answer_report(summaries)
        if unanswered:
            # What was answered is written and cached; the partitions stay unmaterialized, so the
            # UI shows them missing and a rerun asks only what got no answer.
            raise dg.Failure(
                description=unanswered,
                metadata={name: dg.MetadataValue.int(value) for name, value in totals.items()},
            )
        # The book of D-1 is upstream of the decisions of D: Dagster wants it reported first.
        yield dg.MaterializeResult(
            asset_key=BOOK, metadata={"files": dg.MetadataValue.int(len(book_files))}
        )
        yield dg.MaterializeResult(
            asset_key=LLM_DECISIONS,
            metadata={name: dg.MetadataValue.int(value) for name, value in totals.items()},
        )

    return agents


def no_answer_report(summaries: "dict[str, RunSummary]") -> str | None:
    """What a run could not get answered, by arm and error class, and what to do; None when
    every request was answered."""
    lines = []
    for summary in summaries.values():
        if not summary.no_answer:
            continue
        classes = ", ".join(f"{name} x{count}" for name, count in summary.error_classes.items())
        lines.append(
            f"{summary.arm}: {summary.no_answer} of {summary.decisions} requests got no answer "
            f"({classes}); first: {summary.first_error}"
        )
    if not lines:
        return None
    stopped = next((s.stopped_after for s in summaries.values() if s.stopped_after), None)
    if stopped is not None:
        lines.append(f"stopped after {stopped}: later dates were not asked")
    lines.append(
        "the answered decisions are written and cached: run the same infer again once the "
        "server answers (only what is missing is asked)"
    )
    return "\n".join(lines)


@dg.asset_check(
    asset=LLM_DECISIONS,
    description="Every decision was made on the book that now stands before its date: a "
    "decision of D+1, D+2, ... made before D was decided again is listed (rerun `strat-llm infer` "
    "over the range: only prompts whose book changed are asked again).",
)
def llm_decisions_follow_their_book(data_dir: DataDirResource) -> dg.AssetCheckResult:
    from inference.book import stale_decisions

    stale = stale_decisions(data_dir.export_env())
    partitions = sorted(
        {f"{row.arm}|{row.decision_date.date().isoformat()}" for row in stale.itertuples()}
    )
    return dg.AssetCheckResult(
        passed=stale.empty,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "stale_decisions": dg.MetadataValue.int(len(stale)),
            "stale_partitions": dg.MetadataValue.int(len(partitions)),
            "warnings": dg.MetadataValue.text(
                f"{len(stale)} decisions in {len(partitions)} partitions were made on a book "
                f"that has changed since (first: {', '.join(partitions[:5])}); rerun infer over "
                "them"
                if partitions
                else ""
            ),
            "sample": dg.MetadataValue.text(stale.head(20).to_string(index=False)),
        },
    )
