"""Validate raw-contract tables row by row; every rejected row carries its file, row and reason.

Input frames hold the values as read (text from CSV, typed values from Parquet or the sample
generator); output frames are typed per `ingest.contract` with timestamps in UTC. Rows are
numbered from 1, header excluded, in the order of the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date

import numpy as np
import pandas as pd

from ingest.calendars import MARKET_CALENDARS, session_open_utc, sessions
from ingest.contract import BENCHMARK_KINDS, REQUIRED_TABLES, TABLE_NAMES, TABLES, Column, TableSpec

_DATE_PATTERN = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_OFFSET_PATTERN = r"(?:Z|[+-]\d{2}(?::?\d{2})?)$"
BENCHMARK_SERIES = "__benchmark__"


class ContractError(ValueError):
    """A problem with a whole file or dataset (not one row): nothing is loaded."""


@dataclass
class TableCheck:
    """One table while it is being checked: the values as read, as parsed, and per-row problems."""

    spec: TableSpec
    source: str
    original: pd.DataFrame
    parsed: pd.DataFrame
    problems: list[list[str]]
    ignored_columns: list[str] = field(default_factory=list)

    def reject(self, mask: np.ndarray | pd.Series, reason: str | pd.Series) -> None:
        positions = np.flatnonzero(np.asarray(mask, dtype=bool))
        for position in positions:
            text = reason if isinstance(reason, str) else str(reason.iloc[position])
            self.problems[position].append(text)

    @property
    def bad_mask(self) -> np.ndarray:
        return np.array([bool(found) for found in self.problems], dtype=bool)


@dataclass
class MarketResult:
    market: str
    tables: dict[str, pd.DataFrame]
    rejected: dict[str, pd.DataFrame]
    sources: dict[str, str]
    ignored_columns: dict[str, list[str]]
    missing_sessions: dict[str, list[date]]
    # Dataset entries no table reads, relative to the dataset folder (`cn/notes.txt`, `hk/`).
    ignored_files: list[str] = field(default_factory=list)

    @property
    def rows_in(self) -> int:
        return sum(len(self.tables[name]) + len(self.rejected[name]) for name in self.tables)

    @property
    def n_rejected(self) -> int:
        return sum(len(frame) for frame in self.rejected.values())


def _is_empty(values: pd.Series) -> pd.Series:
    text = values.astype("string")
    return values.isna() | text.str.strip().eq("").fillna(True)


def _shown(values: pd.Series) -> pd.Series:
    return "'" + values.astype("string").fillna("").str.slice(0, 60) + "'"


def _parse_text(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    parsed = values.astype("string").str.strip()
    parsed = parsed.mask(parsed.eq(""))
    return parsed.astype(object).where(parsed.notna(), None), pd.Series(False, index=values.index)


def _parse_float(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        parsed = values.astype("float64")
    else:
        parsed = pd.to_numeric(values.astype("string").str.strip(), errors="coerce")
        parsed = parsed.astype("float64")
    bad = (parsed.isna() & ~_is_empty(values)) | np.isinf(parsed.fillna(0.0))
    return parsed.where(~bad), bad


def _parse_int(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    parsed, bad = _parse_float(values)
    bad = bad | (parsed.notna() & (parsed != parsed.round()))
    return parsed.where(~bad).astype("Int64"), bad


def _parse_date(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    if pd.api.types.is_datetime64_any_dtype(values):
        stamps = values
    else:
        as_date = values.map(lambda value: isinstance(value, date))
        text = values.astype("string").str.strip()
        text = text.where(~as_date, values[as_date].map(lambda value: value.isoformat()))
        well_formed = text.str.match(_DATE_PATTERN).fillna(False).astype(bool)
        stamps = pd.to_datetime(text.where(well_formed), format="%Y-%m-%d", errors="coerce")
    parsed = stamps.dt.date.astype(object).where(stamps.notna(), None)
    bad = stamps.isna() & ~_is_empty(values)
    return parsed, bad


def _parse_timestamp(values: pd.Series) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Parse to UTC; returns (parsed, unparseable mask, no-offset mask)."""
    empty = _is_empty(values)
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        parsed = values.dt.tz_convert("UTC").astype("datetime64[us, UTC]")
        return parsed, pd.Series(False, index=values.index), pd.Series(False, index=values.index)
    if pd.api.types.is_datetime64_dtype(values):
        never = pd.Series(False, index=values.index)
        return pd.Series(pd.NaT, index=values.index, dtype="datetime64[us, UTC]"), never, ~empty
    text = values.map(lambda v: v.isoformat() if isinstance(v, pd.Timestamp | date) else v)
    text = text.astype("string").str.strip()
    has_offset = text.str.contains(_OFFSET_PATTERN, regex=True).fillna(False).astype(bool)
    parsed = pd.to_datetime(text.where(has_offset), utc=True, format="ISO8601", errors="coerce")
    parsed = parsed.astype("datetime64[us, UTC]")
    # Only a real timestamp lacks an offset; text such as "yesterday" is simply not a timestamp.
    without = ~empty & ~has_offset
    naive = pd.to_datetime(text.where(without), format="ISO8601", errors="coerce").notna()
    no_offset = without & naive
    unparseable = (has_offset & parsed.isna()) | (without & ~naive)
    return parsed, unparseable, no_offset


