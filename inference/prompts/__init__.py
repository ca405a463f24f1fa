"""Render one pit_snapshots row into chat messages for a mode and an optional attitude.

Templates are versioned files (`inference/prompts/<version>/`); the version is part of every
request and output row. News and report text are untrusted: length-bounded, stripped of
anything that could close their delimiters or start a new line, and kept inside
<untrusted> markers. The whole prompt is kept under a token budget by leaving out the oldest
news first, and the prompt says how many items it left out.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from inference.attitudes import Attitude, get_attitude
from inference.book import BLOCKED_ORDERS, Holding
from inference.decision import MODES
from inference.strategies import load_strategies

__all__ = ["MODES", "PROMPT_VERSION", "RenderedPrompt", "render_prompt"]

# v2: the position block shows the agent's book (v1 said it was "managed outside").
PROMPT_VERSION = "v2"
DEFAULT_TOKEN_BUDGET = 3000
MAX_HEADLINE_CHARS = 300
MAX_SUMMARY_CHARS = 800
_TEMPLATES = Path(__file__).resolve().parent
_MARKET_NAMES = {
    "us": "New York Stock Exchange (U.S.)",
    "cn": "Shanghai/Shenzhen exchanges (China A-shares)",
}
_MARKET_LABELS = {"us": "U.S.", "cn": "China A-share"}
_CJK = re.compile(r"[\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uff00-\uffef]")


@dataclass(frozen=True)
class RenderedPrompt:
    messages: list[dict[str, str]]
    prompt_version: str
    mode: str
    attitude: str | None
    news_shown: int
    news_omitted: int
    estimated_tokens: int
    metadata: dict[str, Any] = field(default_factory=dict)


def estimate_tokens(text: str) -> int:
    """A tokenizer-free upper estimate: one token per CJK character, one per 3.5 other chars.

    No tokenizer ships offline for every model; the estimate errs on the long side so a
    budget expressed in tokens is kept with real tokenizers too."""
    cjk = len(_CJK.findall(text))
    return cjk + math.ceil((len(text) - cjk) / 3.5)


def untrusted(text: str | None, limit: int) -> str:
    """Third-party text made inert: one line, no angle brackets, bounded length."""
    if not text:
        return ""
    flat = " ".join(str(text).split())
    flat = flat.replace("<", "‹").replace(">", "›")
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


@cache
def _environment(version: str) -> jinja2.Environment:
    folder = _TEMPLATES / version
    if not folder.is_dir():
        raise ValueError(f"unknown prompt version {version!r} (no folder {folder})")
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(folder),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=False,
        trim_blocks=False,
        autoescape=False,
    )


def _number(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def _percent(value: float | None) -> str:
    """A signed change, e.g. a return."""
    return "n/a" if value is None else f"{value * 100:+.2f} %"


def _share(value: float | None) -> str:
    """An unsigned fraction, e.g. a volatility."""
    return "n/a" if value is None else f"{value * 100:.2f} %"


def _utc(value: datetime | str | None) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, str):
        return value
    if value.tzinfo is None:
        raise ValueError(f"timestamp {value} has no time zone; snapshots store UTC instants")
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


def _features(features: dict[str, Any]) -> list[tuple[str, str]]:
    f = features
    return [
        ("last close", _number(f.get("last_close"))),
        ("return 1 session", _percent(f.get("ret_1d"))),
        ("return 5 sessions", _percent(f.get("ret_5d"))),
        ("return 20 sessions", _percent(f.get("ret_20d"))),
        (
            "moving average 5 / 20 / 60",
            " / ".join(_number(f.get(k)) for k in ("ma_5", "ma_20", "ma_60")),
        ),
        ("RSI-14", _number(f.get("rsi_14"), 1)),
        ("volatility of daily returns, 20 sessions", _share(f.get("volatility_20d"))),
        ("volume / 20-session average", _number(f.get("volume_ratio_20d"))),
        ("highest high of the prior 20 sessions", _number(f.get("prior_high_20"))),
        ("lowest low of the prior 10 sessions", _number(f.get("prior_low_10"))),
    ]


def _report(report: dict[str, Any] | None) -> dict[str, Any] | None:
    if not report:
        return None
    figures = [
        ("revenue", _number(report.get("revenue"), 0)),
        ("net income", _number(report.get("net_income"), 0)),
        ("net income growth on the prior year", _percent(report.get("net_income_growth"))),
        ("total assets", _number(report.get("total_assets"), 0)),
        ("total equity", _number(report.get("total_equity"), 0)),
        ("earnings per share", _number(report.get("eps"))),
        ("operating cash flow", _number(report.get("operating_cash_flow"), 0)),
    ]
    return {
        "fiscal_year": report.get("fiscal_year"),
        "period_end": report.get("period_end"),
        "published_at": _utc(report.get("published_at")),
        "figures": figures,
        "summary": untrusted(report.get("summary"), MAX_SUMMARY_CHARS),
    }


def _position(holding: Holding | None) -> dict[str, Any] | None:
    """The book as the prompt words it (numbers formatted once, here)."""
    if holding is None:
        return None
    last_fill = None
    if holding.last_fill_date is not None and holding.last_fill_shares:
        verb = "bought" if holding.last_fill_shares > 0 else "sold"
        last_fill = (
            f"{verb} {_number(abs(holding.last_fill_shares), 0)} shares at "
            f"{_number(holding.last_fill_price)} on {holding.last_fill_date}"
        )
    return {
        "book_date": holding.book_date,
        "held": holding.held,
        "shares": _number(holding.shares, 0),
        "exposure": f"{holding.exposure:.2f}",
        "cash": _number(holding.cash),
        "avg_entry_price": _number(holding.avg_entry_price),
        "entry_date": holding.entry_date or "n/a",
        "sessions_held": holding.sessions_held,
        "unrealized_return": _percent(holding.unrealized_return),
        "last_fill": last_fill,
        "blocked": BLOCKED_ORDERS.get(holding.order_status or ""),
    }


def _system_message(
    mode: str, market: str, attitude: Attitude | None, position_aware: bool, version: str
) -> str:
    template = _environment(version).get_template(f"{mode}.j2")
    return template.render(
        market_name=_MARKET_NAMES[market],
        attitude=attitude,
        position_aware=position_aware,
        stop_loss_enforced=mode == "strict",
        strategies=load_strategies(),
        rule_choices="null" if mode == "free" else '"S1" | "S2" | "S3" | "S4" | null',
    ).strip()


def _user_message(
    snapshot: dict[str, Any],
    mode: str,
    position: Holding | None,
    position_aware: bool,
    news: list[dict],
    omitted: int,
    version: str,
) -> str:
    bars = snapshot.get("price_history") or []
    signals = snapshot.get("signals") or {}
    return (
        _environment(version)
        .get_template("user.j2")
        .render(
            ticker=snapshot["ticker"],
            market_label=_MARKET_LABELS[snapshot["market"]],
            decision_date=snapshot["decision_date"],
            cutoff=_utc(snapshot["information_cutoff"]),
            position_aware=position_aware,
            position=_position(position),
            bars=[
                {
                    "date": bar["date"],
                    **{k: _number(bar[k]) for k in ("open", "high", "low", "close")},
                    "volume": _number(bar["volume"], 0),
                }
                for bar in bars
            ],
            last_price_date=snapshot.get("max_price_date"),
            features=_features(snapshot.get("features") or {}),
            show_signals=mode in ("guided", "strict"),
            signals=[
                {
                    "strategy_id": s.strategy_id,
                    "name": s.name,
                    "entry": bool(signals.get(s.signal_column("entry"))),
                    "exit": bool(signals.get(s.signal_column("exit"))),
                }
                for s in load_strategies()
            ],
            report=_report(snapshot.get("report")),
            news=[
                {
                    "published_at": _utc(item["published_at"]),
                    "source": untrusted(item.get("source"), 60) or "unknown",
                    "headline": untrusted(item.get("headline"), MAX_HEADLINE_CHARS),
                }
                for item in news
            ],
            omitted_news=omitted,
        )
        .strip()
    )


def render_prompt(
    snapshot: dict[str, Any],
    mode: str,
    attitude: str | None = None,
    position: Holding | None = None,
    token_budget: int = DEFAULT_TOKEN_BUDGET,
    version: str = PROMPT_VERSION,
    *,
    position_aware: bool = True,
) -> RenderedPrompt:
    """Messages for one snapshot; news is newest first and trimmed from the oldest to fit.

    A position-aware prompt shows `position`, the book after the previous session (None: the
    sleeve has no session yet, all cash). A blind prompt (the ablation) depends on the
    snapshot alone, so every decision date is independent and a range is one batch."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
    chosen = get_attitude(attitude)
    system = _system_message(mode, snapshot["market"], chosen, position_aware, version)
    news = list(snapshot.get("news") or [])
    omitted = 0
    while True:
        user = _user_message(snapshot, mode, position, position_aware, news, omitted, version)
        tokens = estimate_tokens(system) + estimate_tokens(user)
        if tokens <= token_budget or not news:
            break
        news.pop()  # the list is newest first: drop the oldest
        omitted += 1
    if tokens > token_budget:
        raise ValueError(
            f"{snapshot['market']}/{snapshot['ticker']} {snapshot['decision_date']}: the prompt "
            f"needs about {tokens} tokens without any news, above the budget of {token_budget}"
        )
    return RenderedPrompt(
        messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
        prompt_version=version,
        mode=mode,
        attitude=attitude,
        news_shown=len(news),
        news_omitted=omitted,
        estimated_tokens=tokens,
    )
