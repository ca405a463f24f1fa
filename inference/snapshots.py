"""Read pit_snapshots rows from the warehouse as plain Python values (read-only)."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import duckdb


class SnapshotNotFound(LookupError):
    pass


def load_snapshot(warehouse: Path, market: str, ticker: str, decision_date: date) -> dict[str, Any]:
    if not warehouse.is_file():
        raise SnapshotNotFound(f"{warehouse}: no warehouse; run `strat-llm build` first")
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        cursor = connection.execute(
            "select * from pit_snapshots where market = ? and ticker = ? and decision_date = ?",
            [market, ticker, decision_date],
        )
        rows = cursor.fetchall()
        columns = [column[0] for column in cursor.description]
        if not rows:
            [(first, last, tickers)] = connection.execute(
                "select min(decision_date), max(decision_date), count(distinct ticker)"
                " from pit_snapshots where market = ?",
                [market],
            ).fetchall()
            raise SnapshotNotFound(
                f"no snapshot for {market}/{ticker} on {decision_date}; {market} has "
                f"{tickers} tickers with decision dates {first} .. {last} (sessions only)"
            )
    return dict(zip(columns, rows[0], strict=True))
