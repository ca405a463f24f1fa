"""A real OpenAI-compatible chat-completions server on 127.0.0.1, for tests and the bench.

Why a real server and not a mock of the client: what is under test is the backend's behaviour on
the wire (sockets, keep-alive, status codes, headers, malformed bodies, time-outs), and both
transports of `inference.backends.openai_backend` must be judged against the same bytes.

The server is a plain asyncio protocol running its own event loop in a background thread. It
sets TCP_NODELAY and writes each response in one call, so that in the bench the server's own
overhead does not hide the client's. Behaviour:

- every answer is deterministic: a JSON decision derived from a hash of the messages
  (`default_answer`), with usage figures, and a reasoning trace when the request asks for
  thinking (`chat_template_kwargs.enable_thinking`);
- `rules` script faults by request content (a substring of the messages) or by call count (an
  empty match counts every call): 429 with Retry-After, 5xx, a sleep past the client's
  time-out, a malformed body, empty content, a dropped connection;
- `structured_output=False` makes it reject any `response_format` with a 400, as servers
  without guided decoding do; `strict_params=True` rejects unknown top-level parameters such as
  `chat_template_kwargs`, as api.openai.com does;
- `framing` picks how responses end: Content-Length (the default), chunked, or by closing
  the connection;
- `requests` is the log of every request received, with its body, arrival time, the fault
  applied and whether the response was fully written.

Run it as a process (the bench does, so its CPU is not charged to the client):
`python -m tests.openai_server --latency-s 0.2` prints `PORT <n>` and serves until killed.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Framing = Literal["length", "chunked", "close"]
FaultKind = Literal["status", "sleep", "malformed", "missing_choices", "empty", "drop"]
ReasoningStyle = Literal["reasoning_content", "reasoning", "think_tag"]

_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 429: "Too Many Requests"}
_ACTIONS = ("buy", "sell", "hold")
_RULES = ("S1", "S2", "S3", "S4", None)
# Top-level parameters a strict (api.openai.com-like) server accepts.
_KNOWN_PARAMS = frozenset(
    {
        *("model", "messages", "temperature", "top_p", "max_tokens", "max_completion_tokens"),
        *("seed", "stop", "n", "presence_penalty", "frequency_penalty", "logit_bias"),
        *("logprobs", "top_logprobs", "response_format", "user", "stream", "reasoning_effort"),
    }
)


@dataclass(frozen=True)
class Fault:
    """One scripted misbehaviour, applied to one call."""

    kind: FaultKind
    status: int = 500
    retry_after: str | None = None  # Retry-After header value, seconds or an HTTP-date
    seconds: float = 0.0  # for "sleep": delay before answering normally
    null_content: bool = False  # for "empty": content null instead of ""
    echo_auth: bool = False  # for "status": quote the Authorization header, as some servers do

    @classmethod
    def http(cls, status: int, retry_after: str | None = None, echo_auth: bool = False) -> Fault:
        return cls("status", status=status, retry_after=retry_after, echo_auth=echo_auth)

    @classmethod
    def sleep(cls, seconds: float) -> Fault:
        return cls("sleep", seconds=seconds)

    @classmethod
    def malformed(cls) -> Fault:
        return cls("malformed")

    @classmethod
    def missing_choices(cls) -> Fault:
        return cls("missing_choices")

    @classmethod
    def empty(cls, null_content: bool = False) -> Fault:
        return cls("empty", null_content=null_content)

    @classmethod
    def drop(cls) -> Fault:
        return cls("drop")


@dataclass
class Rule:
    """Faults for the 1st, 2nd, ... call whose messages contain `match` ("" matches every call).

    After the list is used up, calls are answered normally, or with the last fault again when
    `repeat_last` is set (a permanent failure). The first rule that matches a call owns it.
    """

    match: str
    faults: Sequence[Fault]
    repeat_last: bool = False
    calls: int = field(default=0, init=False)

    def next_fault(self) -> Fault | None:
        self.calls += 1
        if self.calls <= len(self.faults):
            return self.faults[self.calls - 1]
        return self.faults[-1] if self.repeat_last and self.faults else None


@dataclass
class ReceivedRequest:
    """One request as the server saw it."""

    index: int
    received_at: float  # time.monotonic() of this process
    path: str
    headers: dict[str, str]  # names lower-cased
    body: Any  # the decoded JSON body, or None when it was not JSON
    fault: str | None = None
    completed: bool = False  # the whole response was written to an open connection
    responded_at: float | None = None  # time.monotonic() when it was written

    @property
    def text(self) -> str:
        """All message contents joined, what rules match against."""
        messages = self.body.get("messages", []) if isinstance(self.body, dict) else []
        return "\n".join(str(m.get("content", "")) for m in messages if isinstance(m, dict))


def default_answer(messages: list[dict[str, Any]]) -> str:
    """The deterministic decision JSON the server answers for these messages."""
    digest = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).digest()
    decision = {
        "action": _ACTIONS[digest[0] % 3],
        "target_exposure": round(digest[1] / 255, 2),
        "confidence": round(digest[2] / 255, 2),
        "rule": _RULES[digest[3] % 5],
        "reason": f"scripted answer {digest[:4].hex()}",
    }
    return json.dumps(decision)


def default_reasoning(messages: list[dict[str, Any]]) -> str:
    return f"Weighing {len(messages)} messages before answering."


def _http_response(
    status: int, body: bytes, extra_headers: str = "", framing: str = "length"
) -> bytes:
    """One whole response: Content-Length, chunked (two chunks), or ended by closing."""
    reason = _REASONS.get(status, "Error" if status >= 400 else "OK")
    if framing == "chunked":
        half = len(body) // 2
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in (body[:half], body[half:]) if c)
        framing_header, body = "transfer-encoding: chunked\r\n", chunks + b"0\r\n\r\n"
    elif framing == "close":
        framing_header = "connection: close\r\n"
    else:
        framing_header = f"content-length: {len(body)}\r\n"
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"{framing_header}{extra_headers}\r\n"
    )
    return head.encode("latin-1") + body


def _error_body(status: int, message: str) -> bytes:
    return json.dumps({"error": {"message": message, "type": "error", "code": status}}).encode()


class _Connection(asyncio.Protocol):
    """One client connection: parses requests (Content-Length framing) and hands them over."""

    def __init__(self, server: OpenAIServer) -> None:
        self._server = server
        self._buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._server._connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._server._connections.discard(self)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = self._buffer[:end].decode("latin-1").split("\r\n")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            total = end + 4 + int(headers.get("content-length", "0"))
            if len(self._buffer) < total:
                return
            body = bytes(self._buffer[end + 4 : total])
            del self._buffer[:total]
            parts = lines[0].split(" ")
            self._server._handle(self, parts[1] if len(parts) > 1 else "", headers, body)

    def send(self, record: ReceivedRequest | None, payload: bytes, close: bool = False) -> None:
        """Write one whole response, if the client is still there."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.write(payload)
        if record is not None:
            record.completed = True
            record.responded_at = time.monotonic()
        if close:
            transport.close()


