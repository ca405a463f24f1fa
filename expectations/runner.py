"""Run the suites on an ephemeral GX context over pandas, chunk by chunk.

GX on DuckDB through SQLAlchemy is broken upstream, so DuckDB only loads the frames: the
snapshot table in chunks of whole (market, ticker) series, so that memory stays bounded and a
compound key is unique globally when it is unique in every chunk.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pandas as pd

from ingest.calendars import MARKETS, session_open_utc

SAMPLE_ROWS = 5
DEFAULT_CHUNK_ROWS = 250_000
_SAMPLE_SLICE = 5_000


@dataclass
class ExpectationOutcome:
    suite: str
    expectation: str
    success: bool
    unexpected_count: int = 0
    checked_rows: int = 0
    sample: list[dict] = field(default_factory=list)
    observed: object = None

    def describe(self) -> str:
        if self.success:
            return f"{self.suite}: {self.expectation} passed ({self.checked_rows} rows)"
        detail = (
            f"{self.unexpected_count} failing row(s) of {self.checked_rows}"
            if self.unexpected_count
            else f"observed {self.observed}"
        )
        return f"{self.suite}: {self.expectation} FAILED: {detail}"


@dataclass
class GateReport:
    outcomes: list[ExpectationOutcome]
    warnings: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(outcome.success for outcome in self.outcomes)

    @property
    def failures(self) -> list[ExpectationOutcome]:
        return [outcome for outcome in self.outcomes if not outcome.success]

    def format(self) -> str:
        lines = []
        for outcome in self.failures:
            lines.append(outcome.describe())
            lines += [f"    {_row_text(row)}" for row in outcome.sample]
        passed = len(self.outcomes) - len(self.failures)
        lines.append(f"{passed} of {len(self.outcomes)} expectations passed")
        lines += [f"warning: {warning}" for warning in self.warnings]
        return "\n".join(lines)


def _row_text(row: dict) -> str:
    return ", ".join(f"{name}={value}" for name, value in row.items())


def _describe_expectation(configuration) -> str:
    kwargs = configuration.kwargs
    parts = [
        f"{name}={kwargs[name]}"
        for name in ("column", "column_A", "column_B", "column_list", "column_set", "min_value")
        if kwargs.get(name) is not None
    ]
    return f"{configuration.type}({', '.join(parts)})"


class GateRunner:
    """One ephemeral GX context; validates frames against suites and merges chunk results."""

    def __init__(self) -> None:
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        logging.getLogger("great_expectations").setLevel(logging.ERROR)
        self._context = gx.get_context(mode="ephemeral")
        self._context.variables.progress_bars = ProgressBarsConfig(globally=False)
        source = self._context.data_sources.add_pandas("frames")
        self._batches = source.add_dataframe_asset("frame").add_batch_definition_whole_dataframe(
            "whole"
        )

    def validate(
        self, suite, frame: pd.DataFrame, key_columns: list[str]
    ) -> list[ExpectationOutcome]:
        batch = self._batches.get_batch(batch_parameters={"dataframe": frame})
        result = batch.validate(suite, result_format={"result_format": "SUMMARY"})
        outcomes = []
        # GX reports results in its own order: each result carries its configuration.
        for outcome in sorted(
            result.results, key=lambda r: _describe_expectation(r.expectation_config)
        ):
            configuration = outcome.expectation_config
            unexpected = outcome.result.get("unexpected_count") or 0
            outcomes.append(
                ExpectationOutcome(
                    suite=suite.name,
                    expectation=_describe_expectation(configuration),
                    success=bool(outcome.success),
                    unexpected_count=unexpected,
                    checked_rows=len(frame),
                    sample=(
                        self._failing_rows(configuration.to_domain_obj(), frame, key_columns)
                        if unexpected and key_columns
                        else []
                    ),
                    observed=outcome.result.get("observed_value"),
                )
            )
        return outcomes

    def _failing_rows(self, expectation, frame: pd.DataFrame, key_columns: list[str]) -> list[dict]:
        """Keys of the first failing rows. GX lists failing indices only at full cost, so ask
        for them on small slices until enough are found."""
        found: list[dict] = []
        for start in range(0, len(frame), _SAMPLE_SLICE):
            part = frame.iloc[start : start + _SAMPLE_SLICE]
            batch = self._batches.get_batch(batch_parameters={"dataframe": part})
            result = batch.validate(
                expectation,
                result_format={
                    "result_format": "SUMMARY",
                    "unexpected_index_column_names": key_columns,
                    "partial_unexpected_count": SAMPLE_ROWS,
                },
            )
            found += result.result.get("partial_unexpected_index_list") or []
            if len(found) >= SAMPLE_ROWS:
                break
        return found[:SAMPLE_ROWS]


def merge_outcomes(chunks: list[list[ExpectationOutcome]]) -> list[ExpectationOutcome]:
    """Combine per-chunk outcomes of the same suite into one outcome per expectation."""
    merged: list[ExpectationOutcome] = []
    for outcomes in zip(*chunks, strict=True):
        first = outcomes[0]
        merged.append(
            ExpectationOutcome(
                suite=first.suite,
                expectation=first.expectation,
                success=all(outcome.success for outcome in outcomes),
                unexpected_count=sum(outcome.unexpected_count for outcome in outcomes),
                checked_rows=sum(outcome.checked_rows for outcome in outcomes),
                sample=[row for outcome in outcomes for row in outcome.sample][:SAMPLE_ROWS],
                observed=next((o.observed for o in outcomes if not o.success), first.observed),
            )
        )
    return merged


# --- loading frames --------------------------------------------------------------------------

_SNAPSHOT_COLUMNS_SQL = """
    market,
    ticker,
    decision_date,
    information_cutoff,
    max_price_date,
    max_news_published_at,
    report_published_at,
    list_max(list_transform(price_history, lambda bar: bar.date)) as price_history_max_date,
    list_max(list_transform(news, lambda item: item.published_at)) as news_max_published_at,
    report.published_at as report_own_published_at,
    report.period_end as report_period_end
