"""What every backend returns, and the protocol it implements."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from inference.requests import ChatRequest

# Why a request got no answer. `unreachable`: the server refused every connection, so the
# backend stopped trying it; `connection`: a connection failed or broke mid-exchange.
ERROR_CLASSES = (
    "unreachable",
    "connection",
    "timeout",
    "http_error",
    "malformed_response",
    "not_in_batch",
    "batch_error",
    "no_context",
    "internal",
)


@dataclass(frozen=True)
class Response:
    """One request's outcome: the model's text, or a recorded failure (error set, text None)."""

    request_hash: str
    backend: str
    text: str | None
    reasoning: str | None = None  # reasoning trace (vLLM reasoning_content, <think> blocks)
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    reasoning_tokens: int | None = None
    latency_ms: float | None = None
    finish_reason: str | None = None
    attempts: int = 1
    error: str | None = None  # why no usable text came back after all retries
    # The kind of failure, one of ERROR_CLASSES (None when text came back): what a summary
    # counts and a decision row records as its error class.
    error_class: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Backend(Protocol):
    name: str

    def run(self, requests: Sequence[ChatRequest]) -> AsyncIterator[Response]:
        """Yield one Response per request, in completion order, as each completes."""
        ...
