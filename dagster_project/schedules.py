"""Live-forward: build today's decision partition every day before the first market opens."""

import dagster as dg


def build_pit_daily(pit_snapshot_assets: dg.AssetsDefinition) -> dg.ScheduleDefinition:
    """The daily schedule of the job `pit_daily`, which builds one decision date (a partition)."""
    job = dg.define_asset_job(
        "pit_daily",
        selection=dg.AssetSelection.assets(pit_snapshot_assets),
        description="Point-in-time snapshots for one decision date (the partition).",
    )
    # 00:30 UTC is after both markets' previous close and before the earliest cutoff of the day
    # (Shanghai 09:00 = 01:00 UTC). The partitions end with the last session of the ingested
    # calendars (the ingest writes the next sessions after the last price): a daily ingest
    # extends them, and the code location picks that up when it is reloaded.
    return dg.build_schedule_from_partitioned_job(job, hour_of_day=0, minute_of_hour=30)
