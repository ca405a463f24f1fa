"""The code location for `dagster dev`: the data directory of the environment
(STRAT_LLM_DATA, else ./data) with its session calendar (dagster_project/location.py)."""

from dagster_project.location import location_for

defs = location_for().definitions()
