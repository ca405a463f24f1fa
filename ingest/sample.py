"""The embedded SYNTHETIC sample market: a deterministic, seeded generator of the raw tables.

Why it exists: no package ships news, annual reports or A-share data for offline use, so the
demo and the tests run on a made-up market built to make the project's research questions
visible (DESIGN §1, §5):

- regimes: the benchmark follows fixed calendar phases per market (`REGIME_PHASES`): long
  uptrends, downtrends and sideways stretches, so regime metrics have something to measure;
- point-in-time leakage pays off: "event" news published after the decision cutoff of session
  D (intraday, or in the last 30 minutes before the open) moves the stock from D's open over
  the next sessions, and an annual report's earnings surprise moves it after the announcement.
  A pipeline that leaks such items into the decision for D profits visibly in a backtest;
  a point-in-time pipeline cannot (it may still trade the legitimately visible after-hours
  news that precedes an opening gap, and the post-announcement drift);
- market rules: CN prices respect the daily price limits (10 % main board, 20 % ChiNext/STAR,
  5 % ST) computed as the exchanges do, volumes come in lots of 100;
- PIT traps: reports filed late and restated reports (same fiscal year, later published_at).

Everything is labelled synthetic (company names, news source, report summaries). The same
seed always gives the same tables: randomness comes only from numpy generators seeded with
the seed and a fixed per-market code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pandas as pd

from ingest.calendars import (
    check_market,
    market_timezone,
    session_close_utc,
    session_open_utc,
    sessions,
)

DEFAULT_START = date(2024, 7, 1)
DEFAULT_END = date(2025, 12, 31)
DEFAULT_SEED = 20240701

SOURCE = "synthetic"
SYNTHETIC = "(synthetic)"

COLUMNS: dict[str, list[str]] = {
    "universe": ["ticker", "name", "sector", "price_limit_pct"],
    "prices": ["ticker", "date", "open", "high", "low", "close", "volume", "adj_factor"],
    "benchmark": ["date", "close", "kind"],
    "news": ["news_id", "ticker", "published_at", "headline", "body", "source"],
    "reports": [
        "report_id",
        "ticker",
        "fiscal_year",
        "period_end",
        "published_at",
        "revenue",
        "net_income",
        "total_assets",
        "total_equity",
        "eps",
        "operating_cash_flow",
        "summary",
    ],
    "corporate_actions": ["ticker", "ex_date", "split_ratio", "cash_dividend", "announced_at"],
}

# Fixed per-market stream codes: the sub-seed must not depend on hash() (salted per process).
_MARKET_CODES: dict[str, int] = {"us": 1, "cn": 2}
_TIMESTAMP_DTYPE = "datetime64[us, UTC]"


# --------------------------------------------------------------------------------------------
# The universe
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TickerSpec:
    """A made-up listed company; `name` is the short name used in headlines."""

    ticker: str
    name: str
    sector: str
    base_price: float  # price level the path starts from
    beta: float  # sensitivity to the benchmark's daily return
    idio_vol: float  # daily idiosyncratic volatility (log)
    shares_m: float  # shares outstanding, millions (eps = net income / shares)
    base_volume_m: float  # typical daily volume, millions of shares
    limit_pct: float | None = None  # CN daily price limit in %; None for US


# Sector names (GICS sectors), short so the universe tables below stay one line per company.
_IT = "Information Technology"
_HEALTH = "Health Care"
_INDUSTRIALS = "Industrials"
_UTILITIES = "Utilities"
_FINANCIALS = "Financials"
_DISCRETIONARY = "Consumer Discretionary"
_MATERIALS = "Materials"
_STAPLES = "Consumer Staples"
_COMMUNICATION = "Communication Services"
_ENERGY = "Energy"
_REAL_ESTATE = "Real Estate"

_US_UNIVERSE: tuple[TickerSpec, ...] = (
    TickerSpec("AXRB", "Apex Robotics", _INDUSTRIALS, 142.0, 1.20, 0.008, 310, 4.2),
    TickerSpec("BLWD", "Bluewood Therapeutics", _HEALTH, 58.0, 0.80, 0.011, 520, 6.1),
    TickerSpec("CDRG", "Cedargrid Utilities", _UTILITIES, 71.0, 0.45, 0.006, 640, 3.3),
    TickerSpec("DNVS", "Dunvale Software", _IT, 265.0, 1.30, 0.009, 180, 2.5),
    TickerSpec("EMBK", "Emberlake Bank", _FINANCIALS, 44.0, 1.05, 0.007, 900, 7.8),
    TickerSpec("FRGT", "Frostgate Logistics", _INDUSTRIALS, 96.0, 0.95, 0.008, 260, 2.9),
    TickerSpec("GLMN", "Glimmer Semiconductors", _IT, 188.0, 1.55, 0.011, 410, 9.5),
    TickerSpec("HRBL", "Harborline Retail", _DISCRETIONARY, 37.0, 1.10, 0.009, 750, 8.8),
    TickerSpec("IVMN", "Ironvale Mining", _MATERIALS, 29.0, 1.00, 0.012, 820, 11.0),
    TickerSpec("JNPK", "Juniper Peak Foods", _STAPLES, 63.0, 0.55, 0.006, 430, 2.7),
    TickerSpec("KSTL", "Kestrel Aerospace", _INDUSTRIALS, 212.0, 1.05, 0.008, 150, 1.6),
    TickerSpec("LMNS", "Lumenstar Media", _COMMUNICATION, 83.0, 1.25, 0.010, 380, 5.4),
    TickerSpec("MRWE", "Marrowind Energy", _ENERGY, 52.0, 0.90, 0.010, 700, 7.2),
    TickerSpec("NVTR", "Novatide Insurance", _FINANCIALS, 118.0, 0.75, 0.006, 240, 1.9),
)

_CN_UNIVERSE: tuple[TickerSpec, ...] = (
    TickerSpec("600123", "Jinghe Steel", _MATERIALS, 6.20, 1.05, 0.009, 4200, 38, 10.0),
    TickerSpec("600456", "Donghai Shipping", _INDUSTRIALS, 11.40, 1.15, 0.010, 2100, 22, 10.0),
    TickerSpec("600789", "Lanshan Pharmaceutical", _HEALTH, 27.80, 0.85, 0.010, 900, 9.0, 10.0),
    TickerSpec("601234", "Tianyuan Bank", _FINANCIALS, 5.30, 0.75, 0.006, 18000, 95, 10.0),
    TickerSpec("601567", "Zhongke Power", _UTILITIES, 8.90, 0.60, 0.006, 5200, 30, 10.0),
    TickerSpec("601678", "Xinghe Insurance", _FINANCIALS, 34.50, 1.00, 0.008, 3100, 16, 10.0),
    TickerSpec("000321", "Nanfeng Liquor", _STAPLES, 142.00, 0.90, 0.008, 1200, 4.5, 10.0),
    TickerSpec("000543", "Hengtong Chemicals", _MATERIALS, 15.60, 1.10, 0.010, 1500, 14.0, 10.0),
    TickerSpec("000654", "Qingyun Auto", _DISCRETIONARY, 22.30, 1.25, 0.011, 1800, 19, 10.0),
    TickerSpec("000987", "Baiyun Property", _REAL_ESTATE, 4.80, 1.30, 0.012, 6000, 52, 10.0),
    TickerSpec("600234", "Yuntu Telecom", _COMMUNICATION, 9.70, 0.95, 0.008, 2600, 21, 10.0),
    TickerSpec("300765", "Ruixin Battery", _INDUSTRIALS, 48.50, 1.45, 0.015, 700, 12, 20.0),
    TickerSpec("688432", "Xinchuang Semiconductor", _IT, 63.20, 1.60, 0.017, 400, 7.0, 20.0),
    TickerSpec("600678", "ST Fuda Textiles", _DISCRETIONARY, 2.85, 0.90, 0.010, 1100, 26, 5.0),
)

UNIVERSES: dict[str, tuple[TickerSpec, ...]] = {"us": _US_UNIVERSE, "cn": _CN_UNIVERSE}


# --------------------------------------------------------------------------------------------
# Benchmark regimes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Phase:
    """A calendar stretch with one benchmark regime (both ends inclusive)."""

    start: date
    end: date
    regime: str  # "uptrend" | "downtrend" | "sideways"


# The ground truth a regime classifier should recover; dates outside every phase are sideways.
REGIME_PHASES: dict[str, tuple[Phase, ...]] = {
    "us": (
        Phase(date(2024, 7, 1), date(2024, 12, 31), "uptrend"),
        Phase(date(2025, 1, 1), date(2025, 4, 30), "downtrend"),
        Phase(date(2025, 5, 1), date(2025, 8, 31), "sideways"),
        Phase(date(2025, 9, 1), date(2025, 12, 31), "uptrend"),
    ),
    "cn": (
        Phase(date(2024, 7, 1), date(2024, 9, 30), "downtrend"),
        Phase(date(2024, 10, 1), date(2025, 2, 28), "uptrend"),
        Phase(date(2025, 3, 1), date(2025, 6, 30), "sideways"),
        Phase(date(2025, 7, 1), date(2025, 9, 30), "uptrend"),
        Phase(date(2025, 10, 1), date(2025, 12, 31), "downtrend"),
    ),
}

BENCHMARK_START: dict[str, float] = {"us": 5000.0, "cn": 3500.0}
# The index's log level is a trend line (daily drift by regime) plus a mean-reverting
# deviation around it. The deviation gives realistic daily noise while keeping each phase's
# outcome reliable for any seed: a 60-session trend moves the index by about +/-14 % (+/- 3),
# a sideways stretch stays within a few percent.
_DRIFT: dict[str, float] = {"uptrend": 0.0023, "downtrend": -0.0025, "sideways": 0.0}
_VOL: dict[str, float] = {"uptrend": 0.008, "downtrend": 0.009, "sideways": 0.005}
_PULL: dict[str, float] = {"uptrend": 0.12, "downtrend": 0.12, "sideways": 0.15}


# --------------------------------------------------------------------------------------------
# Corporate actions
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedAction:
    """A split, bonus issue and/or cash dividend with its ex-date on the first session on or
    after `on`. The dividend is a fraction of the previous close (rounded to cents), so it fits
    any seed's price path; `lead_sessions` None leaves announced_at empty (known only at the
    ex-date's open), else the event is announced after the close that many sessions before."""

    ticker: str
    on: date
    split_ratio: float = 1.0
    dividend_yield: float = 0.0
    lead_sessions: int | None = 10


