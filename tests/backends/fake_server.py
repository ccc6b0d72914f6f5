"""A local OpenAI-style server (aiohttp) that misbehaves on cue, for the vllm-server backend tests.

It speaks the two endpoints the backend uses (`GET /v1/models`, `POST /v1/chat/completions`)
and answers chat requests by a script: drop the connection, 429, 500/503, a 400 verdict, or a
good answer (`answer`, the content of every choice).
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from aiohttp import web

ANSWER = '{"label": "harmless"}'


class FakeServer:
    """A local OpenAI-style server. `script` actions are used one per chat request, then
    `default`; `rule(body)` may return an action that overrides both."""

    def __init__(
        self,
        model: str = "tiny",
        script: tuple[str, ...] = (),
        default: str = "ok",
        rule: Callable[[dict[str, Any]], str | None] | None = None,
        drop_reused: bool = False,
        delay_s: float = 0.0,
        keepalive_s: float = 75.0,
        answer: str = ANSWER,
    ) -> None:
        self.model = model
        self.answer = answer
        self.script = deque(script)
        self.default = default
        self.rule = rule
        self.drop_reused = drop_reused
        self.delay_s = delay_s
        self.keepalive_s = keepalive_s
        self.bodies: list[dict[str, Any]] = []
        self.actions: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._per_connection: Counter[int] = Counter()
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self) -> FakeServer:
        app = web.Application()
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._chat)
        self._runner = web.AppRunner(app, keepalive_timeout=self.keepalive_s, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        if not self.port:
            server = site._server
            assert server is not None
            self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"data": [{"id": self.model}]})

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        transport = request.transport
        assert transport is not None
        self._per_connection[id(transport)] += 1
        reused = self._per_connection[id(transport)] > 1
        action = (self.rule(body) if self.rule else None) or (
            self.script.popleft() if self.script else self.default
        )
        if self.drop_reused and reused:
            action = "drop"
        self.bodies.append(body)
        self.actions.append(action)
        if action == "drop":
            transport.close()
            return web.Response()
        if action in ("500", "503", "429"):
            return web.Response(status=int(action), text=f"scripted {action}")
        if action == "too_long":
            message = "This model's maximum context length is 4096 tokens."
            return web.json_response({"error": {"message": message}}, status=400)
        if action == "bad":
            message = "n must be 1 when using greedy sampling"
            return web.json_response({"error": {"message": message}}, status=400)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay_s)
        finally:
            self.in_flight -= 1
        return web.json_response(_completion(body, self.answer))


def _completion(body: dict[str, Any], answer: str) -> dict[str, Any]:
    top = body.get("top_logprobs")
    logprobs = (
        {"content": [{"token": "harm", "logprob": -0.1, "top_logprobs": [
            {"token": "harm", "logprob": -0.1}, {"token": "safe", "logprob": -2.3}][:top]}]}
        if body.get("logprobs") else None
    )  # fmt: skip
    return {
        "choices": [
            {"index": i, "message": {"content": answer}, "finish_reason": "stop",
             "logprobs": logprobs}
            for i in reversed(range(body.get("n", 1)))
        ],
        "usage": {"prompt_tokens": 11, "completion_tokens": 5},
    }  # fmt: skip


@contextmanager
def servers_in_thread(*servers: FakeServer) -> Iterator[tuple[FakeServer, ...]]:
    """Run fake servers on an event loop in a thread, for code that runs its own loop (the CLI)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        for server in servers:
            asyncio.run_coroutine_threadsafe(server.start(), loop).result(10)
        yield servers
    finally:
        for server in servers:
            asyncio.run_coroutine_threadsafe(server.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
