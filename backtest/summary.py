"""The portfolio metrics per arm and market as a text table (the end of `strat-llm backtest`
and `strat-llm demo`), read from the `backtest_metrics` mart.

Every arm is measured over its own window, shown on its line; where the arms of a market have
different windows the table says so, and names the sessions an alignment tax was taken over
when they are fewer than the arm's own (the common window with its Free arm)."""

from __future__ import annotations

import math
from pathlib import Path

import duckdb

KIND_LABELS = {
    "llm": "LLM",
    "reference": "rule agent, NOT an LLM",
    "control": "random control (guardrail's effect), NOT an LLM",
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


QUERY = """
select
    metrics.market, metrics.arm, metrics.arm_kind, metrics.window_start, metrics.window_end,
    metrics.n_sessions, metrics.alignment_tax_start, metrics.alignment_tax_end,
    sessions.first_session, sessions.last_session, {names}
from backtest_metrics as metrics
left join (
    select arm, market, min("date") as first_session, max("date") as last_session
    from backtest_daily where ticker = '__portfolio__' group by arm, market
) as sessions using (arm, market)
where metrics.ticker = '__portfolio__'
order by metrics.market desc,
    case metrics.arm_kind when 'llm' then 0 when 'reference' then 1 when 'control' then 2
        else 3 end, metrics.arm
"""


def portfolio_table(warehouse: Path) -> str:
    """One line per market and arm: its window, the portfolio's metrics, its kind spelled out;
    then what differs between the arms' windows."""
    names = ", ".join(f"metrics.{column}" for _, column, _, _ in COLUMNS)
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        rows = connection.execute(QUERY.format(names=names)).fetchall()
    if not rows:
        return "backtest_metrics has no portfolio rows"
    table = [["market", "arm", "window", "sessions", *(h for h, _, _, _ in COLUMNS), "kind"]]
    windows: dict[str, set[tuple[object, object]]] = {}
    notes = []
    for market, arm, kind, start, end, sessions, tax_start, tax_end, first, last, *values in rows:
        windows.setdefault(market, set()).add((start, end))
        cells = [
            _cell(v, fmt, scale) for v, (_, _, fmt, scale) in zip(values, COLUMNS, strict=True)
        ]
        table.append(
            [market, arm, f"{start}..{end}", str(sessions), *cells, KIND_LABELS.get(kind, kind)]
        )
        if tax_start is not None and (tax_start, tax_end) != (first, last):
            notes.append(
                f"{market} {arm}: tax % over {tax_start} .. {tax_end} only, the sessions it "
                "shares with its Free arm"
            )
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = [
        "  ".join(
            cell.ljust(width) if i in (0, 1, 2, len(row) - 1) else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in table
    ]
    differ = [
        f"{market}: the arms' windows differ ({len(spans)} windows): each line is over its own "
        "window; compare arms over a common window (tax % does)"
        for market, spans in windows.items()
        if len(spans) > 1
    ]
    return "\n".join(
        [
            "portfolio metrics per arm and market (equal-capital sleeves, each arm over its own "
            "window; vs B&H % against holding the same tickers over that window; tax % against "
            "the Free arm over the sessions both have):",
            *lines,
            *differ,
            *notes,
        ]
    )
