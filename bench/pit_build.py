"""Benchmark: build `pit_snapshots` with dbt (set-based SQL) against a naive pandas loop.

A synthetic 500-ticker US market with 20 news items per ticker and session is written as raw
Parquet (DESIGN §4) at each size, then:

1. dbt: `dbt seed` + `dbt run --select +pit_snapshots` as subprocesses into a new warehouse.
   SQL time is the sum of the nodes' `execution_time` (run_results.json); start-up/overhead is
   the wall time in which no node ran (Python start, project parse, connections). The
   profile runs one node at a time (DuckDB itself uses every core), so the sum and the span
   in which SQL ran agree; with more dbt threads nodes would overlap and the sum exceed it.
2. naive: one pandas step per decision date, the way a researcher writes it first (filter the
   whole tables by the date, take the tails, group), building the whole snapshot (price
   history, the 12 features, news, report with its growth, S1-S4 with the news tone), each
   date's snapshots written to Parquet.
3. cross-check: every naive snapshot against `pit_snapshots` (cutoff, price history, every
   feature and signal, news ids, report id and growth). A mismatch is printed loudly and
   fails the run (exit 1).

A few edge rows are planted (news and reports exactly at a cutoff, at the end of the news
lookback, two fiscal years filed at one instant) so the cross-check tests the boundaries.

Run: `.venv/bin/python bench/pit_build.py [--sizes 252,750] [--repeats 3] [--keep DIR]`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import yaml

from ingest.calendars import session_open_utc, session_table, sessions
from ingest.contract import TABLES
from ingest.load import SESSIONS_SCHEMA

REPO = Path(__file__).resolve().parents[1]
DBT_DIR = REPO / "dbt"
DBT = str(Path(sys.executable).with_name("dbt"))

MARKET = "us"
TICKERS = 500
QUIET_TICKERS = 4  # the last tickers get one item per session plus planted boundary items
NEWS_PER_SESSION = 20
LAST_SESSION = date(2025, 12, 31)
SEED = 20250101
US = 1_000_000  # microseconds per second
DAY_US = 86_400 * US

PHRASES = (
    "beats estimates",
    "misses estimates",
    "announces partnership",
    "faces regulatory probe",
    "holds annual meeting",
    "updates guidance",
    "posts record quarter",
    "cuts outlook",
    "wins contract",
    "issues statement",
    "gets analyst upgrade",
    "gets analyst downgrade",
    "names new CFO",
    "expands buyback",
    "reports delay in product launch",
    "comments on market conditions",
)
SOURCES = ("wire-a", "wire-b", "newsdesk", "press-release", "blog")
SECTORS = ("tech", "health", "energy", "finance", "industrials", "consumer")


# --------------------------------------------------------------------------------------------
# Settings and small helpers
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PitVars:
    """The dbt vars the snapshots depend on, read from dbt_project.yml (one source of truth)."""

    cutoff_minutes: int
    price_sessions: int
    lookback_days: int
    max_items: int
    rsi_entry: float
    rsi_exit: float
    s4_window_days: int
    s4_surprise: float  # a fraction: s4_surprise_pct / 100, as the SQL computes it
    s4_news_tone: int
    # The U.S. tone lexicon (whole English words): the bench market is U.S.
    positive_terms: tuple[str, ...]
    negative_terms: tuple[str, ...]

    @classmethod
    def from_project(cls) -> PitVars:
        project = yaml.safe_load((DBT_DIR / "dbt_project.yml").read_text())["vars"]
        return cls(
            cutoff_minutes=int(project["cutoff_buffer_minutes"]),
            price_sessions=int(project["price_history_sessions"]),
            lookback_days=int(project["news_lookback_days"]),
            max_items=int(project["news_max_items"]),
            rsi_entry=float(project["s3_rsi_entry"]),
            rsi_exit=float(project["s3_rsi_exit"]),
            s4_window_days=int(project["s4_window_days"]),
            s4_surprise=project["s4_surprise_pct"] / 100,
            s4_news_tone=int(project["s4_news_tone"]),
            positive_terms=tuple(project["s4_positive_terms"]),
            negative_terms=tuple(project["s4_negative_terms"]),
        )

    def word_pattern(self, terms: tuple[str, ...]) -> re.Pattern[str]:
        """The tone words as whole words in any case (the SQL's word_pattern with 'i')."""
        return re.compile(rf"\b(?:{'|'.join(terms)})\b", re.IGNORECASE)


def say(message: str) -> None:
    print(f"[{datetime.now():%H:%M:%S}] {message}", flush=True)


@contextmanager
def stopwatch() -> Iterator[list[float]]:
    """Yields a one-item list that holds the elapsed seconds once the block ends."""
    elapsed = [0.0]
    start = time.perf_counter()
    try:
        yield elapsed
    finally:
        elapsed[0] = time.perf_counter() - start


def ticker_names() -> list[str]:
    return [f"T{index:03d}" for index in range(TICKERS)]


def cutoff_of(day: date, pit: PitVars) -> pd.Timestamp:
    return session_open_utc(MARKET, day) - pd.Timedelta(minutes=pit.cutoff_minutes)


def to_us(timestamp: pd.Timestamp) -> int:
    return int(timestamp.value // 1_000)


def utc_midnight_us(day: date) -> int:
    return to_us(pd.Timestamp(day, tz="UTC"))


def timestamps(micros: np.ndarray) -> pa.Array:
    return pa.array(micros, type=pa.timestamp("us", tz="UTC"))


def pick(values: tuple[str, ...], rng: np.random.Generator, size: int) -> pa.Array:
    """`size` strings drawn from `values` (vectorised: a take from a small dictionary)."""
    return pc.take(pa.array(values), pa.array(rng.integers(0, len(values), size)))


def numbered(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    digits = pc.utf8_lpad(pc.cast(pa.array(numbers), pa.string()), width, "0")
    return pc.binary_join_element_wise(prefix, digits, "")


def as_arrow(values: object, kind: pa.DataType) -> pa.Array:
    if isinstance(values, pa.Array):
        return values.cast(kind)
    return pa.array(values, kind)


def write_table(data_dir: Path, name: str, columns: dict[str, object]) -> int:
    """Write one raw table with the contract's exact schema (the market column first)."""
    schema = SESSIONS_SCHEMA if name == "sessions" else TABLES[name].arrow_schema()
    # An optional column the bench does not fill is empty, as when a file leaves it out.
    optional = (
        set()
        if name == "sessions"
        else set(TABLES[name].column_names) - set(TABLES[name].required_columns)
    )
    length = len(next(iter(columns.values())))
    arrays = [pa.repeat(pa.scalar(MARKET), length)]
    arrays += [
        pa.nulls(length, column.type)
        if column.name in optional and column.name not in columns
        else as_arrow(columns[column.name], column.type)
        for column in list(schema)[1:]
    ]
    table = pa.Table.from_arrays(arrays, schema=schema)
    path = data_dir / "raw" / MARKET / f"{name}.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return table.num_rows


# --------------------------------------------------------------------------------------------
# Synthetic raw data (numpy, seeded)
# --------------------------------------------------------------------------------------------


@dataclass
class Dataset:
    data_dir: Path
    trading_days: list[date]
    decisions: list[date]
    rows: dict[str, int] = field(default_factory=dict)


def decision_days(trading_days: list[date]) -> list[date]:
    """Decisions: every session after the first price, through the first session after the last."""
    calendar = list(session_table(MARKET, trading_days[0], trading_days[-1])["session_date"])
    return calendar[1 : len(trading_days) + 1]


def generate(data_dir: Path, n_sessions: int, pit: PitVars) -> Dataset:
    rng = np.random.default_rng([SEED, n_sessions])
    days = sessions(MARKET, date(2015, 1, 1), LAST_SESSION)[-n_sessions:]
    dataset = Dataset(data_dir, days, decision_days(days))
    rows = dataset.rows
    rows["universe"] = write_universe(data_dir, rng)
    rows["prices"] = write_prices(data_dir, days, rng)
    rows["benchmark"] = write_benchmark(data_dir, days, rng)
    rows["corporate_actions"] = write_corporate_actions(data_dir, days, pit)
    rows["risk_free"] = write_table(data_dir, "risk_free", {"date": [], "annual_rate": []})
    rows["news"] = write_news(data_dir, dataset, pit, rng)
    rows["reports"] = write_reports(data_dir, dataset, pit, rng)
    frame = session_table(MARKET, days[0], days[-1])
    rows["sessions"] = write_table(data_dir, "sessions", {"session_date": frame["session_date"]})
    return dataset


def write_universe(data_dir: Path, rng: np.random.Generator) -> int:
    tickers = ticker_names()
    return write_table(
        data_dir,
        "universe",
        {
            "ticker": tickers,
            "name": [f"Synthetic {ticker} Inc" for ticker in tickers],
            "sector": pick(SECTORS, rng, TICKERS),
            "price_limit_pct": pa.nulls(TICKERS, pa.float64()),
        },
    )


def random_walk(rng: np.random.Generator, shape: tuple[int, ...], start: np.ndarray) -> np.ndarray:
    returns = rng.normal(0.0003, 0.02, shape)
    return start * np.exp(np.cumsum(returns, axis=0))


@dataclass(frozen=True)
class PlantedAction:
    """A corporate action of ticker `ticker` on the session at `at` x the sessions; announced
    `announced` before the ex-date's cutoff (negative: after it), or never (None)."""

    ticker: int
    at: float
    split_ratio: float
    dividend_share: float  # of the previous close
    announced: pd.Timedelta | None


# A split known days ahead, an unannounced dividend, a bonus issue with cash announced just
# after the cutoff (known only from the next decision), and a dividend announced exactly at it.
PLANTED_ACTIONS = (
    PlantedAction(0, 1 / 3, 2.0, 0.0, pd.Timedelta(days=5)),
    PlantedAction(1, 1 / 2, 1.0, 0.03, None),
    PlantedAction(2, 2 / 3, 1.8, 0.01, -pd.Timedelta(minutes=10)),
    PlantedAction(3, 3 / 4, 1.0, 0.02, pd.Timedelta(0)),
)


def planted_index(action: PlantedAction, n_days: int) -> int:
    return max(1, int(action.at * n_days))


def write_prices(data_dir: Path, days: list[date], rng: np.random.Generator) -> int:
    n_days = len(days)
    close = random_walk(rng, (n_days, TICKERS), rng.uniform(10, 300, TICKERS))
    previous = np.vstack([close[:1], close[:-1]])
    open_ = previous * np.exp(rng.normal(0, 0.005, close.shape))
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.02, close.shape))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.02, close.shape))
    volume = np.round(rng.lognormal(13, 0.5, close.shape))
    # Prices as traded: from each ex-date on, the raw series drops by the action's factor.
    for action in PLANTED_ACTIONS:
        index = planted_index(action, n_days)
        factor = (1 - action.dividend_share) / action.split_ratio
        for bars in (open_, high, low, close):
            bars[index:, action.ticker] *= factor
        volume[index:, action.ticker] = np.round(volume[index:, action.ticker] * action.split_ratio)
    # Rows ticker by ticker, dates ascending: arrays are (day, ticker), so transpose first.
    return write_table(
        data_dir,
        "prices",
        {
            "ticker": np.repeat(np.array(ticker_names()), n_days),
            "date": np.tile(np.array(days, dtype="datetime64[D]"), TICKERS),
            "open": open_.T.ravel(),
            "high": high.T.ravel(),
            "low": low.T.ravel(),
            "close": close.T.ravel(),
            "volume": volume.T.ravel(),
            "adj_factor": np.ones(n_days * TICKERS),
        },
    )


