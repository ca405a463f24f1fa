"""Where data lives: one data directory (default `data/`, env STRAT_LLM_DATA) for every stage."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DATA_DIR_ENV = "STRAT_LLM_DATA"
WAREHOUSE_ENV = "STRAT_LLM_WAREHOUSE"


@dataclass(frozen=True)
class DataLayout:
    data_dir: Path

    @classmethod
    def from_env(cls, data_dir: str | Path | None = None) -> DataLayout:
        chosen = data_dir or os.environ.get(DATA_DIR_ENV) or "data"
        return cls(Path(chosen).expanduser().resolve())

    def raw_dir(self, market: str) -> Path:
        return self.data_dir / "raw" / market

    def raw_file(self, market: str, table: str) -> Path:
        return self.raw_dir(market) / f"{table}.parquet"

    def ingest_manifest(self, market: str) -> Path:
        return self.raw_dir(market) / "_ingest.json"

    def quarantine_file(self, market: str, table: str) -> Path:
        return self.data_dir / "quarantine" / market / f"{table}.parquet"

    @property
    def warehouse(self) -> Path:
        chosen = os.environ.get(WAREHOUSE_ENV)
        return Path(chosen).expanduser().resolve() if chosen else self.data_dir / "warehouse.duckdb"
