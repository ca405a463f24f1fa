"""Execution simulation and baselines: hand-computed cases, then vectorised == reference."""

from __future__ import annotations

import csv
import math
import os
import shutil
import subprocess
import sys
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from backtest.baselines import buy_and_hold, random_targets, rule_only
from backtest.simulation import (
    ORDER_STATUSES,
    STATE_COLUMNS,
    Book,
    SeriesRules,
    SimulationResult,
    SleeveState,
    TradingRules,
    board_price_limit_pct,
    execute_at_open,
    price_limits,
    round_trips,
    simulate,
    simulate_one_series,
)

NAN = math.nan
SEED_CSV = Path(__file__).resolve().parents[1] / "dbt" / "seeds" / "market_rules.csv"
# The seed's costs, written out so that a hand computation below reads them directly.
US = TradingRules(lot_size=1, commission_bps=1.0, min_commission=1.0, slippage_bps=5.0)
CN = TradingRules(
    lot_size=100,
    commission_bps=2.5,
    min_commission=5.0,
    stamp_duty_sell_bps=5.0,
    slippage_bps=5.0,
    price_limit_pct=10.0,
    t_plus_one=True,
)
FREE = TradingRules(initial_capital=100_000.0)  # no costs, no lots, no limits


def run(target, open_, close, *rules: TradingRules, prev_close=None) -> SimulationResult:
    """`simulate` on small literal inputs, one row per rules object."""
    as_rows = [np.atleast_2d(np.asarray(a, dtype=float)) for a in (target, open_, close)]
    if prev_close is not None:
        prev_close = np.atleast_2d(np.asarray(prev_close, dtype=float))
    return simulate(*as_rows, SeriesRules.stack(rules), prev_close=prev_close)


def test_market_rules_seed_reads_into_trading_rules():
    with SEED_CSV.open(encoding="utf-8") as handle:
        rows = {row["market"]: row for row in csv.DictReader(handle)}
    us = TradingRules.from_market_row(rows["us"])
    cn = TradingRules.from_market_row(rows["cn"])
    assert replace(us, initial_capital=US.initial_capital) == US
    assert math.isnan(us.price_limit_pct) and not us.t_plus_one
    assert replace(cn, initial_capital=CN.initial_capital) == CN
    assert TradingRules.from_market_row(rows["cn"], price_limit_pct=20.0).price_limit_pct == 20.0


def test_board_price_limit_pct():
    assert board_price_limit_pct("600519", 10.0) == 10.0  # Shanghai main board
    assert board_price_limit_pct("300750", 10.0) == 20.0  # ChiNext
    assert board_price_limit_pct("688981", 10.0) == 20.0  # STAR
    assert board_price_limit_pct("600000", 10.0, is_st=True) == 5.0


def test_us_costs_minimum_commission_and_slippage_on_both_sides():
    rules = replace(US, initial_capital=10_000.0)
    result = run([0.5, 0.0], [100.0, 102.0], [101.0, 103.0], rules)
    # Session 0, buy at 100 x 1.0005 = 100.05: floor(0.5 x 10000 / 100.05) = floor(49.975) = 49.
    # Notional 49 x 100.05 = 4902.45; commission 0.49 bps-wise, so the minimum 1.00 applies.
    # Cash 10000 - 4903.45 = 5096.55; at the close 49 x 101 = 4949, equity 10045.55.
    # Session 1, sell at 102 x 0.9995 = 101.949: notional 4995.501, commission again the
    # minimum 1.00, no stamp duty in the US. Cash 5096.55 + 4994.501 = 10091.051.
    np.testing.assert_allclose(result.fill_price[0], [100.05, 101.949])
    np.testing.assert_array_equal(result.traded_shares[0], [49, -49])
    np.testing.assert_allclose(result.fees[0], [1.0, 1.0])
    np.testing.assert_allclose(result.cash[0], [5096.55, 10091.051])
    np.testing.assert_allclose(result.equity[0], [10045.55, 10091.051])
    np.testing.assert_allclose(result.daily_return[0], [0.004555, 10091.051 / 10045.55 - 1])


def test_cn_sell_pays_commission_and_stamp_duty():
    rules = replace(CN, initial_capital=1_000_000.0)
    result = run([1.0, 0.0], [10.0, 10.5], [10.2, 10.4], rules)
    # Session 0, buy at 10.005: 1e6 / 10.005 = 99950.02 -> 999 lots = 99900 shares.
    # Notional 999499.5, commission 2.5 bps = 249.874875 (above the 5 minimum).
    # Cash 1e6 - 999749.374875 = 250.625125.
    # Session 1 (limit-up 11.22, open 10.50 is free to trade), sell at 10.5 x 0.9995 = 10.49475:
    # notional 99900 x 10.49475 = 1048425.525; commission 262.10638125; stamp duty 5 bps =
    # 524.2127625; fees 786.31914375; cash 250.625125 + 1047639.20585625 = 1047889.83098125.
    np.testing.assert_array_equal(result.shares[0], [99_900, 0])
    np.testing.assert_allclose(result.fees[0], [249.874875, 786.31914375])
    np.testing.assert_allclose(result.cash[0], [250.625125, 1_047_889.83098125])
    np.testing.assert_allclose(result.equity[0], [250.625125 + 99_900 * 10.2, 1_047_889.83098125])
    np.testing.assert_allclose(result.exposure[0], [99_900 * 10.2 / (250.625125 + 1_018_980), 0])


def test_lots_round_down_to_100_shares_in_cn_and_1_share_in_us():
    cn = replace(FREE, lot_size=100)
    result = run([[0.5], [0.5]], [[13.0], [13.0]], [[13.0], [13.0]], cn, FREE)
    # 0.5 x 100000 / 13 = 3846.15 shares: 38 lots of 100 in CN, 3846 single shares in the US.
    np.testing.assert_array_equal(result.shares[:, 0], [3_800, 3_846])
    np.testing.assert_allclose(result.cash[:, 0], [100_000 - 3_800 * 13, 100_000 - 3_846 * 13])


def test_buy_shrinks_by_whole_lots_so_cash_never_goes_negative():
    cn = replace(CN, slippage_bps=0.0, initial_capital=10_000.0)
    us = replace(US, slippage_bps=0.0, initial_capital=10_000.0)
    result = run([[1.0], [1.0]], [[10.0], [100.0]], [[10.0], [100.0]], cn, us)
    # CN: 10000 / 10 = 1000 shares would cost 10000 + max(5, 2.5) = 10005 > 10000, so one lot
    # less: 900 x 10 + 5 = 9005, cash 995.
    # US: 100 shares would cost 10000 + max(1, 1.0) = 10001 > 10000: 99 x 100 + 1 = 9901, cash 99.
    np.testing.assert_array_equal(result.shares[:, 0], [900, 99])
    np.testing.assert_allclose(result.cash[:, 0], [995.0, 99.0])
    # Cash below the minimum commission buys nothing (and pays nothing).
    broke = replace(cn, initial_capital=4.0)
    poor = run([1.0], [0.5], [0.5], broke)
    assert poor.shares[0, 0] == 0 and poor.fees[0, 0] == 0 and poor.cash[0, 0] == 4.0


