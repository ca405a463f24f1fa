"""The raw data contract (DESIGN §4): one definition of every raw table, its columns and keys.

The files source, the sample generator's output check, the raw Parquet schema and the README's
contract table all derive from `TABLES`; nothing else lists raw columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pyarrow as pa

# The benchmark's `kind`: a total-return index reinvests dividends; a price index does not.
BENCHMARK_KINDS: tuple[str, ...] = ("total_return", "price")

ColumnKind = Literal["text", "date", "timestamp", "float", "int"]

ARROW_TYPES: dict[ColumnKind, pa.DataType] = {
    "text": pa.string(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "float": pa.float64(),
    "int": pa.int64(),
}


@dataclass(frozen=True)
class Column:
    name: str
    kind: ColumnKind
    description: str
    required: bool = True  # the column must be present in the file
    nullable: bool = False  # an empty value is allowed
    default: float | str | None = None  # the value of an optional column that is absent or empty
    minimum: float | None = None
    minimum_exclusive: bool = False  # True: values must be > minimum, else >= minimum


@dataclass(frozen=True)
class TableSpec:
    name: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    description: str
    optional: bool = False  # the file may be absent: the table is then empty

    @property
    def column_names(self) -> list[str]:
        return [column.name for column in self.columns]

    @property
    def required_columns(self) -> list[str]:
        return [column.name for column in self.columns if column.required]

    def column(self, name: str) -> Column:
        return next(column for column in self.columns if column.name == name)

    @property
    def references_universe(self) -> bool:
        return self.name != "universe" and "ticker" in self.column_names

    def arrow_schema(self) -> pa.Schema:
        """Schema of the raw Parquet file: the market first, then the contract's columns."""
        fields = [pa.field("market", pa.string(), nullable=False)]
        fields += [
            pa.field(column.name, ARROW_TYPES[column.kind], nullable=column.nullable)
            for column in self.columns
        ]
        return pa.schema(fields)


def _price(name: str) -> Column:
    return Column(name, "float", f"{name} price (> 0)", minimum=0.0, minimum_exclusive=True)


def _figure(name: str, description: str, required: bool = True) -> Column:
    # Figures may be null (not every company reports every line item); null means unknown, not 0.
    return Column(name, "float", description, required=required, nullable=True)