def _quarterly(ticker: str, day: int, dividend_yield: float) -> tuple[PlannedAction, ...]:
    months = [(2024, 8), (2024, 11), (2025, 2), (2025, 5), (2025, 8), (2025, 11)]
    return tuple(PlannedAction(ticker, date(y, m, day), 1.0, dividend_yield) for y, m in months)


# Per market: a forward split, a bonus issue (CN: 8 bonus shares per 10 with a cash dividend,
# like CATL's 2023 distribution) and cash dividends, one of them never announced in advance.
CORPORATE_ACTIONS: dict[str, tuple[PlannedAction, ...]] = {
    "us": (
        PlannedAction("DNVS", date(2025, 3, 3), split_ratio=2.0, lead_sessions=20),
        PlannedAction("KSTL", date(2025, 6, 2), split_ratio=1.1, lead_sessions=15),
        *_quarterly("CDRG", 15, 0.011),
        *_quarterly("EMBK", 10, 0.008)[:-1],
        PlannedAction("EMBK", date(2025, 11, 10), dividend_yield=0.008, lead_sessions=None),
    ),
    "cn": (
        PlannedAction("000321", date(2025, 6, 16), split_ratio=2.0, lead_sessions=12),
        PlannedAction(
            "300765", date(2025, 5, 20), split_ratio=1.8, dividend_yield=0.02, lead_sessions=15
        ),
        PlannedAction("601234", date(2024, 7, 11), dividend_yield=0.045, lead_sessions=8),
        PlannedAction("601234", date(2025, 7, 10), dividend_yield=0.045, lead_sessions=8),
        PlannedAction("601567", date(2025, 7, 17), dividend_yield=0.03, lead_sessions=None),
        PlannedAction("600123", date(2025, 6, 26), dividend_yield=0.015, lead_sessions=6),
    ),
}


def _action_sessions(market: str, ticker: str, days: list[date]) -> dict[int, PlannedAction]:
    """The ticker's planned actions by ex-date session index; an action needs a session before
    its ex-date (the close it adjusts), so one on the first session or outside is left out."""
    found: dict[int, PlannedAction] = {}
    for action in CORPORATE_ACTIONS[market]:
        if action.ticker != ticker or not days or action.on > days[-1]:
            continue
        index = next(i for i, day in enumerate(days) if day >= action.on)
        if index > 0:
            found[index] = action
    return found


