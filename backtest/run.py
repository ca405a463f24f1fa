"""One backtest run: decisions and baselines -> simulated sleeves, round trips and arms.

Reads the raw prices and universe of each market, the `market_rules` seed and the signals of
`pit_snapshots` from the warehouse, and every arm's `llm_decisions` Parquet; simulates the
(arm, ticker) sleeves of a market (`backtest.simulation.simulate`, every arm that shares a
window at once) and writes three tables per arm and market that the dbt `landing` source reads
(`backtest_daily`, `backtest_trades`, `backtest_metrics`, `regime_metrics` are built on them):

- `sleeves`: one row per ticker and session of the arm's window, with `hold_equity` and
  `hold_daily_return`: the same sleeve bought at the window's first bar and held (the
  `buy_and_hold` rule over the arm's own window), what `excess_return` compares with;
- `round_trips`: one row per closed round trip (`backtest.simulation.round_trips`);
- `arms`: one row: kind, model, mode, window, decision counts, settings.

Results add up: each is its own file, `<data-dir>/landing/backtest/<table>/arm=<slug>/
market=<m>.parquet` (`DataLayout.backtest_result_file`), and a run replaces (atomically, file
by file) only the files of the arms and markets it simulated; every other arm's result stays.
`--arm` without `--baseline` simulates no baseline, so backtesting one arm leaves the
baselines' results as they were. The single files of earlier versions
(`landing/backtest/<table>.parquet`, every arm over one shared window) are removed by the next
run and never read.

Windows, per market, on the sessions with price bars:
- an LLM or reference arm: from its first to its last decision date (of the decisions within
  `start` / `end` when given), so an arm with two days of decisions is measured over two
  sessions; the sleeves start flat there, the first price limit referring to the close
  before, as the agent's book does (a backtest of an arm reproduces its book);
- the baselines (no decisions): from the earliest to the latest window of the run's arms, or,
  when the run has no arm, `start` .. `end` defaulting to the span of the snapshots.
Arms that share a window are simulated together. A decision dated after the last bar (the
live-forward decision for a session that has not traded yet) cannot be filled and is counted as
untradable. Prices are the raw (unadjusted) bars: fills happen at the prices that were quoted.

Returns are total returns: the market's `corporate_actions` (raw/<m>/corporate_actions.parquet,
optional: absent or empty is no event) enter the simulation on their ex-date session (an
ex-date that is no session takes effect at the next one): splits and bonus shares scale the
shares, cash dividends are credited (`backtest.simulation`). Idle cash earns each session's
`risk_free_return` of the warehouse's `int_risk_free_daily` (the market's daily series or its
constant rate).
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from backtest.baselines import buy_and_hold
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
from backtest.targets import (
    BASELINE_ARMS,
    STRATEGY_ARMS,
    baseline_targets,
    decision_targets,
    membership,
    sell_after_membership,
)
from ingest.calendars import MARKETS
from ingest.layout import DataLayout
from ingest.load import market_ingest_id, write_atomically

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
    "is_reasoning",
    "market",
    "ticker",
    "decision_date",
    "target_exposure",
    "previous_exposure",
    "parse_status",
    "answer_status",
    "view",
    "request_hash",
    "action",
    "backend",
    "snapshot_hash",
    "ingest_id",
    "config_hash",
)


class BacktestError(ValueError):
    """The inputs cannot be backtested; the message names what is missing."""


@dataclass(frozen=True)
class BacktestConfig:
    start: date | None = None
    end: date | None = None
    arms: tuple[str, ...] | None = None  # LLM arm slugs; None: every arm with decisions
    baselines: tuple[str, ...] | None = None  # None: all, or none when `arms` names arms
    markets: tuple[str, ...] = MARKETS
    random_seed: int = 0
    fill_at: str = "open"  # the price a decision for session D fills at: D's open or close
    initial_capital: float = DEFAULT_CAPITAL  # per ticker sleeve, in the market's currency

    @property
    def chosen_baselines(self) -> tuple[str, ...]:
        """The baselines this run simulates: a run for named arms leaves the baselines' stored
        results alone unless it names baselines too."""
        if self.baselines is not None:
            return self.baselines
        return () if self.arms else BASELINE_ARMS


Window = tuple[date, date]  # first and last date, inclusive


@dataclass
class MarketRun:
    market: str
    start: date  # the earliest window's start
    end: date  # the latest window's end
    sessions: int  # sessions with bars from start to end
    tickers: int
    arms: list[str]  # the arms simulated (and written)
    decisions: int
    untradable_decisions: int
    trades: int
    windows: dict[str, Window] = field(default_factory=dict)  # per simulated arm
    arm_sessions: dict[str, int] = field(default_factory=dict)  # per simulated arm
    # arm -> why it was not simulated (no price bar in its window)
    skipped: dict[str, str] = field(default_factory=dict)

    def lines(self, shown: int = 6) -> list[str]:
        """What was simulated: counts, then each window with its arms (`shown` named)."""
        out = [
            f"{self.market}: {len(self.arms)} arms x {self.tickers} tickers, {self.decisions} "
            f"decisions, {self.untradable_decisions} not tradable (after the last bar or no "
            f"bars), {self.trades} closed round trips"
        ]
        by_window: dict[Window, list[str]] = {}
        for arm, window in self.windows.items():
            by_window.setdefault(window, []).append(arm)
        for (start, end), arms in sorted(by_window.items()):
            more = f" and {len(arms) - shown} more" if len(arms) > shown else ""
            out.append(
                f"  {start} .. {end} ({self.arm_sessions[arms[0]]} sessions): "
                f"{', '.join(arms[:shown])}{more}"
            )
        out += [f"  not simulated: {arm} ({why})" for arm, why in self.skipped.items()]
        return out


@dataclass
class BacktestSummary:
    markets: list[MarketRun] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    removed: list[Path] = field(default_factory=list)  # an earlier version's single files

    def lines(self) -> list[str]:
        out = [line for run in self.markets for line in run.lines()]
        if self.removed:
            out.append(
                f"removed {len(self.removed)} backtest file(s) of an earlier version (every arm "
                "over one shared window): arms not simulated in this run have no result until "
                "backtested again"
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
    split_ratio: np.ndarray  # like open_: the split on its ex-date session, 1 elsewhere
    cash_dividend: np.ndarray  # like open_: the dividend per share on its ex-date, 0 elsewhere
    risk_free: np.ndarray  # (n_sessions,): each session's risk-free return

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

    def window(self, start: date, end: date) -> MarketData | None:
        """The sessions from `start` to `end` and the tickers with a bar among them; None
        when no session has a bar. `prior_close` becomes each ticker's last close before
        `start`, which the first session's price limit refers to."""
        sessions = (self.sessions >= pd.Timestamp(start)) & (self.sessions <= pd.Timestamp(end))
        if not sessions.any():
            return None
        first = int(np.argmax(sessions))
        tickers = (~np.isnan(self.close[:, sessions])).any(axis=1)
        earlier = np.column_stack([self.prior_close, self.close[:, :first]])
        prior_close = pd.DataFrame(earlier).ffill(axis=1).iloc[:, -1].to_numpy(dtype=np.float64)
        return MarketData(
            self.market,
            self.sessions[sessions],
            self.tickers[tickers],
            self.open_[tickers][:, sessions],
            self.close[tickers][:, sessions],
            [rule for rule, kept in zip(self.rules, tickers, strict=True) if kept],
            prior_close[tickers],
            self.split_ratio[tickers][:, sessions],
            self.cash_dividend[tickers][:, sessions],
            self.risk_free[sessions],
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


def corporate_actions(
    layout: DataLayout,
    market: str,
    tickers: pd.Index,
    sessions: pd.DatetimeIndex,
    after: pd.Timestamp | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The market's corporate actions on (tickers, sessions): split ratios (1 where none) and
    cash dividends per share before the event (0 where none), each on its ex-date session.

    An ex-date that is no session takes effect at the next session; events dated on or before
    `after` (the last session before `sessions`; default: before the first session) or after
    the last session are outside. The raw file is optional (absent or empty: no events)."""
    split = np.ones((len(tickers), len(sessions)))
    dividend = np.zeros((len(tickers), len(sessions)))
    path = layout.raw_file(market, "corporate_actions")
    if not path.is_file() or len(sessions) == 0:
        return split, dividend
    events = pd.read_parquet(path, columns=["ticker", "ex_date", "split_ratio", "cash_dividend"])
    events["ex_date"] = pd.to_datetime(events["ex_date"])
    events["split_ratio"] = events["split_ratio"].astype("float64").fillna(1.0)
    events["cash_dividend"] = events["cash_dividend"].astype("float64").fillna(0.0)
    first = sessions[0] if after is None else after + pd.Timedelta(days=1)
    events = events[
        (events["ex_date"] >= first)
        & (events["ex_date"] <= sessions[-1])
        & events["ticker"].isin(tickers)
    ]
    rows = tickers.get_indexer(events["ticker"])
    cols = sessions.searchsorted(events["ex_date"])
    keys = pd.Series(list(zip(rows, cols, strict=True)), dtype=object)
    if keys.duplicated().any():
        clash = _named_events(events[keys.duplicated(keep=False).to_numpy()])
        raise BacktestError(f"{path}: several corporate actions on one session: {clash}")
    bad = (events["split_ratio"] <= 0) | (events["cash_dividend"] < 0)
    if bad.any():
        raise BacktestError(
            f"{path}: split_ratio must be positive and cash_dividend not negative: "
            + _named_events(events[bad])
        )
    split[rows, cols] = events["split_ratio"].to_numpy()
    dividend[rows, cols] = events["cash_dividend"].to_numpy()
    return split, dividend


def _named_events(events: pd.DataFrame) -> str:
    pairs = zip(events["ticker"], events["ex_date"], strict=True)
    return ", ".join(f"{ticker} {day.date()}" for ticker, day in pairs)


def risk_free_returns(warehouse: Path, market: str, sessions: pd.DatetimeIndex) -> np.ndarray:
    """Each session's risk-free return (`int_risk_free_daily`), which idle cash earns."""
    if len(sessions) == 0:
        return np.zeros(0)
    try:
        with duckdb.connect(str(warehouse), read_only=True) as connection:
            frame = connection.execute(
                'select "date", risk_free_return from int_risk_free_daily '
                'where market = ? and "date" between ? and ?',
                [market, sessions[0].date(), sessions[-1].date()],
            ).df()
    except duckdb.CatalogException as error:
        raise BacktestError(
            f"{warehouse}: no int_risk_free_daily; build the warehouse (strat-llm build)"
        ) from error
    rates = frame.set_index(pd.to_datetime(frame["date"]))["risk_free_return"]
    rates = rates.reindex(sessions)
    if rates.isna().any():
        missing = ", ".join(str(day.date()) for day in rates.index[rates.isna()][:5])
        raise BacktestError(
            f"{market}: int_risk_free_daily has no risk-free return on {missing}; "
            "build the warehouse over the price sessions"
        )
    return rates.to_numpy(dtype=np.float64)


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
    last_before = earlier["date"].max() if len(earlier) else None
    return MarketData(
        market,
        sessions,
        tickers,
        pivot(prices, "open", "date", tickers, sessions),
        pivot(prices, "close", "date", tickers, sessions),
        [rules[ticker] for ticker in tickers],
        prior_close.to_numpy(dtype=np.float64),
        *corporate_actions(layout, market, tickers, sessions, last_before),
        risk_free_returns(layout.warehouse, market, sessions),
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


def decision_windows(config: BacktestConfig, decisions: pd.DataFrame) -> dict[str, Window]:
    """Each arm's window in one market: its first to last decision date among its decisions
    within `start` / `end`; an arm without such a decision has none."""
    dates = decisions["decision_date"]
    inside = np.ones(len(decisions), dtype=bool)
    if config.start:
        inside &= (dates >= pd.Timestamp(config.start)).to_numpy()
    if config.end:
        inside &= (dates <= pd.Timestamp(config.end)).to_numpy()
    spans = decisions[inside].groupby("arm", sort=True)["decision_date"].agg(["min", "max"])
    return {
        arm: (first.date(), last.date())
        for arm, first, last in zip(spans.index, spans["min"], spans["max"], strict=True)
    }


def baseline_window(
    config: BacktestConfig, windows: dict[str, Window], warehouse: Path, market: str
) -> Window | None:
    """The baselines' window: from the earliest to the latest of the arms' windows, else the
    configured window, defaulting to the span of the market's snapshots; None without any."""
    if windows:
        return min(s for s, _ in windows.values()), max(e for _, e in windows.values())
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
            is_reasoning=("is_reasoning", "first"),
            view=("view", "first"),
            backend=("backend", "first"),
        )
        .reset_index()
    )
    # `random` answers are the guardrail's control (inference.experiments.CONTROL_BACKEND).
    llm["arm_kind"] = np.where(
        llm["is_llm"].astype(bool),
        "llm",
        np.where(llm.pop("backend") == "random", "control", "reference"),
    )
    # The model's configuration key: the slug's first part (inference.experiments.SLUG_GRAMMAR).
    # Two configurations of one model id (other sampling, say) are two model keys.
    llm.insert(2, "model_key", llm["arm"].str.split("__").str[0])
    base = pd.DataFrame(
        {
            "arm": list(baselines),
            "model_key": list(baselines),
            "model": list(baselines),
            "mode": "baseline",
            "attitude": None,
            "replicate": 0,
            "is_llm": False,
            "is_reasoning": None,
            "view": None,
            "arm_kind": "baseline",
        }
    )
    arms = pd.concat([frame for frame in (llm, base) if len(frame)], ignore_index=True)
    arms.insert(1, "market", market)
    return arms


def _rows(result: SimulationResult, rows: slice) -> SimulationResult:
    """Some series (rows) of a simulation's result."""
    return SimulationResult(**{f.name: getattr(result, f.name)[rows] for f in fields(result)})


def simulate_window(data: MarketData, targets: np.ndarray, fill_at: str) -> SimulationResult:
    """Simulate stacked blocks of `data`'s tickers (one block per arm) over its sessions."""
    copies = len(targets) // len(data.tickers)
    fill = data.close if fill_at == "close" else data.open_
    rules = SeriesRules.stack(data.rules * copies)
    # Flat sleeves whose first price limit refers to the close before the window, as the
    # agents' books (backtest.book) start: the backtest of an arm reproduces its book.
    opening = SleeveState.opening(rules)
    opening.last_close[:] = np.tile(data.prior_close, copies)
    return simulate(
        targets,
        np.tile(fill, (copies, 1)),
        np.tile(data.close, (copies, 1)),
        rules,
        state=opening,
        split_ratio=np.tile(data.split_ratio, (copies, 1)),
        cash_dividend=np.tile(data.cash_dividend, (copies, 1)),
        risk_free=np.tile(data.risk_free, (len(targets), 1)),
    )


def simulate_market(
    layout: DataLayout,
    config: BacktestConfig,
    market: str,
    decisions: pd.DataFrame,
    rules_row: dict,
) -> tuple[dict[str, dict[str, pa.Table]], MarketRun] | None:
    """Simulate the chosen arms of one market, each over its own window (module doc): the
    tables of each arm simulated, by arm; None when the market has nothing to backtest."""
    windows = decision_windows(config, decisions)
    baselines = config.chosen_baselines
    groups: dict[Window, list[str]] = {}
    for arm, window in windows.items():
        groups.setdefault(window, []).append(arm)
    if baselines and (window := baseline_window(config, windows, layout.warehouse, market)):
        groups.setdefault(window, []).extend(baselines)
    if not groups:
        return None
    data = load_market(
        layout,
        market,
        min(start for start, _ in groups),
        max(end for _, end in groups),
        rules_row,
        config.initial_capital,
    )
    universe = pd.read_parquet(layout.raw_file(market, "universe"))
    first = pd.to_datetime(decisions["arm"].map({arm: w[0] for arm, w in windows.items()}))
    last = pd.to_datetime(decisions["arm"].map({arm: w[1] for arm, w in windows.items()}))
    dates = decisions["decision_date"]
    decisions = decisions[(dates >= first) & (dates <= last)].copy()  # NaT: no window
    decisions["target"] = decision_targets(decisions)
    by_arm = dict(tuple(decisions.groupby("arm", sort=False)))
    kinds = _arm_rows(market, decisions, baselines).set_index("arm")
    seed = [config.random_seed, zlib.crc32(market.encode())]  # one stream per market
    run = MarketRun(market, min(groups)[0], max(end for _, end in groups), 0, 0, [], 0, 0, 0)
    run.sessions, run.tickers = len(data.sessions), len(data.tickers)
    tables: dict[str, dict[str, pa.Table]] = {}
    counts: dict[str, dict[str, object]] = {}
    for window, members in sorted(groups.items()):
        part = data.window(*window)
        if part is None:
            why = f"no price bar from {window[0]} to {window[1]}"
            run.skipped.update(dict.fromkeys(members, why))
            continue
        signals = (
            snapshot_signals(layout.warehouse, part) if set(members) & set(STRATEGY_ARMS) else {}
        )
        # Every arm trades a ticker only while it is an index member and sells it after.
        member, after = membership(universe, part.tickers, part.sessions)
        tradable = part.has_bar & member
        targets = [
            sell_after_membership(
                part.matrix(by_arm[arm], "target", "decision_date")
                if kinds.loc[arm, "arm_kind"] != "baseline"
                else baseline_targets(arm, tradable, signals, seed),
                after,
            )
            for arm in members
        ]
        # Last block: the window's buy-and-hold, the comparison of every arm in it.
        hold_targets = sell_after_membership(buy_and_hold(tradable), after)
        result = simulate_window(part, np.concatenate([*targets, hold_targets]), config.fill_at)
        n = len(part.tickers)
        hold = _rows(result, slice(len(members) * n, None))
        for index, arm in enumerate(members):
            own = _rows(result, slice(index * n, (index + 1) * n))
            series = SeriesLabels(
                arm=np.full(n, arm, dtype=object),
                ticker=part.tickers.to_numpy(dtype=object),
                has_bar=part.has_bar,
                initial_capital=np.array([rule.initial_capital for rule in part.rules]),
            )
            sleeves = sleeve_table(market, own, series, part.sessions, targets[index])
            trips = round_trips(own, sessions=part.sessions.date)
            decided = by_arm.get(arm, decisions.iloc[:0])
            untradable = int((~part.on_axes(decided, "decision_date")).sum())
            tables[arm] = {
                "sleeves": sleeves.append_column(
                    "hold_equity", pa.array(hold.equity.ravel())
                ).append_column("hold_daily_return", pa.array(hold.daily_return.ravel())),
                "round_trips": trip_table(market, trips, series),
            }
            counts[arm] = {
                "window_start": window[0],
                "window_end": window[1],
                "n_sessions": len(part.sessions),
                "n_tickers": n,
                "n_decisions": len(decided),
                "n_untradable_decisions": untradable,
                **decision_lineage(decided),
            }
            run.windows[arm], run.arm_sessions[arm] = window, len(part.sessions)
            run.decisions += len(decided)
            run.untradable_decisions += untradable
            run.trades += len(trips)
    run.arms = list(tables)
    if not tables:
        return tables, run
    arms = kinds.loc[run.arms].join(pd.DataFrame.from_dict(counts, orient="index")).reset_index()
    arms["fill_at"], arms["random_seed"] = config.fill_at, config.random_seed
    arms["initial_capital"] = config.initial_capital
    arms["ingest_id"] = market_ingest_id(layout, market)
    rows = pa.Table.from_pandas(arms, schema=ARM_SCHEMA, preserve_index=False)
    for index, arm in enumerate(arms["arm"]):
        tables[arm]["arms"] = rows.slice(index, 1)
    return tables, run


def decision_lineage(decided: pd.DataFrame) -> dict[str, str | None]:
    """What an arm's result was made of: its configuration(s) and the ingest(s) its decisions
    were made on (comma-separated when several: one arm, one of each, is the norm), and a
    hash of the decisions themselves (ticker, date, request and the action that stood)."""
    if decided.empty:
        return {"config_hash": None, "decision_ingest_ids": None, "decisions_hash": None}

    def distinct(column: str) -> str | None:
        return ",".join(sorted(decided[column].dropna().astype(str).unique())) or None

    columns = ["ticker", "decision_date", "request_hash", "action", "target_exposure"]
    keys = ["|".join(map(str, row)) for row in decided[columns].itertuples(index=False)]
    digest = hashlib.sha256("\n".join(sorted(keys)).encode()).hexdigest()[:16]
    return {
        "config_hash": distinct("config_hash"),
        "decision_ingest_ids": distinct("ingest_id"),
        "decisions_hash": digest,
    }


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
        ("model_key", pa.string()),  # the model's configuration key (the slug's first part)
        ("model", pa.string()),
        ("mode", pa.string()),
        ("attitude", pa.string()),
        ("replicate", pa.int64()),
        ("is_llm", pa.bool_()),
        # the arm ran with reasoning on; null for baselines and decisions written before it
        ("is_reasoning", pa.bool_()),
        # llm | reference (a rule agent in a mode) | control (random through the guardrail)
        # | baseline
        ("arm_kind", pa.string()),
        ("view", pa.string()),  # aware | blind; null for baselines
        ("window_start", pa.date32()),
        ("window_end", pa.date32()),
        ("n_sessions", pa.int64()),
        ("n_tickers", pa.int64()),
        ("n_decisions", pa.int64()),
        ("n_untradable_decisions", pa.int64()),
        ("fill_at", pa.string()),
        ("random_seed", pa.int64()),
        ("initial_capital", pa.float64()),
        # Lineage (backtest.run.decision_lineage): null for baselines but ingest_id, the
        # market's raw data the simulation priced with.
        ("config_hash", pa.string()),
        ("decision_ingest_ids", pa.string()),
        ("decisions_hash", pa.string()),
        ("ingest_id", pa.string()),
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


BACKTEST_TABLES = ("sleeves", "round_trips", "arms")  # written in this order: arms last


def run_backtest(
    layout: DataLayout,
    config: BacktestConfig = BacktestConfig(),
    progress: Callable[[str], None] = lambda _line: None,
) -> BacktestSummary:
    """Simulate the chosen arms of every chosen market and replace their result files (each
    atomically); the results of other arms and markets stay (module doc)."""
    if config.fill_at not in FILL_PRICES:
        raise BacktestError(f"fill_at {config.fill_at!r}: expected one of {', '.join(FILL_PRICES)}")
    unknown = sorted(set(config.chosen_baselines) - set(BASELINE_ARMS))
    if unknown:
        raise BacktestError(
            f"unknown baseline arm(s) {', '.join(unknown)}; expected {', '.join(BASELINE_ARMS)}"
        )
    if config.start and config.end and config.end < config.start:
        raise BacktestError(f"backtest window end {config.end} is before its start {config.start}")
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
    for market in config.markets:
        if not layout.raw_file(market, "prices").is_file():
            continue
        outcome = simulate_market(
            layout, config, market, decisions[decisions["market"] == market], rules[market]
        )
        if outcome is None:
            continue
        tables, run = outcome
        for arm, by_name in tables.items():
            for name in BACKTEST_TABLES:
                path = layout.backtest_result_file(name, arm, market)
                table = by_name[name]
                write_atomically(path, lambda target, table=table: pq.write_table(table, target))
                summary.files.append(path)
        summary.markets.append(run)
        for line in run.lines():
            progress(line)
    if not summary.markets:
        raise BacktestError(
            f"nothing to backtest: no decisions and no snapshots in {layout.warehouse}"
        )
    # An earlier version's single files (every arm over one window): no longer read by dbt.
    for name in BACKTEST_TABLES:
        old = layout.backtest_file(name)
        if old.is_file():
            old.unlink()
            summary.removed.append(old)
    return summary
