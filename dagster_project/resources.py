"""Resources shared by the assets: where the data directory and the warehouse are."""

import os

import dagster as dg

from ingest.layout import DATA_DIR_ENV, WAREHOUSE_ENV, DataLayout


class DataDirResource(dg.ConfigurableResource):
    """The data directory and warehouse; empty means from the environment (ingest.layout)."""

    data_dir: str = ""
    warehouse: str = ""

    def layout(self) -> DataLayout:
        return DataLayout.from_env(self.data_dir or None, self.warehouse or None)

    def export_env(self) -> DataLayout:
        """Put the absolute data and warehouse paths where dbt's profile and sources read them."""
        layout = self.layout()
        os.environ[DATA_DIR_ENV] = str(layout.data_dir)
        os.environ[WAREHOUSE_ENV] = str(layout.warehouse)
        return layout


def all_resources() -> dict[str, dg.ConfigurableResource]:
    """Every resource of the code location. dbt's are imported here, not at module import,
    so that commands without dbt (ingest) start without parsing the dbt project."""
    from dagster_dbt import DbtCliResource

    from dagster_project.dbt_project import DBT_EXECUTABLE, dbt_project

    return {
        "data_dir": DataDirResource(),
        "dbt": DbtCliResource(project_dir=dbt_project, dbt_executable=DBT_EXECUTABLE),
    }