@pytest.mark.parametrize(
    ("pct", "prev_close", "limit_up", "limit_down"),
    [
        # Main board: 10.15 x 1.1 = 11.165 -> 11.17 half-up (Python's round() says 11.16);
        # 10.15 x 0.9 = 9.135 -> 9.14.
        (10.0, 10.15, 11.17, 9.14),
        # ChiNext / STAR: 10.05 x 1.2 = 12.06, 10.05 x 0.8 = 8.04.
        (20.0, 10.05, 12.06, 8.04),
        # ST: 10.15 x 1.05 = 10.6575 -> 10.66, 10.15 x 0.95 = 9.6425 -> 9.64.
        (5.0, 10.15, 10.66, 9.64),
    ],
)
def test_price_limits_half_up_and_orders_blocked_at_the_limit(
    pct, prev_close, limit_up, limit_down
):
    up, down = price_limits(np.array([prev_close]), np.array([pct]))
    assert (up[0], down[0]) == (limit_up, limit_down)

    rules = replace(CN, price_limit_pct=pct, initial_capital=100_000.0)
    # Buy: session 0 closes at prev_close with no decision; session 1 opens at limit-up
    # (blocked, stays flat) or one cent under it (fills).
    buys = run(
        [[NAN, 1.0], [NAN, 1.0]],
        [[prev_close, limit_up], [prev_close, round(limit_up - 0.01, 2)]],
        [[prev_close, limit_up], [prev_close, limit_up]],
        rules,
        rules,
    )
    np.testing.assert_array_equal(buys.limit_blocked[:, 1], [True, False])
    assert buys.shares[0, 1] == 0 and buys.fees[0, 1] == 0 and buys.shares[1, 1] > 0
    # Sell: bought at session 0's open (no previous close, no limit), closes at prev_close;
    # session 1 opens at limit-down (blocked, shares kept) or one cent above it (sold).
    sells = run(
        [[1.0, 0.0], [1.0, 0.0]],
        [[prev_close, limit_down], [prev_close, round(limit_down + 0.01, 2)]],
        [[prev_close, limit_down], [prev_close, limit_down]],
        rules,
        rules,
    )
    np.testing.assert_array_equal(sells.limit_blocked[:, 1], [True, False])
    assert sells.shares[0, 1] == sells.shares[0, 0] > 0 and sells.shares[1, 1] == 0
    # A blocked order is dropped, not queued: with no new decision the next session keeps.
    dropped = run(
        [NAN, 1.0, NAN], [10.0, 11.0, 10.5], [10.0, 10.5, 10.6], replace(CN, t_plus_one=False)
    )
    assert dropped.limit_blocked[0, 1] and dropped.shares[0, 2] == 0


def test_prev_close_argument_sets_the_first_sessions_limit():
    # Without it the first bar has no reference and trades; with prev_close 10.0 an open of
    # 11.0 is limit-up (10 x 1.1 = 11.00) and the buy is blocked.
    free = run([1.0], [11.0], [11.0], CN)
    limited = run([1.0], [11.0], [11.0], CN, prev_close=[10.0])
    assert free.shares[0, 0] > 0 and limited.shares[0, 0] == 0 and limited.limit_blocked[0, 0]


def test_t_plus_one_forbids_selling_shares_bought_in_the_same_session():
    rules = SeriesRules.stack([replace(CN, slippage_bps=0.0), replace(CN, t_plus_one=False)])
    book = Book.opening(rules)
    opens, no_prev = np.array([10.0, 10.0]), np.array([NAN, NAN])
    bought = execute_at_open(book, np.array([1.0, 1.0]), opens, no_prev, rules)
    assert (bought.traded > 0).all()
    # A second order in the same session: the T+1 series cannot sell what it just bought, the
    # T+0 series can. (`simulate` places one order per session, before any buy, so T+1 never
    # binds there: shares bought at an open are sellable from the next session's open.)
    held = book.shares.copy()
    again = execute_at_open(book, np.array([0.0, 0.0]), opens, no_prev, rules)
    assert again.traded[0] == 0 and again.fees[0] == 0 and book.shares[0] == held[0]
    assert again.traded[1] == -held[1] and book.shares[1] == 0
    book.new_session()
    next_day = execute_at_open(book, np.array([0.0, 0.0]), opens, no_prev, rules)
    assert next_day.traded[0] == -held[0]
    # In `simulate`: bought at session 0, sold at session 1's open.
    result = run([1.0, 0.0], [10.0, 10.2], [10.1, 10.2], CN)
    assert result.shares[0, 0] > 0 and result.shares[0, 1] == 0


def test_nan_target_keeps_shares_and_no_bar_skips_the_decision():
    result = run(
        [0.5, NAN, NAN, 1.0, NAN],
        [100.0, 150.0, 60.0, NAN, 80.0],
        [100.0, 140.0, 70.0, NAN, 90.0],
        FREE,
    )
    # 0.5 x 100000 / 100 = 500 shares, then kept whatever the price does (no rebalancing).
    # Session 3 has no bar: its decision (1.0) is skipped and the position is marked at the
    # last close (70); session 4 has no decision, so still 500 shares.
    np.testing.assert_array_equal(result.shares[0], [500, 500, 500, 500, 500])
    np.testing.assert_array_equal(result.traded_shares[0], [500, 0, 0, 0, 0])
    np.testing.assert_allclose(result.position_value[0], [50_000, 70_000, 35_000, 35_000, 45_000])
    assert result.daily_return[0, 3] == 0.0
    assert np.isnan(result.fill_price[0, 1:]).all() and (result.fees[0, 1:] == 0).all()


