"""The plumbing every part of the queue store shares: engines, transactions, rows by name.

`open_store` (in `store.py`) builds a `Store`, which is this base plus, layer on layer, the read
side (`reports.Reports`), leases (`claims.Claims`) and decisions and administration (`Store`).
The concurrency rules all of them follow are written at the top of `store.py`.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

from sqlalchemy import URL, Connection, Engine, RowMapping, create_engine, event, make_url, select
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError
from sqlalchemy.pool import ConnectionPoolEntry

from . import statements as st
from .errors import NotFoundError, PermissionDenied, QueueError, StoreError
from .migrations import migrate
from .rules import suggest
from .schema import queues, tasks, users

Clock = Callable[[], datetime]

_BEGIN = "adjudication_begin"
_POOL = {"pool_size": 8, "max_overflow": 64}


def not_a_member(user: str, queue: str) -> PermissionDenied:
    return PermissionDenied(
        f"{user} is not a member of queue {queue!r}",
        hint=f"an admin can add them: critic queue assign {queue} {user}",
    )


def pick_locked(pick: str) -> QueueError:
    return QueueError(
        f"you picked {pick!r} before the draft was shown, and a blind pick cannot change",
        hint=f"confirm {pick!r}, or reject, escalate or skip the item",
    )


def utc_now() -> datetime:
    """The default clock."""
    return datetime.now(UTC)


def engine_for(url: str, busy_timeout: float) -> Engine:
    """The engine of a queue database URL: SQLite (WAL, immediate writes) or PostgreSQL."""
    example = "sqlite:///queue.db or postgresql+psycopg://user@host/dbname"
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError(f"not a database URL: {url!r}", hint=f"use {example}") from exc
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        engine = _sqlite_engine(parsed, busy_timeout)
    elif backend == "postgresql":
        engine = _postgres_engine(parsed)
    else:
        raise StoreError(f"unsupported database in {url!r}", hint=f"use {example}")
    event.listen(engine, "before_cursor_execute", _refuse_nul)
    return engine


def _refuse_nul(
    _conn: Connection,
    _cursor: Any,
    _statement: str,
    parameters: Any,
    context: Any,
    _executemany: bool,
) -> None:
    """Refuse every statement that would write or look up text holding U+0000, on both
    databases: PostgreSQL cannot store it in a text column (its driver raised, which was a 500
    in the web app), and SQLite would store what PostgreSQL refuses. Checked on the values as
    the store passed them (before JSON is encoded), so it covers labels, notes, item ids, items
    and drafts alike, for the web app, the terminal and the CLI."""
    compiled = getattr(context, "compiled_parameters", None)
    for row in compiled if compiled is not None else [parameters]:
        if not isinstance(row, Mapping) or not _holds_nul(row):
            continue
        for name, value in row.items():
            where = _nul_at(_BIND_SUFFIX.sub("", str(name)), value)
            if where is not None:
                raise QueueError(
                    f"{where}: the text contains a NUL character (\\x00), which the review "
                    "queue does not store",
                    hint="remove the NUL character (it is never part of readable text)",
                )


_BIND_SUFFIX = re.compile(r"_\d+$")  # SQLAlchemy names a compared value `item_id_1`


def _holds_nul(value: Any) -> bool:
    """Whether any string in a value (keys included) holds NUL: a loop, not recursion, as it
    runs on every row a statement sends (about 7 us for a typical queued item)."""
    stack = [value]
    while stack:
        inner = stack.pop()
        if isinstance(inner, str):
            if "\x00" in inner:
                return True
        elif isinstance(inner, Mapping):
            stack.extend(inner.keys())
            stack.extend(inner.values())
        elif isinstance(inner, list | tuple):
            stack.extend(inner)
    return False


def _nul_at(where: str, value: Any) -> str | None:
    """The path to the first string holding NUL in a value (`draft.findings[0].quote`), or None."""
    if isinstance(value, str):
        return where if "\x00" in value else None
    if isinstance(value, Mapping):
        for key, inner in value.items():
            inside = f"{where}.{key if str(key).isidentifier() else repr(key)}"
            found = _nul_at(inside, key) or _nul_at(inside, inner)
            if found is not None:
                return found
    elif isinstance(value, list | tuple):
        for index, inner in enumerate(value):
            found = _nul_at(f"{where}[{index}]", inner)
            if found is not None:
                return found
    return None


def sqlite_pragmas(dbapi_conn: Any) -> str:
    """Set what every connection to a project's SQLite file needs (WAL, so readers run beside a
    writer; foreign keys; NORMAL sync, safe under WAL); return the journal mode SQLite chose."""
    cursor = dbapi_conn.cursor()
    mode = cursor.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()
    return str(mode).lower()


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
        mode = sqlite_pragmas(dbapi_conn)
        if mode != "wal":
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


def iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat()


class StoreBase:
    """Engine, clock, transactions and row look-ups; the layers above add the operations."""

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

    def __enter__(self) -> Self:
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

    def _require_member(self, conn: Connection, q: RowMapping, u: RowMapping) -> None:
        if u["role"] == "admin":
            return
        if conn.execute(st.MEMBER, {"queue_id": q["id"], "user_id": u["id"]}).first() is None:
            raise not_a_member(u["name"], q["name"])
