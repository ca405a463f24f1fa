"""How a chat-completions body reaches an OpenAI-compatible server, and how its JSON comes back.

Two transports implement `ChatTransport`; the backend's policy (retries, fallbacks, parsing
the completion) sits above them and is shared, so both give the same Responses:

- `LeanTransport`: a minimal asyncio HTTP/1.1 client (keep-alive pool per host, one write per
  request, Content-Length or chunked replies, TLS for https). Why it exists: on a 2-core machine
  the stock client spends about 5 ms of CPU per call (pydantic models, httpx layers), which caps
  a 200 ms-latency server at about half the ideal throughput at concurrency 64; this one spends
  a small fraction of that (see bench/README.md). It does not speak HTTP/2, proxies or
  compression (it asks for none), which vLLM, SGLang, llama.cpp and api.openai.com do not need.
- `OpenAISDKTransport`: `openai.AsyncOpenAI`, the reference client, with its own retries off.

Errors come back as `TransportError` subclasses, so the backend classifies both alike. No
error, log line or repr here carries the API key: it lives only in the request headers.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

_CHAT_PATH = "/chat/completions"
_USER_AGENT = "strat-llm"


class TransportError(Exception):
    """An exchange that produced no usable JSON completion."""


class HTTPStatusError(TransportError):
    """The server answered with a non-2xx status."""

    def __init__(self, status: int, text: str, retry_after: str | None) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.text = text  # the response body, decoded; the backend truncates it
        self.retry_after = retry_after  # the Retry-After header, verbatim


class ConnectionFailed(TransportError):
    """The connection could not be made (`connecting`: refused, no route, unknown host), or
    broke before a whole response came back."""

    def __init__(self, message: str, *, connecting: bool = False) -> None:
        super().__init__(message)
        self.connecting = connecting


class TransportTimeout(TransportError):
    """The transport's own time-out fired (the backend also bounds each attempt)."""


class MalformedBody(TransportError):
    """A 2xx response whose body is not the JSON of a chat completion."""


class ChatTransport(Protocol):
    async def post_chat(self, base_url: str, body: dict[str, Any]) -> Any:
        """POST `body` to `<base_url>/chat/completions`; return the decoded JSON of a 2xx reply."""
        ...

    async def aclose(self) -> None: ...


# --- the lean transport ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    """Where one base URL points, and the request head prepared for it."""

    scheme: str
    host: str
    port: int
    head: bytes = field(repr=False)  # request line and headers (with the key) to Content-Length

    @property
    def pool_key(self) -> tuple[str, str, int]:
        return (self.scheme, self.host, self.port)


@dataclass(frozen=True)
class _Reply:
    status: int
    headers: dict[str, str]
    body: bytes
    keep_alive: bool