TABLES: dict[str, TableSpec] = {
    spec.name: spec
    for spec in (
        TableSpec(
            "universe",
            (
                Column("ticker", "text", "exchange ticker (CN: six-digit code, kept as text)"),
                Column("name", "text", "company name"),
                Column("sector", "text", "sector", required=False, nullable=True),
                Column(
                    "price_limit_pct",
                    "float",
                    "daily price limit in % overriding the market's (CN: 20 for ChiNext/STAR,"
                    " 5 for ST)",
                    required=False,
                    nullable=True,
                    minimum=0.0,
                    minimum_exclusive=True,
                ),
                Column(
                    "member_from",
                    "date",
                    "first decision date of index membership, inclusive (empty: from the start)",
                    required=False,
                    nullable=True,
                ),
                Column(
                    "member_to",
                    "date",
                    "last decision date of index membership, inclusive (empty: open-ended)",
                    required=False,
                    nullable=True,
                ),
            ),
            key=("ticker",),
            description="the tradable tickers of the market",
        ),
        TableSpec(
            "prices",
            (
                Column("ticker", "text", "ticker listed in universe"),
                Column("date", "date", "exchange-local trading date (YYYY-MM-DD)"),
                _price("open"),
                _price("high"),
                _price("low"),
                _price("close"),
                Column("volume", "float", "traded volume in shares (>= 0)", minimum=0.0),
                Column(
                    "adj_factor",
                    "float",
                    "split/dividend adjustment factor (> 0)",
                    required=False,
                    default=1.0,
                    minimum=0.0,
                    minimum_exclusive=True,
                ),
            ),
            key=("ticker", "date"),
            description="daily bars, one row per ticker and exchange session",
        ),
        TableSpec(
            "benchmark",
            (
                Column("date", "date", "exchange-local trading date (YYYY-MM-DD)"),
                _price("close"),
                Column(
                    "kind",
                    "text",
                    f"{' or '.join(BENCHMARK_KINDS)}, the same on every row (a total-return "
                    "index reinvests dividends)",
                    required=False,
                    default=BENCHMARK_KINDS[-1],
                ),
            ),
            key=("date",),
            description="the market index (e.g. S&P 500, CSI 300), one row per session",
        ),
        TableSpec(
            "news",
            (
                Column("news_id", "text", "item id; one item may be tagged to several tickers"),
                Column("ticker", "text", "ticker listed in universe"),
                Column("published_at", "timestamp", "publication time with a UTC offset"),
                Column("headline", "text", "headline"),
                Column("body", "text", "body or summary", required=False, nullable=True),
                Column("source", "text", "publisher", required=False, nullable=True),
            ),
            key=("news_id", "ticker"),
            description="timestamped news items",
        ),
        TableSpec(
            "reports",
            (
                Column("report_id", "text", "report id (a restatement has its own id)"),
                Column("ticker", "text", "ticker listed in universe"),
                Column("fiscal_year", "int", "fiscal year the report describes"),
                Column("period_end", "date", "last day of the fiscal period"),
                Column(
                    "published_at",
                    "timestamp",
                    "when the annual report was announced/filed, with a UTC offset",
                ),
                _figure("revenue", "revenue"),
                _figure("net_income", "net income"),
                _figure("total_assets", "total assets"),
                _figure("total_equity", "total equity"),
                _figure("eps", "earnings per share", required=False),
                _figure("operating_cash_flow", "operating cash flow", required=False),
                Column("summary", "text", "summary text", required=False, nullable=True),
            ),
            key=("report_id",),
            description="annual reports gated by announcement time; restatements are new rows",
        ),
        TableSpec(
            "corporate_actions",
            (
                Column("ticker", "text", "ticker listed in universe"),
                Column(
                    "ex_date",
                    "date",
                    "session on which the shares trade without the entitlement (YYYY-MM-DD)",
                ),
                Column(
                    "split_ratio",
                    "float",
                    "shares after per share before (2 for a 2-for-1 split, 1.8 for 8 bonus "
                    "shares per 10; 1 when none)",
                    minimum=0.0,
                    minimum_exclusive=True,
                ),
                Column(
                    "cash_dividend",
                    "float",
                    "cash per share before the event, listing currency (0 when none; below the "
                    "previous close)",
                    minimum=0.0,
                ),
                Column(
                    "announced_at",
                    "timestamp",
                    "when the event became known, with a UTC offset, not after the ex-date's "
                    "open (empty: known at the ex-date's open)",
                    required=False,
                    nullable=True,
                ),
            ),
            key=("ticker", "ex_date"),
            description="splits, bonus issues and cash dividends by ex-date",
            optional=True,
        ),
        TableSpec(
            "risk_free",
            (
                Column("date", "date", "date the rate applies from (YYYY-MM-DD)"),
                Column(
                    "annual_rate",
                    "float",
                    "annual risk-free rate as a decimal fraction (0.045 for 4.5 %)",
                ),
            ),
            key=("date",),
            description="the market's annual risk-free rate",
            optional=True,
        ),
    )
}

TABLE_NAMES: tuple[str, ...] = tuple(TABLES)
REQUIRED_TABLES: tuple[str, ...] = tuple(name for name, spec in TABLES.items() if not spec.optional)
FILE_SUFFIXES: tuple[str, ...] = (".csv", ".parquet")


def contract_markdown() -> str:
    """The contract as a Markdown table (the README's section is generated from this)."""
    lines = ["| file | key | columns |", "|---|---|---|"]
    for spec in TABLES.values():
        cells = []
        for column in spec.columns:
            flags = []
            if not column.required:
                flags.append("optional")
            if column.nullable and column.required:
                flags.append("may be empty")
            if isinstance(column.default, str):
                flags.append(f"default `{column.default}`")
            elif column.default is not None:
                flags.append(f"default {column.default:g}")
            suffix = f" ({', '.join(flags)})" if flags else ""
            cells.append(f"`{column.name}` {column.kind}{suffix}")
        name = f"`{spec.name}`" + (" (optional file)" if spec.optional else "")
        lines.append(f"| {name} | {', '.join(spec.key)} | {'; '.join(cells)} |")
    return "\n".join(lines)
