"""The review header's pending count: counted once, then recounted in the background, so no
request waits for a count of a large queue."""

from __future__ import annotations

import threading

import pytest
from fastapi import FastAPI

from adjudication.web import deps
from adjudication.web.deps import PENDING_TTL, Web

PENDING_SHARE = getattr(deps, "PENDING_SHARE", 20.0)


class Ticker:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _in_thread(call: object, seconds: float = 5.0) -> object:
    """What `call()` returns, failing if it takes longer than `seconds`."""
    box: list[object] = []
    worker = threading.Thread(target=lambda: box.append(call()), daemon=True)  # type: ignore[operator]
    worker.start()
    worker.join(seconds)
    assert box, f"the request waited more than {seconds} s for the recount"
    return box[0]


def test_a_stale_count_is_redone_in_the_background_while_pages_show_the_last(
    app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    web: Web = app.state.web
    ticker = Ticker()
    monkeypatch.setattr(deps.time, "monotonic", ticker)
    first = web.pending("harm")
    assert first == web.store.pending_count("harm") > 0

    counting, release = threading.Event(), threading.Event()

    def slow_count(queue: str) -> int:
        counting.set()
        assert release.wait(30)
        ticker.now += 2.0  # this count took 2 s
        return 12345

    monkeypatch.setattr(web.store, "pending_count", slow_count)
    ticker.now += PENDING_TTL - 0.1
    assert web.pending("harm") == first and not counting.is_set()  # fresh: not recounted
    ticker.now += 0.2
    # Stale: the page shows the last count at once, and the recount runs meanwhile.
    assert _in_thread(lambda: web.pending("harm")) == first
    assert counting.wait(5)
    assert _in_thread(lambda: web.pending("harm")) == first  # one recount at a time
    release.set()
    for _ in range(100):
        if web.pending("harm") == 12345:
            break
        threading.Event().wait(0.05)
    assert web.pending("harm") == 12345

    # That count took 2 s, so the next waits PENDING_SHARE times as long, not PENDING_TTL.
    counting.clear()
    ticker.now += PENDING_SHARE * 2.0 - 1.0
    assert web.pending("harm") == 12345 and not counting.is_set()
    ticker.now += 2.0
    web.pending("harm")
    assert counting.wait(5)
