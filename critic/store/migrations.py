"""The run store's migrations, as code, applied in order when a store is opened.

Each migration is a function of a connection inside the migrating transaction; its position in
`MIGRATIONS` (1-based) is the schema version it produces. A migration is history: once released it
never changes, so it spells out its tables instead of using `schema.py` (which describes the
newest shape; a test checks that migrating a new database gives exactly that schema). Append a
new migration for every change; never edit one.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy import Column, Float, ForeignKey, Index, Integer, MetaData, String, Table, Text

from adjudication import versions
from critic.errors import StoreError

Migration = Callable[[sa.Connection], None]


def _001_runs(conn: sa.Connection) -> None:
    """Runs, their items, generations and drafts, and the constitution versions they used."""
    md = MetaData()
    Table(
        "constitutions", md,
        Column("hash", String(64), primary_key=True),
        Column("constitution_id", String(64), nullable=False),
        Column("version", String(64), nullable=False),
        Column("title", Text, nullable=False),
        Column("content", Text, nullable=False),
        Column("first_used", String(32), nullable=False),
    )  # fmt: skip
    Table(
        "runs", md,
        Column("id", String(16), primary_key=True),
        Column("key", String(64), nullable=False, unique=True),
        Column("task", String(32), nullable=False),
        Column("constitution_hash", String(64), ForeignKey("constitutions.hash")),
        Column("template_hash", String(64), nullable=False),
        Column("backend", String(32), nullable=False),
        Column("model", Text, nullable=False),
        Column("params", Text, nullable=False),
        Column("input", Text, nullable=False),
        Column("created_at", String(32), nullable=False),
        Column("updated_at", String(32), nullable=False),
    )  # fmt: skip
    Table(
        "items", md,
        Column("run_id", String(16), ForeignKey("runs.id"), primary_key=True),
        Column("item_id", String(255), primary_key=True),
        Column("seq", Integer, nullable=False),
        Column("source", Text, nullable=False),
        Column("row", Text),
        Column("status", String(16), nullable=False),
        Column("reason", String(32)),
        Column("detail", Text),
        Column("updated_at", String(32), nullable=False),
        Index("ix_items_status", "run_id", "status"),
    )  # fmt: skip
    Table(
        "generations", md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("run_id", String(16), nullable=False),
        Column("item_id", String(255), nullable=False),
        Column("stage", String(32), nullable=False),
        Column("attempt", Integer, nullable=False),
        Column("texts", Text, nullable=False),
        Column("finish_reasons", Text, nullable=False),
        Column("logprobs", Text),
        Column("prompt_tokens", Integer, nullable=False),
        Column("completion_tokens", Integer, nullable=False),
        Column("latency_s", Float, nullable=False),
        Column("error", Text),
        Column("created_at", String(32), nullable=False),
        Index("ix_generations_item", "run_id", "item_id"),
    )  # fmt: skip
    Table(
        "drafts", md,
        Column("run_id", String(16), primary_key=True),
        Column("item_id", String(255), primary_key=True),
        Column("label", Text),
        Column("score", Float),
        Column("rationale", Text),
        Column("output", Text, nullable=False),
        Column("confidence", Float),
        Column("components", Text),
        Column("parse_attempts", Integer, nullable=False),
        Column("created_at", String(32), nullable=False),
    )  # fmt: skip
    md.create_all(conn)


def _002_routes(conn: sa.Connection) -> None:
    """Routing policies and the route each draft got under each policy."""
    md = MetaData()
    Table(
        "policies", md,
        Column("hash", String(64), primary_key=True),
        Column("content", Text, nullable=False),
        Column("created_at", String(32), nullable=False),
    )  # fmt: skip
    Table(
        "routes", md,
        Column("run_id", String(16), primary_key=True),
        Column("item_id", String(255), primary_key=True),
        Column("policy_hash", String(64), primary_key=True),
        Column("decision", String(16), nullable=False),
        Column("reason", String(32), nullable=False),
        Column("confidence", Float),
        Column("created_at", String(32), nullable=False),
    )  # fmt: skip
    md.create_all(conn)


def _003_item_leases(conn: sa.Connection) -> None:
    """Leases on pending items, so that several processes share one run (`critic.leases`)."""
    conn.execute(sa.text("ALTER TABLE items ADD COLUMN lease_owner VARCHAR(255)"))
    conn.execute(sa.text("ALTER TABLE items ADD COLUMN lease_until FLOAT"))


def _004_items_in_input_order(conn: sa.Connection) -> None:
    """An index on each run's input order, so export reads a run in order without sorting it."""
    conn.execute(sa.text("CREATE INDEX ix_items_seq ON items (run_id, seq)"))


def _005_forced_routes(conn: sa.Connection) -> None:
    """Routes made with `critic route --force` (a policy applied to a run it was not calibrated
    on, or edited by hand): such an accept carries no guarantee, and the record says so."""
    conn.execute(sa.text("ALTER TABLE routes ADD COLUMN forced BOOLEAN NOT NULL DEFAULT FALSE"))


MIGRATIONS: tuple[Migration, ...] = (
    _001_runs,
    _002_routes,
    _003_item_leases,
    _004_items_in_input_order,
    _005_forced_routes,
)
SCHEMA_VERSION = len(MIGRATIONS)


#: This package's name in the shared `schema_versions` table.
COMPONENT = "critic"

#: The run store's own version table before `schema_versions` (one row: the version). Old
#: databases have it; `migrate` moves it into `schema_versions` and drops it.
LEGACY_VERSION = Table(
    "critic_schema",
    MetaData(),
    Column("id", Integer, primary_key=True),
    Column("version", Integer, nullable=False),
)


def migrate(conn: sa.Connection) -> list[int]:
    """Bring the database up to `SCHEMA_VERSION` inside the caller's transaction.

    Returns:
        The versions applied now (empty when the database was already current).
    """
    stamp = datetime.now(UTC)
    versions.ensure(conn)
    if sa.inspect(conn).has_table(LEGACY_VERSION.name):
        old = conn.execute(sa.select(LEGACY_VERSION.c.version)).scalar() or 0
        versions.adopt(conn, COMPONENT, [(v, stamp) for v in range(1, old + 1)])
        LEGACY_VERSION.drop(conn)
    have = versions.current(conn, COMPONENT)
    if have > SCHEMA_VERSION:
        raise StoreError(
            f"the database was written by a newer critic (schema {have} > {SCHEMA_VERSION})",
            hint="upgrade critic: pip install -U critic",
        )
    applied = list(range(have + 1, SCHEMA_VERSION + 1))
    for version in applied:
        MIGRATIONS[version - 1](conn)
        versions.record(conn, COMPONENT, version, stamp)
    return applied
