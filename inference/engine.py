"""Decisions of several arms over a range of decision dates, date after date, resumable.

A position-aware arm's prompt of date D shows its book after the previous session, so dates
run in order: for each D, the books are rolled forward (by the orchestrator's `BookSource`),
every request of D (all arms x all tickers) goes out together, the answers are parsed, the
guardrail applied against the book, one Parquet file per arm, market and date written (DESIGN
§7 columns, temp file and rename), and the decisions handed back so the books can step. The
blind arms (the ablation) do not depend on the book: their whole range is sent first as one
batch. Every request is looked up in the cache first (by a key of the arm, the snapshot and
the book shown, without rendering) and every response stored the moment it arrives, so a
rerun of a finished range makes no call and a changed book re-asks only what it changes.
Only LLM answers are cached: a rule agent (the `reference` backend) is deterministic and costs
nothing to ask again, so its answers are recomputed on every run rather than stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import hashlib
import inspect
import json
import os
import sys
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Protocol

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from inference.attitudes import get_attitude
from inference.backends.base import Backend, Response
from inference.backends.reference import DecisionContext, RandomBackend, ReferenceBackend
from inference.book import Holding
from inference.cache import ResponseCache
from inference.experiments import Arm
from inference.guardrail import apply_guardrail
from inference.parsing import parse_decision
from inference.prompts import DEFAULT_TOKEN_BUDGET, PROMPT_VERSION, render_prompt
from inference.requests import ChatRequest, canonical_json
from inference.strategies import STRATEGIES_SEED
from ingest.layout import DataLayout
from ingest.load import market_ingest_id, write_atomically

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
        ("previous_exposure", pa.float64()),  # the book's exposure after the previous session
        ("view", pa.string()),  # aware (the prompt showed the book) | blind (the ablation)
        ("book_date", pa.date32()),  # the session the book was after; null: no book yet
        ("book_hash", pa.string()),  # the book row's row_hash: a decision on an old book is stale
        ("parse_error", pa.string()),
        ("violation", pa.string()),
        ("reasoning", pa.string()),
        ("is_llm", pa.bool_()),
        ("is_reasoning", pa.bool_()),  # the arm ran with reasoning on (part of the arm)
        # A request that got no answer is neither a decision nor a violation: `no_answer`,
        # with its error class (inference.backends.base.ERROR_CLASSES) and message; action,
        # target and parse status are null, the guardrail not applicable, the book kept.
        ("answer_status", pa.string()),  # answered | no_answer
        ("error_class", pa.string()),
        ("error", pa.string()),
        # Lineage: the snapshot the prompt was made of (pit_snapshots.snapshot_hash), the
        # ingest of the market's raw data (ingest.load.ingest_id) and the arm's configuration
        # (engine.config_hash: model, sampling, prompt version and templates, budget).
        ("snapshot_hash", pa.string()),
        ("ingest_id", pa.string()),
        ("config_hash", pa.string()),
    ]
)


@dataclass
class RunSummary:
    arm: str
    decisions: int = 0
    cache_hits: int = 0
    calls: int = 0
    failures: int = 0
    parse_failures: int = 0
    overridden: int = 0
    no_answer: int = 0  # decision rows stored as no_answer
    error_classes: Counter[str] = field(default_factory=Counter)
    first_error: str | None = None
    # The run stopped after this date: every server of a model refused its connections.
    stopped_after: date | None = None
    files: list[Path] = field(default_factory=list)


class BookSource(Protocol):
    """The agents' books, kept by the orchestrator with the backtest's one-session step.

    `before(day)` rolls every (arm, market) book forward through the sessions before `day` and
    returns the rows of the latest book, as table rows (arm, market, ticker and the `book`
    columns); `record(day, rows)` hands over the decisions of `day`; `finish()` steps the last
    decided session. Inference reads books only as these rows: it never imports the backtest.
    """

    def before(self, day: date) -> list[dict[str, Any]]: ...

    def record(self, day: date, rows: list[dict[str, Any]]) -> None: ...

    def finish(self) -> None: ...


# What deciding needs besides the prompt: a rerun that finds every request reads only these.
_DECISION_COLUMNS = "market, ticker, decision_date, snapshot_hash, signals"
_ALL_COLUMNS = "*"


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


def build_request(
    arm: Arm, snapshot: dict[str, Any], token_budget: int, holding: Holding | None = None
) -> ChatRequest:
    """The request the pipeline makes for this arm: an LLM's prompt, a rule agent's inputs."""
    if not arm.model.is_llm:
        return rule_agent_request(arm, snapshot, holding)
    return prompt_request(arm, snapshot, token_budget, holding)


def prompt_request(
    arm: Arm, snapshot: dict[str, Any], token_budget: int, holding: Holding | None = None
) -> ChatRequest:
    """The chat request an LLM arm sends: the rendered prompt and the model's settings."""
    rendered = render_prompt(
        snapshot,
        arm.mode,
        arm.attitude,
        holding,
        token_budget=token_budget,
        position_aware=arm.position_aware,
    )
    return ChatRequest.build(
        arm.model.model_id,
        rendered.messages,
        dict(arm.model.sampling),
        prompt_version=rendered.prompt_version,
        replicate=arm.replicate,
        output_format=arm.model.output_format,  # type: ignore[arg-type]
        reasoning=arm.reasoning,
    )