def _parse_head(block: bytes) -> tuple[int, dict[str, str]]:
    """Status and lower-cased headers; an HTTP/1.0 reply without keep-alive reads as
    `connection: close`, so the connection is not reused."""
    lines = block.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        raise ConnectionFailed(f"not an HTTP response: {lines[0][:80]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if parts[0] == "HTTP/1.0" and headers.get("connection", "").lower() != "keep-alive":
        headers["connection"] = "close"
    return int(parts[1]), headers


def _decode_chunked(buffer: bytearray, pos: int) -> bytes | None:
    """The body of a chunked reply starting at `pos`, or None while it is incomplete."""
    out = bytearray()
    while True:
        line_end = buffer.find(b"\r\n", pos)
        if line_end < 0:
            return None
        size = int(bytes(buffer[pos:line_end]).split(b";")[0].strip() or b"0", 16)
        pos = line_end + 2
        if size == 0:
            return bytes(out) if _trailers_done(buffer, pos) else None
        if len(buffer) < pos + size + 2:
            return None
        out += buffer[pos : pos + size]
        pos += size + 2


def _trailers_done(buffer: bytearray, pos: int) -> bool:
    """Whether the (optional) trailer section after the last chunk has fully arrived."""
    return buffer[pos : pos + 2] == b"\r\n" or buffer.find(b"\r\n\r\n", pos) >= 0


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; one exchange at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._waiter: asyncio.Future[_Reply] | None = None
        self._head: tuple[int, dict[str, str], int] | None = None  # status, headers, body start
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self._waiter is not None and not self._waiter.done():
            try:
                self._parse()
            except Exception as exc:  # a garbled response: this connection is done for
                self._fail(exc if isinstance(exc, TransportError) else ConnectionFailed(str(exc)))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        head = self._head
        if head is not None and _framing(head[1]) == "close":
            self._finish(head[0], head[1], bytes(self._buffer[head[2] :]), keep_alive=False)
        else:
            reason = f": {exc}" if exc else ""
            waiter.set_exception(ConnectionFailed(f"connection closed by the server{reason}"))

    def _fail(self, exc: Exception) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)
        self.close()

    def _parse(self) -> None:
        if self._head is None:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            status, headers = _parse_head(bytes(self._buffer[:end]))
            if 100 <= status < 200:  # an interim response: skip it
                del self._buffer[: end + 4]
                self._parse()
                return
            self._head = (status, headers, end + 4)
        status, headers, start = self._head
        framing = _framing(headers)
        if framing == "chunked":
            body = _decode_chunked(self._buffer, start)
        elif framing == "length":
            length = int(headers["content-length"])
            body = bytes(self._buffer[start : start + length])
            body = body if len(body) == length else None
        else:
            return  # read until the server closes
        if body is not None:
            keep = headers.get("connection", "").lower() != "close"
            self._finish(status, headers, body, keep_alive=keep)

    def _finish(self, status: int, headers: dict[str, str], body: bytes, keep_alive: bool) -> None:
        assert self._waiter is not None
        self._waiter.set_result(_Reply(status, headers, body, keep_alive))

    async def exchange(self, payload: bytes) -> _Reply:
        """Send one request (a single write) and wait for its whole response."""
        if self.closed or self._transport is None:
            raise ConnectionFailed("connection already closed")
        self._buffer.clear()
        self._head = None
        self._waiter = self._loop.create_future()
        self._transport.write(payload)
        try:
            return await self._waiter
        finally:
            self._waiter = None

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()


def _framing(headers: dict[str, str]) -> str:
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return "chunked"
    return "length" if "content-length" in headers else "close"


class LeanTransport:
    """A keep-alive pool of minimal HTTP/1.1 connections, one pool per (scheme, host, port).

    The pool grows to the number of requests in flight (the backend bounds that) and reuses the
    most recently returned connection first, skipping those the server has closed meanwhile (as
    httpcore does). A connection that breaks mid-exchange is a `ConnectionFailed`, which the
    backend retries like any other attempt: no send is hidden from its attempt count.
    """

    def __init__(self, api_key: str) -> None:
        self._auth = f"Bearer {api_key}".encode("latin-1")
        self._targets: dict[str, _Target] = {}
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._open: set[_Connection] = set()
        self._ssl: ssl.SSLContext | None = None

    def __repr__(self) -> str:
        return f"LeanTransport(hosts={sorted(self._idle)})"

    def _target(self, base_url: str) -> _Target:
        target = self._targets.get(base_url)
        if target is None:
            target = self._targets[base_url] = self._make_target(base_url)
        return target

    def _make_target(self, base_url: str) -> _Target:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"unsupported base URL {base_url!r}: need http(s)://host[:port]/path")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        default_port = port == (443 if parts.scheme == "https" else 80)
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname  # IPv6
        host_header = host if default_port else f"{host}:{port}"
        path = parts.path.rstrip("/") + _CHAT_PATH
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {host_header}\r\n"
            f"User-Agent: {_USER_AGENT}\r\nAccept: application/json\r\n"
            "Content-Type: application/json\r\n"
        ).encode("latin-1")
        head += b"Authorization: " + self._auth + b"\r\nContent-Length: "
        return _Target(parts.scheme, parts.hostname, port, head)

    async def post_chat(self, base_url: str, body: dict[str, Any]) -> Any:
        target = self._target(base_url)
        data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        payload = b"".join((target.head, str(len(data)).encode(), b"\r\n\r\n", data))
        reply = await self._exchange(target, payload)
        if not 200 <= reply.status < 300:
            text = reply.body.decode("utf-8", "replace")
            raise HTTPStatusError(reply.status, text, reply.headers.get("retry-after"))
        try:
            return json.loads(reply.body)
        except ValueError as exc:
            raise MalformedBody(f"response is not JSON ({exc.__class__.__name__})") from None

    async def _exchange(self, target: _Target, payload: bytes) -> _Reply:
        conn = await self._acquire(target)
        try:
            reply = await conn.exchange(payload)
        except BaseException:  # failed, cancelled or timed out mid-exchange: unusable now
            self._discard(conn)
            raise
        if reply.keep_alive and not conn.closed:
            self._idle.setdefault(target.pool_key, []).append(conn)
        else:
            self._discard(conn)
        return reply

    async def _acquire(self, target: _Target) -> _Connection:
        """The most recently used idle connection the server has not closed, or a new one."""
        idle = self._idle.get(target.pool_key)
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
            self._open.discard(conn)
        return await self._connect(target)

    async def _connect(self, target: _Target) -> _Connection:
        loop = asyncio.get_running_loop()
        context = self._ssl_context() if target.scheme == "https" else None
        try:
            _, conn = await loop.create_connection(
                lambda: _Connection(loop),
                target.host,
                target.port,
                ssl=context,
                server_hostname=target.host if context else None,
            )
        except OSError as exc:
            raise ConnectionFailed(
                f"cannot connect to {target.host}:{target.port}: {exc}", connecting=True
            ) from None
        self._open.add(conn)
        return conn

    def _ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = ssl.create_default_context()
        return self._ssl

    def _discard(self, conn: _Connection) -> None:
        conn.close()
        self._open.discard(conn)

    async def aclose(self) -> None:
        for conn in list(self._open):
            conn.close()
        self._open.clear()
        self._idle.clear()
        await asyncio.sleep(0)  # let the transports run their close callbacks