def regime_on(market: str, day: date) -> str:
    """The designed benchmark regime of a calendar day (sideways outside the listed phases)."""
    for phase in REGIME_PHASES[check_market(market)]:
        if phase.start <= day <= phase.end:
            return phase.regime
    return "sideways"


def _benchmark_log_returns(market: str, days: list[date], rng: np.random.Generator) -> np.ndarray:
    """Daily log returns of the index: regime trend line plus a mean-reverting deviation."""
    shocks = rng.standard_normal(len(days))
    level = np.empty(len(days) + 1)
    level[0] = 0.0  # log level relative to the start
    trend = deviation = 0.0
    for i, day in enumerate(days):
        regime = regime_on(market, day)
        trend += _DRIFT[regime]
        deviation = (1 - _PULL[regime]) * deviation + _VOL[regime] * shocks[i]
        level[i + 1] = trend + deviation
    return np.diff(level)


# --------------------------------------------------------------------------------------------
# Headlines
# --------------------------------------------------------------------------------------------

# Event phrases move the price (see module docstring); the tests and analyses find event items
# by these phrases. Background phrases carry a tone but no price effect.
# Headline phrases per market and tone: English for the U.S., Chinese for A-shares (as their
# announcements read). Each market has the same number of phrases per tone, so the random
# picks (and every price) are the same whichever language a market's headlines are in.
EVENT_PHRASES: dict[str, dict[str, tuple[str, ...]]] = {
    "us": {
        "positive": (
            "wins major multi-year supply contract",
            "raises full-year guidance on surging demand",
            "announces large share buyback programme",
            "wins regulatory approval for flagship product",
            "signs strategic partnership with industry leader",
            "reports record order intake, beating forecasts",
        ),
        "negative": (
            "cuts full-year guidance citing weak demand",
            "loses its largest customer contract",
            "faces regulatory investigation into accounting practices",
            "recalls flagship product over safety defects",
            "warns of sharp drop in quarterly profit",
            "CFO resigns unexpectedly amid internal review",
        ),
    },
    "cn": {
        "positive": (
            "中标重大多年期供货合同",
            "上调全年业绩指引，需求强劲增长",
            "公告大额股份回购计划",
            "核心产品注册申请获批",
            "与行业龙头签署战略合作协议",
            "新签订单创新高，超预期",
        ),
        "negative": (
            "下调全年业绩指引，需求疲弱",
            "与最大客户的供货合同终止",
            "涉嫌信息披露违规被证监会立案调查",
            "核心产品因安全缺陷召回",
            "预计季度净利润大幅下滑",
            "财务总监突然辞职，公司开展内部核查",
        ),
    },
}
_BACKGROUND_PHRASES: dict[str, dict[str, tuple[str, ...]]] = {
    "us": {
        "positive": (
            "draws upbeat analyst commentary on growth outlook",
            "expands distribution network in new regions",
            "highlights solid customer demand at investor event",
            "opens new research centre",
            "earns favourable industry award",
        ),
        "negative": (
            "faces cautious analyst commentary on margins",
            "flags higher input costs, trade press reports",
            "reports minor production delay at one plant",
            "sees softer sentiment in sector survey",
            "faces concerns over rising competition",
        ),
        "neutral": (
            "to present at upcoming industry conference",
            "sets date for annual shareholder meeting",
            "appoints new independent director",
            "publishes annual sustainability report",
            "completes routine debt refinancing",
            "confirms unchanged dividend policy",
        ),
    },
    "cn": {
        "positive": (
            "获券商研报看好，业绩增长前景乐观",
            "在新区域拓展销售网络",
            "投资者交流会称客户需求稳步增长",
            "新研发中心落成",
            "荣获行业奖项",
        ),
        "negative": (
            "分析师下调毛利率预期",
            "行业媒体称原材料成本上升",
            "一工厂生产小幅延误，产量下滑",
            "行业调查显示板块情绪转弱",
            "面临行业竞争加剧的担忧",
        ),
        "neutral": (
            "将出席行业会议",
            "确定年度股东大会召开日期",
            "聘任新独立董事",
            "发布年度可持续发展报告",
            "完成例行债务再融资",
            "维持现有分红政策不变",
        ),
    },
}
_TONES: tuple[str, ...] = ("positive", "negative", "neutral")


def _body(headline: str, material: bool) -> str:
    impact = (
        "Management described the development as material to results."
        if material
        else "The company did not quantify any impact on results."
    )
    return (
        f"{headline}. {impact} Synthetic news item generated by the Strat-LLM sample market; "
        "it describes no real company or event."
    )


# --------------------------------------------------------------------------------------------
# Time helpers
# --------------------------------------------------------------------------------------------


def _hm(hours: int, minutes: int = 0) -> int:
    return hours * 3600 + minutes * 60


# Local-time windows (seconds of day, [from, to)) for background news per market.
_PREMARKET = {"us": (_hm(7), _hm(9)), "cn": (_hm(8), _hm(9, 15))}
_AFTER_HOURS = {"us": (_hm(16), _hm(20)), "cn": (_hm(15), _hm(22))}
_NON_SESSION_DAY = {"us": (_hm(8), _hm(20)), "cn": (_hm(8), _hm(22))}
# CN continuous trading has a lunch break 11:30-13:00.
_CN_LUNCH = (_hm(11, 30), _hm(13))


def _to_utc(days: list[date] | np.ndarray, seconds: np.ndarray, market: str) -> pd.DatetimeIndex:
    """Local wall-clock times (day + seconds of day) in the exchange time zone, as UTC.

    Localizing in the exchange zone (not adding a fixed offset) keeps New York DST right.
    """
    local = np.asarray(days, dtype="datetime64[D]") + np.asarray(seconds, dtype="timedelta64[s]")
    index = pd.DatetimeIndex(local.astype("datetime64[us]"))
    return index.tz_localize(market_timezone(market)).tz_convert("UTC")


def _uniform_seconds(rng: np.random.Generator, lo: np.ndarray | int, hi: np.ndarray | int, n: int):
    return np.floor(rng.uniform(lo, hi, n)).astype(np.int64)


