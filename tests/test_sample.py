"""The synthetic sample market: contract shape, determinism, market rules, and that it makes
the research questions visible (regimes, leakage that would pay, PIT traps in reports)."""

from __future__ import annotations

import math
import time
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

import numpy as np
import pandas as pd
import pytest

from ingest.calendars import market_timezone, session_open_utc, sessions
from ingest.sample import (
    DEFAULT_END,
    DEFAULT_START,
    EVENT_PHRASES,
    REGIME_PHASES,
    generate_sample_market,
)

MARKETS = ("us", "cn")
CLOSE_MINUTES = {"us": 16 * 60, "cn": 15 * 60}  # regular close, local minutes of the day
TABLES = ("universe", "prices", "benchmark", "news", "reports", "corporate_actions")
COLUMNS = {
    "universe": ["ticker", "name", "sector", "price_limit_pct"],
    "prices": ["ticker", "date", "open", "high", "low", "close", "volume", "adj_factor"],
    "benchmark": ["date", "close", "kind"],
    "news": ["news_id", "ticker", "published_at", "headline", "body", "source"],
    "reports": [
        "report_id", "ticker", "fiscal_year", "period_end", "published_at", "revenue",
        "net_income", "total_assets", "total_equity", "eps", "operating_cash_flow", "summary",
    ],
    "corporate_actions": ["ticker", "ex_date", "split_ratio", "cash_dividend", "announced_at"],
}  # fmt: skip


@pytest.fixture(scope="module")
def sample() -> dict[str, dict[str, pd.DataFrame]]:
    return {market: generate_sample_market(market) for market in MARKETS}


def _local(timestamps: pd.Series, market: str) -> pd.Series:
    return timestamps.dt.tz_convert(market_timezone(market))


def _closes(prices: pd.DataFrame) -> pd.DataFrame:
    return prices.pivot(index="date", columns="ticker", values="close")


# ----------------------------------------------------------------------------- shape & basics


@pytest.mark.parametrize("market", MARKETS)
def test_tables_have_contract_columns_in_order(sample, market):
    frames = sample[market]
    assert set(frames) == set(TABLES)
    for table in TABLES:
        assert list(frames[table].columns) == COLUMNS[table]
        assert len(frames[table]) > 0
    news, reports = frames["news"], frames["reports"]
    for timestamps in (news["published_at"], reports["published_at"]):
        assert str(timestamps.dt.tz) == "UTC"
    assert news["news_id"].is_unique
    assert reports["report_id"].is_unique
    assert (news["source"] == "synthetic").all()
    assert frames["prices"]["volume"].dtype == np.int64
    assert (frames["prices"]["adj_factor"] == 1.0).all()
    assert all(isinstance(d, date) for d in frames["prices"]["date"].head())
    assert all(isinstance(d, date) for d in reports["period_end"])


@pytest.mark.parametrize("market", MARKETS)
def test_outputs_are_sorted(sample, market):
    frames = sample[market]
    for table, keys in (
        ("prices", ["ticker", "date"]),
        ("news", ["published_at", "news_id"]),
        ("reports", ["ticker", "fiscal_year", "published_at"]),
    ):
        frame = frames[table]
        expected = frame.sort_values(keys, kind="stable").reset_index(drop=True)
        pd.testing.assert_frame_equal(frame, expected)


def test_same_seed_gives_identical_tables_and_other_seed_differs(sample):
    for market in MARKETS:
        again = generate_sample_market(market)
        for table in TABLES:
            pd.testing.assert_frame_equal(sample[market][table], again[table])
        other = generate_sample_market(market, seed=7)
        for table in ("prices", "benchmark", "news", "reports"):
            assert not sample[market][table].equals(other[table]), (market, table)


def test_generation_is_fast():
    began = time.perf_counter()
    for market in MARKETS:
        generate_sample_market(market, seed=11)
    assert time.perf_counter() - began < 5.0


def test_bad_inputs_raise_value_error_naming_them():
    with pytest.raises(ValueError, match="xx"):
        generate_sample_market("xx")
    with pytest.raises(ValueError, match="start"):
        generate_sample_market("us", start=date(2025, 3, 1), end=date(2025, 1, 1))


# ----------------------------------------------------------------------------- universe


