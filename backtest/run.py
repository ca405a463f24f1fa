"""One backtest run: decisions and baselines -> simulated sleeves, round trips and arms.

Reads the raw prices and universe of each market, the `market_rules` seed and the signals of
`pit_snapshots` from the warehouse, and every arm's `llm_decisions` Parquet; simulates every
(arm, ticker) sleeve of a market at once (`backtest.simulation.simulate`) and writes three
Parquet tables that the dbt `landing` source reads (`backtest_daily`, `backtest_trades`,
`backtest_metrics`, `regime_metrics` are built on them):

- `sleeves`: one row per arm, market, ticker and session of the window;
- `round_trips`: one row per closed round trip (`backtest.simulation.round_trips`);
- `arms`: one row per arm and market: kind, model, mode, window, decision counts, settings.

Window: per market, the sessions with price bars from the first to the last decision date of
the selected arms (or `start` / `end`). A decision dated after the last bar (the live-forward
decision for a session that has not traded yet) cannot be filled and is counted as untradable.
Prices are the raw (unadjusted) bars: fills happen at the prices that were quoted.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from backtest.lineage import stale_decisions
from backtest.simulation import (
    DEFAULT_CAPITAL,
    ORDER_STATUSES,
    SeriesRules,
    SimulationResult,
    SleeveState,
    TradingRules,
    board_price_limit_pct,
    round_trips,
    simulate,
)
from backtest.targets import BASELINE_ARMS, STRATEGY_ARMS, baseline_targets, decision_targets
from ingest.calendars import MARKETS
from ingest.layout import DataLayout
from ingest.load import write_atomically

FILL_PRICES = ("open", "close")
SIGNAL_COLUMNS = tuple(
    f"{arm.lower()}_{side}" for arm in STRATEGY_ARMS for side in ("entry", "exit")
)
DECISION_COLUMNS = (
    "arm",
    "model",
    "mode",
    "attitude",
    "replicate",
    "is_llm",
    "market",
    "ticker",
    "decision_date",
    "target_exposure",
    "previous_exposure",
    "parse_status",
    "answer_status",
    "snapshot_hash",
    "ingest_id",
)


class BacktestError(ValueError):
    """The inputs cannot be backtested; the message names what is missing."""


@dataclass(frozen=True)
class BacktestConfig:
    start: date | None = None
    end: date | None = None
    arms: tuple[str, ...] | None = None  # LLM arm slugs; None: every arm with decisions
    baselines: tuple[str, ...] = BASELINE_ARMS
    markets: tuple[str, ...] = MARKETS
    random_seed: int = 0
    fill_at: str = "open"  # the price a decision for session D fills at: D's open or close
    initial_capital: float = DEFAULT_CAPITAL  # per ticker sleeve, in the market's currency


@dataclass
class MarketRun:
    market: str
    start: date
    end: date
    sessions: int
    tickers: int
    arms: list[str]
    decisions: int
    untradable_decisions: int
    trades: int


@dataclass
class BacktestSummary:
    markets: list[MarketRun] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = []
        for run in self.markets:
            out.append(
                f"{run.market}: {len(run.arms)} arms x {run.tickers} tickers x {run.sessions} "
                f"sessions ({run.start} .. {run.end}); {run.decisions} decisions, "
                f"{run.untradable_decisions} not tradable (after the last bar or no bars), "
                f"{run.trades} closed round trips"
            )
        return out


@dataclass(frozen=True)
class MarketData:
    """One market's bars on its session axis, per ticker (rows) and session (columns)."""

    market: str
    sessions: pd.DatetimeIndex
    tickers: pd.Index
    open_: np.ndarray
    close: np.ndarray
    rules: list[TradingRules]
    prior_close: np.ndarray  # each ticker's last close before the window (the first limit's)

    @property
    def has_bar(self) -> np.ndarray:
        return ~np.isnan(self.close)

    def matrix(self, frame: pd.DataFrame, column: str, date_column: str) -> np.ndarray:
        return pivot(frame, column, date_column, self.tickers, self.sessions)

    def on_axes(self, frame: pd.DataFrame, date_column: str) -> np.ndarray:
        """Which rows (keyed by ticker and date) fall on this market's axes."""
        return (
            frame["ticker"].isin(self.tickers).to_numpy()
            & pd.to_datetime(frame[date_column]).isin(self.sessions).to_numpy()
        )


