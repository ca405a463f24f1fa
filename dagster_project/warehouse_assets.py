"""The dbt warehouse as Dagster assets: daily decision-date partitions, grouped by dbt folder."""

from collections.abc import Mapping
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

# Every decision date is a partition; weekends and holidays simply hold no snapshots.
# end_offset=1 includes today's partition: the live-forward decision for today's session.
DECISION_PARTITIONS = dg.DailyPartitionsDefinition(start_date="2015-01-01", end_offset=1)
DBT_SOURCE_NAME = "raw"
LANDING_SOURCE_NAME = "landing"
# Models that read the Python stages' landing files; they build after the backtest simulation
# (backtest_assets.py), never in a warehouse (decision-date) run.
BACKTEST_TAG = "backtest"


class WarehouseTranslator(DagsterDbtTranslator):
    """Groups by dbt folder (staging / intermediate / marts, seeds; the backtest models apart)
    and ties dbt sources to the assets that write them: `raw.<table>` to the per-market raw
    assets, `landing.<table>` to the Python asset of that name."""

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        if dbt_resource_props["resource_type"] == "seed":
            return "seeds"
        if BACKTEST_TAG in dbt_resource_props.get("tags", []):
            return BACKTEST_TAG
        fqn = dbt_resource_props.get("fqn", [])
        return fqn[1] if len(fqn) > 2 else "warehouse"

    def get_asset_spec(self, manifest, unique_id, project) -> dg.AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)
        return spec.replace_attributes(deps=raw_deps(spec.deps))


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
    return resolved


@dbt_assets(
    manifest=dbt_project.manifest_path,
    project=dbt_project,
    exclude=f"tag:{BACKTEST_TAG}",
    dagster_dbt_translator=WarehouseTranslator(),
    partitions_def=DECISION_PARTITIONS,
    # A backfill is one dbt run over the whole range: one process, set-based SQL.
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def warehouse_dbt_assets(
    context: dg.AssetExecutionContext, dbt: DbtCliResource, data_dir: DataDirResource
):
    layout = data_dir.export_env()
    window = context.partition_time_window
    start, end = partition_window_bounds(window.start.date(), window.end.date())
    context.log.info(f"building decision dates {start} .. {end}")
    # Held until dbt exits: DuckDB admits no reader beside dbt's writer, and the row counts
    # are read afterwards with a short read-only connection.
    events = dbt_events(run_dbt(dbt, dbt_build_args(start, end), context, layout.data_dir).stream())
    names = [key.path[-1] for key in context.selected_asset_keys]
    counts = relation_row_counts(layout.warehouse, names, start, end)
    for event in events:
        if isinstance(event, dg.Output):
            name = context.asset_key_for_output(event.output_name).path[-1]
            if name in counts:
                event = event.with_metadata({**event.metadata, **counts[name]})
        yield event


def relation_row_counts(
    warehouse: Path, names: list[str], start: date, end: date
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
            if name in dated:
                [(inside,)] = connection.execute(
                    f'select count(*) from "{name}" where decision_date between ? and ?',
                    [start, end],
                ).fetchall()
                counts[name]["rows_in_window"] = inside
    return counts
