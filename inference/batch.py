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
from inference.backends.transport import MalformedBody
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


# What a line of a batch output file holds (vllm run-batch and the OpenAI Batch API alike).
_LINE_FORMAT = (
    '{"custom_id": ..., "response": {"status_code": 200, "body": <chat completion>}} or '
    '{"custom_id": ..., "error": ...}'
)


class BatchFileError(ValueError):
    """The file as a whole is not a batch output file: nothing was stored."""


def _response_of(line: object, number: int, source: Path) -> Response:
    if not isinstance(line, dict):
        raise ValueError(f"{source} line {number}: not a JSON object; expected {_LINE_FORMAT}")
    custom_id = line.get("custom_id")
    if not isinstance(custom_id, str):
        raise ValueError(f"{source} line {number}: no custom_id; expected {_LINE_FORMAT}")
    error = line.get("error")
    response = line.get("response")
    if not error and not isinstance(response, dict):
        raise ValueError(
            f"{source} line {number}: neither a response nor an error; expected {_LINE_FORMAT}"
        )
    status = (response or {}).get("status_code")
    if not error and status is None:
        raise ValueError(f"{source} line {number}: response has no status_code")
    if error or status != 200:
        detail = (error or {}).get("message") if isinstance(error, dict) else error
        return Response(
            custom_id,
            NAME,
            None,
            error=f"batch error: {detail or f'HTTP {status}'}",
            error_class="batch_error",
        )
    try:
        return parse_completion(response.get("body")).response(custom_id, NAME)
    except MalformedBody as malformed:
        raise ValueError(
            f"{source} line {number}: the body of HTTP 200 is not a chat completion: {malformed}"
        ) from malformed


def _read_lines(path: Path) -> list[tuple[int, str]]:
    """The non-empty lines; a file whose first one is not JSON is refused whole (a CSV, a
    request file or a binary would otherwise become one failure per line)."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise BatchFileError(f"{path}: not UTF-8 text, so not a JSONL batch output file") from error
    lines = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not lines:
        raise BatchFileError(f"{path}: empty; expected one JSON line per request: {_LINE_FORMAT}")
    number, first = lines[0]
    try:
        json.loads(first)
    except json.JSONDecodeError as error:
        raise BatchFileError(
            f"{path}: not a JSONL batch output file (line {number} is not JSON: {error}); "
            "import the output file of vllm run-batch or the OpenAI Batch API"
        ) from error
    return lines


def import_batch(path: Path, cache_path: Path) -> ImportSummary:
    summary = ImportSummary()
    lines = _read_lines(path)
    with ResponseCache(cache_path) as cache:
        for number, text in lines:
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
