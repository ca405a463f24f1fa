"""What a position-aware agent sees of its book (DESIGN §7): one row of the `book` table.

The book is written by the backtest package's one-session step (one Parquet file per arm,
market and session); inference only reads it, as a table, by column name. The prompt of
decision date D shows the book after the latest session before D.
"""

from __future__ import annotations

import glob
import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import duckdb
import pandas as pd
import pyarrow.parquet as pq

from ingest.layout import DataLayout

# Codes of `book.order_status` that mean the market's rules did not let an order fill as asked.
BLOCKED_ORDERS = {
    "limit_up": "a buy was blocked, the open was at or above the limit-up price",
    "limit_down": "a sell was blocked, the open was at or below the limit-down price",
    "cash": "the buy was cut to what the cash covered",
    "lot": "nothing was bought, one lot costs more than the target allows",
    "t_plus_one": "the sell was capped, shares bought that session can only be sold the next (T+1)",
}


@dataclass(frozen=True)
class Holding:
    """One ticker sleeve's book after the close of `book_date`."""

    book_date: date
    shares: float
    cash: float
    exposure: float
    avg_entry_price: float | None = None
    entry_date: date | None = None
    unrealized_return: float | None = None
    sessions_held: int = 0
    last_fill_date: date | None = None
    last_fill_shares: float | None = None  # signed: + bought, - sold
    last_fill_price: float | None = None
    order_status: str | None = None  # what happened to the order of book_date
    row_hash: str | None = None  # the book row's content hash (decisions record what they saw)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Holding:
        return cls(
            book_date=row["date"],
            shares=float(row["shares"]),
            cash=float(row["cash"]),
            exposure=float(row["exposure"]),
            avg_entry_price=_finite(row.get("avg_entry_price")),
            entry_date=row.get("entry_date"),
            unrealized_return=_finite(row.get("unrealized_return")),
            sessions_held=int(row.get("sessions_held") or 0),
            last_fill_date=row.get("last_fill_date"),
            last_fill_shares=_finite(row.get("last_fill_shares")),
            last_fill_price=_finite(row.get("last_fill_price")),
            order_status=row.get("order_status"),
            row_hash=row.get("row_hash"),
        )

    @property
    def held(self) -> bool:
        return self.shares > 0

    def fingerprint(self) -> str:
        """What of the book can change a prompt or a guarded decision: the book row's content
        hash where the row has one (it covers every column), else the fields themselves."""
        if self.row_hash is not None:
            return self.row_hash
        shown = tuple(getattr(self, name) for name in self.__dataclass_fields__)
        return hashlib.sha256(repr(shown).encode()).hexdigest()


def _finite(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else number


def latest_books(
    layout: DataLayout, arm: str, market: str, before: date
) -> tuple[date | None, dict[str, Holding]]:
    """The arm's book in a market after its latest session before `before`, by ticker;
    (None, {}) when it has none yet."""
    latest = layout.latest_book_file(arm, market, before)
    if latest is None:
        return None, {}
    day, path = latest
    rows = pq.read_table(path).to_pylist()
    return day, {row["ticker"]: Holding.from_row(row) for row in rows}


def stale_decisions(layout: DataLayout) -> pd.DataFrame:
    """Decisions made on a book that has changed since: the latest book before their date is
    not the row (`book_hash`) or the session (`book_date`) they were shown. One row per such
    decision: arm, market, ticker, decision_date, book_date, current_book_date."""
    columns = ["arm", "market", "ticker", "decision_date", "book_date", "current_book_date"]
    if not glob.glob(layout.decision_files):
        return pd.DataFrame(columns=columns)
    books = (
        f"select arm, market, ticker, \"date\", row_hash from read_parquet('{layout.book_files}',"
        " union_by_name = true, hive_partitioning = false)"
        if glob.glob(layout.book_files)
        else "select null::varchar as arm, null::varchar as market, null::varchar as ticker, "
        'null::date as "date", null::varchar as row_hash where false'
    )
    query = f"""
        with decisions as (
            select arm, market, ticker, decision_date, book_date, book_hash
            from read_parquet(?, union_by_name = true, hive_partitioning = false)
        ),
        books as ({books})
        select decisions.arm, decisions.market, decisions.ticker, decisions.decision_date,
            decisions.book_date, books."date" as current_book_date
        from decisions asof left join books
            on decisions.arm = books.arm and decisions.market = books.market
            and decisions.ticker = books.ticker and decisions.decision_date > books."date"
        where books.row_hash is distinct from decisions.book_hash
        order by all
    """
    with duckdb.connect() as connection:
        return connection.execute(query, [layout.decision_files]).df()
