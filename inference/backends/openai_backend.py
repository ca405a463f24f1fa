"""The `openai` backend: any OpenAI-compatible chat-completions server (DESIGN §7).

vLLM, SGLang, llama.cpp, Ollama or api.openai.com; one or several replicas. The policy lives
here and is the same whichever transport carries the bytes (`inference.backends.transport`):

- Sharing: each attempt goes to the least busy base URL (fewest requests in flight, ties taken
  in turn), so replicas share the load; a retry goes to another replica when there is one.
- Body: `model`, `messages`, the request's sampling parameters as given (temperature, top_p,
  max_tokens, seed, and server extras such as top_k), `response_format` from
  `inference.decision.response_format()` when the request asks for `json_schema`, and
  `chat_template_kwargs: {"enable_thinking": request.reasoning}` (the switch Qwen3-style chat
  templates in vLLM and SGLang read; other templates ignore it) unless `thinking_switch=False`.
- Fallbacks: a 4xx whose body says the server cannot do structured output (mentions
  response_format, json_schema, guided decoding) or does not know `chat_template_kwargs` makes
  the backend resend at once without that part, and remember it for that base URL so later
  requests skip it. The answer is then asked for by the prompt alone (the parser copes); the
  fallback is logged as a warning, and Response fields are unchanged.
- Retries: 429 (Retry-After honoured, seconds or HTTP-date), 5xx, time-outs, connection errors
  and malformed 2xx bodies (not JSON, no choices) are retried with exponential backoff and full
  jitter, up to `max_attempts` attempts in all; any other 4xx is a recorded failure at once.
  Empty content is not retried: it is a Response with text "" (the parser marks it failed).
  A request that never succeeds is a Response with text None, `error`, `error_class` and
  `attempts` set.
- Unreachable servers: a base URL whose last `unreachable_after` connection attempts in a row
  all failed to connect (refused, no route, DNS) is given up for the rest of the backend's
  life; when every base URL is given up, each request still waiting fails at once with
  error_class `unreachable`, so a closed port costs about a second, not every request's
  retries with backoff.
- Secrets: the API key is read from the environment (`api_key_env`) when `run` starts and is
  given only to the transport's request headers; "EMPTY" (what vLLM accepts) when unset. It is
  scrubbed from every error text and is in no log line, Response or repr.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import logging
import os
import random
import re
import time
from collections.abc import AsyncIterator, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from inference.backends.base import Response
from inference.backends.transport import (
    ChatTransport,
    ConnectionFailed,
    HTTPStatusError,
    LeanTransport,
    MalformedBody,
    OpenAISDKTransport,
    TransportError,
    TransportTimeout,
)
from inference.decision import response_format
from inference.requests import ChatRequest

log = logging.getLogger(__name__)

TransportName = Literal["openai", "lean"]
DUMMY_API_KEY = "EMPTY"
_ERROR_EXCERPT_CHARS = 300
# What a server's 4xx says when it cannot handle an optional part of the body.
_REJECTION_MARKERS: dict[str, tuple[str, ...]] = {
    "response_format": ("response_format", "json_schema", "guided", "structured output"),
    "chat_template_kwargs": ("chat_template_kwargs", "enable_thinking"),
}
_THINK_BLOCK = re.compile(r"^\s*(?:<think>)?(.*?)</think>", re.DOTALL)


@dataclass(frozen=True)
class _Failure:
    """One failed attempt, classified."""

    message: str
    retryable: bool
    error_class: str  # one of inference.backends.base.ERROR_CLASSES
    delay_s: float | None = None  # a wait the server asked for (Retry-After); None: backoff
    immediate: bool = False  # resend at once: a fallback changed the body


@dataclass(frozen=True)
class Completion:
    text: str
    reasoning: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    reasoning_tokens: int | None
    finish_reason: str | None

    def response(
        self, request_hash: str, backend: str, attempts: int = 1, latency_ms: float | None = None
    ) -> Response:
        return Response(
            request_hash=request_hash,
            backend=backend,
            text=self.text,
            reasoning=self.reasoning,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            reasoning_tokens=self.reasoning_tokens,
            latency_ms=latency_ms,
            finish_reason=self.finish_reason,
            attempts=attempts,
        )


@dataclass(frozen=True)
class _Run:
    """What one `run` call holds: its transport and the key to scrub from error texts."""

    transport: ChatTransport
    secret: str | None  # None when the dummy key is used

    def __repr__(self) -> str:
        return f"_Run(transport={self.transport!r})"

    def scrub(self, text: str) -> str:
        return text.replace(self.secret, "***") if self.secret else text


class OpenAIBackend:
    """Chat completions against OpenAI-compatible servers, with retries and fallbacks.

    `transport="lean"` (the default) uses a minimal asyncio HTTP/1.1 client that keeps up with
    hundreds of requests in flight on a small machine; `"openai"` uses the `openai` package's
    AsyncOpenAI, the reference client. Both send the same JSON and give the same Responses.
    `seed` makes the backoff jitter reproducible (tests).
    """

    name = "openai"

    def __init__(
        self,
        base_urls: Sequence[str],
        *,
        api_key_env: str | None = "OPENAI_API_KEY",
        concurrency: int = 16,
        timeout_s: float = 60.0,
        max_attempts: int = 6,
        backoff_base_s: float = 0.5,
        backoff_cap_s: float = 30.0,
        max_retry_after_s: float = 120.0,
        unreachable_after: int = 3,
        seed: int | None = None,
        transport: TransportName = "lean",
        thinking_switch: bool = True,
    ) -> None:
        if not base_urls:
            raise ValueError("OpenAIBackend needs at least one base URL")
        if concurrency < 1 or max_attempts < 1 or timeout_s <= 0:
            raise ValueError("concurrency and max_attempts must be >= 1, timeout_s > 0")
        bad = [url for url in base_urls if not url.startswith(("http://", "https://"))]
        if bad:
            raise ValueError(f"base URLs must start with http:// or https://: {bad}")
        if transport not in ("openai", "lean"):
            raise ValueError(f"unknown transport {transport!r}: use 'openai' or 'lean'")
        self.base_urls = [url.rstrip("/") for url in base_urls]
        self.api_key_env = api_key_env
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.max_attempts = max_attempts
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.max_retry_after_s = max_retry_after_s
        self.unreachable_after = unreachable_after
        self.transport = transport
        self.thinking_switch = thinking_switch
        self._rng = random.Random(seed)
        self._kept: _Run | None = None  # a transport kept open across `run` calls
        self._in_flight = dict.fromkeys(self.base_urls, 0)
        self._dropped: dict[str, set[str]] = {url: set() for url in self.base_urls}
        self._connect_failures = dict.fromkeys(self.base_urls, 0)  # in a row, per base URL
        self._unreachable: set[str] = set()
        self._turn = 0

    def __repr__(self) -> str:
        return (
            f"OpenAIBackend(base_urls={self.base_urls!r}, transport={self.transport!r}, "
            f"concurrency={self.concurrency}, max_attempts={self.max_attempts})"
        )

    @property
    def unreachable(self) -> frozenset[str]:
        """The base URLs given up because they refused every connection in a row."""
        return frozenset(self._unreachable)

    def skipped_features(self, base_url: str) -> frozenset[str]:
        """The optional body parts this backend no longer sends to `base_url` (fallbacks)."""
        return frozenset(self._dropped[base_url.rstrip("/")])

    # --- running ---------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def kept_connections(self) -> AsyncIterator[OpenAIBackend]:
        """Keep one transport (and its open connections) for every `run` inside: a caller
        that sends one batch per decision date does not reconnect for each date."""
        self._kept = self._start_run()
        try:
            yield self
        finally:
            kept, self._kept = self._kept, None
            await kept.transport.aclose()

    async def run(self, requests: Sequence[ChatRequest]) -> AsyncIterator[Response]:
        """Yield one Response per request as each completes, at most `concurrency` in flight."""
        pending = list(requests)
        if not pending:
            return
        context = self._kept or self._start_run()
        results: asyncio.Queue[Response] = asyncio.Queue()
        feed = iter(pending)

        async def worker() -> None:
            for request in feed:  # the workers share one iterator: each takes the next request
                results.put_nowait(await self._complete(request, context))

        n_workers = min(self.concurrency, len(pending))
        workers = [asyncio.create_task(worker()) for _ in range(n_workers)]
        try:
            for _ in pending:
                yield await results.get()
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            if context is not self._kept:
                await context.transport.aclose()

    def _start_run(self) -> _Run:
        secret = os.environ.get(self.api_key_env) if self.api_key_env else None
        key = secret or DUMMY_API_KEY
        transport: ChatTransport
        if self.transport == "lean":
            transport = LeanTransport(key)
        else:
            transport = OpenAISDKTransport(
                key, timeout_s=self.timeout_s, max_connections=self.concurrency
            )
        return _Run(transport, secret or None)

    async def _complete(self, request: ChatRequest, context: _Run) -> Response:
        """Never raises (but for cancellation): every request ends as a Response."""
        try:
            return await self._attempts(request, context)
        except Exception as exc:
            message = context.scrub(f"internal error: {exc.__class__.__name__}: {exc}")
            log.error("request %s failed: %s", request.hash[:12], message)
            return Response(
                request.hash, self.name, text=None, error=message, error_class="internal"
            )

    async def _attempts(self, request: ChatRequest, context: _Run) -> Response:
        failure = _Failure("no attempt made", retryable=False, error_class="internal")
        attempt, url = 0, None
        for attempt in range(1, self.max_attempts + 1):
            if len(self._unreachable) == len(self.base_urls):
                failure = self._unreachable_failure()
                attempt -= 1  # this attempt was not made
                break
            url = self._pick_url(avoid=url)
            body = self._body(request, url)
            self._in_flight[url] += 1
            started = time.perf_counter()
            try:
                async with asyncio.timeout(self.timeout_s):
                    payload = await context.transport.post_chat(url, body)
                completion = parse_completion(payload)
            except (TransportError, TimeoutError) as exc:
                failure = self._classify(exc, url, body, context)
            else:
                self._connect_failures[url] = 0
                latency_ms = (time.perf_counter() - started) * 1000.0
                return completion.response(
                    request.hash, self.name, attempts=attempt, latency_ms=latency_ms
                )
            finally:
                self._in_flight[url] -= 1
            log.info(
                "request %s attempt %d/%d at %s: %s",
                request.hash[:12], attempt, self.max_attempts, url, failure.message,
            )  # fmt: skip
            if not failure.retryable or attempt == self.max_attempts:
                break
            if not failure.immediate:
                await asyncio.sleep(self._delay(failure, attempt))
        word = "attempt" if attempt == 1 else "attempts"
        error = (
            f"gave up after {attempt} {word}: {failure.message}"
            if attempt
            else f"not sent: {failure.message}"
        )
        # Info, not warning: the caller sums failures up by class (one line, not one per request).
        log.info("request %s failed: %s", request.hash[:12], error)
        return Response(
            request.hash,
            self.name,
            text=None,
            attempts=attempt,
            error=error,
            error_class=failure.error_class,
        )

    def _unreachable_failure(self) -> _Failure:
        urls = ", ".join(sorted(self._unreachable))
        return _Failure(
            f"no server answers: {urls} refused {self.unreachable_after} connections in a row "
            "(is the server running, and is the URL right?)",
            retryable=False,
            error_class="unreachable",
        )

    # --- requests --------------------------------------------------------------------------

    def _pick_url(self, avoid: str | None = None) -> str:
        """The base URL with fewest requests in flight, ties in turn; a retry avoids the URL
        that just failed when there is another. Unreachable URLs are left out."""
        urls = [url for url in self.base_urls if url not in self._unreachable]
        if len(urls) == 1:
            return urls[0]
        self._turn = (self._turn + 1) % len(urls)
        order = [url for url in urls[self._turn :] + urls[: self._turn] if url != avoid]
        return min(order, key=self._in_flight.__getitem__)

    def _body(self, request: ChatRequest, url: str) -> dict[str, Any]:
        """The JSON body for one attempt at `url` (its fallbacks applied)."""
        return request_body(request, self._dropped[url], self.thinking_switch)

    # --- failures --------------------------------------------------------------------------

    def _classify(self, exc: Exception, url: str, body: dict[str, Any], context: _Run) -> _Failure:
        if isinstance(exc, HTTPStatusError):
            return self._status_failure(exc, url, body, context)
        if isinstance(exc, TimeoutError | TransportTimeout):
            return _Failure(
                f"timed out after {self.timeout_s:g} s", retryable=True, error_class="timeout"
            )
        if isinstance(exc, MalformedBody):
            return _Failure(
                f"malformed response: {exc}", retryable=True, error_class="malformed_response"
            )
        if isinstance(exc, ConnectionFailed) and exc.connecting:
            self._connect_failures[url] += 1
            if self._connect_failures[url] >= self.unreachable_after:
                if url not in self._unreachable:
                    log.warning(
                        "%s refused %d connections in a row: given up",
                        url,
                        self._connect_failures[url],
                    )
                self._unreachable.add(url)
        return _Failure(
            context.scrub(f"connection error: {exc}"), retryable=True, error_class="connection"
        )

    def _status_failure(
        self, exc: HTTPStatusError, url: str, body: dict[str, Any], context: _Run
    ) -> _Failure:
        message = context.scrub(f"HTTP {exc.status}: {_excerpt(exc.text)}")
        if exc.status == 429 or exc.status >= 500:
            return _Failure(
                message,
                retryable=True,
                error_class="http_error",
                delay_s=_retry_after_s(exc.retry_after),
            )
        if 400 <= exc.status < 500:
            rejected = _rejected_features(exc.text, body)
            if rejected:
                self._drop(url, rejected, exc.status)
                return _Failure(message, retryable=True, error_class="http_error", immediate=True)
        return _Failure(message, retryable=False, error_class="http_error")

    def _drop(self, url: str, features: set[str], status: int) -> None:
        new = features - self._dropped[url]
        if new:
            self._dropped[url] |= new
            log.warning(
                "%s rejected %s (HTTP %d): sending requests to it without from now on "
                "(JSON asked for by the prompt only)",
                url, ", ".join(sorted(new)), status,
            )  # fmt: skip

    def _delay(self, failure: _Failure, attempt: int) -> float:
        """Seconds to wait before the next attempt: the server's wish, else full jitter."""
        if failure.delay_s is not None:
            return min(failure.delay_s, self.max_retry_after_s)
        ceiling = min(self.backoff_cap_s, self.backoff_base_s * 2 ** (attempt - 1))
        return self._rng.uniform(0.0, ceiling)


