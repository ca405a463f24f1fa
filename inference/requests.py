"""A request is an immutable value; sha256 of its canonical JSON is the cache key and the
OpenAI-batch `custom_id` (DESIGN §7). The replicate id keeps sampled calls distinct on purpose.
API keys and endpoints are never part of a request: the same request has the same hash on any
server."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Literal

OutputFormat = Literal["json_schema", "prompt"]


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class ChatRequest:
    model: str  # the model id sent to the server
    messages: tuple[tuple[str, str], ...]  # (role, content) pairs
    sampling: tuple[tuple[str, Any], ...] = ()  # sorted (name, value) pairs, e.g. temperature
    prompt_version: str = ""
    replicate: int = 0
    output_format: OutputFormat = "json_schema"  # structured output, or JSON asked in the prompt
    reasoning: bool = False  # ask the server for a reasoning trace where it supports one
    hash: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "hash", hashlib.sha256(self.canonical().encode()).hexdigest())

    @classmethod
    def build(
        cls,
        model: str,
        messages: list[dict[str, str]],
        sampling: dict[str, Any] | None = None,
        **fields: Any,
    ) -> ChatRequest:
        return cls(
            model=model,
            messages=tuple((m["role"], m["content"]) for m in messages),
            sampling=tuple(sorted((sampling or {}).items())),
            **fields,
        )

    def canonical(self) -> str:
        return canonical_json(
            {
                "model": self.model,
                "messages": [{"role": r, "content": c} for r, c in self.messages],
                "sampling": dict(self.sampling),
                "prompt_version": self.prompt_version,
                "replicate": self.replicate,
                "output_format": self.output_format,
                "reasoning": self.reasoning,
            }
        )

    def message_dicts(self) -> list[dict[str, str]]:
        return [{"role": role, "content": content} for role, content in self.messages]