def write_benchmark(data_dir: Path, days: list[date], rng: np.random.Generator) -> int:
    close = random_walk(rng, (len(days),), np.array(4000.0))
    return write_table(
        data_dir,
        "benchmark",
        {
            "date": np.array(days, dtype="datetime64[D]"),
            "close": close,
            "kind": np.full(len(days), "price"),
        },
    )


def write_corporate_actions(data_dir: Path, days: list[date], pit: PitVars) -> int:
    """The planted actions; a dividend is its share of the raw close before the ex-date (read
    back from the written prices, so it is exact)."""
    prices = read_raw(data_dir, "prices", ["ticker", "date", "close"])
    names = ticker_names()
    columns: dict[str, list] = {name: [] for name in TABLES["corporate_actions"].column_names}
    for action in PLANTED_ACTIONS:
        index = planted_index(action, len(days))
        ex_date = days[index]
        ticker = prices[prices["ticker"] == names[action.ticker]]
        previous = pd.to_datetime(ticker["date"]) == pd.Timestamp(days[index - 1])
        before = float(ticker.loc[previous, "close"].iloc[0])
        announced = None
        if action.announced is not None:
            announced = to_us(cutoff_of(ex_date, pit) - action.announced)
        columns["ticker"].append(names[action.ticker])
        columns["ex_date"].append(ex_date)
        columns["split_ratio"].append(action.split_ratio)
        columns["cash_dividend"].append(before * action.dividend_share)
        columns["announced_at"].append(announced)
    columns["announced_at"] = pa.array(columns["announced_at"], pa.timestamp("us", tz="UTC"))
    return write_table(data_dir, "corporate_actions", columns)