def _session_times(market: str, days: list[date]) -> tuple[np.ndarray, np.ndarray]:
    """Open and close of each session as local seconds of day (US early closes included)."""
    tz = market_timezone(market)
    opens = [session_open_utc(market, d).tz_convert(tz) for d in days]
    closes_local = [session_close_utc(market, d).tz_convert(tz) for d in days]
    open_s = np.array([t.hour * 3600 + t.minute * 60 for t in opens], dtype=np.int64)
    close_s = np.array([t.hour * 3600 + t.minute * 60 for t in closes_local], dtype=np.int64)
    return open_s, close_s


def _intraday_seconds(
    market: str, rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray
) -> np.ndarray:
    """Uniform times in [lo, hi) of continuous trading, skipping the CN lunch break."""
    if market != "cn":
        return _uniform_seconds(rng, lo, hi, len(lo))
    lunch = _CN_LUNCH[1] - _CN_LUNCH[0]
    trading_hi = np.where(hi > _CN_LUNCH[0], hi - lunch, hi)
    seconds = _uniform_seconds(rng, lo, trading_hi, len(lo))
    return np.where(seconds >= _CN_LUNCH[0], seconds + lunch, seconds)


# --------------------------------------------------------------------------------------------
# Events (price-moving news and report reactions)
# --------------------------------------------------------------------------------------------

_INTRADAY_EVENT_PROB = 0.11  # per ticker and session: event after D's cutoff
_GAP_EVENT_PROB = 0.05  # per ticker and session: event before D's cutoff -> gap at D's open
_BACKGROUND_RATE = 0.45  # background items per ticker and calendar day
# Split of an intraday event's total move over D..D+2: (overnight, open->close) per session.
_INTRADAY_EVENT_PATH = ((0.0, 0.55), (0.10, 0.20), (0.0, 0.15))
_REPORT_DRIFT_SESSIONS = 10  # post-announcement drift horizon


@dataclass
class PriceEffects:
    """Per-session log-return effects of events on one ticker, split at the open."""

    overnight: np.ndarray
    intraday: np.ndarray
    event_day: np.ndarray  # bool: a material event hits this session (volume spikes)

    @classmethod
    def zeros(cls, n: int) -> PriceEffects:
        return cls(np.zeros(n), np.zeros(n), np.zeros(n, dtype=bool))

    def add(self, index: int, overnight: float, intraday: float) -> None:
        if 0 <= index < len(self.overnight):
            self.overnight[index] += overnight
            self.intraday[index] += intraday
            self.event_day[index] = True


@dataclass
class NewsItems:
    """Column lists of news rows (before ids are assigned)."""

    tickers: list[str]
    published: list[pd.DatetimeIndex]
    headlines: list[str]
    bodies: list[str]

    @classmethod
    def empty(cls) -> NewsItems:
        return cls([], [], [], [])

    def extend(self, ticker: str, published: pd.DatetimeIndex, headlines, material: bool) -> None:
        self.tickers += [ticker] * len(published)
        self.published.append(published)
        self.headlines += list(headlines)
        self.bodies += [_body(h, material) for h in headlines]


def _event_headlines(
    market: str, spec: TickerSpec, signs: np.ndarray, rng: np.random.Generator
) -> list[str]:
    out = []
    for sign in signs:
        phrases = EVENT_PHRASES[market]["positive" if sign > 0 else "negative"]
        out.append(f"{spec.name} ({spec.ticker}) {phrases[rng.integers(len(phrases))]}")
    return out


def _intraday_events(
    market: str,
    spec: TickerSpec,
    days: list[date],
    times: tuple[np.ndarray, np.ndarray],
    rng: np.random.Generator,
    effects: PriceEffects,
    news: NewsItems,
) -> None:
    """Events published after D's cutoff (D's session, or <30 min before its open).

    The stock moves in the event's direction from D's open over D..D+2: invisible to a
    point-in-time decision for D, profitable for a pipeline that leaks the item.
    """
    n = len(days)
    hit = np.flatnonzero(rng.random(n) < _INTRADAY_EVENT_PROB)
    signs = rng.choice([-1.0, 1.0], len(hit))
    sizes = rng.uniform(0.03, 0.055, len(hit))
    late_premarket = rng.random(len(hit)) < 0.25
    open_s, close_s = times[0][hit], times[1][hit]
    intraday_hi = np.minimum(_hm(15), close_s - _hm(1))
    intraday_lo = np.minimum(open_s + _hm(0, 30), intraday_hi - _hm(0, 30))
    seconds = np.where(
        late_premarket,
        _uniform_seconds(rng, open_s - _hm(0, 29), open_s - _hm(0, 1), len(hit)),
        _intraday_seconds(market, rng, intraday_lo, intraday_hi),
    )
    for d, sign, size in zip(hit, signs, sizes, strict=True):
        for offset, (overnight, intraday) in enumerate(_INTRADAY_EVENT_PATH):
            effects.add(int(d) + offset, sign * size * overnight, sign * size * intraday)
    published = _to_utc([days[i] for i in hit], seconds, market)
    news.extend(spec.ticker, published, _event_headlines(market, spec, signs, rng), material=True)


def _gap_events(
    market: str,
    spec: TickerSpec,
    days: list[date],
    rng: np.random.Generator,
    effects: PriceEffects,
    news: NewsItems,
) -> None:
    """Events published before D's cutoff (after the previous close): the stock gaps at D's open.

    Legitimately visible at D's decision, but the gap itself is already in D's open price.
    """
    n = len(days)
    hit = np.flatnonzero(rng.random(n) < _GAP_EVENT_PROB)
    hit = hit[hit >= 1]  # the item goes out after the previous session's close
    signs = rng.choice([-1.0, 1.0], len(hit))
    sizes = rng.uniform(0.02, 0.045, len(hit))
    use_break = rng.random(len(hit)) < 0.5
    day_pick = rng.random(len(hit))
    lo, hi = _AFTER_HOURS[market]
    evening = _uniform_seconds(rng, lo, hi, len(hit))
    daytime = _uniform_seconds(rng, *_NON_SESSION_DAY[market], len(hit))
    publish_days: list[date] = []
    seconds = np.empty(len(hit), dtype=np.int64)
    for k, d in enumerate(hit):
        previous, current = days[d - 1], days[d]
        gap_days = (current - previous).days - 1  # weekend or holiday between the sessions
        if gap_days > 0 and use_break[k]:
            publish_days.append(previous + timedelta(days=1 + int(day_pick[k] * gap_days)))
            seconds[k] = daytime[k]
        else:
            publish_days.append(previous)
            seconds[k] = evening[k]
        effects.add(int(d), signs[k] * sizes[k], 0.15 * signs[k] * sizes[k])
    published = _to_utc(publish_days, seconds, market)
    news.extend(spec.ticker, published, _event_headlines(market, spec, signs, rng), material=True)