def test_us_universe_is_made_up_and_labelled():
    universe = generate_sample_market("us", start=date(2025, 1, 2), end=date(2025, 1, 3))[
        "universe"
    ]
    assert len(universe) >= 12
    assert universe["ticker"].str.fullmatch(r"[A-Z]{4}").all()
    assert universe["name"].str.endswith("(synthetic)").all()
    assert universe["price_limit_pct"].isna().all()


def test_cn_universe_boards_and_limits(sample):
    universe = sample["cn"]["universe"].set_index("ticker")
    assert len(universe) >= 12
    assert universe.index.str.fullmatch(r"\d{6}").all()
    assert universe["name"].str.endswith("(synthetic)").all()
    main_board = universe.index.str.match(r"^(600|601|000)")
    assert main_board.sum() >= 10
    st = universe["name"].str.startswith("ST ")
    assert (universe.loc[main_board & ~st, "price_limit_pct"] == 10.0).all()
    growth = universe.index.str.match(r"^(300|688)")
    assert {t[:3] for t in universe.index[growth]} == {"300", "688"}
    assert (universe.loc[growth, "price_limit_pct"] == 20.0).all()
    assert st.sum() == 1
    assert (universe.loc[st, "price_limit_pct"] == 5.0).all()


# ----------------------------------------------------------------------------- prices


@pytest.mark.parametrize("market", MARKETS)
def test_prices_and_benchmark_cover_exactly_the_sessions(sample, market):
    expected = sessions(market, DEFAULT_START, DEFAULT_END)
    frames = sample[market]
    assert list(frames["benchmark"]["date"]) == expected
    for ticker, rows in frames["prices"].groupby("ticker"):
        assert list(rows["date"]) == expected, ticker
    assert set(frames["prices"]["ticker"]) == set(frames["universe"]["ticker"])


@pytest.mark.parametrize("market", MARKETS)
def test_ohlc_is_consistent(sample, market):
    p = sample[market]["prices"]
    assert (p[["open", "high", "low", "close"]] > 0).all().all()
    assert (p["low"] <= p[["open", "close"]].min(axis=1)).all()
    assert (p["high"] >= p[["open", "close"]].max(axis=1)).all()
    assert (p["volume"] > 0).all()
    for column in ("open", "high", "low", "close"):
        assert np.allclose(p[column], p[column].round(2), atol=1e-9)


def _limit(prev_close: float, pct: float, sign: int) -> float:
    """China's limit price: prev_close * (1 +/- pct/100), rounded half up to 0.01."""
    factor = Decimal(1) + sign * Decimal(str(pct)) / Decimal(100)
    value = (Decimal(str(prev_close)) * factor).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    return float(value)


def test_cn_moves_stay_within_price_limits_and_volume_in_lots(sample):
    frames = sample["cn"]
    limits = frames["universe"].set_index("ticker")["price_limit_pct"]
    prices = frames["prices"]
    assert (prices["volume"] % 100 == 0).all()
    hits = 0  # closes at the limit (up or down)
    for ticker, rows in prices.groupby("ticker"):
        pct = limits[ticker]
        prev = rows["close"].to_numpy()[:-1].copy()
        # On an ex-date the exchange's reference is the ex price: (close - dividend) / split.
        actions = frames["corporate_actions"]
        for event in actions[actions["ticker"] == ticker].itertuples():
            index = rows["date"].tolist().index(event.ex_date) - 1
            reference = (prev[index] - event.cash_dividend) / event.split_ratio
            prev[index] = math.floor(reference * 100 + 0.5) / 100
        up = np.array([_limit(x, pct, +1) for x in prev])
        down = np.array([_limit(x, pct, -1) for x in prev])
        for column in ("open", "high", "low", "close"):
            values = rows[column].to_numpy()[1:]
            assert (values <= up + 1e-9).all(), (ticker, column)
            assert (values >= down - 1e-9).all(), (ticker, column)
        closes = rows["close"].to_numpy()[1:]
        hits += int(np.isclose(closes, up).sum() + np.isclose(closes, down).sum())
    assert hits > 0  # events push some stocks to the limit


# ----------------------------------------------------------------------------- benchmark regimes