def news_counts(n_sessions: int) -> np.ndarray:
    counts = np.full(TICKERS, NEWS_PER_SESSION * n_sessions)
    counts[TICKERS - QUIET_TICKERS :] = n_sessions
    return counts


def boundary_news(dataset: Dataset, pit: PitVars) -> tuple[np.ndarray, np.ndarray]:
    """Planted items for the quiet tickers at every third decision: at the cutoff (not visible
    yet), 1 µs before it, exactly at the lookback start (visible) and 1 µs before that (not)."""
    lookback = pit.lookback_days * DAY_US
    offsets = np.array([0, -1, -lookback, -lookback - 1])
    cutoffs = np.array([to_us(cutoff_of(day, pit)) for day in dataset.decisions[::3]])
    moments = (cutoffs[:, None] + offsets[None, :]).ravel()
    quiet = np.arange(TICKERS - QUIET_TICKERS, TICKERS)
    return np.repeat(quiet, len(moments)), np.tile(moments, len(quiet))


def write_news(data_dir: Path, dataset: Dataset, pit: PitVars, rng: np.random.Generator) -> int:
    days = dataset.trading_days
    first = utc_midnight_us(days[0]) - (pit.lookback_days + 1) * DAY_US
    last = utc_midnight_us(days[-1]) + 2 * DAY_US
    counts = news_counts(len(days))
    tickers = np.repeat(np.arange(TICKERS), counts)
    # Uniform over the whole span, nights and weekends included, to the second.
    published = first + rng.integers(0, (last - first) // US, tickers.size) * US
    edge_tickers, edge_published = boundary_news(dataset, pit)
    tickers = np.concatenate([tickers, edge_tickers])
    published = np.concatenate([published, edge_published])
    order = np.argsort(published, kind="stable")  # a feed: in publication order
    tickers, published = tickers[order], published[order]
    size = tickers.size
    ticker_text = pc.take(pa.array(ticker_names()), pa.array(tickers))
    return write_table(
        data_dir,
        "news",
        {
            "news_id": numbered("N", np.arange(size), 9),
            "ticker": ticker_text,
            "published_at": timestamps(published),
            "headline": pc.binary_join_element_wise(ticker_text, pick(PHRASES, rng, size), " "),
            "body": pc.binary_join_element_wise(
                pick(PHRASES, rng, size), pick(PHRASES, rng, size), "; "
            ),
            "source": pick(SOURCES, rng, size),
        },
    )


def annual_reports(dataset: Dataset, pit: PitVars, rng: np.random.Generator) -> pd.DataFrame:
    """One report per ticker and fiscal year, filed 20-100 days after January 20 of the next
    year; 15 % restated 20-420 days later (some after the next year's report)."""
    years = np.arange(dataset.trading_days[0].year - 2, dataset.trading_days[-1].year)
    ticker = np.repeat(np.arange(TICKERS), years.size)
    fiscal_year = np.tile(years, TICKERS)
    filed = np.array([utc_midnight_us(date(int(y) + 1, 1, 20)) for y in fiscal_year])
    filed += rng.integers(20 * 86_400, 100 * 86_400, fiscal_year.size) * US
    income = rng.normal(100, 40, fiscal_year.size) * 1e6
    restated = rng.random(fiscal_year.size) < 0.15
    frame = pd.DataFrame(
        {
            "ticker": np.concatenate([ticker, ticker[restated]]),
            "fiscal_year": np.concatenate([fiscal_year, fiscal_year[restated]]),
            "published": np.concatenate(
                [filed, filed[restated] + rng.integers(20, 420, restated.sum()) * DAY_US]
            ),
            "net_income": np.concatenate([income, income[restated] * 0.8]),
            "version": np.repeat([0, 1], [fiscal_year.size, restated.sum()]),
        }
    )
    return pd.concat([frame, boundary_reports(dataset, pit, years)], ignore_index=True)


def boundary_reports(dataset: Dataset, pit: PitVars, years: np.ndarray) -> pd.DataFrame:
    """Planted reports: the last quiet ticker files a report exactly at a cutoff (visible from
    the next decision), the one before it files two fiscal years at the same instant (the
    higher year must win)."""
    at_cutoff = to_us(cutoff_of(dataset.decisions[len(dataset.decisions) // 2], pit))
    together = to_us(cutoff_of(dataset.decisions[len(dataset.decisions) // 3], pit)) - 3600 * US
    return pd.DataFrame(
        {
            "ticker": [TICKERS - 1, TICKERS - 2, TICKERS - 2],
            "fiscal_year": [int(years[-1]), int(years[-1]) + 1, int(years[-1]) + 2],
            "published": [at_cutoff, together, together],
            "net_income": [1e6, 2e6, 3e6],
            "version": [7, 7, 7],
        }
    )


def write_reports(data_dir: Path, dataset: Dataset, pit: PitVars, rng: np.random.Generator) -> int:
    frame = annual_reports(dataset, pit, rng)
    size = len(frame)
    tickers = np.array(ticker_names())[frame["ticker"]]
    keys = zip(tickers, frame["fiscal_year"], frame["version"], strict=True)
    report_ids = [f"R-{ticker}-{year}-{version}" for ticker, year, version in keys]
    revenue = frame["net_income"].to_numpy() * rng.uniform(5, 15, size)
    assets = revenue * rng.uniform(1, 3, size)
    return write_table(
        data_dir,
        "reports",
        {
            "report_id": report_ids,
            "ticker": tickers,
            "fiscal_year": frame["fiscal_year"].to_numpy(),
            "period_end": np.array(
                [f"{year}-12-31" for year in frame["fiscal_year"]], dtype="datetime64[D]"
            ),
            "published_at": timestamps(frame["published"].to_numpy()),
            "revenue": revenue,
            "net_income": frame["net_income"].to_numpy(),
            "total_assets": assets,
            "total_equity": assets * rng.uniform(0.2, 0.6, size),
            "eps": frame["net_income"].to_numpy() / 1e8,
            "operating_cash_flow": frame["net_income"].to_numpy() * rng.uniform(0.8, 1.4, size),
            "summary": [f"Annual report {report_id} (synthetic)" for report_id in report_ids],
        },
    )


# --------------------------------------------------------------------------------------------
# 1. dbt
# --------------------------------------------------------------------------------------------


@dataclass
class DbtTiming:
    wall_s: float = 0.0  # both dbt processes, start to exit
    sql_s: float = 0.0  # sum of the nodes' execution_time
    span_s: float = 0.0  # time with at least one node running (threads could overlap nodes)
    nodes: dict[str, float] = field(default_factory=dict)

    @property
    def startup_s(self) -> float:
        """Process start, project parse, connections: the wall time no node was running."""
        return self.wall_s - self.span_s


def busy_seconds(intervals: list[tuple[datetime, datetime]]) -> float:
    """Length of the union of the intervals."""
    total, reach = 0.0, None
    for start, end in sorted(intervals):
        if reach is not None and start < reach:
            start = reach
        if end > start:
            total += (end - start).total_seconds()
            reach = end if reach is None else max(reach, end)
    return total


def node_interval(node: dict) -> tuple[datetime, datetime]:
    steps = node["timing"]
    start = min(datetime.fromisoformat(step["started_at"]) for step in steps)
    return start, max(datetime.fromisoformat(step["completed_at"]) for step in steps)


def dbt(args: list[str], env: dict[str, str], timing: DbtTiming, target: Path) -> None:
    command = [DBT, *args, "--profiles-dir", ".", "--target-path", str(target)]
    command += ["--log-path", str(target)]
    with stopwatch() as elapsed:
        result = subprocess.run(command, cwd=DBT_DIR, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"dbt {' '.join(args)} failed:\n{result.stdout[-6000:]}{result.stderr[-3000:]}")
    timing.wall_s += elapsed[0]
    nodes = json.loads((target / "run_results.json").read_text())["results"]
    for node in nodes:
        timing.nodes[node["unique_id"].split(".")[-1]] = node["execution_time"]
        timing.sql_s += node["execution_time"]
    timing.span_s += busy_seconds([node_interval(node) for node in nodes if node["timing"]])


def build_with_dbt(dataset: Dataset) -> tuple[DbtTiming, int]:
    """One full build into a new warehouse; returns its timing and the snapshot count."""
    data_dir = dataset.data_dir.resolve()
    warehouse = data_dir / "warehouse.duckdb"
    for stale in (warehouse, warehouse.with_name(warehouse.name + ".wal")):
        stale.unlink(missing_ok=True)
    env = {
        **os.environ,
        "STRAT_LLM_DATA": str(data_dir),
        "STRAT_LLM_WAREHOUSE": str(warehouse),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "DBT_LOG_PATH": str(data_dir / "dbt_logs"),
    }
    # A private target folder: others may run dbt in the project at the same time.
    target = data_dir / "dbt_target"
    timing = DbtTiming()
    dbt(["seed"], env, timing, target)
    dbt(["run", "--select", "+pit_snapshots"], env, timing, target)
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        snapshots = connection.sql("select count(*) from pit_snapshots").fetchall()[0][0]
    return timing, snapshots


def fastest_dbt_build(dataset: Dataset, repeats: int) -> tuple[DbtTiming, int]:
    """The fastest of `repeats` full builds: the machine may be shared, and the minimum is the
    least disturbed measurement."""
    builds = []
    for attempt in range(1, repeats + 1):
        timing, snapshots = build_with_dbt(dataset)
        say(
            f"  dbt build {attempt}/{repeats}: {timing.wall_s:.1f} s wall, {timing.sql_s:.1f} s"
            f" SQL (nodes summed), {timing.span_s:.1f} s with a node running"
        )
        builds.append((timing, snapshots))
    return min(builds, key=lambda build: build[0].wall_s)


# --------------------------------------------------------------------------------------------
# 2. The naive pandas loop
# --------------------------------------------------------------------------------------------

PRICE_COLUMNS = ["date", "open", "high", "low", "close", "volume"]
NEWS_COLUMNS = ["published_at", "news_id", "headline", "source"]
REPORT_COLUMNS = ["report_id", "fiscal_year", "published_at", "net_income"]
FEATURE_SESSIONS = 61  # the longest feature window: ma_60; ret_20d and the prior-20 windows need 21
ACTION_COLUMNS = ["ticker", "ex_date", "split_ratio", "cash_dividend", "announced_at"]
ACTION_FACTORS = ["price_factor", "split_ratio"]


def read_raw(data_dir: Path, table: str, columns: list[str]) -> pd.DataFrame:
    return pd.read_parquet(data_dir / "raw" / MARKET / f"{table}.parquet", columns=columns)


def load_inputs(
    data_dir: Path,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame, list[date]]:
    prices = read_raw(data_dir, "prices", ["ticker", *PRICE_COLUMNS, "adj_factor"])
    prices["date"] = pd.to_datetime(prices["date"])
    prices = prices.sort_values(["ticker", "date"], ignore_index=True)
    news = read_raw(data_dir, "news", ["ticker", *NEWS_COLUMNS])
    reports = with_growth(read_raw(data_dir, "reports", ["ticker", *REPORT_COLUMNS]))
    actions = corporate_actions(read_raw(data_dir, "corporate_actions", ACTION_COLUMNS), prices)
    calendar = read_raw(data_dir, "sessions", ["session_date"])["session_date"].sort_values()
    days = list(calendar)
    first, last = prices["date"].min().date(), prices["date"].max().date()
    pairs = zip(days[1:], days[:-1], strict=True)
    decisions = [day for day, before in pairs if day > first and before <= last]
    return prices, news, reports, actions, decisions


def corporate_actions(actions: pd.DataFrame, prices: pd.DataFrame) -> pd.DataFrame:
    """Each action with its price factor (1 - dividend / the raw close before the ex-date) /
    split, and the moment it is known: announced_at, else the ex-date's session open (from
    the exchange calendar, not the warehouse's market_rules seed)."""
    rows = []
    for action in actions.itertuples(index=False):
        ex_date = pd.Timestamp(action.ex_date)
        earlier = prices[(prices["ticker"] == action.ticker) & (prices["date"] < ex_date)]
        share = action.cash_dividend / earlier["close"].iloc[-1] if len(earlier) else 0.0
        known = action.announced_at
        if pd.isna(known):
            known = session_open_utc(MARKET, ex_date.date())
        rows.append(
            {
                "ticker": action.ticker,
                "ex_date": ex_date,
                "known_from": pd.Timestamp(known),
                "price_factor": (1 - share) / action.split_ratio,
                "split_ratio": action.split_ratio,
            }
        )
    return pd.DataFrame(rows, columns=["ticker", "ex_date", "known_from", *ACTION_FACTORS])


def on_decision_basis(
    recent: pd.DataFrame, actions: pd.DataFrame, day: date, cutoff: pd.Timestamp
) -> pd.DataFrame:
    """The visible bars as the decision of `day` is shown them: each raw bar times the factors
    of the actions known at the cutoff that took effect after it (ex_date <= day), and times its
    adj_factor over the ticker's last visible adj_factor. Everything else is computed from
    these levels directly."""
    known = actions[(actions["ex_date"] <= pd.Timestamp(day)) & (actions["known_from"] < cutoff)]
    price = recent["adj_factor"] / recent.groupby("ticker")["adj_factor"].transform("last")
    shares = pd.Series(1.0, index=recent.index)
    for action in known.itertuples(index=False):
        before = (recent["ticker"] == action.ticker) & (recent["date"] < action.ex_date)
        price = price.where(~before, price * action.price_factor)
        shares = shares.where(~before, shares * action.split_ratio)
    shown = recent.copy()
    for column in ["open", "high", "low", "close"]:
        shown[column] = recent[column] * price
    shown["volume"] = recent["volume"] * shares
    return shown


def with_growth(reports: pd.DataFrame) -> pd.DataFrame:
    """Each report's net income growth against the prior fiscal year's latest figure published
    at or before it (a property of the report, computed once)."""
    reports = reports.assign(prior_year=reports["fiscal_year"] - 1).sort_values("published_at")
    prior = reports[["ticker", "fiscal_year", "published_at", "net_income"]].rename(
        columns={"fiscal_year": "prior_year", "net_income": "prior_net_income"}
    )
    merged = pd.merge_asof(
        reports, prior, on="published_at", by=["ticker", "prior_year"], direction="backward"
    )
    prior_income = merged["prior_net_income"].where(merged["prior_net_income"] != 0)
    merged["net_income_growth"] = (merged["net_income"] - prior_income) / prior_income.abs()
    return merged.drop(columns=["prior_year", "prior_net_income"])


def price_features(window: pd.DataFrame, sessions_seen: pd.Series) -> pd.DataFrame:
    """Every feature of int_price_features for the last visible bar of each ticker, with the
    same minimum-history rules, from its last FEATURE_SESSIONS bars (on one basis)."""
    window = window.copy()
    closes = window.groupby("ticker")["close"]
    window["ret_1d"] = closes.pct_change()
    window["lag_1"] = closes.shift(1)
    window["lag_5"] = closes.shift(5)
    window["lag_20"] = closes.shift(20)
    change = closes.diff()
    window["gain"] = change.clip(lower=0)
    window["loss"] = (-change).clip(lower=0)
    last = window.groupby("ticker").tail(1).set_index("ticker")

    def newest(rows: int) -> pd.core.groupby.DataFrameGroupBy:
        return window.groupby("ticker").tail(rows).groupby("ticker")

    def before_last(rows: int) -> pd.core.groupby.DataFrameGroupBy:
        preceding = window.groupby("ticker").tail(rows + 1).groupby("ticker").head(rows)
        return preceding.groupby("ticker")

    last_14 = newest(14)[["gain", "loss"]].mean()
    previous_14 = before_last(14)[["gain", "loss"]].mean()
    avg_gain, avg_loss = last_14["gain"], last_14["loss"]
    last_20 = newest(20)
    prior_20 = before_last(20)
    prior_volume = prior_20["volume"].mean()
    features = pd.DataFrame(
        {
            "last_close": last["close"],
            "ret_1d": last["ret_1d"],
            "ret_5d": last["close"] / last["lag_5"] - 1,
            "ret_20d": last["close"] / last["lag_20"] - 1,
            "ma_5": newest(5)["close"].mean(),
            "ma_20": last_20["close"].mean(),
            "ma_60": newest(60)["close"].mean(),
            # The session before the last, for S2's and S3's crossovers (not compared).
            "ma_5_previous": before_last(5)["close"].mean(),
            "ma_20_previous": prior_20["close"].mean(),
            "ma_60_previous": before_last(60)["close"].mean(),
            "close_previous": last["lag_1"],
            "rsi_14_previous": (
                100.0 - 100.0 / (1.0 + previous_14["gain"] / previous_14["loss"])
            ).where(previous_14["loss"] != 0, 100.0),
            "rsi_14": (100.0 - 100.0 / (1.0 + avg_gain / avg_loss)).where(avg_loss != 0, 100.0),
            "volatility_20d": last_20["ret_1d"].std(),
            "volume_ratio_20d": last["volume"] / prior_volume.where(prior_volume != 0),
            "prior_high_20": prior_20["high"].max(),
            "prior_low_10": before_last(10)["low"].min(),
        }
    )
    fewest_sessions = {
        "ret_5d": 6, "ma_5": 5, "ma_20": 20, "ma_60": 60, "rsi_14": 15, "ma_5_previous": 6,
        "ma_20_previous": 21, "ma_60_previous": 61, "rsi_14_previous": 16,
    }  # fmt: skip
    for column, fewest in fewest_sessions.items():
        features.loc[sessions_seen < fewest, column] = np.nan
    for column in ["ret_20d", "volatility_20d", "volume_ratio_20d", "prior_high_20"]:
        features.loc[sessions_seen <= 20, column] = np.nan
    features.loc[sessions_seen <= 10, "prior_low_10"] = np.nan
    return features


def strategy_signals(snapshot: pd.DataFrame, cutoff: pd.Timestamp, pit: PitVars) -> pd.DataFrame:
    """S1-S4 as int_strategy_signals words them; a comparison with a missing value is false,
    which is what the SQL's coalesce(..., false) gives."""
    recent = snapshot["report_published_at"] >= cutoff - pd.Timedelta(days=pit.s4_window_days)
    growth = snapshot["report_net_income_growth"].where(recent)
    tone = snapshot["news_tone"]
    close = snapshot["last_close"]
    # S2 is a cross: "not above before" is false when the MAs before are unknown, as in SQL.
    previous_5, previous_20 = snapshot["ma_5_previous"], snapshot["ma_20_previous"]
    unknown_before = previous_5.isna() | previous_20.isna()
    was_above = (previous_5 > previous_20) | unknown_before
    was_below = (previous_5 < previous_20) | unknown_before
    previous_rsi = snapshot["rsi_14_previous"]
    was_over_exit_rsi = (previous_rsi > pit.rsi_exit) | previous_rsi.isna()
    previous_close, previous_60 = snapshot["close_previous"], snapshot["ma_60_previous"]
    was_under_ma_60 = (previous_close < previous_60) | previous_close.isna() | previous_60.isna()
    return pd.DataFrame(
        {
            "s1_entry": (close > snapshot["prior_high_20"]) & (snapshot["volume_ratio_20d"] > 1),
            "s1_exit": close < snapshot["prior_low_10"],
            "s2_entry": (snapshot["ma_5"] > snapshot["ma_20"]) & ~was_above,
            "s2_exit": (snapshot["ma_5"] < snapshot["ma_20"]) & ~was_below,
            "s3_entry": (snapshot["rsi_14"] < pit.rsi_entry) & (close > snapshot["ma_60"]),
            "s3_exit": ((snapshot["rsi_14"] > pit.rsi_exit) & ~was_over_exit_rsi)
            | ((close < snapshot["ma_60"]) & ~was_under_ma_60),
            "s4_entry": (growth >= pit.s4_surprise) | (tone >= pit.s4_news_tone),
            "s4_exit": (growth <= -pit.s4_surprise) | (tone <= -pit.s4_news_tone),
        },
        index=snapshot.index,
    )


def price_lists(visible: pd.DataFrame, pit: PitVars) -> pd.DataFrame:
    history = visible.groupby("ticker").tail(pit.price_sessions)
    return history.groupby("ticker")[PRICE_COLUMNS].agg(list).add_prefix("ph_")


def news_lists(news: pd.DataFrame, cutoff: pd.Timestamp, pit: PitVars) -> pd.DataFrame:
    start = cutoff - pd.Timedelta(days=pit.lookback_days)
    recent = news[(news["published_at"] < cutoff) & (news["published_at"] >= start)]
    recent = recent.sort_values(["published_at", "news_id"], ascending=False)
    newest = recent.groupby("ticker").head(pit.max_items)
    lists = newest.groupby("ticker")[NEWS_COLUMNS].agg(list).add_prefix("news_")
    headlines = newest["headline"][
        newest["published_at"] >= cutoff - pd.Timedelta(days=pit.s4_window_days)
    ]
    positive = headlines.str.contains(pit.word_pattern(pit.positive_terms))
    negative = headlines.str.contains(pit.word_pattern(pit.negative_terms))
    tone = positive.astype(int) - negative.astype(int)
    return lists.join(tone.groupby(newest.loc[tone.index, "ticker"]).sum().rename("news_tone"))


def latest_report(reports: pd.DataFrame, cutoff: pd.Timestamp) -> pd.DataFrame:
    known = reports[reports["published_at"] < cutoff]
    known = known.sort_values(["fiscal_year", "published_at"])
    return known.groupby("ticker").tail(1).set_index("ticker").add_prefix("report_")


def naive_snapshot(
    day: date,
    prices: pd.DataFrame,
    news: pd.DataFrame,
    reports: pd.DataFrame,
    actions: pd.DataFrame,
    pit: PitVars,
) -> pd.DataFrame:
    cutoff = cutoff_of(day, pit)
    visible = prices[prices["date"] < pd.Timestamp(day)]
    sessions_seen = visible.groupby("ticker").size()
    recent = visible.groupby("ticker").tail(max(FEATURE_SESSIONS, pit.price_sessions))
    shown = on_decision_basis(recent, actions, day, cutoff)
    window = shown.groupby("ticker").tail(FEATURE_SESSIONS)
    snapshot = price_features(window, sessions_seen).join(price_lists(shown, pit))
    snapshot = snapshot.join(news_lists(news, cutoff, pit)).join(latest_report(reports, cutoff))
    for column in [f"news_{name}" for name in NEWS_COLUMNS]:
        snapshot[column] = [items if isinstance(items, list) else [] for items in snapshot[column]]
    snapshot["news_tone"] = snapshot["news_tone"].fillna(0)
    snapshot = snapshot.join(strategy_signals(snapshot, cutoff, pit))
    snapshot.insert(0, "decision_date", day)
    snapshot.insert(1, "information_cutoff", cutoff)
    return snapshot.reset_index()


def build_naive(data_dir: Path, out_dir: Path, pit: PitVars) -> int:
    out_dir.mkdir(parents=True, exist_ok=True)
    prices, news, reports, actions, decisions = load_inputs(data_dir)
    snapshots = 0
    for index, day in enumerate(decisions, start=1):
        snapshot = naive_snapshot(day, prices, news, reports, actions, pit)
        snapshot.to_parquet(out_dir / f"{day}.parquet", index=False)
        snapshots += len(snapshot)
        if index % 50 == 0 or index == len(decisions):
            say(f"  naive: {index}/{len(decisions)} decision dates")
    return snapshots


# --------------------------------------------------------------------------------------------
# 3. Cross-check naive against pit_snapshots
# --------------------------------------------------------------------------------------------

FEATURES = [
    "last_close",
    "ret_1d",
    "ret_5d",
    "ret_20d",
    "ma_5",
    "ma_20",
    "ma_60",
    "rsi_14",
    "volatility_20d",
    "volume_ratio_20d",
    "prior_high_20",
    "prior_low_10",
]
SIGNALS = [f"s{rule}_{side}" for rule in range(1, 5) for side in ("entry", "exit")]


@dataclass(frozen=True)
class Check:
    """One compared value: its column in the pit_snapshots view and in the naive view."""

    pit: str
    naive: str
    numeric: bool = False
    numeric_list: bool = False  # lists of numbers, compared element by element

    @property
    def mismatch(self) -> str:
        left, right = f"p.{self.pit}", f"n.{self.naive}"
        if self.numeric_list:
            # Levels moved onto a decision's basis are products computed in another order.
            return (
                f"len({left}) is distinct from len({right}) or coalesce(list_bool_or("
                f"list_transform(range(len({left})), lambda i: abs({left}[i + 1] - {right}[i + 1])"
                f" > 1e-9 * greatest(1, abs({right}[i + 1])))), false)"
            )
        if not self.numeric:
            return f"{left} is distinct from {right}"
        return (
            f"case when {left} is null or {right} is null"
            f" then ({left} is null) <> ({right} is null)"
            f" else abs({left} - {right}) > 1e-9 * greatest(1, abs({right})) end"
        )


CHECKS: dict[str, Check] = {
    "information_cutoff": Check("information_cutoff", "information_cutoff"),
    "price_history dates": Check("ph_date", "ph_date"),
    "price_history closes": Check("ph_close", "ph_close", numeric_list=True),
    "news ids": Check("news_ids", "news_news_id"),
    "report id": Check("report_id", "report_report_id"),
    "report growth": Check("report_growth", "report_net_income_growth", numeric=True),
}
CHECKS |= {f"feature {name}": Check(name, name, numeric=True) for name in FEATURES}
CHECKS |= {f"signal {name}": Check(name, name) for name in SIGNALS}


def comparison_sql(naive_dir: Path) -> str:
    """pit_snapshots and the naive snapshots side by side (a full outer join on the key)."""
    features = ", ".join(f"features.{name} as {name}" for name in FEATURES)
    signals = ", ".join(f"signals.{name} as {name}" for name in SIGNALS)
    return f"""
        from (
            select ticker, decision_date, information_cutoff,
                list_transform(price_history, lambda x: x."date") as ph_date,
                list_transform(price_history, lambda x: x.close) as ph_close,
                {features},
                {signals},
                list_transform(news, lambda x: x.news_id) as news_ids,
                report.report_id as report_id,
                report.net_income_growth as report_growth
            from pit_snapshots where market = '{MARKET}'
        ) as p
        full outer join (
            select * replace (list_transform(ph_date, lambda x: x::date) as ph_date)
            from read_parquet('{naive_dir}/*.parquet')
        ) as n
            on p.ticker = n.ticker and p.decision_date = n.decision_date
    """


def cross_check(warehouse: Path, naive_dir: Path) -> int:
    """Compare every naive snapshot with pit_snapshots; print each kind of mismatch loudly,
    with both sides of up to three examples. Returns the number of mismatches found."""
    joined = comparison_sql(naive_dir)
    conditions = {
        "only in pit_snapshots": "n.ticker is null",
        "only in naive": "p.ticker is null",
    } | {name: check.mismatch for name, check in CHECKS.items()}
    counts = ", ".join(f"count(*) filter (where {sql})" for sql in conditions.values())
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        totals = connection.sql(f"select {counts} {joined}").fetchall()[0]
        found = dict(zip(conditions, totals, strict=True))
        for name, count in found.items():
            if not count:
                continue
            check = CHECKS.get(name, Check("ticker", "ticker"))
            examples = connection.sql(
                "select coalesce(p.ticker, n.ticker), coalesce(p.decision_date, n.decision_date),"
                f" p.{check.pit}, n.{check.naive} {joined}"
                f" where {conditions[name]} order by 2, 1 limit 3"
            ).fetchall()
            print(f"!!! MISMATCH {name}: {count} snapshots", flush=True)
            for ticker, day, pit_value, naive_value in examples:
                print(f"!!!   {ticker} {day}: pit_snapshots {pit_value!r}, naive {naive_value!r}")
    if not any(found.values()):
        say(f"  cross-check: all {len(CHECKS)} values agree in every snapshot")
    return sum(found.values())


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


@dataclass
class Result:
    sessions: int
    news_rows: int
    snapshots: int
    dbt: DbtTiming
    naive_s: float | None
    mismatches: int | None


def run_size(n_sessions: int, work: Path, pit: PitVars, run_naive: bool, repeats: int) -> Result:
    data_dir = work / f"sessions_{n_sessions}"
    say(f"{n_sessions} sessions: generating raw Parquet in {data_dir}")
    with stopwatch() as generation:
        dataset = generate(data_dir, n_sessions, pit)
    say(f"  generated in {generation[0]:.1f} s: {dataset.rows}")

    say("  dbt seed + dbt run --select +pit_snapshots")
    timing, snapshots = fastest_dbt_build(dataset, repeats)
    slowest = sorted(timing.nodes.items(), key=lambda item: -item[1])[:5]
    nodes = ", ".join(f"{name} {seconds:.1f} s" for name, seconds in slowest)
    say(f"  fastest build: {snapshots} snapshots; slowest nodes: {nodes}")

    naive_s: float | None = None
    mismatches: int | None = None
    if run_naive:
        say(f"  naive pandas loop over {len(dataset.decisions)} decision dates")
        naive_dir = data_dir / "naive_snapshots"
        with stopwatch() as naive:
            naive_rows = build_naive(data_dir, naive_dir, pit)
        naive_s = naive[0]
        say(f"  naive: {naive_s:.1f} s, {naive_rows} snapshots")
        mismatches = cross_check(data_dir / "warehouse.duckdb", naive_dir)
    return Result(n_sessions, dataset.rows["news"], snapshots, timing, naive_s, mismatches)


def rate(count: int, seconds: float | None) -> str:
    return f"{count / seconds:,.0f}" if seconds else "-"


def seconds(value: float | None) -> str:
    return f"{value:.1f}" if value is not None else "-"


def ratio(top: float | None, bottom: float) -> str:
    return f"{top / bottom:.1f}x" if top is not None else "-"


def report(results: list[Result]) -> None:
    header = (
        f"{'sessions':>8} {'news rows':>10} {'snapshots':>9} {'dbt s':>6} {'start-up s':>10}"
        f" {'SQL s':>6} {'SQL span s':>10} {'snap/s SQL':>10} {'naive s':>7} {'snap/s naive':>12}"
        f" {'naive/SQL':>9} {'naive/dbt':>9} {'mismatches':>10}"
    )
    print("\n" + header + "\n" + "-" * len(header))
    for r in results:
        print(
            f"{r.sessions:>8} {r.news_rows:>10,} {r.snapshots:>9,} {r.dbt.wall_s:>6.1f}"
            f" {r.dbt.startup_s:>10.1f} {r.dbt.sql_s:>6.1f} {r.dbt.span_s:>10.1f}"
            f" {rate(r.snapshots, r.dbt.sql_s):>10}"
            f" {seconds(r.naive_s):>7} {rate(r.snapshots, r.naive_s):>12}"
            f" {ratio(r.naive_s, r.dbt.sql_s):>9} {ratio(r.naive_s, r.dbt.wall_s):>9}"
            f" {'-' if r.mismatches is None else r.mismatches:>10}"
        )
    if len(results) >= 2:
        print_scaling(results[0], results[-1])


def print_scaling(small: Result, large: Result) -> None:
    """SQL time growth against session growth; within 5 % counts as linear (timing noise)."""
    sessions_ratio = large.sessions / small.sessions
    sql_ratio = large.dbt.sql_s / small.dbt.sql_s
    if sql_ratio <= sessions_ratio:
        verdict = "no faster than the sessions"
    elif sql_ratio <= sessions_ratio * 1.05:
        verdict = "with the sessions (within 5 %)"
    else:
        verdict = "FASTER than the sessions"
    print(
        f"\nSQL time {large.sessions}/{small.sessions}: {sql_ratio:.3f} against sessions"
        f" {sessions_ratio:.3f}: grows {verdict}"
    )
    if large.naive_s and small.naive_s:
        naive_ratio = large.naive_s / small.naive_s
        print(f"naive time {large.sessions}/{small.sessions}: {naive_ratio:.2f}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="252,750", help="sessions per size, comma-separated")
    parser.add_argument("--keep", type=Path, help="keep the generated data in this folder")
    parser.add_argument(
        "--skip-naive-above",
        type=int,
        help="skip the naive loop (and the cross-check) for sizes above this many sessions",
    )
    parser.add_argument(
        "--repeats", type=int, default=1, help="dbt builds per size; the fastest is reported"
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    pit = PitVars.from_project()
    sizes = [int(size) for size in args.sizes.split(",")]
    work = args.keep.resolve() if args.keep else Path(tempfile.mkdtemp(prefix="pit_build_"))
    work.mkdir(parents=True, exist_ok=True)
    say(f"work folder {work}; vars {pit}")
    limit = args.skip_naive_above
    try:
        results = [
            run_size(size, work, pit, limit is None or size <= limit, args.repeats)
            for size in sizes
        ]
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    report(results)
    if any(result.mismatches for result in results):
        sys.exit("!!! naive and pit_snapshots disagree: see the MISMATCH lines above")


if __name__ == "__main__":
    main()