# --- pure helpers ---------------------------------------------------------------------------


_RESPONSE_FORMAT = response_format()  # built once; bodies are only serialised, never mutated


def request_body(
    request: ChatRequest, skipped: Collection[str] = (), thinking_switch: bool = True
) -> dict[str, Any]:
    """The chat-completions JSON body of a request (also the body of an OpenAI batch line)."""
    body: dict[str, Any] = {"model": request.model, "messages": request.message_dicts()}
    body.update(request.sampling)
    if request.output_format == "json_schema" and "response_format" not in skipped:
        body["response_format"] = _RESPONSE_FORMAT
    if thinking_switch and "chat_template_kwargs" not in skipped:
        kwargs = dict(body.get("chat_template_kwargs") or {})
        kwargs["enable_thinking"] = request.reasoning
        body["chat_template_kwargs"] = kwargs
    return body


def parse_completion(payload: Any) -> Completion:
    """The parts of a chat completion a Response keeps; MalformedBody when it is not one."""
    if not isinstance(payload, dict):
        raise MalformedBody("response is not a JSON object")
    choices = payload.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise MalformedBody("response has no choices")
    message = choices[0].get("message")
    if not isinstance(message, dict):
        raise MalformedBody("the first choice has no message")
    text = _content_text(message.get("content"))
    reasoning = (
        _nonempty_str(message.get("reasoning_content"))
        or _nonempty_str(message.get("reasoning"))
        or _think_block(text)
    )
    usage = payload.get("usage") if isinstance(payload.get("usage"), dict) else {}
    details = usage.get("completion_tokens_details")
    details = details if isinstance(details, dict) else {}
    finish = choices[0].get("finish_reason")
    return Completion(
        text=text,
        reasoning=reasoning,
        prompt_tokens=_int_or_none(usage.get("prompt_tokens")),
        completion_tokens=_int_or_none(usage.get("completion_tokens")),
        reasoning_tokens=_int_or_none(details.get("reasoning_tokens")),
        finish_reason=finish if isinstance(finish, str) else None,
    )


