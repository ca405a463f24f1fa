"""Deterministic rule agents, one per mode: the offline default and a reference, NOT an LLM.

They answer in the same JSON as a model, so their output goes through the same parser and
guardrail. A position-aware agent also reads its book (`holding`): it leaves a position alone
when the change it would make is small, sells only what it holds and follows the attitude's
stop-loss; a blind one (holding None) answers from the snapshot alone. Confidence carries a
small jitter seeded by (replicate, market, ticker, date) so replicates differ reproducibly.

The `random` agent is the guardrail's control, NOT an LLM and no strategy: each day it proposes
a random action, target and cited rule, seeded by (arm, market, ticker, date) so reruns agree.
Run in Strict mode, only the proposals the guardrail lets through trade, so its results are
what the filter alone does to random decisions.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from inference.attitudes import Attitude
from inference.backends.base import Response
from inference.book import Holding
from inference.guardrail import stop_loss_reached
from inference.requests import ChatRequest
from inference.strategies import RULE_IDS

NAME = "reference"
RANDOM_NAME = "random"
ACTIONS = ("buy", "sell", "hold")
_REFERENCE_TAG = "[reference rule agent, not an LLM]"
_RANDOM_TAG = "[random control, not an LLM]"


@dataclass(frozen=True)
class DecisionContext:
    """What a rule agent reads instead of the messages: the snapshot and the arm's settings."""

    snapshot: Mapping[str, Any]
    mode: str
    attitude: Attitude | None
    replicate: int = 0
    holding: Holding | None = None  # the book after the previous session (aware agents only)
    arm: str = ""  # the arm's slug: what seeds the random agent


def _jitter(context: DecisionContext) -> float:
    s = context.snapshot
    key = f"{context.replicate}|{s['market']}|{s['ticker']}|{s['decision_date']}"
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF * 0.1 - 0.05


def _firing(signals: Mapping[str, bool], side: str) -> list[str]:
    return [rule for rule in RULE_IDS if signals.get(f"{rule.lower()}_{side}")]


def _answer(
    action: str,
    exposure: float,
    confidence: float,
    rule: str | None,
    reason: str,
    tag: str = _REFERENCE_TAG,
):
    return {
        "action": action,
        "target_exposure": round(min(max(exposure, 0.0), 1.0), 4),
        "confidence": round(min(max(confidence, 0.0), 1.0), 4),
        "rule": rule,
        "reason": f"{tag} {reason}",
    }


# An aware agent leaves its position alone unless the exposure it wants differs by this much.
REBALANCE_BAND = 0.1


def decide(context: DecisionContext) -> dict[str, Any]:
    features = context.snapshot.get("features") or {}
    signals = context.snapshot.get("signals") or {}
    ceiling = context.attitude.max_exposure if context.attitude else 1.0
    jitter = _jitter(context)
    holding = context.holding
    if stop_loss_reached(holding, context.attitude):
        return _answer("sell", 0.0, 0.8 + jitter, None, "stop-loss reached")
    if context.mode == "free":
        # Trend judgement from returns alone: more momentum, more exposure.
        momentum = (features.get("ret_20d") or 0.0) + 0.5 * (features.get("ret_5d") or 0.0)
        exposure = min(max(0.5 + 4.0 * momentum, 0.0), ceiling)
        confidence = 0.5 + min(abs(momentum) * 3.0, 0.4) + jitter
        reason = f"20/5-session momentum {momentum:+.3f}"
        if holding is not None and abs(exposure - holding.exposure) < REBALANCE_BAND:
            return _answer("hold", holding.exposure, confidence, None, f"{reason}; on target")
        # against the book (outside the band, so never equal), else the blind midpoint
        level = holding.exposure if holding is not None else 0.5
        action = "buy" if exposure >= level else "sell"
        return _answer(action, exposure, confidence, None, reason)
    entries, exits = _firing(signals, "entry"), _firing(signals, "exit")
    if holding is not None and not holding.held:
        exits = []  # exit rules apply to what is held
    return _settled(_ruled(context, entries, exits, ceiling, jitter), holding)


def _settled(answer: dict[str, Any], holding: Holding | None) -> dict[str, Any]:
    """An aware agent does not top up a position already near the exposure it wants."""
    if (
        holding is not None
        and answer["action"] == "buy"
        and holding.exposure >= answer["target_exposure"] - REBALANCE_BAND
    ):
        return {**answer, "action": "hold", "rule": None, "reason": answer["reason"] + "; held"}
    return answer


def _ruled(
    context: DecisionContext,
    entries: list[str],
    exits: list[str],
    ceiling: float,
    jitter: float,
) -> dict[str, Any]:
    if context.mode == "guided":
        # Follow the trend rule, size up on a breakout, step aside when the trend exits.
        if "S2" in exits and "S1" not in entries:
            return _answer("sell", 0.0, 0.7 + jitter, "S2", "trend exit")
        if entries:
            exposure = ceiling if "S1" in entries else 0.7 * ceiling
            return _answer(
                "buy",
                exposure,
                0.6 + 0.1 * len(entries) + jitter,
                entries[0],
                f"entries {','.join(entries)}",
            )
        return _answer("hold", 0.5 * ceiling, 0.5 + jitter, None, "no rule fires")
    # strict: trade only on a firing rule, and cite it.
    if entries:
        return _answer("buy", ceiling, 0.6 + jitter, entries[0], f"entry {entries[0]} fires")
    if exits:
        return _answer("sell", 0.0, 0.6 + jitter, exits[0], f"exit {exits[0]} fires")
    return _answer("hold", 0.0, 0.5 + jitter, None, "no rule fires")


def decide_random(context: DecisionContext) -> dict[str, Any]:
    """A random proposal: action, target (up to the attitude's ceiling) and a cited rule, drawn
    from a hash of (arm, market, ticker, date). Position-aware: with nothing held it does not
    propose a sale."""
    s = context.snapshot
    key = f"{context.arm}|{s['market']}|{s['ticker']}|{s['decision_date']}"
    draw = hashlib.sha256(key.encode()).digest()
    ceiling = context.attitude.max_exposure if context.attitude else 1.0
    holding = context.holding
    actions = ("buy", "hold") if holding is not None and not holding.held else ACTIONS
    action = actions[draw[0] % len(actions)]
    target = {"buy": ceiling * (1 + draw[1]) / 256, "sell": ceiling * draw[1] / 256}.get(
        action, holding.exposure if holding is not None else 0.0
    )
    rule = RULE_IDS[draw[2] % len(RULE_IDS)] if action != "hold" else None
    reason = f"random proposal {draw[:4].hex()}"
    return _answer(action, target, draw[3] / 255, rule, reason, _RANDOM_TAG)


class ReferenceBackend:
    """The rule agents' backend; `RandomBackend` the control's."""

    name = NAME

    def __init__(self, contexts: Mapping[str, DecisionContext]) -> None:
        self._contexts = contexts

    def answer(self, context: DecisionContext) -> dict[str, Any]:
        return decide(context)  # looked up when called, so a test may patch `decide`

    async def run(self, requests: Sequence[ChatRequest]) -> AsyncIterator[Response]:
        for request in requests:
            context = self._contexts.get(request.hash)
            if context is None:
                yield Response(
                    request.hash,
                    self.name,
                    None,
                    error="no decision context for request",
                    error_class="no_context",
                )
                continue
            text = json.dumps(self.answer(context))
            yield Response(request.hash, self.name, text, latency_ms=0.0, finish_reason="stop")


class RandomBackend(ReferenceBackend):
    name = RANDOM_NAME

    def answer(self, context: DecisionContext) -> dict[str, Any]:
        return decide_random(context)