"""

# What each raw suite reads; the chunk hash is over the key's leading columns so that a key is
# unique globally when it is unique in every chunk.
_RAW_FRAMES = {
    "universe": ("market, ticker", ["market", "ticker"]),
    "prices": ("market, ticker, date, low, high", ["market", "ticker"]),
    "benchmark": ("market, date, close", ["market"]),
    "news": ("market, news_id, ticker, published_at", ["market", "ticker"]),
    "reports": (
        "market, report_id, ticker, fiscal_year, published_at, period_end,"
        " (published_at at time zone 'UTC')::date as published_date",
        ["market", "ticker"],
    ),
}


def chunked_frames(
    connection: duckdb.DuckDBPyConnection,
    relation: str,
    columns_sql: str,
    hash_columns: list[str],
    chunk_rows: int,
) -> Iterator[pd.DataFrame]:
    """The relation in chunks of about chunk_rows rows, split by a hash of hash_columns."""
    [(total,)] = connection.execute(f"select count(*) from {relation}").fetchall()
    chunks = max(1, math.ceil(total / chunk_rows))
    for chunk in range(chunks):
        yield connection.execute(
            f"select {columns_sql} from {relation}"
            f" where hash({', '.join(hash_columns)}) % {chunks} = {chunk}"
        ).df()


def _with_session_opens(frame: pd.DataFrame) -> pd.DataFrame:
    """Each row's session open from exchange_calendars (independent of the warehouse's SQL)."""
    pairs = frame[["market", "decision_date"]].drop_duplicates()
    opens = {
        (market, day): session_open_utc(market, day)
        for market, day in pairs.itertuples(index=False)
        if market in MARKETS
    }
    frame["session_open_at"] = pd.Series(
        [opens.get(pair) for pair in zip(frame["market"], frame["decision_date"], strict=True)],
        index=frame.index,
        dtype="datetime64[us, UTC]",
    )
    return frame


def _validate_chunks(
    runner: GateRunner, suite, frames: Iterator[pd.DataFrame], key_columns: list[str]
) -> list[ExpectationOutcome]:
    per_chunk = [runner.validate(suite, frame, key_columns) for frame in frames]
    return merge_outcomes(per_chunk) if per_chunk else []


def check_snapshots(
    runner: GateRunner, warehouse: Path, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> list[ExpectationOutcome]:
    from expectations.suites import SNAPSHOT_KEY, pit_snapshots_schema_suite, pit_snapshots_suite

    if not warehouse.is_file():
        raise FileNotFoundError(f"{warehouse}: no warehouse; run `strat-llm build` first")
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        tables = {name for (name,) in connection.execute("show tables").fetchall()}
        if "pit_snapshots" not in tables:
            raise FileNotFoundError(f"{warehouse}: no pit_snapshots; run `strat-llm build` first")
        schema = connection.execute("select * from pit_snapshots limit 0").df()
        outcomes = runner.validate(pit_snapshots_schema_suite(), schema, [])
        frames = chunked_frames(
            connection, "pit_snapshots", _SNAPSHOT_COLUMNS_SQL, ["market", "ticker"], chunk_rows
        )
        outcomes += _validate_chunks(
            runner, pit_snapshots_suite(), map(_with_session_opens, frames), SNAPSHOT_KEY
        )
    return outcomes


def check_raw_file(
    runner: GateRunner, table: str, path: Path, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> list[ExpectationOutcome]:
    """One market's raw table (raw/<market>/<table>.parquet) against its suite."""
    from expectations.suites import RAW_SUITES

    columns_sql, hash_columns = _RAW_FRAMES[table]
    with duckdb.connect() as connection:
        frames = chunked_frames(
            connection, f"read_parquet('{path}')", columns_sql, hash_columns, chunk_rows
        )
        outcomes = _validate_chunks(runner, RAW_SUITES[table](), frames, hash_columns)
    for outcome in outcomes:
        outcome.suite = f"{outcome.suite} ({path.parent.name})"
    return outcomes


