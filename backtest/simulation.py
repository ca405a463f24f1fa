"""Execution simulation of target-exposure decisions, vectorised across series (DESIGN §8).

Conventions (what `backtest_daily` and `backtest_trades` rely on):

- A *series* is one (arm, ticker) sleeve with its own starting capital. Inputs are 2-D arrays of
  shape (n_series, n_sessions) on one common session axis; NaN marks a session on which a series
  has no bar (open and close both NaN) or no decision (target NaN).
- `target[s, t]` is the fraction of the sleeve's equity to hold in the stock (0..1), decided for
  session t and executed at t's open. NaN keeps the current shares. A decision on a session
  without a bar (holiday of that market on the union axis, suspension) is skipped.
- At the open: equity is marked at the open (cash + shares x open) and the desired shares are
  `floor(target x equity / (fill_price x lot)) x lot`, with the fill price the open moved
  against us by the slippage (buys `open x (1 + slip)`, sells `open x (1 - slip)`). We buy when
  the desired shares at the buy price exceed the holding, sell when the desired shares at the
  sell price fall below it, and otherwise hold: a holding inside that band is already on target.
  A target repeated every session therefore rebalances by whole lots as prices move.
- Costs: commission `max(min_commission, notional x commission_bps / 1e4)` per trade (none when
  nothing trades); stamp duty `notional x stamp_duty_sell_bps / 1e4` on sells only. Slippage is
  in the fill price, never in `fees`.
- Cash never goes negative: a buy shrinks by whole lots until cash covers notional and
  commission. A sell whose costs would exceed cash plus its notional (only possible when the
  position is worth less than the minimum commission) is skipped. Long only.
- Price limits (CN): limit-up/down = previous close x (1 +/- pct / 100), rounded half-up to
  cents, computed exactly on integer cents (prices are quoted in cents; the limit % has at most
  two decimals). No buy when the open is at or above limit-up, no sell when it is at or below
  limit-down. A blocked order is dropped, not queued: the next session's decision decides again
  (a queued order would execute a stale decision at a price the agent never saw). The previous
  close is the series' last close before the session; its first bar has none and no limit
  (IPO days follow other rules) unless `prev_close` is given.
- T+1 (A-shares): shares bought in a session cannot be sold in that session. `Book` tracks the
  shares bought this session and every sell is capped at the rest. With one fill per session,
  at the open, the cap never binds (nothing has been bought yet when the session's only order is
  placed); it binds when `execute_at_open` is called twice in one session.
- Before the open's order, at the start of each session: the cash held at the last close
  earns the session's risk-free return (`risk_free`, the market's daily rate; `interest`).
  Then, on a corporate action's ex-date: cash += shares x cash_dividend (the shares before the
  event), shares x= split_ratio (a CN odd lot that results stays and can be sold; a fraction
  of a share is paid in cash at the ex-reference price), and the last close becomes the
  ex-reference price (last close - dividend) / split_ratio: the price limit's base and the
  mark of a session without a bar, so a split is no loss and the equity is a total return.
  The cost basis keeps the cash paid for a split (the entry price per share falls with it)
  and falls by the dividend's share of the last close, (last close - dividend) / last close,
  as back-adjusted prices do; `dividend_cash` is the cash the event credited.
- Marks at the close: position value = shares x close (the last close when the session has no
  bar), equity = cash + position value, exposure = position value / equity,
  daily_return = equity_t / equity_{t-1} - 1 with equity_{-1} = initial capital (the state's
  equity when resumed, see below).
- The book, after each session: cost_basis = cash paid for the shares held (each buy's notional
  at its fill price plus its commission; a sell keeps the same fraction of it as of the shares,
  cost_basis x shares_after / shares_before, and flat is 0); avg_entry_price = cost_basis /
  shares and unrealized_return = position value / cost_basis - 1 (both NaN when flat);
  held_sessions = closes the position has been held at (1 on the session of the buy from flat,
  +1 each later session while shares are held, bar or not; 0 when flat).
- order_status, a code into `ORDER_STATUSES`, says what became of the session's order:
  0 none: no order (target NaN or no bar) or the holding is already on target within a lot;
  1 filled: traded in full;
  2 limit_up / 3 limit_down: dropped at the price limit (these two are `limit_blocked`);
  4 cash: cash did not cover the order's costs: a buy shrunk (partly or wholly), or a sell
    skipped because its costs would overdraw;
  5 lot: the target is above 0, the sleeve is flat and one lot costs more than the target
    allows, so nothing was bought;
  6 t_plus_one: a sell capped by T+1 (only when `execute_at_open` runs twice in a session).
- Resuming: `SleeveState` is everything a sleeve carries from one close to the next (cash,
  shares, last close, equity, cost basis, held sessions: (n_series,) float64 vectors, so it
  round-trips through Parquet exactly). `simulate(..., state=s)` starts from it and returns the
  state after its last session as `result.final_state`, so that N calls of one session each,
  the state carried, give bit for bit the outputs of one call over the N sessions (the same
  kernel runs both).

`simulate` checks its inputs, then runs one compiled loop (numba) over series and, within each,
sessions: the same steps and the same floating-point operations in the same order as the
reference, so results agree bit for bit; a series' state stays in registers and its branches
are predictable (a series holds, or has no decision, for many sessions running). The order step
is one scalar function shared with `execute_at_open`. bench/README.md has the figures.
`simulate_one_series` is an independent plain-Python reference (Decimal price limits, a literal
shrink-by-one-lot loop); it derives the same per-series constants (1 + slippage, bps / 1e4) so
that both are bit-identical, and the tests and the bench hold them to 1e-9.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import InitVar, dataclass, fields
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import numba
import numpy as np
import pandas as pd

BPS = 1e4
DEFAULT_CAPITAL = 1_000_000.0
CHINEXT_STAR_PREFIXES = ("300", "301", "688", "689")
# `SimulationResult.order_status` codes are positions in this tuple (see the module doc).
ORDER_STATUSES = ("none", "filled", "limit_up", "limit_down", "cash", "lot", "t_plus_one")
_ORDER_NONE, _ORDER_FILLED, _ORDER_LIMIT_UP, _ORDER_LIMIT_DOWN = range(4)
_ORDER_CASH, _ORDER_LOT, _ORDER_T_PLUS_ONE = range(4, 7)


@dataclass(frozen=True)
class TradingRules:
    """One series' trading rules: the `market_rules` seed row plus the ticker's price limit."""

    lot_size: int = 1
    commission_bps: float = 0.0
    min_commission: float = 0.0
    stamp_duty_sell_bps: float = 0.0
    slippage_bps: float = 0.0
    price_limit_pct: float = math.nan  # NaN: no daily limit (US)
    t_plus_one: bool = False
    initial_capital: float = DEFAULT_CAPITAL

    @classmethod
    def from_market_row(
        cls,
        row: Mapping[str, Any],
        *,
        price_limit_pct: float | None = None,
        initial_capital: float = DEFAULT_CAPITAL,
    ) -> TradingRules:
        """Rules from a `market_rules` row; `price_limit_pct` is the ticker's override."""
        limit = row.get("price_limit_pct") if price_limit_pct is None else price_limit_pct
        return cls(
            lot_size=int(row["lot_size"]),
            commission_bps=float(row["commission_bps"]),
            min_commission=float(row["min_commission"]),
            stamp_duty_sell_bps=float(row.get("stamp_duty_sell_bps") or 0.0),
            slippage_bps=float(row["slippage_bps"]),
            price_limit_pct=_float_or_nan(limit),
            t_plus_one=row.get("settlement") == "T+1",
            initial_capital=float(initial_capital),
        )


