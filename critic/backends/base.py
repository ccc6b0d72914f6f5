"""The backend interface: a list of requests in, a list of generations out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

Message = dict[str, str]


@dataclass(frozen=True)
class Request:
    """One chat request: messages, the JSON schema output must follow, sampling parameters.

    `affinity` groups the requests of one item (re-asks, rounds, both orders): a backend with
    several servers sends them all to the same one, whose prefix cache then serves them. It
    changes nothing in the output and takes no part in equality.
    """

    messages: tuple[Message, ...]
    json_schema: dict[str, Any] | None = None
    max_tokens: int = 512
    temperature: float = 0.0
    n: int = 1
    top_logprobs: int | None = None
    seed: int | None = None
    affinity: str | None = field(default=None, compare=False)

    @property
    def logprobs(self) -> bool:
        return self.top_logprobs is not None


class TokenLogprob:
    """One generated token, its log probability and the top alternatives at its position.

    `top` maps each alternative token to its logprob. A backend may hand over the server's raw
    alternatives instead (`alternatives`: `[{"token", "logprob"}, ...]`); the map is then built
    on first use, so the positions nobody reads (all but the label's, usually) cost nothing.
    """

    __slots__ = ("_alternatives", "_top", "logprob", "token")

    def __init__(
        self,
        token: str,
        logprob: float,
        top: dict[str, float] | None = None,
        *,
        alternatives: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        self.token = token
        self.logprob = logprob
        self._top = top if top is not None or alternatives is not None else {}
        self._alternatives = alternatives

    @property
    def top(self) -> dict[str, float]:
        if self._top is None:
            self._top = {a["token"]: a["logprob"] for a in self._alternatives or ()}
        return self._top

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TokenLogprob):
            return NotImplemented
        return (self.token, self.logprob, self.top) == (other.token, other.logprob, other.top)

    def __hash__(self) -> int:
        return hash((self.token, self.logprob))

    def __repr__(self) -> str:
        return f"TokenLogprob(token={self.token!r}, logprob={self.logprob!r}, top={self.top!r})"


@dataclass(frozen=True)
class Sample:
    """One of the `n` completions of a request."""

    text: str
    finish_reason: str | None = None
    logprobs: tuple[TokenLogprob, ...] | None = None


@dataclass(frozen=True)
class Generation:
    """What came back for one request. `error` is set for a permanent per-request failure."""

    samples: tuple[Sample, ...]
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    error: str | None = None
    error_kind: str | None = None

    @property
    def text(self) -> str:
        return self.samples[0].text if self.samples else ""

    @classmethod
    def failed(cls, kind: str, message: str, latency_s: float = 0.0) -> Generation:
        return cls(samples=(), latency_s=latency_s, error=message, error_kind=kind)


@runtime_checkable
class Backend(Protocol):
    """Every backend: batch-shaped and async, so one pipeline drives them all.

    Concurrent calls are allowed and expected: the server backend sends them in parallel, the
    in-process backends gather them into batches.
    """

    name: str
    model: str

    async def check(self) -> None:
        """Fail early with a BackendError that says what to fix (an unreachable server, an
        unknown model); do nothing when there is nothing to check."""
        ...

    async def generate(self, requests: Sequence[Request]) -> list[Generation]: ...

    async def aclose(self) -> None: ...

    def describe(self) -> dict[str, Any]: ...


@runtime_checkable
class ServerBacked(Protocol):
    """A backend over one or several servers. A run's concurrency is per server, so the engine
    keeps concurrency x len(base_urls) items in flight; `stats()` counts requests per server."""

    base_urls: list[str]

    def stats(self) -> dict[str, Any]: ...