def _background_news(
    market: str,
    spec: TickerSpec,
    start: date,
    end: date,
    session_set: dict[date, int],
    times: tuple[np.ndarray, np.ndarray],
    rng: np.random.Generator,
    news: NewsItems,
) -> None:
    """Immaterial items every day, weekends and holidays included, at realistic local times."""
    all_days = [start + timedelta(days=k) for k in range((end - start).days + 1)]
    counts = rng.poisson(_BACKGROUND_RATE, len(all_days))
    day_index = np.repeat(np.arange(len(all_days)), counts)
    n = len(day_index)
    item_days = [all_days[i] for i in day_index]
    # Index -1 (not a session) picks the appended placeholder, unused for non-session days.
    session_idx = np.array([session_set.get(d, -1) for d in item_days], dtype=np.int64)
    is_session = session_idx >= 0
    open_s = np.append(times[0], _hm(9, 30))[session_idx]
    close_s = np.append(times[1], _hm(15))[session_idx]
    slot = rng.choice(3, n, p=[0.25, 0.45, 0.30])  # pre-market, intraday, after-hours
    pre = _uniform_seconds(rng, *_PREMARKET[market], n)
    intra = _intraday_seconds(market, rng, open_s, close_s)
    after = _uniform_seconds(rng, *_AFTER_HOURS[market], n)
    off_day = _uniform_seconds(rng, *_NON_SESSION_DAY[market], n)
    seconds = np.select([~is_session, slot == 0, slot == 1], [off_day, pre, intra], after)
    tones = rng.choice(len(_TONES), n, p=[0.3, 0.3, 0.4])
    picks = rng.integers(0, 1_000_000, n)
    headlines = []
    for tone, pick in zip(tones, picks, strict=True):
        phrases = _BACKGROUND_PHRASES[market][_TONES[tone]]
        headlines.append(f"{spec.name} ({spec.ticker}) {phrases[pick % len(phrases)]}")
    news.extend(spec.ticker, _to_utc(item_days, seconds, market), headlines, material=False)


# --------------------------------------------------------------------------------------------
# Annual reports
# --------------------------------------------------------------------------------------------

# Announcement windows (month, day) in the year after the fiscal year, and the late windows.
_REPORT_WINDOW = {"us": ((2, 10), (3, 14)), "cn": ((3, 15), (4, 29))}
_LATE_WINDOW = {"us": ((5, 12), (6, 20)), "cn": ((6, 18), (6, 28))}
_CURRENCY = {"us": "USD", "cn": "CNY"}
_REPORT_KIND = {"us": "10-K", "cn": "annual report"}


@dataclass(frozen=True)
class Report:
    """One published annual report row plus the price reaction it causes."""

    row: dict
    reaction: float  # total log-return reaction after the announcement
    headline_tail: str  # what the announcement headline says about the result


def _session_in_window(market: str, year: int, window, rng: np.random.Generator) -> date:
    """A random trading session within a (month, day) window of the given year."""
    (m1, d1), (m2, d2) = window
    first, last = date(year, m1, d1), date(year, m2, d2)
    candidates = sessions(market, first, last)
    if not candidates:  # beyond the calendar's recorded span: any weekday will do
        candidates = [d.date() for d in pd.bdate_range(first, last)]
    return candidates[int(rng.integers(len(candidates)))]


def _announcement_time(market: str, day: date, rng: np.random.Generator) -> pd.Timestamp:
    """US filings after the close or before the open (NY); CN announcements in the evening."""
    if market == "us":
        if rng.random() < 0.6:
            seconds = _uniform_seconds(rng, _hm(16, 5), _hm(17, 30), 1)
        else:
            seconds = _uniform_seconds(rng, _hm(6, 30), _hm(8, 45), 1)
    else:
        seconds = _uniform_seconds(rng, _hm(17), _hm(21, 30), 1)
    return _to_utc([day], seconds, market)[0]


def _next_session_on_or_after(market: str, day: date) -> date:
    found = sessions(market, day, day + timedelta(days=20))
    return found[0] if found else day


@dataclass(frozen=True)
class FiscalYear:
    """Unrounded figures of one fiscal year and how they compare with what was expected."""

    figures: dict[str, float]  # revenue, net_income, total_assets, total_equity, cash flow
    prior_income: float  # previous year's net income
    expected: float  # the growth the company's trend implied
    surprise: float  # net income growth beyond `expected`


def _financial_history(
    spec: TickerSpec, years: list[int], rng: np.random.Generator
) -> list[FiscalYear]:
    """Plausible, internally consistent yearly figures, with an earnings surprise per year.

    Net income is anchored on the starting market cap (P/E 12-30; the ST name loses money);
    the surprise is the growth beyond what the company's trend (`expected`) implied.
    """
    market_cap = spec.base_price * spec.shares_m * 1e6
    is_st = spec.name.startswith("ST ")
    income = -0.04 * market_cap if is_st else market_cap / rng.uniform(12, 30)
    margin = rng.uniform(0.06, 0.2)
    revenue = abs(income) / margin
    financial = spec.sector == "Financials"
    assets = revenue * (rng.uniform(9, 14) if financial else rng.uniform(1.2, 2.5))
    equity = assets * (rng.uniform(0.07, 0.11) if financial else rng.uniform(0.35, 0.6))
    expected = rng.uniform(-0.02, 0.12)
    history = []
    for _ in years:
        if rng.random() < 0.35:
            surprise = rng.uniform(-0.03, 0.03)
        else:
            surprise = rng.choice([-1.0, 1.0]) * rng.uniform(0.08, 0.30)
        change = expected + surprise
        previous_income = income
        income = income + abs(income) * change
        revenue *= 1 + 0.6 * expected + rng.normal(0, 0.03)
        assets *= 1 + 0.5 * expected + rng.normal(0, 0.02)
        equity = min(max(equity + 0.6 * income, 0.05 * assets), 0.9 * assets)
        cash_flow = income * rng.uniform(0.9, 1.3) + 0.03 * revenue
        figures = {
            "revenue": revenue,
            "net_income": income,
            "total_assets": assets,
            "total_equity": equity,
            "operating_cash_flow": cash_flow,
        }
        history.append(FiscalYear(figures, previous_income, expected, surprise))
    return history


