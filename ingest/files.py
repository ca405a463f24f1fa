"""Read a bring-your-own dataset folder (DESIGN §4): `<dir>/<market>/<table>.csv|.parquet`."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from ingest.calendars import MARKETS
from ingest.contract import FILE_SUFFIXES, REQUIRED_TABLES, TABLE_NAMES, TABLES
from ingest.validation import ContractError


def find_table_file(market_dir: Path, table: str) -> Path | None:
    """The table's file in the market folder; None for an optional table without one."""
    candidates = [market_dir / f"{table}{suffix}" for suffix in FILE_SUFFIXES]
    found = [path for path in candidates if path.is_file()]
    if not found:
        if TABLES[table].optional:
            return None
        raise ContractError(
            f"{market_dir}: no {table}.csv or {table}.parquet; every market folder needs "
            f"{', '.join(REQUIRED_TABLES)} (a header-only CSV is a valid empty table)"
        )
    if len(found) > 1:
        raise ContractError(
            f"{market_dir}: both {found[0].name} and {found[1].name} exist; keep one of them"
        )
    return found[0]


def read_csv_file(path: Path, source: str) -> pd.DataFrame:
    raw = path.read_bytes()
    if not raw.strip():
        raise ContractError(
            f"{source}: file is empty; expected a header row with "
            f"{', '.join(TABLES[path.stem].required_columns)}"
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ContractError(
            f"{source}: not UTF-8 text (byte 0x{raw[error.start]:02x} at offset {error.start} "
            "cannot be decoded); re-save the file as UTF-8"
        ) from error
    header = next(csv.reader(io.StringIO(text)), [])
    repeated = sorted({name.strip() for name in header if header.count(name) > 1})
    if repeated:
        raise ContractError(f"{source}: column(s) {', '.join(repeated)} appear more than once")
    try:
        # Everything as text: the validator parses and reports each cell itself, and CN
        # tickers keep their leading zeros.
        return pd.read_csv(
            io.StringIO(text),
            dtype=str,
            keep_default_na=False,
            na_values=[""],
            skipinitialspace=True,
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise ContractError(f"{source}: not a readable CSV file: {error}") from error


def read_parquet_file(path: Path, source: str) -> pd.DataFrame:
    if path.stat().st_size == 0:
        raise ContractError(f"{source}: file is empty (0 bytes)")
    try:
        return pq.read_table(path).to_pandas()
    except Exception as error:  # pyarrow raises several unrelated types for corrupt files
        raise ContractError(f"{source}: not a readable Parquet file: {error}") from error


def read_table_file(path: Path, source: str) -> pd.DataFrame:
    if path.suffix == ".csv":
        return read_csv_file(path, source)
    return read_parquet_file(path, source)


def dataset_markets(root: Path, markets: list[str] | None) -> list[str]:
    """The markets to load from a dataset folder; errors name what is missing."""
    if root.is_file():
        raise ContractError(
            f"{root} is a file; --path names the dataset folder (with us/ and/or cn/ inside)"
        )
    if not root.is_dir():
        raise ContractError(f"{root}: no such directory")
    present = [market for market in MARKETS if (root / market).is_dir()]
    if markets:
        absent = [market for market in markets if market not in present]
        if absent:
            raise ContractError(
                f"{root}: no folder for market(s) {', '.join(absent)}; add it, or ingest only "
                f"the market(s) the dataset has ({', '.join(present) or 'none'})"
            )
        return markets
    if not present:
        raise ContractError(
            f"{root}: no market folders; expected {' and/or '.join(m + '/' for m in MARKETS)}"
        )
    return present


def read_market_files(root: Path, market: str) -> dict[str, tuple[pd.DataFrame, str]]:
    frames = {}
    for table in TABLE_NAMES:
        path = find_table_file(root / market, table)
        if path is None:  # an optional file the dataset lacks: validate_market empties it
            continue
        source = f"{market}/{path.name}"
        frames[table] = (read_table_file(path, source), source)
    return frames


def _entry(path: Path, prefix: str = "") -> str:
    return f"{prefix}{path.name}{'/' if path.is_dir() else ''}"


def ignored_files(root: Path, market: str) -> list[str]:
    """What a dataset folder holds that no table reads, relative to it: unknown entries of the
    market's folder, then of the top folder (other markets' folders are not unknown)."""
    known = {f"{table}{suffix}" for table in TABLE_NAMES for suffix in FILE_SUFFIXES}
    inside = sorted((root / market).iterdir())
    top = sorted(root.iterdir())
    return [_entry(path, f"{market}/") for path in inside if path.name not in known] + [
        _entry(path) for path in top if path.name not in MARKETS
    ]
