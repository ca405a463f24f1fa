"""The models seed's dates and every decision flagged in or out of its model's training window
(issue 17, item 9)."""

from __future__ import annotations

import csv
from pathlib import Path

import duckdb

from dagster_project.cli import main
from tests.openai_server import OpenAIServer

SEED = Path(__file__).resolve().parents[1] / "dbt" / "seeds" / "models.csv"


def test_every_seeded_date_has_a_source_and_an_unknown_says_what_was_checked():
    with SEED.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows
    for row in rows:
        for column in ("release_date", "knowledge_cutoff"):
            source = row[f"{column}_source"].strip()
            assert source, f"{row['model_id']}: {column}_source is empty"
            if row[column]:
                assert not source.startswith("unknown"), (row["model_id"], column)
            else:
                assert source.startswith("unknown: "), (row["model_id"], column, source)
        assert row["supports_reasoning"] in ("true", "false")


def test_decisions_are_flagged_against_the_knowledge_cutoff(sample_copy, capsys):
    common = ["--data-dir", str(sample_copy.data_dir)]
    model = "Qwen/Qwen3.5-35B-A3B"
    slug = f"{model}__free"
    with OpenAIServer() as server:
        code = main(
            [*common, "infer", "--arm", slug, "--arm", "reference__free"]
            + ["--base-url", server.base_url, "--start", "2025-03-03", "--end", "2025-03-05"]
        )
        assert code == 0, capsys.readouterr().err
    # A cutoff inside the window (the seed's is unknown): the backtest's dbt run reads the
    # seed table as the warehouse holds it.
    with duckdb.connect(str(sample_copy.warehouse)) as connection:
        connection.execute(
            "update models set knowledge_cutoff = date '2025-03-04' where model_id = ?", [model]
        )
    backtest = [*common, "backtest", "--arm", slug, "--arm", "reference__free"]
    assert main([*backtest, "--baseline", "buy_and_hold"]) == 0, capsys.readouterr().err
    with duckdb.connect(str(sample_copy.warehouse), read_only=True) as connection:
        flags = connection.execute(
            "select arm, decision_date::varchar, in_training_window, count(*) "
            "from decision_training_window group by all order by all"
        ).fetchall()
        counts = connection.execute(
            "select arm, market, n_decisions, n_decisions_in_training_window, "
            "n_decisions_out_of_training_window from backtest_metrics "
            "where ticker = '__portfolio__' and arm_kind != 'baseline' order by arm, market"
        ).fetchall()
    per_date = {(arm, day): (flag, n) for arm, day, flag, n in flags}
    assert {key[1] for key in per_date} == {"2025-03-03", "2025-03-04", "2025-03-05"}
    for (arm, day), (flag, _n) in per_date.items():
        if arm == slug:
            assert flag is (day <= "2025-03-04")  # on the cutoff is still inside
        else:
            assert flag is None  # a rule agent has no training window
    for arm, _market, n, inside, outside in counts:
        if arm == slug:
            assert n > 0 and inside + outside == n
            assert outside * 2 == inside  # one date of three after the cutoff
        else:
            assert (inside, outside) == (0, 0)