def pivot(
    frame: pd.DataFrame,
    column: str,
    date_column: str,
    tickers: pd.Index,
    sessions: pd.DatetimeIndex,
) -> np.ndarray:
    """`column` of rows keyed by ticker and date on (tickers, sessions); NaN elsewhere. Rows
    off the axes are left out (the caller counts them)."""
    out = np.full((len(tickers), len(sessions)), np.nan)
    rows = tickers.get_indexer(frame["ticker"])
    cols = sessions.get_indexer(pd.to_datetime(frame[date_column]))
    inside = (rows >= 0) & (cols >= 0)
    out[rows[inside], cols[inside]] = frame[column].to_numpy(dtype=np.float64)[inside]
    return out


def read_decisions(layout: DataLayout, arms: Sequence[str] | None) -> pd.DataFrame:
    """Every `llm_decisions` row of the chosen arms (all arms when None)."""
    files = list(Path(layout.landing_dir / "llm_decisions").glob("arm=*/market=*/*.parquet"))
    if not files:
        if arms:
            raise BacktestError(f"no llm_decisions under {layout.landing_dir}; run infer first")
        return pd.DataFrame(columns=list(DECISION_COLUMNS))
    source = "read_parquet(?, union_by_name = true, hive_partitioning = false)"
    connection = duckdb.connect()
    present = {
        row[0]
        for row in connection.execute(
            f"describe select * from {source}", [layout.decision_files]
        ).fetchall()
    }
    # Files written before a column existed read it as null (lineage: refused as stale below).
    columns = [name if name in present else f"null as {name}" for name in DECISION_COLUMNS]
    frame = connection.execute(
        f"select {', '.join(columns)} from {source}", [layout.decision_files]
    ).df()
    if arms:
        missing = sorted(set(arms) - set(frame["arm"]))
        if missing:
            raise BacktestError(
                f"no decisions for arm(s) {', '.join(missing)} in {layout.decision_files} "
                f"(arms with decisions: {', '.join(sorted(set(frame['arm']))) or 'none'})"
            )
        frame = frame[frame["arm"].isin(arms)]
    frame["decision_date"] = pd.to_datetime(frame["decision_date"])
    return frame


def market_rules(warehouse: Path) -> dict[str, dict]:
    """The `market_rules` seed as built in the warehouse, by market."""
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        frame = connection.execute("select * from market_rules").df()
    return {row["market"]: row for row in frame.to_dict("records")}


def _is_st(name: object) -> bool:
    """A-share special treatment is in the name: 'ST Fuda', '*ST Fuda'."""
    return isinstance(name, str) and name.lstrip("*").startswith("ST")


def ticker_rules(
    universe: pd.DataFrame, rules_row: dict, initial_capital: float
) -> dict[str, TradingRules]:
    """Each ticker's rules: the market's, with the universe's price-limit override or, in a
    market with limits, the board's limit (ChiNext/STAR 20 %, ST 5 %)."""
    main_board = rules_row.get("price_limit_pct")
    has_limit = main_board is not None and not pd.isna(main_board)
    out = {}
    for row in universe.to_dict("records"):
        override = row.get("price_limit_pct")
        if override is not None and not pd.isna(override):
            limit: float | None = float(override)
        elif has_limit:
            limit = board_price_limit_pct(
                row["ticker"], float(main_board), is_st=_is_st(row["name"])
            )
        else:
            limit = None
        out[row["ticker"]] = TradingRules.from_market_row(
            rules_row, price_limit_pct=limit, initial_capital=initial_capital
        )
    return out


def load_market(
    layout: DataLayout, market: str, start: date, end: date, rules_row: dict, capital: float
) -> MarketData:
    prices = pd.read_parquet(
        layout.raw_file(market, "prices"), columns=["ticker", "date", "open", "close"]
    )
    prices["date"] = pd.to_datetime(prices["date"])
    earlier = prices[prices["date"] < pd.Timestamp(start)].sort_values("date")
    prices = prices[(prices["date"] >= pd.Timestamp(start)) & (prices["date"] <= pd.Timestamp(end))]
    if prices.empty:
        raise BacktestError(f"{market}: no price bars from {start} to {end}")
    universe = pd.read_parquet(layout.raw_file(market, "universe"))
    rules = ticker_rules(universe, rules_row, capital)
    sessions = pd.DatetimeIndex(sorted(prices["date"].unique()))
    tickers = pd.Index(sorted(prices["ticker"].unique()))
    prior_close = earlier.groupby("ticker")["close"].last().reindex(tickers)
    return MarketData(
        market,
        sessions,
        tickers,
        pivot(prices, "open", "date", tickers, sessions),
        pivot(prices, "close", "date", tickers, sessions),
        [rules[ticker] for ticker in tickers],
        prior_close.to_numpy(dtype=np.float64),
    )