def rule_agent_request(
    arm: Arm, snapshot: dict[str, Any], holding: Holding | None = None
) -> ChatRequest:
    """A rule agent reads no prompt: it decides from the snapshot and the book themselves
    (inference.backends.reference). Its request names exactly those inputs, so no prompt is
    rendered for it (rendering was a third of a demo's inference time)."""
    inputs = {
        "market": snapshot["market"],
        "ticker": snapshot["ticker"],
        "decision_date": snapshot["decision_date"],
        "snapshot_hash": snapshot["snapshot_hash"],
        "mode": arm.mode,
        "attitude": arm.attitude,
        "view": arm.view,
        # The book row's content hash names the holding; a holding made without one (in
        # tests) is spelled out.
        "holding": None
        if holding is None
        else {"book_date": holding.book_date, "row_hash": holding.row_hash}
        if holding.row_hash
        else dataclasses.asdict(holding),
    }
    content = json.dumps(inputs, sort_keys=True, separators=(",", ":"), default=str)
    return ChatRequest.build(
        arm.model.model_id,
        [{"role": "user", "content": content}],
        dict(arm.model.sampling),
        prompt_version=PROMPT_VERSION,
        replicate=arm.replicate,
        output_format=arm.model.output_format,  # type: ignore[arg-type]
        reasoning=arm.reasoning,
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
            "view": arm.view,
            "sampling": dict(arm.model.sampling),
            "output_format": arm.model.output_format,
            "reasoning": arm.reasoning,
            "prompt_version": PROMPT_VERSION,
            "prompt_fingerprint": prompt_fingerprint(),
            "token_budget": token_budget,
            # A rule agent's decisions change with its rules, not with a prompt.
            **({} if arm.model.is_llm else {"rules_fingerprint": rules_fingerprint()}),
        }
    )


@functools.cache
def rules_fingerprint() -> str:
    """The rule agents' source: a change to their rules changes their configuration hash."""
    source = Path(inspect.getfile(ReferenceBackend)).read_bytes()
    return hashlib.sha256(source).hexdigest()


def config_hash(recipe: str) -> str:
    """The arm's configuration as a short id: what a metric row names as its experiment."""
    return hashlib.sha256(recipe.encode()).hexdigest()[:16]


def snapshot_key(recipe: str, snapshot: dict[str, Any], holding: Holding | None = None) -> str:
    """What a request is made of, without rendering it: the recipe, the snapshot's content
    hash (which covers market, ticker and decision date) and, for an aware arm, the book shown."""
    shown = holding.fingerprint() if holding is not None else "-"
    return hashlib.sha256(f"{recipe}|{snapshot['snapshot_hash']}|{shown}".encode()).hexdigest()


