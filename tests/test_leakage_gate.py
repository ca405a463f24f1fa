"""The leakage gate: planted canaries each fail `strat-llm check` and block downstream assets."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest

from dagster_project.checks import GATE_CHECKS, pit_snapshots_leakage_gate, raw_contract_checks
from dagster_project.cli import main
from dagster_project.inference_assets import ARM_PARTITIONS, LLM_DECISIONS
from dagster_project.ingest_assets import raw_tables
from dagster_project.location import location_for
from dagster_project.resources import DataDirResource, all_resources
from expectations.runner import GateRunner, knowledge_cutoff_warnings, run_gate
from ingest.layout import DataLayout

ONE_ROW = (
    "market = 'us' and decision_date = '2025-03-12'"
    " and ticker = (select min(ticker) from pit_snapshots where market = 'us')"
)

# Each canary tampers with one snapshot the way a leaky pipeline would, and names the
# expectation that must catch it.
CANARIES = {
    "future news item inside a snapshot": (
        f"""update pit_snapshots set news = list_append(news, {{
                'published_at': information_cutoff + interval 1 hour, 'news_id': 'canary',
                'headline': 'Tomorrow: record profits', 'source': 'leak'}})
            where {ONE_ROW}""",
        "column_A=information_cutoff, column_B=news_max_published_at",
    ),
    "report publication moved after the cutoff": (
        f"""update pit_snapshots
            set report_published_at = information_cutoff + interval 2 hour,
                report = struct_update(report, published_at := information_cutoff + interval 2 hour)
            where {ONE_ROW}""",
        "column_A=information_cutoff, column_B=report_published_at",
    ),
    "price row on the decision date": (
        f"""update pit_snapshots
            set max_price_date = decision_date,
                price_history = list_append(price_history, {{
                    'date': decision_date, 'open': 1.0, 'high': 1.0, 'low': 1.0, 'close': 1.0,
                    'volume': 1.0}})
            where {ONE_ROW}""",
        "column_A=decision_date, column_B=max_price_date",
    ),
    "extra forward-return column": (
        "alter table pit_snapshots add column fwd_return_5d double",
        "expect_table_columns_to_match_set",
    ),
    "cutoff after the open": (
        f"update pit_snapshots set information_cutoff = information_cutoff + interval 2 hour"
        f" where {ONE_ROW}",
        "column_A=session_open_at, column_B=information_cutoff",
    ),
}


def _tamper(layout: DataLayout, sql: str) -> None:
    with duckdb.connect(str(layout.warehouse)) as connection:
        connection.execute(sql)


def _inference_materializes(layout: DataLayout) -> bool:
    """One partition of llm_decisions in the same run as the gate: it may only run on a
    gated warehouse."""
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(ARM_PARTITIONS.name, ["reference__free"])
    location = location_for(layout)
    result = dg.materialize(
        [raw_tables, location.pit_snapshot_assets, *GATE_CHECKS, location.agents],
        selection=dg.AssetSelection.checks(pit_snapshots_leakage_gate)
        | dg.AssetSelection.assets(location.agents),
        partition_key="reference__free|2025-03-12",
        instance=instance,
        resources={**all_resources(), "data_dir": DataDirResource(data_dir=str(layout.data_dir))},
        raise_on_error=False,
    )
    landed = layout.decision_file("reference__free", "us", date(2025, 3, 12)).exists()
    materialized = any(
        event.asset_key == LLM_DECISIONS for event in result.get_asset_materialization_events()
    )
    assert landed == materialized
    return materialized


def test_clean_sample_passes_the_gate(sample_copy: DataLayout, capsys):
    assert main(["--data-dir", str(sample_copy.data_dir), "check"]) == 0
    assert "all blocking checks passed" in capsys.readouterr().out
    report = run_gate(sample_copy.warehouse, sample_copy.data_dir / "raw")
    assert report.passed, report.format()
    assert _inference_materializes(sample_copy)


@pytest.mark.parametrize("canary", sorted(CANARIES))
def test_canary_fails_check_and_blocks_downstream(sample_copy: DataLayout, canary: str, capsys):
    sql, expectation = CANARIES[canary]
    _tamper(sample_copy, sql)
    assert main(["--data-dir", str(sample_copy.data_dir), "check"]) == 1
    err = capsys.readouterr().err
    assert "leakage gate failed" in err and expectation in err
    if "column" not in canary:
        assert "ticker=" in err and "decision_date=2025-03-12" in err
    assert not _inference_materializes(sample_copy)


def test_duplicates_are_found_across_chunks(sample_copy: DataLayout):
    _tamper(
        sample_copy,
        "insert into pit_snapshots select * from pit_snapshots where market = 'cn' limit 3",
    )
    report = run_gate(sample_copy.warehouse, chunk_rows=500)
    [failure] = report.failures
    assert failure.expectation.startswith("expect_compound_columns_to_be_unique")
    assert failure.unexpected_count == 6
    assert sum(1 for o in report.outcomes if o.suite == "pit_snapshots") > 5


def test_tampered_raw_file_fails_its_contract_check(sample_copy: DataLayout):
    path = sample_copy.raw_file("us", "prices")
    table = pq.read_table(path)
    frame = table.to_pandas()
    frame.loc[0, "high"] = frame.loc[0, "low"] / 2
    pq.write_table(pq.read_table(path).from_pandas(frame, schema=table.schema), path)
    result = dg.materialize(
        [raw_tables, raw_contract_checks],
        selection=dg.AssetSelection.checks(raw_contract_checks),
        resources={"data_dir": DataDirResource(data_dir=str(sample_copy.data_dir))},
        raise_on_error=False,
    )
    failed = {
        evaluation.asset_key.to_user_string()
        for evaluation in result.get_asset_check_evaluations()
        if not evaluation.passed
    }
    assert failed == {"raw/us/prices"}


def test_knowledge_cutoff_after_decisions_is_a_warning(sample_copy: DataLayout):
    _tamper(sample_copy, "update models set knowledge_cutoff = '2025-01-31'")
    warnings = knowledge_cutoff_warnings(GateRunner(), sample_copy.warehouse)
    with duckdb.connect(str(sample_copy.warehouse), read_only=True) as connection:
        [(before,)] = connection.execute(
            "select count(distinct decision_date) from pit_snapshots"
            " where decision_date <= '2025-01-31'"
        ).fetchall()
    assert len(warnings) == 2 and all(f"{before} decision date(s)" in w for w in warnings)
    assert run_gate(sample_copy.warehouse).passed  # a warning never blocks


def test_missing_warehouse_is_named(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="run `strat-llm build` first"):
        run_gate(tmp_path / "none.duckdb")


def test_gate_frames_carry_session_opens():
    from expectations.runner import _with_session_opens

    frame = pd.DataFrame(
        {"market": ["us", "cn"], "decision_date": pd.to_datetime(["2025-03-10"] * 2)}
    )
    opens = _with_session_opens(frame)["session_open_at"]
    assert list(opens) == [pd.Timestamp("2025-03-10T13:30Z"), pd.Timestamp("2025-03-10T01:30Z")]
