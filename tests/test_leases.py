"""Leases on a run's items (critic.leases, Store.claim ...), on SQLite and a real PostgreSQL."""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time

import pytest

from critic import leases as ls
from critic.constitution import load_constitution
from critic.items import Fields, Item
from critic.store import Outcome, RunInfo, Store, now, open_store

HARM = load_constitution("harmlessness")


def a_run(store: Store, n: int = 10) -> str:
    digest = store.save_constitution(HARM)
    run, _ = store.ensure_run(
        RunInfo(id="r1", key="k1", task="label", constitution_hash=digest, template_hash="t",
                backend="fake", model="m", params={}, input="x", created_at=now())
    )  # fmt: skip
    store.add_items(
        run.id,
        [{"item_id": f"i{k}", "source": f"x:{k + 1}", "row": {"prompt": f"p{k}",
          "response": f"r{k}"}, "seq": k} for k in range(n)],
    )  # fmt: skip
    return run.id


def ids(n: int, start: int = 0) -> list[str]:
    return [f"i{k}" for k in range(start, start + n)]


def test_a_claimed_item_is_nobody_elses_until_recorded(store_url: str) -> None:
    store = open_store(store_url)
    run = a_run(store)
    assert store.claim(run, "a", ids(5), 30) == set(ids(5))
    assert store.claim(run, "b", ids(10), 30) == set(ids(5, 5))
    assert store.lease_holders(run) == {"a": 5, "b": 5}
    assert store.record(run, [Outcome("i0", "drafted", draft={}), Outcome("i1", "failed")]) == 2
    # Recorded: the lease ends and nobody may lease or record the item again.
    assert store.lease_holders(run) == {"a": 3, "b": 5}
    assert store.claim(run, "c", ids(10), 30) == set()
    assert store.record(run, [Outcome("i0", "drafted", draft={})]) == 0
    assert store.renew(run, "a", ids(5), 30) == set(ids(3, 2))


def test_a_lease_lapses_unless_renewed(store_url: str) -> None:
    store = open_store(store_url)
    run = a_run(store)
    assert store.claim(run, "a", ids(2), 0.3) == set(ids(2))
    assert store.claim(run, "a", ids(2, 2), 0.3) == set(ids(2, 2))
    assert store.renew(run, "a", ids(2, 2), 60) == set(ids(2, 2))
    time.sleep(0.5)
    assert store.lease_holders(run) == {"a": 2}  # the lapsed ones are not live
    assert store.claim(run, "b", ids(4), 30) == set(ids(2))
    # The owner that lost them cannot renew or release them any more.
    assert store.renew(run, "a", ids(4), 30) == set(ids(2, 2))
    assert store.release(run, "a", ids(2)) == 0


def test_the_lapsed_are_taken_over_in_input_order_and_the_never_leased_are_not(
    store_url: str,
) -> None:
    store = open_store(store_url)
    run = a_run(store)
    store.claim(run, "a", ids(3, 4), 0.2)
    store.claim(run, "b", ids(2, 2), 60)
    assert store.release(run, "b", ["i3"]) == 1
    time.sleep(0.4)
    taken = store.claim_lapsed(run, "c", 30, limit=10)
    assert [r["item_id"] for r in taken] == ["i3", "i4", "i5", "i6"]
    assert taken[0] == {"item_id": "i3", "source": "x:4", "row": {"prompt": "p3", "response": "r3"}}
    # Held live by b: left alone unless b is known dead.
    assert store.claim_lapsed(run, "c", 30, limit=10) == []
    assert [
        r["item_id"] for r in store.claim_lapsed(run, "c", 30, limit=10, dead_owners=["b"])
    ] == ["i2"]
    store.release(run, "c", ids(7))
    assert [r["item_id"] for r in store.claim_lapsed(run, "d", 30, limit=2)] == ["i2", "i3"]
    assert [r["item_id"] for r in store.claim_lapsed(run, "d", 30, limit=9, below_seq=5)] == ["i4"]