def test_buy_and_hold_follows_the_close_net_of_one_entry_cost():
    rules = replace(US, initial_capital=100_000.0)
    closes = np.array([50.5, 51.2, 49.8, 52.0, 53.1])
    opens = np.array([50.0, 50.6, 51.0, 50.1, 52.4])
    result = run(buy_and_hold(np.ones((1, 5), dtype=bool)), opens, closes, rules)
    # Buy at 50 x 1.0005 = 50.025: 100000 / 50.025 = 1999.0005 -> 1999 shares, but
    # 99999.975 + commission 9.9999975 exceeds the cash, so 1998: notional 99949.95,
    # commission 9.994995, cash left 40.055005. Then equity = 40.055005 + 1998 x close.
    np.testing.assert_array_equal(result.shares[0], [1998] * 5)
    np.testing.assert_allclose(result.equity[0], 40.055005 + 1998 * closes)
    np.testing.assert_allclose(result.fees[0], [9.994995, 0, 0, 0, 0])
    expected = np.diff(np.concatenate([[100_000.0], 40.055005 + 1998 * closes]))
    np.testing.assert_allclose(np.diff(np.concatenate([[100_000.0], result.equity[0]])), expected)


def random_market(
    rng: np.random.Generator, n_series: int, n_sessions: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, SeriesRules]:
    """Random prices in cents (CN series respect and often touch their limits), missing bars,
    targets from fixed levels and continuous, NaN 40 % of the time."""
    choices = [
        US,
        replace(US, slippage_bps=0.0, min_commission=0.0),
        CN,
        replace(CN, price_limit_pct=20.0),
        replace(CN, price_limit_pct=5.0),
        replace(CN, t_plus_one=False, lot_size=10),
    ]
    rules = [
        replace(
            choices[rng.integers(len(choices))], initial_capital=float(rng.integers(5, 500) * 1e3)
        )
        for _ in range(n_series)
    ]
    pct = np.array([r.price_limit_pct for r in rules])
    close = np.empty((n_series, n_sessions))
    open_ = np.empty((n_series, n_sessions))
    last = np.round(rng.uniform(2.0, 200.0, n_series), 2)
    for t in range(n_sessions):
        up, down = price_limits(last, pct)
        up, down = np.where(np.isnan(up), np.inf, up), np.where(np.isnan(down), 0.01, down)
        gap = np.round(last * np.exp(rng.normal(0, 0.03, n_series)), 2)
        at_limit = rng.random(n_series)
        limited = ~np.isnan(pct)
        gap = np.where(limited & (at_limit < 0.05), up, gap)
        gap = np.where(limited & (at_limit > 0.95), down, gap)
        open_[:, t] = np.clip(gap, np.maximum(down, 0.01), up)
        moved = np.round(open_[:, t] * np.exp(rng.normal(0, 0.02, n_series)), 2)
        close[:, t] = np.clip(moved, np.maximum(down, 0.01), up)
        last = close[:, t]
    missing = rng.random((n_series, n_sessions)) < 0.05
    missing[:, : n_sessions // 10] |= (np.arange(n_series) % 7 == 0)[:, None]  # late starters
    open_[missing], close[missing] = np.nan, np.nan
    target = rng.choice([0.0, 0.25, 0.5, 1.0], size=(n_series, n_sessions))
    continuous = rng.random((n_series, n_sessions)) < 0.3
    target[continuous] = rng.uniform(size=continuous.sum())
    target[rng.random((n_series, n_sessions)) < 0.4] = np.nan
    return target, open_, close, SeriesRules.stack(rules)


def assert_same(vectorised: SimulationResult, index: int, reference: SimulationResult) -> None:
    for field in fields(SimulationResult):
        np.testing.assert_allclose(
            getattr(vectorised, field.name)[index],
            getattr(reference, field.name),
            rtol=0,
            atol=1e-9,
            err_msg=f"series {index}: {field.name}",
        )


@pytest.mark.parametrize("seed", [1, 2])
def test_vectorised_simulation_equals_the_per_series_loop(seed):
    rng = np.random.default_rng(seed)
    target, open_, close, rules = random_market(rng, 300, 120)
    result = simulate(target, open_, close, rules)
    for index in range(len(rules)):
        reference = simulate_one_series(
            target[index], open_[index], close[index], rules.series(index)
        )
        assert_same(result, index, reference)
    # Session-major (Fortran-order) inputs take the no-copy path and give the same result.
    session_major = simulate(*(np.asfortranarray(a) for a in (target, open_, close)), rules)
    np.testing.assert_array_equal(session_major.equity, result.equity)
    np.testing.assert_array_equal(session_major.traded_shares, result.traded_shares)
    # The inputs exercised what they should, and the invariants hold everywhere.
    assert result.limit_blocked.sum() > 50
    assert (result.traded_shares > 0).sum() > 1000 and (result.traded_shares < 0).sum() > 1000
    assert (result.cash >= 0).all() and (result.shares >= 0).all()
    assert (result.shares % rules.lot_size[:, None] == 0).all()


def test_vectorised_equals_loop_with_explicit_prev_close():
    rng = np.random.default_rng(7)
    target, open_, close, rules = random_market(rng, 60, 40)
    prev_close = np.round(np.where(np.isnan(open_), np.nan, open_ * rng.uniform(0.9, 1.1)), 2)
    result = simulate(target, open_, close, rules, prev_close=prev_close)
    for index in range(len(rules)):
        reference = simulate_one_series(
            target[index], open_[index], close[index], rules.series(index), prev_close[index]
        )
        assert_same(result, index, reference)


def test_round_trips_of_a_scaled_position():
    result = run(
        [0.5, 1.0, 0.5, 0.0, NAN, 1.0],
        [100.0, 110.0, 120.0, 90.0, 95.0, 100.0],
        [100.0, 110.0, 120.0, 90.0, 95.0, 100.0],
        FREE,
    )
    # Session 0: 0.5 x 100000 / 100 = 500 shares (-50000). Session 1: equity 50000 + 500 x 110 =
    # 105000, floor(105000 / 110) = 954 wanted, add 454 @110 (-49940), cash 60. Session 2: equity
    # 60 + 954 x 120 = 114540, floor(57270 / 120) = 477 wanted, sell 477 @120 (+57240).
    # Session 3: sell 477 @90 (+42930). One trip: entry 99940, exit 100170, pnl +230 (a win).
    # The buy at session 5 is still open and is not a trip.
    trips = round_trips(result, series=["arm|AAA"], sessions=list("abcdef"))
    assert len(trips) == 1
    trip = trips.iloc[0]
    assert (trip["series"], trip["entry_session"], trip["exit_session"]) == ("arm|AAA", "a", "d")
    assert trip["n_fills"] == 4 and trip["holding_sessions"] == 3
    assert trip["entry_value"] == pytest.approx(99_940.0)
    assert trip["exit_value"] == pytest.approx(100_170.0)
    assert trip["net_pnl"] == pytest.approx(230.0) and trip["win"]
    assert trip["return"] == pytest.approx(230.0 / 99_940.0)
    assert result.equity[0, 3] - 100_000.0 == pytest.approx(trip["net_pnl"])


def test_round_trips_sum_to_the_total_pnl():
    rng = np.random.default_rng(11)
    target, open_, close, rules = random_market(rng, 200, 80)
    target[:, -1] = 0.0  # exit everywhere (a missing bar or limit-down may still keep some)
    result = simulate(target, open_, close, rules)
    trips = round_trips(result)
    flat = np.flatnonzero(result.shares[:, -1] == 0)
    assert len(flat) > 150 and len(trips) > 500
    pnl = trips.groupby("series")["net_pnl"].sum().reindex(flat, fill_value=0.0).to_numpy()
    total = result.equity[flat, -1] - rules.initial_capital[flat]
    np.testing.assert_allclose(pnl, total, rtol=0, atol=1e-6)
    assert (trips["win"] == (trips["net_pnl"] > 0)).all()
    assert (trips["exit_session"] > trips["entry_session"]).all()


def test_round_trips_of_no_trades_is_an_empty_frame():
    trips = round_trips(run([NAN, NAN], [10.0, 11.0], [10.0, 11.0], FREE))
    assert trips.empty and "net_pnl" in trips.columns


def test_daily_returns_compound_to_the_total_return():
    empyrical = pytest.importorskip("empyrical")
    rng = np.random.default_rng(3)
    target, open_, close, rules = random_market(rng, 20, 60)
    result = simulate(target, open_, close, rules)
    for index in range(20):
        total = empyrical.cum_returns_final(result.daily_return[index])
        expected = result.equity[index, -1] / rules.initial_capital[index] - 1
        assert total == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_baselines():
    has_bar = np.array([[True, True, True], [False, True, True], [False, False, False]])
    np.testing.assert_array_equal(
        buy_and_hold(has_bar), [[1.0, NAN, NAN], [NAN, 1.0, NAN], [NAN, NAN, NAN]]
    )
    entry = np.array([[True, True, False, False]])
    exit_ = np.array([[False, True, True, np.nan]])  # a missing signal did not fire
    np.testing.assert_array_equal(rule_only(entry, exit_), [[1.0, 0.0, 0.0, NAN]])
    first, again = random_targets((50, 30), seed=5), random_targets((50, 30), seed=5)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, random_targets((50, 30), seed=6))
    assert set(np.unique(first)) == {0.0, 0.5, 1.0}


