"""The point-in-time warehouse built by dbt through Dagster on the sample market."""

from __future__ import annotations

import re
from datetime import date, timedelta
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest

from dagster_project.cli import main
from dagster_project.dbt_project import (
    DBT_PROJECT_DIR,
    dbt_build_args,
    dbt_run_dirs,
    partition_window_bounds,
    window_vars,
)
from dagster_project.ingest_assets import raw_asset_key
from dagster_project.location import location_for
from dagster_project.resources import DataDirResource, all_resources
from dagster_project.warehouse_assets import warehouse_dbt_assets
from ingest.calendars import session_open_utc
from ingest.layout import DataLayout

# Each rule counts the snapshots that break it; all must be zero.
PIT_RULES = {
    "price on or after the decision date": "max_price_date >= decision_date",
    "price history reaching the decision date": (
        "list_max(list_transform(price_history, lambda bar: bar.date)) >= decision_date"
    ),
    "news at or after the cutoff": "max_news_published_at >= information_cutoff",
    "news list item at or after the cutoff": (
        "list_max(list_transform(news, lambda item: item.published_at)) >= information_cutoff"
    ),
    "report published at or after the cutoff": "report_published_at >= information_cutoff",
    "report period not ended before the decision": "report.period_end >= decision_date",
    "cutoff not before the decision date": "information_cutoff >= decision_date + interval 1 day",
}


@pytest.fixture
def sample_warehouse(built_sample: DataLayout) -> DataLayout:
    return built_sample


def _query(layout: DataLayout, sql: str) -> pd.DataFrame:
    with duckdb.connect(str(layout.data_dir / "warehouse.duckdb"), read_only=True) as connection:
        return connection.execute(sql).df()


def test_sample_snapshots_cover_both_markets(sample_warehouse: DataLayout):
    counts = _query(
        sample_warehouse,
        "select market, count(*) as n, count(report) as with_report,"
        " sum((len(news) > 0)::int) as with_news from pit_snapshots group by market",
    ).set_index("market")
    assert set(counts.index) == {"us", "cn"}
    assert (counts["n"] > 5000).all()
    assert (counts["with_news"] > counts["n"] * 0.5).all()
    assert (counts["with_report"] == counts["n"]).all()


@pytest.mark.parametrize("rule", sorted(PIT_RULES))
def test_no_snapshot_sees_the_future(sample_warehouse: DataLayout, rule: str):
    broken = _query(
        sample_warehouse, f"select count(*) as n from pit_snapshots where {PIT_RULES[rule]}"
    )
    assert broken["n"].iloc[0] == 0, rule


def test_cutoffs_equal_exchange_calendar_open_minus_buffer(sample_warehouse: DataLayout):
    points = _query(
        sample_warehouse,
        "select market, decision_date, information_cutoff from int_decision_points",
    )
    expected = [
        session_open_utc(market, day) - timedelta(minutes=30)
        for market, day in zip(points["market"], points["decision_date"], strict=True)
    ]
    actual = pd.to_datetime(points["information_cutoff"], utc=True)
    assert list(actual) == expected


def test_news_items_are_newest_first_within_the_lookback(sample_warehouse: DataLayout):
    broken = _query(
        sample_warehouse,
        """
        select count(*) as n from pit_snapshots
        where news <> list_reverse_sort(news)
           or len(news) > 10
           or list_min(list_transform(news, lambda item: item.published_at))
              < information_cutoff - interval 7 day
        """,
    )
    assert broken["n"].iloc[0] == 0


def test_rebuilding_one_partition_touches_only_its_rows(sample_copy: DataLayout):
    warehouse = str(sample_copy.data_dir / "warehouse.duckdb")
    target, other = date(2025, 3, 10), date(2025, 3, 11)
    with duckdb.connect(warehouse) as connection:
        before = connection.execute(
            "select market, ticker, decision_date, snapshot_hash from pit_snapshots"
        ).df()
        # Tamper with both dates: the rebuild of `target` must repair its own rows only.
        connection.execute(
            "update pit_snapshots set snapshot_hash = 'tampered' where decision_date in (?, ?)",
            [target, other],
        )
        connection.execute(
            "insert into pit_snapshots (market, ticker, decision_date, information_cutoff,"
            " max_price_date, snapshot_hash) values ('us', 'GONE', ?, ?, ?, 'stale')",
            [target, pd.Timestamp("2025-03-10T13:00:00Z"), date(2025, 3, 7)],
        )
    result = dg.materialize(
        [location_for(sample_copy).pit_snapshot_assets],
        partition_key=target.isoformat(),
        resources={
            **all_resources(),
            "data_dir": DataDirResource(data_dir=str(sample_copy.data_dir)),
        },
    )
    assert result.success
    with duckdb.connect(warehouse, read_only=True) as connection:
        after = connection.execute(
            "select market, ticker, decision_date, snapshot_hash from pit_snapshots"
        ).df()
    for frame in (before, after):
        frame["decision_date"] = pd.to_datetime(frame["decision_date"]).dt.date
    key = ["market", "ticker", "decision_date"]
    merged = before.merge(
        after, on=key, how="outer", suffixes=("_before", "_after"), indicator=True
    )
    assert (merged["_merge"] == "both").all(), "the rebuild added or lost rows"
    changed = merged[merged["snapshot_hash_before"] != merged["snapshot_hash_after"]]
    assert set(changed["decision_date"]) == {other}, "only the untouched partition keeps tampering"
    assert (changed["snapshot_hash_after"] == "tampered").all()
    rebuilt = merged[merged["decision_date"] == target]
    assert (
        len(rebuilt) > 0
        and (rebuilt["snapshot_hash_before"] == rebuilt["snapshot_hash_after"]).all()
    )