# --- the reference transport ----------------------------------------------------------------


class OpenAISDKTransport:
    """`openai.AsyncOpenAI` (one client per base URL), with the SDK's own retries turned off.

    The whole body except model and messages goes through `extra_body`, so the SDK sends the
    same JSON as `LeanTransport` whatever sampling parameters a request carries (vLLM's top_k,
    min_p, chat_template_kwargs, ...). The completion comes back as the SDK's `ChatCompletion`
    and is handed on as its dict (`to_dict`, which keeps fields the SDK does not model, such as
    `reasoning_content`).
    """

    def __init__(self, api_key: str, *, timeout_s: float, max_connections: int) -> None:
        self._api_key = api_key
        self._timeout_s = timeout_s
        self._max_connections = max_connections
        self._clients: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"OpenAISDKTransport(base_urls={sorted(self._clients)})"

    def _client(self, base_url: str) -> Any:
        client = self._clients.get(base_url)
        if client is None:
            import httpx2
            import openai

            limits = httpx2.Limits(
                max_connections=self._max_connections,
                max_keepalive_connections=self._max_connections,
            )
            client = openai.AsyncOpenAI(
                api_key=self._api_key,
                base_url=base_url,
                max_retries=0,
                timeout=self._timeout_s,
                http_client=openai.DefaultAsyncHttpxClient(limits=limits, timeout=self._timeout_s),
            )
            self._clients[base_url] = client
        return client

    async def post_chat(self, base_url: str, body: dict[str, Any]) -> Any:
        import openai

        rest = dict(body)
        model, messages = rest.pop("model"), rest.pop("messages")
        try:
            completion = await self._client(base_url).chat.completions.create(
                model=model, messages=messages, extra_body=rest or None
            )
        except openai.APIStatusError as exc:
            retry_after = exc.response.headers.get("retry-after")
            raise HTTPStatusError(exc.status_code, exc.response.text, retry_after) from None
        except openai.APITimeoutError:
            raise TransportTimeout("the SDK's request timed out") from None
        except openai.APIConnectionError as exc:
            cause = exc.__cause__.__class__.__name__ if exc.__cause__ else "unknown cause"
            # httpx's ConnectError: no connection was made (the SDK wraps it)
            raise ConnectionFailed(
                f"{exc.message} ({cause})", connecting=cause == "ConnectError"
            ) from None
        except ValueError as exc:  # json.JSONDecodeError from a broken 2xx body
            raise MalformedBody(f"response is not JSON ({exc.__class__.__name__})") from None
        if isinstance(completion, str):  # the SDK hands back non-JSON bodies as text
            raise MalformedBody("response is not JSON (non-JSON content type)")
        return completion.to_dict(mode="json")

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.close()
        self._clients.clear()
