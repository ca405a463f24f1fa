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
- Marks at the close: position value = shares x close (the last close when the session has no
  bar), equity = cash + position value, exposure = position value / equity,
  daily_return = equity_t / equity_{t-1} - 1 with equity_{-1} = initial capital.

`simulate` loops over sessions only; each step is about 60 numpy passes over (n_series,)
vectors that stay in cache: session-major (Fortran-order) inputs are sliced without a copy and
others transposed a block of sessions at a time; outputs are written as session rows (the result
holds transposed views); indicators are built with arithmetic rather than masks; the rare cases
(a buy cash cannot cover, a sell that would overdraw, an order at a price limit) are handled on
the few series concerned. bench/README.md has the figures.
`simulate_one_series` is an independent plain-Python reference (Decimal price limits, a literal
shrink-by-one-lot loop); it derives the same per-series constants (1 + slippage, bps / 1e4) so
that both are bit-identical, and the tests and the bench hold them to 1e-9.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import numpy as np
import pandas as pd

BPS = 1e4
DEFAULT_CAPITAL = 1_000_000.0
CHINEXT_STAR_PREFIXES = ("300", "301", "688", "689")


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
class SimulationResult:
    """Per-session outputs, each shaped like the inputs: (n_series, n_sessions), or
    (n_sessions,) from `simulate_one_series`. Money is in the series' currency."""

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


@dataclass(frozen=True)
class _Rates:
    """Per-series constants derived once, so that a session is a few ufuncs on vectors.

    `up_factor` / `down_factor` are 10000 +/- 100 x pct: limit-up in cents is
    floor((prev_cents x up_factor + 5000) / 10000), i.e. half-up on exact integers.
    """

    lot: np.ndarray
    buy_factor: np.ndarray
    sell_factor: np.ndarray
    commission_rate: np.ndarray
    min_commission: np.ndarray
    stamp_rate: np.ndarray
    t_plus_one: np.ndarray
    up_factor: np.ndarray
    down_factor: np.ndarray
    zeros: np.ndarray
    ones: np.ndarray
    limited: bool

    @classmethod
    def of(cls, rules: SeriesRules) -> _Rates:
        pct = rules.price_limit_pct
        return cls(
            lot=rules.lot_size,
            buy_factor=1.0 + rules.slippage_bps / BPS,
            sell_factor=1.0 - rules.slippage_bps / BPS,
            commission_rate=rules.commission_bps / BPS,
            min_commission=rules.min_commission,
            stamp_rate=rules.stamp_duty_sell_bps / BPS,
            t_plus_one=rules.t_plus_one,
            up_factor=np.rint(BPS + 100.0 * pct),
            down_factor=np.rint(BPS - 100.0 * pct),
            zeros=np.zeros(len(rules)),
            ones=np.ones(len(rules)),
            limited=bool((~np.isnan(pct)).any()),
        )


