"""Decisions for one arm over a range of decision dates, exactly once, resumable.

Phase A sends every snapshot of the range to the backend as one batch (prompts hold no
position, so dates are independent), looking each request up in the cache first and storing
each response the moment it arrives. Phase B is cheap and sequential per ticker: parse, apply
the previous exposure and the Strict guardrail, and write one Parquet file per decision date
(DESIGN §7 columns) by temp file and rename.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import inspect
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from inference.attitudes import get_attitude
from inference.backends.base import Backend, Response
from inference.backends.reference import DecisionContext, ReferenceBackend
from inference.cache import ResponseCache
from inference.experiments import Arm
from inference.guardrail import apply_guardrail
from inference.parsing import parse_decision
from inference.prompts import DEFAULT_TOKEN_BUDGET, PROMPT_VERSION, Position, render_prompt
from inference.requests import ChatRequest, canonical_json
from inference.strategies import STRATEGIES_SEED
from ingest.load import write_atomically

LLM_DECISIONS_SCHEMA = pa.schema(
    [
        ("arm", pa.string()),
        ("model", pa.string()),
        ("mode", pa.string()),
        ("attitude", pa.string()),
        ("replicate", pa.int64()),
        ("market", pa.string()),
        ("ticker", pa.string()),
        ("decision_date", pa.date32()),
        ("request_hash", pa.string()),
        ("action", pa.string()),  # the action that stands (after parsing and the guardrail)
        ("target_exposure", pa.float64()),  # the exposure that stands from the next open
        ("confidence", pa.float64()),
        ("rule", pa.string()),
        ("reason", pa.string()),
        ("parse_status", pa.string()),
        ("guardrail_status", pa.string()),
        ("prompt_tokens", pa.int64()),
        ("completion_tokens", pa.int64()),
        ("reasoning_tokens", pa.int64()),
        ("latency_ms", pa.float64()),
        ("cached", pa.bool_()),
        ("backend", pa.string()),
        ("raw_response", pa.string()),
        # Beyond DESIGN §7: what the model proposed and why it did not stand.
        ("prompt_version", pa.string()),
        ("proposed_action", pa.string()),
        ("proposed_target_exposure", pa.float64()),
        ("previous_exposure", pa.float64()),
        ("entry_close", pa.float64()),  # last close before the position was opened
        ("parse_error", pa.string()),
        ("violation", pa.string()),
        ("reasoning", pa.string()),
        ("is_llm", pa.bool_()),
    ]
)


@dataclass
class PositionState:
    exposure: float = 0.0
    entry_close: float | None = None


@dataclass
class RunSummary:
    arm: str
    decisions: int = 0
    cache_hits: int = 0
    calls: int = 0
    failures: int = 0
    parse_failures: int = 0
    overridden: int = 0
    files: list[Path] = field(default_factory=list)


def landing_file(data_dir: Path, arm: str, decision_date: date) -> Path:
    return (
        data_dir
        / "landing"
        / "llm_decisions"
        / f"arm={arm}"
        / f"date={decision_date.isoformat()}.parquet"
    )


# What deciding needs besides the prompt: a rerun that finds every request reads only these.
_DECISION_COLUMNS = (
    "market, ticker, decision_date, snapshot_hash, signals, features.last_close as last_close"
)
_ALL_COLUMNS = "*, features.last_close as last_close"


def load_snapshots(
    warehouse: Path, dates: Sequence[date], markets: Sequence[str], columns: str = "*"
) -> list[dict[str, Any]]:
    """The snapshots of these decision dates and markets, in (date, market, ticker) order."""
    if not warehouse.is_file():
        raise FileNotFoundError(f"{warehouse}: no warehouse; run `strat-llm build` first")
    if not dates:
        return []
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        cursor = connection.execute(
            f"select {columns} from pit_snapshots where decision_date between ? and ? and market"
            f" in ({','.join('?' * len(markets))}) order by decision_date, market, ticker",
            [min(dates), max(dates), *markets],
        )
        names = [column[0] for column in cursor.description]
        wanted = set(dates)
        rows = (dict(zip(names, row, strict=True)) for row in cursor.fetchall())
        return [row for row in rows if row["decision_date"] in wanted]


def build_request(arm: Arm, snapshot: dict[str, Any], token_budget: int) -> ChatRequest:
    rendered = render_prompt(snapshot, arm.mode, arm.attitude, None, token_budget=token_budget)
    return ChatRequest.build(
        arm.model.model_id,
        rendered.messages,
        dict(arm.model.sampling),
        prompt_version=rendered.prompt_version,
        replicate=arm.replicate,
        output_format=arm.model.output_format,  # type: ignore[arg-type]
        reasoning=arm.model.reasoning,
    )


@functools.cache
def prompt_fingerprint() -> str:
    """Everything that shapes a prompt besides the snapshot: templates, their Python, the
    strategies' words. A change to any of them changes every snapshot key."""
    digest = hashlib.sha256()
    prompts = Path(inspect.getfile(render_prompt)).parent
    sources = sorted(prompts.rglob("*.j2")) + [prompts / "__init__.py", STRATEGIES_SEED]
    for path in sources:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def request_recipe(arm: Arm, token_budget: int) -> str:
    """Everything of the arm and the prompt that enters a request, besides the snapshot."""
    return canonical_json(
        {
            "model": arm.model.model_id,
            "mode": arm.mode,
            "attitude": arm.attitude,
            "replicate": arm.replicate,
            "sampling": dict(arm.model.sampling),
            "output_format": arm.model.output_format,
            "reasoning": arm.model.reasoning,
            "prompt_version": PROMPT_VERSION,
            "prompt_fingerprint": prompt_fingerprint(),
            "token_budget": token_budget,
        }
    )


