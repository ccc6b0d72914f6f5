"""Which server gets a request: the least loaded, the same one for every request of an item.

Pure bookkeeping, no network and no clock of its own (the caller passes `now`), so the balancer
is tested without servers. The `vllm-server` backend asks `pick()` before each attempt, reports
back with `release()`, and marks a server down when it refuses connections or keeps failing;
a down server is offered for a probe after a back-off (`due_probes()`) and comes back with
`mark_up()`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

#: First wait before a down server is probed again; doubles per failed probe up to the cap.
PROBE_AFTER_S = 2.0
PROBE_AFTER_MAX_S = 30.0
#: Affinity keys remembered (least recently used dropped first): memory stays bounded on any
#: dataset, and an item's requests come close together in time, so its key is still there.
AFFINITY_CAPACITY = 65536


@dataclass
class Server:
    """One server's state as the balancer sees it."""

    url: str
    index: int
    in_flight: int = 0
    sent: int = 0  # HTTP requests sent, retries included
    answered: int = 0  # responses received (any status)
    failures: int = 0  # attempts that failed at the connection or with 429/5xx
    up: bool = True
    last_error: str = ""
    last_success: float = float("-inf")
    probe_at: float = 0.0
    probe_wait: float = PROBE_AFTER_S
    probing: bool = False
    downs: int = 0

    def summary(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "requests": self.sent,
            "answered": self.answered,
            "failures": self.failures,
            "up": self.up,
            "times_down": self.downs,
            "last_error": self.last_error or None,
        }


@dataclass
class ServerPool:
    """The servers of one backend and the item -> server affinity."""

    urls: Sequence[str]
    affinity_capacity: int = AFFINITY_CAPACITY
    servers: list[Server] = field(init=False)
    _affinity: OrderedDict[str, int] = field(init=False, default_factory=OrderedDict)
    _next: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        if not self.urls:
            raise ValueError("a server pool needs at least one server")
        if len(set(self.urls)) != len(self.urls):
            raise ValueError(f"a server is listed twice: {', '.join(self.urls)}")
        self.servers = [Server(url, i) for i, url in enumerate(self.urls)]

    def up(self) -> list[Server]:
        return [s for s in self.servers if s.up]

    def pick(self, affinity: str | None = None) -> Server | None:
        """The server for the next attempt of a request, counted in flight; None if all are down.

        A request with an affinity key goes where its key went before while that server is up;
        otherwise (and for a new key) to the up server with the fewest requests in flight, ties
        broken round-robin so that an idle pool fills evenly.
        """
        server: Server | None = None
        if affinity is not None:
            index = self._affinity.get(affinity)
            if index is not None and self.servers[index].up:
                server = self.servers[index]
                self._affinity.move_to_end(affinity)
        if server is None:
            server = self._least_loaded()
            if server is None:
                return None
            if affinity is not None:
                self._affinity[affinity] = server.index
                self._affinity.move_to_end(affinity)
                while len(self._affinity) > self.affinity_capacity:
                    self._affinity.popitem(last=False)
        server.in_flight += 1
        return server

    def _least_loaded(self) -> Server | None:
        n = len(self.servers)
        best: Server | None = None
        for k in range(n):
            candidate = self.servers[(self._next + k) % n]
            if candidate.up and (best is None or candidate.in_flight < best.in_flight):
                best = candidate
        if best is not None:
            self._next = (best.index + 1) % n
        return best

    def release(self, server: Server) -> None:
        """The attempt that `pick()` counted is over (whatever its outcome)."""
        server.in_flight -= 1

    def sent(self, server: Server) -> None:
        server.sent += 1

    def answered(self, server: Server, now: float, ok: bool) -> None:
        """A response came back; `ok` means the server did its job (2xx or a 4xx verdict)."""
        server.answered += 1
        if ok:
            server.last_success = now

    def failed(self, server: Server, error: str) -> None:
        server.failures += 1
        server.last_error = error

    def mark_down(self, server: Server, error: str, now: float) -> None:
        """Take a server out of rotation; it is offered for a probe after a back-off."""
        server.last_error = error
        if not server.up:
            return
        server.up = False
        server.downs += 1
        server.probe_wait = PROBE_AFTER_S
        server.probe_at = now + server.probe_wait

    def due_probes(self, now: float) -> list[Server]:
        """Down servers whose back-off is over and that nobody is probing; claimed for a probe."""
        due = [s for s in self.servers if not s.up and not s.probing and s.probe_at <= now]
        for server in due:
            server.probing = True
        return due

    def probed(self, server: Server, ok: bool, now: float, error: str = "") -> None:
        """The outcome of a probe claimed from `due_probes()`."""
        server.probing = False
        if ok:
            server.up = True
            server.last_success = now
            return
        if error:
            server.last_error = error
        server.probe_wait = min(PROBE_AFTER_MAX_S, server.probe_wait * 2)
        server.probe_at = now + server.probe_wait

    def next_probe_in(self, now: float) -> float | None:
        """Seconds until the next down server may be probed (None when none is down)."""
        waits = [max(0.0, s.probe_at - now) for s in self.servers if not s.up]
        return min(waits) if waits else None

    def down_report(self) -> str:
        """Each server and its last error, for the message that stops a run."""
        return "; ".join(f"{s.url}: {s.last_error or 'no answer'}" for s in self.servers)

    def summary(self) -> list[dict[str, Any]]:
        return [s.summary() for s in self.servers]