def _rounded_figures(figures: dict[str, float], spec: TickerSpec) -> dict[str, float]:
    """Figures to whole thousands; eps = net income / shares outstanding."""
    out = {key: float(round(value, -3)) for key, value in figures.items()}
    out["eps"] = round(out["net_income"] / (spec.shares_m * 1e6), 4)
    return out


def _result_phrase(market: str, surprise: float) -> str:
    """What an announcement headline says about the result, in the market's language."""
    if market == "cn":
        if surprise > 0.05:
            return "净利润超预期"
        if surprise < -0.05:
            return "净利润不及预期"
        return "净利润符合预期"
    return f"net income {_verdict(surprise)}"


def _verdict(surprise: float) -> str:
    if surprise > 0.05:
        return "beat expectations"
    if surprise < -0.05:
        return "missed expectations"
    return "was in line with expectations"


def _summary(
    market: str,
    spec: TickerSpec,
    year: int,
    fig: dict,
    prior_income: float,
    expected: float,
    surprise: float,
    restated_from: float | None = None,
) -> str:
    currency = _CURRENCY[market]
    change = (fig["net_income"] - prior_income) / abs(prior_income)
    text = (
        f"Synthetic {_REPORT_KIND[market]} for FY{year} of {spec.name} {SYNTHETIC}: revenue "
        f"{fig['revenue'] / 1e9:.2f} bn {currency}, net income {fig['net_income'] / 1e9:.3f} bn "
        f"{currency} ({change:+.1%} y/y against about {expected:+.1%} expected), EPS "
        f"{fig['eps']:.4f}. Net income growth {_verdict(surprise)}."
    )
    if restated_from is not None:
        text = (
            f"RESTATED. {text} Net income revised from {restated_from / 1e9:.3f} bn {currency} "
            "after an accounting review."
        )
    return text + " Not a real company."


def _report_id(market: str, ticker: str, year: int, restated: bool) -> str:
    kind = "10K" if market == "us" else "AR"
    return f"{market}-{ticker}-FY{year}-{kind}{'-R1' if restated else ''}"


def _reports_for_ticker(
    market: str,
    spec: TickerSpec,
    years: list[int],
    late: set[int],
    restated: set[int],
    rng: np.random.Generator,
) -> list[Report]:
    """Original annual reports per fiscal year, plus a restatement where designated."""
    out = []
    for year, fy in zip(years, _financial_history(spec, years, rng), strict=True):
        window = _LATE_WINDOW[market] if year in late else _REPORT_WINDOW[market]
        published = _announcement_time(
            market, _session_in_window(market, year + 1, window, rng), rng
        )
        fig = _rounded_figures(fy.figures, spec)
        reaction = float(np.clip(0.4 * fy.surprise, -0.10, 0.10))
        row = {
            "report_id": _report_id(market, spec.ticker, year, False),
            "ticker": spec.ticker,
            "fiscal_year": year,
            "period_end": date(year, 12, 31),
            "published_at": published,
            **fig,
            "summary": _summary(market, spec, year, fig, fy.prior_income, fy.expected, fy.surprise),
        }
        out.append(Report(row, reaction, _result_phrase(market, fy.surprise)))
        if year in restated:
            out.append(_restatement(market, spec, row, fy, rng))
    return out


def _restatement(
    market: str,
    spec: TickerSpec,
    original: dict,
    fy: FiscalYear,
    rng: np.random.Generator,
) -> Report:
    """A later row for the same fiscal year with net income revised down (a PIT trap)."""
    cut = rng.uniform(0.06, 0.15)
    raw = fy.figures
    revised = dict(raw)
    delta = abs(raw["net_income"]) * cut
    revised["net_income"] = raw["net_income"] - delta
    revised["revenue"] = raw["revenue"] * (1 - rng.uniform(0.01, 0.04))
    revised["total_equity"] = raw["total_equity"] - delta
    revised["operating_cash_flow"] = raw["operating_cash_flow"] * (1 - rng.uniform(0.0, 0.03))
    fig = _rounded_figures(revised, spec)
    later = original["published_at"].tz_convert(market_timezone(market)).date()
    day = _next_session_on_or_after(market, later + timedelta(days=int(rng.integers(120, 181))))
    year = original["fiscal_year"]
    surprise = (revised["net_income"] - fy.prior_income) / abs(fy.prior_income) - fy.expected
    row = {
        **original,
        **fig,
        "report_id": _report_id(market, spec.ticker, year, True),
        "published_at": _announcement_time(market, day, rng),
        "summary": _summary(
            market, spec, year, fig, fy.prior_income, fy.expected, surprise, original["net_income"]
        ),
    }
    revised_down = {"us": f"net income revised down {cut:.0%}", "cn": f"净利润下调{cut:.0%}"}
    return Report(row, -min(0.5 * cut, 0.06), revised_down[market])


def _annual_reports(
    market: str, start: date, end: date, rng: np.random.Generator
) -> dict[str, list[Report]]:
    """Reports per ticker for FY(start.year-2)..FY(end.year-1), dropping any published after end.

    Each fiscal year has one late filer and one restated report (different tickers).
    """
    specs = UNIVERSES[market]
    years = list(range(start.year - 2, end.year))
    late: dict[str, set[int]] = {s.ticker: set() for s in specs}
    restated: dict[str, set[int]] = {s.ticker: set() for s in specs}
    for year in years:
        late_i, restated_i = rng.choice(len(specs), 2, replace=False)
        late[specs[late_i].ticker].add(year)
        restated[specs[restated_i].ticker].add(year)
    end_utc = _to_utc([end + timedelta(days=1)], np.zeros(1, dtype=np.int64), market)[0]
    out = {}
    for spec in specs:
        reports = _reports_for_ticker(
            market, spec, years, late[spec.ticker], restated[spec.ticker], rng
        )
        out[spec.ticker] = [r for r in reports if r.row["published_at"] < end_utc]
    return out