class OpenAIServer:
    """An OpenAI-compatible server in a background thread; use it as a context manager."""

    def __init__(
        self,
        latency_s: float = 0.0,
        rules: Sequence[Rule] = (),
        *,
        structured_output: bool = True,
        strict_params: bool = False,
        reasoning_style: ReasoningStyle = "reasoning_content",
        framing: Framing = "length",
        record: bool = True,
        port: int = 0,
    ) -> None:
        self.latency_s = latency_s
        self.rules = list(rules)
        self.structured_output = structured_output
        self.strict_params = strict_params
        self.reasoning_style = reasoning_style
        self.framing = framing
        self.record = record
        self.port = port
        self._log: list[ReceivedRequest] = []
        self._count = 0
        self._lock = threading.Lock()
        self._connections: set[_Connection] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def requests(self) -> list[ReceivedRequest]:
        """A copy of the request log, in arrival order."""
        with self._lock:
            return list(self._log)

    def bodies(self) -> list[Any]:
        return [entry.body for entry in self.requests]

    def sends_for(self, match: str) -> list[ReceivedRequest]:
        """The requests whose messages contain `match` (how often one request was sent)."""
        return [entry for entry in self.requests if match in entry.text]

    # --- lifecycle -------------------------------------------------------------------------

    def __enter__(self) -> OpenAIServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("test server did not start")

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop = None

    def _serve(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        server = loop.run_until_complete(
            loop.create_server(
                lambda: _Connection(self), "127.0.0.1", self.port, backlog=2048, reuse_address=True
            )
        )
        self.port = server.sockets[0].getsockname()[1]
        ready.set()
        try:
            loop.run_forever()
        finally:
            server.close()
            for connection in list(self._connections):
                if connection.transport is not None:
                    connection.transport.abort()
            loop.run_until_complete(asyncio.sleep(0))
            loop.close()

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted (the `python -m` entry point)."""
        self.start()
        print(f"PORT {self.port}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            self.stop()

    # --- handling --------------------------------------------------------------------------

    def _handle(self, conn: _Connection, path: str, headers: dict[str, str], raw: bytes) -> None:
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        with self._lock:
            entry = ReceivedRequest(self._count, time.monotonic(), path, headers, body)
            self._count += 1
            if self.record:
                self._log.append(entry)
        close = self.framing == "close" or headers.get("connection", "").lower() == "close"
        fault = self._fault_for(entry)
        entry.fault = fault.kind if fault else None
        if fault is not None and fault.kind == "drop":
            assert conn.transport is not None
            conn.transport.close()
            return
        payload = self._respond(entry, fault)
        delay = self.latency_s + (fault.seconds if fault is not None else 0.0)
        if delay > 0:
            assert self._loop is not None
            self._loop.call_later(delay, conn.send, entry, payload, close)
        else:
            conn.send(entry, payload, close)

    def _fault_for(self, entry: ReceivedRequest) -> Fault | None:
        if not self.rules:
            return None
        text = entry.text
        with self._lock:
            for rule in self.rules:
                if rule.match in text:
                    return rule.next_fault()
        return None

    def _respond(self, entry: ReceivedRequest, fault: Fault | None) -> bytes:
        body = entry.body
        if not entry.path.endswith("/chat/completions"):
            return self._http(404, _error_body(404, f"no route {entry.path}"))
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return self._http(400, _error_body(400, "body must be a JSON chat request"))
        rejection = self._rejection(body)
        if rejection is not None:
            return self._http(400, _error_body(400, rejection))
        if fault is not None and fault.kind == "status":
            retry = f"retry-after: {fault.retry_after}\r\n" if fault.retry_after else ""
            message = f"scripted failure {fault.status}"
            if fault.echo_auth:
                message = f"Incorrect API key provided: {entry.headers.get('authorization')}"
            return self._http(fault.status, _error_body(fault.status, message), retry)
        if fault is not None and fault.kind == "malformed":
            return self._http(200, b'{"id": "chatcmpl-broken", "choices": [')
        if fault is not None and fault.kind == "missing_choices":
            return self._http(200, b'{"id": "chatcmpl-nochoices", "object": "chat.completion"}')
        empty = fault is not None and fault.kind == "empty"
        return self._http(200, json.dumps(self._completion(body, empty, fault)).encode())

    def _http(self, status: int, body: bytes, extra_headers: str = "") -> bytes:
        return _http_response(status, body, extra_headers, self.framing)

    def _rejection(self, body: dict[str, Any]) -> str | None:
        """Why a capability-limited server refuses this body, as such servers word it."""
        if not self.structured_output and "response_format" in body:
            return "response_format json_schema is not supported: guided decoding is unavailable"
        if self.strict_params:
            unknown = sorted(set(body) - _KNOWN_PARAMS)
            if unknown:
                return f"Unrecognized request argument supplied: {unknown[0]}"
        return None

    def _completion(self, body: dict[str, Any], empty: bool, fault: Fault | None) -> dict:
        messages = body["messages"]
        thinking = bool((body.get("chat_template_kwargs") or {}).get("enable_thinking"))
        content: str | None = default_answer(messages)
        message: dict[str, Any] = {"role": "assistant", "content": content}
        reasoning = default_reasoning(messages) if thinking else None
        if reasoning is not None and self.reasoning_style == "think_tag":
            message["content"] = content = f"<think>{reasoning}</think>\n{content}"
        elif reasoning is not None:
            message[self.reasoning_style] = reasoning
        if empty:
            message["content"] = content = None if fault and fault.null_content else ""
        prompt_tokens = sum(len(str(m.get("content", ""))) for m in messages) // 4
        completion_tokens = len(content or "") // 4 + (len(reasoning) // 4 if reasoning else 0)
        usage: dict[str, Any] = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        if reasoning is not None:
            usage["completion_tokens_details"] = {"reasoning_tokens": len(reasoning) // 4}
        completion_id = hashlib.sha256((content or "").encode()).hexdigest()[:12]
        return {
            "id": f"chatcmpl-{completion_id}",
            "object": "chat.completion",
            "created": 1700000000,
            "model": body.get("model", ""),
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": usage,
        }


def spawn(latency_s: float, cwd: str | None = None) -> tuple[subprocess.Popen[str], str]:
    """This server in a process of its own (its CPU apart from a bench's client), without a
    request log: the process and its base URL. The caller kills it."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.openai_server", "--latency-s", str(latency_s), "--no-record"],
        cwd=cwd,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline().split()
    if len(line) != 2 or line[0] != "PORT":
        process.kill()
        raise RuntimeError(f"server did not start: {line}")
    return process, f"http://127.0.0.1:{line[1]}/v1"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-s", type=float, default=0.0)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--no-record", action="store_true", help="keep no request log")
    args = parser.parse_args(argv)
    OpenAIServer(args.latency_s, port=args.port, record=not args.no_record).serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
