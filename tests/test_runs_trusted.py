"""Runs you can trust (issue 15): a failed request is no decision, real model ids are safe arm
ids, and the backtest refuses decisions made on data the warehouse no longer holds."""

from __future__ import annotations

import duckdb
import pandas as pd
import pytest

from dagster_project.cli import main
from ingest.layout import DataLayout, arm_component, arm_from_component
from tests.openai_server import OpenAIServer

START, END = "2025-03-03", "2025-03-14"


def _decisions(layout: DataLayout, slug: str) -> pd.DataFrame:
    folder = layout.landing_dir / "llm_decisions" / arm_component(slug)
    return duckdb.sql(
        f"select * from read_parquet('{folder}/*/*.parquet', hive_partitioning = false) "
        "order by decision_date, market, ticker"
    ).df()


def _portfolio_metrics(layout: DataLayout, columns: str, slug: str) -> list[tuple]:
    """`columns` of an arm's portfolio rows in backtest_metrics, by market."""
    with duckdb.connect(str(layout.warehouse), read_only=True) as connection:
        return connection.execute(
            f"select {columns} from backtest_metrics where arm = ? and ticker = '__portfolio__' "
            "order by market",
            [slug],
        ).fetchall()


def _closed_url() -> str:
    with OpenAIServer() as server:
        return server.base_url  # nobody listens on the port once the server has stopped