_KIND_HINTS = {
    "float": "a number",
    "int": "a whole number",
    "date": "a date as YYYY-MM-DD",
    "timestamp": "an ISO 8601 timestamp with a UTC offset, e.g. 2025-01-02T16:30:00-05:00",
}


def _parse_column(check: TableCheck, column: Column, values: pd.Series) -> pd.Series:
    name = column.name
    if column.kind == "text":
        parsed, bad = _parse_text(values)
    elif column.kind == "float":
        parsed, bad = _parse_float(values)
    elif column.kind == "int":
        parsed, bad = _parse_int(values)
    elif column.kind == "date":
        parsed, bad = _parse_date(values)
    else:
        parsed, bad, no_offset = _parse_timestamp(values)
        check.reject(
            no_offset,
            name + " " + _shown(values) + " has no UTC offset (naive timestamps are never assumed"
            " to be UTC; write e.g. 2025-01-02T16:30:00-05:00)",
        )
    if column.kind in _KIND_HINTS:
        check.reject(bad, name + " " + _shown(values) + f" is not {_KIND_HINTS[column.kind]}")
    if column.default is not None:
        parsed = parsed.fillna(column.default)
    elif not column.nullable:
        check.reject(_is_empty(values), f"{name} is empty")
    if column.minimum is not None:
        numbers = parsed.astype("float64")
        if column.minimum_exclusive:
            below, bound = numbers <= column.minimum, f"> {column.minimum:g}"
        else:
            below, bound = numbers < column.minimum, f">= {column.minimum:g}"
        check.reject(
            below.fillna(False), f"{name} " + numbers.astype("string") + f" is not {bound}"
        )
    return parsed


def parse_table(spec: TableSpec, frame: pd.DataFrame, source: str) -> TableCheck:
    """Check columns (file-level) and parse every cell (row-level) of one raw table."""
    frame = frame.reset_index(drop=True)
    present = [str(name).strip() for name in frame.columns]
    frame.columns = present
    missing = [name for name in spec.required_columns if name not in present]
    if missing:
        raise ContractError(
            f"{source}: missing required column(s) {', '.join(missing)}; found "
            f"{', '.join(present) or 'no columns'}; the {spec.name} table needs "
            f"{', '.join(spec.required_columns)}"
        )
    duplicated = sorted({name for name in present if present.count(name) > 1})
    if duplicated:
        raise ContractError(f"{source}: column(s) {', '.join(duplicated)} appear more than once")
    check = TableCheck(
        spec=spec,
        source=source,
        original=frame,
        parsed=pd.DataFrame(index=frame.index),
        problems=[[] for _ in range(len(frame))],
        ignored_columns=[name for name in present if name not in spec.column_names],
    )
    for column in spec.columns:
        if column.name in frame.columns:
            values = frame[column.name]
        else:
            values = pd.Series([None] * len(frame), index=frame.index, dtype=object)
        check.parsed[column.name] = _parse_column(check, column, values)
    _check_table_rules(check)
    return check


