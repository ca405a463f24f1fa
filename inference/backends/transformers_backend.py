"""A local model directory with Hugging Face transformers, CPU or GPU, batched generation.

Optional: `pip install torch transformers` (not in the default install, which stays offline
and small). Nothing is downloaded: the directory must hold the weights and the tokenizer.
Prompts are sorted by length and generated in batches of `batch_size` with left padding, so a
GPU runs full batches; greedy unless sampling params say otherwise.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from inference.backends.base import Response
from inference.requests import ChatRequest

NAME = "transformers"


class TransformersBackend:
    name = NAME

    def __init__(self, model_dir: str | Path, batch_size: int = 16, device: str | None = None):
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as error:
            raise RuntimeError(
                "the transformers backend needs torch and transformers: "
                "pip install torch transformers"
            ) from error
        path = Path(model_dir)
        if not path.is_dir():
            raise FileNotFoundError(f"{path}: no model directory")
        self._torch = torch
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.batch_size = batch_size
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True).to(
            self.device
        )
        self.model.eval()

    def _prompt(self, request: ChatRequest) -> str:
        messages = request.message_dicts()
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(
                messages, tokenize=False, add_generation_prompt=True
            )
        # A base model without a chat template: plain role-prefixed text.
        return "\n\n".join(f"{m['role']}: {m['content']}" for m in messages) + "\n\nassistant:"

    def _generation_kwargs(self, request: ChatRequest) -> dict[str, Any]:
        sampling = dict(request.sampling)
        temperature = float(sampling.get("temperature", 0.0))
        kwargs: dict[str, Any] = {"max_new_tokens": int(sampling.get("max_tokens", 512))}
        if temperature > 0:
            kwargs.update(do_sample=True, temperature=temperature, top_p=sampling.get("top_p", 1.0))
        else:
            kwargs["do_sample"] = False
        return kwargs

    def generate_batch(self, requests: Sequence[ChatRequest]) -> list[Response]:
        """One padded batch through model.generate (requests share sampling params)."""
        started = time.perf_counter()
        prompts = [self._prompt(request) for request in requests]
        encoded = self.tokenizer(prompts, return_tensors="pt", padding=True).to(self.device)
        if requests and dict(requests[0].sampling).get("seed") is not None:
            self._torch.manual_seed(int(dict(requests[0].sampling)["seed"]))
        with self._torch.no_grad():
            output = self.model.generate(
                **encoded,
                pad_token_id=self.tokenizer.pad_token_id,
                **self._generation_kwargs(requests[0]),
            )
        new_tokens = output[:, encoded["input_ids"].shape[1] :]
        elapsed = (time.perf_counter() - started) * 1000 / max(len(requests), 1)
        responses = []
        for request, tokens, mask in zip(
            requests, new_tokens, encoded["attention_mask"], strict=True
        ):
            completion = int((tokens != self.tokenizer.pad_token_id).sum())
            responses.append(
                Response(
                    request_hash=request.hash,
                    backend=NAME,
                    text=self.tokenizer.decode(tokens, skip_special_tokens=True),
                    prompt_tokens=int(mask.sum()),
                    completion_tokens=completion,
                    latency_ms=elapsed,
                    finish_reason="stop",
                )
            )
        return responses

    async def run(self, requests: Sequence[ChatRequest]) -> AsyncIterator[Response]:
        ordered = sorted(requests, key=lambda request: len(self._prompt(request)))
        for start in range(0, len(ordered), self.batch_size):
            batch = ordered[start : start + self.batch_size]
            for response in await asyncio.to_thread(self.generate_batch, batch):
                yield response
