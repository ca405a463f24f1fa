"""The agents' books: each arm's sleeves stepped one session at a time (DESIGN §7).

The prompt of decision date D shows an arm's book after the previous session; the book after
session D is the book after D-1 stepped through D's decisions by `simulate`, the same compiled
step the backtest runs over a whole range (with the same corporate actions on their ex-dates
and the same risk-free interest on idle cash), started from the state the previous book stored.
So a backtest of the arm over its decision span reproduces the book row for row.

`BookKeeper` is what the orchestrator hands inference (`inference.engine.BookSource`): it
rolls each (arm, market) book forward through the market's sessions (sessions on which the arm
made no decision keep the shares), writes one Parquet file per arm, market and session
(`<data-dir>/landing/book/arm=<slug>/market=<m>/date=<D>.parquet`, one row per ticker) and
returns the latest book as rows. A book starts flat at the arm's first decision in a market
and continues from the latest book file on disk when a later range is run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from backtest.run import (
    LastFills,
    SeriesLabels,
    corporate_actions,
    market_rules,
    pivot,
    risk_free_returns,
    sleeve_table,
    ticker_rules,
)
from backtest.simulation import DEFAULT_CAPITAL, SeriesRules, SleeveState, simulate
from backtest.targets import decision_targets, membership, sell_after_membership
from ingest.layout import DataLayout
from ingest.load import write_atomically


@dataclass
class _MarketBars:
    """One market's whole price file on its session axis: what every book steps through."""

    market: str
    axis: pd.DatetimeIndex
    tickers: pd.Index
    open_: np.ndarray
    close: np.ndarray
    rules: SeriesRules
    after_membership: np.ndarray  # (tickers, axis): past member_to, sold as the backtest does
    split_ratio: np.ndarray  # like open_: corporate actions on their ex-date session
    cash_dividend: np.ndarray
    risk_free: np.ndarray  # (n_sessions,): each session's risk-free return

    def position(self, day: date) -> int | None:
        found = self.axis.get_indexer([pd.Timestamp(day)])[0]
        return None if found < 0 else int(found)

    def sessions_before(self, day: date) -> int:
        """How many sessions of the axis come before `day`."""
        return int(self.axis.searchsorted(pd.Timestamp(day)))

    def targets(self, decisions: pd.DataFrame) -> np.ndarray:
        """What one session's decision rows (by ticker) execute, on this market's tickers;
        NaN (keep the shares) for a ticker without a decision."""
        target = np.full(len(self.tickers), np.nan)
        index = self.tickers.get_indexer(decisions["ticker"])
        inside = index >= 0
        target[index[inside]] = decision_targets(decisions).to_numpy()[inside]
        return target

    def opening_state(self, first: int) -> SleeveState:
        """Flat sleeves whose limit reference is the close before session `first`."""
        state = SleeveState.opening(self.rules)
        if first > 0:
            closes = pd.DataFrame(self.close[:, :first]).ffill(axis=1)
            state.last_close[:] = closes.iloc[:, -1].to_numpy(dtype=np.float64)
        return state


@dataclass
class _Sleeves:
    """One arm's book in one market: the state after session `at` (an axis position)."""

    state: SleeveState
    at: int  # the last session stepped; -1 before the first
    fills: LastFills
    rows: list[dict[str, Any]] = field(default_factory=list)  # the book after `at`
    targets: dict[int, np.ndarray] = field(default_factory=dict)  # decided sessions ahead


