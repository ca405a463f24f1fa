"""How often S1-S4 fire: per market and rule, the share of ticker-days (snapshots of
pit_snapshots) whose entry and whose exit signal fires. `strat-llm demo` prints it after the
warehouse build: a rule that fires on most ticker-days reads as a state, not an event, and
gives a rule-following agent no decision to make."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd

from inference.strategies import load_strategies

SIDES = ("entry", "exit")


def signal_columns() -> list[str]:
    """The signal booleans of pit_snapshots.signals, in rule order (s1_entry, s1_exit, ...)."""
    return [strategy.signal_column(side) for strategy in load_strategies() for side in SIDES]


def firing_rates(signals: pd.DataFrame) -> pd.DataFrame:
    """One row per market and rule: ticker_days, and the fraction of them on which the entry
    and the exit fire. `signals` has a market column and one boolean column per signal; a
    missing value did not fire."""
    columns = signal_columns()
    absent = [column for column in ["market", *columns] if column not in signals.columns]
    if absent:
        raise ValueError(f"firing_rates: signals lack column(s) {', '.join(absent)}")
    fired = signals[columns].fillna(False).astype(bool)
    shares = fired.groupby(signals["market"]).mean()
    days = signals.groupby("market").size()
    rows = [
        {
            "market": market,
            "rule": strategy.strategy_id,
            "ticker_days": int(days[market]),
            "entry": float(shares.loc[market, strategy.signal_column("entry")]),
            "exit": float(shares.loc[market, strategy.signal_column("exit")]),
        }
        for market in shares.index
        for strategy in load_strategies()
    ]
    return pd.DataFrame(rows, columns=["market", "rule", "ticker_days", "entry", "exit"])


def read_signals(warehouse: Path) -> pd.DataFrame:
    """Market and the signal booleans of every snapshot in pit_snapshots."""
    selected = ", ".join(f"signals.{column} as {column}" for column in signal_columns())
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        return connection.sql(f"select market, {selected} from pit_snapshots").df()


def format_firing_rates(rates: pd.DataFrame) -> str:
    """One line per market: the ticker-days, then entry % / exit % of each rule."""
    if rates.empty:
        return "signal firing rates: no snapshots"
    rules = list(dict.fromkeys(rates["rule"]))
    header = f"  {'market':<7}{'ticker-days':>12}" + "".join(f"{rule:>14}" for rule in rules)
    lines = [
        "signal firing rates (% of ticker-days on which the entry / the exit fires):",
        header,
    ]
    for market, group in rates.groupby("market", sort=True):
        by_rule = group.set_index("rule")
        cells = "".join(
            f"{by_rule.loc[rule, 'entry'] * 100:>7.1f} /{by_rule.loc[rule, 'exit'] * 100:>5.1f}"
            for rule in rules
        )
        lines.append(f"  {market:<7}{int(group['ticker_days'].iloc[0]):>12}{cells}")
    return "\n".join(lines)


def firing_table(warehouse: Path) -> str:
    return format_firing_rates(firing_rates(read_signals(warehouse)))
