"""Decisions per second of `inference.engine.run_agents`: position-aware against blind arms.

A position-aware arm's prompt of date D shows its book after D-1, so the engine sends its
requests one decision date at a time (all arms x tickers of D together), parses them, steps
the books (`backtest.book.BookKeeper`) and only then asks D+1; a blind arm's whole range goes
out as one batch. This script measures what that costs against a model server with a fixed
200 ms latency: the same 9 arm shapes over the same decision dates, once all aware and once
all blind, side by side in one run, and prints the ratio of the wall times (target: aware
within 1.5x of blind).

- Data: the embedded SYNTHETIC sample market (`strat-llm ingest --source sample` then
  `strat-llm build`) from 2024-07-01 to 2025-06-30: 14 tickers in each of the two markets,
  28 tickers in all (the sample's universe is fixed, so not 30), 260 decision dates (the
  union of the XNYS and XSHG sessions), 6 888 snapshots. Built once (90-130 s) into
  `--data DIR` and reused by later runs.
- Server: `tests/openai_server.py` in its own process (`--latency-s 0.2 --no-record`, as
  `bench/inference.py` starts it), so its CPU is not this process's; it answers every request
  with a valid decision JSON derived from a hash of the messages (buy, sell or hold, an
  exposure), so the aware books move.
- Arms (`--arms`): `models` (default): three model keys m1, m2, m3 (each its own `OpenAIBackend`
  with concurrency `--concurrency`, all pointing at the one server) x the three modes;
  `attitudes`: one model x three modes x no attitude, conservative, aggressive (a single
  backend, so at most `--concurrency` requests in flight). The blind view is the same nine
  arms with `view="blind"` (slugs ending in `__blind`).
- Each run starts with no `landing/llm_decisions`, `landing/book` or `cache/` in the data
  directory, so every request is a call; the books are a `BookKeeper` over the arms' slugs,
  as `dagster_project.inference_assets.run_agent_range` wires them. Only `run_agents` is
  timed. Views alternate (aware, blind, then blind, aware, ...) over `--repeats`; the best
  wall time of each is reported.

Printed per view: arms, tickers, sessions, requests (arms x snapshots), wall s, decisions/s,
calls, this process's CPU s, the seconds spent in the book source (rolling and recording
books), and the ideal wall time (latency x the waves of `--concurrency` requests each model's
batch needs: per date for aware, once for blind). Any failed call, parse failure or missing
decision prints `!!!` and the script exits non-zero.

Run: `.venv/bin/python bench/agents.py` (the year: 4-7 minutes after a 1.5-2 minute build);
`.venv/bin/python bench/agents.py --sessions 20` for a quick check.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import duckdb  # noqa: E402

from backtest.book import BookKeeper  # noqa: E402
from inference.engine import run_agents  # noqa: E402
from inference.experiments import Arm, ModelConfig  # noqa: E402
from ingest.layout import DataLayout  # noqa: E402
from tests.openai_server import spawn  # noqa: E402

START, END = "2024-07-01", "2025-06-30"
MARKETS = ("us", "cn")
MODES = ("free", "guided", "strict")
ATTITUDES = (None, "conservative", "aggressive")
VIEWS = ("aware", "blind")
DEFAULT_DATA = Path(tempfile.gettempdir()) / "strat_llm_bench_agents"


def start_server(latency_s: float) -> tuple[subprocess.Popen[str], str]:
    """The test server in its own process; returns it and its base URL."""
    return spawn(latency_s, cwd=str(ROOT))


def build_data(data_dir: Path) -> DataLayout:
    """The sample market ingested and built into `data_dir`, unless it already is."""
    layout = DataLayout(data_dir.resolve())
    marker = layout.data_dir / "bench_agents.json"
    wanted = {"source": "sample", "start": START, "end": END}
    if marker.is_file() and json.loads(marker.read_text()) == wanted:
        return layout
    shutil.rmtree(layout.data_dir, ignore_errors=True)
    layout.data_dir.mkdir(parents=True)
    log = layout.data_dir / "build.log"
    print(f"building the sample market {START} .. {END} into {layout.data_dir} (about 90 s)")
    started = time.perf_counter()
    cli = [sys.executable, "-m", "dagster_project.cli", "--data-dir", str(layout.data_dir)]
    with log.open("w") as out:
        for command in (
            ["ingest", "--source", "sample", "--start", START, "--end", END],
            ["build"],
        ):
            done = subprocess.run(cli + command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
            if done.returncode:
                raise SystemExit(f"!!! strat-llm {command[0]} failed; see {log}")
    marker.write_text(json.dumps(wanted))
    print(f"built in {time.perf_counter() - started:.0f} s")
    return layout


def decision_dates(layout: DataLayout) -> tuple[list[date], Counter[date], int]:
    """Every decision date of `pit_snapshots`, the snapshots per date, and the tickers."""
    with duckdb.connect(str(layout.warehouse), read_only=True) as connection:
        rows = connection.execute(
            "select decision_date, count(*) from pit_snapshots group by all order by 1"
        ).fetchall()
        (tickers,) = connection.execute(
            "select count(distinct (market, ticker)) from pit_snapshots"
        ).fetchone()
    return [day for day, _ in rows], Counter(dict(rows)), int(tickers)


def make_arms(shape: str, view: str, url: str, concurrency: int) -> list[Arm]:
    def model(key: str) -> ModelConfig:
        return ModelConfig(
            key=key,
            backend="openai",
            model_id=f"bench-{key}",
            base_urls=(url,),
            api_key_env=None,
            sampling=(("temperature", 0.0),),
            concurrency=concurrency,
            timeout_s=60.0,
        )

    if shape == "models":
        return [Arm(model(key), mode, view=view) for key in ("m1", "m2", "m3") for mode in MODES]
    return [Arm(model("m1"), mode, attitude, view=view) for mode in MODES for attitude in ATTITUDES]


class TimedBooks:
    """The `BookSource` protocol around a BookKeeper, adding up the seconds spent in it."""

    def __init__(self, keeper: BookKeeper) -> None:
        self.keeper, self.seconds = keeper, 0.0

    def _timed(self, method: str, *args: Any) -> Any:
        started = time.perf_counter()
        try:
            return getattr(self.keeper, method)(*args)
        finally:
            self.seconds += time.perf_counter() - started

    def before(self, day: date) -> list[dict[str, Any]]:
        return self._timed("before", day)

    def record(self, day: date, rows: list[dict[str, Any]]) -> None:
        self._timed("record", day, rows)

    def finish(self) -> None:
        self._timed("finish")


@dataclass(frozen=True)
class Result:
    view: str
    arms: int
    sessions: int
    requests: int
    wall_s: float
    cpu_s: float
    book_s: float
    decisions: int
    calls: int
    failures: int
    parse_failures: int


def ideal_seconds(
    arms: list[Arm], view: str, per_day: list[int], latency_s: float, concurrency: int
) -> float:
    """Latency x the waves of `concurrency` requests each model's batch needs (models run in
    parallel): one batch per date for aware arms, one batch for the whole range for blind."""
    per_model = Counter(arm.model.key for arm in arms).values()
    batches = per_day if view == "aware" else [sum(per_day)]
    return sum(
        latency_s * max(math.ceil(n * count / concurrency) for n in per_model) for count in batches
    )


def fresh(layout: DataLayout) -> None:
    """No decisions, books or cached responses: every request of the next run is a call."""
    for folder in (layout.landing_dir / "llm_decisions", layout.landing_dir / "book"):
        shutil.rmtree(folder, ignore_errors=True)
    shutil.rmtree(layout.response_cache.parent, ignore_errors=True)


def run_view(layout: DataLayout, arms: list[Arm], days: list[date], snapshots: int) -> Result:
    fresh(layout)
    books = TimedBooks(BookKeeper(layout, [arm.slug for arm in arms], list(MARKETS)))
    wall, cpu = time.perf_counter(), time.process_time()
    summaries = run_agents(
        arms, days, layout=layout, books=books, markets=MARKETS, progress=lambda _n: None
    )
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    totals = Counter()
    for summary in summaries.values():
        for name in ("decisions", "calls", "failures", "parse_failures"):
            totals[name] += getattr(summary, name)
    return Result(
        arms[0].view,
        len(arms),
        len(days),
        len(arms) * snapshots,
        wall,
        cpu,
        books.seconds,
        totals["decisions"],
        totals["calls"],
        totals["failures"],
        totals["parse_failures"],
    )


HEADER = (
    "view    arms tickers sessions requests  wall s  decisions/s   calls   cpu s  book s  ideal s"
)


def row(result: Result, tickers: int, ideal: float) -> str:
    return (
        f"{result.view:<7} {result.arms:>4} {tickers:>7} {result.sessions:>8} "
        f"{result.requests:>8} {result.wall_s:>7.1f} {result.decisions / result.wall_s:>12,.0f} "
        f"{result.calls:>7} {result.cpu_s:>7.1f} {result.book_s:>7.1f} {ideal:>8.1f}"
    )


def problems(result: Result) -> list[str]:
    found = []
    if result.decisions != result.requests:
        found.append(f"{result.decisions} decisions for {result.requests} requests")
    if result.calls != result.requests:
        found.append(f"{result.calls} calls for {result.requests} requests")
    if result.failures or result.parse_failures:
        found.append(f"{result.failures} failed calls, {result.parse_failures} parse failures")
    return [f"!!! {result.view}: {text}" for text in found]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="built data, reused")
    parser.add_argument("--sessions", type=int, help="only the first N decision dates")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--arms", choices=("models", "attitudes"), default="models")
    parser.add_argument("--concurrency", type=int, default=64, help="per model")
    parser.add_argument("--latency-s", type=float, default=0.2)
    args = parser.parse_args(argv)

    layout = build_data(args.data)
    days, counts, tickers = decision_dates(layout)
    days = days[: args.sessions] if args.sessions else days
    per_day = [counts[day] for day in days]
    snapshots = sum(per_day)
    server, url = start_server(args.latency_s)
    best: dict[str, Result] = {}
    ideal: dict[str, float] = {}
    failed: list[str] = []
    try:
        print(
            f"{args.arms}: {len(days)} decision dates {days[0]} .. {days[-1]}, {tickers} tickers "
            f"({', '.join(MARKETS)}), {snapshots} snapshots; server latency "
            f"{args.latency_s * 1000:.0f} ms, concurrency {args.concurrency} per model"
        )
        print(HEADER, flush=True)
        for repeat in range(args.repeats):
            for view in VIEWS if repeat % 2 == 0 else VIEWS[::-1]:
                arms = make_arms(args.arms, view, url, args.concurrency)
                ideal[view] = ideal_seconds(arms, view, per_day, args.latency_s, args.concurrency)
                result = run_view(layout, arms, days, snapshots)
                failed += problems(result)
                print(row(result, tickers, ideal[view]), flush=True)
                if view not in best or result.wall_s < best[view].wall_s:
                    best[view] = result
    finally:
        server.terminate()
        server.wait(10)
    if args.repeats > 1:
        print(f"best of {args.repeats}:")
        for view in VIEWS:
            print(row(best[view], tickers, ideal[view]))
    ratio = best["aware"].wall_s / best["blind"].wall_s
    verdict = "met" if ratio <= 1.5 else "NOT met"
    print(
        f"aware/blind wall: {ratio:.2f}x (target <= 1.5x: {verdict}); ideal ratio "
        f"{ideal['aware'] / ideal['blind']:.2f}x"
    )
    for line in failed:
        print(line)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
