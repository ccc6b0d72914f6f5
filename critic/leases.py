"""Several processes on one run: each leases the pending items it drafts, for a short time.

Processes (on one machine or many) that run the same command on one store share its run. Each
one reads the input and registers it a chunk (`runs.CHUNK_ROWS`) at a time, leasing the chunk's
pending items before drafting them: the new ones as it inserts them (only one process inserts
each), the stored ones through `Store.claim`, which takes only items that are pending and not
leased by a live process, with `FOR UPDATE SKIP LOCKED` on PostgreSQL. So no two processes
draft one item, and a process that runs alone pays no statement more than before. A lease lasts
`TTL_S` seconds on the database's clock and is renewed every `RENEW_S` seconds while the item
is in flight; recording the outcome ends it. Once its input is exhausted, a process takes over
items whose lease lapsed (their rows come from the store) and waits while other live processes
still hold leases, so the work of a process that died is redone by the others, at most
`TTL_S` after it died. A lease names its owner `host:pid:nonce`; a process on the same host
(and pid namespace) whose pid is gone is dead at once, so a rerun right after a SIGKILL does
not wait for its own old leases. Recording is idempotent besides (`Store.record` writes only
items still pending), so even a process that lost its lease while stalled duplicates nothing.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

from critic.items import Fields, Item
from critic.store import Store

#: How long a lease lasts without renewal: how long the others wait for the items of a process
#: that died on another machine (one on this machine is seen dead at once).
TTL_S = 30.0
#: How often a process renews the leases of its items in flight (a third of the TTL, so that a
#: slow database or a busy event loop can miss one renewal without losing the items).
RENEW_S = 10.0
#: How often a process whose input is done looks again for lapsed leases while others work.
POLL_S = 1.0


def this_host() -> str:
    """This machine, and its pid namespace where there is one (containers share host names)."""
    name = socket.gethostname() or "localhost"
    with suppress(OSError):
        return f"{name}/{os.readlink('/proc/self/ns/pid').strip('pid:[]')}"
    return name


#: The host part of this process's lease owners (tests set another to play other machines).
HOST = this_host()


def new_owner() -> str:
    """A lease owner name for this process: `host:pid:nonce` (the nonce tells apart two runs of
    one process, and a pid used again)."""
    return f"{HOST}:{os.getpid()}:{secrets.token_hex(4)}"


def alive(pid: int) -> bool:
    """Whether process `pid` of this pid namespace runs (a zombie, killed but not yet reaped by
    its parent, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            state = stat.read().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in (b"Z", b"X")


def dead_here(owners: Sequence[str]) -> list[str]:
    """Those of `owners` that were processes on this host that have ended."""
    dead = []
    for owner in owners:
        host, pid, _nonce = [*owner.rsplit(":", 2), "", ""][:3]
        if host == HOST and pid.isdigit() and not alive(int(pid)):
            dead.append(owner)
    return dead


@dataclass
class Leases:
    """This process's leases on one run's items.

    Args:
        batch: lapsed items taken over at a time (about what the engine keeps in flight).
    """

    store: Store
    run_id: str
    batch: int = 64
    owner: str = field(default_factory=new_owner)
    ttl_s: float = field(default_factory=lambda: TTL_S)
    renew_s: float = field(default_factory=lambda: RENEW_S)
    #: Items leased and maybe not yet recorded (pruned at each renewal).
    held: set[str] = field(default_factory=set)

    def take(self, todo: Sequence[Item], records: Sequence[dict[str, Any]]) -> list[Item]:
        """Insert `records` (a chunk's new items, leased as they are inserted, and its bad
        rows), lease those of `todo` already stored and pending; return the items of `todo`
        this process now holds, in their order. The rest are recorded, leased by another live
        process, or were inserted first by another process (which leased them)."""
        new = {r["item_id"] for r in records if r.get("status", "pending") == "pending"}
        got = self.store.add_items(self.run_id, records, lease_to=(self.owner, self.ttl_s)) & new
        stored = [i.id for i in todo if i.id not in new]
        if stored:  # a resumed or shared run: one more statement per chunk
            got |= self.store.claim(self.run_id, self.owner, stored, self.ttl_s)
        self.held |= got
        return [item for item in todo if item.id in got]

    async def lapsed(self, fields: Fields, limit: int | None = None) -> AsyncIterator[Item]:
        """Items of the run whose lease lapsed or whose owner died, until no other live
        process holds any: what a process does once its own input is exhausted."""
        while True:
            holders = self.store.lease_holders(self.run_id, below_seq=limit)
            holders.pop(self.owner, None)
            dead = dead_here(list(holders))
            records = self.store.claim_lapsed(
                self.run_id, self.owner, self.ttl_s, limit=self.batch, dead_owners=dead,
                below_seq=limit,
            )  # fmt: skip
            self.held.update(r["item_id"] for r in records)
            for record in records:
                yield Item(record["item_id"], record["row"] or {}, record["source"], fields)
            if not records:
                if not set(holders) - set(dead):
                    return
                await asyncio.sleep(POLL_S)

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.renew_s)
            if self.held:
                self.held = self.store.renew(self.run_id, self.owner, list(self.held), self.ttl_s)

    @asynccontextmanager
    async def kept(self) -> AsyncIterator[Leases]:
        """Renew the leases while the block runs; then release those not recorded (an
        interrupted run), so that other processes take them at once."""
        renewer = asyncio.create_task(self._renew_forever())
        try:
            yield self
        finally:
            renewer.cancel()
            with suppress(asyncio.CancelledError):
                await renewer
            if self.held:
                self.store.release(self.run_id, self.owner, list(self.held))
                self.held = set()
