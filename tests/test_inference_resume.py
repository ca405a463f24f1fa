"""Against a real OpenAI-protocol server on 127.0.0.1: kill the inference process mid-range
with SIGKILL, rerun, and count: no response lost, nothing answered before the kill asked
again, every snapshot ends as a decision row; the API key reaches no file. A blind arm: its
whole range is one batch, so the kill lands in the middle of it."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import duckdb

from dagster_project.inference_assets import decide
from inference.engine import build_request, load_snapshots
from inference.experiments import load_experiment
from ingest.calendars import sessions
from ingest.layout import DataLayout
from tests.openai_server import OpenAIServer

DAYS = sessions("us", "2025-03-03", "2025-03-14")
KEY_CANARY = "sk-canary-do-not-store-4242"

CHILD = """
import sys
from datetime import date
from pathlib import Path
from dagster_project.inference_assets import decide
from inference.experiments import load_experiment
from ingest.layout import DataLayout
layout = DataLayout(Path(sys.argv[1]))
base_url, days = sys.argv[2], sys.argv[3].split(",")
arm = load_experiment().arm("fake__free__blind", base_url=base_url)
decide([arm], [date.fromisoformat(d) for d in days], layout)
"""


def _cached_hashes(cache: Path) -> set[str]:
    if not cache.exists():
        return set()
    with sqlite3.connect(cache) as connection:
        try:
            rows = connection.execute("select request_hash from responses").fetchall()
        except sqlite3.OperationalError:  # the child has created the file, not yet its tables
            return set()
        return {row[0] for row in rows}


def test_sigkill_mid_range_then_rerun_loses_nothing_and_repeats_nothing(
    sample_copy: DataLayout, monkeypatch
):
    monkeypatch.setenv("OPENAI_API_KEY", KEY_CANARY)
    data = sample_copy.data_dir
    cache = sample_copy.response_cache
    arm_for = load_experiment().arm
    with OpenAIServer(latency_s=0.2) as server:
        arm = arm_for("fake__free__blind", base_url=server.base_url)
        snapshots = [s for s in load_snapshots(sample_copy.warehouse, DAYS, ["us", "cn"])]
        hash_by_messages = {
            json.dumps(build_request(arm, s, 3000).message_dicts()): build_request(
                arm, s, 3000
            ).hash
            for s in snapshots
        }
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(data), server.base_url, ",".join(map(str, DAYS))],
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
        )
        deadline = time.monotonic() + 120
        while len(_cached_hashes(cache)) < 60 and time.monotonic() < deadline:
            assert child.poll() is None, "the child finished before it could be killed"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
        child.wait()
        answered_before_kill = _cached_hashes(cache)
        assert 60 <= len(answered_before_kill) < len(snapshots)

        summary = decide([arm], DAYS, sample_copy)[0][arm.slug]
        received = [hash_by_messages[json.dumps(r.body["messages"])] for r in server.requests]

    assert summary.decisions == len(snapshots) and summary.failures == 0
    assert summary.cache_hits == len(answered_before_kill)
    # 0 lost: every snapshot is a row; 0 sent twice: nothing answered before the kill was
    # asked again (only requests in flight at the kill, never stored, were sent again).
    sent_twice = {h for h in received if received.count(h) > 1}
    assert not (sent_twice & answered_before_kill)
    assert len(sent_twice) <= 16  # at most the child's concurrency was in flight
    assert set(received) == set(hash_by_messages.values())
    rows = duckdb.sql(
        f"select count(*), count(distinct request_hash) from "
        f"'{data}/landing/llm_decisions/arm=fake__free__blind/*/*.parquet'"
    ).fetchall()[0]
    assert rows == (len(snapshots), len(set(hash_by_messages.values())))
    for path in [cache, *data.glob("landing/llm_decisions/arm=fake__free__blind/*/*.parquet")]:
        assert KEY_CANARY.encode() not in path.read_bytes(), path
