"""The decision a model is asked to return, defined once (DESIGN §7).

Three views of the same contract live here so they cannot drift apart:

- `Decision`, the pydantic model of a clean answer (used to validate and in tests);
- `DECISION_JSON_SCHEMA` / `response_format()`, what is sent to servers that support
  structured output (OpenAI-style ``json_schema`` with ``strict: true``);
- `ParsedDecision`, what `inference.parsing.parse_decision` returns for *any* model text,
  including answers it had to repair or could not parse (then ``status == "failed"`` and
  every decision field is None: a failure is never turned into a silent "hold").

The wire schema keeps to the subset of JSON Schema that strict structured-output servers
accept (every property required, nullable instead of optional, ``additionalProperties:
false``, no numeric or length bounds): the bounds are stated in the descriptions, enforced
by `Decision`, and checked again by the parser, which never clips a value into range.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ACTIONS: tuple[str, ...] = ("buy", "sell", "hold")
RULES: tuple[str, ...] = ("S1", "S2", "S3", "S4")
# The alignment modes (DESIGN §1); prompts, parsing and the guardrail all use this tuple.
MODES: tuple[str, ...] = ("free", "guided", "strict")
PARSE_STATUSES: tuple[str, ...] = ("ok", "repaired", "failed")
REASON_MAX_CHARS = 2000

Action = Literal["buy", "sell", "hold"]
Rule = Literal["S1", "S2", "S3", "S4"]
ParseStatus = Literal["ok", "repaired", "failed"]


class Decision(BaseModel):
    """A clean answer exactly as the prompt asks for it."""

    model_config = ConfigDict(extra="forbid")

    action: Action
    target_exposure: float = Field(ge=0.0, le=1.0)
    confidence: float = Field(ge=0.0, le=1.0)
    rule: Rule | None
    reason: str = Field(max_length=REASON_MAX_CHARS)


DECISION_JSON_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "action": {
            "type": "string",
            "enum": list(ACTIONS),
            "description": "buy raises, sell lowers, hold keeps the position.",
        },
        "target_exposure": {
            "type": "number",
            "description": "Target share of the sleeve's capital in the stock, from 0 to 1.",
        },
        "confidence": {
            "type": "number",
            "description": "Confidence in this decision, from 0 to 1.",
        },
        "rule": {
            "type": ["string", "null"],
            "enum": [*RULES, None],
            "description": "The strategy rule followed (S1-S4), or null when none.",
        },
        "reason": {
            "type": "string",
            "description": f"Short justification, at most {REASON_MAX_CHARS} characters.",
        },
    },
    "required": ["action", "target_exposure", "confidence", "rule", "reason"],
    "additionalProperties": False,
}


def response_format() -> dict[str, Any]:
    """The ``response_format`` argument for OpenAI-compatible chat completions.

    A fresh copy each call, so a caller that edits it cannot change the shared schema.
    """
    return {
        "type": "json_schema",
        "json_schema": {
            "name": "decision",
            "schema": copy.deepcopy(DECISION_JSON_SCHEMA),
            "strict": True,
        },
    }


@dataclass(frozen=True, slots=True)
class ParsedDecision:
    """The result of parsing one model answer.

    ``ok``: a clean JSON object matching `Decision` was the answer. ``repaired``: usable after
    documented fixes (see `inference.parsing`). ``failed``: unusable; ``error`` says why and
    all decision fields are None.
    """

    action: str | None
    target_exposure: float | None
    confidence: float | None
    rule: str | None
    reason: str | None
    status: ParseStatus
    error: str | None = None

    @classmethod
    def failed(cls, error: str) -> ParsedDecision:
        return cls(None, None, None, None, None, "failed", error)
