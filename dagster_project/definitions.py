"""The code location: merges what the stage modules define, nothing else."""

import dagster as dg

from dagster_project.ingest_assets import raw_tables
from dagster_project.resources import RESOURCES

defs = dg.Definitions(assets=[raw_tables], resources=RESOURCES)