@pytest.mark.parametrize("market", MARKETS)
def test_benchmark_has_up_down_and_sideways_phases(sample, market):
    bench = sample[market]["benchmark"]
    start_level = {"us": 5000.0, "cn": 3500.0}[market]
    assert abs(bench["close"].iloc[0] / start_level - 1) < 0.05
    returns = bench["close"].pct_change(60).dropna()
    assert returns.max() > 0.08
    assert returns.min() < -0.08
    assert (returns.abs() < 0.02).any()
    regimes = {phase.regime for phase in REGIME_PHASES[market]}
    assert regimes == {"uptrend", "downtrend", "sideways"}
    for phase in REGIME_PHASES[market]:
        assert (phase.end - phase.start).days >= 60


@pytest.mark.parametrize("market", MARKETS)
def test_benchmark_phase_returns_match_their_regime(sample, market):
    bench = sample[market]["benchmark"].set_index("date")["close"]
    for phase in REGIME_PHASES[market]:
        inside = bench[(bench.index >= phase.start) & (bench.index <= phase.end)]
        change = inside.iloc[-1] / inside.iloc[0] - 1
        if phase.regime == "uptrend":
            assert change > 0.06, phase
        elif phase.regime == "downtrend":
            assert change < -0.06, phase
        else:
            assert abs(change) < 0.05, phase


# ----------------------------------------------------------------------------- news timing


HOLIDAYS = {
    "us": [date(2024, 7, 4), date(2024, 11, 28), date(2024, 12, 25), date(2025, 7, 4)],
    "cn": [date(2024, 10, 1), date(2024, 10, 3), date(2025, 1, 29), date(2025, 1, 31)],
}


@pytest.mark.parametrize("market", MARKETS)
def test_news_on_weekends_and_exchange_holidays(sample, market):
    news = sample[market]["news"]
    local_days = set(_local(news["published_at"], market).dt.date)
    session_days = set(sessions(market, DEFAULT_START, DEFAULT_END))
    assert any(d.weekday() >= 5 for d in local_days)
    for holiday in HOLIDAYS[market]:
        assert holiday.weekday() < 5 and holiday not in session_days
        assert holiday in local_days, holiday
    per_ticker_week = (
        len(news) / news["ticker"].nunique() / ((DEFAULT_END - DEFAULT_START).days / 7)
    )
    assert per_ticker_week >= 3


@pytest.mark.parametrize("market", MARKETS)
def test_news_at_premarket_intraday_and_after_hours(sample, market):
    local = _local(sample[market]["news"]["published_at"], market)
    minutes = local.dt.hour * 60 + local.dt.minute
    session_days = set(sessions(market, DEFAULT_START, DEFAULT_END))
    on_session = local.dt.date.isin(session_days)
    windows = {  # [from, to) in local minutes of the day
        "us": {"pre": (420, 540), "intra": (570, 960), "after": (960, 1200)},
        "cn": {"pre": (480, 555), "intra": (570, 900), "after": (900, 1320)},
    }[market]
    for name, (lo, hi) in windows.items():
        count = (on_session & (minutes >= lo) & (minutes < hi)).sum()
        assert count > 100, name
    # Nothing at night: every item between 06:00 and 23:00 local.
    assert minutes.between(6 * 60, 23 * 60).all()


def test_us_news_times_follow_daylight_saving(sample):
    news = sample["us"]["news"]
    local_hours = _local(news["published_at"], "us").dt.hour
    utc_hours = news["published_at"].dt.hour
    offsets = set(((utc_hours - local_hours) % 24).unique())
    assert offsets == {4, 5}  # EDT in summer, EST in winter


# ----------------------------------------------------------------------------- informative news


def _event_items(news: pd.DataFrame, market: str) -> pd.DataFrame:
    sign = pd.Series(0, index=news.index)
    for tone, value in (("positive", 1), ("negative", -1)):
        for phrase in EVENT_PHRASES[market][tone]:
            sign[news["headline"].str.contains(phrase, regex=False)] = value
    out = news.assign(sign=sign)
    return out[out["sign"] != 0]


def _session_frame(market: str) -> pd.DataFrame:
    days = sessions(market, DEFAULT_START, DEFAULT_END)
    opens = pd.DatetimeIndex([session_open_utc(market, d) for d in days])
    return pd.DataFrame({"date": days, "open_utc": opens})


