"""Decision-date partitions are the trading sessions of the ingested calendars, and no other day."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
import pyarrow.parquet as pq
import pytest

from dagster_project.cli import main
from dagster_project.location import location_for
from dagster_project.runner import PipelineError, infer, session_range
from dagster_project.sessions import session_partitions
from ingest.calendars import sessions
from ingest.layout import DataLayout
from ingest.load import decision_sessions, ingest_files
from tests.conftest import REAL_CONTRACT

PREVIOUS = dg.TimeWindowPartitionMapping(start_offset=-1, end_offset=-1)
MLK_DAY = date(2025, 1, 20)  # NYSE closed, Shanghai open
SPRING_FESTIVAL = date(2025, 1, 29)  # Shanghai closed, NYSE open
NEW_YEAR = date(2025, 1, 1)  # both closed


def _keys(layout: DataLayout) -> list[date]:
    return [date.fromisoformat(key) for key in location_for(layout).partitions.get_partition_keys()]


def _raw_sessions(layout: DataLayout, market: str) -> set[date]:
    table = pq.read_table(layout.raw_file(market, "sessions"), columns=["session_date"])
    return set(table.column("session_date").to_pylist())


def _previous(partitions: dg.PartitionsDefinition, day: date) -> list[str]:
    subset = partitions.empty_subset().with_partition_keys([day.isoformat()])
    mapped = PREVIOUS.get_upstream_mapped_partitions_result_for_partitions(
        subset, partitions, partitions
    )
    return list(mapped.partitions_subset.get_partition_keys())


def test_sample_partitions_are_exactly_its_sessions(built_sample: DataLayout):
    keys = _keys(built_sample)
    union = _raw_sessions(built_sample, "us") | _raw_sessions(built_sample, "cn")
    assert keys == sorted(union) == decision_sessions(built_sample)
    assert keys[0] == date(2024, 7, 1)  # where the ingested data starts, not a fixed date
    assert not [day for day in keys if day.isoweekday() > 5]
    # Against the exchanges' own calendars, over the span of the data.
    expected = set(sessions("us", keys[0], keys[-1])) | set(sessions("cn", keys[0], keys[-1]))
    assert set(keys) == expected


def test_a_holiday_of_one_market_is_a_partition_of_the_other(built_sample: DataLayout):
    location = location_for(built_sample)
    keys = set(_keys(built_sample))
    assert {MLK_DAY, SPRING_FESTIVAL} <= keys and NEW_YEAR not in keys
    # The previous partition is the previous session of either market.
    assert _previous(location.partitions, date(2025, 1, 21)) == [MLK_DAY.isoformat()]
    assert _previous(location.partitions, date(2025, 1, 2)) == ["2024-12-31"]
    assert _previous(location.partitions, date(2025, 3, 10)) == ["2025-03-07"]
    with duckdb.connect(str(built_sample.warehouse), read_only=True) as connection:
        markets = dict(
            connection.execute(
                "select decision_date, list(distinct market order by market) from pit_snapshots"
                " where decision_date in (?, ?) group by all",
                [MLK_DAY, SPRING_FESTIVAL],
            ).fetchall()
        )
    assert markets == {MLK_DAY: ["cn"], SPRING_FESTIVAL: ["us"]}


def test_inference_over_a_holiday_of_one_market_decides_the_other(
    sample_copy: DataLayout, monkeypatch
):
    monkeypatch.setenv("STRAT_LLM_DATA", str(sample_copy.data_dir))
    monkeypatch.setenv("STRAT_LLM_WAREHOUSE", str(sample_copy.warehouse))
    infer(["reference__free"], date(2025, 1, 17), date(2025, 1, 21), {})
    decided = {
        (path.parent.name, path.stem)
        for path in (sample_copy.landing_dir / "llm_decisions").rglob("*.parquet")
    }
    assert decided == {
        ("market=us", "date=2025-01-17"),
        ("market=us", "date=2025-01-21"),
        ("market=cn", "date=2025-01-17"),
        ("market=cn", "date=2025-01-20"),
        ("market=cn", "date=2025-01-21"),
    }


@pytest.mark.skipif(not REAL_CONTRACT.is_dir(), reason=f"no real sample at {REAL_CONTRACT}")
def test_real_sample_partitions_are_exactly_its_sessions(tmp_path: Path):
    layout = DataLayout(tmp_path / "data")
    ingest_files(layout, REAL_CONTRACT, allow_missing_sessions=True)
    keys = _keys(layout)
    us, cn = _raw_sessions(layout, "us"), _raw_sessions(layout, "cn")
    assert keys == sorted(us | cn)
    assert keys[0] == date(2020, 1, 2)  # the first CN price; the U.S. data starts 2024-12-13
    # U.S.-only sessions exist only where U.S. data exists; CN holidays inside it are kept.
    assert {day for day in keys if day not in cn} == us - cn
    assert date(2024, 1, 1) not in keys and date(2025, 1, 20) in keys


def test_no_ingest_no_partitions_and_a_window_without_sessions_is_named(tmp_path: Path):
    assert session_partitions([]).get_partition_keys() == []
    days = [date(2025, 1, 2), date(2025, 1, 3), date(2025, 1, 6)]
    assert session_range(days, date(2025, 1, 3), date(2025, 1, 5)) == (days[1], days[1])
    with pytest.raises(PipelineError, match=r"no session .* 2025-01-04 \.\. 2025-01-05"):
        session_range(days, date(2025, 1, 4), date(2025, 1, 5))


def test_a_build_over_a_weekend_only_says_there_is_no_session(sample_copy: DataLayout, capsys):
    data = str(sample_copy.data_dir)
    assert main(["--data-dir", data, "build", "--start", "2025-03-08", "--end", "2025-03-09"]) == 1
    assert "no session of the ingested calendars falls in 2025-03-08 .. 2025-03-09" in (
        capsys.readouterr().err
    )
