"""The Strict guardrail: enforced outside the model, a pure function of its inputs.

The answer is read against the exposure the book holds after the previous session (in every
mode, position-aware or blind): "buy" raises the exposure to the target (never lowers it; it
may add to a holding), "sell" lowers it to the target (never raises it; it may sell part),
"hold" keeps the shares.

In Strict mode a trade stands only when a rule allows it:
- raising the exposure needs a cited strategy whose entry condition holds today;
- lowering it needs a cited strategy whose exit condition holds today, or the attitude's
  stop-loss being reached (then no rule is needed);
- a cited rule must hold today on the side of the action (for a hold, on either side);
- the target may not exceed the attitude's maximum exposure.
Anything else is overridden to the previous exposure and marked `overridden` with the
violation. The attitude's stop-loss is enforced too: when the book's unrealised return (against
its average entry price) has reached -stop_loss and the answer does not sell out, the guardrail
sells out (target 0), `overridden` with the violation. In Free and Guided the stop-loss is
advice in the prompt only. An unparseable decision keeps the previous exposure and is
`overridden` too: it did not demonstrably follow the rules, so it does not count toward
fidelity.
Free and Guided decisions pass through as `not_applicable`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

from inference.attitudes import Attitude
from inference.book import Holding

GuardrailStatus = Literal["pass", "overridden", "not_applicable"]
_TOLERANCE = 1e-9


class DecisionLike(Protocol):
    action: str | None
    target_exposure: float | None
    rule: str | None
    status: str


@dataclass(frozen=True)
class GuardedDecision:
    action: str  # the action that stands: buy | sell | hold
    target_exposure: float
    guardrail_status: GuardrailStatus
    violation: str | None = None


def _fires(signals: Mapping[str, bool], rule: str, side: str) -> bool:
    return bool(signals.get(f"{rule.lower()}_{side}"))


def _override(previous: float, violation: str) -> GuardedDecision:
    return GuardedDecision("hold", previous, "overridden", violation)


def stop_loss_reached(position: Holding | None, attitude: Attitude | None) -> bool:
    """The held position has lost the attitude's stop-loss or more against its entry price."""
    return (
        attitude is not None
        and position is not None
        and position.held
        and position.unrealized_return is not None
        and position.unrealized_return <= -attitude.stop_loss + _TOLERANCE
    )


def _stop_out(position: Holding | None) -> GuardedDecision:
    loss = position.unrealized_return if position is not None else None
    return GuardedDecision(
        "sell",
        0.0,
        "overridden",
        f"stop-loss reached ({(loss or 0.0) * 100:+.1f} % against the entry price): "
        "the guardrail sold out",
    )


def standing_exposure(action: str, target: float, previous: float) -> float:
    """The exposure an answer leads to from the previous one (the same in every mode)."""
    if action == "buy":
        return max(previous, target)
    if action == "sell":
        return min(previous, target)
    return previous


def apply_guardrail(
    decision: DecisionLike,
    mode: str,
    signals: Mapping[str, bool],
    position: Holding | None,
    attitude: Attitude | None,
) -> GuardedDecision:
    previous = position.exposure if position is not None else 0.0
    stop_hit = stop_loss_reached(position, attitude)
    if decision.status == "failed" or decision.action is None or decision.target_exposure is None:
        if mode == "strict" and stop_hit:
            return _stop_out(position)
        status: GuardrailStatus = "overridden" if mode == "strict" else "not_applicable"
        return GuardedDecision("hold", previous, status, "no parseable decision")
    action, rule = decision.action, decision.rule
    exposure = standing_exposure(action, decision.target_exposure, previous)
    if mode != "strict":
        return GuardedDecision(action, exposure, "not_applicable")
    if stop_hit:  # selling out at the stop-loss needs no rule; anything else is sold out
        if exposure <= _TOLERANCE:
            return GuardedDecision("sell", 0.0, "pass")
        return _stop_out(position)

    if attitude is not None and exposure > attitude.max_exposure + _TOLERANCE:
        return _override(
            previous,
            f"target {exposure:.2f} above the {attitude.name} maximum {attitude.max_exposure:.2f}",
        )
    raises, lowers = exposure > previous + _TOLERANCE, exposure < previous - _TOLERANCE
    if action == "buy":
        if rule is None and raises:
            return _override(previous, "buy without citing a rule")
        if rule is not None and not _fires(signals, rule, "entry"):
            return _override(previous, f"buy citing {rule}, whose entry condition does not hold")
    elif action == "sell":
        if rule is None and lowers:
            return _override(previous, "sell without an exit rule or a reached stop-loss")
        if rule is not None and not _fires(signals, rule, "exit"):
            return _override(previous, f"sell citing {rule}, whose exit condition does not hold")
    elif rule is not None and not (_fires(signals, rule, "entry") or _fires(signals, rule, "exit")):
        return _override(previous, f"hold citing {rule}, which does not fire today")
    return GuardedDecision(action, exposure, "pass")