@pytest.mark.parametrize(
    ("target", "open_", "close", "message"),
    [
        ([1.5], [10.0], [10.0], "outside 0..1"),
        ([1.0], [np.nan], [10.0], "missing together"),
        ([1.0], [-1.0], [10.0], "positive"),
        ([1.0], [np.inf], [10.0], "finite"),
    ],
)
def test_bad_inputs_are_refused(target, open_, close, message):
    with pytest.raises(ValueError, match=message):
        run(target, open_, close, FREE)


def edge_market(
    rng: np.random.Generator, n_series: int, n_sessions: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, SeriesRules]:
    """Inputs aimed at the rare branches: sleeves worth a few minimum commissions, big lots,
    heavy costs and slippage, opens at and next to the limits, tiny and full targets."""
    rules = [
        TradingRules(
            lot_size=int(rng.choice([1, 10, 100, 1000])),
            commission_bps=float(rng.choice([0.0, 2.5, 30.0])),
            min_commission=float(rng.choice([0.0, 1.0, 5.0, 50.0])),
            stamp_duty_sell_bps=float(rng.choice([0.0, 5.0, 10.0])),
            slippage_bps=float(rng.choice([0.0, 5.0, 50.0])),
            price_limit_pct=float(rng.choice([NAN, 5.0, 10.0, 20.0])),
            t_plus_one=bool(rng.random() < 0.5),
            initial_capital=float(rng.choice([46.0, 60.0, 500.0, 5_000.0, 1e6])),
        )
        for _ in range(n_series)
    ]
    pct = np.array([r.price_limit_pct for r in rules])
    limited = ~np.isnan(pct)
    open_ = np.empty((n_series, n_sessions))
    close = np.empty((n_series, n_sessions))
    last = np.round(np.exp(rng.uniform(np.log(0.5), np.log(80.0), n_series)), 2)
    for t in range(n_sessions):
        up, down = price_limits(last, pct)
        up = np.where(limited, up, np.inf)
        down = np.where(limited, np.maximum(down, 0.01), 0.01)
        gap = np.round(last * np.exp(rng.normal(0, 0.08, n_series)), 2)
        draw = rng.random(n_series)
        nudge = rng.choice([-0.01, 0.0, 0.01], size=n_series)  # at a limit or a cent inside
        gap = np.where(limited & (draw < 0.08), up + np.minimum(nudge, 0), gap)
        gap = np.where(limited & (draw > 0.92), down + np.maximum(nudge, 0), gap)
        open_[:, t] = np.round(np.clip(gap, down, up), 2)
        moved = np.round(open_[:, t] * np.exp(rng.normal(0, 0.05, n_series)), 2)
        close[:, t] = np.clip(moved, down, up)
        last = close[:, t]
    missing = rng.random((n_series, n_sessions)) < 0.08
    open_[missing], close[missing] = NAN, NAN
    target = rng.choice([0.0, 1e-6, 0.5, 1.0, NAN], size=(n_series, n_sessions))
    continuous = rng.random((n_series, n_sessions)) < 0.2
    target[continuous] = rng.uniform(size=continuous.sum())
    return target, open_, close, SeriesRules.stack(rules)


@pytest.mark.parametrize("seed", [21, 22, 23])
def test_kernel_equals_the_loop_bit_for_bit_on_edge_cases(seed):
    rng = np.random.default_rng(seed)
    target, open_, close, rules = edge_market(rng, 400, 60)
    prev_close = None
    if seed == 23:  # the limits' reference given: the day before's close, moved on some days
        prev_close = np.concatenate([np.full((len(rules), 1), NAN), close[:, :-1]], axis=1)
        moved = rng.random(prev_close.shape) < 0.2
        prev_close[moved] = np.round(open_[moved] * rng.uniform(0.85, 1.15, moved.sum()), 2)
    result = simulate(target, open_, close, rules, prev_close=prev_close)
    for index in range(len(rules)):
        reference = simulate_one_series(
            target[index],
            open_[index],
            close[index],
            rules.series(index),
            None if prev_close is None else prev_close[index],
        )
        for field in fields(SimulationResult):
            np.testing.assert_array_equal(
                getattr(result, field.name)[index],
                getattr(reference, field.name),
                err_msg=f"seed {seed}, series {index}: {field.name}",
            )
    # The rare branches were taken: orders dropped at a limit, buys cut to what cash covers
    # (less cash left than one more lot would cost), sells skipped because their costs would
    # overdraw (target 0 on a bar, shares held, not blocked, nothing sold).
    held_before = np.concatenate([np.zeros((len(rules), 1)), result.shares[:, :-1]], axis=1)
    bought = result.traded_shares > 0
    one_more_lot = rules.lot_size[:, None] * result.fill_price
    skipped_sell = (
        (target == 0) & ~np.isnan(open_) & (held_before > 0) & ~result.limit_blocked
    ) & (result.traded_shares == 0)
    assert result.limit_blocked.sum() > 100
    assert (bought & (result.cash < one_more_lot)).sum() > 100
    assert skipped_sell.sum() > 0
    assert (result.cash >= 0).all() and (result.shares >= 0).all()