def snapshot_signals(warehouse: Path, data: MarketData) -> dict[str, np.ndarray]:
    """S1..S4 entry/exit of `pit_snapshots` on the market's axes (False where no snapshot)."""
    columns = ", ".join(f"signals.{name} as {name}" for name in SIGNAL_COLUMNS)
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        frame = connection.execute(
            f"select ticker, decision_date, {columns} from pit_snapshots "
            "where market = ? and decision_date between ? and ?",
            [data.market, data.sessions[0].date(), data.sessions[-1].date()],
        ).df()
    if frame.empty:
        raise BacktestError(
            f"{data.market}: pit_snapshots has no rows from {data.sessions[0].date()} to "
            f"{data.sessions[-1].date()}; build the warehouse for that window first"
        )
    signals = {}
    for name in SIGNAL_COLUMNS:
        frame[name] = frame[name].astype("float64")
        signals[name] = np.nan_to_num(data.matrix(frame, name, "decision_date")) != 0.0
    return signals


def _window(
    config: BacktestConfig, decisions: pd.DataFrame, warehouse: Path, market: str
) -> tuple[date, date] | None:
    """The configured window, else the span of the market's decisions, else of its snapshots."""
    dates = decisions["decision_date"]
    if len(dates):
        first, last = dates.min().date(), dates.max().date()
    else:
        with duckdb.connect(str(warehouse), read_only=True) as connection:
            [(first, last)] = connection.execute(
                "select min(decision_date), max(decision_date) from pit_snapshots where market = ?",
                [market],
            ).fetchall()
        if first is None:
            return None
    return config.start or first, config.end or last


def _arm_rows(market: str, decisions: pd.DataFrame, baselines: Sequence[str]) -> pd.DataFrame:
    llm = (
        decisions.groupby("arm", sort=True)
        .agg(
            model=("model", "first"),
            mode=("mode", "first"),
            attitude=("attitude", "first"),
            replicate=("replicate", "first"),
            is_llm=("is_llm", "first"),
        )
        .reset_index()
    )
    llm["arm_kind"] = np.where(llm["is_llm"].astype(bool), "llm", "reference")
    base = pd.DataFrame(
        {
            "arm": list(baselines),
            "model": list(baselines),
            "mode": "baseline",
            "attitude": None,
            "replicate": 0,
            "is_llm": False,
            "arm_kind": "baseline",
        }
    )
    arms = pd.concat([frame for frame in (llm, base) if len(frame)], ignore_index=True)
    arms.insert(1, "market", market)
    return arms


