"""Target exposures per (arm, ticker, session): what the simulation executes (DESIGN §8).

An LLM arm's row in `llm_decisions` states the exposure that stands after its answer
(`target_exposure`, the guardrail already applied) and the exposure before it
(`previous_exposure`, the arm's nominal position). The backtest trades only when the two
differ: a hold, a repeated buy at the current exposure, a decision the guardrail overrode and
a decision that failed to parse all keep the shares (NaN target) rather than rebalancing by
lots as prices drift. Parse failures are counted in `backtest_metrics.parse_failure_rate`.

Baseline arms (not LLMs) are computed here from the same inputs: `buy_and_hold`, the rule-only
arms `S1`..`S4` from the snapshots' signals (the one SQL definition of the rules), and a seeded
`random` arm.

Universe membership (the universe's optional member_from / member_to, inclusive) bounds every
arm: a ticker has no snapshot, hence no decision, outside it, and a position still held when
membership ends is sold at the open of the first session after member_to (target 0 from that
session on, so a session without a bar or at a CN limit-down only delays the sale).
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from backtest.baselines import buy_and_hold, random_targets, rule_only

STRATEGY_ARMS = ("S1", "S2", "S3", "S4")
BASELINE_ARMS = ("buy_and_hold", *STRATEGY_ARMS, "random")
TARGET_TOLERANCE = 1e-9  # exposures are written as floats; closer than this is "unchanged"


def decision_targets(decisions: pd.DataFrame) -> pd.Series:
    """The target each decision row executes: NaN (keep the shares) unless it changes the
    exposure and parsed. Indexed like `decisions`."""
    target = decisions["target_exposure"].astype("float64")
    previous = decisions["previous_exposure"].astype("float64").fillna(0.0)
    unchanged = (target - previous).abs() <= TARGET_TOLERANCE
    failed = decisions["parse_status"].eq("failed")
    return target.mask(unchanged | failed | target.isna())


def baseline_targets(
    arm: str,
    has_bar: np.ndarray,
    signals: dict[str, np.ndarray],
    seed: int | list[int],
) -> np.ndarray:
    """(n_tickers, n_sessions) targets of one baseline arm on a market's session axis.

    `signals` maps "s1_entry", "s1_exit", ... to boolean matrices of the snapshots (False
    where a ticker has no snapshot). The random arm draws only on sessions with a bar.
    """
    if arm == "buy_and_hold":
        return buy_and_hold(has_bar)
    if arm in STRATEGY_ARMS:
        name = arm.lower()
        return rule_only(signals[f"{name}_entry"], signals[f"{name}_exit"])
    if arm == "random":
        return np.where(has_bar, random_targets(has_bar.shape, seed), np.nan)
    raise ValueError(f"unknown baseline arm {arm!r}; expected one of {', '.join(BASELINE_ARMS)}")


def membership(
    universe: pd.DataFrame, tickers: pd.Index, sessions: pd.DatetimeIndex
) -> tuple[np.ndarray, np.ndarray]:
    """Two (n_tickers, n_sessions) masks: `member`, the ticker is an index member on the
    session (member_from <= session <= member_to, an empty or absent bound open-ended), and
    `after`, the session is past its member_to. A ticker missing from `universe` is an
    error, never silently a member."""
    missing = tickers.difference(pd.Index(universe["ticker"]))
    if len(missing):
        raise ValueError(f"membership: ticker(s) {', '.join(map(str, missing))} not in universe")
    bounds = universe.set_index("ticker").reindex(tickers)
    days = sessions.to_numpy(dtype="datetime64[D]")[None, :]

    def bound(column: str) -> np.ndarray:
        if column not in bounds:  # a universe ingested before the column existed
            return np.full((len(tickers), 1), np.datetime64("NaT"), dtype="datetime64[D]")
        values = bounds[column].map(lambda day: day.isoformat() if isinstance(day, date) else day)
        return pd.to_datetime(values).to_numpy(dtype="datetime64[D]")[:, None]

    joined, left = bound("member_from"), bound("member_to")
    after = ~np.isnat(left) & (days > left)
    member = (np.isnat(joined) | (days >= joined)) & ~after
    return member, after


def sell_after_membership(targets: np.ndarray, after: np.ndarray) -> np.ndarray:
    """`targets` with 0.0 on every session past the ticker's membership (`after`, from
    `membership`): what is held is sold at the first such open it can trade at. Before a
    ticker joins nothing is held and its targets stay (there are none: no snapshot, no
    decision)."""
    if targets.shape != after.shape:
        raise ValueError(f"sell_after_membership: targets {targets.shape}, after {after.shape}")
    return np.where(after, 0.0, targets)