@pytest.mark.parametrize("market", MARKETS)
def test_event_news_after_the_cutoff_moves_the_price_from_the_open(sample, market):
    """A pipeline leaking news published after D's cutoff (open - 30 min) would profit."""
    frames = sample[market]
    events = _event_items(frames["news"], market)
    grid = _session_frame(market)
    cutoff = grid["open_utc"] - pd.Timedelta(minutes=30)
    opens = frames["prices"].pivot(index="date", columns="ticker", values="open")
    closes = _closes(frames["prices"])
    moves = {1: [], -1: []}
    for item in events.itertuples():
        d = int(cutoff.searchsorted(item.published_at, side="right")) - 1
        if d < 0 or d + 2 >= len(grid):
            continue
        if _local_day(item, market) != grid["date"].iloc[d] or _after_close(item, market):
            continue  # not between D's cutoff and D's close
        day0, day2 = grid["date"].iloc[d], grid["date"].iloc[d + 2]
        moves[item.sign].append(closes.at[day2, item.ticker] / opens.at[day0, item.ticker] - 1)
    assert len(moves[1]) > 50 and len(moves[-1]) > 50
    assert np.mean(moves[1]) > 0.02
    assert np.mean(moves[-1]) < -0.02
    assert np.mean(moves[1]) - np.mean(moves[-1]) > 0.05


def _local_day(item, market: str) -> date:
    return item.published_at.tz_convert(market_timezone(market)).date()


def _after_close(item, market: str) -> bool:
    local = item.published_at.tz_convert(market_timezone(market))
    return local.hour * 60 + local.minute >= CLOSE_MINUTES[market]


@pytest.mark.parametrize("market", MARKETS)
def test_event_news_before_the_cutoff_precedes_an_opening_gap(sample, market):
    """After-hours (or weekend) event items are visible at D's cutoff; D opens with a gap."""
    frames = sample[market]
    events = _event_items(frames["news"], market)
    grid = _session_frame(market)
    opens = frames["prices"].pivot(index="date", columns="ticker", values="open")
    closes = _closes(frames["prices"])
    gaps = {1: [], -1: []}
    for item in events.itertuples():
        d = int(grid["open_utc"].searchsorted(item.published_at))  # first open after the item
        if d == 0 or d >= len(grid):
            continue
        if item.published_at >= grid["open_utc"].iloc[d] - pd.Timedelta(minutes=30):
            continue  # after the cutoff of D: covered by the test above
        if _local_day(item, market) == grid["date"].iloc[d - 1] and not _after_close(item, market):
            continue  # published during session d-1, not after its close
        day, previous = grid["date"].iloc[d], grid["date"].iloc[d - 1]
        gaps[item.sign].append(opens.at[day, item.ticker] / closes.at[previous, item.ticker] - 1)
    assert len(gaps[1]) > 20 and len(gaps[-1]) > 20
    assert np.mean(gaps[1]) - np.mean(gaps[-1]) > 0.03


@pytest.mark.parametrize("market", MARKETS)
def test_about_a_fifth_of_news_is_informative(sample, market):
    news = sample[market]["news"]
    share = len(_event_items(news, market)) / len(news)
    assert 0.1 < share < 0.3


# ----------------------------------------------------------------------------- reports


def _originals(reports: pd.DataFrame) -> pd.DataFrame:
    return reports.sort_values("published_at").drop_duplicates(["ticker", "fiscal_year"])


@pytest.mark.parametrize("market", MARKETS)
def test_reports_cover_fiscal_years_and_are_plausible(sample, market):
    frames = sample[market]
    reports = frames["reports"]
    tickers = set(frames["universe"]["ticker"])
    for year in (2023, 2024):
        assert set(reports.loc[reports["fiscal_year"] == year, "ticker"]) == tickers
    assert (reports["fiscal_year"] <= 2024).all()  # FY2025 would be announced in 2026
    assert (reports["period_end"] == reports["fiscal_year"].map(lambda y: date(y, 12, 31))).all()
    period_end_utc = pd.to_datetime(reports["period_end"].astype(str)).dt.tz_localize("UTC")
    assert (reports["published_at"] > period_end_utc + pd.Timedelta(days=1)).all()
    assert (reports["revenue"] > 0).all()
    assert (reports["total_equity"] > 0).all()
    assert (reports["total_equity"] < reports["total_assets"]).all()
    assert reports["summary"].str.contains("Synthetic").all()
    implied_shares = reports["net_income"] / reports["eps"]
    shares_per_ticker = implied_shares.groupby(reports["ticker"]).agg(["min", "max"])
    assert (shares_per_ticker["max"] / shares_per_ticker["min"] < 1.001).all()


