"""S1-S4 as words: read from the dbt seed `strategies`, the one source of the rules' text.

The SQL that implements them is `int_strategy_signals`; a test proves both list the same
rules and that the thresholds the words state equal the dbt vars the SQL uses.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from pathlib import Path

STRATEGIES_SEED = Path(__file__).resolve().parents[1] / "dbt" / "seeds" / "strategies.csv"
RULE_IDS = ("S1", "S2", "S3", "S4")


@dataclass(frozen=True)
class Strategy:
    strategy_id: str
    name: str
    description: str
    entry_rule: str
    exit_rule: str

    def signal_column(self, side: str) -> str:
        """The boolean in pit_snapshots.signals for this rule's entry or exit."""
        return f"{self.strategy_id.lower()}_{side}"


@cache
def load_strategies(path: Path = STRATEGIES_SEED) -> tuple[Strategy, ...]:
    with path.open(encoding="utf-8", newline="") as handle:
        strategies = tuple(Strategy(**row) for row in csv.DictReader(handle))
    ids = tuple(strategy.strategy_id for strategy in strategies)
    if ids != RULE_IDS:
        raise ValueError(f"{path}: expected strategies {RULE_IDS} in order, found {ids}")
    return strategies


def strategies_markdown() -> str:
    """The rules as a Markdown table (docs render from the same seed as the prompts)."""
    lines = ["| rule | name | entry | exit |", "|---|---|---|---|"]
    for s in load_strategies():
        lines.append(f"| {s.strategy_id} | {s.name} | {s.entry_rule} | {s.exit_rule} |")
    return "\n".join(lines)
