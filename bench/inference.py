"""Throughput of the `openai` backend against a local server with a fixed 200 ms latency.

For each transport (`openai`: the openai package's AsyncOpenAI; `lean`: our asyncio HTTP/1.1
client) and each concurrency level, sends enough distinct requests to fill about `--seconds`
of ideal time (at least 3x the concurrency) and reports:

- throughput in requests/s, and as a % of the ideal concurrency / latency;
- client CPU per request: this process's CPU time over the run / requests. The server runs in
  a separate process (`python -m tests.openai_server`), so its CPU is not counted.

Then the full-cache replay: the lean run's answers at the highest level are stored in an
`inference.cache.ResponseCache` (SQLite) and read back with `get_many`, the lookup a rerun makes
before sending anything; both rates are printed. Skipped, and said so, when that module or API
is missing.
Run: `.venv/bin/python bench/inference.py` (about 30 s).
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import openai  # noqa: F401  (imported up front so no run pays for the import)

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from inference.backends.base import Response  # noqa: E402
from inference.backends.openai_backend import OpenAIBackend  # noqa: E402
from inference.requests import ChatRequest  # noqa: E402
from tests.openai_server import spawn  # noqa: E402

LEVELS = (1, 8, 64, 128)
TRANSPORTS = ("openai", "lean")


@dataclass(frozen=True)
class Result:
    transport: str
    concurrency: int
    requests: int
    wall_s: float
    cpu_s: float
    failures: int

    def row(self, latency_s: float) -> str:
        rate = self.requests / self.wall_s
        ideal = self.concurrency / latency_s
        cpu_ms = self.cpu_s / self.requests * 1000
        return (
            f"{self.transport:<8} {self.concurrency:>5} {self.requests:>6} {rate:>9.1f} "
            f"{ideal:>7.0f} {rate / ideal:>7.1%} {cpu_ms:>8.2f} {self.failures:>5}"
        )


def start_server(latency_s: float) -> tuple[subprocess.Popen[str], str]:
    """The test server in its own process; returns it and its base URL."""
    return spawn(latency_s, cwd=str(ROOT))


def make_requests(count: int, tag: str) -> list[ChatRequest]:
    """Distinct requests shaped like the real ones (system + user prompt, structured output)."""
    system = "You are a disciplined equity trader. " * 20
    return [
        ChatRequest.build(
            "bench-model",
            [
                {"role": "system", "content": system},
                {"role": "user", "content": f"{tag} decision {i}: prices ... news ... " * 10},
            ],
            {"temperature": 0.0, "max_tokens": 256, "seed": 7},
        )
        for i in range(count)
    ]


async def _drain(
    backend: OpenAIBackend, requests: list[ChatRequest]
) -> tuple[float, float, list[Response]]:
    wall, cpu = time.perf_counter(), time.process_time()
    answers = [response async for response in backend.run(requests)]
    return time.perf_counter() - wall, time.process_time() - cpu, answers


def measure(
    url: str, transport: str, concurrency: int, count: int
) -> tuple[Result, list[ChatRequest], list[Response]]:
    """One level: the figures, and the requests and answers (for the cache replay)."""
    backend = OpenAIBackend(
        [url], transport=transport, concurrency=concurrency, timeout_s=60, max_attempts=1
    )
    requests = make_requests(count, f"{transport}-{concurrency}")
    wall, cpu, answers = asyncio.run(_drain(backend, requests))
    failures = sum(answer.text is None for answer in answers)
    return Result(transport, concurrency, count, wall, cpu, failures), requests, answers


def cache_replay_line(requests: list[ChatRequest], answers: list[Response]) -> str:
    """Store `answers` in a fresh ResponseCache, read them all back; both rates, or why not."""
    try:
        from inference.cache import ResponseCache
    except ImportError:
        return "full-cache replay: skipped (inference/cache.py is not there)"
    if not (hasattr(ResponseCache, "put") and hasattr(ResponseCache, "get_many")):
        return "full-cache replay: skipped (ResponseCache has no put/get_many)"
    by_hash = {request.hash: request for request in requests}
    with tempfile.TemporaryDirectory() as folder, ResponseCache(Path(folder) / "c.db") as cache:
        started = time.perf_counter()
        for answer in answers:
            cache.put(by_hash[answer.request_hash], answer)
        stored = time.perf_counter() - started
        started = time.perf_counter()
        found = cache.get_many(by_hash)
        replayed = time.perf_counter() - started
    if len(found) != len(answers):
        return f"full-cache replay: !!! {len(found)} of {len(answers)} answers read back"
    return (
        f"full-cache replay of {len(found)} answers: read back {len(found) / replayed:,.0f}/s "
        f"(storing them: {len(answers) / stored:,.0f}/s)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="openai backend throughput")
    parser.add_argument("--latency-s", type=float, default=0.2)
    parser.add_argument("--seconds", type=float, default=3.0, help="ideal seconds per level")
    parser.add_argument("--levels", type=int, nargs="+", default=list(LEVELS))
    parser.add_argument("--transports", nargs="+", default=list(TRANSPORTS), choices=TRANSPORTS)
    args = parser.parse_args(argv)

    server, url = start_server(args.latency_s)
    try:
        print(f"server latency {args.latency_s * 1000:.0f} ms; client CPU = this process only")
        print("transport  conc   reqs     req/s   ideal  %ideal  cpu ms/req  fail")
        failed = 0
        for transport in args.transports:
            for level in args.levels:
                count = max(3 * level, round(level / args.latency_s * args.seconds))
                result, requests, answers = measure(url, transport, level, count)
                failed += result.failures
                print(result.row(args.latency_s), flush=True)
        print(cache_replay_line(requests, answers))
    finally:
        server.terminate()
        server.wait(10)
    if failed:
        print(f"!!! {failed} requests failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