@pytest.mark.parametrize("market", MARKETS)
def test_restatement_is_a_later_row_for_the_same_fiscal_year(sample, market):
    reports = sample[market]["reports"]
    groups = [g for _, g in reports.groupby(["ticker", "fiscal_year"]) if len(g) > 1]
    assert groups
    in_span = 0
    for group in groups:
        group = group.sort_values("published_at")
        first, later = group.iloc[0], group.iloc[1]
        assert first["period_end"] == later["period_end"]
        assert first["report_id"] != later["report_id"]
        assert later["published_at"] - first["published_at"] > pd.Timedelta(days=90)
        assert later["net_income"] != first["net_income"]
        in_span += later["published_at"].date() >= DEFAULT_START
    assert in_span >= 1


@pytest.mark.parametrize(
    ("market", "months", "late_after"),
    [("us", {2, 3}, date(2025, 4, 30)), ("cn", {3, 4}, date(2025, 4, 30))],
)
def test_fy2024_announcement_season_with_one_late_filer(sample, market, months, late_after):
    reports = _originals(sample[market]["reports"])
    fy2024 = reports[reports["fiscal_year"] == 2024]
    local = _local(fy2024["published_at"], market)
    in_season = (local.dt.year == 2025) & local.dt.month.isin(months)
    late = fy2024[~in_season.to_numpy()]
    assert len(late) == 1
    assert _local(late["published_at"], market).dt.date.iloc[0] > late_after
    hours = local[in_season].dt.hour
    if market == "us":  # after the close or before the open, New York time
        assert ((hours >= 16) | (hours < 9)).all()
    else:  # evening, Shanghai time
        assert (hours >= 15).all()


def test_report_surprises_are_followed_by_a_drift(sample):
    """Post-announcement drift: 'beat' reports rise afterwards, 'missed' reports fall."""
    moves = {"beat": [], "missed": []}
    for market in MARKETS:
        frames = sample[market]
        grid = _session_frame(market)
        closes = _closes(frames["prices"])
        originals = _originals(frames["reports"])
        for report in originals.itertuples():
            d = int(grid["open_utc"].searchsorted(report.published_at))
            if d == 0 or d + 10 >= len(grid):
                continue
            before = closes.at[grid["date"].iloc[d - 1], report.ticker]
            after = closes.at[grid["date"].iloc[d + 9], report.ticker]
            for verdict in moves:
                if f"growth {verdict} expectations" in report.summary:
                    moves[verdict].append(after / before - 1)
    assert moves["beat"] and moves["missed"]
    assert np.mean(moves["beat"]) - np.mean(moves["missed"]) > 0.03


# ----------------------------------------------------------------------------- custom span


@pytest.mark.parametrize("market", MARKETS)
def test_short_custom_span(market):
    start, end = date(2025, 1, 1), date(2025, 3, 31)
    frames = generate_sample_market(market, seed=3, start=start, end=end)
    expected = sessions(market, start, end)
    assert list(frames["benchmark"]["date"]) == expected
    for _, rows in frames["prices"].groupby("ticker"):
        assert list(rows["date"]) == expected
    local_days = _local(frames["news"]["published_at"], market).dt.date
    assert local_days.min() >= start and local_days.max() <= end
    reports = frames["reports"]
    last_local = _local(reports["published_at"], market).dt.date
    assert (last_local <= end).all()
    assert (reports["fiscal_year"] == 2023).any()  # visible from the first session


def test_single_holiday_span_has_no_sessions_but_news():
    frames = generate_sample_market("us", start=date(2024, 7, 4), end=date(2024, 7, 4))
    assert frames["prices"].empty and frames["benchmark"].empty
    assert list(frames["prices"].columns) == COLUMNS["prices"]
    assert (_local(frames["news"]["published_at"], "us").dt.date == date(2024, 7, 4)).all()


def test_a_share_headlines_are_in_chinese_and_us_headlines_in_english(sample):
    """A-share announcements read in Chinese (S4's cn lexicon is Chinese); U.S. ones in English."""
    has_chinese = {
        market: sample[market]["news"]["headline"].str.contains(r"[\u4e00-\u9fff]", regex=True)
        for market in MARKETS
    }
    assert has_chinese["cn"].all()
    assert not has_chinese["us"].any()
