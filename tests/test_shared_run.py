"""Several `critic label` processes on one run (critic.leases): SIGKILL one, and every item
still ends up recorded exactly once, by the others or by a rerun."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from adjudication.testing import PostgresServer
from critic.runs import CHUNK_ROWS
from critic.store import Store, open_store
from critic.store.schema import drafts, generations, items

ROOT = Path(__file__).resolve().parent.parent


def rows_file(tmp_path: Path, n: int) -> Path:
    path = tmp_path / "items.jsonl"
    path.write_text(
        "".join(
            json.dumps({"id": f"i{k}", "prompt": f"Human: q{k}", "response": f"a{k}"}) + "\n"
            for k in range(n)
        )
    )
    return path


def worker(
    db: str, source: Path, host: str, ttl_s: float, latency_s: float, concurrency: int = 4
) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "tests.shared_run_worker", db, str(source), host, str(ttl_s),
         str(latency_s), str(concurrency)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def scalar(store: Store, query: sa.Select[tuple[int]]) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def drafted(store: Store) -> int:
    return scalar(store, sa.select(sa.func.count()).where(items.c.status == "drafted"))


def held_by(store: Store, owner: str = "") -> list[str]:
    """Pending items leased by workers whose owner starts with `owner`."""
    with store.engine.connect() as conn:
        return list(
            conn.execute(
                sa.select(items.c.item_id).where(
                    items.c.status == "pending", items.c.lease_owner.startswith(owner)
                )
            ).scalars()
        )


def drafted_by(store: Store, owner: str) -> int:
    """Items drafted in the chunks that workers whose owner starts with `owner` hold (a chunk's
    new items are leased by the worker that inserts them, so until a takeover it drafts them)."""
    with store.engine.connect() as conn:
        seqs = conn.execute(
            sa.select(items.c.seq).where(
                items.c.status == "pending", items.c.lease_owner.startswith(owner)
            )
        ).scalars()
        chunks = {seq // CHUNK_ROWS for seq in seqs}
        return sum(
            conn.execute(
                sa.select(sa.func.count()).where(
                    items.c.status == "drafted", items.c.seq >= c * CHUNK_ROWS,
                    items.c.seq < (c + 1) * CHUNK_ROWS,
                )
            ).scalar_one()
            for c in chunks
        )  # fmt: skip


def wait_until(condition: object, procs: list[subprocess.Popen[str]], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        for p in procs:
            if p.poll() is not None:
                pytest.fail(f"a worker ended early ({p.returncode}): {p.communicate()[1][-2000:]}")
        if time.monotonic() > deadline:
            pytest.fail("the run did not get there in time")
        time.sleep(0.05)


def assert_each_item_recorded_once(store: Store, n: int) -> None:
    with store.engine.connect() as conn:
        statuses = dict(
            conn.execute(sa.select(items.c.status, sa.func.count()).group_by(items.c.status)).all()
        )
        assert statuses == {"drafted": n}
        assert conn.execute(sa.select(sa.func.count()).select_from(drafts)).scalar_one() == n
        per_item = conn.execute(
            sa.select(generations.c.item_id, sa.func.count()).group_by(generations.c.item_id)
        ).all()
        # The fake backend answers every item in one request: one generation each, no more.
        assert len(per_item) == n and {count for _, count in per_item} == {1}
        leased = conn.execute(sa.select(sa.func.count()).where(items.c.lease_owner.isnot(None)))
        assert leased.scalar_one() == 0


@pytest.mark.postgres
def test_four_processes_share_a_run_and_redo_the_work_of_a_killed_one(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    n = 6 * CHUNK_ROWS  # leases are taken a chunk at a time
    url = postgres_server.create_database()  # new: the four migrate it together
    source = rows_file(tmp_path, n)
    # Each worker plays another machine (so the others cannot see its pid die) with a 2 s TTL:
    # the killed one's items are taken over when its leases lapse.
    procs = [worker(url, source, f"machine-{k}", 2.0, 0.1, 32) for k in range(4)]
    try:
        victim, survivors = procs[0], procs[1:]
        store = open_store(url)
        wait_until(lambda: drafted(store) >= 500 and drafted_by(store, "machine-0:"), procs)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        lost = held_by(store, "machine-0:")
        outs = [p.communicate(timeout=180) for p in survivors]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (_out, err) in zip(survivors, outs, strict=True):
        assert p.returncode == 0, err[-2000:]
    summaries = [json.loads(out) for out, _ in outs]
    assert lost  # the killed one held items in flight ...
    with store.engine.connect() as conn:  # ... which the others drafted
        redone = conn.execute(
            sa.select(sa.func.count()).where(items.c.item_id.in_(lost), items.c.status == "drafted")
        )
        assert redone.scalar_one() == len(lost)
    assert_each_item_recorded_once(store, n)
    # Work was shared: every survivor recorded some, and the killed one the rest.
    recorded = [s["processed"] for s in summaries]
    assert all(r > 0 for r in recorded), recorded
    assert 0 < n - sum(recorded) < n - len(lost)
    assert all(s["pending"] == 0 and s["drafted"] == n for s in summaries)


def test_a_rerun_right_after_a_sigkill_takes_its_dead_leases_at_once(
    store_url: str, tmp_path: Path
) -> None:
    n = 300
    source = rows_file(tmp_path, n)
    # A TTL of an hour: the rerun only finishes in time if it sees the dead process's pid gone.
    first = worker(store_url, source, "-", 3600.0, 0.05)
    store = open_store(store_url)
    try:
        wait_until(lambda: drafted(store) >= 40 and held_by(store), [first])
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert held_by(store)
    rerun = worker(store_url, source, "-", 3600.0, 0.0)
    out, err = rerun.communicate(timeout=120)
    assert rerun.returncode == 0, err[-2000:]
    summary = json.loads(out)
    assert summary["drafted"] == n and summary["already_done"] > 0
    assert_each_item_recorded_once(store, n)
