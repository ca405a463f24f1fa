"""What a warehouse was built from, so that a rerun with nothing changed does nothing.

After a gated build the stamp `<warehouse>.stamp.json` records the build's inputs (each market's
ingest id, a fingerprint of the dbt project, the sessions built) and a content hash of what it
left (`warehouse_state`: every row of pit_snapshots and regime_labels). While none of them has
changed:
- `strat-llm build` of sessions already built rebuilds nothing;
- the leakage gate's verdict stands: the snapshots it passed are those in the warehouse (any
  change to a row, a planted leak included, changes the hash).
A failed gate is never recorded, and `--force` rebuilds regardless.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import duckdb

from dagster_project.dbt_project import DBT_PROJECT_DIR, project_files
from ingest.layout import DataLayout
from ingest.load import write_atomically

STAMP_SUFFIX = ".stamp.json"
# What the agents and the backtest read of the build (the rest is built from the same inputs).
STAMPED_TABLES = ("pit_snapshots", "regime_labels")
# What the gate checks with: a change to any of these voids a recorded verdict.
_GATE_SOURCES = sorted((Path(__file__).resolve().parents[1] / "expectations").glob("*.py"))


@dataclass(frozen=True)
class WarehouseStamp:
    ingest_ids: dict[str, str | None]
    dbt_fingerprint: str
    sessions: list[str]  # every decision date built, ISO
    warehouse_state: list[str]
    gate_fingerprint: str = ""
    gate_passed_at: str | None = None
    gate_expectations: int = 0


def stamp_path(layout: DataLayout) -> Path:
    return layout.warehouse.with_name(layout.warehouse.name + STAMP_SUFFIX)


def warehouse_state(warehouse: Path) -> list[str]:
    """A content hash of the tables the later stages read from the warehouse build
    (`STAMPED_TABLES`): rows and the sum of their row hashes. Other stages write other tables
    into the same file, so its size and time would say nothing."""
    if not warehouse.is_file():
        return []
    state = []
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        tables = {name for (name,) in connection.execute("show tables").fetchall()}
        for table in STAMPED_TABLES:
            if table not in tables:
                state.append(f"{table}: absent")
                continue
            [(rows, total)] = connection.execute(
                f"select count(*), coalesce(sum(hash(t)::hugeint), 0) from {table} t"
            ).fetchall()
            state.append(f"{table}: {rows} rows, {total}")
    return state


def fingerprint(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def dbt_fingerprint(project_dir: Path = DBT_PROJECT_DIR) -> str:
    """Every model, macro, seed and YAML file of the dbt project (vars included)."""
    return fingerprint(project_files(project_dir))


def gate_fingerprint() -> str:
    return fingerprint(_GATE_SOURCES)


def build_inputs(layout: DataLayout) -> dict[str, str | None]:
    from ingest.load import ingested_markets, market_ingest_id

    return {market: market_ingest_id(layout, market) for market in ingested_markets(layout)}


def read_stamp(layout: DataLayout) -> WarehouseStamp | None:
    path = stamp_path(layout)
    try:
        return WarehouseStamp(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None  # none yet, or unreadable: nothing is taken as current


def write_stamp(layout: DataLayout, stamp: WarehouseStamp) -> None:
    text = json.dumps(asdict(stamp), indent=2) + "\n"
    write_atomically(stamp_path(layout), lambda target: target.write_text(text))


def record_build(
    layout: DataLayout,
    built: list[date],
    earlier: WarehouseStamp | None,
    state_before: list[str],
) -> None:
    """After a build whose gate passed: its inputs, the sessions built (with those of the
    `earlier` stamp when it was made on the same inputs for this very warehouse, whose file
    state was `state_before` when the build began) and the warehouse as it now is. The gate's
    verdict is the one its check recorded on this warehouse."""
    inputs, project = build_inputs(layout), dbt_fingerprint()
    sessions = {day.isoformat() for day in built}
    if (
        earlier
        and earlier.ingest_ids == inputs
        and earlier.dbt_fingerprint == project
        and earlier.warehouse_state == state_before
    ):
        sessions |= set(earlier.sessions)
    gate = passed_gate(layout)
    write_stamp(
        layout,
        WarehouseStamp(
            ingest_ids=inputs,
            dbt_fingerprint=project,
            sessions=sorted(sessions),
            warehouse_state=warehouse_state(layout.warehouse),
            gate_fingerprint=gate.gate_fingerprint if gate else "",
            gate_passed_at=gate.gate_passed_at if gate else None,
            gate_expectations=gate.gate_expectations if gate else 0,
        ),
    )


def why_build_is_needed(layout: DataLayout, sessions: list[date]) -> str | None:
    """Why these sessions must be built, or None when the warehouse already holds them built
    from the same raw data and dbt project and its stamped tables are unchanged since."""
    stamp = read_stamp(layout)
    if stamp is None or not layout.warehouse.is_file():
        return "no earlier build recorded"
    if stamp.ingest_ids != build_inputs(layout):
        return "the raw data were ingested again with other content"
    if stamp.dbt_fingerprint != dbt_fingerprint():
        return "the dbt project changed"
    if stamp.warehouse_state != warehouse_state(layout.warehouse):
        return "the snapshots in the warehouse changed since"
    missing = {day.isoformat() for day in sessions} - set(stamp.sessions)
    if missing:
        return f"{len(missing)} session(s) not built yet (first {min(missing)})"
    return None


def passed_gate(layout: DataLayout) -> WarehouseStamp | None:
    """The stamp of the gate's pass when it still stands for the warehouse on disk."""
    stamp = read_stamp(layout)
    if (
        stamp is None
        or stamp.gate_passed_at is None
        or stamp.gate_fingerprint != gate_fingerprint()
        or stamp.warehouse_state != warehouse_state(layout.warehouse)
    ):
        return None
    return stamp


def record_gate_pass(layout: DataLayout, expectations: int) -> None:
    """A gate that passed outside a build (`strat-llm check`, inference): the verdict holds for
    the warehouse as it is; the build inputs stay as recorded (none: a later build decides)."""
    stamp = read_stamp(layout)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    state = warehouse_state(layout.warehouse)
    if stamp is None or stamp.warehouse_state != state:
        # The build record no longer describes this warehouse: keep only the verdict.
        stamp = WarehouseStamp(ingest_ids={}, dbt_fingerprint="", sessions=[], warehouse_state=[])
    write_stamp(
        layout,
        WarehouseStamp(
            **{
                **asdict(stamp),
                "warehouse_state": state,
                "gate_fingerprint": gate_fingerprint(),
                "gate_passed_at": now,
                "gate_expectations": expectations,
            }
        ),
    )