def simulate_market(
    layout: DataLayout,
    config: BacktestConfig,
    market: str,
    decisions: pd.DataFrame,
    rules_row: dict,
) -> tuple[dict[str, pa.Table], MarketRun] | None:
    """Simulate every arm of one market; None when the market has nothing to backtest."""
    window = _window(config, decisions, layout.warehouse, market)
    if window is None:
        return None
    start, end = window
    if end < start:
        raise BacktestError(f"backtest window end {end} is before its start {start}")
    data = load_market(layout, market, start, end, rules_row, config.initial_capital)
    in_window = decisions[
        (decisions["decision_date"] >= pd.Timestamp(start))
        & (decisions["decision_date"] <= pd.Timestamp(end))
    ].copy()
    in_window["target"] = decision_targets(in_window)
    # Off the axes: dated after the last bar (live-forward) or for a ticker without bars.
    untradable = in_window[~data.on_axes(in_window, "decision_date")]
    arms = _arm_rows(market, in_window, config.baselines)
    signals = snapshot_signals(layout.warehouse, data) if config.baselines else {}
    seed = [config.random_seed, zlib.crc32(market.encode())]  # one stream per market
    by_arm = dict(tuple(in_window.groupby("arm", sort=False)))
    targets = [
        data.matrix(by_arm[arm], "target", "decision_date")
        if kind != "baseline"
        else baseline_targets(arm, data.has_bar, signals, seed)
        for arm, kind in zip(arms["arm"], arms["arm_kind"], strict=True)
    ]
    n_arms = len(targets)
    target = np.concatenate(targets)
    fill = data.close if config.fill_at == "close" else data.open_
    rules = SeriesRules.stack(data.rules * n_arms)
    # Flat sleeves whose first price limit refers to the close before the window, as the
    # agents' books (backtest.book) start: the backtest of an arm reproduces its book.
    opening = SleeveState.opening(rules)
    opening.last_close[:] = np.tile(data.prior_close, n_arms)
    result = simulate(
        target,
        np.tile(fill, (n_arms, 1)),
        np.tile(data.close, (n_arms, 1)),
        rules,
        state=opening,
    )
    series = SeriesLabels(
        arm=np.repeat(arms["arm"].to_numpy(dtype=object), len(data.tickers)),
        ticker=np.tile(data.tickers.to_numpy(dtype=object), n_arms),
        has_bar=np.tile(data.has_bar, (n_arms, 1)),
        initial_capital=np.tile([rule.initial_capital for rule in data.rules], n_arms),
    )
    trips = round_trips(result, sessions=data.sessions.date)
    arms["window_start"], arms["window_end"] = start, end
    arms["n_sessions"], arms["n_tickers"] = len(data.sessions), len(data.tickers)
    arms["n_decisions"] = _count_by_arm(arms, in_window)
    arms["n_untradable_decisions"] = _count_by_arm(arms, untradable)
    arms["fill_at"], arms["random_seed"] = config.fill_at, config.random_seed
    arms["initial_capital"] = config.initial_capital
    tables = {
        "sleeves": sleeve_table(market, result, series, data.sessions, target),
        "round_trips": trip_table(market, trips, series),
        "arms": pa.Table.from_pandas(arms, schema=ARM_SCHEMA, preserve_index=False),
    }
    run = MarketRun(
        market,
        start,
        end,
        len(data.sessions),
        len(data.tickers),
        list(arms["arm"]),
        len(in_window),
        len(untradable),
        len(trips),
    )
    return tables, run


def _count_by_arm(arms: pd.DataFrame, rows: pd.DataFrame) -> pd.Series:
    return arms["arm"].map(rows.groupby("arm").size()).fillna(0).astype("int64")


@dataclass(frozen=True)
class LastFills:
    """Each series' latest fill before a block of sessions (NaT / NaN when none)."""

    day: np.ndarray  # datetime64[D]
    shares: np.ndarray
    price: np.ndarray

    @classmethod
    def none(cls, n_series: int) -> LastFills:
        return cls(
            np.full(n_series, np.datetime64("NaT"), dtype="datetime64[D]"),
            np.full(n_series, np.nan),
            np.full(n_series, np.nan),
        )

    @classmethod
    def of(cls, book: pd.DataFrame) -> LastFills:
        """The latest fills a book (one row per series) carries into the next session."""
        return cls(
            book["last_fill_date"].to_numpy(dtype="datetime64[D]"),
            book["last_fill_shares"].to_numpy(dtype=np.float64, na_value=np.nan),
            book["last_fill_price"].to_numpy(dtype=np.float64, na_value=np.nan),
        )


