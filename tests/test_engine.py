"""The decision engine with the reference backend on the built sample: exactly once, resumable,
date by date equal to one run (the book carried on disk), DESIGN §7 columns, gated in Dagster."""

from __future__ import annotations

import json
from datetime import date

import duckdb
import pandas as pd
import pyarrow.parquet as pq
import pytest

from dagster_project.cli import main
from dagster_project.inference_assets import decide as decide_range
from inference.backends.reference import DecisionContext, decide
from inference.cache import ResponseCache
from inference.engine import LLM_DECISIONS_SCHEMA
from inference.experiments import load_experiment
from inference.parsing import parse_decision
from ingest.calendars import sessions
from ingest.layout import DataLayout

DESIGN_COLUMNS = [
    "arm",
    "model",
    "mode",
    "attitude",
    "replicate",
    "market",
    "ticker",
    "decision_date",
    "request_hash",
    "action",
    "target_exposure",
    "confidence",
    "rule",
    "reason",
    "parse_status",
    "guardrail_status",
    "prompt_tokens",
    "completion_tokens",
    "reasoning_tokens",
    "latency_ms",
    "cached",
    "backend",
    "raw_response",
]
DAYS = sessions("us", "2025-03-03", "2025-03-14")


def _run(layout: DataLayout, slug: str, days: list[date]):
    arm = load_experiment().arm(slug)
    return decide_range([arm], days, layout)[0][slug]


def _decisions(layout: DataLayout, slug: str) -> pd.DataFrame:
    pattern = layout.data_dir / "landing" / "llm_decisions" / f"arm={slug}" / "*" / "*.parquet"
    return duckdb.sql(f"select * from '{pattern}' order by decision_date, market, ticker").df()


def test_rows_have_the_design_columns_and_a_rule_agent_rerun_is_recomputed_the_same(
    sample_copy: DataLayout,
):
    first = _run(sample_copy, "reference__strict", DAYS)
    assert first.calls == first.decisions > 0 and first.cache_hits == 0
    assert len(first.files) == 2 * len(DAYS)  # one per market and date
    path = sample_copy.decision_file("reference__strict", "us", DAYS[0])
    assert path.is_file()
    assert pq.read_schema(path).names[: len(DESIGN_COLUMNS)] == DESIGN_COLUMNS
    assert pq.read_schema(path) == LLM_DECISIONS_SCHEMA
    # A rule agent's answers are not cached (an LLM's are: test_inference_resume): no
    # response and no request index row, so the rerun asks the rule agent again, for nothing.
    with ResponseCache(sample_copy.response_cache) as cache:
        assert len(cache) == 0
        [(indexed,)] = cache._connection.execute("select count(*) from request_index").fetchall()
        assert indexed == 0
    before = _decisions(sample_copy, "reference__strict")
    again = _run(sample_copy, "reference__strict", DAYS)
    assert again.calls == first.decisions and again.cache_hits == 0
    rows = _decisions(sample_copy, "reference__strict")
    assert not rows["cached"].any()
    pd.testing.assert_frame_equal(rows, before)  # deterministic: the same rows, byte for byte


def test_partition_by_partition_equals_one_run(sample_copy: DataLayout):
    _run(sample_copy, "reference__guided", DAYS)
    whole = _decisions(sample_copy, "reference__guided")
    for day in DAYS:  # again, one decision date at a time, the book carried on disk
        _run(sample_copy, "reference__guided__r1", [day])
    stepwise = _decisions(sample_copy, "reference__guided__r1")
    columns = [
        "market",
        "ticker",
        "decision_date",
        "action",
        "target_exposure",
        "previous_exposure",
        "book_date",
    ]
    assert whole["previous_exposure"].gt(0).any()  # the books did hold positions
    pd.testing.assert_frame_equal(whole[columns], stepwise[columns])


def test_strict_rows_obey_the_rules_they_cite(sample_copy: DataLayout):
    _run(sample_copy, "reference__strict", DAYS)
    rows = _decisions(sample_copy, "reference__strict")
    assert set(rows["guardrail_status"]) <= {"pass", "overridden"}
    assert rows["target_exposure"].between(0, 1).all()
    raised = rows[rows["target_exposure"] > rows["previous_exposure"] + 1e-9]
    assert raised["rule"].notna().all() and (raised["guardrail_status"] == "pass").all()
    free = _run(sample_copy, "reference__free", DAYS[:2])
    assert free.overridden == 0
    assert set(_decisions(sample_copy, "reference__free")["guardrail_status"]) == {"not_applicable"}


def test_reference_answers_parse_cleanly_and_say_they_are_not_llms(built_sample: DataLayout):
    with duckdb.connect(str(built_sample.warehouse), read_only=True) as connection:
        cursor = connection.execute("select * from pit_snapshots limit 50")
        names = [column[0] for column in cursor.description]
        snapshots = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    for snapshot in snapshots:
        for mode in ("free", "guided", "strict"):
            answer = decide(DecisionContext(snapshot, mode, None))
            parsed = parse_decision(json.dumps(answer), mode)
            assert parsed.status == "ok", parsed.error
            assert answer["reason"].startswith("[reference rule agent, not an LLM]")


def test_cli_infer_runs_gated_and_names_bad_arms(sample_copy: DataLayout, capsys):
    common = ["--data-dir", str(sample_copy.data_dir), "infer"]
    assert (
        main([*common, "--arm", "nobody__free", "--start", "2025-03-03", "--end", "2025-03-04"])
        == 1
    )
    assert "model 'nobody' is not in" in capsys.readouterr().err
    args = ["--arm", "reference__free", "--start", "2025-03-03", "--end", "2025-03-07"]
    assert main([*common, *args, "--market", "cn"]) == 0
    out = capsys.readouterr().out
    assert "reference__free: 70 decisions in 5 files" in out
    assert main([*common, *args, "--market", "us"]) == 0  # then us: cn's rows stay
    assert "reference__free: 70 decisions in 5 files" in capsys.readouterr().out
    kept = _decisions(sample_copy, "reference__free")
    assert kept.groupby("market").size().to_dict() == {"cn": 70, "us": 70}
    with duckdb.connect(str(sample_copy.warehouse)) as connection:
        connection.execute(
            "update pit_snapshots set max_price_date = decision_date"
            " where decision_date = '2025-03-05' and market = 'cn'"
        )
    assert (
        main(
            [*common, "--arm", "reference__guided", "--start", "2025-03-03", "--end", "2025-03-07"]
        )
        == 1
    )
    assert "leakage gate failed" in capsys.readouterr().err
    assert not sample_copy.decision_file("reference__guided", "cn", date(2025, 3, 3)).exists()


@pytest.mark.parametrize("slug", ["reference__strict__conservative"])
def test_attitude_caps_strict_exposure(sample_copy: DataLayout, slug: str):
    _run(sample_copy, slug, DAYS)
    rows = _decisions(sample_copy, slug)
    # what it may buy is capped; a held position may drift above the cap with prices
    assert rows.loc[rows["action"] == "buy", "target_exposure"].max() <= 0.5
    assert rows["proposed_target_exposure"].max() <= 0.5