def _float_or_nan(value: Any) -> float:
    """None, '' and NaN all mean "no limit"."""
    if value is None or value == "":
        return math.nan
    return float(value)


def board_price_limit_pct(ticker: str, main_board_pct: float, *, is_st: bool = False) -> float:
    """Daily limit of an A-share by board when `universe` gives no override.

    ST stocks 5 %; ChiNext (300xxx, 301xxx) and STAR (688xxx, 689xxx) 20 %; otherwise the
    market's main-board limit. The `universe.price_limit_pct` override, where present, wins.
    """
    if is_st:
        return 5.0
    if ticker.startswith(CHINEXT_STAR_PREFIXES):
        return 20.0
    return main_board_pct


@dataclass(frozen=True)
class SeriesRules:
    """`TradingRules` of every series as (n_series,) vectors, the form `simulate` takes."""

    lot_size: np.ndarray
    commission_bps: np.ndarray
    min_commission: np.ndarray
    stamp_duty_sell_bps: np.ndarray
    slippage_bps: np.ndarray
    price_limit_pct: np.ndarray
    t_plus_one: np.ndarray
    initial_capital: np.ndarray

    @classmethod
    def stack(cls, rules: Sequence[TradingRules]) -> SeriesRules:
        """Stack per-series rules; numbers become float64 vectors, `t_plus_one` bool."""
        columns = {f.name: [getattr(r, f.name) for r in rules] for f in fields(TradingRules)}
        return cls(
            **{
                name: np.asarray(values, dtype=bool if name == "t_plus_one" else np.float64)
                for name, values in columns.items()
            }
        )

    def __len__(self) -> int:
        return len(self.lot_size)

    def series(self, index: int) -> TradingRules:
        """The scalar rules of one series (for the reference simulation)."""
        return TradingRules(
            lot_size=int(self.lot_size[index]),
            commission_bps=float(self.commission_bps[index]),
            min_commission=float(self.min_commission[index]),
            stamp_duty_sell_bps=float(self.stamp_duty_sell_bps[index]),
            slippage_bps=float(self.slippage_bps[index]),
            price_limit_pct=float(self.price_limit_pct[index]),
            t_plus_one=bool(self.t_plus_one[index]),
            initial_capital=float(self.initial_capital[index]),
        )


@dataclass(frozen=True)
class SleeveState:
    """What each series carries from one session's close to the next, enough to resume
    `simulate` bit for bit: (n_series,) float64 vectors, which Parquet stores exactly."""

    cash: np.ndarray
    shares: np.ndarray
    last_close: np.ndarray  # NaN before the first bar; the limits' reference without prev_close
    equity: np.ndarray  # at the last close: the next daily_return's denominator
    cost_basis: np.ndarray  # cash paid for the shares held, commissions included; 0 when flat
    held_sessions: np.ndarray  # closes the position has been held at; 0 when flat

    @classmethod
    def opening(cls, rules: SeriesRules) -> SleeveState:
        """Every sleeve flat, all in cash: its initial capital."""
        capital = rules.initial_capital.astype(np.float64)
        n = len(rules)
        return cls(capital, np.zeros(n), np.full(n, math.nan), capital.copy(), *np.zeros((2, n)))

    @classmethod
    def from_columns(cls, columns: Mapping[str, Any] | pd.DataFrame) -> SleeveState:
        """From a dict, DataFrame or pyarrow Table with the columns `to_columns` gives (others,
        e.g. labels, are ignored); a missing value (null read back from Parquet) is NaN."""
        vectors = {}
        for name in STATE_COLUMNS:
            values = columns[name]
            if isinstance(values, pd.Series):  # nullable dtypes hold pd.NA, which numpy refuses
                values = values.to_numpy(dtype=np.float64, na_value=math.nan)
            vectors[name] = np.array(values, dtype=np.float64)
        lengths = {v.shape for v in vectors.values()}
        if len(lengths) != 1 or len(next(iter(lengths))) != 1:
            raise ValueError(f"SleeveState: columns must be 1-D of one length, got {lengths}")
        return cls(**vectors)

    def to_columns(self) -> dict[str, np.ndarray]:
        """Name -> (n_series,) float64 vector, in `STATE_COLUMNS` order."""
        return {name: np.asarray(getattr(self, name), dtype=np.float64) for name in STATE_COLUMNS}

    def to_frame(self, index: Any = None) -> pd.DataFrame:
        """One row per series, one float64 column per field (for Parquet)."""
        return pd.DataFrame(self.to_columns(), index=index)

    def __len__(self) -> int:
        return len(self.cash)


STATE_COLUMNS = tuple(f.name for f in fields(SleeveState))


