"""Validate whole datasets, then write raw Parquet (and quarantine) atomically per file.

Nothing is written until every requested market has validated, so `--on-bad-rows fail` leaves
the previous raw data untouched. Writing the same input twice gives identical bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Literal

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ingest.calendars import MARKETS, session_table
from ingest.contract import TABLE_NAMES, TABLES
from ingest.files import dataset_markets, ignored_files, read_market_files
from ingest.layout import DataLayout
from ingest.validation import (
    ContractError,
    MarketResult,
    describe_missing_sessions,
    describe_rejections,
    validate_market,
)

OnBadRows = Literal["fail", "quarantine"]
ON_BAD_ROWS: tuple[str, ...] = ("fail", "quarantine")


class IngestError(ContractError):
    """Validation found problems and the chosen policy says stop; nothing was written."""


@dataclass
class TableSummary:
    rows: int
    quarantined: int
    first: str | None  # first date / timestamp in the table, ISO
    last: str | None
    path: Path
    preview: pd.DataFrame = field(repr=False)


@dataclass
class MarketSummary:
    market: str
    source: str
    synthetic: bool
    tables: dict[str, TableSummary]
    missing_sessions: dict[str, list[date]]
    ignored_columns: dict[str, list[str]]
    session_span: list[str | None]  # first and last session of raw/<market>/sessions.parquet
    ignored_files: list[str] = field(default_factory=list)


def _time_column(table: str) -> str | None:
    kinds = {column.name: column.kind for column in TABLES[table].columns}
    for name in ("date", "ex_date", "published_at"):
        if name in kinds:
            return name
    return None


def to_arrow(table: str, frame: pd.DataFrame) -> pa.Table:
    converted = pa.Table.from_pandas(
        frame, schema=TABLES[table].arrow_schema(), preserve_index=False
    )
    return converted.replace_schema_metadata(None)


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary file beside `path`, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    write(temporary)
    os.replace(temporary, path)


def _content_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


SESSIONS_SCHEMA = pa.schema(
    [pa.field("market", pa.string(), nullable=False), pa.field("session_date", pa.date32())]
)


def _write_sessions(layout: DataLayout, result: MarketResult) -> list[str | None]:
    """Write the market's exchange sessions (exchange_calendars) beside its raw tables.

    dbt derives decision points from them, including sessions after the last price (the next
    live-forward decision). Returns the first and last session written.
    """
    dates = [
        day for table in ("prices", "benchmark") for day in result.tables[table]["date"].dropna()
    ]
    frame = (
        session_table(result.market, min(dates), max(dates))
        if dates
        else pd.DataFrame({"market": [], "session_date": []})
    )
    arrow = pa.Table.from_pandas(frame, schema=SESSIONS_SCHEMA, preserve_index=False)
    arrow = arrow.replace_schema_metadata(None)
    path = layout.raw_file(result.market, "sessions")
    write_atomically(path, lambda target: pq.write_table(arrow, target))
    days = frame["session_date"]
    return [str(days.min()), str(days.max())] if len(days) else [None, None]


def _check_policy(
    results: list[MarketResult], on_bad_rows: OnBadRows, allow_missing_sessions: bool
) -> None:
    problems: list[str] = []
    n_rejected = sum(result.n_rejected for result in results)
    if n_rejected and on_bad_rows == "fail":
        lines = describe_rejections(results)
        more = f"\n  ... and {n_rejected - len(lines)} more" if n_rejected > len(lines) else ""
        problems.append(
            f"{n_rejected} bad row(s):\n  "
            + "\n  ".join(lines)
            + more
            + "\nFix them, or rerun with --on-bad-rows quarantine to load the rest and keep the "
            "rejected rows with their reasons under data/quarantine/."
        )
    missing = [line for result in results for line in describe_missing_sessions(result)]
    if missing and not allow_missing_sessions:
        problems.append(
            "sessions of the exchange calendar are missing inside the span of a series:\n  "
            + "\n  ".join(missing)
            + "\nIf the source simply lacks those days, rerun with --allow-missing-sessions to "
            "accept them (they are recorded in raw/<market>/_ingest.json)."
        )
    if problems:
        raise IngestError("nothing was written: " + "\n".join(problems))


def write_results(
    layout: DataLayout,
    results: list[MarketResult],
    *,
    source: str,
    synthetic: bool,
    details: dict[str, object],
    on_bad_rows: OnBadRows = "fail",
    allow_missing_sessions: bool = False,
) -> list[MarketSummary]:
    if on_bad_rows not in ON_BAD_ROWS:
        raise ValueError(
            f"on_bad_rows must be one of {', '.join(ON_BAD_ROWS)}, got {on_bad_rows!r}"
        )
    _check_policy(results, on_bad_rows, allow_missing_sessions)
    summaries = []
    for result in results:
        market = result.market
        tables: dict[str, TableSummary] = {}
        hashes: dict[str, str] = {}
        for table in TABLE_NAMES:
            frame = result.tables[table]
            path = layout.raw_file(market, table)
            arrow = to_arrow(table, frame)
            write_atomically(path, lambda target, arrow=arrow: pq.write_table(arrow, target))
            hashes[table] = _content_hash(path)
            rejected = result.rejected[table]
            quarantine = layout.quarantine_file(market, table)
            if len(rejected):
                write_atomically(quarantine, rejected.to_parquet)
            else:
                # A quarantine file always describes the latest ingest of its table.
                quarantine.unlink(missing_ok=True)
            column = _time_column(table)
            times = frame[column].dropna() if column else pd.Series(dtype=object)
            tables[table] = TableSummary(
                rows=len(frame),
                quarantined=len(rejected),
                first=str(min(times)) if len(times) else None,
                last=str(max(times)) if len(times) else None,
                path=path,
                preview=frame.head(5),
            )
        calendar = _write_sessions(layout, result)
        manifest = {
            "market": market,
            "source": source,
            "synthetic": synthetic,
            **details,
            "files": result.sources,
            "rows": {table: summary.rows for table, summary in tables.items()},
            "quarantined": {table: summary.quarantined for table, summary in tables.items()},
            "span": {table: [summary.first, summary.last] for table, summary in tables.items()},
            "ignored_columns": result.ignored_columns,
            "ignored_files": result.ignored_files,
            "missing_sessions_accepted": {
                series: [day.isoformat() for day in days]
                for series, days in sorted(result.missing_sessions.items())
            },
            "sessions": calendar,
            "sha256": hashes,
        }
        text = json.dumps(manifest, indent=2, default=str) + "\n"
        write_atomically(
            layout.ingest_manifest(market), lambda target, t=text: target.write_text(t)
        )
        summaries.append(
            MarketSummary(
                market=market,
                source=source,
                synthetic=synthetic,
                tables=tables,
                missing_sessions=result.missing_sessions,
                ignored_columns=result.ignored_columns,
                session_span=calendar,
                ignored_files=result.ignored_files,
            )
        )
    return summaries


def ingest_files(
    layout: DataLayout,
    root: str | Path,
    markets: list[str] | None = None,
    *,
    on_bad_rows: OnBadRows = "fail",
    allow_missing_sessions: bool = False,
) -> list[MarketSummary]:
    root = Path(root).expanduser().resolve()
    results = []
    for market in dataset_markets(root, markets):
        result = validate_market(market, read_market_files(root, market))
        result.ignored_files = ignored_files(root, market)
        results.append(result)
    return write_results(
        layout,
        results,
        source="files",
        synthetic=False,
        details={"path": str(root), "on_bad_rows": on_bad_rows},
        on_bad_rows=on_bad_rows,
        allow_missing_sessions=allow_missing_sessions,
    )


def ingest_sample(
    layout: DataLayout,
    markets: list[str] | None = None,
    *,
    seed: int | None = None,
    start: date | None = None,
    end: date | None = None,
) -> list[MarketSummary]:
    from ingest import sample
    from ingest.calendars import check_market

    seed = sample.DEFAULT_SEED if seed is None else seed
    start = start or sample.DEFAULT_START
    end = end or sample.DEFAULT_END
    results = []
    for market in [check_market(m) for m in markets] if markets else list(MARKETS):
        frames = sample.generate_sample_market(market, seed=seed, start=start, end=end)
        result = validate_market(
            market, {table: (frame, f"sample/{market}/{table}") for table, frame in frames.items()}
        )
        if result.n_rejected or result.missing_sessions:
            # The generator must satisfy the contract it is checked against; this is a bug.
            raise RuntimeError(
                "sample generator broke the raw contract: "
                + "; ".join(describe_rejections([result]) + describe_missing_sessions(result))
            )
        results.append(result)
    return write_results(
        layout,
        results,
        source="sample",
        synthetic=True,
        details={"seed": seed, "start": start.isoformat(), "end": end.isoformat()},
    )


def ingested_markets(layout: DataLayout, requested: Sequence[str] | None = None) -> list[str]:
    """The markets a command works on: `requested` when every one of them has been ingested,
    else every ingested market. A market counts as ingested once its manifest
    (raw/<market>/_ingest.json, written last by an ingest) exists, so a dataset may hold one
    market or both, and markets are added one at a time."""
    present = [market for market in MARKETS if layout.ingest_manifest(market).is_file()]
    raw = layout.data_dir / "raw"
    if not present:
        raise ContractError(f"{raw}: nothing ingested yet; run `strat-llm ingest` first")
    if not requested:
        return present
    absent = [market for market in dict.fromkeys(requested) if market not in present]
    if absent:
        names = ", ".join(absent)
        raise ContractError(
            f"market {names} was not ingested (no {raw}/{absent[0]}/_ingest.json; ingested: "
            f"{', '.join(present)}): ingest it first (`strat-llm ingest --source files --path "
            f"DATASET --market {absent[0]}`, or `--source sample --market {absent[0]}`), or "
            f"leave out --market {absent[0]}"
        )
    return list(dict.fromkeys(requested))


def decision_sessions(layout: DataLayout) -> list[date]:
    """Every decision date: the union of the ingested markets' session calendars, in order (a
    holiday of one market is a session of the other). Empty when nothing is ingested."""
    if not any(layout.ingest_manifest(market).is_file() for market in MARKETS):
        return []
    days: set[date] = set()
    for market in ingested_markets(layout):
        table = pq.read_table(layout.raw_file(market, "sessions"), columns=["session_date"])
        days.update(table.column("session_date").to_pylist())
    return sorted(days)


def session_span(layout: DataLayout) -> tuple[date, date]:
    """First and last session over every ingested market's calendar."""
    ingested_markets(layout)  # nothing ingested: say so
    days = decision_sessions(layout)
    if not days:
        raise ContractError(
            f"{layout.data_dir / 'raw'}: the ingested markets have no sessions; ingest prices "
            "or a benchmark first"
        )
    return days[0], days[-1]


