"""Where data lives: one data directory (default `data/`, env STRAT_LLM_DATA) for every stage.

The warehouse file is, in order: an explicit path; `<data_dir>/warehouse.duckdb` when the data
directory itself is explicit; STRAT_LLM_WAREHOUSE; `<data_dir>/warehouse.duckdb`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from urllib.parse import quote, unquote

DATA_DIR_ENV = "STRAT_LLM_DATA"
WAREHOUSE_ENV = "STRAT_LLM_WAREHOUSE"
WAREHOUSE_FILE = "warehouse.duckdb"


def arm_component(arm: str) -> str:
    """The folder name of an arm in the landing layout: `arm=` and the slug percent-encoded
    (RFC 3986: letters, digits and `-._~` stay; `/` of `org/name` model ids becomes `%2F`, `%`
    itself `%25`). One path component, whatever the slug: nothing can name a parent folder."""
    if not arm:
        raise ValueError("an arm slug may not be empty")
    return "arm=" + quote(arm, safe="-._~")


def arm_from_component(component: str) -> str:
    """The arm slug of a landing folder name (the inverse of `arm_component`)."""
    if not component.startswith("arm="):
        raise ValueError(f"{component!r} is not an arm folder (arm=<encoded slug>)")
    return unquote(component.removeprefix("arm="))


def _absolute(path: str | Path) -> Path:
    return Path(path).expanduser().resolve()


@dataclass(frozen=True)
class DataLayout:
    data_dir: Path
    warehouse: Path = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.warehouse is None:
            object.__setattr__(self, "warehouse", self.data_dir / WAREHOUSE_FILE)

    @classmethod
    def from_env(
        cls, data_dir: str | Path | None = None, warehouse: str | Path | None = None
    ) -> DataLayout:
        if data_dir:
            chosen_dir = _absolute(data_dir)
            chosen_warehouse = _absolute(warehouse) if warehouse else None
        else:
            chosen_dir = _absolute(os.environ.get(DATA_DIR_ENV) or "data")
            from_env = warehouse or os.environ.get(WAREHOUSE_ENV)
            chosen_warehouse = _absolute(from_env) if from_env else None
        return cls(chosen_dir, chosen_warehouse)  # type: ignore[arg-type]

    def raw_dir(self, market: str) -> Path:
        return self.data_dir / "raw" / market

    def raw_file(self, market: str, table: str) -> Path:
        return self.raw_dir(market) / f"{table}.parquet"

    def ingest_manifest(self, market: str) -> Path:
        return self.raw_dir(market) / "_ingest.json"

    def quarantine_file(self, market: str, table: str) -> Path:
        return self.data_dir / "quarantine" / market / f"{table}.parquet"

    @property
    def landing_dir(self) -> Path:
        """Python-written tables that dbt reads as the `landing` source."""
        return self.data_dir / "landing"

    def decision_file(self, arm: str, market: str, day: date) -> Path:
        """`llm_decisions` of one arm, market and decision date (DESIGN §7)."""
        return self._keyed_file("llm_decisions", arm, market, day)

    def book_file(self, arm: str, market: str, day: date) -> Path:
        """The `book` of one arm and market after session `day` (one row per ticker)."""
        return self._keyed_file("book", arm, market, day)

    def latest_book_file(self, arm: str, market: str, before: date) -> tuple[date, Path] | None:
        """The book file of the arm and market with the latest session before `before`."""
        folder = self.book_file(arm, market, before).parent
        earlier = [
            (day, path)
            for path in folder.glob("date=*.parquet")
            if (day := date.fromisoformat(path.stem.removeprefix("date="))) < before
        ]
        return max(earlier) if earlier else None

    def _keyed_file(self, table: str, arm: str, market: str, day: date) -> Path:
        # The market is in the key: nothing written for one market may touch another's rows.
        folder = self.landing_dir / table / arm_component(arm) / f"market={market}"
        return folder / f"date={day.isoformat()}.parquet"

    @property
    def decision_files(self) -> str:
        """Glob of every arm's `llm_decisions` Parquet (one file per arm, market and date)."""
        return str(self.landing_dir / "llm_decisions" / "arm=*" / "market=*" / "*.parquet")

    @property
    def book_files(self) -> str:
        """Glob of every arm's `book` Parquet (one file per arm, market and session)."""
        return str(self.landing_dir / "book" / "arm=*" / "market=*" / "*.parquet")

    def backtest_file(self, table: str) -> Path:
        """A table of the last backtest run (`backtest.run`): sleeves, round_trips, arms."""
        return self.landing_dir / "backtest" / f"{table}.parquet"

    def backtest_result_file(self, table: str, arm: str, market: str) -> Path:
        """One arm's backtest result in one market (`backtest.run`), table sleeves,
        round_trips or arms: a run replaces the files of the arms and markets it simulated
        and leaves every other result as it stands."""
        folder = self.landing_dir / "backtest" / table / arm_component(arm)
        return folder / f"market={market}.parquet"

    def backtest_result_files(self, table: str) -> str:
        """Glob of every arm's and market's backtest result of one table."""
        return str(self.landing_dir / "backtest" / table / "arm=*" / "market=*.parquet")

    @property
    def response_cache(self) -> Path:
        """The LLM response cache (SQLite, inference.cache)."""
        return self.data_dir / "cache" / "llm_responses.sqlite"
