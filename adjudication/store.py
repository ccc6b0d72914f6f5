"""Review queues in one SQL database (SQLite file or PostgreSQL): enqueue, claim, decide, read.

Concurrency rules, which every write below follows:

- SQLite: each write is one `BEGIN IMMEDIATE` transaction, so writers are serialised by the
  database (and, within one process, by a lock in front of it, which is fairer than SQLite's
  sleeping busy handler). WAL lets readers run alongside.
- PostgreSQL (READ COMMITTED): a write that changes a task's claims or decisions first locks the
  task row (`FOR NO KEY UPDATE`, which leaves foreign-key checks of other inserts alone).
  `claim` picks a task with `FOR ... SKIP LOCKED`, so reviewers never queue behind
  each other, then re-checks the task with a fresh statement, because the pick's snapshot may
  predate a claim committed just before the lock was taken. `claim` also locks the user row, so
  one reviewer's two browser tabs cannot take two leases at once.
- Lock order is always user, then task; no transaction waits on a task while holding another.

A lease is free again once `expires_at` has passed: the pick counts only unexpired claims, so no
reaper job is needed; expired claims are marked as such when their task is next claimed.
"""

from __future__ import annotations

import secrets
import threading
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from pydantic import ValidationError
from sqlalchemy import (
    URL,
    ColumnElement,
    Connection,
    Engine,
    RowMapping,
    and_,
    case,
    create_engine,
    delete,
    event,
    func,
    insert,
    make_url,
    or_,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError
from sqlalchemy.pool import ConnectionPoolEntry

from . import statements as st
from .agreement import AgreementReport, item_agreement, report
from .errors import LeaseError, NotFoundError, PermissionDenied, QueueError, StoreError
from .migrations import migrate
from .models import (
    ACTIONS,
    REJECTED,
    Action,
    Claim,
    ClaimKind,
    Decision,
    DecisionLine,
    EnqueueResult,
    Event,
    NewTask,
    Outcome,
    Queue,
    QueueStats,
    Role,
    Task,
    TaskLine,
    TaskState,
    Undone,
    User,
)
from .rules import (
    Rules,
    answer,
    check_name,
    check_role,
    claim_kinds,
    final,
    priority,
    rating,
    settle,
    suggest,
)
from .schema import app_secrets, claims, decisions, events, queue_members, queues, tasks, users

Clock = Callable[[], datetime]

_BEGIN = "adjudication_begin"
_CHUNK = 500
_POOL = {"pool_size": 8, "max_overflow": 64}
UNDO_SECONDS = 600.0
"""How long after a decision its reviewer may still take it back with `Store.undo`."""


def _not_a_member(user: str, queue: str) -> PermissionDenied:
    return PermissionDenied(
        f"{user} is not a member of queue {queue!r}",
        hint=f"an admin can add them: critic queue assign {queue} {user}",
    )


def _pick_locked(pick: str) -> QueueError:
    return QueueError(
        f"you picked {pick!r} before the draft was shown, and a blind pick cannot change",
        hint=f"confirm {pick!r}, or reject, escalate or skip the item",
    )


def utc_now() -> datetime:
    """The default clock."""
    return datetime.now(UTC)


def open_store(url: str, *, clock: Clock = utc_now, busy_timeout: float = 30.0) -> Store:
    """Open the queue database at a SQLAlchemy URL, creating and migrating it as needed.

    Args:
        url: `sqlite:///path/to/queue.db` or `postgresql+psycopg://user@host/db`
            (`postgresql://` is taken to mean psycopg 3).
        clock: returns the current time as an aware datetime; tests pass a fake one to expire
            leases without sleeping.
        busy_timeout: SQLite only: seconds to wait for another process's write lock.
    """
    return Store(_engine(url, busy_timeout), clock)


def _engine(url: str, busy_timeout: float) -> Engine:
    example = "sqlite:///queue.db or postgresql+psycopg://user@host/dbname"
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(f"not a database URL: {url!r}", hint=f"use {example}") from exc
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(parsed, busy_timeout)
    if backend == "postgresql":
        return _postgres_engine(parsed)
    raise StoreError(f"unsupported database in {url!r}", hint=f"use {example}")


def _sqlite_engine(url: URL, busy_timeout: float) -> Engine:
    path = url.database
    if not path or path == ":memory:" or url.query.get("mode") == "memory":
        raise StoreError(
            "a review queue cannot live in an in-memory SQLite database (each connection "
            "would see its own empty copy)",
            hint="give a file: sqlite:///queue.db",
        )
    folder = Path(path).expanduser().parent
    if not folder.is_dir():
        raise StoreError(
            f"{path}: the folder {folder} does not exist", hint="create it, or choose another path"
        )
    engine = create_engine(
        url, connect_args={"timeout": busy_timeout, "check_same_thread": False}, **_POOL
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: ConnectionPoolEntry) -> None:
        # Hand BEGIN to us (see _on_begin): pysqlite's own implicit BEGIN is always deferred.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        mode = cursor.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()
        if str(mode).lower() != "wal":
            raise StoreError(
                f"{path}: SQLite could not switch the database to WAL mode (got {mode!r})",
                hint="keep the queue database on a local disk, not a network share",
            )

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(_BEGIN) == "IMMEDIATE"
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def _postgres_engine(url: URL) -> Engine:
    if url.drivername == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    if url.drivername != "postgresql+psycopg":
        raise StoreError(
            f"the {url.drivername} driver is not supported for review queues",
            hint="use psycopg 3: postgresql+psycopg://user@host/dbname",
        )
    try:
        return create_engine(url, pool_pre_ping=True, **_POOL)
    except (ModuleNotFoundError, NoSuchModuleError) as exc:
        raise StoreError(
            "PostgreSQL review queues need psycopg 3, which is not installed",
            hint="pip install 'critic[postgres]'",
        ) from exc


_SQLITE_WRITERS: dict[Path, threading.Lock] = {}
_SQLITE_WRITERS_LOCK = threading.Lock()


def _sqlite_writer(database: str) -> threading.Lock:
    """One lock per database file for all store handles in this process.

    SQLite's busy handler makes a waiting writer sleep and retry, so under contention some
    writers wait seconds while others go first. Waiting on a lock here instead wakes the next
    writer as soon as the last one commits; other processes still meet at the database's own
    lock and busy timeout.
    """
    path = Path(database).expanduser().resolve()
    with _SQLITE_WRITERS_LOCK:
        return _SQLITE_WRITERS.setdefault(path, threading.Lock())


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


class Store:
    """A handle on one queue database; safe to share between threads. Use `open_store`."""

    def __init__(self, engine: Engine, clock: Clock) -> None:
        self._engine = engine
        self._clock = clock
        self.dialect = engine.dialect.name
        self._writer: AbstractContextManager[Any] = nullcontext()
        if self.dialect == "sqlite":
            self._writer = _sqlite_writer(engine.url.database or "")
        with self._write() as conn:
            migrate(conn, self._now())

    @property
    def url(self) -> str:
        """The database URL, with any password hidden."""
        return self._engine.url.render_as_string(hide_password=True)

    def close(self) -> None:
        """Close every pooled connection."""
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ---------------------------------------------------------------------------

    def _now(self) -> datetime:
        now = self._clock()
        if now.tzinfo is None:
            raise StoreError("the store's clock returned a naive datetime; return UTC times")
        return now

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except OperationalError as exc:
            raise StoreError(
                f"the queue database at {self.url} failed: {exc.orig}",
                hint="check that the database is reachable and not locked by a stuck process",
            ) from exc

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._errors(), self._writer, self._engine.connect() as conn:
            conn.execution_options(**{_BEGIN: "IMMEDIATE"})
            with conn.begin():
                yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._errors(), self._engine.connect() as conn:
            if self.dialect == "postgresql":
                # One snapshot for the several statements a report reads.
                conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                yield conn

    def _event(
        self,
        conn: Connection,
        kind: str,
        *,
        at: datetime,
        actor: str | None,
        queue_id: int | None = None,
        task_id: int | None = None,
        before: Mapping[str, Any] | None = None,
        after: Mapping[str, Any] | None = None,
    ) -> None:
        conn.execute(
            st.INSERT_EVENT,
            {
                "queue_id": queue_id,
                "task_id": task_id,
                "actor": actor,
                "at": at,
                "kind": kind,
                "before": None if before is None else dict(before),
                "after": None if after is None else dict(after),
            },
        )

    def _queue_row(self, conn: Connection, name: str) -> RowMapping:
        row = conn.execute(st.QUEUE_BY_NAME, {"name": name}).mappings().first()
        if row is None:
            known = conn.execute(select(queues.c.name)).scalars().all()
            raise NotFoundError(
                f"no queue named {name!r}",
                hint=suggest(name, known) or "create it first: critic queue create NAME",
            )
        return row

    def _user_row(self, conn: Connection, name: str, *, lock: bool = False) -> RowMapping:
        query = st.USER_BY_NAME_LOCKED if lock else st.USER_BY_NAME
        row = conn.execute(query, {"name": name}).mappings().first()
        if row is None:
            known = conn.execute(select(users.c.name)).scalars().all()
            raise NotFoundError(
                f"no user named {name!r}",
                hint=suggest(name, known) or f"add them first: critic users add {name}",
            )
        return row

    def _task_row(
        self, conn: Connection, queue: RowMapping, item_id: str, *, lock: bool = False
    ) -> RowMapping:
        query = select(tasks).where(tasks.c.queue_id == queue["id"], tasks.c.item_id == item_id)
        if lock:
            query = query.with_for_update(key_share=True)
        row = conn.execute(query).mappings().first()
        if row is None:
            raise NotFoundError(
                f"queue {queue['name']!r} has no item {item_id!r}",
                hint="enqueue it first, or check the item id",
            )
        return row

    def _lock_task(self, conn: Connection, task_id: int) -> RowMapping:
        return conn.execute(st.TASK_LOCKED, {"task_id": task_id}).mappings().one()

    # -- queues and users -------------------------------------------------------------------

    def create_queue(
        self,
        name: str,
        *,
        overlap: int = 1,
        blind: bool = False,
        lease_seconds: int = 600,
        labels: Sequence[str] | None = None,
        ordinal: bool = False,
        members: Sequence[str] = (),
        by: str | None = None,
    ) -> Queue:
        """Create a review queue.

        Args:
            name: the queue's name, unique in the database.
            overlap: independent reviews each item needs; if they disagree, an adjudicator decides.
            blind: reviewers do not see the critic's draft (label, critique, confidence) and
                give their own label; adjudicators always see everything.
            lease_seconds: how long a claim lasts without a heartbeat.
            labels: the allowed labels; None allows any label.
            ordinal: the labels are a scale, given lowest first (agreement then includes
                ordinal alpha in this order).
            members: users who may work in it (see `add_members`); admins always may.
            by: who is creating it, for the history.
        """
        check_name("queue", name)
        if overlap < 1:
            raise QueueError(f"overlap must be at least 1, not {overlap}")
        if lease_seconds < 1:
            raise QueueError(f"lease_seconds must be at least 1, not {lease_seconds}")
        label_list = None if labels is None else [str(label) for label in labels]
        if label_list is not None and (not label_list or len(set(label_list)) != len(label_list)):
            raise QueueError(f"labels must be a non-empty list without repeats, not {labels!r}")
        if ordinal and label_list is None:
            raise QueueError(
                "an ordinal queue needs its labels, lowest first", hint="pass labels=[...]"
            )
        with self._write() as conn:
            if conn.execute(select(queues.c.id).where(queues.c.name == name)).first():
                raise QueueError(
                    f"queue {name!r} already exists", hint="pick another name, or use that queue"
                )
            now = self._now()
            values = {
                "name": name,
                "overlap": overlap,
                "blind": blind,
                "lease_seconds": lease_seconds,
                "labels": label_list,
                "ordinal": ordinal,
                "created_at": now,
            }
            queue_id = conn.execute(
                insert(queues).values(**values).returning(queues.c.id)
            ).scalar_one()
            after = {k: v for k, v in values.items() if k != "created_at"}
            self._event(conn, "queue_created", at=now, actor=by, queue_id=queue_id, after=after)
            row = conn.execute(select(queues).where(queues.c.id == queue_id)).mappings().one()
            self._add_members(conn, row, members, by, now)
            return _queue(row)

    def queue(self, name: str) -> Queue:
        """The queue called `name`."""
        with self._read() as conn:
            return _queue(self._queue_row(conn, name))

    def queues(self) -> list[Queue]:
        """Every queue, by name."""
        with self._read() as conn:
            rows = conn.execute(select(queues).order_by(queues.c.name)).mappings()
            return [_queue(row) for row in rows]

    def add_user(
        self,
        name: str,
        role: Role = "reviewer",
        *,
        password_hash: str | None = None,
        queues: Sequence[str] = (),
        by: str | None = None,
    ) -> User:
        """Add a user.

        Args:
            name: unique login name.
            role: reviewer, adjudicator (also adjudicates disagreements) or admin.
            password_hash: an already hashed password for the web app; never a plain password.
            queues: the queues they may work in (see `add_members`); admins work in all.
            by: who is adding them, for the history.
        """
        check_role(role)
        check_name("user", name)
        with self._write() as conn:
            if conn.execute(select(users.c.id).where(users.c.name == name)).first():
                raise QueueError(f"user {name!r} already exists", hint="pick another name")
            now = self._now()
            conn.execute(
                insert(users).values(
                    name=name, role=role, password_hash=password_hash, active=True, created_at=now
                )
            )
            self._event(conn, "user_added", at=now, actor=by, after={"user": name, "role": role})
            for queue in queues:
                self._add_members(conn, self._queue_row(conn, queue), [name], by, now)
            return _user(self._user_row(conn, name))

    def update_user(
        self,
        name: str,
        *,
        role: Role | None = None,
        password_hash: str | None = None,
        active: bool | None = None,
        by: str | None = None,
    ) -> User:
        """Change a user's role, password hash or active flag (inactive users cannot claim)."""
        if role is not None:
            check_role(role)
        with self._write() as conn:
            row = self._user_row(conn, name, lock=True)
            changes: dict[str, Any] = {}
            if role is not None:
                changes["role"] = role
            if password_hash is not None:
                changes["password_hash"] = password_hash
            if active is not None:
                changes["active"] = active
            if changes:
                # A new password or deactivation ends every web session of the user.
                if (password_hash is not None and password_hash != row["password_hash"]) or (
                    active is False and row["active"]
                ):
                    changes["session_epoch"] = row["session_epoch"] + 1
                conn.execute(update(users).where(users.c.id == row["id"]).values(**changes))
                shown = {
                    k: v for k, v in changes.items() if k not in ("password_hash", "session_epoch")
                }
                if "password_hash" in changes:
                    shown["password"] = "changed"
                self._event(
                    conn,
                    "user_updated",
                    at=self._now(),
                    actor=by,
                    before={"user": name, **{k: row[k] for k in shown if k in row}},
                    after={"user": name, **shown},
                )
            return _user(self._user_row(conn, name))

    def user(self, name: str) -> User:
        """The user called `name`."""
        with self._read() as conn:
            return _user(self._user_row(conn, name))

    def end_sessions(self, name: str) -> User:
        """End every web session of a user (log-out): bumps their session epoch."""
        with self._write() as conn:
            row = self._user_row(conn, name, lock=True)
            conn.execute(
                update(users)
                .where(users.c.id == row["id"])
                .values(session_epoch=users.c.session_epoch + 1)
            )
            return _user(self._user_row(conn, name))

    def app_secret(self, name: str, make: Callable[[], str]) -> str:
        """The secret stored under `name`, made with `make()` and stored on first use. Two
        processes starting at once agree: the first insert wins and both read it back."""
        with self._read() as conn:
            found = conn.execute(st.APP_SECRET, {"name": name}).scalar()
        if found is not None:
            return str(found)
        with self._write() as conn:
            dialect_insert = pg_insert if self.dialect == "postgresql" else sqlite_insert
            conn.execute(
                dialect_insert(app_secrets)
                .values(name=name, value=make(), created_at=self._now())
                .on_conflict_do_nothing(index_elements=["name"])
            )
            return str(conn.execute(st.APP_SECRET, {"name": name}).scalar_one())

    def users(self) -> list[User]:
        """Every user, by name."""
        with self._read() as conn:
            return [
                _user(row) for row in conn.execute(select(users).order_by(users.c.name)).mappings()
            ]

    # -- membership -------------------------------------------------------------------------

    def add_members(self, queue: str, names: Iterable[str], *, by: str | None = None) -> list[str]:
        """Let users work in a queue. Reviewers and adjudicators see and claim items only in
        the queues they are members of; admins work in every queue without being members.

        Returns:
            The names added now, in the order given (members already in are left alone).
        """
        with self._write() as conn:
            return self._add_members(conn, self._queue_row(conn, queue), names, by, self._now())

    def _add_members(
        self,
        conn: Connection,
        q: RowMapping,
        names: Iterable[str],
        by: str | None,
        now: datetime,
    ) -> list[str]:
        added = []
        for name in dict.fromkeys(names):
            u = self._user_row(conn, name)
            if conn.execute(st.MEMBER, {"queue_id": q["id"], "user_id": u["id"]}).first():
                continue
            conn.execute(
                insert(queue_members).values(queue_id=q["id"], user_id=u["id"], added_at=now)
            )
            self._event(
                conn,
                "member_added",
                at=now,
                actor=by,
                queue_id=q["id"],
                after={"user": name, "role": u["role"]},
            )
            added.append(name)
        return added

    def remove_members(
        self, queue: str, names: Iterable[str], *, by: str | None = None
    ) -> list[str]:
        """Stop users working in a queue. Items they hold in it go back to the pool at once.

        Returns:
            The names removed now (users who were not members are left alone).
        """
        with self._write() as conn:
            q = self._queue_row(conn, queue)
            now = self._now()
            removed = []
            for name in dict.fromkeys(names):
                u = self._user_row(conn, name, lock=True)
                gone = conn.execute(
                    delete(queue_members).where(
                        queue_members.c.queue_id == q["id"], queue_members.c.user_id == u["id"]
                    )
                ).rowcount
                if not gone:
                    continue
                held = conn.execute(
                    st.LIVE_OF_USER, {"user_id": u["id"], "queue_id": q["id"], "now": now}
                ).all()
                if held:
                    ids = [row.id for row in held]
                    conn.execute(st.END_CLAIMS, {"claim_ids": ids, "now": now, "reason": "removed"})
                self._event(
                    conn,
                    "member_removed",
                    at=now,
                    actor=by,
                    queue_id=q["id"],
                    before={"user": name, "role": u["role"]},
                    after={"user": name, "claims_ended": len(held)},
                )
                removed.append(name)
            return removed

    def members(self, queue: str) -> list[User]:
        """The users who may work in a queue besides the admins, by name."""
        with self._read() as conn:
            q = self._queue_row(conn, queue)
            rows = conn.execute(
                select(users)
                .join(queue_members, queue_members.c.user_id == users.c.id)
                .where(queue_members.c.queue_id == q["id"])
                .order_by(users.c.name)
            ).mappings()
            return [_user(row) for row in rows]

    def queues_for(self, user: str) -> list[Queue]:
        """The queues a user may work in, by name: every queue for an admin, none if inactive."""
        with self._read() as conn:
            u = self._user_row(conn, user)
            if not u["active"]:
                return []
            query = select(queues).order_by(queues.c.name)
            if u["role"] != "admin":
                query = query.join(queue_members, queue_members.c.queue_id == queues.c.id).where(
                    queue_members.c.user_id == u["id"]
                )
            return [_queue(row) for row in conn.execute(query).mappings()]

    def memberships(self) -> dict[str, list[str]]:
        """Every user's name -> the names of the queues they may work in (as `queues_for`),
        read in three queries however many users there are."""
        with self._read() as conn:
            everything = list(conn.execute(select(queues.c.name).order_by(queues.c.name)).scalars())
            pairs = conn.execute(
                select(users.c.name, queues.c.name)
                .join(queue_members, queue_members.c.user_id == users.c.id)
                .join(queues, queues.c.id == queue_members.c.queue_id)
                .order_by(queues.c.name)
            ).all()
            people = conn.execute(select(users.c.name, users.c.role, users.c.active)).all()
        listed: defaultdict[str, list[str]] = defaultdict(list)
        for user, queue in pairs:
            listed[user].append(queue)
        return {
            name: [] if not active else list(everything) if role == "admin" else listed[name]
            for name, role, active in people
        }

    def queue_for(self, user: str, queue: str) -> Queue:
        """The queue called `queue`, if `user` may work in it; PermissionDenied otherwise."""
        with self._read() as conn:
            row = conn.execute(st.QUEUE_FOR, {"queue": queue, "user": user}).mappings().first()
            if row is None:
                self._queue_row(conn, queue)  # raises, naming the queues there are
            assert row is not None
            if row["user_id"] is None:
                self._user_row(conn, user)  # raises, naming the users there are
            if row["user_role"] != "admin" and row["member"] is None:
                raise _not_a_member(user, queue)
            return _queue(row)

    def _require_member(self, conn: Connection, q: RowMapping, u: RowMapping) -> None:
        if u["role"] == "admin":
            return
        if conn.execute(st.MEMBER, {"queue_id": q["id"], "user_id": u["id"]}).first() is None:
            raise _not_a_member(u["name"], q["name"])

    # -- enqueue ----------------------------------------------------------------------------

    def enqueue(
        self,
        queue: str,
        items: Iterable[NewTask | Mapping[str, Any]],
        *,
        by: str | None = None,
    ) -> EnqueueResult:
        """Add items to a queue; an item id already in the queue is left as it is.

        Safe to re-run after a crash: items are committed in chunks, and a rerun adds only
        what is missing.

        Args:
            queue: the queue's name.
            items: `NewTask`s, or mappings with the same keys.
            by: who or what is enqueueing (e.g. "route"), for the history.
        """
        new: list[NewTask] = []
        for index, raw in enumerate(items):
            try:
                new.append(raw if isinstance(raw, NewTask) else NewTask.model_validate(raw))
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first["loc"]) or "item"
                item_id = raw.get("item_id", "?") if isinstance(raw, Mapping) else "?"
                raise QueueError(
                    f"items[{index}] (item_id {item_id!r}): {where}: {first['msg']}",
                    hint="each item needs an item_id; allowed keys: "
                    + ", ".join(NewTask.model_fields),
                ) from exc
        with self._read() as conn:
            q = self._queue_row(conn, queue)
        allowed = q["labels"]
        for task in new:
            if (
                allowed is not None
                and task.draft_label is not None
                and task.draft_label not in allowed
            ):
                raise QueueError(
                    f"item {task.item_id!r}: draft label {task.draft_label!r} is not one of "
                    f"queue {queue!r}'s labels ({', '.join(allowed)})",
                    hint=suggest(task.draft_label, allowed),
                )
        added = 0
        for start in range(0, len(new), _CHUNK):
            with self._write() as conn:
                added += self._insert_tasks(conn, q, new[start : start + _CHUNK], by)
        return EnqueueResult(added=added, existing=len(new) - added)

    def _insert_tasks(
        self, conn: Connection, q: RowMapping, batch: Sequence[NewTask], by: str | None
    ) -> int:
        now = self._now()
        rows = [
            {
                "queue_id": q["id"],
                "item_id": t.item_id,
                "item": t.item,
                "draft": t.draft,
                "draft_label": t.draft_label,
                "confidence": t.confidence,
                "route_reason": t.route_reason,
                "principle_ids": list(t.principle_ids),
                "priority": priority(t),
                "state": "pending",
                "round": 1,
                "reviews": 0,
                "final_label": None,
                "final_source": None,
                "final_edit": None,
                "rejected": False,
                "created_at": now,
                "updated_at": now,
            }
            for t in batch
        ]
        dialect_insert = pg_insert if self.dialect == "postgresql" else sqlite_insert
        statement = (
            dialect_insert(tasks)
            .on_conflict_do_nothing(index_elements=["queue_id", "item_id"])
            .returning(tasks.c.id, tasks.c.priority)
        )
        inserted = conn.execute(statement, rows).all()
        if inserted:
            conn.execute(
                insert(events),
                [
                    {
                        "queue_id": q["id"],
                        "task_id": task_id,
                        "actor": by,
                        "at": now,
                        "kind": "enqueued",
                        "before": None,
                        "after": {"state": "pending", "round": 1, "priority": rank},
                    }
                    for task_id, rank in inserted
                ],
            )
        return len(inserted)

    # -- claiming ---------------------------------------------------------------------------

    def claim(self, queue: str, user: str, *, kind: ClaimKind | None = None) -> Claim | None:
        """Lease the next task for a user, or None when there is nothing they may take now.

        A user holds at most one live claim per queue: calling again returns (and renews) the
        one they hold, so a reloaded review page shows the same item. Reviewers get the most
        urgent pending task (lowest priority value, i.e. least confident, first) that they have
        neither decided nor skipped this round and that still has a free review slot.
        Adjudicators and admins get disagreements to adjudicate first, then reviews. Only
        members of the queue (and admins) may claim in it.

        Args:
            queue: the queue's name.
            user: the claiming user's name.
            kind: "review" or "adjudication" to ask for one kind only.
        """
        with self._write() as conn:
            q = self._queue_row(conn, queue)
            u = self._user_row(conn, user, lock=True)
            kinds = claim_kinds(user, u["role"], u["active"], kind)
            self._require_member(conn, q, u)
            now = self._now()
            held = (
                conn.execute(
                    st.HELD, {"user_id": u["id"], "queue_id": q["id"], "kinds": kinds, "now": now}
                )
                .mappings()
                .first()
            )
            if held is not None:
                task = self._lock_task(conn, held["task_id"])
                expires = now + timedelta(seconds=q["lease_seconds"])
                conn.execute(st.RENEW_CLAIM, {"claim_id": held["id"], "new_expiry": expires})
                return self._claim_view(conn, q, user, {**held, "expires_at": expires}, task)
            for wanted in kinds:
                picked = self._pick(conn, q, u["id"], wanted, now)
                if picked is not None:
                    return self._lease(conn, q, user, u["id"], picked, wanted, now)
            return None

    def held(self, queue: str, user: str, *, kind: ClaimKind) -> Claim | None:
        """The live claim of this kind that `user` holds in `queue`, or None. Reads only: it
        neither renews the lease nor claims anything (what a page shows on a GET)."""
        with self._read() as conn:
            q = self._queue_row(conn, queue)
            u = self._user_row(conn, user)
            kinds = claim_kinds(user, u["role"], u["active"], kind)
            self._require_member(conn, q, u)
            params = {"user_id": u["id"], "queue_id": q["id"], "kinds": kinds, "now": self._now()}
            row = conn.execute(st.HELD, params).mappings().first()
            if row is None:
                return None
            task = conn.execute(select(tasks).where(tasks.c.id == row["task_id"])).mappings()
            return self._claim_view(conn, q, user, dict(row), task.one())

    def pick(self, token: str, label: str) -> Claim:
        """Record a blind reviewer's own label before the draft is shown to them.

        The first pick holds for the item's round: a repeated pick of the same label returns
        the claim, a different one is refused, and a decision must confirm the pick (or reject,
        escalate or skip the item)."""
        with self._write() as conn:
            held, task, q = self._held(conn, token)
            now = self._now()
            self._require_live(held, task, q, now)
            if not q["blind"] or held["kind"] != "review":
                raise QueueError(
                    f"queue {q['name']!r} is not blind: there is nothing to pick before deciding",
                    hint="decide with accept or a label",
                )
            if not label.strip() or len(label) > 200 or (q["labels"] and label not in q["labels"]):
                raise QueueError(
                    f"{label!r} is not a label of queue {q['name']!r}",
                    hint=f"use one of: {', '.join(q['labels'] or ['any text'])}",
                )
            if held["pick"] is None:
                conn.execute(update(claims).where(claims.c.id == held["id"]).values(pick=label))
                self._event(
                    conn,
                    "picked",
                    at=now,
                    actor=held["reviewer"],
                    queue_id=q["id"],
                    task_id=task["id"],
                    after={"claim": held["id"], "pick": label},
                )
            elif held["pick"] != label:
                raise _pick_locked(held["pick"])
            return self._claim_view(conn, q, held["reviewer"], {**held, "pick": label}, task)

    def _pick(
        self, conn: Connection, q: RowMapping, user_id: int, kind: ClaimKind, now: datetime
    ) -> RowMapping | None:
        params: dict[str, Any] = {
            "queue_id": q["id"],
            "user_id": user_id,
            "now": now,
            "overlap": q["overlap"],
            "tried": [],
        }
        while (task_id := conn.execute(st.PICK[kind], params).scalar()) is not None:
            # We hold the row lock now; only a new statement sees what committed before it.
            recheck = conn.execute(st.RECHECK[kind], {**params, "task_id": task_id})
            row = recheck.mappings().first()
            if row is not None:
                return row
            params["tried"] = [*params["tried"], task_id]
        return None

    def _lease(
        self,
        conn: Connection,
        q: RowMapping,
        user: str,
        user_id: int,
        task: RowMapping,
        kind: ClaimKind,
        now: datetime,
    ) -> Claim:
        self._close_expired(conn, q, task, now)
        values = {
            "task_id": task["id"],
            "user_id": user_id,
            "round": task["round"],
            "kind": kind,
            "token": secrets.token_urlsafe(24),
            "claimed_at": now,
            "expires_at": now + timedelta(seconds=q["lease_seconds"]),
            "ended_at": None,
            "end_reason": None,
            # A blind pick holds for the round, also across a release and a new claim.
            "pick": conn.execute(
                st.EARLIER_PICK, {"task_id": task["id"], "user_id": user_id, "round": task["round"]}
            ).scalar()
            if kind == "review"
            else None,
        }
        claim_id = conn.execute(st.INSERT_CLAIM, values).scalar_one()
        self._event(
            conn,
            "claimed",
            at=now,
            actor=user,
            queue_id=q["id"],
            task_id=task["id"],
            before=_snapshot(task),
            after={
                **_snapshot(task),
                "claim": claim_id,
                "kind": kind,
                "expires_at": _iso(values["expires_at"]),
            },
        )
        return self._claim_view(conn, q, user, {**values, "id": claim_id}, task)

    def _close_expired(
        self, conn: Connection, q: RowMapping, task: RowMapping, now: datetime
    ) -> None:
        stale = conn.execute(st.EXPIRED, {"task_id": task["id"], "now": now}).all()
        if not stale:
            return
        ids = [row.id for row in stale]
        conn.execute(st.END_CLAIMS, {"claim_ids": ids, "now": now, "reason": "expired"})
        for row in stale:
            self._event(
                conn,
                "lease_expired",
                at=now,
                actor=None,
                queue_id=q["id"],
                task_id=task["id"],
                before={
                    "claim": row.id,
                    "reviewer": row.name,
                    "kind": row.kind,
                    "expires_at": _iso(row.expires_at),
                },
                after={"claim": row.id, "ended": "expired"},
            )

    def _claim_view(
        self,
        conn: Connection,
        q: RowMapping,
        user: str,
        claim: Mapping[str, Any],
        task: RowMapping,
    ) -> Claim:
        view = _task(q["name"], task)
        answers: tuple[Decision, ...] = ()
        if claim["kind"] == "adjudication":
            rows = conn.execute(st.ROUND_REVIEWS, {"task_id": task["id"], "round": task["round"]})
            answers = tuple(_decision(row) for row in rows.mappings())
        elif q["blind"]:
            view = replace(view, draft={}, draft_label=None, confidence=None)
        return Claim(
            token=claim["token"],
            queue=q["name"],
            reviewer=user,
            kind=claim["kind"],
            task=view,
            claimed_at=claim["claimed_at"],
            expires_at=claim["expires_at"],
            answers=answers,
            pick=claim.get("pick"),
        )

    def _held(self, conn: Connection, token: str) -> tuple[RowMapping, RowMapping, RowMapping]:
        """The claim for a token, with its task locked and its queue."""
        q = conn.execute(st.TOKEN_QUEUE, {"token": token}).mappings().first()
        if q is None:
            raise LeaseError(
                "unknown claim token",
                hint="claim an item first and use the token that claim returned",
            )
        task = self._lock_task(conn, q["task_id"])
        # Read after taking the lock: a retry of the same submit may have just committed.
        held = conn.execute(st.CLAIM_BY_TOKEN, {"token": token}).mappings().one()
        return held, task, q

    @staticmethod
    def _require_live(held: RowMapping, task: RowMapping, q: RowMapping, now: datetime) -> None:
        item = task["item_id"]
        if held["ended_at"] is not None:
            raise LeaseError(
                f"the claim on item {item!r} in queue {q['name']!r} has already ended "
                f"({held['end_reason']} at {_iso(held['ended_at'])})",
                hint="claim again to get your next item",
            )
        if held["expires_at"] <= now:
            raise LeaseError(
                f"the lease on item {item!r} in queue {q['name']!r} expired at "
                f"{_iso(held['expires_at'])} (leases last {q['lease_seconds']} s unless "
                "renewed by a heartbeat)",
                hint="claim again; the item may have gone to another reviewer meanwhile",
            )

    def heartbeat(self, token: str) -> datetime:
        """Renew a live claim's lease; returns the new expiry. Expired claims are not revived."""
        with self._write() as conn:
            held, task, q = self._held(conn, token)
            now = self._now()
            self._require_live(held, task, q, now)
            expires = now + timedelta(seconds=q["lease_seconds"])
            conn.execute(st.RENEW_CLAIM, {"claim_id": held["id"], "new_expiry": expires})
            return expires

    def release(self, token: str) -> bool:
        """Give a claimed item back to the pool; the same reviewer may get it again later.

        Returns:
            False if the claim had already ended or expired (nothing to release).
        """
        with self._write() as conn:
            held, task, q = self._held(conn, token)
            now = self._now()
            if held["ended_at"] is not None or held["expires_at"] <= now:
                return False
            self._end(conn, held, task, q, now, "released")
            return True

    def skip(self, token: str) -> None:
        """This reviewer passes on the item: it goes back to the pool for others, not for them."""
        with self._write() as conn:
            held, task, q = self._held(conn, token)
            now = self._now()
            self._require_live(held, task, q, now)
            self._end(conn, held, task, q, now, "skipped")

    def _end(
        self,
        conn: Connection,
        held: RowMapping,
        task: RowMapping,
        q: RowMapping,
        now: datetime,
        reason: str,
    ) -> None:
        conn.execute(st.END_CLAIMS, {"claim_ids": [held["id"]], "now": now, "reason": reason})
        self._event(
            conn,
            reason,
            at=now,
            actor=held["reviewer"],
            queue_id=q["id"],
            task_id=task["id"],
            before={**_snapshot(task), "claim": held["id"]},
            after={**_snapshot(task), "claim": held["id"], "ended": reason},
        )

    # -- deciding ---------------------------------------------------------------------------

    def decide(
        self,
        token: str,
        action: Action,
        *,
        label: str | None = None,
        edit: Mapping[str, Any] | None = None,
        note: str | None = None,
        seconds: float | None = None,
    ) -> Decision:
        """Record the claim holder's decision. Retrying with the same token returns the stored one.

        Args:
            token: the token of a live claim.
            action: "accept" the critic's draft, "edit" it (new `label` and/or edited fields in
                `edit`, such as a corrected revision), "reject" the item, or "escalate" it to an
                adjudicator. In a blind queue reviewers give their own `label` with accept/edit.
            label: the label for edit (or for accept in a blind queue).
            edit: edited draft fields, as a JSON object.
            note: free text for the history and the adjudicator.
            seconds: time spent; defaults to the time since the claim.

        Returns:
            The stored decision. The task moves on when its round is complete: to `done` if the
            reviews agree, to `adjudication` if they disagree or one escalated.
        """
        with self._write() as conn:
            held, task, q = self._held(conn, token)
            if held["decision_id"] is not None:
                prior = conn.execute(st.DECISION_OF_CLAIM, {"claim_id": held["id"]})
                return _decision(prior.mappings().one())
            now = self._now()
            self._require_live(held, task, q, now)
            kind = cast(ClaimKind, held["kind"])
            if held["pick"] is not None and action in ("accept", "edit") and label != held["pick"]:
                raise _pick_locked(held["pick"])
            rules = Rules(q["name"], q["labels"], q["blind"], task["item_id"], task["draft_label"])
            chosen = answer(rules, kind, action, label, edit)
            spent = (now - held["claimed_at"]).total_seconds() if seconds is None else seconds
            if spent < 0:
                raise QueueError(f"seconds spent cannot be negative ({seconds})")
            stored = {
                "task_id": task["id"],
                "claim_id": held["id"],
                "user_id": held["user_id"],
                "round": task["round"],
                "kind": kind,
                "action": action,
                "label": chosen,
                "edit": None if edit is None else dict(edit),
                "note": note,
                "seconds": spent,
                "created_at": now,
            }
            decision_id = conn.execute(st.INSERT_DECISION, stored).scalar_one()
            conn.execute(
                st.END_CLAIMS, {"claim_ids": [held["id"]], "now": now, "reason": "decided"}
            )
            after = {**task, **self._advance(conn, q, task, kind, action, chosen, edit)}
            self._save(conn, after, now)
            self._event(
                conn,
                "decided",
                at=now,
                actor=held["reviewer"],
                queue_id=q["id"],
                task_id=task["id"],
                before=_snapshot(task),
                after={
                    **_snapshot(after),
                    "decision": decision_id,
                    "kind": kind,
                    "action": action,
                    "label": chosen,
                    "note": note,
                },
            )
            return _decision(
                {
                    **stored,
                    "id": decision_id,
                    "queue": q["name"],
                    "item_id": task["item_id"],
                    "reviewer": held["reviewer"],
                }
            )

    def _advance(
        self,
        conn: Connection,
        q: RowMapping,
        task: RowMapping,
        kind: ClaimKind,
        action: Action,
        chosen: str | None,
        edit: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        """The task's changed columns after a decision."""
        if kind == "adjudication":
            return final(chosen, action == "reject", edit, "adjudicated")
        reviews = task["reviews"] + 1
        if reviews < q["overlap"]:
            return {"reviews": reviews}
        rows = conn.execute(st.ROUND_REVIEWS, {"task_id": task["id"], "round": task["round"]})
        return {"reviews": reviews, **settle(rows.mappings().all())}

    @staticmethod
    def _save(conn: Connection, task: Mapping[str, Any], now: datetime) -> None:
        conn.execute(
            st.SAVE_TASK,
            {
                "task_id": task["id"],
                "new_state": task["state"],
                "new_round": task["round"],
                "new_reviews": task["reviews"],
                "new_final_label": task["final_label"],
                "new_final_source": task["final_source"],
                "new_final_edit": task["final_edit"],
                "new_rejected": task["rejected"],
                "now": now,
            },
        )

    def reopen(self, queue: str, item_id: str, *, by: str, reason: str | None = None) -> Task:
        """Send a decided (or awaiting adjudication) item back for a fresh round of reviews.

        Earlier decisions stay in the history; the new round needs `overlap` new reviews, and a
        reviewer from an earlier round may review it again.

        Args:
            by: an adjudicator who is a member of the queue, or an admin.
            reason: why, for the history.
        """
        with self._write() as conn:
            q = self._queue_row(conn, queue)
            actor = self._user_row(conn, by)
            if actor["role"] not in ("adjudicator", "admin") or not actor["active"]:
                raise PermissionDenied(
                    f"{by} cannot reopen items (role {actor['role']})",
                    hint="ask an adjudicator or an admin",
                )
            self._require_member(conn, q, actor)
            task = self._task_row(conn, q, item_id, lock=True)
            if task["state"] == "pending":
                raise QueueError(
                    f"item {item_id!r} in queue {queue!r} is still open for review",
                    hint="only decided items, or items awaiting adjudication, can be reopened",
                )
            now = self._now()
            conn.execute(
                update(claims)
                .where(claims.c.task_id == task["id"], claims.c.ended_at.is_(None))
                .values(ended_at=now, end_reason="reopened")
            )
            changes = {
                "round": task["round"] + 1,
                "reviews": 0,
                **final(None, False, None, None),
                "state": "pending",
            }
            self._save(conn, {**task, **changes}, now)
            self._event(
                conn,
                "reopened",
                at=now,
                actor=by,
                queue_id=q["id"],
                task_id=task["id"],
                before=_snapshot(task),
                after={**_snapshot({**task, **changes}), "reason": reason},
            )
            return _task(queue, self._task_row(conn, q, item_id))

    # -- undo -------------------------------------------------------------------------------

    def last_decision(self, queue: str, user: str) -> Decision | None:
        """The newest decision `user` made in `queue` (what `undo` would take back), or None."""
        with self._read() as conn:
            row = (
                conn.execute(st.LAST_DECISION_BY_NAME, {"queue": queue, "user": user})
                .mappings()
                .first()
            )
            if row is None:
                self._queue_row(conn, queue)  # an unknown queue or user is an error, not None
                self._user_row(conn, user)
                return None
            return _decision(row)

    def undo(
        self,
        queue: str,
        user: str,
        *,
        decision: int | None = None,
        within: float = UNDO_SECONDS,
    ) -> Undone:
        """Take back `user`'s newest decision in `queue` and hand that item back to them.

        The decision is deleted (the event log keeps it, as a `withdrawn` event), the item
        returns to the state it was in before it (pending with one review fewer, or awaiting
        adjudication), and the user gets a fresh lease on it to decide again. A live claim they
        held on another item in the queue is released.

        Refused, with a hint, when the decision is older than `within` seconds, when someone
        decided the item after it, when the item was reopened since, or when an adjudicator is
        deciding the disagreement the decision created. Then only an adjudicator's `reopen`
        changes the outcome.

        Args:
            decision: the id of the decision the caller means (`last_decision(...).id`). If the
                newest decision is another one, nothing is undone: a repeated undo request
                must not take back the decision before it too.
            within: how many seconds after a decision it may still be undone.
        """
        with self._write() as conn:
            q = self._queue_row(conn, queue)
            u = self._user_row(conn, user, lock=True)
            claim_kinds(user, u["role"], u["active"], None)
            self._require_member(conn, q, u)
            now = self._now()
            last = (
                conn.execute(st.LAST_DECISION, {"user_id": u["id"], "queue_id": q["id"]})
                .mappings()
                .first()
            )
            if last is None:
                raise QueueError(
                    f"{user} has no decision in queue {queue!r} to undo",
                    hint="undo takes back your own newest decision in this queue",
                )
            if decision is not None and last["id"] != decision:
                raise QueueError(
                    f"decision {decision} is not {user}'s newest in queue {queue!r} (it was "
                    "undone already, or a newer one was made)",
                    hint="reload the page to see what you can undo now",
                )
            task = self._lock_task(conn, last["task_id"])
            self._check_undoable(conn, q, task, last, now, within)
            kind = cast(ClaimKind, last["kind"])
            for held in conn.execute(
                st.LIVE_OF_USER, {"user_id": u["id"], "queue_id": q["id"], "now": now}
            ).all():
                other = self._lock_task(conn, held.task_id)
                row = {"id": held.id, "reviewer": user}
                self._end(conn, cast(RowMapping, row), other, q, now, "released")
            conn.execute(delete(decisions).where(decisions.c.id == last["id"]))
            conn.execute(
                update(claims).where(claims.c.id == last["claim_id"]).values(end_reason="withdrawn")
            )
            cleared = {"final_label": None, "final_source": None, "final_edit": None}
            if kind == "review":
                changes = {"state": "pending", "reviews": task["reviews"] - 1, **cleared}
            else:
                changes = {"state": "adjudication", **cleared}
            self._save(conn, {**task, **changes, "rejected": False}, now)
            withdrawn = _decision(last)
            self._event(
                conn,
                "withdrawn",
                at=now,
                actor=user,
                queue_id=q["id"],
                task_id=task["id"],
                before={
                    **_snapshot(task),
                    "decision": last["id"],
                    "kind": kind,
                    "action": last["action"],
                    "label": last["label"],
                    "note": last["note"],
                },
                after=_snapshot({**task, **changes, "rejected": False}),
            )
            reopened = self._lock_task(conn, task["id"])
            claim = self._lease(conn, q, user, u["id"], reopened, kind, now)
            return Undone(withdrawn=withdrawn, claim=claim)

    @staticmethod
    def _check_undoable(
        conn: Connection,
        q: RowMapping,
        task: RowMapping,
        last: RowMapping,
        now: datetime,
        within: float,
    ) -> None:
        item, queue = task["item_id"], q["name"]
        reopen = f"ask an adjudicator to reopen it: critic queue reopen {queue} {item}"
        age = (now - last["created_at"]).total_seconds()
        if age > within:
            raise QueueError(
                f"your decision on item {item!r} in queue {queue!r} was made {age:.0f} s ago; "
                f"a decision can be undone for {within:.0f} s",
                hint=reopen,
            )
        if task["round"] != last["round"]:
            raise QueueError(
                f"item {item!r} in queue {queue!r} was reopened after your decision",
                hint="it is back in the queue; review it again when it comes to you",
            )
        later = conn.execute(
            st.LATER_DECISION, {"task_id": task["id"], "after": last["id"]}
        ).first()
        if later is not None:
            raise QueueError(
                f"{later.name} decided item {item!r} in queue {queue!r} after you, so your "
                "decision can no longer be undone",
                hint=reopen,
            )
        if last["kind"] == "review" and task["state"] == "adjudication":
            busy = conn.execute(
                st.LIVE_ON_TASK, {"task_id": task["id"], "kind": "adjudication", "now": now}
            ).first()
            if busy is not None:
                raise QueueError(
                    f"{busy.name} is adjudicating item {item!r} in queue {queue!r} now",
                    hint=f"ask {busy.name} to take your correction into account",
                )

    # -- reading ----------------------------------------------------------------------------

    def task(self, queue: str, item_id: str) -> Task:
        """One queued item, with its state and (once decided) final label."""
        with self._read() as conn:
            return _task(queue, self._task_row(conn, self._queue_row(conn, queue), item_id))

    def tasks(self, queue: str, *, state: TaskState | None = None) -> list[Task]:
        """A queue's items in priority order, optionally only those in one state."""
        with self._read() as conn:
            q = self._queue_row(conn, queue)
            query = select(tasks).where(tasks.c.queue_id == q["id"])
            if state is not None:
                query = query.where(tasks.c.state == state)
            rows = conn.execute(query.order_by(tasks.c.priority, tasks.c.id)).mappings()
            return [_task(queue, row) for row in rows]

    def position(self, queue: str, item_id: str) -> int:
        """How many pending items come before this one in priority order (held or waiting).

        0 for an item the queue does not have. Cheap while the item is near the front of the
        queue, as a claimed item is: a row-value comparison walks the (queue, state, priority,
        id) index only up to the item.
        """
        with self._read() as conn:
            count: int = conn.execute(
                st.POSITION, {"queue": queue, "item_id": item_id}
            ).scalar_one()
            if count == 0:
                self._queue_row(conn, queue)  # an unknown queue is an error, not "first"
            return count

    def pending_count(self, queue: str) -> int:
        """Pending items in a queue: one index scan, lighter than `stats`."""
        with self._read() as conn:
            q = self._queue_row(conn, queue)
            count: int = conn.execute(
                select(func.count()).where(tasks.c.queue_id == q["id"], tasks.c.state == "pending")
            ).scalar_one()
            return count

    def task_lines(self, queue: str) -> list[TaskLine]:
        """Every task of a queue without the item and draft columns, for dashboards."""
        with self._read() as conn:
            q = self._queue_row(conn, queue)
            rows = conn.execute(
                select(
                    tasks.c.item_id,
                    tasks.c.state,
                    tasks.c.draft_label,
                    tasks.c.principle_ids,
                    tasks.c.created_at,
                    tasks.c.updated_at,
                ).where(tasks.c.queue_id == q["id"])
            ).all()
        return [TaskLine(r[0], r[1], r[2], tuple(r[3] or ()), r[4], r[5]) for r in rows]

    def decision_lines(self, queue: str) -> list[DecisionLine]:
        """Every decision of a queue, oldest first, without the edited fields."""
        with self._read() as conn:
            q = self._queue_row(conn, queue)
            rows = conn.execute(
                select(
                    tasks.c.item_id,
                    users.c.name,
                    decisions.c.kind,
                    decisions.c.action,
                    decisions.c.label,
                    decisions.c.edit,
                    decisions.c.note,
                    decisions.c.seconds,
                    decisions.c.round,
                    decisions.c.created_at,
                )
                .join(tasks, tasks.c.id == decisions.c.task_id)
                .join(users, users.c.id == decisions.c.user_id)
                .where(tasks.c.queue_id == q["id"])
                .order_by(decisions.c.id)
            ).all()
        # JSON columns store None as JSON null, so whether a decision edited is read in Python.
        return [
            DecisionLine(r[0], r[1], r[2], r[3], r[4], r[5] is not None, r[6], r[7], r[8], r[9])
            for r in rows
        ]

    def _decisions(self, conn: Connection, *where: ColumnElement[bool]) -> list[Decision]:
        return [_decision(row) for row in conn.execute(st.DECISIONS.where(*where)).mappings()]

    def decisions(self, queue: str, item_id: str | None = None) -> list[Decision]:
        """Every decision ever made in a queue (or on one item), oldest first, all rounds."""
        with self._read() as conn:
            q = self._queue_row(conn, queue)
            where = [tasks.c.queue_id == q["id"]]
            if item_id is not None:
                where.append(tasks.c.id == self._task_row(conn, q, item_id)["id"])
            return self._decisions(conn, *where)

    def history(self, queue: str, item_id: str) -> list[Event]:
        """The append-only event log of one item, oldest first."""
        with self._read() as conn:
            q = self._queue_row(conn, queue)
            task = self._task_row(conn, q, item_id)
            rows = conn.execute(
                select(events).where(events.c.task_id == task["id"]).order_by(events.c.id)
            ).mappings()
            return [
                Event(
                    id=row["id"],
                    queue=queue,
                    item_id=item_id,
                    actor=row["actor"],
                    at=row["at"],
                    kind=row["kind"],
                    before=row["before"],
                    after=row["after"],
                )
                for row in rows
            ]

    def _round_decisions(self, conn: Connection, q: RowMapping) -> dict[int, list[RowMapping]]:
        rows = conn.execute(
            select(decisions, users.c.name.label("reviewer"))
            .join(
                tasks, and_(tasks.c.id == decisions.c.task_id, tasks.c.round == decisions.c.round)
            )
            .join(users, users.c.id == decisions.c.user_id)
            .where(tasks.c.queue_id == q["id"])
            .order_by(decisions.c.id)
        ).mappings()
        by_task: defaultdict[int, list[RowMapping]] = defaultdict(list)
        for row in rows:
            by_task[row["task_id"]].append(row)
        return by_task

    def outcomes(self, queue: str) -> list[Outcome]:
        """What ships for every item of a queue: decided items carry the human or adjudicated
        label, the others the critic's, with reviewer count and agreement (for export merging)."""
        with self._read() as conn:
            q = self._queue_row(conn, queue)
            by_task = self._round_decisions(conn, q)
            rows = conn.execute(
                select(tasks).where(tasks.c.queue_id == q["id"]).order_by(tasks.c.id)
            ).mappings()
            result = []
            for row in rows:
                round_decisions = by_task.get(row["id"], [])
                done = row["state"] == "done"
                result.append(
                    Outcome(
                        item_id=row["item_id"],
                        state=row["state"],
                        label=row["final_label"] if done else row["draft_label"],
                        source=row["final_source"] if done else "critic",
                        rejected=row["rejected"],
                        edit=row["final_edit"] if done else None,
                        critic_label=row["draft_label"],
                        reviewers=len({d["user_id"] for d in round_decisions}),
                        agreement=item_agreement(
                            [
                                value
                                for d in round_decisions
                                if (value := rating(d["kind"], d["action"], d["label"])) is not None
                            ]
                        ),
                    )
                )
            return result

    def ratings(self, queue: str, *, principle: str | None = None) -> dict[str, dict[str, str]]:
        """Reviewers' labels in the current round, `{item_id: {reviewer: label}}`.

        A rejection counts as the label `REJECTED`; escalations and adjudications are left out.

        Args:
            principle: only items that cite this principle id.
        """
        with self._read() as conn:
            return self._ratings(conn, self._queue_row(conn, queue), principle)

    def _ratings(
        self, conn: Connection, q: RowMapping, principle: str | None
    ) -> dict[str, dict[str, str]]:
        rows = conn.execute(
            select(
                tasks.c.item_id,
                tasks.c.principle_ids,
                users.c.name,
                decisions.c.action,
                decisions.c.label,
                decisions.c.kind,
            )
            .join(
                tasks, and_(tasks.c.id == decisions.c.task_id, tasks.c.round == decisions.c.round)
            )
            .join(users, users.c.id == decisions.c.user_id)
            .where(tasks.c.queue_id == q["id"], decisions.c.kind == "review")
            .order_by(decisions.c.id)
        ).mappings()
        result: defaultdict[str, dict[str, str]] = defaultdict(dict)
        for row in rows:
            value = rating(row["kind"], row["action"], row["label"])
            if value is not None and (principle is None or principle in row["principle_ids"]):
                result[row["item_id"]][row["name"]] = value
        return dict(result)

    def agreement(self, queue: str) -> AgreementReport:
        """Agreement in a queue: overall, per cited principle, per reviewer, critic vs human."""
        with self._read() as conn:
            q = self._queue_row(conn, queue)
            ratings = self._ratings(conn, q, None)
            rows = conn.execute(
                select(
                    tasks.c.item_id,
                    tasks.c.principle_ids,
                    tasks.c.draft_label,
                    tasks.c.state,
                    tasks.c.final_label,
                    tasks.c.rejected,
                ).where(tasks.c.queue_id == q["id"])
            ).all()
        final = {
            row.item_id: REJECTED if row.rejected else row.final_label
            for row in rows
            if row.state == "done"
        }
        return report(
            ratings,
            groups={row.item_id: row.principle_ids for row in rows},
            critic={row.item_id: row.draft_label for row in rows},
            final=final,
            order=q["labels"] if q["ordinal"] else None,
        )

    def stats(self, queue: str) -> QueueStats:
        """Counts per state, live claims, decisions per action, override and escalation rates."""
        with self._read() as conn:
            q = self._queue_row(conn, queue)
            now = self._now()
            states: Counter[str] = Counter(
                dict(
                    conn.execute(
                        select(tasks.c.state, func.count())
                        .where(tasks.c.queue_id == q["id"])
                        .group_by(tasks.c.state)
                    ).all()
                )
            )
            rejected = conn.execute(
                select(func.count()).where(tasks.c.queue_id == q["id"], tasks.c.rejected)
            ).scalar_one()
            claimed = conn.execute(
                select(func.count())
                .select_from(claims)
                .join(tasks, tasks.c.id == claims.c.task_id)
                .where(
                    tasks.c.queue_id == q["id"],
                    claims.c.ended_at.is_(None),
                    claims.c.expires_at > now,
                )
            ).scalar_one()
            overridden = or_(
                decisions.c.action == "reject",
                decisions.c.label.is_distinct_from(tasks.c.draft_label),
            )
            per_action = conn.execute(
                select(
                    decisions.c.kind,
                    decisions.c.action,
                    func.count(),
                    func.sum(case((overridden, 1), else_=0)),
                    func.sum(decisions.c.seconds),
                )
                .join(tasks, tasks.c.id == decisions.c.task_id)
                .where(tasks.c.queue_id == q["id"])
                .group_by(decisions.c.kind, decisions.c.action)
            ).all()
        actions: Counter[str] = Counter()
        adjudications = overrides = 0
        seconds = 0.0
        for kind, action, count, overridden_count, spent in per_action:
            if kind == "adjudication":
                adjudications += count
                continue
            actions[action] += count
            seconds += spent or 0.0
            if action != "escalate":
                overrides += overridden_count or 0
        reviews = sum(actions.values())
        judged = reviews - actions["escalate"]
        return QueueStats(
            queue=queue,
            tasks=sum(states.values()),
            pending=states["pending"],
            adjudication=states["adjudication"],
            done=states["done"],
            rejected=rejected,
            claimed=claimed,
            reviews=reviews,
            adjudications=adjudications,
            actions={a: actions[a] for a in ACTIONS},
            override_rate=overrides / judged if judged else None,
            escalation_rate=actions["escalate"] / reviews if reviews else None,
            mean_seconds=seconds / reviews if reviews else None,
        )


# -- rows to values ---------------------------------------------------------------------------


def _decision(row: Mapping[Any, Any]) -> Decision:
    return Decision(
        id=row["id"],
        queue=row["queue"],
        item_id=row["item_id"],
        reviewer=row["reviewer"],
        kind=row["kind"],
        round=row["round"],
        action=row["action"],
        label=row["label"],
        edit=row["edit"],
        note=row["note"],
        seconds=row["seconds"],
        decided_at=row["created_at"],
    )


def _snapshot(task: Mapping[Any, Any]) -> dict[str, Any]:
    keys = ("state", "round", "reviews", "final_label", "final_source", "rejected")
    return {key: task[key] for key in keys}


def _queue(row: RowMapping) -> Queue:
    return Queue(
        name=row["name"],
        overlap=row["overlap"],
        blind=row["blind"],
        lease_seconds=row["lease_seconds"],
        labels=None if row["labels"] is None else tuple(row["labels"]),
        ordinal=row["ordinal"],
        created_at=row["created_at"],
    )


def _user(row: RowMapping) -> User:
    return User(
        name=row["name"],
        role=row["role"],
        active=row["active"],
        password_hash=row["password_hash"],
        created_at=row["created_at"],
        session_epoch=row["session_epoch"],
    )


def _task(queue: str, row: Mapping[Any, Any]) -> Task:
    return Task(
        queue=queue,
        item_id=row["item_id"],
        item=row["item"],
        draft=row["draft"],
        draft_label=row["draft_label"],
        confidence=row["confidence"],
        route_reason=row["route_reason"],
        principle_ids=tuple(row["principle_ids"]),
        priority=row["priority"],
        state=row["state"],
        round=row["round"],
        reviews=row["reviews"],
        final_label=row["final_label"],
        final_source=row["final_source"],
        final_edit=row["final_edit"],
        rejected=row["rejected"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )
