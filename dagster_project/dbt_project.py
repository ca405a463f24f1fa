"""The dbt project as Dagster sees it, and the pure helpers that turn partitions into dbt args.

Only the manifest that `@dbt_assets` reads at import lives in the repo's dbt/target (with the
log of the parse that wrote it): it is generated from the project, not from data. Every dbt
run writes its artefacts (run_results.json, compiled SQL, partial parse, dbt.log) under the
data directory, `<data-dir>/dbt/target` and `<data-dir>/dbt/logs`, overwritten by the next
run (dbt rotates its log), so nothing grows in the repo and one folder per data directory.
"""

import json
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

from dagster import AssetExecutionContext
from dagster_dbt import DbtCliInvocation, DbtCliResource, DbtProject

DBT_PROJECT_DIR = Path(__file__).resolve().parents[1] / "dbt"
DBT_EXECUTABLE = str(Path(sys.executable).with_name("dbt"))
_SOURCE_SUFFIXES = (".sql", ".yml", ".yaml", ".csv")


def project_files(project_dir: Path = DBT_PROJECT_DIR) -> list[Path]:
    """The dbt project's sources: every model, seed, macro and YAML file, in a stable order."""
    return sorted(
        path
        for path in project_dir.rglob("*")
        if path.suffix in _SOURCE_SUFFIXES
        and not {"target", "logs", "dbt_packages"} & set(path.relative_to(project_dir).parts)
    )


def manifest_is_stale(project_dir: Path = DBT_PROJECT_DIR) -> bool:
    """True when manifest.json is missing or older than any model, seed, macro or YAML file."""
    manifest = project_dir / "target" / "manifest.json"
    if not manifest.is_file():
        return True
    built = manifest.stat().st_mtime
    return any(path.stat().st_mtime > built for path in project_files(project_dir))


def ensure_manifest(project_dir: Path = DBT_PROJECT_DIR) -> Path:
    """`@dbt_assets` reads manifest.json at import: parse the project when it is out of date."""
    if manifest_is_stale(project_dir):
        result = subprocess.run(
            [
                *(DBT_EXECUTABLE, "parse", "--profiles-dir", str(project_dir), "--quiet"),
                *("--log-path", str(project_dir / "target")),  # no dbt/logs in the repo
            ],
            cwd=project_dir,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"dbt parse failed in {project_dir}:\n{result.stdout}{result.stderr}"
            )
    return project_dir / "target" / "manifest.json"


def dbt_run_dirs(data_dir: Path) -> tuple[Path, Path]:
    """Where a dbt run over this data directory writes: (target folder, log folder)."""
    return data_dir / "dbt" / "target", data_dir / "dbt" / "logs"


def run_dbt(
    dbt: DbtCliResource, args: list[str], context: AssetExecutionContext | None, data_dir: Path
) -> DbtCliInvocation:
    """`dbt.cli` with the run's target and logs under the data directory (module doc): one
    fixed folder, not dagster-dbt's default of a new folder per invocation in the project.
    Without a context, dbt runs `args` as given (its own --select) and yields no assets."""
    target, logs = dbt_run_dirs(data_dir)
    return dbt.cli([*args, "--log-path", str(logs)], target_path=target, context=context)


def window_vars(start: date, end: date) -> dict[str, str]:
    """dbt vars for a decision-date window, both ends inclusive."""
    if end < start:
        raise ValueError(f"window end {end} is before its start {start}")
    return {"start_date": start.isoformat(), "end_date": end.isoformat()}


def partition_window_bounds(start: date, end_exclusive: date) -> tuple[date, date]:
    """A Dagster time window ends exclusively; dbt windows are inclusive."""
    return start, end_exclusive - timedelta(days=1)


def dbt_build_args(start: date, end: date) -> list[str]:
    return ["build", "--vars", json.dumps(window_vars(start, end))]


ensure_manifest()
dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)
