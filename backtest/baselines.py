"""Target matrices of the baseline arms (DESIGN §8), on the simulation's session axis.

Every function returns a float array (n_series, n_sessions) in the convention of
`backtest.simulation.simulate`: a target exposure in 0..1 executed at that session's open, NaN
for "no decision, keep the shares".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

RANDOM_LEVELS = (0.0, 0.5, 1.0)


def buy_and_hold(has_bar: np.ndarray) -> np.ndarray:
    """1.0 on each series' first session with a bar, NaN after (keep the shares forever).

    Keyed on the first bar rather than the first column so that a series that starts trading
    later on the common axis (a listing, the other market's calendar) still buys. The order is
    placed once: a CN stock opening limit-up on that session stays in cash, as it would.
    """
    has_bar = np.asarray(has_bar, dtype=bool)
    target = np.full(has_bar.shape, np.nan)
    trading = np.flatnonzero(has_bar.any(axis=1))
    target[trading, has_bar[trading].argmax(axis=1)] = 1.0
    return target


def _fired(signal: np.ndarray) -> np.ndarray:
    """Booleans from bool, 0/1 or nullable input; a missing signal (NaN/None) did not fire."""
    return np.nan_to_num(np.asarray(signal, dtype=np.float64), nan=0.0) != 0.0


def rule_only(entry: np.ndarray, exit_: np.ndarray) -> np.ndarray:
    """Rule-only arm of one strategy (S1..S4) from its entry and exit signals.

    Signals are those of the decision date's snapshot (computed from data before the session),
    so acting at the same session's open uses nothing from that session. Entry fires -> 1.0;
    exit fires -> 0.0, also when entry fires too (exit wins: the conservative reading of
    conflicting rules); neither -> NaN, keep the position. Signals are events (S2 fires on the
    session its averages cross, not while one stays above the other), so the arm holds what
    an entry bought through the sessions in which nothing fires, until an exit sells it.
    """
    entered, exited = _fired(entry), _fired(exit_)
    if entered.shape != exited.shape:
        raise ValueError(f"rule_only: entry {entered.shape} and exit {exited.shape} differ")
    return np.where(exited, 0.0, np.where(entered, 1.0, np.nan))


def random_targets(
    shape: tuple[int, int], seed: int | Sequence[int], levels: Sequence[float] = RANDOM_LEVELS
) -> np.ndarray:
    """Seeded random arm: each session a uniform choice among `levels` (default 0, 0.5, 1).

    Deterministic by seed (numpy's PCG64 `default_rng`; a sequence such as (seed, market) gives
    independent streams), so the arm is reproducible and several seeds give a spread of luck to
    compare the models against.
    """
    return np.random.default_rng(seed).choice(np.asarray(levels, dtype=np.float64), size=shape)
