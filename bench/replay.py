"""Cached decisions per second: the whole decision path of a finished partition rerun.

Generates the 500-ticker bench market of `pit_build.py` (252 sessions by default), builds
`pit_snapshots` with dbt, answers every snapshot once through the openai backend from the test
server (`tests/openai_server.py`, in a process of its own; this renders every prompt and fills
the response cache; rule agents are never cached), then reruns the same arm and times the replay:
date after date, the books stepped, snapshot keys (with the book shown) looked up in the cache,
answers read back, parsed, the guardrail applied, one Parquet file per date written, with zero
backend calls. Target: >= 20 000 decisions/s (set for the position-blind engine, when a replay
did not step books).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))

from pit_build import Dataset, PitVars, build_with_dbt, generate  # noqa: E402

from dagster_project.inference_assets import decide  # noqa: E402
from inference.experiments import Arm, load_experiment  # noqa: E402
from ingest.layout import DataLayout  # noqa: E402
from tests.openai_server import spawn  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=252)
    parser.add_argument("--arm", default="bench-model__strict", help="answered by the server")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="replay_") as folder:
        data_dir = Path(folder)
        dataset = generate(data_dir, args.sessions, PitVars.from_project())
        _, snapshots = build_with_dbt(dataset)
        server, base_url = spawn(0.0, cwd=str(ROOT))
        try:
            arm = load_experiment().arm(args.arm, base_url)
            return _replay(arm, dataset, snapshots, DataLayout(data_dir), args.repeats)
        finally:
            server.kill()


def _replay(arm: Arm, dataset: Dataset, snapshots: int, layout: DataLayout, repeats: int) -> int:
    days = list(dataset.decisions)
    started = time.perf_counter()
    first = decide([arm], days, layout, markets=["us"])[0][arm.slug]
    seconds = time.perf_counter() - started
    print(
        f"{snapshots} snapshots; first run: {first.calls} calls in {seconds:.1f} s "
        f"({first.decisions / seconds:,.0f} decisions/s, prompts rendered)"
    )
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        replay = decide([arm], days, layout, markets=["us"])[0][arm.slug]
        seconds = time.perf_counter() - started
        if replay.calls:
            print(f"!!! the replay made {replay.calls} calls")
            return 1
        rates.append(replay.decisions / seconds)
        print(
            f"replay: {replay.decisions} decisions, 0 calls, {seconds:.2f} s, "
            f"{rates[-1]:,.0f} decisions/s"
        )
    print(f"best replay: {max(rates):,.0f} cached decisions/s (target >= 20,000)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