def test_strategies_seed_and_signal_columns_name_the_same_rules(sample_warehouse: DataLayout):
    seeded = set(_query(sample_warehouse, "select strategy_id from strategies")["strategy_id"])
    fields = _query(sample_warehouse, "select signals from pit_snapshots limit 1")["signals"][0]
    from_sql = {name.split("_")[0].upper() for name in fields}
    assert seeded == from_sql == {"S1", "S2", "S3", "S4"}
    assert set(fields) == {
        f"{rule.lower()}_{side}" for rule in seeded for side in ("entry", "exit")
    }


def test_signals_fire_in_the_sample(sample_warehouse: DataLayout):
    fired = _query(
        sample_warehouse,
        "select "
        + ", ".join(
            f"sum(signals.s{n}_{side}::int) as s{n}_{side}"
            for n in range(1, 5)
            for side in ("entry", "exit")
        )
        + " from pit_snapshots",
    ).iloc[0]
    assert (fired > 0).all(), fired.to_dict()


def test_no_model_reads_the_wall_clock():
    pattern = re.compile(
        r"\b(now\s*\(|current_date|current_timestamp|today\s*\(|get_current_time)", re.I
    )
    offenders = [
        str(path.relative_to(DBT_PROJECT_DIR))
        for path in (DBT_PROJECT_DIR / "models").rglob("*.sql")
        if pattern.search(path.read_text())
    ]
    assert offenders == []


def test_partition_window_helpers():
    assert partition_window_bounds(date(2025, 3, 10), date(2025, 3, 11)) == (
        date(2025, 3, 10),
        date(2025, 3, 10),
    )
    assert window_vars(date(2025, 1, 2), date(2025, 1, 3)) == {
        "start_date": "2025-01-02",
        "end_date": "2025-01-03",
    }
    assert dbt_build_args(date(2025, 1, 2), date(2025, 1, 2))[:2] == ["build", "--vars"]
    with pytest.raises(ValueError, match="before its start"):
        window_vars(date(2025, 1, 3), date(2025, 1, 2))


def test_dbt_assets_are_grouped_by_folder_and_read_each_market(sample_warehouse: DataLayout):
    pit = location_for(sample_warehouse).pit_snapshot_assets
    specs = {spec.key: spec for spec in [*warehouse_dbt_assets.specs, *pit.specs]}
    by_name = {key.path[-1]: spec for key, spec in specs.items()}
    assert by_name["pit_snapshots"].group_name == "marts"
    assert by_name["int_decision_points"].group_name == "intermediate"
    assert by_name["stg_raw__prices"].group_name == "staging"
    assert by_name["market_rules"].group_name == "seeds"
    deps = {dep.asset_key for dep in by_name["stg_raw__prices"].deps}
    assert deps == {raw_asset_key("us", "prices"), raw_asset_key("cn", "prices")}


def test_only_pit_snapshots_is_partitioned_and_the_window_tables_are_not_assets(
    sample_warehouse: DataLayout,
):
    """Dagster records a materialization per partition and asset: one asset per session, and
    the window's working tables are steps of pit_snapshots, drawn from what they read."""
    pit = location_for(sample_warehouse).pit_snapshot_assets
    assert [key.path[-1] for key in pit.keys] == ["pit_snapshots"]
    assert pit.partitions_def is not None and warehouse_dbt_assets.partitions_def is None
    working = {"int_snapshot_grid", "int_snapshot_news", "int_snapshot_prices"}
    working |= {"int_snapshot_reports", "int_strategy_signals"}
    assert not working & {key.path[-1] for key in warehouse_dbt_assets.keys}
    [spec] = pit.specs
    upstream = {dep.asset_key.path[-1] for dep in spec.deps}
    assert not upstream & working
    assert {"int_decision_points", "int_price_features", "int_report_timeline"} <= upstream
    assert {"stg_raw__universe", "stg_raw__news", "stg_raw__prices"} <= upstream


