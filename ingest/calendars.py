"""Exchange sessions per market, from exchange_calendars (the one source of trading days)."""

from __future__ import annotations

import warnings
from datetime import date
from functools import cache

import exchange_calendars as xcals
import pandas as pd

MARKET_CALENDARS: dict[str, str] = {"us": "XNYS", "cn": "XSHG"}
MARKETS: tuple[str, ...] = tuple(MARKET_CALENDARS)


def check_market(market: str) -> str:
    if market not in MARKET_CALENDARS:
        raise ValueError(f"unknown market {market!r}; expected one of {', '.join(MARKETS)}")
    return market


@cache
def _calendar(market: str) -> xcals.ExchangeCalendar:
    # One cached calendar per market over the library's whole recorded span (XSHG holidays are
    # only recorded a year or so ahead, so no fixed far-future end is possible).
    with warnings.catch_warnings():
        # exchange_calendars 4.13 reads Series.values on tz-aware data, deprecated in pandas 3.1.
        warnings.filterwarnings("ignore", message="Series.values returning an ndarray")
        return xcals.get_calendar(MARKET_CALENDARS[check_market(market)], start="2005-01-01")


def market_timezone(market: str) -> str:
    return str(_calendar(market).tz)


def sessions(market: str, start: date | str, end: date | str) -> list[date]:
    """Trading sessions of the market's exchange from start to end, both inclusive."""
    calendar = _calendar(market)
    first = max(pd.Timestamp(start), calendar.first_session)
    last = min(pd.Timestamp(end), calendar.last_session)
    if first > last:
        return []
    return [ts.date() for ts in calendar.sessions_in_range(first, last)]


def session_open_utc(market: str, session: date | str) -> pd.Timestamp:
    """The session's opening time as a UTC timestamp (DST handled by the calendar)."""
    return _calendar(market).session_open(pd.Timestamp(session))


def session_close_utc(market: str, session: date | str) -> pd.Timestamp:
    """The session's closing time as a UTC timestamp (early closes, e.g. U.S. half-days)."""
    return _calendar(market).session_close(pd.Timestamp(session))


# Decisions are made for the next session(s) after the data ends (live-forward), so the
# calendar written beside the raw data reaches this many sessions past the last price.
FORWARD_SESSIONS = 10


def session_table(market: str, first: date, last: date) -> pd.DataFrame:
    """Sessions from `first` to FORWARD_SESSIONS sessions after `last`: the decision calendar."""
    calendar = _calendar(market)
    horizon = min(
        pd.Timestamp(last) + pd.Timedelta(days=3 * FORWARD_SESSIONS), calendar.last_session
    )
    days = [day for day in sessions(market, first, horizon.date())]
    after = [day for day in days if day > last][:FORWARD_SESSIONS]
    kept = [day for day in days if day <= last] + after
    return pd.DataFrame({"market": market, "session_date": kept})
