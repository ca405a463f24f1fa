"""Arm identity (issue 17, item 4): reasoning on/off is part of the arm, its slug and its joins."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from dagster_project.cli import main
from inference.experiments import ExperimentError, load_experiment
from tests.openai_server import OpenAIServer

REASONING = ("think", "nothink")

SWITCH_YAML = """
models:
  reference: {backend: reference}
  qwen:
    backend: openai
    model_id: Qwen/Qwen3.5-35B-A3B
    base_urls: [http://127.0.0.1:1/v1]
    reasoning: [true, false]
  thinker:
    backend: openai
    model_id: some/thinker
    base_urls: [http://127.0.0.1:1/v1]
    reasoning: true
modes: [free, strict]
"""


@pytest.fixture
def switch_experiment(tmp_path: Path):
    path = tmp_path / "experiments.yaml"
    path.write_text(SWITCH_YAML, encoding="utf-8")
    return load_experiment(path)


def test_a_model_with_a_reasoning_switch_runs_two_arms_and_names_them(switch_experiment):
    slugs = {arm.slug: arm.reasoning for arm in switch_experiment.arms}
    assert slugs == {
        "reference__free": False,
        "reference__strict": False,
        "qwen__free__think": True,
        "qwen__free__nothink": False,
        "qwen__strict__think": True,
        "qwen__strict__nothink": False,
        # one setting only: the slug it always had, the setting recorded on the rows
        "thinker__free": True,
        "thinker__strict": True,
    }
    for arm in switch_experiment.arms:
        assert switch_experiment.arm(arm.slug) == arm
    assert switch_experiment.arm("qwen__strict__neutral__think__blind__r2").slug == (
        "qwen__strict__neutral__think__blind__r2"
    )


@pytest.mark.parametrize(
    ("slug", "message"),
    [
        ("qwen__strict", "runs with reasoning on and off; name which with __think"),
        ("thinker__strict__nothink", "runs with reasoning on only"),
        ("reference__strict__think", "runs with reasoning off only"),
        ("qwen__strict__think__neutral", "unexpected part(s) neutral"),
    ],
)
def test_a_slug_that_does_not_say_the_arm_is_refused(switch_experiment, slug, message):
    with pytest.raises(ExperimentError, match="arm") as error:
        switch_experiment.arm(slug)
    assert message in str(error.value)


def test_reasoning_settings_are_validated(tmp_path: Path):
    path = tmp_path / "bad.yaml"
    path.write_text(
        "models:\n  m: {backend: openai, base_urls: [x], reasoning: [true, true]}\n",
        encoding="utf-8",
    )
    with pytest.raises(ExperimentError, match=r"models\.m\.reasoning: expected true, false"):
        load_experiment(path)


def test_an_unconfigured_model_takes_its_reasoning_from_the_slug(switch_experiment):
    url = "http://127.0.0.1:9/v1"
    think = switch_experiment.arm("org/new__free__think", url)
    plain = switch_experiment.arm("org/new__free", url)
    assert (think.reasoning, think.slug) == (True, "org/new__free__think")
    assert (plain.reasoning, plain.slug) == (False, "org/new__free")
    assert think.model.model_id == "org/new" and think.model.base_urls == (url,)


def test_one_model_with_thinking_on_and_off_runs_through_the_marts(sample_copy, capsys):
    """Two arms of one model id, each paired with its own Free arm; backtest_metrics' tests
    (one row per arm, market and ticker) pass."""
    common = ["--data-dir", str(sample_copy.data_dir)]
    model = "Qwen/Qwen3.5-35B-A3B"
    arms = {f"{model}__{mode}__{part}" for mode in ("free", "strict") for part in REASONING}
    # The thinking Free arm decides one date fewer: its common window with the thinking Strict
    # arm ends a day earlier than the non-thinking pair's, which tells the pairs apart.
    ranges = {
        f"{model}__free__think": ("2025-03-03", "2025-03-04"),
        f"{model}__free__nothink": ("2025-03-03", "2025-03-05"),
        f"{model}__strict__think": ("2025-03-03", "2025-03-05"),
        f"{model}__strict__nothink": ("2025-03-03", "2025-03-05"),
    }
    with OpenAIServer() as server:
        for slug, (start, end) in ranges.items():
            code = main(
                [*common, "infer", "--arm", slug, "--base-url", server.base_url]
                + ["--start", start, "--end", end]
            )
            assert code == 0, capsys.readouterr().err
        thinking = {
            bool(request.body["chat_template_kwargs"]["enable_thinking"])
            for request in server.requests
        }
    assert thinking == {True, False}
    decisions = duckdb.sql(
        "select arm, bool_and(is_reasoning) as on_, bool_or(is_reasoning) as any_on, "
        "count(reasoning) as traces, count(*) as n "
        f"from read_parquet('{sample_copy.landing_dir}/llm_decisions/*/*/*.parquet', "
        "hive_partitioning = false) group by arm"
    ).fetchall()
    by_arm = {arm: (on, any_on, traces, n) for arm, on, any_on, traces, n in decisions}
    assert set(by_arm) == arms
    for slug, (on, any_on, traces, n) in by_arm.items():
        expected = slug.endswith("__think")
        assert on is expected and any_on is expected
        assert traces == (n if expected else 0)  # a trace exactly where thinking was on

    capsys.readouterr()
    backtest = [*common, "backtest", "--baseline", "buy_and_hold"]
    for slug in sorted(arms):
        backtest += ["--arm", slug]
    assert main(backtest) == 0, capsys.readouterr().err
    with duckdb.connect(str(sample_copy.warehouse), read_only=True) as connection:
        rows = connection.execute(
            "select arm, market, is_reasoning, alignment_tax, alignment_tax_end, "
            "count(*) over (partition by arm, market, ticker) as copies "
            "from backtest_metrics where ticker = '__portfolio__' and arm_kind = 'llm'"
        ).fetchall()
        arm_rows = connection.execute(
            "select arm, model_key, model, is_reasoning from stg_landing__backtest_arms "
            "where arm_kind = 'llm' and market = 'us' order by arm"
        ).fetchall()
    assert {row[0] for row in rows} == arms and {row[5] for row in rows} == {1}
    assert len(rows) == 2 * len(arms)  # one per arm and market
    for arm, _market, is_reasoning, tax, _end, _ in rows:
        assert is_reasoning is arm.endswith("__think")
        assert tax is not None  # every arm has a Free arm
        if arm.startswith(f"{model}__free"):
            assert tax == 0
    # Each Strict arm is paired with the Free arm of its own reasoning setting: the thinking
    # pair's common window ends with the shorter thinking Free arm.
    strict_ends = {arm: str(tax_end) for arm, _, _, _, tax_end, _ in rows if "__strict__" in arm}
    assert strict_ends[f"{model}__strict__think"] < strict_ends[f"{model}__strict__nothink"]
    assert arm_rows == [(arm, model, model, arm.endswith("__think")) for arm in sorted(arms)]
