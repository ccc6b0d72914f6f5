"""A scripted backend for tests, shipped so users can test their own pipelines too.

By default it answers every request with JSON that follows the request's schema, choosing enum
values deterministically from a hash of the prompt. A script can override any answer.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
from collections.abc import Callable, Sequence
from typing import Any

from critic.backends.base import Generation, Request, Sample, TokenLogprob

#: How many recent requests a `FakeBackend` keeps in `requests`.
KEEP_REQUESTS = 10_000

Script = Callable[[Request], "str | list[str] | Generation"]


def _pick(options: Sequence[Any], key: str) -> Any:
    digest = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16)
    return options[digest % len(options)]


def fill_schema(schema: dict[str, Any], key: str, root: dict[str, Any] | None = None) -> Any:
    """A value that validates against a (pydantic-made) JSON schema, chosen from `key`."""
    root = root or schema
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        return fill_schema(root.get("$defs", {})[name], key, root)
    if "enum" in schema:
        return _pick(schema["enum"], key)
    if "const" in schema:
        return schema["const"]
    for union in ("anyOf", "oneOf"):
        if union in schema:
            return fill_schema(schema[union][0], key, root)
    kind = schema.get("type")
    if kind == "object":
        return {
            name: fill_schema(sub, f"{key}/{name}", root)
            for name, sub in schema.get("properties", {}).items()
        }
    if kind == "array":
        count = schema.get("minItems", 1 if schema.get("items") else 0)
        return [fill_schema(schema["items"], f"{key}/{i}", root) for i in range(count)]
    if kind == "string":
        text = "fake " + hashlib.sha256(key.encode()).hexdigest()[:12]
        return text[: schema.get("maxLength", len(text))].ljust(schema.get("minLength", 0), "x")
    if kind == "integer":
        return int(schema.get("minimum", 0))
    if kind == "number":
        return float(schema.get("minimum", 0.0))
    if kind == "boolean":
        return False
    return None


def _fake_logprobs(text: str, key: str) -> tuple[TokenLogprob, ...]:
    """Whitespace-ish tokens with a fixed 0.8 / 0.2 split at every position."""
    tokens: list[str] = []
    current = ""
    for ch in text:
        current += ch
        if ch in '",:{}[] ':
            tokens.append(current)
            current = ""
    if current:
        tokens.append(current)
    chosen = math.log(0.8)
    other = math.log(0.2)
    return tuple(
        TokenLogprob(tok, chosen, {tok: chosen, f"~{key[:4]}{i}": other})
        for i, tok in enumerate(tokens)
    )


class FakeBackend:
    """Scripted or schema-filling answers, with the same result shape as the real backends."""

    name = "fake"

    def __init__(
        self,
        model: str | None = None,
        script: Script | None = None,
        latency_s: float = 0.0,
        **_: Any,
    ) -> None:
        self.model = model or "fake-model"
        self.script = script
        self.latency_s = latency_s
        #: The requests received, for tests to inspect: the most recent `KEEP_REQUESTS`, so a
        #: long run on the fake backend (a benchmark) does not grow with the dataset.
        self.requests: list[Request] = []

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "model": self.model}

    def _answer(self, request: Request) -> Generation:
        self.requests.append(request)
        if len(self.requests) > 2 * KEEP_REQUESTS:
            del self.requests[:-KEEP_REQUESTS]
        key = request.messages[-1]["content"]
        if self.script is not None:
            scripted = self.script(request)
            if isinstance(scripted, Generation):
                return scripted
            texts = [scripted] if isinstance(scripted, str) else list(scripted)
        else:
            texts = [
                json.dumps(fill_schema(request.json_schema or {"type": "string"}, f"{key}#{i}"))
                for i in range(request.n)
            ]
        samples = tuple(
            Sample(
                text=t,
                finish_reason="stop",
                logprobs=_fake_logprobs(t, key) if request.logprobs else None,
            )
            for t in texts
        )
        prompt_tokens = sum(len(m["content"].split()) for m in request.messages)
        return Generation(
            samples=samples,
            prompt_tokens=prompt_tokens,
            completion_tokens=sum(len(t.split()) for t in texts),
            latency_s=self.latency_s,
        )

    async def generate(self, requests: Sequence[Request]) -> list[Generation]:
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        return [self._answer(r) for r in requests]

    async def check(self) -> None:
        """Scripted outputs: nothing to reach."""

    async def aclose(self) -> None:
        return None
