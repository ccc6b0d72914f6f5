"""One or several OpenAI-compatible vLLM servers, driven with aiohttp and bounded concurrency.

Structured output is sent as vLLM's own `structured_outputs` request field (vLLM >= 0.11; 0.32
renamed guided decoding to this) with `disable_any_whitespace`, so the constraint does not depend
on how the server was started: without it a weak model pads JSON with whitespace up to max_tokens.

aiohttp, not httpx: with 64 requests in flight httpcore's pool kept requests waiting seconds
before their headers were sent while the server idled (encode/httpcore#822, #1035), at 3-7 ms of
client CPU per request; aiohttp keeps the server busy at ~0.3 ms.

Several servers: every attempt asks the `ServerPool` for a server (the request's affinity key
pins all requests of one item to one server, for its prefix cache; a new key goes to the server
with the fewest in flight). A server that refuses connections, or keeps failing past the retries
while nobody else gets answers from it, is marked down and its requests move to the others; it is
probed again after a back-off. Only when every server is down does the run stop, with a message
naming each server and its last error.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Sequence
from typing import Any

import aiohttp

from critic.backends.base import Generation, Request, Sample, TokenLogprob
from critic.backends.pool import Server, ServerPool
from critic.errors import BackendError, did_you_mean

log = logging.getLogger(__name__)

_TOO_LONG = ("maximum context length", "longer than the maximum", "max_model_len", "too long")
#: Seconds an idle connection is kept. Below uvicorn's (and so vLLM's) 5 s keep-alive, so the
#: client usually drops a connection before the server does; the race left over is retried.
KEEPALIVE_S = 4.0
#: A probe of a down server gets this long to answer a one-token completion.
PROBE_TIMEOUT_S = 30.0
_START_HINT = (
    "start one with `python -m vllm.entrypoints.openai.api_server --model MODEL` "
    "or fix --base-url (it ends in /v1)"
)


def parse_logprobs(choice: dict[str, Any]) -> tuple[TokenLogprob, ...] | None:
    """The per-token logprobs of one OpenAI chat choice, or None when not returned."""
    content = (choice.get("logprobs") or {}).get("content")
    if not content:
        return None
    # Per token of every answer: positional arguments, no float() of what JSON gave as floats.
    # The alternatives become a map only where something reads them (the label's tokens).
    return tuple(
        [
            TokenLogprob(entry["token"], entry["logprob"],
                         alternatives=entry.get("top_logprobs") or ())
            for entry in content
        ]
    )  # fmt: skip


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


# One encoder for all: json.dumps with options builds a new JSONEncoder per call.
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def encode_body(body: dict[str, Any]) -> bytes:
    """The bytes on the wire for a request body (the benchmark's raw client sends the same)."""
    return _dumps(body).encode()


def split_urls(base_url: str | Sequence[str]) -> list[str]:
    """Server base URLs from one string (comma-separated) or a list of them, in order."""
    parts = [base_url] if isinstance(base_url, str) else list(base_url)
    urls = [u.strip().rstrip("/") for p in parts for u in p.split(",") if u.strip()]
    if not urls:
        raise BackendError("no vLLM server URL given", hint="pass --base-url URL (ends in /v1)")
    return list(dict.fromkeys(urls))


def backoff_s(attempt: int) -> float:
    """Exponential back-off with jitter before retry `attempt` (1, 2, ...), capped at ~8 s."""
    return float(min(8.0, 0.25 * 2**attempt) * (0.5 + random.random()))


class _Retry(Exception):
    """An attempt that may succeed when sent again: `kind` says what went wrong."""

    def __init__(self, kind: str, error: str) -> None:
        super().__init__(error)
        self.kind = kind  # refused | disconnected | transient | throttled
        self.error = error


class VLLMServerBackend:
    """Chat completions against one or several vLLM servers (or any OpenAI-compatible ones).

    `base_url` is one URL, a comma-separated list, or a sequence of URLs. `concurrency` is the
    number of requests in flight per server (each server's session has that many connections).
    """

    name = "vllm-server"

    def __init__(
        self,
        model: str | None = None,
        base_url: str | Sequence[str] = "http://127.0.0.1:8000/v1",
        concurrency: int = 64,
        max_retries: int = 5,
        timeout_s: float = 600.0,
        api_key: str | None = None,
        structured: str = "vllm",
        connect_timeout_s: float = 10.0,
        **_: Any,
    ) -> None:
        self.base_urls = split_urls(base_url)
        self.base_url = self.base_urls[0]
        self.model = model or ""
        self.concurrency = max(1, concurrency)
        self.max_retries = max_retries
        self.structured = structured
        self.pool = ServerPool(self.base_urls)
        self._headers = {"Content-Type": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=connect_timeout_s)
        self._sessions: list[aiohttp.ClientSession] = []
        self._slots: list[asyncio.Semaphore] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._probes: set[asyncio.Task[None]] = set()
        self._revive_lock: asyncio.Lock | None = None
        self._stopped: str | None = None
        self._checked = False

    @property
    def capacity(self) -> int:
        """Requests the servers take at once: what the engine should keep in flight."""
        return self.concurrency * len(self.base_urls)

    def describe(self) -> dict[str, Any]:
        url: str | list[str] = self.base_url if len(self.base_urls) == 1 else self.base_urls
        return {"backend": self.name, "model": self.model, "base_url": url}

    def stats(self) -> dict[str, Any]:
        """HTTP requests sent by this backend (retries included), in all and per server."""
        servers = self.pool.summary()
        return {"requests_sent": sum(s["requests"] for s in servers), "servers": servers}

    # -- sessions -------------------------------------------------------------------------

    def _open(self) -> None:
        """One session per server in the running loop (a new loop, e.g. a new asyncio.run,
        gets new sessions: a session is bound to the loop that made it)."""
        loop = asyncio.get_running_loop()
        if self._sessions and self._loop is loop:
            return
        self._sessions = [
            aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    limit=self.concurrency, limit_per_host=0, keepalive_timeout=KEEPALIVE_S
                ),
                headers=self._headers,
                timeout=self._timeout,
                raise_for_status=False,
                auto_decompress=True,
            )
            for _ in self.base_urls
        ]
        self._slots = [asyncio.Semaphore(self.concurrency) for _ in self.base_urls]
        self._revive_lock = asyncio.Lock()
        self._probes = set()
        self._loop = loop

    async def aclose(self) -> None:
        for task in list(self._probes):
            task.cancel()
        sessions, self._sessions = self._sessions, []
        for session in sessions:
            await session.close()
        self._loop = None

    # -- check ----------------------------------------------------------------------------

    async def _served(self, index: int, timeout_s: float = 10.0) -> list[str]:
        """The model names one server serves; raises aiohttp/OS errors or ValueError."""
        url = f"{self.base_urls[index]}/models"
        timeout = aiohttp.ClientTimeout(total=timeout_s)
        async with self._sessions[index].get(url, timeout=timeout) as response:
            if response.status != 200:
                raise ValueError(f"GET /models answered HTTP {response.status}")
            data = json.loads(await response.read())
        return [str(m.get("id", "")) for m in data.get("data", [])]

    async def check(self) -> None:
        """Fail early, naming each server that is unreachable or does not serve the model."""
        self._open()
        answers = await asyncio.gather(
            *(self._served(i) for i in range(len(self.base_urls))), return_exceptions=True
        )
        served = {u: a for u, a in zip(self.base_urls, answers, strict=True) if isinstance(a, list)}
        if not self.model:
            self.model = next((names[0] for names in served.values() if names), "")
        unreachable = [
            f"cannot reach the vLLM server at {url} ({_describe(answer)})"
            for url, answer in zip(self.base_urls, answers, strict=True)
            if isinstance(answer, BaseException)
        ]
        wrong = [
            f"the server at {url} does not serve model '{self.model}' "
            f"(it serves: {', '.join(names)})"
            for url, names in served.items()
            if names and self.model not in names
        ]
        problems = unreachable + wrong
        if not problems:
            self._checked = True
            return
        hint = _START_HINT
        if wrong:
            names = sorted({n for ns in served.values() for n in ns})
            hint = did_you_mean(self.model, names) or (
                "give every --base-url a server of the same --model"
                if len(self.base_urls) > 1
                else f"pass --model with one of: {', '.join(names)}"
            )
        if len(self.base_urls) == 1:
            raise BackendError(problems[0], hint=hint)
        raise BackendError(
            f"{len(problems)} of {len(self.base_urls)} vLLM servers cannot be used: "
            + "; ".join(problems),
            hint=hint,
        )

    # -- generate -------------------------------------------------------------------------

    async def generate(self, requests: Sequence[Request]) -> list[Generation]:
        if not self._checked:
            await self.check()
        self._open()
        if len(requests) == 1:  # what the tasks send: no gather, no extra task per request
            return [await self._one(requests[0])]
        return list(await asyncio.gather(*(self._one(r) for r in requests)))

    async def _one(self, request: Request) -> Generation:
        payload = encode_body(request_body(self.model, request, self.structured))
        attempts = 0  # failed attempts on the current server
        first_failure = 0.0
        stale = 0  # connections found closed by the server, resent at once
        while True:
            if self._stopped is not None:
                raise BackendError(self._stopped, hint=_RESUME_HINT)
            self._probe_due()
            server = self.pool.pick(request.affinity)
            if server is None:
                await self._revive()
                continue
            try:
                async with self._slots[server.index]:
                    return await self._post(server, payload)
            except _Retry as retry:
                failure = retry
            finally:
                self.pool.release(server)
            now = time.monotonic()
            self.pool.failed(server, failure.error)
            if failure.kind == "refused":  # nothing listens there: move on at once
                self._down(server, failure.error)
                attempts = 0
                continue
            if failure.kind == "disconnected" and stale < self.concurrency:
                # Most likely an idle keep-alive connection the server closed as the request went
                # out; at most `concurrency` of them can be pooled, so this ends on a fresh one.
                stale += 1
                continue
            attempts += 1
            if attempts == 1:
                first_failure = now
            if attempts > self.max_retries:
                if failure.kind == "throttled" or server.last_success > first_failure:
                    # The server answers others: this request is the problem, not the server.
                    return Generation.failed(
                        "backend_error",
                        f"gave up after {self.max_retries} retries on {server.url}: "
                        f"{failure.error}",
                    )
                self._down(server, failure.error)
                attempts = 0
                continue
            await asyncio.sleep(backoff_s(attempts))

    async def _post(self, server: Server, payload: bytes) -> Generation:
        session = self._sessions[server.index]
        self.pool.sent(server)
        started = time.perf_counter()
        try:
            async with session.post(f"{server.url}/chat/completions", data=payload) as response:
                status = response.status
                raw = await response.read()
        except aiohttp.ClientConnectorError as exc:
            raise _Retry("refused", _describe(exc)) from None
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
            raise _Retry("disconnected", _describe(exc)) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise _Retry("transient", _describe(exc)) from None
        latency = time.perf_counter() - started
        now = time.monotonic()
        if status == 429 or status >= 500:
            self.pool.answered(server, now, ok=False)
            kind = "throttled" if status == 429 else "transient"
            raise _Retry(kind, f"HTTP {status}: {raw[:300].decode(errors='replace')}")
        self.pool.answered(server, now, ok=True)
        if status >= 400:
            message = _error_message(status, raw)
            kind = (
                "prompt_too_long"
                if any(s in message.lower() for s in _TOO_LONG)
                else "request_rejected"
            )
            return Generation.failed(kind, message, latency)
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise _Retry(
                "transient", f"HTTP {status} with a body that is not JSON: {exc}"
            ) from None
        return _generation(data, latency)

    # -- down servers ---------------------------------------------------------------------

    def _down(self, server: Server, error: str) -> None:
        if server.up:
            others = len(self.pool.up()) - 1
            log.warning(
                "vLLM server %s is down (%s); %s",
                server.url,
                error,
                f"its requests go to the {others} other(s)" if others else "no server is left",
            )
        self.pool.mark_down(server, error, time.monotonic())

    def _probe_due(self) -> None:
        """Probe, in the background, down servers whose back-off is over."""
        for server in self.pool.due_probes(time.monotonic()):
            task = asyncio.get_running_loop().create_task(self._probe(server))
            self._probes.add(task)
            task.add_done_callback(self._probes.discard)

    async def _probe(self, server: Server) -> None:
        """A one-token chat completion: a server whose API answers while its engine is dead
        (vLLM then says 500 to every completion, 200 to /models) must stay down."""
        body = {"model": self.model, "messages": [{"role": "user", "content": "ping"}]}
        payload = encode_body({**body, "max_tokens": 1, "temperature": 0.0})
        timeout = aiohttp.ClientTimeout(total=PROBE_TIMEOUT_S)
        session = self._sessions[server.index]
        error = ""
        try:
            url = f"{server.url}/chat/completions"
            async with session.post(url, data=payload, timeout=timeout) as response:
                raw = await response.read()
                if response.status != 200:
                    error = f"probe: {_error_message(response.status, raw)[:300]}"
        except (aiohttp.ClientError, OSError) as exc:
            error = f"probe: {_describe(exc)}"
        except BaseException:
            self.pool.probed(server, False, time.monotonic())  # cancelled: release the claim
            raise
        if error:
            self.pool.probed(server, False, time.monotonic(), error)
        else:
            log.warning("vLLM server %s is back", server.url)
            self.pool.probed(server, True, time.monotonic())

    async def _revive(self) -> None:
        """No server is up: probe each once more (one caller probes, the others wait for it);
        when none answers, stop the run with every server's last error."""
        assert self._revive_lock is not None
        async with self._revive_lock:
            if self._stopped is not None or self.pool.up():
                return
            wait = self.pool.next_probe_in(time.monotonic()) or 0.0
            await asyncio.sleep(wait)
            running = [t for t in self._probes if not t.done()]
            if running:  # a background probe may be under way already
                await asyncio.gather(*running, return_exceptions=True)
            await asyncio.gather(*(self._probe(s) for s in self.pool.due_probes(time.monotonic())))
            if not self.pool.up():
                many = len(self.base_urls) > 1
                self._stopped = (
                    f"{'every' if many else 'the'} vLLM server is down: {self.pool.down_report()}"
                )
                raise BackendError(self._stopped, hint=_RESUME_HINT)


_RESUME_HINT = "check that the servers are running; rerun the same command to resume"


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _error_message(status: int, raw: bytes) -> str:
    try:
        data = json.loads(raw)
    except ValueError:
        return f"HTTP {status}: {raw[:500].decode(errors='replace')}"
    error = data.get("error", data) if isinstance(data, dict) else data
    message = error.get("message", error) if isinstance(error, dict) else error
    return f"HTTP {status}: {message}"


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
