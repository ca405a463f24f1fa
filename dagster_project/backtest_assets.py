"""The backtest as Dagster assets: the simulation (Python) writes the landing tables, then the
dbt models tagged `backtest` build backtest_daily, backtest_trades, backtest_metrics and
regime_metrics on them. Unpartitioned: a run simulates the arms and markets its config names
(default: every arm with decisions and every baseline) and replaces only their result files;
the other arms' results stay (backtest/run.py)."""

from datetime import date

import dagster as dg
from dagster_dbt import DbtCliResource, dbt_assets

from backtest.run import BacktestConfig, run_backtest
from dagster_project.checks import PIT_SNAPSHOTS
from dagster_project.console import dbt_events
from dagster_project.dbt_project import dbt_project, run_dbt
from dagster_project.inference_assets import BOOK, LLM_DECISIONS
from dagster_project.resources import DataDirResource
from dagster_project.warehouse_assets import BACKTEST_TAG, WarehouseTranslator
from ingest.calendars import MARKETS

# Each is one Parquet file per arm and market under <data-dir>/landing/backtest/<table>/ and a
# dbt source `landing.<name>`.
BACKTEST_LANDING = {
    "backtest_sleeves": "sleeves",
    "backtest_round_trips": "round_trips",
    "backtest_arms": "arms",
}


class BacktestRunConfig(dg.Config):
    """What to backtest; empty means every arm with decisions, each over its own decision
    window, and every baseline. Naming arms leaves the baselines alone unless named too."""

    start: str | None = None
    end: str | None = None
    arms: list[str] | None = None
    baselines: list[str] | None = None
    markets: list[str] = list(MARKETS)
    random_seed: int = 0
    fill_at: str = "open"

    def to_backtest_config(self) -> BacktestConfig:
        return BacktestConfig(
            start=date.fromisoformat(self.start) if self.start else None,
            end=date.fromisoformat(self.end) if self.end else None,
            arms=tuple(self.arms) if self.arms else None,
            baselines=None if self.baselines is None else tuple(self.baselines),
            markets=tuple(self.markets),
            random_seed=self.random_seed,
            fill_at=self.fill_at,
        )


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            name,
            group_name=BACKTEST_TAG,
            kinds={"python", "parquet"},
            deps=[LLM_DECISIONS, BOOK, PIT_SNAPSHOTS, dg.AssetKey("market_rules")],
            description="Simulated backtest, one file per arm and market: "
            f"<data-dir>/landing/backtest/{file}/arm=<slug>/market=<m>.parquet (backtest/run.py).",
        )
        for name, file in BACKTEST_LANDING.items()
    ]
)
def backtest_simulation(
    context: dg.AssetExecutionContext, config: BacktestRunConfig, data_dir: DataDirResource
):
    layout = data_dir.export_env()
    summary = run_backtest(layout, config.to_backtest_config(), progress=context.log.info)
    arms = sorted({arm for run in summary.markets for arm in run.arms})
    metadata = {
        "arms": dg.MetadataValue.int(len(arms)),
        # per market: counts, each window with its arms, arms not simulated and why
        "summary": dg.MetadataValue.text("\n".join(summary.lines())),
        "files_written": dg.MetadataValue.int(len(summary.files)),
        "markets": dg.MetadataValue.text(", ".join(run.market for run in summary.markets)),
        "decisions": dg.MetadataValue.int(sum(run.decisions for run in summary.markets)),
        "untradable_decisions": dg.MetadataValue.int(
            sum(run.untradable_decisions for run in summary.markets)
        ),
        "round_trips": dg.MetadataValue.int(sum(run.trades for run in summary.markets)),
    }
    for name, file in BACKTEST_LANDING.items():
        path = layout.landing_dir / "backtest" / file
        yield dg.MaterializeResult(
            asset_key=name, metadata={**metadata, "path": dg.MetadataValue.path(str(path))}
        )


@dbt_assets(
    manifest=dbt_project.manifest_path,
    project=dbt_project,
    select=f"tag:{BACKTEST_TAG}",
    name="backtest_dbt_assets",
    dagster_dbt_translator=WarehouseTranslator(),
)
def backtest_dbt_assets(
    context: dg.AssetExecutionContext, dbt: DbtCliResource, data_dir: DataDirResource
):
    layout = data_dir.export_env()
    yield from dbt_events(run_dbt(dbt, ["build"], context, layout.data_dir).stream())
