"""Content-addressed response cache: one SQLite row per request hash, committed as it arrives.

A killed run loses at most the responses still in flight; everything answered before the kill
is read back on the rerun and never requested again. Only usable responses are kept: a failure
is recorded in its decision row and retried by the next run. Requests are stored beside their
responses for audit; neither ever holds an API key.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path

from inference.backends.base import Response
from inference.requests import ChatRequest

_SCHEMA = """
create table if not exists responses (
    request_hash text primary key,
    request_json text not null,
    backend text not null,
    text text not null,
    reasoning text,
    prompt_tokens integer,
    completion_tokens integer,
    reasoning_tokens integer,
    latency_ms real,
    finish_reason text,
    attempts integer not null
);
create table if not exists exported (
    request_hash text primary key,
    request_json text not null
);
create table if not exists request_index (
    snapshot_key text primary key,
    request_hash text not null
)
"""
# Response's fields in its declaration order, as columns; `error` is never stored.
_RESPONSE_FIELDS = (
    "request_hash",
    "backend",
    "text",
    "reasoning",
    "prompt_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "latency_ms",
    "finish_reason",
    "attempts",
)
_RESPONSE_COLUMNS = ", ".join(_RESPONSE_FIELDS)
_LOOKUP_BATCH = 900  # under SQLite's default limit of host parameters


class ResponseCache:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._connection.execute("pragma journal_mode=wal")
        self._connection.execute("pragma synchronous=normal")
        self._connection.executescript(_SCHEMA)

    def close(self) -> None:
        self._connection.close()

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def get_many(self, hashes: Iterable[str]) -> dict[str, Response]:
        wanted = list(dict.fromkeys(hashes))
        found: dict[str, Response] = {}
        for start in range(0, len(wanted), _LOOKUP_BATCH):
            chunk = wanted[start : start + _LOOKUP_BATCH]
            rows = self._connection.execute(
                f"select {_RESPONSE_COLUMNS} from responses where request_hash in "
                f"({','.join('?' * len(chunk))})",
                chunk,
            ).fetchall()
            # Columns, not a JSON document: a rerun reads back answers without decoding.
            for row in rows:
                found[row[0]] = Response(*row)
        return found

    def put(self, request: ChatRequest, response: Response) -> None:
        if response.request_hash != request.hash:
            raise ValueError("response does not answer this request")
        self._store(request.hash, request.canonical(), response)

    def _store(self, request_hash: str, request_json: str, response: Response) -> None:
        if response.text is None:
            raise ValueError(f"{request_hash}: failures are not cached ({response.error})")
        self._connection.execute(
            "insert or replace into responses (request_json, "
            f"{_RESPONSE_COLUMNS}) values (?, {', '.join('?' * len(_RESPONSE_FIELDS))})",
            (request_json, *(getattr(response, name) for name in _RESPONSE_FIELDS)),
        )

    def lookup_requests(self, keys: Iterable[str]) -> dict[str, str]:
        """Request hashes already built for these snapshot keys (see inference.engine)."""
        wanted = list(dict.fromkeys(keys))
        found: dict[str, str] = {}
        for start in range(0, len(wanted), _LOOKUP_BATCH):
            chunk = wanted[start : start + _LOOKUP_BATCH]
            found.update(
                self._connection.execute(
                    "select snapshot_key, request_hash from request_index where snapshot_key in "
                    f"({','.join('?' * len(chunk))})",
                    chunk,
                ).fetchall()
            )
        return found

    def index_requests(self, pairs: Iterable[tuple[str, str]]) -> None:
        self._connection.executemany("insert or replace into request_index values (?, ?)", pairs)

    def mark_exported(self, requests: Iterable[ChatRequest]) -> None:
        """Remember exported batch requests, so their answers can be imported by custom_id."""
        self._connection.executemany(
            "insert or replace into exported values (?, ?)",
            [(request.hash, request.canonical()) for request in requests],
        )

    def put_exported(self, response: Response) -> bool:
        """Store the answer to an exported request; False when no export asked for it."""
        rows = self._connection.execute(
            "select request_json from exported where request_hash = ?", (response.request_hash,)
        ).fetchall()
        if not rows:
            return False
        self._store(response.request_hash, rows[0][0], response)
        return True

    def __len__(self) -> int:
        [(count,)] = self._connection.execute("select count(*) from responses").fetchall()
        return count