def _check_table_rules(check: TableCheck) -> None:
    parsed = check.parsed
    if check.spec.name == "prices":
        check.reject(
            parsed["high"] < parsed["low"],
            "high " + parsed["high"].astype("string") + " < low " + parsed["low"].astype("string"),
        )
        for name in ("open", "close"):
            outside = (parsed[name] < parsed["low"]) | (parsed[name] > parsed["high"])
            check.reject(
                outside & (parsed["high"] >= parsed["low"]),
                f"{name} "
                + parsed[name].astype("string")
                + " is outside low..high "
                + parsed["low"].astype("string")
                + ".."
                + parsed["high"].astype("string"),
            )
    if check.spec.name == "reports":
        _check_report_rules(check)
    if check.spec.name == "benchmark":
        _check_benchmark_kind(check)
    if check.spec.name == "risk_free":
        rate = parsed["annual_rate"]
        check.reject(
            (rate.abs() >= 1).fillna(False),
            "annual_rate "
            + rate.astype("string")
            + " is not a decimal fraction (write 0.045 for 4.5 %)",
        )

    if check.spec.name == "universe":
        joined, left = parsed["member_from"], parsed["member_to"]
        reversed_span = [
            start is not None and end is not None and start > end
            for start, end in zip(joined, left, strict=True)
        ]
        check.reject(
            np.array(reversed_span, dtype=bool),
            "member_from "
            + joined.astype("string")
            + " is after member_to "
            + left.astype("string")
            + " (membership runs from member_from to member_to, both inclusive)",
        )


def _check_benchmark_kind(check: TableCheck) -> None:
    """One kind for the whole file: a series that switches between a price and a total-return
    index mid-way has returns that mean different things."""
    if "kind" not in check.original.columns:
        return
    kinds = check.parsed["kind"]
    unknown = ~kinds.isin(BENCHMARK_KINDS)
    check.reject(
        unknown,
        "kind " + _shown(kinds) + f" is not one of {', '.join(BENCHMARK_KINDS)}",
    )
    empty = _is_empty(check.original["kind"])
    given = sorted(set(kinds[~empty & ~unknown]))
    if len(given) > 1 or (given and empty.any()):
        shown = given + (["(empty)"] if given and empty.any() else [])
        raise ContractError(
            f"{check.source}: column kind mixes {', '.join(shown)}; the whole file is one "
            f"index, either {' or '.join(BENCHMARK_KINDS)} (leave the column out for price)"
        )


def _check_report_rules(check: TableCheck) -> None:
    parsed = check.parsed
    published_day = pd.Series(
        [stamp.date() if pd.notna(stamp) else None for stamp in parsed["published_at"]],
        index=parsed.index,
        dtype=object,
    )
    premature = [
        pub is not None and end is not None and pub <= end
        for pub, end in zip(published_day, parsed["period_end"], strict=True)
    ]
    check.reject(
        np.array(premature, dtype=bool),
        "published_at "
        + parsed["published_at"].astype("string")
        + " is not after period_end "
        + parsed["period_end"].astype("string")
        + " (a report is announced after its period ends)",
    )
    # Restatements: same ticker and fiscal year, same period, strictly later publication.
    groups = parsed.dropna(subset=["ticker", "fiscal_year"]).groupby(
        ["ticker", "fiscal_year"], sort=False
    )
    for (ticker, fiscal_year), group in groups:
        if len(group) < 2:
            continue
        rows = group.index + 1
        if group["period_end"].nunique(dropna=True) > 1:
            ends = ", ".join(sorted({str(end) for end in group["period_end"].dropna()}))
            check.reject(
                parsed.index.isin(group.index),
                f"{ticker} fiscal_year {fiscal_year} has different period_end values ({ends}) in "
                f"rows {', '.join(map(str, rows))}; a restatement keeps the period and only "
                "adds a later published_at",
            )
        same_time = group[group["published_at"].notna()].groupby("published_at").groups
        for stamp, index in same_time.items():
            if len(index) > 1:
                check.reject(
                    parsed.index.isin(index),
                    f"{ticker} fiscal_year {fiscal_year} is published twice at {stamp} (rows "
                    f"{', '.join(str(i + 1) for i in index)}); a restatement must have a later "
                    "published_at than the report it restates",
                )