def make_backend(arm: Arm, contexts: Mapping[str, DecisionContext]) -> Backend:
    backend = arm.model.backend
    if backend == "reference":
        return ReferenceBackend(contexts)
    if backend == "random":
        return RandomBackend(contexts)
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


def _progress_bar(total: int, label: str) -> Callable[[int], None]:
    if total == 0 or not sys.stderr.isatty() and not os.environ.get("STRAT_LLM_PROGRESS"):
        return lambda _n: None
    from tqdm import tqdm

    bar = tqdm(total=total, desc=label, unit="date", file=sys.stderr)
    return bar.update


def decision_row(
    arm: Arm,
    snapshot: dict[str, Any],
    request_hash: str,
    response: Response,
    cached: bool,
    holding: Holding | None,
    *,
    ingest_id: str | None = None,
    arm_config_hash: str | None = None,
) -> dict[str, Any]:
    """Parse the answer and apply the guardrail against the book after the previous session.
    No answer is no decision: nothing is parsed or guarded, and the book is kept."""
    answered = response.text is not None
    parsed = parse_decision(response.text, arm.mode) if response.text is not None else None
    guarded = (
        apply_guardrail(
            parsed, arm.mode, snapshot.get("signals") or {}, holding, get_attitude(arm.attitude)
        )
        if parsed is not None
        else None
    )
    return {
        "arm": arm.slug,
        "model": arm.model.model_id,
        "mode": arm.mode,
        "attitude": arm.attitude,
        "replicate": arm.replicate,
        "market": snapshot["market"],
        "ticker": snapshot["ticker"],
        "decision_date": snapshot["decision_date"],
        "request_hash": request_hash,
        "action": getattr(guarded, "action", None),
        "target_exposure": getattr(guarded, "target_exposure", None),
        "confidence": getattr(parsed, "confidence", None),
        "rule": getattr(parsed, "rule", None),
        "reason": getattr(parsed, "reason", None),
        "parse_status": getattr(parsed, "status", None),
        "guardrail_status": getattr(guarded, "guardrail_status", "not_applicable"),
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
        "previous_exposure": holding.exposure if holding is not None else 0.0,
        "view": arm.view,
        "book_date": holding.book_date if holding is not None else None,
        "book_hash": holding.row_hash if holding is not None else None,
        "parse_error": getattr(parsed, "error", None),
        "violation": getattr(guarded, "violation", None),
        "reasoning": response.reasoning,
        "is_llm": arm.model.is_llm,
        "is_reasoning": arm.reasoning,
        "answer_status": "answered" if answered else "no_answer",
        "error_class": None if answered else (response.error_class or "internal"),
        "error": response.error,
        "snapshot_hash": snapshot["snapshot_hash"],
        "ingest_id": ingest_id,
        "config_hash": arm_config_hash,
    }


@dataclass
class _Item:
    """One arm's request for one snapshot: its cache key, then its hash and answer."""

    arm: Arm
    snapshot: dict[str, Any]
    holding: Holding | None
    key: str
    request: ChatRequest | None = None
    request_hash: str | None = None


