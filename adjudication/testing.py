"""Test helpers that ship with the package: a settable clock, a throwaway PostgreSQL server, and
many decisions settled at once for benchmarks (`decide_in_bulk`).

`temporary_postgres` runs a real server from the PostgreSQL binaries (`initdb`, `pg_ctl`) in a
temporary directory, listening on a free loopback port, and removes it all on exit. PostgreSQL
refuses to run as root, so when run as root it runs the server as the `postgres` OS user, or
creates an unprivileged system user for the purpose.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import count, islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, RowMapping, insert, select

from . import statements as st
from .database import iso
from .errors import NotFoundError, QueueError, StoreError
from .models import Action
from .rows import snapshot
from .rules import Rules, answer, claim_kinds, settle
from .schema import claims, decisions, tasks

if TYPE_CHECKING:
    from .store import Store


class FakeClock:
    """A thread-safe clock that moves only when told to; pass it as `open_store(clock=...)`."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> datetime:
        """Move the clock forward; returns the new time."""
        with self._lock:
            self._now += timedelta(seconds=seconds)
            return self._now


class PostgresUnavailable(StoreError):
    """The PostgreSQL server binaries are not installed, so no test server can start."""


_SERVICE_USER = "critic-pg"


def find_postgres_bin() -> Path | None:
    """The directory holding `initdb` and `pg_ctl`: $PG_BIN, the PATH, or Debian's layout."""
    candidates = [os.environ.get("PG_BIN", "")]
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(str(Path(on_path).resolve().parent))
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += sorted(versions, key=lambda p: int(Path(p).parent.name), reverse=True)
    for folder in candidates:
        if folder and all((Path(folder) / tool).is_file() for tool in ("initdb", "pg_ctl")):
            return Path(folder)
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _service_user() -> str | None:
    """The OS user to run the server as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", _SERVICE_USER):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", _SERVICE_USER],
        check=True,
        capture_output=True,
    )
    return _SERVICE_USER


@dataclass
class PostgresServer:
    """A running throwaway server; `create_database` gives each test a clean database."""

    host: str
    port: int
    superuser: str
    _names: Iterator[int] = field(default_factory=count)

    def url(self, database: str = "postgres") -> str:
        """A psycopg 3 SQLAlchemy URL for one database on this server."""
        return f"postgresql+psycopg://{self.superuser}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database and return its URL."""
        import psycopg
        from psycopg import sql

        name = name or f"test_{next(self._names)}"
        dsn = f"host={self.host} port={self.port} user={self.superuser} dbname=postgres"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)