def book_columns(
    result: SimulationResult,
    axis: pd.DatetimeIndex,
    positions: np.ndarray,
    prior: LastFills,
) -> dict[str, np.ndarray]:
    """The book's own columns, (n_series, n_sessions) each, for result columns that are the
    sessions `axis[positions]`: entry date from the sessions held, the last fill carried
    forward from `prior` (order_status is added by `sleeve_table` from its codes)."""
    n_series, n_sessions = result.shares.shape
    days = axis.values.astype("datetime64[D]")
    held = result.held_sessions.astype(np.int64)
    entry_at = positions[None, :] - held + 1
    entry_date = np.where(held > 0, days[np.clip(entry_at, 0, len(days) - 1)], np.datetime64("NaT"))
    traded = result.traded_shares != 0
    last = np.where(traded, np.arange(n_sessions)[None, :], -1)
    last = np.maximum.accumulate(last, axis=1)
    rows = np.arange(n_series)[:, None]
    taken = np.clip(last, 0, None)
    has_fill = last >= 0
    fill_day = days[positions][taken]
    return {
        "cost_basis": result.cost_basis,
        "avg_entry_price": result.avg_entry_price,
        "entry_date": entry_date.astype("datetime64[D]"),
        "sessions_held": held,
        "unrealized_return": result.unrealized_return,
        "last_fill_date": np.where(has_fill, fill_day, prior.day[:, None]).astype("datetime64[D]"),
        "last_fill_shares": np.where(
            has_fill, result.traded_shares[rows, taken], prior.shares[:, None]
        ),
        "last_fill_price": np.where(has_fill, result.fill_price[rows, taken], prior.price[:, None]),
    }


@dataclass(frozen=True)
class SeriesLabels:
    """What each simulated series (row of the matrices) is: arm, ticker and its constants."""

    arm: np.ndarray
    ticker: np.ndarray
    has_bar: np.ndarray  # (n_series, n_sessions)
    initial_capital: np.ndarray