class _Asker:
    """Finds each item's answer: by key and hash in the cache, else by asking its backend;
    everything asked in one `answer` call goes out together (one batch per backend). One event
    loop serves every call, and a backend that can keep its connections open between batches
    (`kept_connections`) does so until `close`: dates are asked one after the other."""

    def __init__(
        self,
        cache: ResponseCache,
        token_budget: int,
        full_snapshots: Callable[[], dict[tuple[str, str, date], dict[str, Any]]],
        backend: Backend | None,
        summaries: dict[str, RunSummary],
    ) -> None:
        self.cache, self.token_budget, self.backend = cache, token_budget, backend
        self._full_snapshots, self.summaries = full_snapshots, summaries
        self.answers: dict[str, Response] = {}
        self.cached: set[str] = set()
        self._loop = asyncio.new_event_loop()
        self._kept = contextlib.AsyncExitStack()
        self._backends: dict[str, Backend] = {}

    def close(self) -> None:
        try:
            self._loop.run_until_complete(self._kept.aclose())
        finally:
            self._loop.close()

    async def _backend_for(self, items: list[_Item]) -> Backend:
        """The injected backend, else the model's: a rule agent's reads this batch's
        contexts; a server's is made once and keeps its connections."""
        if self.backend is not None:
            return self.backend
        arm = items[0].arm
        if not arm.model.is_llm:
            contexts = {
                item.request_hash: DecisionContext(
                    item.snapshot,
                    item.arm.mode,
                    get_attitude(item.arm.attitude),
                    item.arm.replicate,
                    item.holding,
                    item.arm.slug,
                )
                for item in items
            }
            return make_backend(arm, contexts)
        if arm.model.key not in self._backends:
            backend = make_backend(arm, {})
            keep = getattr(backend, "kept_connections", None)
            if keep is not None:
                await self._kept.enter_async_context(keep())
            self._backends[arm.model.key] = backend
        return self._backends[arm.model.key]

    def answer(self, items: list[_Item]) -> None:
        hashes = self.cache.lookup_requests(item.key for item in items if _kept(item.arm))
        found = self.cache.get_many(
            hashes[item.key]
            for item in items
            if item.key in hashes and hashes[item.key] not in self.answers
        )
        self.answers.update(found)
        self.cached.update(found)
        for item in items:
            item.request_hash = hashes.get(item.key)
        unanswered = [item for item in items if item.request_hash not in self.answers]
        if unanswered:
            full = self._full_snapshots()
            for item in unanswered:
                snapshot = full[_snapshot_id(item.snapshot)]
                item.request = build_request(item.arm, snapshot, self.token_budget, item.holding)
                item.request_hash = item.request.hash
                item.snapshot = snapshot
            kept = [item for item in unanswered if _kept(item.arm)]
            self.cache.index_requests((item.key, item.request_hash) for item in kept)
            found = self.cache.get_many(item.request_hash for item in kept)
            self.answers.update(found)
            self.cached.update(found)
            missing = [item for item in unanswered if item.request_hash not in self.answers]
            if missing:
                self._loop.run_until_complete(self._ask(missing))

    async def _ask(self, items: list[_Item]) -> None:
        by_model: dict[str, list[_Item]] = defaultdict(list)
        for item in items:
            by_model[item.arm.model.key].append(item)
        await asyncio.gather(*(self._ask_one_backend(group) for group in by_model.values()))

    async def _ask_one_backend(self, items: list[_Item]) -> None:
        requests = {item.request_hash: item for item in items}
        backend = await self._backend_for(items)
        unique = [item.request for item in requests.values() if item.request is not None]
        async for response in backend.run(unique):
            item = requests[response.request_hash]
            if response.text is not None and _kept(item.arm):
                self.cache.put(item.request, response)
            self.answers[response.request_hash] = response
            summary = self.summaries[item.arm.slug]
            summary.calls += 1
            summary.failures += response.text is None


def _kept(arm: Arm) -> bool:
    """Whether the cache keeps this arm's answers: an LLM's, not a rule agent's, which are
    recomputed for nothing (deterministic) and would only fill the cache."""
    return arm.model.is_llm


def _snapshot_id(snapshot: Mapping[str, Any]) -> tuple[str, str, date]:
    return snapshot["market"], snapshot["ticker"], snapshot["decision_date"]