@pytest.mark.parametrize(
    ("rules", "price", "shares", "cash"),
    [
        # A 5000 minimum commission on a 10000 sleeve at 1.00 a share: the 10000 shares wanted
        # shrink to 5000 (5000 + 5000 commission = all the cash), 5000 lots below the first try.
        (TradingRules(min_commission=5_000.0, initial_capital=10_000.0), 1.0, 5_000, 0.0),
        # 216 shares at 22.09 plus the 50 minimum cost exactly the 4821.44 there is, but the
        # closed form's (4821.44 - 50) / 22.09 is 215.99999999999997 in binary: it starts a lot
        # short, and only the step back up reaches the loop's answer.
        (TradingRules(min_commission=50.0, initial_capital=4821.44), 22.09, 216, 0.0),
    ],
)
def test_buys_short_of_cash_shrink_to_the_loops_answer(rules, price, shares, cash):
    prices = [price, price]
    result = run([1.0, 1.0], prices, prices, rules)
    reference = simulate_one_series([1.0, 1.0], prices, prices, rules)
    np.testing.assert_array_equal(result.shares[0], [shares, shares])
    np.testing.assert_array_equal(result.cash[0], [cash, cash])
    for field in fields(SimulationResult):
        np.testing.assert_array_equal(
            getattr(result, field.name)[0], getattr(reference, field.name)
        )


def test_any_input_layout_gives_the_same_result():
    rng = np.random.default_rng(5)
    target, open_, close, rules = random_market(rng, 40, 50)
    expected = simulate(target, open_, close, rules)
    wide = [np.repeat(a, 2, axis=1) for a in (target, open_, close)]  # strided views below
    layouts = {
        "session-major": [np.asfortranarray(a) for a in (target, open_, close)],
        "strided": [a[:, ::2] for a in wide],
        "mixed": [target, np.asfortranarray(open_), close[::-1][::-1]],
    }
    for name, inputs in layouts.items():
        result = simulate(*inputs, rules)
        for field in fields(SimulationResult):
            np.testing.assert_array_equal(
                getattr(result, field.name),
                getattr(expected, field.name),
                err_msg=f"{name}: {field.name}",
            )


FIRST_CALL = """
import sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from {module} import SeriesRules, TradingRules, simulate
result = simulate([[1.0, 0.0]], [[10.0, 11.0]], [[10.5, 11.0]], SeriesRules.stack([TradingRules()]))
print("equity", result.equity[0, -1])
"""


