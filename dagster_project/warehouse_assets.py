"""The dbt warehouse as Dagster assets, grouped by dbt folder: `pit_snapshots` partitioned by
decision date (the trading sessions, dagster_project/sessions.py), every other model once over
the whole history.

Only `pit_snapshots` has a partition per session: it is what the agents read date by date and
what the UI shows per date. Dagster writes a materialization per partition and asset (about
10 ms each in a persistent instance here), so the window's working tables (dbt tag
`decision_window`) are built in the same step without being assets of their own: the UI draws
pit_snapshots straight from their inputs, and their dbt tests still stop the build.
"""

from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, dbt_assets

from dagster_project.console import dbt_events
from dagster_project.dbt_project import (
    dbt_build_args,
    dbt_project,
    partition_window_bounds,
    run_dbt,
)
from dagster_project.ingest_assets import raw_asset_key
from dagster_project.resources import DataDirResource
from ingest.calendars import MARKETS

DBT_SOURCE_NAME = "raw"
LANDING_SOURCE_NAME = "landing"
# Models that read the Python stages' landing files; they build after the backtest simulation
# (backtest_assets.py), never in a warehouse run.
BACKTEST_TAG = "backtest"
# The decision window's working tables and pit_snapshots (dbt_project.yml).
WINDOW_TAG = "decision_window"
PIT_SNAPSHOTS_MODEL = "pit_snapshots"


class WarehouseTranslator(DagsterDbtTranslator):
    """Groups by dbt folder (staging / intermediate / marts, seeds; the backtest models apart)
    and ties dbt sources to the assets that write them: `raw.<table>` to the per-market raw
    assets, `landing.<table>` to the Python asset of that name. A model built on the window's
    working tables depends on what they read instead (they are not assets: module doc)."""

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        if dbt_resource_props["resource_type"] == "seed":
            return "seeds"
        if BACKTEST_TAG in dbt_resource_props.get("tags", []):
            return BACKTEST_TAG
        fqn = dbt_resource_props.get("fqn", [])
        return fqn[1] if len(fqn) > 2 else "warehouse"

    def get_asset_spec(self, manifest, unique_id, project) -> dg.AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)
        parents = manifest.get("parent_map", {}).get(unique_id, [])
        if unique_id.startswith("model.") and any(
            is_working_table(manifest, parent) for parent in parents
        ):
            keys = [
                super(WarehouseTranslator, self).get_asset_spec(manifest, parent, project).key
                for parent in visible_ancestors(manifest, unique_id)
            ]
            spec = spec.replace_attributes(deps=[dg.AssetDep(key) for key in keys])
        return spec.replace_attributes(deps=raw_deps(spec.deps))


def is_working_table(manifest: Mapping[str, Any], unique_id: str) -> bool:
    """A model of the decision window other than pit_snapshots (dbt tag `decision_window`)."""
    node = manifest.get("nodes", {}).get(unique_id)
    return bool(
        node
        and node["resource_type"] == "model"
        and WINDOW_TAG in node.get("tags", [])
        and node["name"] != PIT_SNAPSHOTS_MODEL
    )


def visible_ancestors(manifest: Mapping[str, Any], unique_id: str) -> list[str]:
    """The nearest ancestors of a node that are not working tables of the window."""
    parent_map = manifest["parent_map"]
    found: set[str] = set()
    seen: set[str] = set()
    pending = list(parent_map.get(unique_id, []))
    while pending:
        parent = pending.pop()
        if parent in seen:
            continue
        seen.add(parent)
        if is_working_table(manifest, parent):
            pending += parent_map.get(parent, [])
        else:
            found.add(parent)
    return sorted(found)


def raw_deps(deps: Any) -> list[dg.AssetDep]:
    """A dbt source `raw.<table>` reads every market's file: depend on each raw asset;
    `landing.<table>` is the Python asset `<table>`."""
    resolved: list[dg.AssetDep] = []
    for dep in deps:
        path = dep.asset_key.path
        if len(path) == 2 and path[0] == DBT_SOURCE_NAME:
            resolved += [dg.AssetDep(raw_asset_key(market, path[1])) for market in MARKETS]
        elif len(path) == 2 and path[0] == LANDING_SOURCE_NAME:
            resolved.append(dg.AssetDep(dg.AssetKey(path[1])))
        else:
            resolved.append(dep)
    return list({dep.asset_key: dep for dep in resolved}.values())


