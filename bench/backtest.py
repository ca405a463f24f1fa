"""Benchmark: the vectorised execution simulation against the per-series reference loop.

Builds 10 000 arm x ticker series x 252 sessions of random but realistic inputs (seeded):

- half US (lot 1, 1 bps commission with a 1.00 minimum, 5 bps slippage, no limit, T+0) and half
  CN (lot 100, 2.5 bps with a 5.00 minimum, 5 bps stamp duty on sells, 5 bps slippage, T+1;
  limits 10 % main board, 20 % ChiNext/STAR, 5 % ST);
- prices in cents from a random walk with gaps; CN opens and closes stay inside the limits and
  about 5 % of CN opens sit exactly at limit-up or limit-down;
- each market's holidays on the union axis (no bar for all its series), 1 % suspensions and
  some series listed late;
- targets of two kinds: LLM-like arms that state a target every session (changing on ~20 % of
  them, as `llm_decisions` rows do) and rule-like arms that decide on ~10 % of sessions (NaN
  otherwise).

The matrices are built session-major (Fortran order), the layout a sessions x series pivot
gives once transposed; the series-major (C order) layout is timed too (`simulate` reads either
in place; each is compiled once by numba). `simulate` runs on all series and
`simulate_one_series` is looped over the first `--subset` series; each time is the fastest of
`--repeats` (the machine is shared), after one warm-up call, and is scaled to series/s. Both
must agree on that subset to 1e-9 in every output, or the script prints `!!! MISMATCH` and
exits 1. Also printed: `round_trips` on the full result; the memory floor of any implementation
that returns the result as arrays (allocating and filling the ten (n_series, n_sessions)
outputs, nothing computed); and the first call in a fresh process, which compiles the kernels
(numba's disk cache empty) or loads them (cache filled), timed in two subprocesses that share a
temporary NUMBA_CACHE_DIR.

Run: `.venv/bin/python bench/backtest.py [--series 10000] [--sessions 252] [--subset 500]`.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import fields, replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from backtest.simulation import (  # noqa: E402
    SeriesRules,
    SimulationResult,
    TradingRules,
    price_limits,
    round_trips,
    simulate,
    simulate_one_series,
)

SEED = 20250101
TARGET_SPEED_UP = 100
MARKET_RULES_SEED = Path(__file__).resolve().parents[1] / "dbt" / "seeds" / "market_rules.csv"


def seed_rules() -> dict[str, TradingRules]:
    """The markets' costs and limits from the `market_rules` seed, their one definition."""
    with MARKET_RULES_SEED.open(encoding="utf-8") as handle:
        return {row["market"]: TradingRules.from_market_row(row) for row in csv.DictReader(handle)}


RULES = seed_rules()
US, CN = RULES["us"], RULES["cn"]
CN_LIMITS = (10.0, 20.0, 5.0)
CN_LIMIT_SHARES = (0.7, 0.2, 0.1)
LEVELS = np.array([0.0, 0.25, 0.5, 0.75, 1.0])

Inputs = tuple[np.ndarray, np.ndarray, np.ndarray, SeriesRules]


def make_rules(rng: np.random.Generator, n_series: int) -> SeriesRules:
    """Half US, half CN with board limits; equal sleeves of 1 M in the market's currency."""
    is_cn = rng.random(n_series) < 0.5
    limits = rng.choice(CN_LIMITS, p=CN_LIMIT_SHARES, size=n_series)
    return SeriesRules.stack(
        [
            replace(CN, price_limit_pct=float(pct)) if cn else US
            for cn, pct in zip(is_cn, limits, strict=True)
        ]
    )