def sleeve_table(
    market: str,
    result: SimulationResult,
    series: SeriesLabels,
    sessions: pd.DatetimeIndex,
    target: np.ndarray,
    *,
    axis: pd.DatetimeIndex | None = None,
    positions: np.ndarray | None = None,
    prior: LastFills | None = None,
) -> pa.Table:
    """One row per (series, session), series-major, in the column order of `backtest_daily`,
    then the book's columns (`book_columns`; `axis`, `positions` and `prior` default to the
    sessions themselves, starting flat).

    Labels are dictionary-encoded and dates built from datetime64: thousands of arms make
    tens of millions of rows, which Python objects per row would not fit."""
    n_series, n_sessions = len(series.arm), len(sessions)
    book = book_columns(
        result,
        sessions if axis is None else axis,
        np.arange(n_sessions) if positions is None else positions,
        LastFills.none(n_series) if prior is None else prior,
    )

    def flat(values: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(values).ravel()

    def nullable(values: np.ndarray) -> pa.Array:
        return pa.array(flat(values), from_pandas=True)  # NaN -> null

    return pa.table(
        {
            "arm": _repeated_labels(series.arm, n_sessions),
            "market": _repeated_labels(np.full(n_series, market, dtype=object), n_sessions),
            "ticker": _repeated_labels(series.ticker, n_sessions),
            "date": pa.array(np.tile(sessions.values.astype("datetime64[D]"), n_series)),
            "target_exposure": nullable(target),
            "has_bar": flat(series.has_bar),
            "shares": flat(result.shares),
            "fill_price": nullable(result.fill_price),
            "traded_shares": flat(result.traded_shares),
            "traded_value": flat(np.abs(result.traded_shares) * np.nan_to_num(result.fill_price)),
            "limit_blocked": flat(result.limit_blocked),
            "fees": flat(result.fees),
            "position_value": flat(result.position_value),
            "cash": flat(result.cash),
            "equity": flat(result.equity),
            "exposure": flat(result.exposure),
            "daily_return": flat(result.daily_return),
            "initial_capital": np.repeat(series.initial_capital, n_sessions),
            **{name: pa.array(flat(values), from_pandas=True) for name, values in book.items()},
            "order_status": _repeated_codes(result.order_status),
        }
    )


def _repeated_codes(codes: np.ndarray) -> pa.DictionaryArray:
    """The order status codes as their names (dictionary-encoded)."""
    return pa.DictionaryArray.from_arrays(
        np.ascontiguousarray(codes).ravel().astype(np.int32),
        pa.array(ORDER_STATUSES, type=pa.string()),
    )


def _repeated_labels(labels: np.ndarray, times: int) -> pa.DictionaryArray:
    """Each series' label repeated for its sessions, as codes into the distinct labels."""
    names, codes = np.unique(labels.astype(str), return_inverse=True)
    return pa.DictionaryArray.from_arrays(
        np.repeat(codes.astype(np.int32), times), pa.array(names, type=pa.string())
    )


def trip_table(market: str, trips: pd.DataFrame, series: SeriesLabels) -> pa.Table:
    index = trips["series"].to_numpy(dtype=np.int64)
    frame = pd.DataFrame(
        {
            "arm": series.arm[index],
            "market": market,
            "ticker": series.ticker[index],
            "entry_date": trips["entry_session"],
            "exit_date": trips["exit_session"],
            "holding_sessions": trips["holding_sessions"].astype("int64"),
            "n_fills": trips["n_fills"].astype("int64"),
            "entry_value": trips["entry_value"],
            "exit_value": trips["exit_value"],
            "net_pnl": trips["net_pnl"],
            "return": trips["return"],
            "win": trips["win"].astype(bool),
        }
    )
    return pa.Table.from_pandas(frame, schema=TRIP_SCHEMA, preserve_index=False)


ARM_SCHEMA = pa.schema(
    [
        ("arm", pa.string()),
        ("market", pa.string()),
        ("model", pa.string()),
        ("mode", pa.string()),
        ("attitude", pa.string()),
        ("replicate", pa.int64()),
        ("is_llm", pa.bool_()),
        ("arm_kind", pa.string()),  # llm | reference (a rule agent in a mode) | baseline
        ("window_start", pa.date32()),
        ("window_end", pa.date32()),
        ("n_sessions", pa.int64()),
        ("n_tickers", pa.int64()),
        ("n_decisions", pa.int64()),
        ("n_untradable_decisions", pa.int64()),
        ("fill_at", pa.string()),
        ("random_seed", pa.int64()),
        ("initial_capital", pa.float64()),
    ]
)

TRIP_SCHEMA = pa.schema(
    [
        ("arm", pa.string()),
        ("market", pa.string()),
        ("ticker", pa.string()),
        ("entry_date", pa.date32()),
        ("exit_date", pa.date32()),
        ("holding_sessions", pa.int64()),
        ("n_fills", pa.int64()),
        ("entry_value", pa.float64()),
        ("exit_value", pa.float64()),
        ("net_pnl", pa.float64()),
        ("return", pa.float64()),
        ("win", pa.bool_()),
    ]
)


def run_backtest(
    layout: DataLayout,
    config: BacktestConfig = BacktestConfig(),
    progress: Callable[[str], None] = lambda _line: None,
) -> BacktestSummary:
    """Simulate every market and replace the three landing tables (atomically, each)."""
    if config.fill_at not in FILL_PRICES:
        raise BacktestError(f"fill_at {config.fill_at!r}: expected one of {', '.join(FILL_PRICES)}")
    unknown = sorted(set(config.baselines) - set(BASELINE_ARMS))
    if unknown:
        raise BacktestError(
            f"unknown baseline arm(s) {', '.join(unknown)}; expected {', '.join(BASELINE_ARMS)}"
        )
    decisions = read_decisions(layout, config.arms)
    keep = decisions["market"].isin(config.markets)
    if config.start:
        keep &= decisions["decision_date"] >= pd.Timestamp(config.start)
    if config.end:
        keep &= decisions["decision_date"] <= pd.Timestamp(config.end)
    decisions = decisions[keep]
    stale = stale_decisions(layout.warehouse, decisions)
    if stale:
        raise BacktestError(
            f"{len(stale)} arm(s) have decisions the current warehouse cannot vouch for; "
            "nothing was backtested:\n" + "\n".join(arm.describe(layout) for arm in stale)
        )
    rules = market_rules(layout.warehouse)
    summary = BacktestSummary()
    parts: dict[str, list[pa.Table]] = {"sleeves": [], "round_trips": [], "arms": []}
    for market in config.markets:
        if not layout.raw_file(market, "prices").is_file():
            continue
        outcome = simulate_market(
            layout, config, market, decisions[decisions["market"] == market], rules[market]
        )
        if outcome is None:
            continue
        tables, run = outcome
        for name, table in tables.items():
            parts[name].append(table)
        summary.markets.append(run)
        progress(summary.lines()[-1])
    if not summary.markets:
        raise BacktestError(
            f"nothing to backtest: no decisions and no snapshots in {layout.warehouse}"
        )
    for name, tables in parts.items():
        table = pa.concat_tables(tables, promote_options="default")
        path = layout.backtest_file(name)
        write_atomically(path, lambda target, table=table: pq.write_table(table, target))
        summary.files.append(path)
    return summary
