"""The transformers backend on a tiny random model built from a config, with a tokenizer
trained on the spot (no downloads). Skipped where torch/transformers are not installed (they
are optional); the batch-size check needs a CUDA device and is skipped without one."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="optional: pip install torch transformers")
transformers = pytest.importorskip("transformers", reason="optional: pip install transformers")

from inference.backends.transformers_backend import TransformersBackend  # noqa: E402
from inference.requests import ChatRequest  # noqa: E402

CORPUS = [
    "buy sell hold exposure confidence rule reason market price news report",
    '{"action": "hold", "target_exposure": 0.5, "confidence": 0.5, "rule": null}',
] * 50


def _tiny_model(folder: Path) -> Path:
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["[UNK]", "[PAD]", "[EOS]"])
    tokenizer.train_from_iterator(CORPUS, trainer)
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="[UNK]", pad_token="[PAD]", eos_token="[EOS]"
    )
    fast.save_pretrained(folder)
    config = transformers.GPT2Config(
        vocab_size=fast.vocab_size,
        n_positions=2048,
        n_embd=32,
        n_layer=2,
        n_head=2,
        pad_token_id=fast.pad_token_id,
        eos_token_id=fast.eos_token_id,
    )
    torch.manual_seed(0)
    transformers.GPT2LMHeadModel(config).save_pretrained(folder)
    return folder


def _requests(n: int, max_tokens: int = 8) -> list[ChatRequest]:
    return [
        ChatRequest.build(
            "tiny",
            [{"role": "user", "content": f"market price news {i}"}],
            {"temperature": 0.0, "max_tokens": max_tokens},
        )
        for i in range(n)
    ]


async def _collect(backend: TransformersBackend, requests: list[ChatRequest]):
    return [response async for response in backend.run(requests)]


def test_tiny_model_answers_every_request_on_cpu(tmp_path: Path):
    backend = TransformersBackend(_tiny_model(tmp_path), batch_size=4, device="cpu")
    requests = _requests(6)
    responses = asyncio.run(_collect(backend, requests))
    assert {r.request_hash for r in responses} == {r.hash for r in requests}
    assert all(isinstance(r.text, str) and r.prompt_tokens > 0 for r in responses)
    again = asyncio.run(_collect(backend, requests))  # greedy: deterministic
    assert {r.request_hash: r.text for r in again} == {r.request_hash: r.text for r in responses}


def test_missing_model_directory_is_named(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="no model directory"):
        TransformersBackend(tmp_path / "absent")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_batch_64_outpaces_batch_1(tmp_path: Path):
    folder = _tiny_model(tmp_path)
    rates = {}
    for batch in (1, 64):
        backend = TransformersBackend(folder, batch_size=batch, device="cuda")
        requests = _requests(128, max_tokens=32)
        started = time.perf_counter()
        responses = asyncio.run(_collect(backend, requests))
        rates[batch] = sum(r.completion_tokens for r in responses) / (time.perf_counter() - started)
    print(f"tokens/s batch 1: {rates[1]:.0f}, batch 64: {rates[64]:.0f}")
    assert rates[64] > 4 * rates[1]
