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
"""

from __future__ import annotations

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