@dataclass(frozen=True)
class SimulationResult:
    """Per-session outputs, each shaped like the inputs: (n_series, n_sessions), or
    (n_sessions,) from `simulate_one_series`. Money is in the series' currency.

    `final_state` (the state after the last session, from `simulate`; None from the reference)
    is not a dataclass field: `fields(SimulationResult)` lists exactly the per-session arrays,
    which callers iterate."""

    shares: np.ndarray  # held after the open's fill
    cash: np.ndarray
    position_value: np.ndarray  # shares x close (last close when no bar)
    equity: np.ndarray  # cash + position_value, at the close
    fees: np.ndarray  # commission + stamp duty paid this session (slippage is in fill_price)
    daily_return: np.ndarray  # equity_t / equity_{t-1} - 1, first day against initial capital
    exposure: np.ndarray  # position_value / equity
    traded_shares: np.ndarray  # signed: + bought, - sold
    fill_price: np.ndarray  # price per share incl. slippage; NaN when nothing traded
    limit_blocked: np.ndarray  # bool: an order was dropped at a price limit
    cost_basis: np.ndarray  # cash paid for the shares held, commissions included; 0 when flat
    avg_entry_price: np.ndarray  # cost_basis / shares; NaN when flat
    held_sessions: np.ndarray  # closes the position has been held at; 0 when flat
    unrealized_return: np.ndarray  # position_value / cost_basis - 1; NaN when flat
    order_status: np.ndarray  # int8 code into ORDER_STATUSES
    dividend_cash: np.ndarray  # cash dividends (and cash in lieu of split fractions) credited
    interest: np.ndarray  # risk-free interest credited on the cash held at the last close
    final_state: InitVar[SleeveState | None] = None

    def __post_init__(self, final_state: SleeveState | None) -> None:
        object.__setattr__(self, "final_state", final_state)  # an attribute, not a field


# Outputs that are not float64 (the others are).
_OUTPUT_DTYPES: dict[str, Any] = {"limit_blocked": np.bool_, "order_status": np.int8}


@dataclass
class Book:
    """What each series holds between orders; `execute_at_open` updates it in place."""

    cash: np.ndarray
    shares: np.ndarray
    bought_today: np.ndarray  # shares bought this session, not sellable under T+1

    @classmethod
    def opening(cls, rules: SeriesRules) -> Book:
        """Every sleeve in cash, flat."""
        n = len(rules)
        return cls(rules.initial_capital.astype(np.float64), np.zeros(n), np.zeros(n))

    def new_session(self) -> None:
        """Shares bought in earlier sessions become sellable (T+1)."""
        self.bought_today = np.zeros_like(self.bought_today)


@dataclass(frozen=True)
class Fills:
    """One order round for every series: what traded, at what price, at what cost."""

    traded: np.ndarray  # signed shares
    price: np.ndarray  # NaN where nothing traded
    fees: np.ndarray
    limit_blocked: np.ndarray
    order_status: np.ndarray  # int8 code into ORDER_STATUSES


