"""The server balancer: least loaded first, one server per item, down servers and probes."""

from __future__ import annotations

import pytest

from critic.backends import pool as pool_module
from critic.backends.pool import ServerPool

URLS = ["http://a/v1", "http://b/v1", "http://c/v1"]


def test_an_idle_pool_fills_evenly_then_the_least_loaded_server_gets_the_next_request() -> None:
    pool = ServerPool(URLS)
    first = [pool.pick() for _ in range(6)]
    assert [s.url for s in first if s] == URLS * 2
    assert [s.in_flight for s in pool.servers] == [2, 2, 2]
    pool.release(pool.servers[1])
    pool.release(pool.servers[1])
    nxt = pool.pick()
    assert nxt is not None and nxt.url == "http://b/v1"


def test_every_request_of_one_item_goes_to_the_same_server() -> None:
    pool = ServerPool(URLS)
    home = {key: pool.pick(key) for key in ("i1", "i2", "i3")}
    assert len({s.url for s in home.values() if s}) == 3
    # Load b heavily: a key already placed there stays, a new key avoids it.
    for _ in range(10):
        pool.servers[1].in_flight += 1
    for key, server in home.items():
        for _ in range(3):
            again = pool.pick(key)
            assert again is server
    new = pool.pick("i4")
    assert new is not None and new.url != "http://b/v1"


def test_a_down_server_gets_nothing_and_its_items_move_to_the_others() -> None:
    pool = ServerPool(URLS[:2])
    a = pool.pick("item")
    assert a is not None and a.url == URLS[0]
    pool.release(a)
    pool.mark_down(a, "ClientConnectorError: refused", now=100.0)
    assert [s.url for s in pool.up()] == [URLS[1]]
    for key in ("item", "other", None):
        chosen = pool.pick(key)
        assert chosen is not None and chosen.url == URLS[1]
    # The item stays on its new server after the old one is back.
    pool.probed(a, True, now=103.0)
    chosen = pool.pick("item")
    assert chosen is not None and chosen.url == URLS[1]
    assert pool.servers[0].downs == 1


def test_all_down_pick_is_none_and_the_report_names_each_server_and_its_error() -> None:
    pool = ServerPool(URLS[:2])
    pool.mark_down(pool.servers[0], "HTTP 503: overloaded", now=0.0)
    pool.mark_down(pool.servers[1], "ClientConnectorError: refused", now=0.0)
    assert pool.pick("x") is None and pool.pick() is None
    report = pool.down_report()
    assert "http://a/v1: HTTP 503: overloaded" in report
    assert "http://b/v1: ClientConnectorError: refused" in report


def test_down_servers_are_probed_after_a_back_off_that_doubles(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pool_module, "PROBE_AFTER_S", 2.0)
    monkeypatch.setattr(pool_module, "PROBE_AFTER_MAX_S", 5.0)
    pool = ServerPool(URLS[:2])
    server = pool.servers[0]
    pool.mark_down(server, "refused", now=10.0)
    assert pool.due_probes(11.9) == []
    assert pool.next_probe_in(11.0) == pytest.approx(1.0)
    assert pool.due_probes(12.0) == [server]
    assert pool.due_probes(12.0) == []  # claimed: one probe at a time
    pool.probed(server, False, now=12.5, error="still refused")
    assert server.last_error == "still refused" and not server.up
    assert pool.due_probes(16.4) == [] and pool.due_probes(16.5) == [server]  # 4 s
    pool.probed(server, False, now=16.5)
    assert pool.due_probes(21.4) == [] and pool.due_probes(21.5) == [server]  # capped at 5 s
    pool.probed(server, True, now=21.6)
    assert server.up and pool.next_probe_in(22.0) is None


def test_affinity_memory_is_bounded() -> None:
    pool = ServerPool(URLS, affinity_capacity=4)
    for i in range(100):
        server = pool.pick(f"item-{i}")
        assert server is not None
        pool.release(server)
    assert len(pool._affinity) == 4
    assert all(s.in_flight == 0 for s in pool.servers)


def test_counts_per_server_for_the_summary() -> None:
    pool = ServerPool(URLS[:2])
    a, b = pool.servers
    for server, ok in ((a, True), (a, False), (b, True)):
        pool.sent(server)
        pool.answered(server, now=1.0, ok=ok)
    pool.sent(b)
    pool.failed(b, "ServerDisconnectedError")
    summary = pool.summary()
    assert [s["requests"] for s in summary] == [2, 2]
    assert [s["answered"] for s in summary] == [2, 1]
    assert summary[1]["failures"] == 1 and summary[1]["last_error"] == "ServerDisconnectedError"


def test_a_pool_needs_distinct_servers() -> None:
    with pytest.raises(ValueError, match="at least one"):
        ServerPool([])
    with pytest.raises(ValueError, match="twice"):
        ServerPool(["http://a/v1", "http://a/v1"])