def test_backtest_models_build_apart_after_the_simulation():
    """The models tagged backtest read landing files the warehouse run does not have yet."""
    from dagster_project.backtest_assets import backtest_dbt_assets, backtest_simulation

    warehouse = {key.path[-1] for key in warehouse_dbt_assets.keys}
    backtest = {spec.key.path[-1]: spec for spec in backtest_dbt_assets.specs}
    assert set(backtest) == {
        "stg_landing__llm_decisions",
        "stg_landing__agent_book",
        "book",
        "stg_landing__backtest_sleeves",
        "stg_landing__backtest_round_trips",
        "stg_landing__backtest_arms",
        "backtest_daily",
        "backtest_trades",
        "backtest_metrics",
        "regime_metrics",
        "regime_sensitivity",
        "decision_training_window",
    }
    assert not warehouse & set(backtest) and "regime_labels" in warehouse
    assert {spec.group_name for spec in backtest.values()} == {"backtest"}
    sleeves_deps = {dep.asset_key for dep in backtest["stg_landing__backtest_sleeves"].deps}
    assert sleeves_deps == {dg.AssetKey("backtest_sleeves")}
    assert dg.AssetKey("backtest_sleeves") in backtest_simulation.keys
    decisions_deps = {dep.asset_key for dep in backtest["stg_landing__llm_decisions"].deps}
    assert decisions_deps == {dg.AssetKey("llm_decisions")}
    book_deps = {dep.asset_key for dep in backtest["stg_landing__agent_book"].deps}
    assert book_deps == {dg.AssetKey("agent_book")}


def test_build_without_ingest_names_the_missing_step(tmp_path: Path, capsys):
    assert main(["--data-dir", str(tmp_path / "empty"), "build"]) == 1
    assert "run `strat-llm ingest` first" in capsys.readouterr().err


def test_sample_benchmarks_show_every_regime(sample_warehouse: DataLayout):
    regimes = _query(
        sample_warehouse, "select market, regime, count(*) as n from regime_labels group by all"
    )
    assert set(zip(regimes["market"], regimes["regime"], strict=True)) == {
        (market, regime)
        for market in ("us", "cn")
        for regime in ("uptrend", "downtrend", "sideways")
    }
    assert (regimes["n"] >= 20).all()  # phases of at least a month each


def test_daily_schedule_builds_the_session_of_the_day_before_any_cutoff(
    sample_warehouse: DataLayout,
):
    from datetime import UTC, datetime

    definitions = location_for(sample_warehouse).definitions()
    schedule = definitions.get_schedule_def("pit_daily_schedule")
    tick = dg.build_schedule_context(
        scheduled_execution_time=datetime(2025, 3, 10, 0, 30, tzinfo=UTC)
    )
    requests = schedule.evaluate_tick(tick).run_requests
    assert [request.partition_key for request in requests] == ["2025-03-10"]


def _listing(folder: Path) -> set[str]:
    return {str(path.relative_to(folder)) for path in folder.rglob("*")}


def test_a_build_writes_dbt_run_artefacts_under_the_data_dir_only(sample_copy: DataLayout):
    repo = {name: _listing(DBT_PROJECT_DIR / name) for name in ("target", "logs")}
    data = sample_copy.data_dir
    for day in ("2025-03-10", "2025-03-11"):
        assert main(["--data-dir", str(data), "build", "--start", day, "--end", day]) == 0
    # Only the manifest (parsed from the project at import) lives in the repo: no run folder;
    # the runs share one target folder under the data directory (no folder per invocation).
    assert {name: _listing(DBT_PROJECT_DIR / name) for name in repo} == repo
    target, logs = dbt_run_dirs(data)
    assert (target / "run_results.json").is_file() and (logs / "dbt.log").is_file()
    assert not [path for path in target.iterdir() if path.is_dir() and "-" in path.name]


def test_sample_corporate_actions_move_raw_prices_but_no_feature(sample_warehouse: DataLayout):
    raw = _query(
        sample_warehouse,
        "select min(close / prior) as worst from (select close, lag(close) over"
        " (partition by market, ticker order by price_date) as prior from stg_raw__prices)",
    )
    assert raw["worst"].iloc[0] < 0.6  # the sample's splits halve (US) and /1.8 (CN) raw prices
    features = _query(
        sample_warehouse, "select max(abs(features.ret_1d)) as worst from pit_snapshots"
    )
    assert features["worst"].iloc[0] < 0.25  # moves stay within the CN 20 % limit and events
