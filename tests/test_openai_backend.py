"""The openai backend against a real local HTTP server (tests/openai_server.py), both transports.

Nothing here mocks the client: faults are scripted on the server and observed on the wire (the
server logs every body it receives), so retries, fallbacks and secrets are checked end to end.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from inference.backends.base import Response
from inference.backends.openai_backend import OpenAIBackend, _Failure, _retry_after_s
from inference.backends.transport import LeanTransport, OpenAISDKTransport
from inference.decision import response_format
from inference.requests import ChatRequest
from tests.openai_server import Fault, OpenAIServer, Rule, default_answer, default_reasoning

TRANSPORTS = ("lean", "openai")
CANARY = "sk-canary-7f3a9c1e5b2d4680"


def request(content: str, **fields) -> ChatRequest:
    sampling = fields.pop("sampling", {"temperature": 0.0, "max_tokens": 64, "seed": 1})
    messages = [{"role": "system", "content": "Decide."}, {"role": "user", "content": content}]
    return ChatRequest.build("test-model", messages, sampling, **fields)


def backend(urls: str | Sequence[str], transport: str = "lean", **options) -> OpenAIBackend:
    options = {"timeout_s": 5.0, "backoff_base_s": 0.01, "backoff_cap_s": 0.05, "seed": 1} | options
    urls = [urls] if isinstance(urls, str) else list(urls)
    return OpenAIBackend(urls, transport=transport, **options)  # type: ignore[arg-type]


def run(engine: OpenAIBackend, requests: Sequence[ChatRequest]) -> list[Response]:
    async def collect() -> list[Response]:
        return [response async for response in engine.run(requests)]

    return asyncio.run(collect())


def expected_text(req: ChatRequest) -> str:
    return default_answer(req.message_dicts())


@pytest.fixture(autouse=True)
def _no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


# --- retries ----------------------------------------------------------------------------------


def test_429_retry_after_is_honoured():
    req = request("rate limited")
    with OpenAIServer(rules=[Rule("rate limited", [Fault.http(429, retry_after="1")])]) as server:
        [response] = run(backend(server.base_url), [req])
        first, second = server.sends_for("rate limited")
    assert response.text == expected_text(req) and response.error is None
    assert response.attempts == 2
    assert second.received_at - first.received_at >= 1.0


def test_retry_after_accepts_seconds_and_http_dates():
    soon = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    assert _retry_after_s("2") == 2.0
    assert 28 <= (_retry_after_s(soon) or 0) <= 30
    assert _retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert _retry_after_s("soon") is None and _retry_after_s(None) is None


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    "fault",
    [Fault.http(500), Fault.http(503), Fault.malformed(), Fault.missing_choices(), Fault.drop()],
    ids=["500", "503", "malformed-json", "missing-choices", "dropped-connection"],
)
def test_transient_failure_then_success(transport: str, fault: Fault):
    req = request("flaky")
    with OpenAIServer(rules=[Rule("flaky", [fault])]) as server:
        [response] = run(backend(server.base_url, transport), [req])
        sends = server.sends_for("flaky")
    assert response.text == expected_text(req) and response.error is None
    assert response.attempts == 2 and len(sends) == 2


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_timeout_then_success(transport: str):
    req = request("slow")
    with OpenAIServer(rules=[Rule("slow", [Fault.sleep(2.0)])]) as server:
        [response] = run(backend(server.base_url, transport, timeout_s=0.3), [req])
        first, second = server.sends_for("slow")
    assert response.text == expected_text(req) and response.attempts == 2
    assert not first.completed and second.completed
    assert response.latency_ms is not None and response.latency_ms < 300


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_permanent_failure_is_recorded_after_max_attempts(transport: str):
    req = request("broken")
    rules = [Rule("broken", [Fault.http(500)], repeat_last=True)]
    with OpenAIServer(rules=rules) as server:
        [response] = run(backend(server.base_url, transport, max_attempts=4), [req])
        sends = server.sends_for("broken")
    assert response.text is None and response.attempts == 4 and len(sends) == 4
    assert response.error is not None
    assert "HTTP 500" in response.error and "scripted failure 500" in response.error


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_other_4xx_is_not_retried(transport: str):
    req = request("forbidden")
    with OpenAIServer(rules=[Rule("forbidden", [Fault.http(403)])]) as server:
        [response] = run(backend(server.base_url, transport), [req])
        sends = server.sends_for("forbidden")
    assert response.text is None and response.attempts == 1 and len(sends) == 1
    assert response.error is not None and "HTTP 403" in response.error


@pytest.mark.parametrize("null_content", [False, True], ids=["empty-string", "null"])
def test_empty_content_is_an_answer_not_a_retry(null_content: bool):
    req = request("speechless")
    rules = [Rule("speechless", [Fault.empty(null_content=null_content)])]
    with OpenAIServer(rules=rules) as server:
        [response] = run(backend(server.base_url), [req])
        sends = server.sends_for("speechless")
    assert response.text == "" and response.error is None and response.finish_reason == "stop"
    assert response.attempts == 1 and len(sends) == 1


def test_backoff_is_full_jitter_and_seedable():
    delays = []
    for _ in range(2):
        engine = OpenAIBackend(["http://x"], backoff_base_s=0.5, backoff_cap_s=4.0, seed=7)
        failure = _Failure("timed out", retryable=True, error_class="timeout")
        delays.append([engine._delay(failure, attempt) for attempt in range(1, 8)])
    assert delays[0] == delays[1]
    ceilings = [min(4.0, 0.5 * 2 ** (attempt - 1)) for attempt in range(1, 8)]
    assert all(0 <= d <= c for d, c in zip(delays[0], ceilings, strict=True))


# --- fallbacks --------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_structured_output_rejection_falls_back_and_is_remembered(transport: str):
    reqs = [request(f"no schema {i}") for i in range(4)]
    with OpenAIServer(structured_output=False) as server:
        engine = backend(server.base_url, transport, concurrency=1)
        responses = run(engine, reqs)
        bodies = server.bodies()
    assert [r.text for r in responses] == [expected_text(r) for r in reqs]
    assert "response_format" in bodies[0]  # asked once, rejected with a 400
    assert all("response_format" not in body for body in bodies[1:])
    assert len(bodies) == len(reqs) + 1  # the only extra send is the fallback's
    assert engine.skipped_features(server.base_url) == {"response_format"}
    assert sorted(r.attempts for r in responses) == [1, 1, 1, 2]


def test_unknown_chat_template_kwargs_is_dropped_for_strict_servers():
    req = request("strict server", reasoning=False)
    with OpenAIServer(strict_params=True) as server:
        engine = backend(server.base_url)
        [response] = run(engine, [req])
        first, second = server.bodies()
    assert response.text == expected_text(req)
    assert first["chat_template_kwargs"] == {"enable_thinking": False}
    assert "chat_template_kwargs" not in second and "response_format" in second
    assert engine.skipped_features(server.base_url) == {"chat_template_kwargs"}


def test_body_carries_sampling_schema_and_thinking_switch():
    structured = request("structured", sampling={"temperature": 0.7, "top_k": 20}, reasoning=True)
    prompted = request("prompted", output_format="prompt")
    with OpenAIServer() as server:
        run(backend(server.base_url, concurrency=1), [structured, prompted])
        first, second = server.bodies()
    assert first == {
        "model": "test-model",
        "messages": structured.message_dicts(),
        "temperature": 0.7,
        "top_k": 20,
        "response_format": response_format(),
        "chat_template_kwargs": {"enable_thinking": True},
    }
    assert "response_format" not in second
    assert second["chat_template_kwargs"] == {"enable_thinking": False}
    no_switch = backend("http://unused", thinking_switch=False)._body(prompted, "http://unused")
    assert "chat_template_kwargs" not in no_switch


# --- capture ----------------------------------------------------------------------------------


@pytest.mark.parametrize("style", ["reasoning_content", "reasoning", "think_tag"])
def test_reasoning_and_usage_are_captured(style: str):
    req = request("think first", reasoning=True)
    with OpenAIServer(reasoning_style=style) as server:  # type: ignore[arg-type]
        [response] = run(backend(server.base_url), [req])
    reasoning = default_reasoning(req.message_dicts())
    assert response.reasoning == reasoning
    if style == "think_tag":  # the full content is kept; the parser handles the think block
        assert response.text == f"<think>{reasoning}</think>\n{expected_text(req)}"
    else:
        assert response.text == expected_text(req)
    assert response.reasoning_tokens == len(reasoning) // 4
    assert response.prompt_tokens == len("Decide.think first") // 4
    assert response.completion_tokens and response.completion_tokens > response.reasoning_tokens
    assert response.finish_reason == "stop" and response.latency_ms is not None


def test_no_reasoning_when_not_asked():
    with OpenAIServer() as server:
        [response] = run(backend(server.base_url), [request("plain")])
    assert response.reasoning is None and response.reasoning_tokens is None
    assert response.prompt_tokens is not None and response.completion_tokens is not None


# --- scale, sharing, completeness -------------------------------------------------------------


def test_every_request_ends_as_a_response_or_a_recorded_failure():
    reqs = [request(f"mixed {i:02d}") for i in range(60)]
    rules = [
        Rule("mixed 0", [Fault.http(500)], repeat_last=True),  # 00-09 always fail
        Rule("mixed 1", [Fault.drop()]),
        Rule("mixed 2", [Fault.malformed(), Fault.http(429, retry_after="0")]),
        Rule("mixed 3", [Fault.http(400)]),
        Rule("mixed 4", [Fault.sleep(1.0)]),
        Rule("mixed 5", [Fault.empty()]),
    ]
    with OpenAIServer(latency_s=0.01, rules=rules) as server:
        responses = run(backend(server.base_url, concurrency=8, timeout_s=0.5), reqs)
    assert sorted(r.request_hash for r in responses) == sorted(r.hash for r in reqs)
    failed = [r for r in responses if r.text is None]
    assert all(r.error for r in failed) and all(r.error is None for r in responses if r.text)
    # "mixed 0x" always fail, "mixed 3" fails at once (400), the first of each rule's faults
    # hits "mixed 1x", "mixed 2x", ... once: so 10 + 1 permanent failures exactly.
    assert len(failed) == 11


def test_concurrency_is_bounded_and_results_come_in_completion_order():
    slow = request("slowest")
    reqs = [slow] + [request(f"quick {i}") for i in range(23)]
    with OpenAIServer(latency_s=0.02, rules=[Rule("slowest", [Fault.sleep(0.3)])]) as server:
        responses = run(backend(server.base_url, concurrency=4), reqs)
        log = server.requests
    assert responses[-1].request_hash == slow.hash
    events = sorted([(e.received_at, 1) for e in log] + [(e.responded_at, -1) for e in log])
    in_flight = peak = 0
    for _, step in events:
        in_flight += step
        peak = max(peak, in_flight)
    assert peak <= 4


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_several_base_urls_share_the_load(transport: str):
    reqs = [request(f"shared {i}") for i in range(40)]
    with OpenAIServer(latency_s=0.02) as one, OpenAIServer(latency_s=0.02) as two:
        responses = run(backend([one.base_url, two.base_url], transport, concurrency=8), reqs)
        counts = len(one.requests), len(two.requests)
    assert all(r.text for r in responses)
    assert sum(counts) == 40 and min(counts) >= 10


def test_a_failing_replica_is_retried_on_another():
    reqs = [request(f"failover {i}") for i in range(10)]
    rules = [Rule("", [Fault.http(503)], repeat_last=True)]
    with OpenAIServer(rules=rules) as down, OpenAIServer() as up:
        responses = run(backend([down.base_url, up.base_url], concurrency=2), reqs)
    assert all(r.text for r in responses)


# --- secrets ----------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_api_key_is_sent_but_never_leaks(
    transport: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    monkeypatch.setenv("OPENAI_API_KEY", CANARY)
    caplog.set_level(logging.DEBUG)
    reqs = [request("echo key"), request("fine", reasoning=True), request("flaky key")]
    rules = [
        Rule("echo key", [Fault.http(401, echo_auth=True)]),
        Rule("flaky key", [Fault.http(500), Fault.malformed()]),
    ]
    with OpenAIServer(rules=rules) as server:
        engine = backend(server.base_url, transport)
        responses = run(engine, reqs)
        headers = [entry.headers for entry in server.requests]
    assert all(h["authorization"] == f"Bearer {CANARY}" for h in headers)
    echoed = next(r for r in responses if r.text is None)
    assert echoed.error is not None and "Incorrect API key provided" in echoed.error
    for response in responses:
        assert CANARY not in repr(response) and CANARY not in json.dumps(response.to_dict())
    assert CANARY not in caplog.text and CANARY not in repr(engine)
    assert caplog.records  # the retries and the failure were logged


def test_dummy_key_when_the_environment_has_none():
    with OpenAIServer() as server:
        run(backend(server.base_url), [request("keyless")])
        [entry] = server.requests
    assert entry.headers["authorization"] == "Bearer EMPTY"


# --- the two transports -----------------------------------------------------------------------


def test_both_transports_send_the_same_bodies_and_give_the_same_responses():
    reqs = [
        request("same plain"),
        request("same reasoning", reasoning=True),
        request("same prompt-only", output_format="prompt"),
        request("same extras", sampling={"temperature": 0.6, "top_p": 0.9, "min_p": 0.05}),
        request("same unicode: 贵州茅台 买入?", replicate=2),
        request("same retried"),
        request("same failing"),
    ]
    results: dict[str, tuple[dict, dict]] = {}
    for transport in TRANSPORTS:
        rules = [
            Rule("same retried", [Fault.http(500), Fault.malformed()]),
            Rule("same failing", [Fault.http(502)], repeat_last=True),
        ]
        with OpenAIServer(rules=rules) as server:
            engine = backend(server.base_url, transport, concurrency=1, max_attempts=3)
            responses = run(engine, reqs)
            bodies = server.bodies()
        by_hash = {r.request_hash: r.to_dict() | {"latency_ms": None} for r in responses}
        results[transport] = (by_hash, {i: body for i, body in enumerate(bodies)})
    (lean_responses, lean_bodies), (sdk_responses, sdk_bodies) = results["lean"], results["openai"]
    assert lean_bodies == sdk_bodies and len(lean_bodies) == len(reqs) + 4
    assert lean_responses == sdk_responses
    assert lean_responses[reqs[1].hash]["reasoning"] is not None
    assert lean_responses[reqs[-1].hash]["attempts"] == 3


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_an_unreachable_server_is_a_recorded_connection_failure(transport: str):
    with OpenAIServer() as server:
        url = server.base_url  # the port is free again once the server has stopped
    [response] = run(backend(url, transport, max_attempts=2), [request("nobody home")])
    assert response.text is None and response.attempts == 2
    assert response.error is not None and "connection error" in response.error


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_closed_port_is_given_up_early_not_retried_for_every_request(transport: str):
    with OpenAIServer() as server:
        url = server.base_url
    engine = backend(url, transport, concurrency=4, max_attempts=6, unreachable_after=3)
    responses = run(engine, [request(f"nobody home {n}") for n in range(40)])
    assert engine.unreachable == {url}
    assert all(response.text is None for response in responses)
    # Only the requests in flight when the port was given up made attempts; the rest none.
    assert sum(response.attempts for response in responses) <= 3 + 4
    given_up = [response for response in responses if response.error_class == "unreachable"]
    assert len(given_up) >= 40 - 4
    assert "refused 3 connections in a row" in (given_up[0].error or "")
    assert {response.error_class for response in responses} <= {"unreachable", "connection"}


def test_a_closed_replica_is_given_up_and_the_other_answers():
    with OpenAIServer() as gone:
        closed = gone.base_url
    with OpenAIServer() as server:
        engine = backend([closed, server.base_url], concurrency=2, unreachable_after=2)
        responses = run(engine, [request(f"q{n}") for n in range(12)])
    assert engine.unreachable == {closed}
    assert all(response.text is not None for response in responses)


def test_a_connection_broken_mid_exchange_does_not_give_the_server_up():
    rules = [Rule("flaky", [Fault.drop()] * 5)]
    with OpenAIServer(rules=rules) as server:
        engine = backend(server.base_url, max_attempts=6, unreachable_after=2)
        [response] = run(engine, [request("flaky")])
    assert response.text is not None and response.attempts == 6
    assert engine.unreachable == frozenset()


def test_stopping_early_cancels_the_rest_cleanly():
    reqs = [request(f"early {i}") for i in range(20)]

    async def first_only(engine: OpenAIBackend) -> Response:
        stream = engine.run(reqs)
        first = await anext(stream)
        await stream.aclose()
        return first

    with OpenAIServer(latency_s=0.05) as server:
        first = asyncio.run(first_only(backend(server.base_url, concurrency=4)))
        sent = len(server.requests)
    assert first.text and sent < len(reqs)


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("framing", ["chunked", "close"])
def test_chunked_and_close_delimited_replies(transport: str, framing: str):
    reqs = [request(f"framed {i}") for i in range(6)]
    rules = [Rule("framed 3", [Fault.http(503)])]
    with OpenAIServer(framing=framing, rules=rules) as server:  # type: ignore[arg-type]
        responses = run(backend(server.base_url, transport, concurrency=2), reqs)
    by_hash = {r.request_hash: r for r in responses}
    assert [by_hash[r.hash].text for r in reqs] == [expected_text(r) for r in reqs]
    assert by_hash[reqs[3].hash].attempts == 2


def test_transport_internals_do_not_show_the_key():
    lean = LeanTransport(CANARY)
    target = lean._target("http://[::1]:8000/v1")
    assert CANARY not in repr(target) and CANARY not in repr(lean)
    assert b"Host: [::1]:8000\r\n" in target.head and CANARY.encode() in target.head
    sdk = OpenAISDKTransport(CANARY, timeout_s=1, max_connections=1)
    assert CANARY not in repr(sdk)


def test_base_urls_are_checked_up_front():
    with pytest.raises(ValueError, match="http"):
        OpenAIBackend(["localhost:8000/v1"])
    with pytest.raises(ValueError, match="transport"):
        OpenAIBackend(["http://localhost:8000/v1"], transport="curl")  # type: ignore[arg-type]
