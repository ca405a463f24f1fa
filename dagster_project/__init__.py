"""Dagster wiring: assets, checks, resources and schedules that call the stage packages."""
