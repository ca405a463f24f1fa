"""Live-forward: build today's decision partition every day before the first market opens."""

import dagster as dg

from dagster_project.warehouse_assets import DECISION_PARTITIONS, warehouse_dbt_assets

pit_daily_job = dg.define_asset_job(
    "pit_daily",
    selection=dg.AssetSelection.assets(warehouse_dbt_assets),
    partitions_def=DECISION_PARTITIONS,
    description="Point-in-time snapshots for one decision date (the partition).",
)

# 00:30 UTC is after both markets' previous close and before the earliest cutoff of the day
# (Shanghai 09:00 = 01:00 UTC); with end_offset=1 the newest partition is today's session.
pit_daily_schedule = dg.build_schedule_from_partitioned_job(
    pit_daily_job, hour_of_day=0, minute_of_hour=30
)