@contextmanager
def temporary_postgres(
    *, durable: bool = False, shared_buffers: str | None = None
) -> Iterator[PostgresServer]:
    """Start a throwaway PostgreSQL server on a free loopback port; stop and delete it on exit.

    Args:
        durable: keep fsync and synchronous commit on (for benchmarks); tests turn them off.
        shared_buffers: PostgreSQL's buffer cache (e.g. "1GB"); None keeps its default, 128 MB.

    Raises:
        PostgresUnavailable: when the server binaries are not installed.
    """
    bin_dir = find_postgres_bin()
    if bin_dir is None:
        raise PostgresUnavailable(
            "PostgreSQL server binaries (initdb, pg_ctl) are not installed",
            hint="apt-get install postgresql, or set PG_BIN to the folder holding initdb",
        )
    run_as = _service_user()
    prefix = ["runuser", "-u", run_as, "--"] if run_as else []
    home = Path(tempfile.mkdtemp(prefix="critic-pg-"))
    data, log = home / "data", home / "server.log"
    if run_as:
        entry = pwd.getpwnam(run_as)
        os.chown(home, entry.pw_uid, entry.pw_gid)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        # cwd: the server user may not be allowed into the caller's working directory.
        return subprocess.run(
            [*prefix, *args], cwd=home, capture_output=True, text=True, check=False
        )

    superuser = "critic"
    started = False
    try:
        init = run(
            str(bin_dir / "initdb"), "-D", str(data), "-U", superuser, "--auth=trust",
            "-E", "UTF8", "--no-locale",
        )  # fmt: skip
        if init.returncode != 0:
            raise StoreError(f"initdb failed: {init.stderr.strip() or init.stdout.strip()}")
        settings = ["-c", "listen_addresses=127.0.0.1", "-c", "max_connections=300"]
        if shared_buffers is not None:
            if not re.fullmatch(r"[0-9]+(kB|MB|GB)", shared_buffers):
                raise StoreError(f"shared_buffers: {shared_buffers!r} is not a size such as 1GB")
            settings += ["-c", f"shared_buffers={shared_buffers}"]
        if not durable:
            settings += ["-c", "fsync=off", "-c", "synchronous_commit=off"]
            settings += ["-c", "full_page_writes=off"]
        for _attempt in range(5):
            port = _free_port()
            options = " ".join([*settings, "-p", str(port), "-k", str(home)])
            start = run(
                str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options,
                "-w", "-t", "60", "start",
            )  # fmt: skip
            if start.returncode == 0:
                started = True
                break
        if not started:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else start.stderr
            raise StoreError(f"PostgreSQL did not start:\n{tail}")
        yield PostgresServer(host="127.0.0.1", port=port, superuser=superuser)
    finally:
        if started:
            run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(home, ignore_errors=True)


@dataclass(frozen=True)
class BulkDecision:
    """One reviewer's decision on one pending task, for `decide_in_bulk` (as `Store.decide`
    takes it)."""

    item_id: str
    action: Action
    label: str | None = None
    edit: Mapping[str, Any] | None = None
    note: str | None = None


@dataclass(frozen=True)
class _Settled:
    decision: BulkDecision
    task: RowMapping
    label: str | None
    edit: dict[str, Any] | None
    after: dict[str, Any]


def decide_in_bulk(
    store: Store,
    queue: str,
    reviewer: str,
    decided: Iterable[BulkDecision],
    *,
    seconds: float = 10.0,
    chunk: int = 500,
) -> int:
    """Settle many pending tasks as if `reviewer` had claimed and decided each in turn, a chunk
    per transaction; return how many were settled.

    It writes what `Store.claim` then `Store.decide` write (a claim ended as `decided`, the
    decision, the settled task columns, the `claimed` and `decided` events), checked by the same
    rules, but in a few statements per chunk instead of two transactions per task: benchmarks
    settle 150,000 items in seconds (`bench/scale.py`). Review itself goes through `claim` and
    `decide`. Only where one review settles a task: a queue with overlap 1 that is not blind,
    with accept, edit or reject.

    Args:
        store: the queue store.
        queue: the queue's name.
        reviewer: a member of the queue (or an admin) who decides every task.
        decided: the decisions, one per pending task of the queue.
        seconds: the time spent recorded with each decision.
        chunk: tasks per transaction.
    """
    done = 0
    it = iter(decided)
    while batch := list(islice(it, chunk)):
        with store._write() as conn:
            q = store._queue_row(conn, queue)
            if q["overlap"] != 1 or q["blind"]:
                raise QueueError(
                    f"queue {queue!r} takes {q['overlap']} review(s) per item"
                    f"{' and is blind' if q['blind'] else ''}: decide_in_bulk settles only "
                    "queues where one review settles a task",
                    hint="use claim and decide for this queue",
                )
            user = store._user_row(conn, reviewer)
            claim_kinds(reviewer, user["role"], user["active"], "review")
            store._require_member(conn, q, user)
            settled = _checked(conn, q, batch)
            _write_settled(conn, q, user, settled, store._now(), seconds)
            done += len(settled)
    return done