def snapshot_key(recipe: str, snapshot: dict[str, Any]) -> str:
    """What a snapshot's request is made of, without rendering it: the recipe and the
    snapshot's content hash (which covers market, ticker and decision date)."""
    return hashlib.sha256(f"{recipe}|{snapshot['snapshot_hash']}".encode()).hexdigest()


def make_backend(arm: Arm, contexts: dict[str, DecisionContext]) -> Backend:
    backend = arm.model.backend
    if backend == "reference":
        return ReferenceBackend(contexts)
    if backend == "openai":
        from inference.backends.openai_backend import OpenAIBackend

        return OpenAIBackend(
            base_urls=list(arm.model.base_urls),
            api_key_env=arm.model.api_key_env,
            concurrency=arm.model.concurrency,
            timeout_s=arm.model.timeout_s,
        )
    if backend == "batch-file":
        from inference.batch import BatchFileBackend

        return BatchFileBackend()
    if backend == "transformers":
        from inference.backends.transformers_backend import TransformersBackend

        return TransformersBackend(arm.model.path or "", batch_size=arm.model.concurrency)
    raise ValueError(f"arm {arm.slug}: backend {backend!r} cannot answer requests directly")


async def _collect(
    requests: list[ChatRequest],
    backend: Backend,
    cache: ResponseCache,
    progress: Callable[[int], None],
) -> dict[str, Response]:
    by_hash = {request.hash: request for request in requests}
    answered: dict[str, Response] = {}
    async for response in backend.run(list(by_hash.values())):
        if response.text is not None:
            cache.put(by_hash[response.request_hash], response)
        answered[response.request_hash] = response
        progress(1)
    return answered


def _previous_state(data_dir: Path, arm: str, before: date) -> dict[tuple[str, str], PositionState]:
    """Positions after the arm's latest decision date before `before` (flat when none)."""
    folder = data_dir / "landing" / "llm_decisions" / f"arm={arm}"
    earlier = sorted(
        path
        for path in folder.glob("date=*.parquet")
        if date.fromisoformat(path.stem.removeprefix("date=")) < before
    )
    if not earlier:
        return {}
    table = pq.read_table(
        earlier[-1], columns=["market", "ticker", "target_exposure", "entry_close"]
    )
    return {
        (row["market"], row["ticker"]): PositionState(row["target_exposure"], row["entry_close"])
        for row in table.to_pylist()
    }


def _progress_bar(total: int, label: str) -> Callable[[int], None]:
    if total == 0 or not sys.stderr.isatty() and not os.environ.get("STRAT_LLM_PROGRESS"):
        return lambda _n: None
    from tqdm import tqdm

    bar = tqdm(total=total, desc=label, unit="req", file=sys.stderr)
    return bar.update


def decision_row(
    arm: Arm,
    snapshot: dict[str, Any],
    request_hash: str,
    response: Response,
    cached: bool,
    state: PositionState,
) -> tuple[dict[str, Any], PositionState]:
    """Parse, apply the previous position and the guardrail; return the row and new state."""
    if response.text is None:
        parsed = None
        parse_status, parse_error = "failed", f"no response: {response.error}"
    else:
        parsed = parse_decision(response.text, arm.mode)
        parse_status, parse_error = parsed.status, parsed.error
    attitude = get_attitude(arm.attitude)
    last_close = snapshot["last_close"]
    unrealized = (
        last_close / state.entry_close - 1.0
        if state.exposure > 0 and state.entry_close and last_close
        else None
    )
    decision = parsed if parsed is not None else _FAILED
    guarded = apply_guardrail(
        decision,
        arm.mode,
        snapshot.get("signals") or {},
        Position(state.exposure, unrealized),
        attitude,
    )
    entry_close = state.entry_close
    if guarded.target_exposure <= 0:
        entry_close = None
    elif state.exposure <= 0:
        entry_close = last_close
    row = {
        "arm": arm.slug,
        "model": arm.model.model_id,
        "mode": arm.mode,
        "attitude": arm.attitude,
        "replicate": arm.replicate,
        "market": snapshot["market"],
        "ticker": snapshot["ticker"],
        "decision_date": snapshot["decision_date"],
        "request_hash": request_hash,
        "action": guarded.action,
        "target_exposure": guarded.target_exposure,
        "confidence": getattr(parsed, "confidence", None),
        "rule": getattr(parsed, "rule", None),
        "reason": getattr(parsed, "reason", None),
        "parse_status": parse_status,
        "guardrail_status": guarded.guardrail_status,
        "prompt_tokens": response.prompt_tokens,
        "completion_tokens": response.completion_tokens,
        "reasoning_tokens": response.reasoning_tokens,
        "latency_ms": response.latency_ms,
        "cached": cached,
        "backend": response.backend,
        "raw_response": response.text,
        "prompt_version": PROMPT_VERSION,
        "proposed_action": getattr(parsed, "action", None),
        "proposed_target_exposure": getattr(parsed, "target_exposure", None),
        "previous_exposure": state.exposure,
        "entry_close": entry_close,
        "parse_error": parse_error,
        "violation": guarded.violation,
        "reasoning": response.reasoning,
        "is_llm": arm.model.is_llm,
    }
    return row, PositionState(guarded.target_exposure, entry_close)


