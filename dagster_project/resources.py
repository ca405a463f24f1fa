"""Resources shared by the assets: where the data directory and the warehouse are."""

import dagster as dg

from ingest.layout import DataLayout


class DataDirResource(dg.ConfigurableResource):
    """The data directory; empty means STRAT_LLM_DATA or `data/` of the working directory."""

    data_dir: str = ""

    def layout(self) -> DataLayout:
        return DataLayout.from_env(self.data_dir or None)


RESOURCES = {"data_dir": DataDirResource()}