def price_limits(prev_close: np.ndarray, pct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Limit-up and limit-down prices, rounded half-up to cents (NaN where no limit).

    Worked on integer cents, so that e.g. 10.15 x 1.1 = 11.165 is 11.17 as the exchange's
    decimal rule says (binary `round(11.165, 2)` gives 11.16).
    """
    prev_cents = np.rint(prev_close * 100.0)
    up = np.floor((prev_cents * np.rint(BPS + 100.0 * pct) + 5000.0) / BPS)
    down = np.floor((prev_cents * np.rint(BPS - 100.0 * pct) + 5000.0) / BPS)
    return up / 100.0, down / 100.0


# Rows of the per-series constants that `_rates` derives once; inside the kernels these module
# constants are compile-time literals.
_LOT, _BUY_FACTOR, _SELL_FACTOR, _COMMISSION_RATE, _MIN_COMMISSION = range(5)
_STAMP_RATE, _T_PLUS_ONE, _UP_FACTOR, _DOWN_FACTOR = range(5, 9)
_N_RATES = 9


def _rates(rules: SeriesRules) -> np.ndarray:
    """(9, n_series) constants, derived as the reference derives them (1 + slippage, bps / 1e4)
    so that the kernels' arithmetic is the reference's, bit for bit.

    The limit factors are 10000 +/- 100 x pct (NaN: no limit): limit-up in cents is
    floor((prev_cents x up_factor + 5000) / 10000), i.e. half-up on exact integers.
    """
    rates = np.empty((_N_RATES, len(rules)))
    rates[_LOT] = rules.lot_size
    rates[_BUY_FACTOR] = 1.0 + rules.slippage_bps / BPS
    rates[_SELL_FACTOR] = 1.0 - rules.slippage_bps / BPS
    rates[_COMMISSION_RATE] = rules.commission_bps / BPS
    rates[_MIN_COMMISSION] = rules.min_commission
    rates[_STAMP_RATE] = rules.stamp_duty_sell_bps / BPS
    rates[_T_PLUS_ONE] = rules.t_plus_one
    rates[_UP_FACTOR] = np.rint(BPS + 100.0 * rules.price_limit_pct)
    rates[_DOWN_FACTOR] = np.rint(BPS - 100.0 * rules.price_limit_pct)
    return rates


# The kernels are compiled by numba on first use (1.5-2 s, again for a new input layout), kept in
# its disk cache (NUMBA_CACHE_DIR if set, else `__pycache__` beside this file, else the user's
# cache dir), which later processes load in about 0.3 s. error_model="numpy": a float division
# by zero gives inf/NaN as in numpy instead of raising, which spares a check per division;
# nogil: other threads run while a kernel does.
_JIT_OPTIONS = {"nogil": True, "error_model": "numpy"}


def _kernel(function: Any) -> Any:
    """njit with the on-disk cache where numba finds a writable cache directory.

    Where it finds none (read-only install, no writable home), numba refuses `cache=True` as
    soon as the function is decorated, which would make this module unimportable: compile in
    memory in every process instead, and say so (once: same message, same line).
    """
    try:
        return numba.njit(cache=True, **_JIT_OPTIONS)(function)
    except RuntimeError:
        warnings.warn(
            "backtest.simulation: numba finds no writable cache directory, so its kernels are "
            "compiled in every process (about 1.5 s); set NUMBA_CACHE_DIR to a writable directory",
            RuntimeWarning,
            stacklevel=1,
        )
        return numba.njit(**_JIT_OPTIONS)(function)


# The order step's helpers are inlined into the kernels by numba itself (inline="always"): as
# calls, each session paid for call overhead and reference counting of `rates` (1.5x slower).
@numba.njit(inline="always", **_JIT_OPTIONS)
def _order(
    cash: float,
    shares: float,
    bought_today: float,
    wanted: float,
    open_: float,
    reference: float,
    rates: np.ndarray,
    s: int,
) -> tuple[float, float, float, float, int]:
    """One series' order at the open, step for step as `simulate_one_series` places it:
    (traded shares, fill price, fees, cash after, order status code)."""
    if math.isnan(open_) or math.isnan(wanted):  # no bar or no decision: keep
        return 0.0, math.nan, 0.0, cash, _ORDER_NONE
    lot = rates[_LOT, s]
    equity_open = cash + shares * open_
    # NaN (no limit, no previous close) compares False: nothing is blocked.
    open_cents, prev_cents = np.rint(open_ * 100.0), np.rint(reference * 100.0)
    buy_price = open_ * rates[_BUY_FACTOR, s]
    at_buy = np.floor(wanted * equity_open / (buy_price * lot)) * lot
    if at_buy > shares:
        limit_up = np.floor((prev_cents * rates[_UP_FACTOR, s] + 5000.0) / BPS)
        if open_cents >= limit_up:
            return 0.0, math.nan, 0.0, cash, _ORDER_LIMIT_UP
        return _buy(at_buy - shares, buy_price, cash, rates, s)
    sell_price = open_ * rates[_SELL_FACTOR, s]  # only now: most sessions hold after a buy test
    at_sell = np.floor(wanted * equity_open / (sell_price * lot)) * lot
    if at_sell < shares:
        limit_down = np.floor((prev_cents * rates[_DOWN_FACTOR, s] + 5000.0) / BPS)
        if open_cents <= limit_down:
            return 0.0, math.nan, 0.0, cash, _ORDER_LIMIT_DOWN
        sellable = shares - bought_today if rates[_T_PLUS_ONE, s] else shares
        if sellable < shares - at_sell:  # T+1 caps it: say so even if part of it sold
            sold, fill, fee, cash_after, _ = _sell(sellable, sell_price, cash, rates, s)
            return sold, fill, fee, cash_after, _ORDER_T_PLUS_ONE
        return _sell(shares - at_sell, sell_price, cash, rates, s)
    # On target within a lot; or flat with a target too small for one lot.
    status = _ORDER_LOT if shares == 0.0 and wanted > 0.0 else _ORDER_NONE
    return 0.0, math.nan, 0.0, cash, status


@numba.njit(inline="always", **_JIT_OPTIONS)
def _buy_cost(shares: float, price: float, rate: float, minimum: float) -> float:
    notional = shares * price
    return notional + max(minimum, notional * rate)


@numba.njit(inline="always", **_JIT_OPTIONS)
def _buy(
    wanted: float, price: float, cash: float, rates: np.ndarray, s: int
) -> tuple[float, float, float, float, int]:
    """Buy the most of `wanted` that cash covers with its commission, in steps of whole lots.

    The reference drops one lot at a time from `wanted`; the closed form (cash over price with
    proportional commission; cash less the minimum over price) lands on or next to its answer,
    and the two loops settle it exactly on the same grid, so a large shortfall costs no loop.
    """
    lot, rate = rates[_LOT, s], rates[_COMMISSION_RATE, s]
    minimum = rates[_MIN_COMMISSION, s]
    shares, status = wanted, _ORDER_FILLED
    if _buy_cost(shares, price, rate, minimum) > cash:
        status = _ORDER_CASH
        cap = min(cash / (price * (1.0 + rate)), (cash - minimum) / price)
        shares = wanted - max(np.ceil((wanted - cap) / lot), 1.0) * lot
        while shares > 0 and _buy_cost(shares, price, rate, minimum) > cash:
            shares -= lot
        while shares + lot < wanted and _buy_cost(shares + lot, price, rate, minimum) <= cash:
            shares += lot
    if shares <= 0:
        return 0.0, math.nan, 0.0, cash, _ORDER_CASH
    notional = shares * price
    commission = max(minimum, notional * rate)
    return shares, price, commission, cash - (notional + commission), status


@numba.njit(inline="always", **_JIT_OPTIONS)
def _sell(
    shares: float, price: float, cash: float, rates: np.ndarray, s: int
) -> tuple[float, float, float, float, int]:
    """Sell `shares` with commission and stamp duty; skipped if the costs would overdraw (or
    nothing is sellable, which only a T+1 cap makes so)."""
    notional = shares * price
    commission = max(rates[_MIN_COMMISSION, s], notional * rates[_COMMISSION_RATE, s])
    stamp_duty = notional * rates[_STAMP_RATE, s]
    proceeds = notional - commission - stamp_duty
    if shares <= 0 or cash + proceeds < 0:
        return 0.0, math.nan, 0.0, cash, _ORDER_CASH
    return -shares, price, commission + stamp_duty, cash + proceeds, _ORDER_FILLED


@numba.njit(inline="always", **_JIT_OPTIONS)
def _corporate_action(
    cash: float,
    shares: float,
    last_close: float,
    cost_basis: float,
    split_ratio: float,
    cash_dividend: float,
) -> tuple[float, float, float, float, float]:
    """An ex-date at the start of its session, before the open's order (module doc):
    (cash, shares, last close, cost basis, cash received), as `simulate_one_series` does it."""
    if split_ratio == 1.0 and cash_dividend == 0.0:
        return cash, shares, last_close, cost_basis, 0.0
    received = shares * cash_dividend
    # The ex-reference price: what the last close is worth after the event (the price limit's
    # base, the mark of a session without a bar).
    reference = (last_close - cash_dividend) / split_ratio
    if shares > 0.0:
        if last_close > cash_dividend:  # the dividend lowers the entry price like the price
            cost_basis = cost_basis * ((last_close - cash_dividend) / last_close)
        else:
            cost_basis = max(cost_basis - received, 0.0)
    after = shares * split_ratio
    whole = np.floor(after + 1e-9)  # a fraction of a share is paid in cash at the reference
    if after - whole > 1e-9:  # (not the rounding error of e.g. 2400 x 1.8)
        received += (after - whole) * reference
    return cash + received, whole, reference, cost_basis, received


@_kernel
def _orders_at_open(
    book_cash: np.ndarray,
    book_shares: np.ndarray,
    bought_today: np.ndarray,
    target: np.ndarray,
    open_: np.ndarray,
    prev_close: np.ndarray,
    rates: np.ndarray,
    traded: np.ndarray,
    price: np.ndarray,
    fees: np.ndarray,
    blocked: np.ndarray,
    status: np.ndarray,
) -> None:
    """`execute_at_open` for every series: the book in place, the fills into the last five."""
    for s in range(book_cash.shape[0]):
        quantity, fill, fee, cash, code = _order(
            book_cash[s], book_shares[s], bought_today[s], target[s], open_[s], prev_close[s],
            rates, s,
        )  # fmt: skip
        book_cash[s] = cash
        book_shares[s] += quantity
        bought_today[s] += max(quantity, 0.0)
        traded[s], price[s], fees[s], status[s] = quantity, fill, fee, code
        blocked[s] = code in (_ORDER_LIMIT_UP, _ORDER_LIMIT_DOWN)


def execute_at_open(
    book: Book,
    target: np.ndarray,
    open_: np.ndarray,
    prev_close: np.ndarray,
    rules: SeriesRules,
) -> Fills:
    """Trade every series toward its target at this open; updates `book` in place.

    `simulate` runs the same step once per session. Calling it again in the same session
    (without `book.new_session()`) is how a second intraday order would behave: T+1 then caps
    sells at the shares not bought this session.
    """
    cash, shares, bought_today, target, open_, prev_close = (
        np.array(a, dtype=np.float64)
        for a in (book.cash, book.shares, book.bought_today, target, open_, prev_close)
    )
    n_series = len(rules)
    traded, price, fees = np.empty(n_series), np.empty(n_series), np.empty(n_series)
    blocked = np.empty(n_series, dtype=bool)
    status = np.empty(n_series, dtype=np.int8)
    _orders_at_open(
        cash, shares, bought_today, target, open_, prev_close, _rates(rules),
        traded, price, fees, blocked, status,
    )  # fmt: skip
    book.cash, book.shares, book.bought_today = cash, shares, bought_today
    return Fills(traded, price, fees, blocked, status)


# Rows of the state matrix the kernel reads at the start and overwrites with the final state.
_CASH, _SHARES, _LAST_CLOSE, _EQUITY, _COST_BASIS, _HELD = range(len(STATE_COLUMNS))


@_kernel
def _simulate_kernel(
    target: np.ndarray,
    open_: np.ndarray,
    close: np.ndarray,
    prev_close: np.ndarray,
    split_ratio: np.ndarray,
    cash_dividend: np.ndarray,
    risk_free: np.ndarray,
    rates: np.ndarray,
    state: np.ndarray,
    shares_out: np.ndarray,
    cash_out: np.ndarray,
    value_out: np.ndarray,
    equity_out: np.ndarray,
    fees_out: np.ndarray,
    return_out: np.ndarray,
    exposure_out: np.ndarray,
    traded_out: np.ndarray,
    price_out: np.ndarray,
    blocked_out: np.ndarray,
    cost_basis_out: np.ndarray,
    entry_out: np.ndarray,
    held_out: np.ndarray,
    unrealized_out: np.ndarray,
    status_out: np.ndarray,
    dividend_out: np.ndarray,
    interest_out: np.ndarray,
) -> None:
    """The per-session state machine of `simulate_one_series`, for every series in turn.

    Outputs are (n_series, n_sessions) like the inputs; `prev_close` of shape (0, 0) means "the
    series' last close". `state` (rows `STATE_COLUMNS`, one column per series) is the state
    before the first session and is overwritten with the state after the last: a run resumed
    from it continues exactly, whatever the split. One series at a time keeps its state in
    registers and its branches predictable (a series holds, or has no decision, for many
    sessions running), and writes each output row contiguously. One order per session, placed
    before anything is bought, so T+1 never caps a sell here (`bought_today` is 0).
    """
    n_series, n_sessions = target.shape
    given_prev_close = prev_close.shape[0] > 0
    given_events, given_risk_free = split_ratio.shape[0] > 0, risk_free.shape[0] > 0
    for s in range(n_series):
        cash, shares = state[_CASH, s], state[_SHARES, s]
        last_close, previous_equity = state[_LAST_CLOSE, s], state[_EQUITY, s]
        cost_basis, held = state[_COST_BASIS, s], state[_HELD, s]
        for t in range(n_sessions):
            interest = cash * risk_free[s, t] if given_risk_free else 0.0
            cash += interest
            received = 0.0
            if given_events:
                cash, shares, last_close, cost_basis, received = _corporate_action(
                    cash, shares, last_close, cost_basis, split_ratio[s, t], cash_dividend[s, t]
                )
            reference = prev_close[s, t] if given_prev_close else last_close
            traded, fill, fee, cash, status = _order(
                cash, shares, 0.0, target[s, t], open_[s, t], reference, rates, s
            )
            if traded > 0:
                cost_basis += traded * fill + fee
            elif traded < 0:  # the sold fraction's cost leaves; exactly 0 when flat
                after = shares + traded
                cost_basis = cost_basis * (after / shares) if after > 0 else 0.0
            shares += traded
            held = held + 1.0 if shares > 0 else 0.0
            if not math.isnan(close[s, t]):
                last_close = close[s, t]
            value = shares * last_close if shares > 0 else 0.0
            equity = cash + value
            shares_out[s, t] = shares
            cash_out[s, t] = cash
            value_out[s, t] = value
            equity_out[s, t] = equity
            fees_out[s, t] = fee
            return_out[s, t] = equity / previous_equity - 1.0
            exposure_out[s, t] = value / equity if equity > 0 else math.nan
            traded_out[s, t] = traded
            price_out[s, t] = fill
            blocked_out[s, t] = status in (_ORDER_LIMIT_UP, _ORDER_LIMIT_DOWN)
            cost_basis_out[s, t] = cost_basis
            entry_out[s, t] = cost_basis / shares if shares > 0 else math.nan
            held_out[s, t] = held
            unrealized_out[s, t] = value / cost_basis - 1.0 if shares > 0 else math.nan
            status_out[s, t] = status
            dividend_out[s, t] = received
            interest_out[s, t] = interest
            previous_equity = equity
        state[_CASH, s], state[_SHARES, s] = cash, shares
        state[_LAST_CLOSE, s], state[_EQUITY, s] = last_close, previous_equity
        state[_COST_BASIS, s], state[_HELD, s] = cost_basis, held


@_kernel
def _input_problems(
    target: np.ndarray, open_: np.ndarray, close: np.ndarray
) -> tuple[bool, bool, bool, bool]:
    """One pass over same-shaped inputs: (a target outside 0..1, a bar with only one of open
    and close, an open not positive and finite, a close not positive and finite).

    NaN compares False, so a missing target or bar is no problem."""
    bad_target = unpaired = bad_open = bad_close = False
    for i in range(target.shape[0]):
        for j in range(target.shape[1]):
            wanted, open_price, close_price = target[i, j], open_[i, j], close[i, j]
            bad_target |= (wanted < 0.0) | (wanted > 1.0)
            unpaired |= math.isnan(open_price) != math.isnan(close_price)
            bad_open |= (open_price <= 0.0) | math.isinf(open_price)
            bad_close |= (close_price <= 0.0) | math.isinf(close_price)
    return bad_target, unpaired, bad_open, bad_close


def _validate(
    target: np.ndarray,
    open_: np.ndarray,
    close: np.ndarray,
    rules: SeriesRules,
    prev_close: np.ndarray | None,
) -> None:
    """Refuse inputs the rules cannot price, naming the problem."""
    shapes = [a.shape for a in (target, open_, close)]
    if prev_close is not None:
        shapes.append(prev_close.shape)
    if len(set(shapes)) != 1 or target.ndim != 2:
        raise ValueError(f"simulate: target, open, close (and prev_close) differ: {shapes}")
    if target.shape[0] != len(rules):
        raise ValueError(f"simulate: {target.shape[0]} series but rules for {len(rules)}")
    if target.size == 0:
        return
    if all(a.flags.f_contiguous for a in (target, open_, close)):
        target, open_, close = target.T, open_.T, close.T  # elementwise: walk memory in order
    bad_target, unpaired, bad_open, bad_close = _input_problems(target, open_, close)
    if bad_target:
        raise ValueError("simulate: target exposure outside 0..1 (NaN means keep)")
    if unpaired:
        raise ValueError("simulate: open and close must be missing together (a bar or none)")
    for name, bad in (("open", bad_open), ("close", bad_close)):
        if bad:
            raise ValueError(f"simulate: {name} prices must be positive and finite")
    pct = rules.price_limit_pct[~np.isnan(rules.price_limit_pct)]
    if (np.abs(pct * 100 - np.rint(pct * 100)) > 1e-6).any() or (pct <= 0).any():
        raise ValueError("simulate: price_limit_pct must be positive with at most 2 decimals")
    if (rules.initial_capital <= 0).any() or (rules.lot_size < 1).any():
        raise ValueError("simulate: initial_capital must be positive and lot_size at least 1")


def _session_inputs(
    shape: tuple[int, ...],
    split_ratio: np.ndarray | None,
    cash_dividend: np.ndarray | None,
    risk_free: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The corporate actions and risk-free returns as the kernel takes them, checked: (0, 0)
    where not given (the kernel then skips the step)."""
    none = np.empty((0, 0))
    if (split_ratio is None) != (cash_dividend is None):
        raise ValueError("simulate: split_ratio and cash_dividend are given together or not")
    out = []
    for name, values in (
        ("split_ratio", split_ratio),
        ("cash_dividend", cash_dividend),
        ("risk_free", risk_free),
    ):
        if values is None:
            out.append(none)
            continue
        values = np.asarray(values, dtype=np.float64)
        if values.shape != shape:
            raise ValueError(f"simulate: {name} is {values.shape}, the prices {shape}")
        if not np.isfinite(values).all():
            raise ValueError(f"simulate: {name} must be finite (1, 0 or 0 where none)")
        out.append(values)
    split_ratio, cash_dividend, risk_free = out
    if (split_ratio <= 0).any():
        raise ValueError("simulate: split_ratio must be positive (shares after per share before)")
    if (cash_dividend < 0).any():
        raise ValueError("simulate: cash_dividend must not be negative")
    if (risk_free <= -1).any():
        raise ValueError("simulate: a risk-free return must be above -1")
    return split_ratio, cash_dividend, risk_free


def _state_matrix(state: SleeveState, n_series: int) -> np.ndarray:
    """The state as the kernel's (6, n_series) in/out matrix (a copy: `state` stays as it is)."""
    columns = state.to_columns()
    shapes = {name: v.shape for name, v in columns.items() if v.shape != (n_series,)}
    if shapes:
        raise ValueError(f"simulate: rules for {n_series} series, state vectors {shapes}")
    matrix = np.stack(list(columns.values()))
    if not np.isfinite(np.delete(matrix, _LAST_CLOSE, axis=0)).all():
        raise ValueError("simulate: state must be finite (only last_close may be NaN)")
    if (matrix[[_CASH, _SHARES, _COST_BASIS, _HELD]] < 0).any():
        raise ValueError("simulate: state has negative cash, shares, cost basis or held sessions")
    if (matrix[_LAST_CLOSE] <= 0).any():
        raise ValueError("simulate: state last_close must be positive (or NaN: no bar yet)")
    return matrix


def simulate(
    target: np.ndarray,
    open_: np.ndarray,
    close: np.ndarray,
    rules: SeriesRules,
    prev_close: np.ndarray | None = None,
    state: SleeveState | None = None,
    *,
    split_ratio: np.ndarray | None = None,
    cash_dividend: np.ndarray | None = None,
    risk_free: np.ndarray | None = None,
) -> SimulationResult:
    """Simulate every series at once; arrays are (n_series, n_sessions).

    `prev_close` (same shape) is the close the price limits refer to; by default the series'
    last close before each session, i.e. none on its first bar (a given `prev_close` is taken
    as it is: on an ex-date it must be the ex-reference price). `split_ratio` and
    `cash_dividend` (same shape, given together; default none) are the corporate actions whose
    ex-date each session is: 1 and 0 where none. `risk_free` (same shape; default 0) is each
    session's risk-free return, credited on the cash held at the last close. `state` is where
    each series stands before the first session (default `SleeveState.opening(rules)`); the
    result's `final_state` is where it stands after the last, the `state` of a call for the
    sessions that follow. Inputs are read in place in either layout (each layout compiles once); the
    result's arrays are C-ordered.
    """
    target, open_, close = (np.asarray(a, dtype=np.float64) for a in (target, open_, close))
    if prev_close is not None:
        prev_close = np.asarray(prev_close, dtype=np.float64)
    _validate(target, open_, close, rules, prev_close)
    split_ratio, cash_dividend, risk_free = _session_inputs(
        target.shape, split_ratio, cash_dividend, risk_free
    )
    n_series, n_sessions = target.shape
    carried = _state_matrix(SleeveState.opening(rules) if state is None else state, n_series)
    out = {
        f.name: np.empty((n_series, n_sessions), dtype=_OUTPUT_DTYPES.get(f.name, np.float64))
        for f in fields(SimulationResult)
    }
    _simulate_kernel(
        target,
        open_,
        close,
        np.empty((0, 0)) if prev_close is None else prev_close,
        split_ratio,
        cash_dividend,
        risk_free,
        _rates(rules),
        carried,
        *out.values(),  # the kernel's order: the fields'
    )
    return SimulationResult(**out, final_state=SleeveState(*carried))


def simulate_one_series(
    target: Sequence[float],
    open_: Sequence[float],
    close: Sequence[float],
    rules: TradingRules,
    prev_close: Sequence[float] | None = None,
    *,
    split_ratio: Sequence[float] | None = None,
    cash_dividend: Sequence[float] | None = None,
    risk_free: Sequence[float] | None = None,
) -> SimulationResult:
    """Reference: one series, one plain loop, same rules as `simulate` (see the module doc)."""
    n = len(target)
    ratios = [1.0] * n if split_ratio is None else [float(x) for x in split_ratio]
    dividends = [0.0] * n if cash_dividend is None else [float(x) for x in cash_dividend]
    rates = [0.0] * n if risk_free is None else [float(x) for x in risk_free]
    buy_factor = 1.0 + rules.slippage_bps / BPS
    sell_factor = 1.0 - rules.slippage_bps / BPS
    lot = rules.lot_size
    cash, shares = float(rules.initial_capital), 0
    last_close, previous_equity = math.nan, cash
    paid, held = 0.0, 0  # cost basis of the shares held; closes they have been held at
    rows: list[dict[str, Any]] = []
    for t in range(len(target)):
        o, c, wanted = float(open_[t]), float(close[t]), float(target[t])
        interest = cash * rates[t] if risk_free is not None else 0.0
        cash += interest
        received = 0.0
        if ratios[t] != 1.0 or dividends[t] != 0.0:
            # ex-date: dividend on the shares before, then the split; whole shares kept
            received = shares * dividends[t]
            ex_reference = (last_close - dividends[t]) / ratios[t]
            if shares > 0:
                if last_close > dividends[t]:
                    paid = paid * ((last_close - dividends[t]) / last_close)
                else:
                    paid = max(paid - received, 0.0)
            after = shares * ratios[t]
            whole = math.floor(after + 1e-9)
            if after - whole > 1e-9:
                received += (after - whole) * ex_reference
            cash, shares, last_close = cash + received, whole, ex_reference
        reference = last_close if prev_close is None else float(prev_close[t])
        bought_today = 0  # one order per session: it is placed before anything is bought
        traded, price, fee, blocked, status = 0, math.nan, 0.0, False, "none"
        if not (math.isnan(o) or math.isnan(wanted)):
            buy_price, sell_price = o * buy_factor, o * sell_factor
            equity_open = cash + shares * o
            at_buy = math.floor(wanted * equity_open / (buy_price * lot)) * lot
            at_sell = math.floor(wanted * equity_open / (sell_price * lot)) * lot
            if at_buy > shares:
                blocked = _one_limit_up(o, reference, rules.price_limit_pct)
                if blocked:
                    status = "limit_up"
                else:
                    traded, fee, cash = _one_buy(at_buy - shares, buy_price, cash, rules)
                    price = buy_price
                    status = "filled" if traded == at_buy - shares else "cash"
            elif at_sell < shares:
                blocked = _one_limit_down(o, reference, rules.price_limit_pct)
                sellable = shares - bought_today if rules.t_plus_one else shares
                if blocked:
                    status = "limit_down"
                else:
                    quantity = min(shares - at_sell, sellable)
                    traded, fee, cash = _one_sell(quantity, sell_price, cash, rules)
                    price = sell_price
                    if quantity < shares - at_sell:
                        status = "t_plus_one"
                    else:
                        status = "filled" if traded else "cash"
            elif shares == 0 and wanted > 0:
                status = "lot"  # at_buy is 0: one lot is more than the target
        if traded == 0:
            price = math.nan
        if traded > 0:
            paid += traded * price + fee
        elif traded < 0:
            paid = paid * ((shares + traded) / shares) if shares + traded > 0 else 0.0
        shares += traded
        held = held + 1 if shares > 0 else 0
        if not math.isnan(c):
            last_close = c
        value = shares * last_close if shares > 0 else 0.0
        equity = cash + value
        rows.append(
            {
                "shares": shares,
                "cash": cash,
                "position_value": value,
                "equity": equity,
                "fees": fee,
                "daily_return": equity / previous_equity - 1.0,
                "exposure": value / equity if equity > 0 else math.nan,
                "traded_shares": traded,
                "fill_price": price,
                "limit_blocked": blocked,
                "cost_basis": paid,
                "avg_entry_price": paid / shares if shares > 0 else math.nan,
                "held_sessions": held,
                "unrealized_return": value / paid - 1.0 if shares > 0 else math.nan,
                "order_status": ORDER_STATUSES.index(status),
                "dividend_cash": received,
                "interest": interest,
            }
        )
        previous_equity = equity
    columns = {f.name: [row[f.name] for row in rows] for f in fields(SimulationResult)}
    return SimulationResult(
        **{
            name: np.array(values, dtype=_OUTPUT_DTYPES.get(name, np.float64))
            for name, values in columns.items()
        }
    )


def decimal_price_limits(prev_close: float, pct: float) -> tuple[Decimal, Decimal]:
    """Limit-up/down of one stock in exact decimal arithmetic on cents, rounded half-up."""
    base, step = Decimal(round(prev_close * 100)) / 100, Decimal(repr(pct)) / 100
    cent = Decimal("0.01")
    up = (base * (1 + step)).quantize(cent, rounding=ROUND_HALF_UP)
    down = (base * (1 - step)).quantize(cent, rounding=ROUND_HALF_UP)
    return up, down


def _one_limit_up(open_: float, reference: float, pct: float) -> bool:
    if math.isnan(reference) or math.isnan(pct):
        return False
    return Decimal(round(open_ * 100)) / 100 >= decimal_price_limits(reference, pct)[0]


def _one_limit_down(open_: float, reference: float, pct: float) -> bool:
    if math.isnan(reference) or math.isnan(pct):
        return False
    return Decimal(round(open_ * 100)) / 100 <= decimal_price_limits(reference, pct)[1]


def _one_buy(
    shares: int, price: float, cash: float, rules: TradingRules
) -> tuple[int, float, float]:
    """Shrink the buy one lot at a time until cash covers it: (shares, commission, cash)."""
    rate = rules.commission_bps / BPS

    def cost(n: int) -> tuple[float, float]:
        notional = n * price
        commission = max(rules.min_commission, notional * rate)
        return notional + commission, commission

    while shares > 0 and cost(shares)[0] > cash:
        shares -= rules.lot_size
    if shares <= 0:
        return 0, 0.0, cash
    total, commission = cost(shares)
    return shares, commission, cash - total


def _one_sell(
    shares: int, price: float, cash: float, rules: TradingRules
) -> tuple[int, float, float]:
    """Sell `shares`: (-shares, commission + stamp duty, cash); skipped if it would overdraw."""
    notional = shares * price
    commission = max(rules.min_commission, notional * (rules.commission_bps / BPS))
    stamp_duty = notional * (rules.stamp_duty_sell_bps / BPS)
    proceeds = notional - commission - stamp_duty
    if shares <= 0 or cash + proceeds < 0:
        return 0, 0.0, cash
    return -shares, commission + stamp_duty, cash + proceeds


TRADE_COLUMNS = (
    "series",
    "entry_session",
    "exit_session",
    "holding_sessions",
    "n_fills",
    "entry_value",
    "exit_value",
    "net_pnl",
    "return",
    "win",
)


def round_trips(
    result: SimulationResult,
    series: Sequence[Any] | None = None,
    sessions: Sequence[Any] | None = None,
) -> pd.DataFrame:
    """One row per closed round trip per series (flat -> flat), for `backtest_trades`.

    A trip opens with the buy from zero shares and closes with the sell back to zero; buys and
    sells in between belong to it. entry_value = cash paid for all its buys incl. commission;
    exit_value = cash received for all its sells net of commission and stamp duty, plus the
    cash dividends (and cash in lieu of split fractions) credited while it was open, so that a
    trip across an ex-date measures its total return (splits need nothing: the shares sold
    are the shares after the split); net_pnl = exit_value - entry_value;
    return = net_pnl / entry_value (on all cash put in, so a scaled-in trip is measured on its
    total outlay). A win is net_pnl > 0 (a trip that only covers its costs is not a win). The
    position still open at the end is not a trip; the closed trips' pnl plus its unrealised
    pnl is the series' total pnl.
    `series` and `sessions` label the axes (default: their integer positions).
    """
    traded = result.traded_shares
    # Fills and ex-dates (a dividend only reaches a held position: it falls inside a trip).
    rows, cols = np.nonzero((traded != 0) | (result.dividend_cash != 0))  # by series, session
    quantity = traded[rows, cols]
    notional = np.abs(quantity) * np.nan_to_num(result.fill_price[rows, cols])
    fees = result.fees[rows, cols]
    before = result.shares[rows, cols] - quantity
    trip = np.cumsum((before == 0) & (quantity > 0)) - 1
    fills = pd.DataFrame(
        {
            "trip": trip,
            "series": rows,
            "session": cols,
            "fill": quantity != 0,
            "paid": np.where(quantity > 0, notional + fees, 0.0),
            "received": np.where(quantity < 0, notional - fees, 0.0)
            + result.dividend_cash[rows, cols],
            "after": result.shares[rows, cols],
        }
    )
    fills = fills[fills["trip"] >= 0]  # cash in lieu of a fraction when a split leaves none
    grouped = fills.groupby("trip", sort=True)
    trips = grouped.agg(
        series=("series", "first"),
        entry_session=("session", "first"),
        exit_session=("session", "last"),
        n_fills=("fill", "sum"),
        entry_value=("paid", "sum"),
        exit_value=("received", "sum"),
        after=("after", "last"),
    )
    trips = trips[trips["after"] == 0].reset_index(drop=True)
    trips["holding_sessions"] = trips["exit_session"] - trips["entry_session"]
    trips["net_pnl"] = trips["exit_value"] - trips["entry_value"]
    trips["return"] = trips["net_pnl"] / trips["entry_value"]
    trips["win"] = trips["net_pnl"] > 0
    if series is not None:
        trips["series"] = np.asarray(series, dtype=object)[trips["series"].to_numpy()]
    if sessions is not None:
        labels = np.asarray(sessions, dtype=object)
        for column in ("entry_session", "exit_session"):
            trips[column] = labels[trips[column].to_numpy()]
    return trips.loc[:, list(TRADE_COLUMNS)]