def _check_duplicate_keys(check: TableCheck) -> None:
    key = list(check.spec.key)
    keys = check.parsed[key]
    complete = keys.notna().all(axis=1)
    duplicated = complete & keys.duplicated(keep=False)
    if not duplicated.any():
        return
    rows_by_key: dict[tuple, list[int]] = {}
    for position in np.flatnonzero(duplicated.to_numpy()):
        rows_by_key.setdefault(tuple(keys.iloc[position]), []).append(position + 1)
    for position in np.flatnonzero(duplicated.to_numpy()):
        values = tuple(keys.iloc[position])
        others = [row for row in rows_by_key[values] if row != position + 1]
        shown = ", ".join(f"{name}={value}" for name, value in zip(key, values, strict=True))
        check.problems[position].append(
            f"duplicate key ({shown}) also at row(s) {', '.join(map(str, others))}"
        )


def _refuse_duplicate_tickers(universe: TableCheck) -> None:
    """A ticker listed twice is a whole-file problem: rejecting both rows would reject every
    row of every table that names the ticker, hundreds of errors hiding the one cause."""
    tickers = universe.parsed["ticker"]
    repeated = tickers[tickers.notna() & tickers.duplicated(keep=False)]
    if repeated.empty:
        return
    listed = [
        f"{ticker} (rows {', '.join(str(index + 1) for index in group.index)})"
        for ticker, group in repeated.groupby(repeated, sort=True)
    ]
    raise ContractError(
        f"{universe.source}: ticker(s) listed more than once: {'; '.join(listed)}; keep one row "
        "per ticker"
    )


def _check_tickers(check: TableCheck, tickers: set[str], universe_source: str) -> None:
    ticker = check.parsed["ticker"]
    unknown = ticker.notna() & ~ticker.isin(tickers)
    check.reject(unknown, "ticker " + _shown(ticker) + f" is not in {universe_source}")


def _check_sessions(check: TableCheck, market: str, column: str = "date") -> set[date]:
    dates = check.parsed[column].dropna()
    if dates.empty:
        return set()
    valid = set(sessions(market, min(dates), max(dates)))
    off = check.parsed[column].notna() & ~check.parsed[column].isin(valid)
    check.reject(
        off,
        f"{column} "
        + check.parsed[column].astype("string")
        + f" is not a {MARKET_CALENDARS[market]} trading session",
    )
    return valid


def _check_corporate_actions(actions: TableCheck, prices: TableCheck, market: str) -> None:
    """Events against the market: an ex-date is a session, an announcement comes no later than
    the ex-date's open, and a cash dividend is below the close it is paid out of."""
    _check_sessions(actions, market, "ex_date")
    events = actions.parsed
    opens = [
        session_open_utc(market, day) if day is not None and not bad else pd.NaT
        for day, bad in zip(events["ex_date"], actions.bad_mask, strict=True)
    ]
    opens = pd.Series(opens, index=events.index, dtype="datetime64[us, UTC]")
    late = (events["announced_at"] > opens).fillna(False)
    actions.reject(
        late,
        "announced_at "
        + events["announced_at"].astype("string")
        + " is after the ex-date's session open "
        + opens.astype("string")
        + " (an event is known, at the latest, when it takes effect)",
    )
    # The previous close: the ticker's last valid price row before the ex-date.
    bars = prices.parsed.loc[~prices.bad_mask, ["ticker", "date", "close"]].dropna()
    if bars.empty or events.empty:
        return
    bars = bars.assign(date=pd.to_datetime(bars["date"])).sort_values("date")
    lookup = events[["ticker", "ex_date"]].copy()
    lookup["position"] = np.arange(len(lookup))
    lookup = lookup.dropna().assign(ex_date=lambda frame: pd.to_datetime(frame["ex_date"]))
    lookup = lookup.sort_values("ex_date")
    found = pd.merge_asof(
        lookup,
        bars.rename(columns={"date": "previous_date", "close": "previous_close"}),
        left_on="ex_date",
        right_on="previous_date",
        by="ticker",
        allow_exact_matches=False,
    ).set_index("position")
    found = found.reindex(range(len(events))).set_axis(events.index)
    previous, previous_date = found["previous_close"], found["previous_date"]
    dividend = events["cash_dividend"].astype("float64")
    actions.reject(
        (dividend >= previous).fillna(False),
        "cash_dividend "
        + dividend.astype("string")
        + " is not below the previous close "
        + previous.astype("string")
        + " of "
        + previous_date.dt.date.astype("string"),
    )


