"""Leakage and contract suites, built in code: one function per table.

Each suite is validated on a pandas frame loaded by `expectations.frames`, which derives the
content-based columns (the newest date inside price_history, the newest item inside news, the
report's own publication) so that the gate checks what a model would see, not only the audit
columns the warehouse wrote about itself.
"""

from __future__ import annotations

import great_expectations as gx
import great_expectations.expectations as gxe

SNAPSHOT_KEY = ["market", "ticker", "decision_date"]

# The only columns pit_snapshots may have (DESIGN §5). An allow-list, not a name guess: any
# other column (a forward return, a label, a "next_open") fails the gate whatever its name.
SNAPSHOT_COLUMNS = [
    "market",
    "ticker",
    "decision_date",
    "information_cutoff",
    "price_history",
    "features",
    "signals",
    "news",
    "report",
    "max_price_date",
    "max_news_published_at",
    "report_published_at",
    "snapshot_hash",
]


def _before(later: str, earlier: str) -> gxe.Expectation:
    """Every row's `earlier` is strictly before its `later`; rows missing either are skipped."""
    return gxe.ExpectColumnPairValuesAToBeGreaterThanB(
        column_A=later,
        column_B=earlier,
        or_equal=False,
        ignore_row_if="either_value_is_missing",
    )


def _suite(name: str, expectations: list[gxe.Expectation]) -> gx.ExpectationSuite:
    suite = gx.ExpectationSuite(name=name)
    for expectation in expectations:
        suite.add_expectation(expectation)
    return suite


def pit_snapshots_schema_suite() -> gx.ExpectationSuite:
    return _suite(
        "pit_snapshots.schema",
        [gxe.ExpectTableColumnsToMatchSet(column_set=SNAPSHOT_COLUMNS, exact_match=True)],
    )


def pit_snapshots_suite() -> gx.ExpectationSuite:
    """Nothing from on or after the decision may be inside a snapshot."""
    return _suite(
        "pit_snapshots",
        [
            gxe.ExpectCompoundColumnsToBeUnique(column_list=SNAPSHOT_KEY),
            gxe.ExpectColumnValuesToNotBeNull(column="information_cutoff"),
            gxe.ExpectColumnValuesToNotBeNull(column="max_price_date"),
            _before("decision_date", "max_price_date"),
            _before("decision_date", "price_history_max_date"),
            _before("information_cutoff", "max_news_published_at"),
            _before("information_cutoff", "news_max_published_at"),
            _before("information_cutoff", "report_published_at"),
            _before("information_cutoff", "report_own_published_at"),
            _before("decision_date", "report_period_end"),
            # The open comes from exchange_calendars, independently of the warehouse's SQL.
            _before("session_open_at", "information_cutoff"),
        ],
    )


def raw_universe_suite() -> gx.ExpectationSuite:
    return _suite(
        "raw.universe",
        [
            gxe.ExpectCompoundColumnsToBeUnique(column_list=["market", "ticker"]),
            gxe.ExpectColumnValuesToNotBeNull(column="ticker"),
        ],
    )


def raw_prices_suite() -> gx.ExpectationSuite:
    return _suite(
        "raw.prices",
        [
            gxe.ExpectCompoundColumnsToBeUnique(column_list=["market", "ticker", "date"]),
            gxe.ExpectColumnValuesToNotBeNull(column="date"),
            gxe.ExpectColumnValuesToBeBetween(column="low", min_value=0, strict_min=True),
            gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                column_A="high", column_B="low", or_equal=True
            ),
        ],
    )


def raw_benchmark_suite() -> gx.ExpectationSuite:
    return _suite(
        "raw.benchmark",
        [
            gxe.ExpectCompoundColumnsToBeUnique(column_list=["market", "date"]),
            gxe.ExpectColumnValuesToBeBetween(column="close", min_value=0, strict_min=True),
        ],
    )


def raw_news_suite() -> gx.ExpectationSuite:
    return _suite(
        "raw.news",
        [
            gxe.ExpectCompoundColumnsToBeUnique(column_list=["market", "news_id", "ticker"]),
            gxe.ExpectColumnValuesToNotBeNull(column="published_at"),
        ],
    )


def raw_reports_suite() -> gx.ExpectationSuite:
    return _suite(
        "raw.reports",
        [
            gxe.ExpectCompoundColumnsToBeUnique(column_list=["market", "report_id"]),
            gxe.ExpectCompoundColumnsToBeUnique(
                column_list=["market", "ticker", "fiscal_year", "published_at"]
            ),
            gxe.ExpectColumnValuesToNotBeNull(column="published_at"),
            # Announced after the period it describes (compared as UTC dates).
            _before("published_date", "period_end"),
        ],
    )


def knowledge_cutoff_suite(model_id: str, knowledge_cutoff: str) -> gx.ExpectationSuite:
    """Decisions on or before a model's training cutoff may be answered from memory."""
    return _suite(
        f"knowledge_cutoff.{model_id}",
        [
            gxe.ExpectColumnValuesToBeBetween(
                column="decision_date", min_value=knowledge_cutoff, strict_min=True
            )
        ],
    )


RAW_SUITES = {
    "universe": raw_universe_suite,
    "prices": raw_prices_suite,
    "benchmark": raw_benchmark_suite,
    "news": raw_news_suite,
    "reports": raw_reports_suite,
}