class BookKeeper:
    """Steps the books of some arms, one session at a time (module doc)."""

    def __init__(
        self,
        layout: DataLayout,
        arms: Sequence[str],
        markets: Sequence[str],
        *,
        initial_capital: float = DEFAULT_CAPITAL,
    ) -> None:
        self.layout, self.arms = layout, list(arms)
        rules = market_rules(layout.warehouse)
        self.markets: dict[str, _MarketBars] = {}
        for market in markets:
            if not layout.raw_file(market, "prices").is_file():
                continue
            prices = pd.read_parquet(
                layout.raw_file(market, "prices"), columns=["ticker", "date", "open", "close"]
            )
            universe = pd.read_parquet(layout.raw_file(market, "universe"))
            by_ticker = ticker_rules(universe, rules[market], initial_capital)
            axis = pd.DatetimeIndex(sorted(pd.to_datetime(prices["date"]).unique()))
            tickers = pd.Index(sorted(prices["ticker"].unique()))
            self.markets[market] = _MarketBars(
                market,
                axis,
                tickers,
                pivot(prices, "open", "date", tickers, axis),
                pivot(prices, "close", "date", tickers, axis),
                SeriesRules.stack([by_ticker[ticker] for ticker in tickers]),
                membership(universe, tickers, axis)[1],
                *corporate_actions(layout, market, tickers, axis),
                risk_free_returns(layout.warehouse, market, axis),
            )
        self._sleeves: dict[tuple[str, str], _Sleeves] = {}
        self.written: list[Path] = []

    def before(self, day: date) -> list[dict[str, Any]]:
        """Every book rolled forward through the sessions before `day`, as rows."""
        rows: list[dict[str, Any]] = []
        for arm in self.arms:
            for market, bars in self.markets.items():
                sleeves = self._sleeves.get((arm, market)) or self._resume(arm, bars, day)
                if sleeves is None:
                    continue
                self._roll(arm, bars, sleeves, bars.sessions_before(day) - 1)
                rows += sleeves.rows
        return rows

    def record(self, day: date, rows: list[dict[str, Any]]) -> None:
        """The decisions of `day` (every arm and market): the targets its session executes."""
        frame = pd.DataFrame(rows)
        if frame.empty:
            return
        for (arm, market), part in frame.groupby(["arm", "market"], sort=False):
            bars = self.markets.get(market)
            position = bars.position(day) if bars is not None else None
            if bars is None or position is None:
                continue  # no bar yet (live-forward): nothing to step
            sleeves = self._sleeves.get((arm, market)) or self._resume(arm, bars, day)
            if sleeves is None:  # the arm's first decision in this market: a flat book
                sleeves = _Sleeves(
                    bars.opening_state(position), position - 1, LastFills.none(len(bars.tickers))
                )
                self._sleeves[(arm, market)] = sleeves
            sleeves.targets[position] = bars.targets(part.reset_index(drop=True))

    def finish(self) -> None:
        """Step every book through its last decided session."""
        for (_arm, market), sleeves in self._sleeves.items():
            if sleeves.targets:
                self._roll(_arm, self.markets[market], sleeves, max(sleeves.targets))

    def _resume(self, arm: str, bars: _MarketBars, day: date) -> _Sleeves | None:
        """The latest book on disk before `day`, if any."""
        latest = self.layout.latest_book_file(arm, bars.market, day)
        if latest is None:
            return None
        book_date, path = latest
        table = pq.read_table(path)
        frame = table.to_pandas().set_index("ticker").reindex(bars.tickers)
        if frame["date"].isna().any():
            missing = ", ".join(map(str, frame.index[frame["date"].isna()][:5]))
            raise ValueError(f"{path}: the book has no row for ticker(s) {missing}")
        position = bars.position(book_date)
        if position is None:
            raise ValueError(f"{path}: not a session of the {bars.market} price file")
        sleeves = _Sleeves(
            # the book names the simulation's held_sessions for its readers: sessions_held
            SleeveState.from_columns(frame.rename(columns={"sessions_held": "held_sessions"})),
            position,
            LastFills.of(frame),
            rows=table.to_pylist(),
        )
        self._sleeves[(arm, bars.market)] = sleeves
        return sleeves

    def _roll(self, arm: str, bars: _MarketBars, sleeves: _Sleeves, through: int) -> None:
        """Step sessions `at + 1 .. through`; a session without a decision keeps the shares
        (decisions already on disk for it, from an earlier run, are used as they stand)."""
        for position in range(sleeves.at + 1, through + 1):
            target = sleeves.targets.pop(position, None)
            if target is None:
                target = self._landed_targets(arm, bars, position)
            target = sell_after_membership(target, bars.after_membership[:, position])
            self._step(arm, bars, sleeves, position, target)

    def _landed_targets(self, arm: str, bars: _MarketBars, position: int) -> np.ndarray:
        path = self.layout.decision_file(arm, bars.market, bars.axis[position].date())
        if not path.is_file():
            return np.full(len(bars.tickers), np.nan)
        return bars.targets(
            pd.read_parquet(
                path, columns=["ticker", "target_exposure", "previous_exposure", "parse_status"]
            )
        )

    def _step(
        self, arm: str, bars: _MarketBars, sleeves: _Sleeves, position: int, target: np.ndarray
    ) -> None:
        window = slice(position, position + 1)
        result = simulate(
            target[:, None],
            bars.open_[:, window],
            bars.close[:, window],
            bars.rules,
            state=sleeves.state,
            split_ratio=bars.split_ratio[:, window],
            cash_dividend=bars.cash_dividend[:, window],
            risk_free=np.broadcast_to(bars.risk_free[window], (len(bars.tickers), 1)),
        )
        n = len(bars.tickers)
        labels = SeriesLabels(
            arm=np.full(n, arm, dtype=object),
            ticker=bars.tickers.to_numpy(dtype=object),
            has_bar=~np.isnan(bars.close[:, window]),
            initial_capital=bars.rules.initial_capital,
        )
        table = sleeve_table(
            bars.market,
            result,
            labels,
            bars.axis[window],
            target[:, None],
            axis=bars.axis,
            positions=np.array([position]),
            prior=sleeves.fills,
        )
        state = result.final_state
        table = table.append_column("last_close", pa.array(state.last_close, from_pandas=True))
        rows = table.to_pylist()
        for row in rows:
            row["row_hash"] = row_hash(row)
        table = table.append_column("row_hash", pa.array([row["row_hash"] for row in rows]))
        path = self.layout.book_file(arm, bars.market, bars.axis[position].date())
        write_atomically(path, lambda target_path: pq.write_table(table, target_path))
        self.written.append(path)
        sleeves.state, sleeves.at, sleeves.rows = state, position, rows
        fills = table.select(["last_fill_date", "last_fill_shares", "last_fill_price"])
        sleeves.fills = LastFills.of(fills.to_pandas())


def row_hash(row: dict[str, Any]) -> str:
    """A book row's content hash (its `repr` is exact for floats and dates)."""
    return hashlib.blake2b(repr(sorted(row.items())).encode(), digest_size=8).hexdigest()
