"""OpenAI batch JSONL round trip, for `vllm run-batch` or the OpenAI Batch API.

Export writes one line per uncached request of an arm's range, `custom_id` = request hash and
`body` exactly what the openai backend would send. Import reads the output file (one line per
request: `response.status_code` and `response.body`, or `error`) and stores every usable answer
in the response cache; `strat-llm infer` then turns them into decisions without any call.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from inference.backends.base import Response
from inference.backends.openai_backend import parse_completion, request_body
from inference.cache import ResponseCache
from inference.engine import build_request, load_snapshots
from inference.experiments import Arm
from inference.prompts import DEFAULT_TOKEN_BUDGET
from inference.requests import ChatRequest

NAME = "batch-file"
CHAT_PATH = "/v1/chat/completions"


@dataclass
class ExportSummary:
    written: int
    already_answered: int
    path: Path


@dataclass
class ImportSummary:
    stored: int = 0
    failed: list[str] = field(default_factory=list)  # "custom_id: reason"
    unknown: list[str] = field(default_factory=list)  # custom_ids no export asked for


def export_batch(
    arm: Arm,
    dates: Sequence[date],
    out: Path,
    *,
    warehouse: Path,
    cache_path: Path,
    markets: Sequence[str] = ("us", "cn"),
    token_budget: int = DEFAULT_TOKEN_BUDGET,
) -> ExportSummary:
    if arm.position_aware:
        raise ValueError(
            f"arm {arm.slug} is position-aware: its prompt of each date shows the book after the "
            "previous session, so its range cannot be one batch; export the blind arm "
            f"{dataclasses.replace(arm, view='blind').slug} (the ablation that sees no "
            "position) instead"
        )
    snapshots = load_snapshots(warehouse, dates, markets)
    requests = list(
        {r.hash: r for r in (build_request(arm, s, token_budget) for s in snapshots)}.values()
    )
    with ResponseCache(cache_path) as cache:
        answered = cache.get_many(request.hash for request in requests)
        pending = [request for request in requests if request.hash not in answered]
        cache.mark_exported(pending)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as handle:
        for request in pending:
            line = {
                "custom_id": request.hash,
                "method": "POST",
                "url": CHAT_PATH,
                "body": request_body(request),
            }
            handle.write(json.dumps(line, ensure_ascii=False) + "\n")
    return ExportSummary(written=len(pending), already_answered=len(answered), path=out)


def _response_of(line: dict, number: int, source: Path) -> Response:
    custom_id = line.get("custom_id")
    if not isinstance(custom_id, str):
        raise ValueError(f"{source} line {number}: no custom_id")
    error = line.get("error")
    response = line.get("response") or {}
    status = response.get("status_code")
    if error or status != 200:
        detail = (error or {}).get("message") if isinstance(error, dict) else error
        return Response(
            custom_id,
            NAME,
            None,
            error=f"batch error: {detail or f'HTTP {status}'}",
            error_class="batch_error",
        )
    return parse_completion(response.get("body")).response(custom_id, NAME)


def import_batch(path: Path, cache_path: Path) -> ImportSummary:
    summary = ImportSummary()
    with ResponseCache(cache_path) as cache, path.open(encoding="utf-8") as handle:
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                response = _response_of(json.loads(text), number, path)
            except (json.JSONDecodeError, ValueError) as error:
                summary.failed.append(f"line {number}: {error}")
                continue
            if response.text is None:
                summary.failed.append(f"{response.request_hash}: {response.error}")
            elif cache.put_exported(response):
                summary.stored += 1
            else:
                summary.unknown.append(response.request_hash)
    return summary


class BatchFileBackend:
    """Serves nothing itself: a request not answered by an imported batch is a recorded
    failure that says how to get its answer."""

    name = NAME

    async def run(self, requests: Sequence[ChatRequest]) -> AsyncIterator[Response]:
        for request in requests:
            yield Response(
                request.hash,
                NAME,
                None,
                error="not answered by any imported batch: run `strat-llm batch export`, send "
                "the file to `vllm run-batch` or the OpenAI Batch API, then `strat-llm batch "
                "import` the output",
                error_class="not_in_batch",
            )