def _report_effects(
    reports: list[Report], opens_utc: pd.DatetimeIndex, since: pd.Timestamp, effects: PriceEffects
) -> None:
    """Reaction from the first session opening after the announcement: a gap, then a drift.

    The drift is tradeable point-in-time; the gap pays only a pipeline that sees the report
    before its announcement (e.g. one joining on period_end). Reports announced before
    `since` (the span's first local midnight) were digested before the span began.
    """
    for report in reports:
        if report.row["published_at"] < since:
            continue
        first = int(opens_utc.searchsorted(report.row["published_at"], side="right"))
        if first >= len(opens_utc):
            continue
        effects.add(first, 0.4 * report.reaction, 0.0)
        per_session = 0.6 * report.reaction / _REPORT_DRIFT_SESSIONS
        for k in range(_REPORT_DRIFT_SESSIONS):
            effects.add(first + k, 0.0, per_session)


def _report_news(
    market: str, spec: TickerSpec, reports: list[Report], since: pd.Timestamp, news: NewsItems
) -> None:
    """A headline at each announcement within the span, so news-driven rules see results too."""
    reports = [r for r in reports if r.row["published_at"] >= since]
    if not reports:
        return
    headlines = []
    for report in reports:
        restated = report.row["report_id"].endswith("-R1")
        year = report.row["fiscal_year"]
        if market == "cn":
            kind = "更正后的" if restated else ""
            announced = f"发布{kind}{year}年年度报告：{report.headline_tail}"
        else:
            verb = "restates" if restated else "publishes"
            announced = f"{verb} FY{year} {_REPORT_KIND[market]}; {report.headline_tail}"
        headlines.append(f"{spec.name} ({spec.ticker}) {announced}")
    published = pd.DatetimeIndex([r.row["published_at"] for r in reports])
    news.extend(spec.ticker, published, headlines, material=True)


# --------------------------------------------------------------------------------------------
# Prices
# --------------------------------------------------------------------------------------------


def _round_cents(value: float) -> int:
    """Price in cents, rounded half up (as the exchanges round)."""
    return int(math.floor(value * 100 + 0.5))


def limit_prices_cents(prev_close_cents: int, limit_pct: float) -> tuple[int, int]:
    """China's daily limit prices in cents: round(prev_close * (1 +/- pct/100), 2), half up.

    Exact integer arithmetic: float rounding of e.g. 10.05 * 1.1 = 11.055 is unreliable.
    """
    pct = round(limit_pct * 100)  # in basis points, exact for 5/10/20 %
    up = (prev_close_cents * (10_000 + pct) + 5_000) // 10_000
    down = (prev_close_cents * (10_000 - pct) + 5_000) // 10_000
    return up, down


def _simulate_ohlcv(
    spec: TickerSpec,
    bench_returns: np.ndarray,
    effects: PriceEffects,
    lot: int,
    rng: np.random.Generator,
    actions: dict[int, PlannedAction] | None = None,
) -> tuple[dict[str, np.ndarray], list[tuple[int, float, float]]]:
    """Daily bars: beta to the index + noise + event effects, within CN limits, in cents.

    A move cut by the price limit carries over to the next session (like a limit-locked stock
    that keeps gapping), so event effects are delayed rather than lost. Prices are as traded:
    on an ex-date the session starts from the ex reference price (previous close - dividend) /
    split_ratio, which also anchors CN's limits, and volume counts the new, larger number of
    shares. Returns the bars and the applied actions (session index, split_ratio, dividend).
    """
    actions = actions or {}
    applied: list[tuple[int, float, float]] = []
    shares_multiple = 1.0
    n = len(bench_returns)
    total = spec.beta * bench_returns + spec.idio_vol * rng.standard_normal(n)
    overnight = 0.35 * total + 0.003 * rng.standard_normal(n) + effects.overnight
    intraday = total - (overnight - effects.overnight) + effects.intraday
    wick_up = np.abs(rng.normal(0, 0.006, n))
    wick_down = np.abs(rng.normal(0, 0.006, n))
    volume_noise = np.exp(0.3 * rng.standard_normal(n))
    bars = {k: np.empty(n, dtype=np.int64) for k in ("open", "high", "low", "close", "volume")}
    prev = _round_cents(spec.base_price)
    carry = 0.0
    for t in range(n):
        if t in actions:
            action = actions[t]
            dividend = _round_cents(prev / 100 * action.dividend_yield)
            prev = max(1, _round_cents((prev - dividend) / 100 / action.split_ratio))
            shares_multiple *= action.split_ratio
            applied.append((t, action.split_ratio, dividend / 100))
        if spec.limit_pct is None:
            up, down = 10**12, 1
        else:
            up, down = limit_prices_cents(prev, spec.limit_pct)
        gap = overnight[t] + carry
        open_raw = prev * math.exp(gap)
        close_raw = prev * math.exp(gap + intraday[t])
        o = min(max(_round_cents(open_raw / 100), down), up)
        c = min(max(_round_cents(close_raw / 100), down), up)
        carry = math.log(close_raw / max(c, 1)) if c in (up, down) else 0.0
        h = min(max(_round_cents(max(o, c) * math.exp(wick_up[t]) / 100), o, c), up)
        lo = max(min(_round_cents(min(o, c) * math.exp(-wick_down[t]) / 100), o, c), down, 1)
        move = abs(c - prev) / prev
        raw_volume = spec.base_volume_m * 1e6 * volume_noise[t] * (1 + 12 * move)
        raw_volume *= (2.0 if effects.event_day[t] else 1.0) * shares_multiple
        bars["open"][t], bars["high"][t], bars["low"][t], bars["close"][t] = o, h, lo, c
        bars["volume"][t] = max(1, round(raw_volume / lot)) * lot
        prev = c
    return bars, applied


# --------------------------------------------------------------------------------------------
# Assembly
# --------------------------------------------------------------------------------------------


def _check_inputs(market: str, start: date, end: date) -> None:
    check_market(market)
    if start > end:
        raise ValueError(f"start {start} is after end {end}")


def _generators(market: str, seed: int) -> dict[str, np.random.Generator]:
    """Independent streams per component, so changing one part leaves the others unchanged."""
    parts = ("benchmark", "stocks", "events", "news", "reports")
    root = np.random.SeedSequence([int(seed), _MARKET_CODES[market]])
    return {
        name: np.random.default_rng(child)
        for name, child in zip(parts, root.spawn(len(parts)), strict=True)
    }


