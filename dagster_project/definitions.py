"""The code location: merges what the stage modules define, nothing else."""

import dagster as dg

from dagster_project.backtest_assets import backtest_dbt_assets, backtest_simulation
from dagster_project.checks import GATE_CHECKS
from dagster_project.inference_assets import agents, llm_decisions_follow_their_book
from dagster_project.ingest_assets import raw_tables
from dagster_project.resources import all_resources
from dagster_project.schedules import pit_daily_job, pit_daily_schedule
from dagster_project.warehouse_assets import warehouse_dbt_assets

defs = dg.Definitions(
    assets=[
        raw_tables,
        warehouse_dbt_assets,
        agents,
        backtest_simulation,
        backtest_dbt_assets,
    ],
    asset_checks=[*GATE_CHECKS, llm_decisions_follow_their_book],
    jobs=[pit_daily_job],
    schedules=[pit_daily_schedule],
    resources=all_resources(),
)
