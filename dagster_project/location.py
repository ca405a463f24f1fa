"""The code location of a data directory: its decision-date partitions are the trading sessions
it holds (dagster_project/sessions.py), so the partitioned assets are made for that calendar.

`dagster dev` loads `definitions.defs`, made for the data directory of the environment; a
reload after an ingest picks up a longer calendar. The CLI asks for the location of the data
directory it works on; one calendar's assets are made once per process.
"""

from dataclasses import dataclass
from datetime import date
from functools import cache

import dagster as dg

from ingest.layout import DataLayout


@dataclass(frozen=True)
class Location:
    sessions: tuple[date, ...]
    partitions: dg.TimeWindowPartitionsDefinition
    pit_snapshot_assets: dg.AssetsDefinition
    agents: dg.AssetsDefinition
    pit_daily_schedule: dg.ScheduleDefinition

    def definitions(self) -> dg.Definitions:
        from dagster_project.backtest_assets import backtest_dbt_assets, backtest_simulation
        from dagster_project.checks import GATE_CHECKS
        from dagster_project.inference_assets import llm_decisions_follow_their_book
        from dagster_project.ingest_assets import raw_tables
        from dagster_project.resources import all_resources
        from dagster_project.warehouse_assets import warehouse_dbt_assets

        return dg.Definitions(
            assets=[
                raw_tables,
                warehouse_dbt_assets,
                self.pit_snapshot_assets,
                self.agents,
                backtest_simulation,
                backtest_dbt_assets,
            ],
            asset_checks=[*GATE_CHECKS, llm_decisions_follow_their_book],
            schedules=[self.pit_daily_schedule],
            resources=all_resources(),
        )


def location_for(layout: DataLayout | None = None) -> Location:
    """The location of this data directory (default: the environment's)."""
    from ingest.load import decision_sessions

    return _location(tuple(decision_sessions(layout or DataLayout.from_env())))


@cache
def _location(sessions: tuple[date, ...]) -> Location:
    from dagster_project.inference_assets import build_agents
    from dagster_project.schedules import build_pit_daily
    from dagster_project.sessions import session_partitions
    from dagster_project.warehouse_assets import build_pit_snapshot_assets

    partitions = session_partitions(sessions)
    pit_snapshot_assets = build_pit_snapshot_assets(partitions)
    return Location(
        sessions=sessions,
        partitions=partitions,
        pit_snapshot_assets=pit_snapshot_assets,
        agents=build_agents(partitions),
        pit_daily_schedule=build_pit_daily(pit_snapshot_assets),
    )
