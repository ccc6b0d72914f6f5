"""Any OpenAI-compatible vLLM server, driven asynchronously with bounded concurrency.

Structured output is sent as vLLM's own `structured_outputs` request field (vLLM >= 0.11; 0.32
renamed guided decoding to this) with `disable_any_whitespace`, so the constraint does not depend
on how the server was started: without it a weak model pads JSON with whitespace up to max_tokens.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from typing import Any

import httpx

from critic.backends.base import Generation, Request, Sample, TokenLogprob
from critic.errors import BackendError, did_you_mean

_TOO_LONG = ("maximum context length", "longer than the maximum", "max_model_len", "too long")


def parse_logprobs(choice: dict[str, Any]) -> tuple[TokenLogprob, ...] | None:
    """The per-token logprobs of one OpenAI chat choice, or None when not returned."""
    content = (choice.get("logprobs") or {}).get("content")
    if not content:
        return None
    return tuple(
        TokenLogprob(
            token=entry["token"],
            logprob=float(entry["logprob"]),
            top={alt["token"]: float(alt["logprob"]) for alt in entry.get("top_logprobs") or []},
        )
        for entry in content
    )


def request_body(model: str, request: Request, structured: str = "vllm") -> dict[str, Any]:
    """The chat-completions JSON body for one request."""
    body: dict[str, Any] = {
        "model": model,
        "messages": list(request.messages),
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "n": request.n,
    }
    if request.seed is not None:
        body["seed"] = request.seed
    if request.top_logprobs is not None:
        body["logprobs"] = True
        body["top_logprobs"] = request.top_logprobs
    if request.json_schema is not None:
        if structured == "vllm":
            body["structured_outputs"] = {
                "json": request.json_schema,
                "disable_any_whitespace": True,
            }
        else:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "output", "schema": request.json_schema},
            }
    return body


class VLLMServerBackend:
    """Chat completions against a vLLM server (or any OpenAI-compatible one)."""

    name = "vllm-server"

    def __init__(
        self,
        model: str | None = None,
        base_url: str = "http://127.0.0.1:8000/v1",
        concurrency: int = 64,
        max_retries: int = 5,
        timeout_s: float = 600.0,
        api_key: str | None = None,
        structured: str = "vllm",
        **_: Any,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model or ""
        self.concurrency = max(1, concurrency)
        self.max_retries = max_retries
        self.structured = structured
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout_s, connect=10.0),
            limits=httpx.Limits(
                max_connections=self.concurrency, max_keepalive_connections=self.concurrency
            ),
        )
        self._semaphore: asyncio.Semaphore | None = None
        self._checked = False

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "model": self.model, "base_url": self.base_url}

    async def check(self) -> None:
        """Fail early, with a hint, when the server is unreachable or lacks the model."""
        try:
            response = await self._client.get("/models", timeout=10.0)
            response.raise_for_status()
        except (httpx.HTTPError, OSError) as exc:
            raise BackendError(
                f"cannot reach the vLLM server at {self.base_url} ({type(exc).__name__}: {exc})",
                hint="start one with `python -m vllm.entrypoints.openai.api_server --model MODEL` "
                "or fix --base-url (it ends in /v1)",
            ) from None
        served = [m.get("id", "") for m in response.json().get("data", [])]
        if not self.model and served:
            self.model = served[0]
        elif served and self.model not in served:
            raise BackendError(
                f"the server at {self.base_url} does not serve model '{self.model}'",
                hint=did_you_mean(self.model, served) or f"it serves: {', '.join(served)}",
            )
        self._checked = True

    async def generate(self, requests: Sequence[Request]) -> list[Generation]:
        if not self._checked:
            await self.check()
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self.concurrency)
        return list(await asyncio.gather(*(self._one(r) for r in requests)))

    async def _one(self, request: Request) -> Generation:
        assert self._semaphore is not None
        body = request_body(self.model, request, self.structured)
        last_error = ""
        async with self._semaphore:
            for attempt in range(self.max_retries + 1):
                if attempt:
                    # Exponential backoff with jitter, capped: transient overloads clear quickly.
                    await asyncio.sleep(min(8.0, 0.25 * 2**attempt) * (0.5 + random.random()))
                started = time.perf_counter()
                try:
                    response = await self._client.post("/chat/completions", json=body)
                except (httpx.TransportError, OSError) as exc:
                    last_error = f"{type(exc).__name__}: {exc}"
                    continue
                latency = time.perf_counter() - started
                if response.status_code >= 500 or response.status_code == 429:
                    last_error = f"HTTP {response.status_code}: {response.text[:300]}"
                    continue
                if response.status_code >= 400:
                    message = _error_message(response)
                    kind = (
                        "prompt_too_long"
                        if any(s in message.lower() for s in _TOO_LONG)
                        else "request_rejected"
                    )
                    return Generation.failed(kind, message, latency)
                return _generation(response.json(), latency)
        if last_error.startswith(("ConnectError", "ConnectTimeout", "OSError")):
            raise BackendError(
                f"lost the vLLM server at {self.base_url} after {self.max_retries} retries: "
                f"{last_error}",
                hint="check that the server is running; rerun the same command to resume",
            )
        return Generation.failed("backend_error", f"gave up after retries: {last_error}")

    async def aclose(self) -> None:
        await self._client.aclose()


def _error_message(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return f"HTTP {response.status_code}: {response.text[:500]}"
    error = data.get("error", data) if isinstance(data, dict) else data
    message = error.get("message", error) if isinstance(error, dict) else error
    return f"HTTP {response.status_code}: {message}"


def _generation(data: dict[str, Any], latency: float) -> Generation:
    choices = sorted(data.get("choices", []), key=lambda c: c.get("index", 0))
    usage = data.get("usage") or {}
    return Generation(
        samples=tuple(
            Sample(
                text=(c.get("message") or {}).get("content") or "",
                finish_reason=c.get("finish_reason"),
                logprobs=parse_logprobs(c),
            )
            for c in choices
        ),
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        latency_s=latency,
    )