def _checked(conn: Connection, q: RowMapping, batch: list[BulkDecision]) -> list[_Settled]:
    """The batch's tasks, each decision checked by the queue's rules, with the settled columns."""
    wanted = [d.item_id for d in batch]
    found = {
        row["item_id"]: row
        for row in conn.execute(
            select(tasks).where(tasks.c.queue_id == q["id"], tasks.c.item_id.in_(wanted))
        ).mappings()
    }
    settled = []
    for d in batch:
        task = found.get(d.item_id)
        if task is None:
            raise NotFoundError(f"queue {q['name']!r} has no item {d.item_id!r}")
        if task["state"] != "pending" or task["reviews"] != 0:
            raise QueueError(
                f"item {d.item_id!r} of queue {q['name']!r} is {task['state']} with "
                f"{task['reviews']} review(s): decide_in_bulk settles fresh tasks only",
                hint="leave it out, or decide it with claim and decide",
            )
        if d.action == "escalate":
            raise QueueError(
                f"item {d.item_id!r}: decide_in_bulk takes accept, edit or reject",
                hint="escalate with claim and decide",
            )
        rules = Rules(q["name"], q["labels"], q["blind"], task["item_id"], task["draft_label"],
                      task["answer"])  # fmt: skip
        label = answer(rules, "review", d.action, d.label, d.edit)
        edit = None if d.edit is None else dict(d.edit)
        review = {"action": d.action, "label": label, "edit": edit}
        settled.append(_Settled(d, task, label, edit, {**task, "reviews": 1, **settle([review])}))
    return settled


def _write_settled(
    conn: Connection,
    q: RowMapping,
    user: RowMapping,
    settled: list[_Settled],
    now: datetime,
    seconds: float,
) -> None:
    """The rows `claim` and `decide` write for these tasks, one statement per table."""
    expires = now + timedelta(seconds=q["lease_seconds"])
    claim_rows = [
        {"task_id": s.task["id"], "user_id": user["id"], "round": s.task["round"],
         "kind": "review", "token": secrets.token_urlsafe(24), "claimed_at": now,
         "expires_at": expires, "ended_at": now, "end_reason": "decided", "pick": None}
        for s in settled
    ]  # fmt: skip
    in_order = {"sort_by_parameter_order": True}
    claim_ids = conn.execute(insert(claims).returning(claims.c.id, **in_order), claim_rows)
    claimed = list(claim_ids.scalars())
    decision_rows = [
        {"task_id": s.task["id"], "claim_id": claim_id, "user_id": user["id"],
         "round": s.task["round"], "kind": "review", "action": s.decision.action,
         "label": s.label, "edit": s.edit, "note": s.decision.note, "seconds": seconds,
         "created_at": now}
        for s, claim_id in zip(settled, claimed, strict=True)
    ]  # fmt: skip
    decision_ids = conn.execute(
        insert(decisions).returning(decisions.c.id, **in_order), decision_rows
    )
    conn.execute(
        st.SAVE_TASK,
        [
            {"task_id": s.after["id"], "new_state": s.after["state"],
             "new_round": s.after["round"], "new_reviews": s.after["reviews"],
             "new_final_label": s.after["final_label"],
             "new_final_source": s.after["final_source"],
             "new_final_edit": s.after["final_edit"], "new_rejected": s.after["rejected"],
             "now": now}
            for s in settled
        ],
    )  # fmt: skip
    history: list[dict[str, Any]] = []
    for s, claim_id, decision_id in zip(settled, claimed, decision_ids.scalars(), strict=True):
        common = {"queue_id": q["id"], "task_id": s.task["id"], "actor": user["name"], "at": now}
        before = snapshot(s.task)
        history.append({**common, "kind": "claimed", "before": before,
                        "after": {**before, "claim": claim_id, "kind": "review",
                                  "expires_at": iso(expires)}})  # fmt: skip
        history.append({**common, "kind": "decided", "before": before,
                        "after": {**snapshot(s.after), "decision": decision_id, "kind": "review",
                                  "action": s.decision.action, "label": s.label,
                                  "note": s.decision.note}})  # fmt: skip
    conn.execute(st.INSERT_EVENT, history)