def _content_text(content: Any) -> str:
    """Message content as text: null is "", a list of text parts is joined."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    raise MalformedBody("message content is neither text nor text parts")


def _think_block(text: str) -> str | None:
    """The reasoning in a leading <think>...</think> block (the opening tag may sit in the
    prompt, as with DeepSeek-R1 templates, so only the closing one is required)."""
    if "</think>" not in text:
        return None
    match = _THINK_BLOCK.match(text)
    return (match.group(1).strip() or None) if match else None


def _nonempty_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _excerpt(text: str) -> str:
    """The error message of a JSON error body, or the start of the raw body, on one line."""
    flat = " ".join((_error_message(text) or text).split())
    if len(flat) > _ERROR_EXCERPT_CHARS:
        flat = flat[:_ERROR_EXCERPT_CHARS] + "..."
    return flat or "(empty body)"


def _error_message(text: str) -> str | None:
    """`error.message` (OpenAI, vLLM), `message` or `detail` (FastAPI) of a JSON error body."""
    try:
        decoded = json.loads(text)
    except ValueError:
        return None
    if not isinstance(decoded, dict):
        return None
    error = decoded.get("error")
    if isinstance(error, dict):
        error = error.get("message")
    candidate = error or decoded.get("message") or decoded.get("detail")
    return candidate if isinstance(candidate, str) else None


def _rejected_features(text: str, body: dict[str, Any]) -> set[str]:
    """The optional body parts a 4xx body says the server cannot handle."""
    lowered = text.lower()
    return {
        feature
        for feature, markers in _REJECTION_MARKERS.items()
        if feature in body and any(marker in lowered for marker in markers)
    }


def _retry_after_s(value: str | None) -> float | None:
    """Retry-After as seconds from now: a number of seconds or an HTTP-date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