def make_prices(
    rng: np.random.Generator, rules: SeriesRules, n_sessions: int
) -> tuple[np.ndarray, np.ndarray]:
    """Open and close in cents; CN inside its limits and often at them; holidays, suspensions."""
    n_series = len(rules)
    pct = rules.price_limit_pct
    limited = ~np.isnan(pct)
    open_ = np.empty((n_series, n_sessions), order="F")
    close = np.empty((n_series, n_sessions), order="F")
    last = np.round(np.exp(rng.uniform(np.log(3.0), np.log(300.0), n_series)), 2)
    for t in range(n_sessions):
        up, down = price_limits(last, pct)
        up = np.where(limited, up, np.inf)
        down = np.where(limited, np.maximum(down, 0.01), 0.01)
        gap = np.round(last * np.exp(rng.normal(0.0, 0.015, n_series)), 2)
        draw = rng.random(n_series)
        gap = np.where(limited & (draw < 0.025), up, np.where(limited & (draw > 0.975), down, gap))
        open_[:, t] = np.clip(gap, down, up)
        intraday = np.round(open_[:, t] * np.exp(rng.normal(0.0, 0.02, n_series)), 2)
        close[:, t] = np.clip(intraday, down, up)
        last = close[:, t]
    holidays = np.where(
        limited[:, None], rng.random(n_sessions) < 0.04, rng.random(n_sessions) < 0.04
    )
    missing = holidays | (rng.random((n_series, n_sessions)) < 0.01)
    late = rng.random(n_series) < 0.05
    missing[late, : n_sessions // 4] = True
    open_[missing], close[missing] = np.nan, np.nan
    return open_, close


def make_targets(rng: np.random.Generator, n_series: int, n_sessions: int) -> np.ndarray:
    """LLM-like arms (a target every session, sticky) and rule-like arms (sparse decisions)."""
    fresh = rng.choice(LEVELS, size=(n_series, n_sessions))
    changes = rng.random((n_series, n_sessions)) < 0.2
    changes[:, 0] = True
    steps = np.arange(n_sessions)
    last_change = np.maximum.accumulate(np.where(changes, steps, 0), axis=1)
    sticky = np.take_along_axis(fresh, last_change, axis=1)
    sparse = np.where(rng.random((n_series, n_sessions)) < 0.1, fresh, np.nan)
    llm_like = rng.random(n_series) < 0.5
    return np.asfortranarray(np.where(llm_like[:, None], sticky, sparse))


def make_inputs(n_series: int, n_sessions: int, seed: int = SEED) -> Inputs:
    rng = np.random.default_rng(seed)
    rules = make_rules(rng, n_series)
    open_, close = make_prices(rng, rules, n_sessions)
    return make_targets(rng, n_series, n_sessions), open_, close, rules


def time_vectorised(inputs: Inputs, repeats: int) -> tuple[float, SimulationResult]:
    target, open_, close, rules = inputs
    simulate(target[:2], open_[:2], close[:2], SeriesRules.stack([rules.series(0)] * 2))
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = simulate(*inputs)
        best = min(best, time.perf_counter() - start)
    assert result is not None
    return best, result


def series_major(inputs: Inputs) -> Inputs:
    target, open_, close, rules = inputs
    return (
        np.ascontiguousarray(target),
        np.ascontiguousarray(open_),
        np.ascontiguousarray(close),
        rules,
    )


def time_output_floor(n_series: int, n_sessions: int, repeats: int) -> float:
    """Allocate the ten output arrays and fill them, nothing computed."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        outputs = [np.empty((n_series, n_sessions)) for _ in fields(SimulationResult)]
        for output in outputs:
            output.fill(1.0)
        best = min(best, time.perf_counter() - start)
        del outputs
    return best


FIRST_CALL = f"""
import sys, time
start = time.perf_counter()
sys.path.insert(0, {str(ROOT)!r})
import numpy as np
from backtest.simulation import SeriesRules, TradingRules, simulate
imported = time.perf_counter()
inputs = [np.asfortranarray(np.full((2, 3), value)) for value in (0.5, 10.0, 10.0)]
simulate(*inputs, SeriesRules.stack([TradingRules()] * 2))
print(imported - start, time.perf_counter() - imported)
"""


def time_first_call() -> list[tuple[float, float]]:
    """(import, first call) seconds in a fresh process: numba's cache empty, then filled."""
    timings = []
    with tempfile.TemporaryDirectory() as cache:
        for _ in range(2):
            done = subprocess.run(
                [sys.executable, "-c", FIRST_CALL],
                env={**os.environ, "NUMBA_CACHE_DIR": cache},
                capture_output=True,
                text=True,
                check=True,
            )
            imported, first_call = (float(word) for word in done.stdout.split())
            timings.append((imported, first_call))
    return timings


def time_loop(inputs: Inputs, subset: int, repeats: int) -> tuple[float, list[SimulationResult]]:
    target, open_, close, rules = inputs
    best, results = float("inf"), []
    for _ in range(repeats):
        start = time.perf_counter()
        results = [
            simulate_one_series(target[i], open_[i], close[i], rules.series(i))
            for i in range(subset)
        ]
        best = min(best, time.perf_counter() - start)
    return best, results


def mismatches(result: SimulationResult, references: list[SimulationResult]) -> list[str]:
    """Every (series, output) where the two disagree by more than 1e-9."""
    found = []
    for index, reference in enumerate(references):
        for field in fields(SimulationResult):
            ours = getattr(result, field.name)[index].astype(float)
            theirs = getattr(reference, field.name).astype(float)
            if not np.allclose(ours, theirs, rtol=0.0, atol=1e-9, equal_nan=True):
                found.append(f"series {index}: {field.name}")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument("--sessions", type=int, default=252)
    parser.add_argument("--subset", type=int, default=500, help="series timed in the loop")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    inputs = make_inputs(args.series, args.sessions)
    subset = min(args.subset, args.series)
    vector_s, result = time_vectorised(inputs, args.repeats)
    c_order_s, _ = time_vectorised(series_major(inputs), args.repeats)
    loop_s, references = time_loop(inputs, subset, args.repeats)
    floor_s = time_output_floor(args.series, args.sessions, args.repeats)
    start = time.perf_counter()
    trips = round_trips(result)
    trips_s = time.perf_counter() - start
    (import_s, compile_s), (_, cached_s) = time_first_call()

    loop_rate = subset / loop_s
    print(f"{args.series} series x {args.sessions} sessions (seed {SEED})")
    print(
        f"  trades {int((result.traded_shares != 0).sum()):,}, "
        f"limit-blocked orders {int(result.limit_blocked.sum()):,}, "
        f"closed round trips {len(trips):,}"
    )
    print(f"{'implementation':<40} {'seconds':>8} {'series/s':>10} {'vs loop':>8}")
    for label, seconds, count in (
        ("simulate, session-major inputs", vector_s, args.series),
        ("simulate, series-major inputs", c_order_s, args.series),
        (f"loop, {subset} series timed", loop_s, subset),
    ):
        rate = count / seconds
        print(f"{label:<40} {seconds:>8.3f} {rate:>10,.0f} {rate / loop_rate:>7,.0f}x")
    speed_up = args.series / vector_s / loop_rate
    verdict = "met" if speed_up >= TARGET_SPEED_UP else "NOT met"
    print(f"speed-up {speed_up:,.0f}x, target >= {TARGET_SPEED_UP}x: {verdict}")
    print(f"  loop scaled to {args.series} series: {loop_s * args.series / subset:.1f} s")
    print(f"  output floor (allocate + fill 15 outputs, no compute): {floor_s:.3f} s")
    print(f"  round_trips on all series: {trips_s:.3f} s")
    print(
        f"  first call in a fresh process: {compile_s:.2f} s compiling (cache empty), "
        f"{cached_s:.2f} s loading numba's cache; import {import_s:.2f} s"
    )
    wrong = mismatches(result, references)
    if wrong:
        print(f"!!! MISMATCH in {len(wrong)} outputs, e.g. {wrong[:5]}")
        return 1
    print(f"agreement: the first {subset} series match the loop to 1e-9 in every output")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
