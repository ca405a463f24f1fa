"""Experiments config: arms from models x modes x attitudes x replicates, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from inference.experiments import ExperimentError, load_experiment

VALID = """
models:
  reference: {backend: reference}
  qwen: {backend: openai, model_id: Qwen/Qwen3.5-35B-A3B, base_urls: [http://127.0.0.1:8000/v1],
         sampling: {temperature: 0.7, max_tokens: 256}}
modes: [free, strict]
attitudes: [null, conservative]
replicates: 2
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "experiments.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_arms_are_the_full_cross_product_with_readable_slugs(tmp_path: Path):
    experiment = load_experiment(_write(tmp_path, VALID))
    slugs = [arm.slug for arm in experiment.arms]
    assert len(slugs) == 2 * 2 * 2 * 2 == len(set(slugs))
    assert "qwen__strict__conservative__r1" in slugs and "reference__free" in slugs
    for arm in experiment.arms:
        assert experiment.arm(arm.slug) == arm
    qwen = experiment.models["qwen"]
    assert qwen.sampling == (("max_tokens", 256), ("temperature", 0.7))


def test_default_experiments_run_offline():
    experiment = load_experiment()
    assert {arm.model.backend for arm in experiment.arms} == {"reference", "random"}
    assert not any(arm.model.is_llm for arm in experiment.arms)


def test_base_url_makes_an_unconfigured_model_an_openai_arm(tmp_path: Path):
    experiment = load_experiment(_write(tmp_path, VALID))
    arm = experiment.arm("my-model__guided__aggressive", base_url="http://10.0.0.1:8000/v1")
    assert arm.model.backend == "openai" and arm.model.model_id == "my-model"
    assert arm.model.base_urls == ("http://10.0.0.1:8000/v1",)
    moved = experiment.arm("qwen__free", base_url="http://other/v1")
    assert moved.model.model_id == "Qwen/Qwen3.5-35B-A3B" and moved.model.base_urls == (
        "http://other/v1",
    )


@pytest.mark.parametrize(
    ("slug", "message"),
    [
        ("qwen", "expected <model>__<mode>"),
        ("qwen__loose", "mode 'loose' is not one of"),
        ("qwen__free__reckless", "attitude 'reckless' is not one of"),
        ("qwen__free__neutral__x__r2", "unexpected part(s) x"),
        ("nobody__free", "model 'nobody' is not in"),
        ("../../evil__free", "model '../../evil' is not a model id"),
        ("org//name__free", "model 'org//name' is not a model id"),
        ("a b__free", "model 'a b' is not a model id"),
    ],
)
def test_bad_slugs_are_named(tmp_path: Path, slug: str, message: str):
    experiment = load_experiment(_write(tmp_path, VALID))
    with pytest.raises(ExperimentError, match=message.replace("(", r"\(").replace(")", r"\)")):
        experiment.arm(slug)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("models: {a: {backend: magic}}", "models.a.backend 'magic' is not one of"),
        ("models: {a: {backend: openai}}", "models.a: the openai backend needs base_urls"),
        ("models: {a__b: {backend: reference}}", "may not be empty or contain '__'"),
        ("models: {a: {backend: reference, colour: red}}", "unknown setting(s) colour"),
        ("models: {a: {backend: reference, sampling: {heat: 1}}}", "models.a.sampling"),
        ("models: {a: {backend: reference}}\nmodes: [free, loose]", "modes 'loose'"),
        ("models: {a: {backend: reference}}\nreplicates: 0", "replicates must be"),
        ("models: {a: {backend: transformers}}", "needs path"),
        ("models: {}", "no models"),
        ("models: [", "not valid YAML"),
        ("extra: 1\nmodels: {a: {backend: reference}}", "unknown section(s) extra"),
        ("models:\n  off: {backend: reference}", "model key False is not text"),
        ("models:\n  1.5: {backend: reference}", "quote it, e.g. '1.5':"),
        ("models: {../x: {backend: reference}}", "model '../x' is not a model id"),
        ("- models", "expected a mapping"),
    ],
)
def test_bad_config_is_named(tmp_path: Path, text: str, message: str):
    path = _write(tmp_path, text)
    with pytest.raises(ExperimentError) as error:
        load_experiment(path)
    assert message in str(error.value) and str(path) in str(error.value)