@dbt_assets(
    manifest=dbt_project.manifest_path,
    project=dbt_project,
    exclude=f"tag:{BACKTEST_TAG} tag:{WINDOW_TAG}",
    dagster_dbt_translator=WarehouseTranslator(),
)
def warehouse_dbt_assets(
    context: dg.AssetExecutionContext, dbt: DbtCliResource, data_dir: DataDirResource
):
    """Seeds, staging, and the intermediates and marts that cover every date (no window)."""
    layout = data_dir.export_env()
    invocation = run_dbt(dbt, ["build"], context, layout.data_dir)
    yield from with_row_counts(context, dbt_events(invocation.stream()), layout.warehouse, None)


def build_pit_snapshot_assets(
    partitions: dg.PartitionsDefinition,
) -> dg.AssetsDefinition:
    """`pit_snapshots` over these decision-date partitions (dagster_project/sessions.py)."""

    @dbt_assets(
        manifest=dbt_project.manifest_path,
        project=dbt_project,
        select=PIT_SNAPSHOTS_MODEL,
        dagster_dbt_translator=WarehouseTranslator(),
        partitions_def=partitions,
        # A backfill is one dbt run over the whole range: one process, set-based SQL.
        backfill_policy=dg.BackfillPolicy.single_run(),
        name="pit_snapshot_assets",
    )
    def pit_snapshot_assets(
        context: dg.AssetExecutionContext, dbt: DbtCliResource, data_dir: DataDirResource
    ):
        layout = data_dir.export_env()
        window = context.partition_time_window
        start, end = partition_window_bounds(window.start.date(), window.end.date())
        context.log.info(f"building decision dates {start} .. {end}")
        # One dbt run: the working tables (a --select that dbt adds to the asset's own) with
        # their tests, then pit_snapshots. Their events are dropped: they are not assets, and
        # a failing test of theirs fails the run (dbt exits non-zero, which raises here).
        args = [*dbt_build_args(start, end), "--select", f"tag:{WINDOW_TAG}"]
        # Held until dbt exits: DuckDB admits no reader beside dbt's writer, and the row counts
        # are read afterwards with a short read-only connection.
        events = dbt_events(run_dbt(dbt, args, context, layout.data_dir).stream())
        yield from with_row_counts(
            context, own_events(context, events), layout.warehouse, (start, end)
        )

    return pit_snapshot_assets


def own_events(context: dg.AssetExecutionContext, events: Sequence[Any]) -> list[Any]:
    """The events of this step's assets and checks; those of other dbt nodes are left out."""
    outputs = set(context.selected_output_names)
    keys = set(context.assets_def.keys)
    kept = []
    for event in events:
        if isinstance(event, dg.Output) and event.output_name not in outputs:
            continue
        key = getattr(event, "asset_key", None)
        if key is not None and not isinstance(event, dg.Output) and key not in keys:
            continue
        kept.append(event)
    return kept


def with_row_counts(
    context: dg.AssetExecutionContext,
    events: Sequence[Any],
    warehouse: Path,
    window: tuple[date, date] | None,
):
    """dbt's events, each built relation's Output with its row counts added."""
    names = [key.path[-1] for key in context.selected_asset_keys]
    counts = relation_row_counts(warehouse, names, window)
    for event in events:
        if isinstance(event, dg.Output):
            name = context.asset_key_for_output(event.output_name).path[-1]
            if name in counts:
                event = event.with_metadata({**event.metadata, **counts[name]})
        yield event


def relation_row_counts(
    warehouse: Path, names: list[str], window: tuple[date, date] | None
) -> dict[str, dict[str, int]]:
    """Rows per built relation, and rows inside the decision window where it has one."""
    counts: dict[str, dict[str, int]] = {}
    with duckdb.connect(str(warehouse), read_only=True) as connection:
        columns = connection.execute(
            "select table_name, column_name from information_schema.columns"
        ).fetchall()
        existing = {table for table, _ in columns}
        dated = {table for table, column in columns if column == "decision_date"}
        for name in names:
            if name not in existing:
                continue
            [(total,)] = connection.execute(f'select count(*) from "{name}"').fetchall()
            counts[name] = {"dagster/row_count": total}
            if window and name in dated:
                [(inside,)] = connection.execute(
                    f'select count(*) from "{name}" where decision_date between ? and ?',
                    list(window),
                ).fetchall()
                counts[name]["rows_in_window"] = inside
    return counts
