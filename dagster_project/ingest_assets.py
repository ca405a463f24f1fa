"""Raw assets: one per market and table, materialized together by one ingest step."""

# No `from __future__ import annotations` here: Dagster resolves config and context types from
# the real annotations at definition time.

from datetime import date

import dagster as dg

from dagster_project.resources import DataDirResource
from ingest.calendars import MARKET_CALENDARS, MARKETS
from ingest.contract import TABLE_NAMES, TABLES
from ingest.load import MarketSummary, ingest_files, ingest_sample

RAW_GROUP = "raw"
SESSIONS_TABLE = "sessions"


def raw_asset_key(market: str, table: str) -> dg.AssetKey:
    return dg.AssetKey(["raw", market, table])


def raw_asset_keys(markets: list[str]) -> list[dg.AssetKey]:
    """Every raw asset of these markets: the contract tables and the session calendar."""
    return [
        raw_asset_key(market, table)
        for market in markets
        for table in (*TABLE_NAMES, SESSIONS_TABLE)
    ]


class IngestConfig(dg.Config):
    """Which source feeds the raw tables (DESIGN §4, `strat-llm ingest`)."""

    source: str = "sample"
    path: str | None = None
    on_bad_rows: str = "fail"
    allow_missing_sessions: bool = False
    seed: int | None = None
    start: str | None = None
    end: str | None = None


def selected_markets(keys: set[dg.AssetKey]) -> list[str]:
    """Markets with at least one selected raw table; a market is always ingested whole."""
    return [market for market in MARKETS if any(key.path[1] == market for key in keys)]


def run_ingest(
    config: IngestConfig, data_dir: DataDirResource, markets: list[str]
) -> list[MarketSummary]:
    layout = data_dir.layout()
    if config.source == "sample":
        return ingest_sample(
            layout,
            markets,
            seed=config.seed,
            start=date.fromisoformat(config.start) if config.start else None,
            end=date.fromisoformat(config.end) if config.end else None,
        )
    if config.source == "files":
        if not config.path:
            raise dg.Failure("source 'files' needs a path to the dataset folder")
        return ingest_files(
            layout,
            config.path,
            markets,
            on_bad_rows=config.on_bad_rows,  # type: ignore[arg-type]
            allow_missing_sessions=config.allow_missing_sessions,
        )
    raise dg.Failure(f"unknown source {config.source!r}; expected 'sample' or 'files'")


def sessions_metadata(summary: MarketSummary) -> dict[str, dg.MetadataValue]:
    first, last = summary.session_span
    return {
        "first": dg.MetadataValue.text(first or ""),
        "last": dg.MetadataValue.text(last or ""),
        "calendar": dg.MetadataValue.text(MARKET_CALENDARS[summary.market]),
    }


def table_metadata(summary: MarketSummary, table: str) -> dict[str, dg.MetadataValue]:
    info = summary.tables[table]
    metadata: dict[str, dg.MetadataValue] = {
        "dagster/row_count": dg.MetadataValue.int(info.rows),
        "quarantined_rows": dg.MetadataValue.int(info.quarantined),
        "source": dg.MetadataValue.text(summary.source),
        "synthetic": dg.MetadataValue.bool(summary.synthetic),
        "path": dg.MetadataValue.path(str(info.path)),
        "preview": dg.MetadataValue.md(
            info.preview.to_markdown(index=False) if info.rows else "(empty)"
        ),
    }
    if info.first:
        metadata["first"] = dg.MetadataValue.text(info.first)
        metadata["last"] = dg.MetadataValue.text(info.last or "")
    if table == "prices" and summary.missing_sessions:
        count = sum(len(days) for days in summary.missing_sessions.values())
        metadata["accepted_missing_sessions"] = dg.MetadataValue.int(count)
    return metadata


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            raw_asset_key(market, table),
            group_name=RAW_GROUP,
            description=f"{market.upper()} {TABLES[table].description} (raw Parquet)",
            kinds={"parquet"},
        )
        for market in MARKETS
        for table in TABLE_NAMES
    ]
    + [
        dg.AssetSpec(
            raw_asset_key(market, SESSIONS_TABLE),
            group_name=RAW_GROUP,
            description=f"{MARKET_CALENDARS[market]} sessions from exchange_calendars, through "
            "the next sessions after the data (decision calendar)",
            kinds={"parquet"},
        )
        for market in MARKETS
    ],
    can_subset=True,
)
def raw_tables(context: dg.AssetExecutionContext, config: IngestConfig, data_dir: DataDirResource):
    markets = selected_markets(context.selected_asset_keys)
    for summary in run_ingest(config, data_dir, markets):
        context.log.info(f"ingested {summary.market} from {summary.source}")
        for table in TABLE_NAMES:
            key = raw_asset_key(summary.market, table)
            if key in context.selected_asset_keys:
                yield dg.MaterializeResult(asset_key=key, metadata=table_metadata(summary, table))
        key = raw_asset_key(summary.market, SESSIONS_TABLE)
        if key in context.selected_asset_keys:
            yield dg.MaterializeResult(asset_key=key, metadata=sessions_metadata(summary))