@dataclass(frozen=True)
class _Failed:
    action: None = None
    target_exposure: None = None
    rule: None = None
    status: str = "failed"


_FAILED = _Failed()


def run_arm(
    arm: Arm,
    dates: Sequence[date],
    *,
    data_dir: Path,
    warehouse: Path,
    cache_path: Path,
    markets: Sequence[str] = ("us", "cn"),
    token_budget: int = DEFAULT_TOKEN_BUDGET,
    backend: Backend | None = None,
) -> RunSummary:
    """Decide every snapshot of the arm's dates; one Parquet file per decision date."""
    summary = RunSummary(arm=arm.slug)
    if not dates:
        return summary
    snapshots = load_snapshots(warehouse, dates, markets, _DECISION_COLUMNS)
    recipe = request_recipe(arm, token_budget)
    keys = [snapshot_key(recipe, snapshot) for snapshot in snapshots]
    with ResponseCache(cache_path) as cache:
        # A rerun finds each snapshot's request hash by key and its answer by hash: no prompt is
        # rendered again, and the full snapshots are read only when something is missing.
        hashes = cache.lookup_requests(keys)
        cached = cache.get_many(hashes.values())
        if any(hashes.get(key) not in cached for key in keys):
            snapshots = load_snapshots(warehouse, dates, markets, _ALL_COLUMNS)
        built = {
            index: build_request(arm, snapshot, token_budget)
            for index, (key, snapshot) in enumerate(zip(keys, snapshots, strict=True))
            if hashes.get(key) not in cached
        }
        cache.index_requests((keys[index], request.hash) for index, request in built.items())
        hashes.update((keys[index], request.hash) for index, request in built.items())
        cached.update(cache.get_many(request.hash for request in built.values()))
        missing = [request for request in built.values() if request.hash not in cached]
        answered: dict[str, Response] = {}
        if missing:
            contexts = {
                built[index].hash: DecisionContext(
                    snapshots[index], arm.mode, get_attitude(arm.attitude), arm.replicate
                )
                for index in built
            }
            chosen = backend or make_backend(arm, contexts)
            progress = _progress_bar(len({request.hash for request in missing}), arm.slug)
            answered = asyncio.run(_collect(missing, chosen, cache, progress))
    summary.cache_hits = len({hashes[key] for key in keys if hashes[key] in cached})
    summary.calls = len(answered)
    summary.failures = sum(1 for response in answered.values() if response.text is None)

    state = _previous_state(data_dir, arm.slug, min(dates))
    rows_by_date: dict[date, list[dict[str, Any]]] = {}
    for key, snapshot in zip(keys, snapshots, strict=True):
        request_hash = hashes[key]
        response = cached.get(request_hash) or answered[request_hash]
        position = (snapshot["market"], snapshot["ticker"])
        row, state[position] = decision_row(
            arm,
            snapshot,
            request_hash,
            response,
            request_hash in cached,
            state.get(position, PositionState()),
        )
        rows_by_date.setdefault(snapshot["decision_date"], []).append(row)
    # One Arrow conversion for the run, then one slice per decision date (rows are in date order).
    ordered = [row for _, rows in sorted(rows_by_date.items()) for row in rows]
    table = pa.Table.from_pylist(ordered, schema=LLM_DECISIONS_SCHEMA)
    offset = 0
    for decision_date, rows in sorted(rows_by_date.items()):
        path = landing_file(data_dir, arm.slug, decision_date)
        part = table.slice(offset, len(rows))
        write_atomically(path, lambda target, part=part: pq.write_table(part, target))
        offset += len(rows)
        summary.files.append(path)
        summary.decisions += len(rows)
        summary.parse_failures += sum(row["parse_status"] == "failed" for row in rows)
        summary.overridden += sum(row["guardrail_status"] == "overridden" for row in rows)
    return summary
