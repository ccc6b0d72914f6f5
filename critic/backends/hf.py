"""A small local model through transformers + outlines, for machines without vLLM.

Slow (one request at a time on the CPU) but it produces the same result shape, so every other part
of critic works unchanged. No logprobs: confidence then comes from sample agreement.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Sequence
from typing import Any

from critic.backends.base import Generation, Request, Sample
from critic.errors import BackendError, MissingExtraError


class TransformersBackend:
    """Constrained JSON generation with `outlines.from_transformers`."""

    name = "transformers"

    def __init__(self, model: str | None = None, seed: int = 0, **_: Any) -> None:
        if not model:
            raise BackendError("the transformers backend needs --model (a local directory)")
        try:
            import outlines
            import transformers
        except ImportError as exc:
            raise MissingExtraError(
                "the transformers backend", exc.name or "transformers",
                "pip install 'critic[transformers]'",
            ) from None  # fmt: skip
        self.model = model
        self.seed = seed
        try:
            hf_model = transformers.AutoModelForCausalLM.from_pretrained(model)
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(model)
        except (OSError, ValueError) as exc:
            raise BackendError(f"transformers could not load model '{model}': {exc}") from None
        self._outlines = outlines
        self._model = outlines.from_transformers(hf_model, self.tokenizer)  # type: ignore[arg-type]
        self.max_model_len = int(getattr(hf_model.config, "max_position_embeddings", 2048))
        self._generators: dict[str, Any] = {}
        self._lock = threading.Lock()

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "model": self.model}

    def _generator(self, schema: dict[str, Any] | None) -> Any:
        key = json.dumps(schema, sort_keys=True)
        if key not in self._generators:
            from outlines.types import JsonSchema

            output_type = JsonSchema(schema, whitespace_pattern="") if schema else None
            self._generators[key] = self._outlines.Generator(self._model, output_type)
        return self._generators[key]

    def _run(self, request: Request) -> Generation:
        import torch
        from outlines.inputs import Chat

        text = self.tokenizer.apply_chat_template(
            list(request.messages), tokenize=False, add_generation_prompt=True
        )
        prompt_tokens = len(self.tokenizer.encode(text, add_special_tokens=False))
        if prompt_tokens + 1 >= self.max_model_len:
            return Generation.failed(
                "prompt_too_long",
                f"the prompt has {prompt_tokens} tokens; the model's context is "
                f"{self.max_model_len}",
            )
        started = time.perf_counter()
        samples, completion_tokens = [], 0
        with self._lock:
            generator = self._generator(request.json_schema)
            for i in range(request.n):
                torch.manual_seed((request.seed or self.seed) + i)
                sampling = (
                    {"do_sample": True, "temperature": request.temperature}
                    if request.temperature > 0
                    else {"do_sample": False}
                )
                out = generator(
                    Chat(list(request.messages)),
                    max_new_tokens=min(request.max_tokens, self.max_model_len - prompt_tokens),
                    **sampling,
                )
                out_text = out if isinstance(out, str) else str(out)
                n_out = len(self.tokenizer.encode(out_text, add_special_tokens=False))
                completion_tokens += n_out
                finish = "length" if n_out >= request.max_tokens else "stop"
                samples.append(Sample(out_text, finish))
        return Generation(
            samples=tuple(samples),
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            latency_s=time.perf_counter() - started,
        )

    async def generate(self, requests: Sequence[Request]) -> list[Generation]:
        return [await asyncio.to_thread(self._run, r) for r in requests]

    async def check(self) -> None:
        """The model is loaded when the backend is built: nothing more to check."""

    async def aclose(self) -> None:
        return None
