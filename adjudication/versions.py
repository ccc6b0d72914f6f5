"""The schema versions of every component sharing one database, in one table.

`schema_versions` has a row `(component, version, applied_at)` for each migration applied:
`adjudication` for the review queues, `critic` for the run store. Each component migrates its own
tables and records its versions here; this module knows no component's tables. Databases made
before this table kept one version table per component (`schema_version` for the queues,
`critic_schema` for the run store); `ensure` moves the queues' history in, and `adopt` lets a
component move its own (critic does, for `critic_schema`).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Column,
    Connection,
    Integer,
    MetaData,
    String,
    Table,
    func,
    insert,
    inspect,
    select,
    text,
)

from .schema import UTCDateTime, metadata

schema_versions = Table(
    "schema_versions",
    metadata,
    Column("component", String(32), primary_key=True),
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("applied_at", UTCDateTime, nullable=False),
)

#: The queues' own version table before `schema_versions` (a row per version applied). Old
#: databases have it; `ensure` moves its rows in and drops it (kept to build such databases).
LEGACY_QUEUE_VERSIONS = Table(
    "schema_version",
    MetaData(),
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("applied_at", UTCDateTime, nullable=False),
)


_PG_VERSIONS_LOCK = 0x76657273


def ensure(conn: Connection) -> None:
    """Create `schema_versions` if missing, moving in the queues' older version table.

    On PostgreSQL this takes a transaction-level lock first, held until the caller's transaction
    ends: a migration that calls `ensure` first (both components' do) runs one process at a time,
    whichever component it is, and needs no lock of its own.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_VERSIONS_LOCK})
    schema_versions.create(conn, checkfirst=True)
    if inspect(conn).has_table(LEGACY_QUEUE_VERSIONS.name):
        rows = conn.execute(select(LEGACY_QUEUE_VERSIONS)).mappings().all()
        adopt(conn, "adjudication", [(r["version"], r["applied_at"]) for r in rows])
        LEGACY_QUEUE_VERSIONS.drop(conn)


def adopt(conn: Connection, component: str, applied: list[tuple[int, datetime]]) -> None:
    """Record versions a component applied before this table existed (unless recorded)."""
    have = current(conn, component)
    for version, when in applied:
        if version > have:
            record(conn, component, version, when)


def current(conn: Connection, component: str) -> int:
    """The newest version of `component` applied (0 for a new, empty database)."""
    version = conn.execute(
        select(func.max(schema_versions.c.version)).where(schema_versions.c.component == component)
    ).scalar()
    return int(version or 0)


def record(conn: Connection, component: str, version: int, applied_at: datetime) -> None:
    """Note that `component`'s migration `version` was applied at `applied_at`."""
    conn.execute(
        insert(schema_versions).values(component=component, version=version, applied_at=applied_at)
    )
