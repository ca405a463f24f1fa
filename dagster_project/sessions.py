"""Decision-date partitions that are trading sessions: exactly the dates of the ingested
session calendars (`ingest.load.decision_sessions`), from the first to the last.

A daily time window with every other day excluded, not dynamic partitions: Dagster maps a
time window to the previous partition (`TimeWindowPartitionMapping(-1, -1)`), which is how the
decisions of D depend on the book of D-1, and with exclusions the previous partition is the
previous session (a Friday before a Monday, the day before a holiday). Weekdays on which no
market trades are excluded by cron, the remaining non-sessions (holidays of every ingested
market) one by one; a holiday of one market is a session of the other, hence a partition.
"""

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta

import dagster as dg

PARTITION_FORMAT = "%Y-%m-%d"
# Dagster's cron day-of-week numbers (0 = Sunday) for date.isoweekday() % 7.
_CRON_WEEKDAY = {day: day % 7 for day in range(1, 8)}
# A calendar with no sessions (nothing ingested): a window that holds no partition.
_EMPTY_START = date(2000, 1, 1)


def session_partitions(sessions: Sequence[date]) -> dg.TimeWindowPartitionsDefinition:
    """Daily partitions keyed YYYY-MM-DD, one per session of `sessions` and no other."""
    days = sorted(set(sessions))
    if not days:
        start = _EMPTY_START.isoformat()
        return dg.TimeWindowPartitionsDefinition(
            start=start, end=start, cron_schedule="0 0 * * *", fmt=PARTITION_FORMAT
        )
    first, last = days[0], days[-1]
    traded_weekdays = {day.isoweekday() for day in days}
    closed_weekdays = sorted(
        _CRON_WEEKDAY[weekday] for weekday in range(1, 8) if weekday not in traded_weekdays
    )
    exclusions: list[str | datetime] = [f"0 0 * * {weekday}" for weekday in closed_weekdays]
    session_set = set(days)
    day = first
    while day < last:
        if day not in session_set and day.isoweekday() in traded_weekdays:
            exclusions.append(datetime(day.year, day.month, day.day, tzinfo=UTC))
        day += timedelta(days=1)
    return dg.TimeWindowPartitionsDefinition(
        start=first.isoformat(),
        end=(last + timedelta(days=1)).isoformat(),  # exclusive
        cron_schedule="0 0 * * *",
        fmt=PARTITION_FORMAT,
        exclusions=exclusions or None,
        # The partition of today is there from 00:00 UTC of its day: the live-forward decision
        # for today's session, made before its open.
        end_offset=1,
    )


def sessions_in_window(sessions: Sequence[date], start: date, end: date) -> list[date]:
    """The sessions from start to end, both inclusive: the partitions a run over them covers."""
    return [day for day in sessions if start <= day <= end]