def read_manifest(layout: DataLayout, market: str) -> dict:
    path = layout.ingest_manifest(market)
    if not path.is_file():
        raise ContractError(
            f"{path}: no ingest manifest; run `strat-llm ingest` for {market} first"
        )
    return json.loads(path.read_text())


def ingest_id(manifest: dict) -> str:
    """A market's ingest as a short id: the hash of its raw tables' content hashes. The same
    data ingested again has the same id; anything that changes a raw table changes it."""
    tables = json.dumps(manifest["sha256"], sort_keys=True)
    return hashlib.sha256(f"{manifest['market']}|{tables}".encode()).hexdigest()[:16]


def market_ingest_id(layout: DataLayout, market: str) -> str | None:
    """The id of the market's latest ingest (None before any: a warehouse built elsewhere)."""
    try:
        return ingest_id(read_manifest(layout, market))
    except (ContractError, KeyError):
        return None


def format_summary(manifests: list[dict]) -> str:
    """Human summary of ingests, from their manifests (the persisted record of each ingest)."""
    lines = []
    top_level: dict[str, None] = {}  # the dataset's top-folder entries, once for all markets
    for manifest in manifests:
        market = manifest["market"]
        label = " (SYNTHETIC sample market)" if manifest["synthetic"] else ""
        lines.append(f"{market}: source={manifest['source']}{label}")
        for table, rows in manifest["rows"].items():
            first, last = manifest["span"][table]
            span = f"  {first} .. {last}" if first else ""
            quarantined = manifest["quarantined"][table]
            note = f"  quarantined {quarantined}" if quarantined else ""
            lines.append(f"  {table:<17} {rows:>8} rows{span}{note}")
        missing = manifest["missing_sessions_accepted"]
        if missing:
            count = sum(len(days) for days in missing.values())
            lines.append(
                f"  accepted {count} missing ticker-sessions in {len(missing)} series "
                f"(listed in raw/{market}/_ingest.json)"
            )
        for table, columns in manifest["ignored_columns"].items():
            lines.append(
                f"  ignored columns in {table}: {', '.join(columns)} (not in the contract)"
            )
        ignored = manifest.get("ignored_files", [])  # manifests before it was recorded lack it
        own = [name for name in ignored if name.startswith(f"{market}/")]
        top_level.update(dict.fromkeys(name for name in ignored if name not in own))
        if own:
            lines.append(f"  ignored files: {', '.join(own)} (not in the contract; not loaded)")
    if top_level:
        lines.append(
            f"ignored in the dataset folder: {', '.join(top_level)} (not a market folder; "
            f"markets are {', '.join(MARKETS)})"
        )
    return "\n".join(lines)