def test_concurrent_claims_never_lease_one_item_twice(store_url: str) -> None:
    store = open_store(store_url)
    run = a_run(store, 400)
    got: dict[str, list[str]] = {}

    def worker(owner: str) -> None:
        mine: list[str] = []
        for start in range(0, 400, 8):
            mine += store.claim(run, owner, ids(8, start), 30)
        got[owner] = mine

    threads = [threading.Thread(target=worker, args=(f"w{k}",)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [i for mine in got.values() for i in mine]
    assert sorted(every) == sorted(ids(400))  # each item leased once, by one of them


def test_owners_of_ended_processes_on_this_host_are_dead() -> None:
    ended = subprocess.Popen(["true"])
    ended.wait()
    gone = f"{ls.HOST}:{ended.pid}:abcd"
    zombie = subprocess.Popen(["true"])  # ended, not yet reaped (poll() would reap it)
    deadline = time.monotonic() + 10
    while not _is_zombie(zombie.pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    me = ls.new_owner()
    elsewhere = f"another-host:{ended.pid}:abcd"
    try:
        assert me.startswith(f"{ls.HOST}:") and me != ls.new_owner()
        assert ls.dead_here([me, gone, elsewhere, "garbage"]) == [gone]
        assert ls.dead_here([f"{ls.HOST}:{zombie.pid}:x"]) == [f"{ls.HOST}:{zombie.pid}:x"]
    finally:
        zombie.wait()


def _is_zombie(pid: int) -> bool:
    with open(f"/proc/{pid}/stat", "rb") as stat:
        return stat.read().rsplit(b")", 1)[1].split()[0] == b"Z"


def test_a_process_done_with_its_input_waits_for_live_leases_and_takes_over_lapsed_ones(
    store_url: str,
) -> None:
    store = open_store(store_url)
    run = a_run(store, 6)
    store.claim(run, "other", ids(3), 0.6)  # lapses soon
    store.claim(run, "busy", ids(3, 3), 60)  # finishes its items below
    mine = ls.Leases(store, run, batch=2, ttl_s=30)

    async def take() -> list[str]:
        got = []
        async for item in mine.lapsed(Fields()):
            got.append(item.id)
            if item.id == "i2":  # once the lapsed ones are ours, the busy one records its own
                store.record(run, [Outcome(i, "drafted", draft={}) for i in ids(3, 3)])
        return got

    started = time.monotonic()
    assert asyncio.run(take()) == ["i0", "i1", "i2"]
    assert time.monotonic() - started >= 0.5  # it waited for the lease to lapse
    assert store.lease_holders(run) == {mine.owner: 3} and mine.held == set(ids(3))


@pytest.mark.parametrize("interrupted", [False, True])
def test_leases_are_renewed_while_kept_and_released_after(
    store_url: str, interrupted: bool
) -> None:
    store = open_store(store_url)
    run = a_run(store, 4)
    mine = ls.Leases(store, run, batch=4, ttl_s=0.4, renew_s=0.1)

    async def hold() -> None:
        async with mine.kept():
            assert [i.id for i in mine.take(_items(store, run), [])] == ids(4)
            store.record(run, [Outcome("i0", "drafted", draft={})])
            await asyncio.sleep(0.8)  # twice the TTL: only renewals keep the leases
            assert store.claim(run, "b", ids(4), 30) == set()
            assert mine.held == set(ids(3, 1))
            if interrupted:
                raise KeyboardInterrupt

    if interrupted:
        with pytest.raises(KeyboardInterrupt):
            asyncio.run(hold())
    else:
        asyncio.run(hold())
    assert store.lease_holders(run) == {}
    assert [r["item_id"] for r in store.claim_lapsed(run, "b", 30, limit=9)] == ids(3, 1)


def _items(store: Store, run: str) -> list[Item]:
    rows = store.rows(run)
    return [Item(r["item_id"], r["row"], r["source"]) for r in rows if r["status"] == "pending"]


def test_new_items_are_leased_by_the_process_that_inserts_them(store_url: str) -> None:
    store = open_store(store_url)
    run = a_run(store, 2)
    chunk = [Item(f"i{k}", {"prompt": "p", "response": "r"}, f"x:{k + 1}") for k in range(4)]
    records = [{"item_id": i.id, "source": i.source, "row": dict(i.row), "seq": k}
               for k, i in enumerate(chunk)]  # fmt: skip
    bad = {"item_id": "bad", "source": "x:9", "row": None, "seq": 9, "status": "failed",
           "reason": "invalid_input", "detail": "broken"}  # fmt: skip
    first, second = ls.Leases(store, run), ls.Leases(store, run)
    # i0 and i1 were stored before (pending, never leased): claimed; i2 and i3 inserted leased.
    assert [i.id for i in first.take(chunk, [*records[2:], bad])] == ids(4)
    assert second.take(chunk, records) == []  # inserted by the first one, which holds them
    assert store.lease_holders(run) == {first.owner: 4} and first.held == set(ids(4))