def test_a_closed_port_fails_infer_early_and_writes_no_decisions(sample_copy, capsys):
    slug = "some-model__strict"
    code = main(
        [
            *("--data-dir", str(sample_copy.data_dir), "infer", "--arm", slug),
            *("--base-url", _closed_url(), "--start", START, "--end", END),
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert f"{slug}: 28 of 28 requests got no answer (unreachable x" in err
    assert "refused 3 connections in a row" in err
    assert "stopped after 2025-03-03: later dates were not asked" in err
    assert "Traceback" not in err
    rows = _decisions(sample_copy, slug)
    # The first date is recorded as unanswered, and nothing after it was asked.
    assert set(rows["decision_date"].dt.date.astype(str)) == {START}
    assert set(rows["answer_status"]) == {"no_answer"}
    assert set(rows["error_class"]) <= {"unreachable", "connection"}
    assert rows["action"].isna().all() and rows["target_exposure"].isna().all()
    assert rows["parse_status"].isna().all()
    assert set(rows["guardrail_status"]) == {"not_applicable"}
    # The backtest keeps the book for them and counts them apart: no fidelity of 0.00.
    common = ["--data-dir", str(sample_copy.data_dir), "backtest"]
    assert main([*common, "--arm", slug, "--baseline", "buy_and_hold"]) == 0
    metrics = _portfolio_metrics(
        sample_copy,
        "market, n_decisions, n_no_answer, fidelity, parse_failure_rate, n_trades",
        slug,
    )
    assert metrics == [("cn", 0, 14, None, None, 0), ("us", 0, 14, None, None, 0)]


def test_a_real_model_id_runs_from_infer_to_metrics(sample_copy, capsys):
    slug = "Qwen/Qwen3.5-35B-A3B__strict"
    common = ["--data-dir", str(sample_copy.data_dir)]
    with OpenAIServer() as server:
        code = main(
            [*common, "infer", "--arm", slug, "--base-url", server.base_url]
            + ["--start", START, "--end", "2025-03-05"]
        )
        assert code == 0, capsys.readouterr().err
        models = {request.body["model"] for request in server.requests}
    assert models == {"Qwen/Qwen3.5-35B-A3B"}
    folders = [path.name for path in (sample_copy.landing_dir / "llm_decisions").iterdir()]
    assert folders == ["arm=Qwen%2FQwen3.5-35B-A3B__strict"]
    assert arm_from_component(folders[0]) == slug
    rows = _decisions(sample_copy, slug)
    assert set(rows["arm"]) == {slug} and len(rows) == 3 * 28
    assert set(rows["answer_status"]) == {"answered"}
    capsys.readouterr()
    assert main([*common, "backtest", "--arm", slug, "--baseline", "buy_and_hold"]) == 0
    with duckdb.connect(str(sample_copy.warehouse), read_only=True) as connection:
        metrics = connection.execute(
            "select arm, market, model from backtest_metrics where ticker = '__portfolio__'"
        ).fetchall()
    assert (slug, "us", "Qwen/Qwen3.5-35B-A3B") in metrics
    assert (slug, "cn", "Qwen/Qwen3.5-35B-A3B") in metrics
    # Each metric row names the data and configuration it came from.
    lineage = _portfolio_metrics(
        sample_copy, "market, ingest_id, decision_ingest_ids, config_hash, decisions_hash", slug
    )
    for market, ingest, decision_ingests, config, decisions in lineage:
        made = rows[rows["market"] == market]
        assert ingest == decision_ingests == made["ingest_id"].iloc[0]
        assert config == made["config_hash"].iloc[0] and len(config) == 16
        assert decisions is not None and len(decisions) == 16
    assert lineage[0][4] != lineage[1][4]  # other decisions, another hash


@pytest.mark.parametrize(
    "slug", ["../../evil__free", "org/../../evil__free", "/etc/evil__free", "a|b__free"]
)
def test_an_arm_that_would_escape_the_data_directory_is_refused(sample_copy, capsys, slug):
    outside = sample_copy.data_dir.parent
    before = sorted(outside.rglob("*"))
    code = main(
        [
            *("--data-dir", str(sample_copy.data_dir), "infer", "--arm", slug),
            *("--base-url", _closed_url(), "--start", START, "--end", START),
        ]
    )
    assert code == 1
    assert "is not a model id" in capsys.readouterr().err
    assert sorted(outside.rglob("*")) == before


def test_reingested_data_makes_the_backtest_refuse_stale_decisions(sample_copy, capsys):
    common = ["--data-dir", str(sample_copy.data_dir)]
    slug = "reference__free"
    assert main([*common, "infer", "--arm", slug, "--start", START, "--end", END]) == 0
    first = _decisions(sample_copy, slug)
    assert first["snapshot_hash"].notna().all() and first["config_hash"].nunique() == 1
    assert first["ingest_id"].nunique() == 2  # one per market
    # Other data under the same names: another seed of the sample market.
    assert main([*common, "ingest", "--source", "sample", "--seed", "7"]) == 0
    assert main([*common, "build", "--start", START, "--end", END]) == 0
    capsys.readouterr()
    assert main([*common, "backtest", "--arm", slug]) == 1
    err = capsys.readouterr().err
    assert "cannot vouch for; nothing was backtested" in err
    for market in ("us", "cn"):
        assert (
            f"arm {slug}, market {market}: 140 of 140 decisions (made on ingest "
            f"{first.loc[first['market'] == market, 'ingest_id'].iloc[0]})"
        ) in err
    assert "snapshots whose content has changed since (data ingested again)" in err
    assert f"strat-llm infer --arm {slug} --market us --start {START} --end {END}" in err
    # Deciding again on the new data clears it.
    assert main([*common, "infer", "--arm", slug, "--start", START, "--end", END]) == 0
    assert main([*common, "backtest", "--arm", slug]) == 0
    assert set(_decisions(sample_copy, slug)["ingest_id"]).isdisjoint(first["ingest_id"])


def test_the_alignment_tax_compares_an_arm_with_the_free_arm_of_its_own_view(sample_copy):
    common = ["--data-dir", str(sample_copy.data_dir)]
    arms = ["reference__free", "reference__free__blind", "reference__strict__blind"]
    window = ["--start", START, "--end", "2025-03-07"]
    assert main([*common, "infer", *(f"--arm={arm}" for arm in arms), *window]) == 0
    assert main([*common, "backtest", *(f"--arm={arm}" for arm in arms)]) == 0
    with duckdb.connect(str(sample_copy.warehouse), read_only=True) as connection:
        rows = connection.execute(
            "select arm, count(*), count(alignment_tax) from backtest_metrics "
            "where ticker = '__portfolio__' and market = 'us' group by arm order by arm"
        ).fetchall()
    # One row each (no second Free arm to pair with), and the blind Strict arm has a tax.
    assert rows == [
        ("reference__free", 1, 1),
        ("reference__free__blind", 1, 1),
        ("reference__strict__blind", 1, 1),
    ]