def _universe_frame(market: str) -> pd.DataFrame:
    specs = UNIVERSES[market]
    return pd.DataFrame(
        {
            "ticker": [s.ticker for s in specs],
            "name": [f"{s.name} {SYNTHETIC}" for s in specs],
            "sector": [s.sector for s in specs],
            "price_limit_pct": [np.nan if s.limit_pct is None else s.limit_pct for s in specs],
        },
        columns=COLUMNS["universe"],
    )


# The synthetic index stands for the market's total return (dividends reinvested), the like
# of the backtest's sleeves, which are paid their dividends.
BENCHMARK_KIND = "total_return"


def _benchmark_frame(days: list[date], log_returns: np.ndarray, market: str) -> pd.DataFrame:
    closes = BENCHMARK_START[market] * np.exp(np.cumsum(log_returns))
    return pd.DataFrame(
        {"date": days, "close": np.round(closes, 2), "kind": BENCHMARK_KIND},
        columns=COLUMNS["benchmark"],
    )


def _corporate_actions_frame(
    market: str, ticker: str, days: list[date], applied: list[tuple[int, float, float]]
) -> pd.DataFrame:
    planned = _action_sessions(market, ticker, days)
    announced = []
    for index, _, _ in applied:
        lead = planned[index].lead_sessions
        when = (
            session_close_utc(market, days[max(0, index - lead)]) + pd.Timedelta(hours=1)
            if lead is not None
            else pd.NaT
        )
        announced.append(when)
    return pd.DataFrame(
        {
            "ticker": [ticker] * len(applied),
            "ex_date": [days[index] for index, _, _ in applied],
            "split_ratio": [split for _, split, _ in applied],
            "cash_dividend": [dividend for _, _, dividend in applied],
            "announced_at": pd.Series(announced, dtype=_TIMESTAMP_DTYPE),
        },
        columns=COLUMNS["corporate_actions"],
    )


def _prices_frame(ticker: str, days: list[date], bars: dict[str, np.ndarray]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ticker": [ticker] * len(days),
            "date": days,
            **{k: bars[k] / 100.0 for k in ("open", "high", "low", "close")},
            "volume": bars["volume"].astype(np.int64),
            "adj_factor": np.ones(len(days)),
        },
        columns=COLUMNS["prices"],
    )


def _news_frame(market: str, news: NewsItems) -> pd.DataFrame:
    micros = [p.as_unit("us").asi8 for p in news.published]
    published = pd.to_datetime(
        np.concatenate(micros) if micros else np.empty(0, np.int64), unit="us", utc=True
    )
    frame = pd.DataFrame(
        {
            "ticker": pd.Series(news.tickers, dtype="str"),
            "published_at": pd.Series(published).astype(_TIMESTAMP_DTYPE),
            "headline": pd.Series(news.headlines, dtype="str"),
            "body": pd.Series(news.bodies, dtype="str"),
        }
    )
    frame = frame.sort_values(["published_at", "ticker", "headline"], kind="stable")
    frame = frame.reset_index(drop=True)
    frame["news_id"] = [f"{market}-{t}-{k:06d}" for k, t in enumerate(frame["ticker"])]
    frame["source"] = SOURCE
    frame = frame.sort_values(["published_at", "news_id"], kind="stable").reset_index(drop=True)
    return frame[COLUMNS["news"]]


def _reports_frame(reports: dict[str, list[Report]]) -> pd.DataFrame:
    rows = [r.row for per_ticker in reports.values() for r in per_ticker]
    frame = pd.DataFrame(rows, columns=COLUMNS["reports"])
    frame["fiscal_year"] = frame["fiscal_year"].astype(np.int64)
    frame["published_at"] = pd.to_datetime(frame["published_at"], utc=True).astype(_TIMESTAMP_DTYPE)
    frame = frame.sort_values(["ticker", "fiscal_year", "published_at"], kind="stable")
    return frame.reset_index(drop=True)


def generate_sample_market(
    market: str,
    *,
    seed: int = DEFAULT_SEED,
    start: date = DEFAULT_START,
    end: date = DEFAULT_END,
) -> dict[str, pd.DataFrame]:
    """The raw-contract tables (DESIGN §4) of the SYNTHETIC sample market, corporate actions
    included (no risk_free: the sample has no rate series).

    Prices and the benchmark cover exactly the exchange sessions from start to end; news
    covers every calendar day; reports include those published before start (so a report is
    visible from the first session). Same (market, seed, start, end) -> identical tables.
    """
    _check_inputs(market, start, end)
    rng = _generators(market, seed)
    days = sessions(market, start, end)
    session_index = {d: i for i, d in enumerate(days)}
    times = _session_times(market, days) if days else (np.empty(0, int), np.empty(0, int))
    opens_utc = pd.DatetimeIndex(
        [session_open_utc(market, d) for d in days], dtype=_TIMESTAMP_DTYPE
    )
    since = _to_utc([start], np.zeros(1, dtype=np.int64), market)[0]
    bench_returns = _benchmark_log_returns(market, days, rng["benchmark"])
    reports = _annual_reports(market, start, end, rng["reports"])
    lot = 100 if market == "cn" else 1
    news = NewsItems.empty()
    price_frames = []
    action_frames = []
    for spec in UNIVERSES[market]:
        effects = PriceEffects.zeros(len(days))
        if days:
            _intraday_events(market, spec, days, times, rng["events"], effects, news)
            _gap_events(market, spec, days, rng["events"], effects, news)
        _report_effects(reports[spec.ticker], opens_utc, since, effects)
        _report_news(market, spec, reports[spec.ticker], since, news)
        _background_news(market, spec, start, end, session_index, times, rng["news"], news)
        actions = _action_sessions(market, spec.ticker, days)
        bars, applied = _simulate_ohlcv(spec, bench_returns, effects, lot, rng["stocks"], actions)
        price_frames.append(_prices_frame(spec.ticker, days, bars))
        action_frames.append(_corporate_actions_frame(market, spec.ticker, days, applied))
    prices = pd.concat(price_frames, ignore_index=True)
    prices = prices.sort_values(["ticker", "date"], kind="stable").reset_index(drop=True)
    return {
        "universe": _universe_frame(market),
        "prices": prices,
        "benchmark": _benchmark_frame(days, bench_returns, market),
        "news": _news_frame(market, news),
        "reports": _reports_frame(reports),
        "corporate_actions": pd.concat(action_frames, ignore_index=True)
        .sort_values(["ticker", "ex_date"], kind="stable")
        .reset_index(drop=True),
    }