def run_first_call(module: str, path: Path, **environment: str) -> subprocess.CompletedProcess:
    """`simulate` once in a fresh interpreter (numba reads its cache settings at import)."""
    return subprocess.run(
        [sys.executable, "-c", FIRST_CALL.format(module=module), str(path)],
        env={**os.environ, **environment},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_kernels_are_cached_on_disk_and_loaded_by_the_next_process(tmp_path):
    cache = tmp_path / "not-yet-there"
    root = Path(__file__).resolve().parents[1]
    first = run_first_call("backtest.simulation", root, NUMBA_CACHE_DIR=str(cache))
    assert first.returncode == 0, first.stderr
    assert "equity 1100000.0" in first.stdout
    assert list(cache.rglob("*.nbi")) and list(cache.rglob("*.nbc"))
    second = run_first_call(
        "backtest.simulation", root, NUMBA_CACHE_DIR=str(cache), NUMBA_DEBUG_CACHE="1"
    )
    assert second.returncode == 0, second.stderr
    assert "equity 1100000.0" in second.stdout and "[cache] data loaded" in second.stdout


def test_no_writable_cache_directory_compiles_in_memory_with_a_warning(tmp_path):
    # A copy of the module beside a *file* named __pycache__, and the other cache locations
    # under a file too: numba finds nowhere to cache and refuses cache=True at import.
    source = Path(__file__).resolve().parents[1] / "backtest" / "simulation.py"
    shutil.copy(source, tmp_path / "simulation_copy.py")
    (tmp_path / "__pycache__").write_text("not a directory")
    blocked = tmp_path / "__pycache__" / "numba"
    outcome = run_first_call(
        "simulation_copy",
        tmp_path,
        NUMBA_CACHE_DIR=str(blocked),
        XDG_CACHE_HOME=str(blocked),
        HOME=str(blocked),
    )
    assert outcome.returncode == 0, outcome.stderr
    assert "equity 1100000.0" in outcome.stdout
    assert outcome.stderr.count("numba finds no writable cache directory") == 1


def status_codes(*names: str) -> list[int]:
    return [ORDER_STATUSES.index(name) for name in names]


def assert_identical(actual: SimulationResult, expected: SimulationResult, label: str) -> None:
    """Every output array equal bit for bit (NaN where NaN), dtypes included."""
    for field in fields(SimulationResult):
        ours, theirs = getattr(actual, field.name), getattr(expected, field.name)
        assert ours.dtype == theirs.dtype, f"{label}: {field.name} dtype"
        assert np.array_equal(ours, theirs, equal_nan=True), f"{label}: {field.name}"


def assert_same_state(actual: SleeveState, expected: SleeveState, label: str) -> None:
    for name in STATE_COLUMNS:
        ours, theirs = getattr(actual, name), getattr(expected, name)
        assert np.array_equal(ours, theirs, equal_nan=True), f"{label}: state {name}"


def concatenated(parts: list[SimulationResult]) -> SimulationResult:
    """Per-session results of consecutive calls joined along the session axis."""
    return SimulationResult(
        **{
            f.name: np.concatenate([getattr(part, f.name) for part in parts], axis=1)
            for f in fields(SimulationResult)
        }
    )


def through_parquet(state: SleeveState, path: Path) -> SleeveState:
    """Write the state as a pandas frame to a Parquet file with pyarrow and read it back."""
    frame = state.to_frame(index=[f"arm|{i}" for i in range(len(state))])
    pq.write_table(pa.Table.from_pandas(frame), path)
    return SleeveState.from_columns(pq.read_table(path).to_pandas())


def market_with_prev_close(kind: str, seed: int):
    rng = np.random.default_rng(seed)
    make = random_market if kind == "random" else edge_market
    target, open_, close, rules = make(rng, 150, 50)
    prev_close = None
    if kind == "edge, prev_close":  # the day before's close, moved on some days (as above)
        prev_close = np.concatenate([np.full((len(rules), 1), NAN), close[:, :-1]], axis=1)
        moved = rng.random(prev_close.shape) < 0.2
        prev_close[moved] = np.round(open_[moved] * rng.uniform(0.85, 1.15, moved.sum()), 2)
    return target, open_, close, rules, prev_close


@pytest.mark.parametrize(
    ("kind", "seed"), [("random", 31), ("random", 32), ("edge", 33), ("edge, prev_close", 34)]
)
def test_one_session_at_a_time_with_the_state_carried_equals_one_run(kind, seed):
    target, open_, close, rules, prev_close = market_with_prev_close(kind, seed)
    whole = simulate(target, open_, close, rules, prev_close=prev_close)
    state, parts = None, []
    for t in range(target.shape[1]):
        session = np.s_[:, t : t + 1]
        part = simulate(
            target[session],
            open_[session],
            close[session],
            rules,
            prev_close=None if prev_close is None else prev_close[session],
            state=state,
        )
        parts.append(part)
        state = part.final_state
    assert_identical(concatenated(parts), whole, kind)
    assert_same_state(state, whole.final_state, kind)
    # The final state is the last session's book (plus the last close, which it can't show).
    for name in ("cash", "shares", "equity", "cost_basis", "held_sessions"):
        assert np.array_equal(getattr(state, name), getattr(whole, name)[:, -1]), name
    # The book fields agree with their definitions, and the codes with `limit_blocked`.
    held = whole.shares > 0
    np.testing.assert_array_equal(whole.limit_blocked, np.isin(whole.order_status, [2, 3]))
    assert (whole.cost_basis[~held] == 0).all() and (whole.held_sessions[~held] == 0).all()
    assert np.isnan(whole.avg_entry_price[~held]).all()
    assert np.isnan(whole.unrealized_return[~held]).all()
    np.testing.assert_array_equal(
        whole.avg_entry_price[held], whole.cost_basis[held] / whole.shares[held]
    )
    codes = set(np.unique(whole.order_status).tolist())
    assert codes >= set(status_codes("none", "filled", "limit_up", "limit_down", "cash"))
    if kind.startswith("edge"):
        assert ORDER_STATUSES.index("lot") in codes  # big lots on small sleeves


@pytest.mark.parametrize("seed", [41, 42, 43])
def test_a_run_split_anywhere_resumes_exactly_through_parquet(seed, tmp_path):
    rng = np.random.default_rng(seed)
    target, open_, close, rules = (random_market if seed % 2 else edge_market)(rng, 200, 80)
    whole = simulate(target, open_, close, rules)
    for split in (int(rng.integers(1, 80)), 0, 80):  # anywhere, and the empty ends
        first = simulate(target[:, :split], open_[:, :split], close[:, :split], rules)
        state = through_parquet(first.final_state, tmp_path / f"state-{split}.parquet")
        assert_same_state(state, first.final_state, f"split {split}, Parquet")
        rest = simulate(target[:, split:], open_[:, split:], close[:, split:], rules, state=state)
        assert_identical(concatenated([first, rest]), whole, f"split {split}")
        assert_same_state(rest.final_state, whole.final_state, f"split {split}")


def test_state_carried_through_parquet_every_session_is_bit_exact(tmp_path):
    target, open_, close, rules, _ = market_with_prev_close("edge", 44)
    target, open_, close = target[:60, :25], open_[:60, :25], close[:60, :25]
    rules = SeriesRules.stack([rules.series(i) for i in range(60)])
    whole = simulate(target, open_, close, rules)
    state, parts = SleeveState.opening(rules), []
    for t in range(target.shape[1]):
        state = through_parquet(state, tmp_path / "state.parquet")
        parts.append(simulate(target[:, [t]], open_[:, [t]], close[:, [t]], rules, state=state))
        state = parts[-1].final_state
    assert_identical(concatenated(parts), whole, "Parquet every session")
    # pyarrow writes the opening state's NaN last_close as null; it reads back as NaN.
    opening = through_parquet(SleeveState.opening(rules), tmp_path / "opening.parquet")
    assert pq.read_table(tmp_path / "opening.parquet").column("last_close").null_count == 60
    assert np.isnan(opening.last_close).all()


def test_sleeve_state_opening_columns_and_checks():
    rules = SeriesRules.stack([replace(FREE, initial_capital=5e4), CN])
    opening = SleeveState.opening(rules)
    columns = opening.to_columns()
    assert tuple(columns) == STATE_COLUMNS == (
        "cash", "shares", "last_close", "equity", "cost_basis", "held_sessions"
    )  # fmt: skip
    np.testing.assert_array_equal(columns["cash"], [5e4, 1e6])
    np.testing.assert_array_equal(columns["equity"], [5e4, 1e6])
    assert all(v.dtype == np.float64 and v.shape == (2,) for v in columns.values())
    assert (opening.shares == 0).all() and np.isnan(opening.last_close).all()
    # Extra columns (labels) are ignored; a nullable column's NA reads as NaN.
    frame = opening.to_frame().assign(ticker=["AAA", "600000"])
    frame["last_close"] = pd.array([None, 10.5], dtype="Float64")
    back = SleeveState.from_columns(frame)
    np.testing.assert_array_equal(back.last_close, [NAN, 10.5])
    # Passing the opening state is the default; a state of the wrong size is refused.
    inputs = ([[1.0], [1.0]], [[10.0], [10.0]], [[10.0], [10.0]])
    assert_identical(simulate(*inputs, rules, state=opening), simulate(*inputs, rules), "open")
    with pytest.raises(ValueError, match="state"):
        simulate(*inputs, rules, state=SleeveState.opening(SeriesRules.stack([CN])))
    negative = replace(opening, cash=np.array([-1.0, 1e6]))
    with pytest.raises(ValueError, match="negative"):
        simulate(*inputs, rules, state=negative)


def test_cost_basis_entry_price_held_sessions_and_unrealized_return():
    rules = TradingRules(lot_size=1, commission_bps=10.0, min_commission=1.0, initial_capital=1e4)
    result = run(
        [0.5, 0.8, NAN, 0.3, 0.0],
        [100.0, 104.0, NAN, 110.0, 100.0],
        [102.0, 105.0, NAN, 108.0, 99.0],
        rules,
    )
    # 0: buy floor(0.5 x 10000 / 100) = 50 @100 = 5000 + commission 5 (10 bps) -> cost 5005,
    #    avg 100.1, held 1; value 50 x 102 = 5100, unrealized 5100 / 5005 - 1. Cash 4995.
    # 1: equity 4995 + 50 x 104 = 10195; floor(0.8 x 10195 / 104) = 78: add 28 @104 = 2912
    #    + 2.912 -> cost 7919.912, avg 7919.912 / 78 = 101.5373..., held 2; value 8190.
    # 2: no bar: nothing trades, still held (3), marked at the last close.
    # 3: equity 2080.088 + 78 x 110 = 10660.088; floor(0.3 x 10660.088 / 110) = 29: sell 49.
    #    Pro rata cost 7919.912 x 29 / 78 = 2944.58266..., the same avg; held 4; value 3132.
    # 4: sell the last 29: flat, cost 0, avg and unrealized NaN, held 0.
    cost = [5005.0, 7919.912, 7919.912, 7919.912 * 29 / 78, 0.0]
    np.testing.assert_array_equal(result.shares[0], [50, 78, 78, 29, 0])
    np.testing.assert_allclose(result.cost_basis[0], cost, rtol=1e-12)
    np.testing.assert_allclose(
        result.avg_entry_price[0], [100.1, 7919.912 / 78, 7919.912 / 78, 7919.912 / 78, NAN]
    )
    np.testing.assert_array_equal(result.held_sessions[0], [1, 2, 3, 4, 0])
    value = np.array([5100.0, 8190.0, 8190.0, 3132.0])
    np.testing.assert_allclose(result.unrealized_return[0, :4], value / cost[:4] - 1)
    assert np.isnan(result.unrealized_return[0, 4])
    np.testing.assert_array_equal(
        result.order_status[0], status_codes("filled", "filled", "none", "filled", "filled")
    )
    # The trip's entry value is all the cash put in: the cost basis before the first sell.
    assert round_trips(result).iloc[0]["entry_value"] == pytest.approx(7919.912)
    state = result.final_state
    assert state.shares[0] == 0 and state.cost_basis[0] == 0 and state.last_close[0] == 99.0
    assert state.equity[0] == pytest.approx(10_361.798)


def test_order_status_codes():
    up = replace(CN, t_plus_one=False, initial_capital=100_000.0)
    # Session 1 after a close of 10.00: limit-up is 11.00, limit-down 9.00.
    at_limits = run(
        [[NAN, 1.0], [1.0, 0.0]], [[10.0, 11.0], [10.0, 9.0]], [[10.0, 11.0], [10.0, 9.0]], up, up
    )
    np.testing.assert_array_equal(
        at_limits.order_status[:, 1], status_codes("limit_up", "limit_down")
    )
    np.testing.assert_array_equal(at_limits.order_status[:, 0], status_codes("none", "filled"))
    # Cash: 1000 shares wanted, 900 covered (see the shrink test); or 1 share at 6 plus a 5
    # minimum on 10 of cash, none covered. A sell of 2 shares at 1 with a 5 minimum and 1 of
    # cash would overdraw: skipped, also for cash.
    cn = replace(CN, slippage_bps=0.0, initial_capital=10_000.0)
    tight = TradingRules(min_commission=5.0, initial_capital=10.0)
    short = run(
        [[1.0, NAN], [1.0, NAN]], [[10.0, 10.0], [6.0, 6.0]], [[10.0] * 2, [6.0] * 2], cn, tight
    )
    np.testing.assert_array_equal(short.traded_shares[:, 0], [900, 0])
    np.testing.assert_array_equal(short.order_status[:, 0], status_codes("cash", "cash"))
    overdraw = run([1.0, 0.0], [2.0, 1.0], [2.0, 1.0], tight)
    # Buy: 5 shares cost 10 + 5 > 10, 2 cost 4 + 5 = 9: cash 1; then 2 x 1 - 5 would overdraw.
    np.testing.assert_array_equal(overdraw.shares[0], [2, 2])
    np.testing.assert_array_equal(overdraw.order_status[0], status_codes("cash", "cash"))
    # Lot: 1 % of 100000 is 1000, one lot of 100 at 13 costs 1300: nothing bought. Only when
    # flat: holding 38 lots, the same target sells them all (0 lots wanted), "filled".
    lots = replace(FREE, lot_size=100)
    small = run([0.01, 0.5, 0.01], [13.0] * 3, [13.0] * 3, lots)
    np.testing.assert_array_equal(small.order_status[0], status_codes("lot", "filled", "filled"))
    # None: no decision, no bar, or on target within a lot (0.5 x 99950 / 9990 = 5.0025 lots).
    held = run([0.5, NAN, 0.5, 0.5], [100.0, 101.0, NAN, 99.9], [100.0, 101.0, NAN, 99.9], lots)
    np.testing.assert_array_equal(held.shares[0], [500] * 4)
    np.testing.assert_array_equal(held.order_status[0], status_codes("filled", *["none"] * 3))
    # T+1: only a second order in the same session can be capped (see the T+1 test).
    rules = SeriesRules.stack([replace(CN, slippage_bps=0.0), replace(CN, t_plus_one=False)])
    book = Book.opening(rules)
    opens, no_prev = np.array([10.0, 10.0]), np.array([NAN, NAN])
    bought = execute_at_open(book, np.array([1.0, 1.0]), opens, no_prev, rules)
    # No slippage: 100 000 shares at 10 plus commission exceed the 1e6 of cash: one lot less;
    # with 5 bps slippage 999 lots at 10.005 are covered.
    np.testing.assert_array_equal(bought.order_status, status_codes("cash", "filled"))
    again = execute_at_open(book, np.array([0.0, 0.0]), opens, no_prev, rules)
    np.testing.assert_array_equal(again.order_status, status_codes("t_plus_one", "filled"))
    assert again.order_status.dtype == np.int8 and not again.limit_blocked.any()


def test_split_and_dividend_leave_buy_and_hold_a_total_return():
    # Constructed market, no costs: buy 1000 shares at 100 on session 0 (100000 capital).
    # Session 1 is a 2-for-1 split (close 50.5: +1 % on the ex-reference 50); session 2 pays a
    # 10 % cash dividend of 5.05 per share (ex-reference 50.5 - 5.05 = 45.45, close 45.45).
    prices = [100.0, 50.5, 45.45, 46.0]
    result = simulate(
        np.array([[1.0, NAN, NAN, NAN]]),
        np.array([prices]),
        np.array([prices]),
        SeriesRules.stack([FREE]),
        split_ratio=np.array([[1.0, 2.0, 1.0, 1.0]]),
        cash_dividend=np.array([[0.0, 0.0, 5.05, 0.0]]),
    )
    np.testing.assert_array_equal(result.shares[0], [1000, 2000, 2000, 2000])
    np.testing.assert_array_equal(result.dividend_cash[0], [0, 0, 2000 * 5.05, 0])
    # By hand: 2000 x 46 + 10100 of dividend = 102100 against 100000 put in.
    assert result.equity[0, -1] == pytest.approx(102_100.0, rel=1e-12)
    # The dividend is cash in the sleeve: session 3 moves the stock part only.
    np.testing.assert_allclose(result.daily_return[0], [0.0, 0.01, 0.0, 102_100 / 101_000 - 1])
    # The entry price halves with the split and falls by the dividend's share of the close.
    np.testing.assert_allclose(result.avg_entry_price[0], [100.0, 50.0, 45.0, 45.0])
    np.testing.assert_allclose(result.unrealized_return[0, -1], 46.0 / 45.0 - 1)


def test_cn_bonus_shares_leave_an_odd_lot_that_sells_and_dividends_count_in_the_trip():
    # 8 bonus shares per 10 on 300 shares: 540, not a multiple of the 100 lot; selling to
    # flat sells them all. The trip's exit value includes the dividend: the true return.
    rules = replace(CN, price_limit_pct=20.0, initial_capital=3_000.0)
    prices = [10.0, 5.5, 5.6]
    result = simulate(
        np.array([[1.0, NAN, 0.0]]),
        np.array([prices]),
        np.array([prices]),
        SeriesRules.stack([rules]),
        split_ratio=np.array([[1.0, 1.8, 1.0]]),
        cash_dividend=np.array([[0.0, 0.252, 0.0]]),
    )
    assert result.shares[0, 1] == 200 * 1.8  # 200 bought (a third lot would not fit the fees)
    assert result.shares[0, 2] == 0 and result.traded_shares[0, 2] == -360
    # The limit refers to the ex-reference price (10 - 0.252) / 1.8 = 5.4156: 5.5 is no limit-up
    # day and the equity does not fall 44 % on the ex-date.
    assert result.daily_return[0, 1] > 0
    trips = round_trips(result)
    assert len(trips) == 1
    sold = 360 * 5.6 * (1 - 5e-4)
    received = sold - max(5.0, sold * 2.5e-4) - sold * 5e-4 + 200 * 0.252
    assert trips["exit_value"].iloc[0] == pytest.approx(received, rel=1e-12)
    assert trips["n_fills"].iloc[0] == 2


def test_a_fraction_left_by_a_split_is_paid_in_cash_at_the_ex_reference():
    result = simulate(
        np.array([[0.5, NAN]]),
        np.array([[100.0, 66.0]]),
        np.array([[99.0, 66.0]]),
        SeriesRules.stack([FREE]),
        split_ratio=np.array([[1.0, 1.5]]),
        cash_dividend=np.array([[0.0, 0.0]]),
    )
    # 500 shares x 1.5 = 750 exactly: no fraction. A 3-for-2 of 333 shares would leave one half.
    assert result.shares[0, 1] == 750 and result.dividend_cash[0, 1] == 0
    odd = simulate(
        np.array([[0.00333, NAN]]),
        np.array([[100.0, 66.0]]),
        np.array([[99.0, 66.0]]),
        SeriesRules.stack([FREE]),
        split_ratio=np.array([[1.0, 1.5]]),
        cash_dividend=np.array([[0.0, 0.0]]),
    )
    assert odd.shares[0, 0] == 3 and odd.shares[0, 1] == 4
    assert odd.dividend_cash[0, 1] == pytest.approx(0.5 * 99.0 / 1.5)


def test_idle_cash_earns_the_risk_free_return():
    daily = np.array([[1e-4, 2e-4, 1e-4], [1e-4, 2e-4, 1e-4]])
    result = simulate(
        np.array([[0.0, 0.0, 0.0], [0.5, NAN, NAN]]),
        np.full((2, 3), 100.0),
        np.full((2, 3), 100.0),
        SeriesRules.stack([FREE, FREE]),
        risk_free=daily,
    )
    # All cash: the daily return is the risk-free return.
    np.testing.assert_allclose(result.daily_return[0], daily[0], rtol=1e-12)
    # Half invested: the cash half (50000 after session 0's buy) earns from session 1 on.
    assert result.interest[1, 0] == pytest.approx(100_000 * 1e-4)
    assert result.interest[1, 1] == pytest.approx((50_000 + 10.0) * 2e-4)
    with pytest.raises(ValueError, match="risk_free"):
        simulate(
            np.zeros((1, 2)),
            np.ones((1, 2)),
            np.ones((1, 2)),
            SeriesRules.stack([FREE]),
            risk_free=np.ones((1, 3)),
        )


@pytest.mark.parametrize("seed", [3, 4])
def test_vectorised_equals_loop_with_corporate_actions_and_risk_free(seed):
    rng = np.random.default_rng(seed)
    target, open_, close, rules = random_market(rng, 80, 60)
    events = rng.random(target.shape) < 0.03
    split = np.where(events & (rng.random(target.shape) < 0.5), rng.choice([1.5, 1.8, 2.0]), 1.0)
    dividend = np.where(events, np.round(rng.uniform(0, 0.05) * np.nan_to_num(open_), 2), 0.0)
    risk_free = np.tile(rng.uniform(0, 3e-4, target.shape[1]), (target.shape[0], 1))
    inputs = {"split_ratio": split, "cash_dividend": dividend, "risk_free": risk_free}
    result = simulate(target, open_, close, rules, **inputs)
    for index in range(len(rules)):
        reference = simulate_one_series(
            target[index],
            open_[index],
            close[index],
            rules.series(index),
            **{name: values[index] for name, values in inputs.items()},
        )
        assert_same(result, index, reference)
    assert (result.dividend_cash > 0).sum() > 10 and (result.interest > 0).sum() > 100
    # One session at a time, the state carried: the same outputs bit for bit.
    state, equity = None, []
    for t in range(target.shape[1]):
        window = slice(t, t + 1)
        step = simulate(
            target[:, window],
            open_[:, window],
            close[:, window],
            rules,
            state=state,
            **{name: values[:, window] for name, values in inputs.items()},
        )
        state = step.final_state
        equity.append(step.equity[:, 0])
    np.testing.assert_array_equal(np.column_stack(equity), result.equity)