def price_limits(prev_close: np.ndarray, pct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Limit-up and limit-down prices, rounded half-up to cents (NaN where no limit).

    Worked on integer cents, so that e.g. 10.15 x 1.1 = 11.165 is 11.17 as the exchange's
    decimal rule says (binary `round(11.165, 2)` gives 11.16).
    """
    up, down = _limit_cents(
        np.rint(prev_close * 100.0), np.rint(BPS + 100.0 * pct), np.rint(BPS - 100.0 * pct)
    )
    return up / 100.0, down / 100.0


def _limit_cents(
    prev_cents: np.ndarray, up_factor: np.ndarray, down_factor: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    up = np.floor((prev_cents * up_factor + 5000.0) / BPS)
    down = np.floor((prev_cents * down_factor + 5000.0) / BPS)
    return up, down


def _limit_blocks(
    open_: np.ndarray, prev_close: np.ndarray, rates: _Rates
) -> tuple[np.ndarray, np.ndarray]:
    """(buy_blocked, sell_blocked): open at/above limit-up, open at/below limit-down.

    NaN comparisons are False: no limit, no previous close or no bar blocks nothing.
    """
    up, down = _limit_cents(np.rint(prev_close * 100.0), rates.up_factor, rates.down_factor)
    open_cents = np.rint(open_ * 100.0)
    return open_cents >= up, open_cents <= down


def _drop_at_limits(
    to_buy: np.ndarray,
    to_sell: np.ndarray,
    blocked: np.ndarray,
    open_: np.ndarray,
    prev_close: np.ndarray,
    rates: _Rates,
) -> None:
    """Zero the orders a price limit blocks and flag them, in place (few series: sparse)."""
    buy_blocked, sell_blocked = _limit_blocks(open_, prev_close, rates)
    for at_limit, orders in ((buy_blocked, to_buy), (sell_blocked, to_sell)):
        index = np.flatnonzero(at_limit)
        blocked[index] |= orders[index] > 0
        orders[index] = 0.0


def _lots(value: np.ndarray, price: np.ndarray, lot: np.ndarray) -> np.ndarray:
    """Whole lots that `value` buys at `price`, in shares (NaN where value is NaN)."""
    return np.floor(value / (price * lot)) * lot


def _commission(
    shares: np.ndarray, price: np.ndarray, minimum: np.ndarray, rate: np.ndarray, one: Any
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(notional, commission, traded): traded is 1.0 where shares trade, else 0.0 (shares are
    whole, so fmin with `one` gives it), and no trade pays no commission."""
    traded = np.fmin(shares, one)
    notional = shares * price
    return notional, np.maximum(minimum * traded, notional * rate), traded


def _shrink_to_cash(
    to_buy: np.ndarray, price: np.ndarray, cash: np.ndarray, over: np.ndarray, rates: _Rates
) -> None:
    """Cut the buys that cash cannot cover (indices `over`) to the most whole lots it covers.

    Closed form (cash over price with proportional commission; cash less the minimum commission
    over price), corrected by one lot either way against the exact cost, so it equals the
    reference's shrink-one-lot-at-a-time loop despite rounding in the division.
    """
    wanted, fill, money = to_buy[over], price[over], cash[over]
    lot, rate, minimum = rates.lot[over], rates.commission_rate[over], rates.min_commission[over]

    def fits(shares: np.ndarray) -> np.ndarray:
        notional, commission, _ = _commission(shares, fill, minimum, rate, 1.0)
        return notional + commission <= money

    with np.errstate(divide="ignore", invalid="ignore"):
        cap = np.minimum(money / (fill * (1.0 + rate)), (money - minimum) / fill)
    shares = np.minimum(np.maximum(np.floor(cap / lot) * lot, 0.0), wanted)
    more = shares + lot
    shares = np.where((more <= wanted) & fits(more), more, shares)
    shares = np.where((shares > 0) & ~fits(shares), shares - lot, shares)
    to_buy[over] = shares


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
    return _execute(book, target, open_, prev_close, _Rates.of(rules))


def _execute(
    book: Book, target: np.ndarray, open_: np.ndarray, prev_close: np.ndarray, rates: _Rates
) -> Fills:
    priced = np.fmax(open_, rates.zeros)  # no bar (NaN) -> 0: an empty order costs 0, not NaN
    buy_price, sell_price = priced * rates.buy_factor, priced * rates.sell_factor
    wanted_value = target * (book.cash + book.shares * open_)  # NaN: no decision or no bar
    to_buy = np.fmax(_lots(wanted_value, buy_price, rates.lot) - book.shares, rates.zeros)
    to_sell = np.fmax(book.shares - _lots(wanted_value, sell_price, rates.lot), rates.zeros)
    blocked = np.zeros(len(rates.zeros), dtype=bool)
    if rates.limited:
        _drop_at_limits(to_buy, to_sell, blocked, open_, prev_close, rates)
    if book.bought_today.any():  # T+1; never in `simulate`, whose one order comes first
        to_sell = np.fmin(to_sell, book.shares - book.bought_today * rates.t_plus_one)

    buy_notional, buy_commission, buying = _commission(
        to_buy, buy_price, rates.min_commission, rates.commission_rate, rates.ones
    )
    cost = buy_notional + buy_commission
    over = np.flatnonzero(cost > book.cash)
    if over.size:
        _shrink_to_cash(to_buy, buy_price, book.cash, over, rates)
        notional, commission, trades = _commission(
            to_buy[over],
            buy_price[over],
            rates.min_commission[over],
            rates.commission_rate[over],
            1.0,
        )
        buy_notional[over], buy_commission[over], buying[over] = notional, commission, trades
        cost[over] = notional + commission

    sell_notional, sell_commission, selling = _commission(
        to_sell, sell_price, rates.min_commission, rates.commission_rate, rates.ones
    )
    stamp_duty = sell_notional * rates.stamp_rate
    proceeds = sell_notional - sell_commission - stamp_duty
    if (proceeds < 0).any():  # costs above the notional: skip the sell if it would overdraw
        keep = book.cash + proceeds >= 0
        to_sell, sell_commission, selling = to_sell * keep, sell_commission * keep, selling * keep
        stamp_duty, proceeds = stamp_duty * keep, proceeds * keep

    book.cash = book.cash - cost + proceeds
    book.shares = book.shares + to_buy - to_sell
    book.bought_today = book.bought_today + to_buy
    with np.errstate(invalid="ignore"):  # 0 / 0 -> NaN: no fill, no price
        price = (buy_price * buying + sell_price * selling) / (buying + selling)
    fees = buy_commission + sell_commission + stamp_duty
    return Fills(to_buy - to_sell, price, fees, blocked)


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
    if np.fmin.reduce(target, axis=None) < 0 or np.fmax.reduce(target, axis=None) > 1:
        raise ValueError("simulate: target exposure outside 0..1 (NaN means keep)")
    if not np.array_equal(np.isnan(open_), np.isnan(close)):
        raise ValueError("simulate: open and close must be missing together (a bar or none)")
    for name, prices in (("open", open_), ("close", close)):
        low, high = np.fmin.reduce(prices, axis=None), np.fmax.reduce(prices, axis=None)
        if low <= 0 or np.isinf(high):
            raise ValueError(f"simulate: {name} prices must be positive and finite")
    pct = rules.price_limit_pct[~np.isnan(rules.price_limit_pct)]
    if (np.abs(pct * 100 - np.rint(pct * 100)) > 1e-6).any() or (pct <= 0).any():
        raise ValueError("simulate: price_limit_pct must be positive with at most 2 decimals")
    if (rules.initial_capital <= 0).any() or (rules.lot_size < 1).any():
        raise ValueError("simulate: initial_capital must be positive and lot_size at least 1")


def _session_rows(
    arrays: Sequence[np.ndarray | None], block: int = 32
) -> Iterator[tuple[np.ndarray | None, ...]]:
    """Yield each session's contiguous (n_series,) slices of the (n_series, n_sessions) inputs.

    Session-major inputs (Fortran order, e.g. the transpose of a sessions x series pivot) are
    sliced without a copy; others are transposed a block of sessions at a time into a reused
    buffer, which keeps the copy cache-friendly. A row is valid until the next block.
    """
    n_sessions = next(a for a in arrays if a is not None).shape[1]
    return zip(*(_rows(a, n_sessions, block) for a in arrays), strict=True)


def _rows(array: np.ndarray | None, n_sessions: int, block: int) -> Iterator[np.ndarray | None]:
    if array is None:
        yield from (None for _ in range(n_sessions))
        return
    n_series = array.shape[0]
    if array.flags.f_contiguous:
        yield from (array[:, t] for t in range(n_sessions))
        return
    buffer = np.empty((block, n_series))
    for start in range(0, n_sessions, block):
        size = min(block, n_sessions - start)
        np.copyto(buffer[:size], array[:, start : start + size].T)
        yield from buffer[:size]


def simulate(
    target: np.ndarray,
    open_: np.ndarray,
    close: np.ndarray,
    rules: SeriesRules,
    prev_close: np.ndarray | None = None,
) -> SimulationResult:
    """Simulate every series at once; arrays are (n_series, n_sessions).

    `prev_close` (same shape) is the close the price limits refer to; by default the series'
    last close before each session, i.e. none on its first bar. Inputs in Fortran order
    (session-major) are read without a copy. The result's arrays are transposed views of
    session-major outputs.
    """
    target, open_, close = (np.asarray(a, dtype=np.float64) for a in (target, open_, close))
    if prev_close is not None:
        prev_close = np.asarray(prev_close, dtype=np.float64)
    _validate(target, open_, close, rules, prev_close)
    n_series, n_sessions = target.shape
    out = {f.name: np.empty((n_sessions, n_series)) for f in fields(SimulationResult)}
    out["limit_blocked"] = np.empty((n_sessions, n_series), dtype=bool)
    rates = _Rates.of(rules)
    book = Book.opening(rules)
    last_close = np.full(n_series, np.nan)
    previous_equity = book.cash
    rows = _session_rows([target, open_, close, prev_close])
    for t, (session_target, session_open, session_close, given_prev) in enumerate(rows):
        book.new_session()
        reference = last_close if given_prev is None else given_prev
        fills = _execute(book, session_target, session_open, reference, rates)
        last_close = np.where(session_close > 0, session_close, last_close)
        equity = _mark(out, t, book, last_close, rates.zeros)
        _store(out, t, book, fills, equity, previous_equity)
        previous_equity = equity
    return SimulationResult(**{name: array.T for name, array in out.items()})


def _mark(
    out: dict[str, np.ndarray], t: int, book: Book, last_close: np.ndarray, zeros: np.ndarray
) -> np.ndarray:
    """Position value and equity at the close, written straight into the output rows."""
    value = np.multiply(book.shares, last_close, out=out["position_value"][t])
    np.fmax(value, zeros, out=value)  # 0 x NaN before a series' first close
    return np.add(book.cash, value, out=out["equity"][t])


def _store(
    out: dict[str, np.ndarray],
    t: int,
    book: Book,
    fills: Fills,
    equity: np.ndarray,
    previous_equity: np.ndarray,
) -> None:
    out["shares"][t] = book.shares
    out["cash"][t] = book.cash
    out["fees"][t] = fills.fees
    daily_return = np.divide(equity, previous_equity, out=out["daily_return"][t])
    daily_return -= 1.0
    np.divide(out["position_value"][t], equity, out=out["exposure"][t])
    out["traded_shares"][t] = fills.traded
    out["fill_price"][t] = fills.price
    out["limit_blocked"][t] = fills.limit_blocked


def simulate_one_series(
    target: Sequence[float],
    open_: Sequence[float],
    close: Sequence[float],
    rules: TradingRules,
    prev_close: Sequence[float] | None = None,
) -> SimulationResult:
    """Reference: one series, one plain loop, same rules as `simulate` (see the module doc)."""
    buy_factor = 1.0 + rules.slippage_bps / BPS
    sell_factor = 1.0 - rules.slippage_bps / BPS
    lot = rules.lot_size
    cash, shares = float(rules.initial_capital), 0
    last_close, previous_equity = math.nan, cash
    rows: list[dict[str, Any]] = []
    for t in range(len(target)):
        o, c, wanted = float(open_[t]), float(close[t]), float(target[t])
        reference = last_close if prev_close is None else float(prev_close[t])
        bought_today = 0  # one order per session: it is placed before anything is bought
        traded, price, fee, blocked = 0, math.nan, 0.0, False
        if not (math.isnan(o) or math.isnan(wanted)):
            buy_price, sell_price = o * buy_factor, o * sell_factor
            equity_open = cash + shares * o
            at_buy = math.floor(wanted * equity_open / (buy_price * lot)) * lot
            at_sell = math.floor(wanted * equity_open / (sell_price * lot)) * lot
            if at_buy > shares:
                blocked = _one_limit_up(o, reference, rules.price_limit_pct)
                if not blocked:
                    traded, fee, cash = _one_buy(at_buy - shares, buy_price, cash, rules)
                    price = buy_price
            elif at_sell < shares:
                blocked = _one_limit_down(o, reference, rules.price_limit_pct)
                sellable = shares - bought_today if rules.t_plus_one else shares
                if not blocked:
                    quantity = min(shares - at_sell, sellable)
                    traded, fee, cash = _one_sell(quantity, sell_price, cash, rules)
                    price = sell_price
        if traded == 0:
            price = math.nan
        shares += traded
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
            }
        )
        previous_equity = equity
    columns = {f.name: [row[f.name] for row in rows] for f in fields(SimulationResult)}
    return SimulationResult(
        **{
            name: np.array(values, dtype=bool if name == "limit_blocked" else float)
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
    exit_value = cash received for all its sells net of commission and stamp duty;
    net_pnl = exit_value - entry_value; return = net_pnl / entry_value (on all cash put in, so
    a scaled-in trip is measured on its total outlay). A win is net_pnl > 0 (a trip that only
    covers its costs is not a win). The position still open at the end is not a trip; the
    closed trips' pnl plus its unrealised pnl is the series' total pnl.
    `series` and `sessions` label the axes (default: their integer positions).
    """
    traded = result.traded_shares
    rows, cols = np.nonzero(traded)  # row-major: by series, then session
    quantity = traded[rows, cols]
    notional = np.abs(quantity) * result.fill_price[rows, cols]
    fees = result.fees[rows, cols]
    before = result.shares[rows, cols] - quantity
    trip = np.cumsum((before == 0) & (quantity > 0)) - 1
    fills = pd.DataFrame(
        {
            "trip": trip,
            "series": rows,
            "session": cols,
            "paid": np.where(quantity > 0, notional + fees, 0.0),
            "received": np.where(quantity < 0, notional - fees, 0.0),
            "after": result.shares[rows, cols],
        }
    )
    grouped = fills.groupby("trip", sort=True)
    trips = grouped.agg(
        series=("series", "first"),
        entry_session=("session", "first"),
        exit_session=("session", "last"),
        n_fills=("session", "size"),
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