def check_raw(
    runner: GateRunner, raw_root: Path, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> list[ExpectationOutcome]:
    from expectations.suites import RAW_SUITES

    return [
        outcome
        for table in RAW_SUITES
        for path in sorted(raw_root.glob(f"*/{table}.parquet"))
        for outcome in check_raw_file(runner, table, path, chunk_rows)
    ]


def knowledge_cutoff_warnings(
    runner: GateRunner, warehouse: Path, model_ids: Iterable[str] | None = None
) -> list[str]:
    """Models of the `models` seed whose training cutoff is unknown or not before every decision
    (memorisation). Only those in `model_ids` where given (the models some arm runs): a model
    listed in the seed but never run is no risk to any result."""
    from expectations.suites import knowledge_cutoff_suite

    with duckdb.connect(str(warehouse), read_only=True) as connection:
        models = connection.execute("select model_id, knowledge_cutoff from models").fetchall()
        dates = connection.execute("select distinct decision_date from pit_snapshots").df()
    if model_ids is not None:
        wanted = set(model_ids)
        models = [(model_id, cutoff) for model_id, cutoff in models if model_id in wanted]
    if dates.empty:
        return []
    warnings = []
    for model_id, cutoff in models:
        if cutoff is None:
            warnings.append(
                f"{model_id}: knowledge cutoff unknown; any of the {len(dates)} decision dates "
                "may fall inside its training data (memorisation risk)"
            )
            continue
        suite = knowledge_cutoff_suite(model_id, pd.Timestamp(cutoff))
        [outcome] = runner.validate(suite, dates, [])
        if not outcome.success:
            warnings.append(
                f"{model_id}: {outcome.unexpected_count} decision date(s) on or before its "
                f"knowledge cutoff {cutoff} (memorisation risk)"
            )
    return warnings


def run_gate(
    warehouse: Path,
    raw_root: Path | None = None,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    runner: GateRunner | None = None,
) -> GateReport:
    """The leakage gate over the warehouse's snapshots, and the raw tables when given."""
    runner = runner or GateRunner()
    outcomes = check_snapshots(runner, warehouse, chunk_rows)
    if raw_root is not None:
        outcomes += check_raw(runner, raw_root, chunk_rows)
    return GateReport(outcomes=outcomes, warnings=knowledge_cutoff_warnings(runner, warehouse))
