"""OpenAI batch JSONL round trip: export, answer (as vllm run-batch would, here through the
OpenAI-protocol test server), import, infer with no calls; errors stay recorded failures."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import duckdb
import pytest

from dagster_project.cli import main
from dagster_project.inference_assets import decide
from inference.experiments import load_experiment
from ingest.calendars import sessions
from ingest.layout import DataLayout
from tests.openai_server import OpenAIServer

EXPERIMENTS = "models:\n  offline: {backend: batch-file, model_id: Qwen/Qwen3.5-35B-A3B}\n"
DAYS = sessions("cn", "2025-03-03", "2025-03-05")


def _answer_batch(lines: list[dict], base_url: str) -> list[dict]:
    """What `vllm run-batch` writes: one output line per input line."""
    out = []
    for line in lines:
        request = urllib.request.Request(
            base_url.removesuffix("/v1") + line["url"],
            data=json.dumps(line["body"]).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request) as reply:
            body = json.loads(reply.read())
        out.append(
            {
                "id": f"b-{len(out)}",
                "custom_id": line["custom_id"],
                "response": {"status_code": 200, "body": body},
                "error": None,
            }
        )
    return out


def test_export_answer_import_then_infer_without_calls(
    sample_copy: DataLayout, tmp_path: Path, capsys
):
    experiments = tmp_path / "experiments.yaml"
    experiments.write_text(EXPERIMENTS)
    exported = tmp_path / "batch_in.jsonl"
    common = ["--data-dir", str(sample_copy.data_dir), "batch"]
    args = [
        "--arm",
        "offline__strict__blind",
        "--start",
        "2025-03-03",
        "--end",
        "2025-03-05",
        "--market",
        "cn",
        "--experiments",
        str(experiments),
    ]
    assert main([*common, "export", *args, "--out", str(exported)]) == 0
    lines = [json.loads(text) for text in exported.read_text().splitlines()]
    assert len(lines) == 14 * 3 and "wrote 42 requests" in capsys.readouterr().out
    assert all(line["body"]["response_format"]["type"] == "json_schema" for line in lines)
    assert len({line["custom_id"] for line in lines}) == len(lines)

    with OpenAIServer() as server:
        answers = _answer_batch(lines, server.base_url)
    answers[0] = {
        "custom_id": lines[0]["custom_id"],
        "response": None,
        "error": {"message": "context length exceeded"},
    }
    output = tmp_path / "batch_out.jsonl"
    output.write_text("\n".join(json.dumps(a) for a in answers) + "\n")
    assert main([*common, "import", str(output)]) == 1  # one line failed, and says so
    assert "context length exceeded" in capsys.readouterr().out

    arm = load_experiment(experiments).arm("offline__strict__blind")
    summary = decide([arm], DAYS, sample_copy, markets=["cn"])[0][arm.slug]
    assert summary.decisions == 42 and summary.cache_hits == 41 and summary.failures == 1
    assert summary.no_answer == 1 and summary.error_classes == {"not_in_batch": 1}
    rows = duckdb.sql(
        f"select answer_status, error_class, error, parse_status, guardrail_status from "
        f"'{sample_copy.data_dir}/landing/llm_decisions/arm=offline__strict__blind/*/*.parquet'"
    ).df()
    failed = rows[rows["answer_status"] == "no_answer"]
    assert len(failed) == 1 and "strat-llm batch export" in failed["error"].iloc[0]
    assert failed["parse_status"].isna().all() and set(failed["guardrail_status"]) == {
        "not_applicable"
    }

    again = tmp_path / "batch_again.jsonl"
    assert main([*common, "export", *args, "--out", str(again)]) == 0
    assert [json.loads(t)["custom_id"] for t in again.read_text().splitlines()] == [
        lines[0]["custom_id"]
    ]


def test_a_position_aware_arm_cannot_be_one_batch_and_says_which_arm_can(
    sample_copy: DataLayout, tmp_path: Path, capsys
):
    experiments = tmp_path / "experiments.yaml"
    experiments.write_text(EXPERIMENTS)
    args = ["--data-dir", str(sample_copy.data_dir), "batch", "export", "--arm", "offline__strict"]
    args += ["--start", "2025-03-03", "--end", "2025-03-05", "--out", str(tmp_path / "b.jsonl")]
    assert main([*args, "--experiments", str(experiments)]) == 1
    error = capsys.readouterr().err
    assert "offline__strict is position-aware" in error and "offline__strict__blind" in error
    assert not (tmp_path / "b.jsonl").exists()
    arm = load_experiment(experiments).arm("offline__strict")
    with pytest.raises(ValueError, match="a batch file cannot answer"):
        decide([arm], DAYS, sample_copy)