def _missing_sessions(frame: pd.DataFrame, market: str) -> dict[str, list[date]]:
    """Sessions between each series' first and last row that have no row."""
    missing: dict[str, list[date]] = {}
    if frame.empty:
        return missing
    series = (
        frame.groupby("ticker")["date"]
        if "ticker" in frame
        else [(BENCHMARK_SERIES, frame["date"])]
    )
    for name, dates in series:
        present = set(dates)
        gaps = [day for day in sessions(market, min(present), max(present)) if day not in present]
        if gaps:
            missing[str(name)] = gaps
    return missing


def _finish(check: TableCheck, market: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    _check_duplicate_keys(check)
    bad = check.bad_mask
    clean = check.parsed.loc[~bad, check.spec.column_names].copy()
    clean.insert(0, "market", market)
    clean = clean.sort_values(list(check.spec.key), kind="stable").reset_index(drop=True)
    rejected = check.original.loc[bad].astype("string").copy()
    rejected.insert(0, "_reason", ["; ".join(check.problems[i]) for i in np.flatnonzero(bad)])
    rejected.insert(0, "_row", (np.flatnonzero(bad) + 1).astype("int64"))
    rejected.insert(0, "_source", check.source)
    return clean, rejected.reset_index(drop=True)


def _empty_frame(table: str) -> pd.DataFrame:
    return pd.DataFrame({name: [] for name in TABLES[table].required_columns}, dtype=str)


def validate_market(market: str, frames: dict[str, tuple[pd.DataFrame, str]]) -> MarketResult:
    """Validate one market's tables, given as {table: (frame as read, source name)}; an
    optional table that is not given is empty (source "")."""
    absent = [name for name in REQUIRED_TABLES if name not in frames]
    if absent:
        raise ContractError(f"{market}: missing table(s) {', '.join(absent)}")
    checks = {
        name: parse_table(TABLES[name], *frames.get(name, (_empty_frame(name), "")))
        for name in TABLE_NAMES
    }
    universe = checks["universe"]
    _refuse_duplicate_tickers(universe)
    known = set(universe.parsed.loc[~universe.bad_mask, "ticker"].dropna())
    for check in checks.values():
        if check.spec.references_universe:
            _check_tickers(check, known, universe.source)
    for name in ("prices", "benchmark"):
        _check_sessions(checks[name], market)
    _check_corporate_actions(checks["corporate_actions"], checks["prices"], market)
    tables: dict[str, pd.DataFrame] = {}
    rejected: dict[str, pd.DataFrame] = {}
    for name, check in checks.items():
        tables[name], rejected[name] = _finish(check, market)
    missing = _missing_sessions(tables["prices"], market)
    missing.update(_missing_sessions(tables["benchmark"], market))
    return MarketResult(
        market=market,
        tables=tables,
        rejected=rejected,
        sources={name: check.source for name, check in checks.items() if check.source},
        ignored_columns={
            name: c.ignored_columns for name, c in checks.items() if c.ignored_columns
        },
        missing_sessions=missing,
    )


def describe_rejections(results: list[MarketResult], limit: int = 20) -> list[str]:
    """One line per rejected row, 'file row N: reason', the first `limit` of them."""
    lines: list[str] = []
    for result in results:
        for frame in result.rejected.values():
            for source, row, reason in frame[["_source", "_row", "_reason"]].itertuples(
                index=False
            ):
                if len(lines) >= limit:
                    return lines
                lines.append(f"{source} row {row}: {reason}")
    return lines


def describe_missing_sessions(result: MarketResult, limit: int = 10) -> list[str]:
    """Group missing sessions by the set of dates so common gaps read as one line."""
    by_dates: dict[tuple[date, ...], list[str]] = {}
    for series, gaps in sorted(result.missing_sessions.items()):
        by_dates.setdefault(tuple(gaps), []).append(series)
    lines = []
    for gaps, names in sorted(by_dates.items(), key=lambda item: (-len(item[1]), item[0])):
        shown_dates = ", ".join(day.isoformat() for day in gaps[:8])
        if len(gaps) > 8:
            shown_dates += f", ... ({len(gaps)} sessions)"
        shown_names = ", ".join(names[:limit]) + (
            f" and {len(names) - limit} more" if len(names) > limit else ""
        )
        lines.append(f"{result.market}: {len(names)} series ({shown_names}) miss {shown_dates}")
    return lines