def run_agents(
    arms: Sequence[Arm],
    dates: Sequence[date],
    *,
    layout: DataLayout,
    books: BookSource,
    markets: Sequence[str] = ("us", "cn"),
    token_budget: int = DEFAULT_TOKEN_BUDGET,
    backend: Backend | None = None,
    progress: Callable[[int], None] | None = None,
) -> dict[str, RunSummary]:
    """Decide every snapshot of these dates for every arm, date after date (module doc)."""
    for arm in arms:
        if arm.position_aware and arm.model.backend == "batch-file":
            raise ValueError(
                f"arm {arm.slug}: a position-aware arm decides date after date (its prompt shows "
                "the book after the previous session), which a batch file cannot answer; run "
                f"the blind arm {dataclasses.replace(arm, view='blind').slug} for batch files, or "
                "serve the model (openai backend)"
            )
    summaries = {arm.slug: RunSummary(arm=arm.slug) for arm in arms}
    days = sorted(set(dates))
    snapshots = load_snapshots(layout.warehouse, days, markets, _DECISION_COLUMNS)
    by_day: dict[date, list[dict[str, Any]]] = defaultdict(list)
    for snapshot in snapshots:
        by_day[snapshot["decision_date"]].append(snapshot)
    full: dict[tuple[str, str, date], dict[str, Any]] = {}

    def full_snapshots() -> dict[tuple[str, str, date], dict[str, Any]]:
        if not full:  # read the whole snapshots once, and only when a prompt must be rendered
            rows = load_snapshots(layout.warehouse, days, markets, _ALL_COLUMNS)
            full.update((_snapshot_id(row), row) for row in rows)
        return full

    recipes = {arm.slug: request_recipe(arm, token_budget) for arm in arms}
    configs = {slug: config_hash(recipe) for slug, recipe in recipes.items()}
    ingests = {market: market_ingest_id(layout, market) for market in markets}
    step = progress or _progress_bar(len(by_day), "decision dates")
    with (
        ResponseCache(layout.response_cache) as cache,
        contextlib.closing(
            _Asker(cache, token_budget, full_snapshots, backend, summaries)
        ) as asker,
    ):
        blind = [arm for arm in arms if not arm.position_aware]
        # The blind arms' whole range first, as one batch: their prompts do not need the book.
        asker.answer(
            [
                _Item(arm, snapshot, None, snapshot_key(recipes[arm.slug], snapshot))
                for arm in blind
                for snapshot in snapshots
            ]
        )
        for day in days:
            if day not in by_day:
                continue
            held = _holdings(books.before(day))
            items = [
                _Item(arm, snapshot, holding, snapshot_key(recipes[arm.slug], snapshot, shown))
                for arm in arms
                for snapshot in by_day[day]
                for holding in [held.get((arm.slug, snapshot["market"], snapshot["ticker"]))]
                for shown in [holding if arm.position_aware else None]
            ]
            asker.answer(items)
            rows = [
                decision_row(
                    item.arm,
                    item.snapshot,
                    item.request_hash or "",
                    asker.answers[item.request_hash or ""],
                    item.request_hash in asker.cached,
                    item.holding,
                    ingest_id=ingests.get(item.snapshot["market"]),
                    arm_config_hash=configs[item.arm.slug],
                )
                for item in items
            ]
            _write_decisions(layout, day, rows, summaries)
            books.record(day, rows)
            step(1)
            if any(row["error_class"] == "unreachable" for row in rows):
                # Asking on would only write more rows without an answer: stop after this date.
                for summary in summaries.values():
                    summary.stopped_after = day
                break
        books.finish()
    return summaries


def _holdings(rows: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str, str], Holding]:
    return {(row["arm"], row["market"], row["ticker"]): Holding.from_row(row) for row in rows}


def _write_decisions(
    layout: DataLayout,
    day: date,
    rows: list[dict[str, Any]],
    summaries: dict[str, RunSummary],
) -> None:
    """One Parquet file per arm and market of this decision date."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(row["arm"], row["market"])].append(row)
    for (arm, market), part in groups.items():
        table = pa.Table.from_pylist(part, schema=LLM_DECISIONS_SCHEMA)
        path = layout.decision_file(arm, market, day)
        write_atomically(path, lambda target, table=table: pq.write_table(table, target))
        summary = summaries[arm]
        summary.files.append(path)
        summary.decisions += len(part)
        summary.cache_hits += sum(row["cached"] for row in part)
        summary.parse_failures += sum(row["parse_status"] == "failed" for row in part)
        summary.overridden += sum(row["guardrail_status"] == "overridden" for row in part)
        unanswered = [row for row in part if row["answer_status"] == "no_answer"]
        summary.no_answer += len(unanswered)
        summary.error_classes.update(row["error_class"] for row in unanswered)
        if unanswered and summary.first_error is None:
            summary.first_error = unanswered[0]["error"]
