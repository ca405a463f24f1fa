"""The portfolio metrics per arm and market as a text table (the end of `strat-llm backtest`
and `strat-llm demo`), read from the `backtest_metrics` mart."""

from __future__ import annotations

import math
from pathlib import Path

import duckdb

KIND_LABELS = {
    "llm": "LLM",
    "reference": "rule agent, NOT an LLM",
    "baseline": "baseline, NOT an LLM",
}

# (header, column, format): percentages are of the fraction stored in the mart.
COLUMNS = (
    ("total %", "total_return", "{:+.1f}", 100.0),
    ("ann. %", "annualized_return", "{:+.1f}", 100.0),
    ("vol %", "annualized_volatility", "{:.1f}", 100.0),
    ("sharpe", "sharpe", "{:.2f}", 1.0),
    ("max dd %", "max_drawdown", "{:.1f}", 100.0),
    ("alpha %", "alpha", "{:+.1f}", 100.0),
    ("vs B&H %", "excess_return", "{:+.1f}", 100.0),
    ("trades", "n_trades", "{:.0f}", 1.0),
    ("win %", "win_rate", "{:.0f}", 100.0),
    ("fidelity", "fidelity", "{:.2f}", 1.0),
    ("tax %", "alignment_tax", "{:+.1f}", 100.0),
)


def _cell(value: object, fmt: str, scale: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return fmt.format(float(value) * scale)


def portfolio_table(warehouse: Path) -> str:
    """One line per market and arm: the portfolio's metrics, the arm's kind spelled out."""
    names = ", ".join(column for _, column, _, _ in COLUMNS)
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        rows = connection.execute(
            f"select market, arm, arm_kind, window_start, window_end, {names} "
            "from backtest_metrics where ticker = '__portfolio__' "
            "order by market desc, case arm_kind when 'llm' then 0 when 'reference' then 1 "
            "else 2 end, arm"
        ).fetchall()
    if not rows:
        return "backtest_metrics has no portfolio rows"
    table = [["market", "arm", *(header for header, _, _, _ in COLUMNS), "kind"]]
    windows = {}
    for market, arm, kind, start, end, *values in rows:
        windows[market] = (start, end)
        cells = [
            _cell(v, fmt, scale) for v, (_, _, fmt, scale) in zip(values, COLUMNS, strict=True)
        ]
        table.append([market, arm, *cells, KIND_LABELS.get(kind, kind)])
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = [
        "  ".join(
            cell.ljust(width) if i in (0, 1, len(row) - 1) else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in table
    ]
    spans = "; ".join(f"{market} {start} .. {end}" for market, (start, end) in windows.items())
    return "\n".join(
        [f"portfolio metrics per arm and market (equal-capital sleeves; {spans}):", *lines]
    )
