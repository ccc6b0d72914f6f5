"""Schema migrations, as code, applied in order when a store is opened.

Each migration is a function of a connection inside the migrating transaction and the time of
migrating; its position in `MIGRATIONS` (1-based) is the schema version it produces. A migration
is history: once released it never changes, which is why migrations spell out their tables
instead of using `schema.py` (that module describes the newest shape; a test checks that the two
end up the same).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Column,
    Connection,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    bindparam,
    insert,
    literal,
    select,
    text,
    true,
)

from . import search, versions
from .errors import StoreError
from .schema import UTCDateTime

Migration = Callable[[Connection, datetime], None]


def _001_initial(conn: Connection, now: datetime) -> None:
    md = MetaData()
    Table(
        "queues",
        md,
        Column("id", Integer, primary_key=True),
        Column("name", String(200), nullable=False, unique=True),
        Column("overlap", Integer, nullable=False),
        Column("blind", Boolean, nullable=False),
        Column("lease_seconds", Integer, nullable=False),
        Column("labels", JSON, nullable=True),
        Column("ordinal", Boolean, nullable=False),
        Column("created_at", UTCDateTime, nullable=False),
        CheckConstraint("overlap >= 1", name="ck_queues_overlap"),
        CheckConstraint("lease_seconds >= 1", name="ck_queues_lease"),
    )
    Table(
        "users",
        md,
        Column("id", Integer, primary_key=True),
        Column("name", String(200), nullable=False, unique=True),
        Column("role", String(20), nullable=False),
        Column("password_hash", Text, nullable=True),
        Column("active", Boolean, nullable=False),
        Column("created_at", UTCDateTime, nullable=False),
        CheckConstraint("role IN ('reviewer', 'adjudicator', 'admin')", name="ck_users_role"),
    )
    Table(
        "tasks",
        md,
        Column("id", Integer, primary_key=True),
        Column("queue_id", Integer, ForeignKey("queues.id"), nullable=False),
        Column("item_id", String(500), nullable=False),
        Column("item", JSON, nullable=False),
        Column("draft", JSON, nullable=False),
        Column("draft_label", Text, nullable=True),
        Column("confidence", Float, nullable=True),
        Column("route_reason", String(100), nullable=True),
        Column("principle_ids", JSON, nullable=False),
        Column("priority", Float, nullable=False),
        Column("state", String(20), nullable=False),
        Column("round", Integer, nullable=False),
        Column("reviews", Integer, nullable=False),
        Column("final_label", Text, nullable=True),
        Column("final_source", String(20), nullable=True),
        Column("final_edit", JSON, nullable=True),
        Column("rejected", Boolean, nullable=False),
        Column("created_at", UTCDateTime, nullable=False),
        Column("updated_at", UTCDateTime, nullable=False),
        UniqueConstraint("queue_id", "item_id", name="uq_tasks_queue_item"),
        CheckConstraint("state IN ('pending', 'adjudication', 'done')", name="ck_tasks_state"),
        Index("ix_tasks_pick", "queue_id", "state", "priority", "id"),
    )
    Table(
        "claims",
        md,
        Column("id", Integer, primary_key=True),
        Column("task_id", Integer, ForeignKey("tasks.id"), nullable=False),
        Column("user_id", Integer, ForeignKey("users.id"), nullable=False),
        Column("round", Integer, nullable=False),
        Column("kind", String(20), nullable=False),
        Column("token", String(64), nullable=False, unique=True),
        Column("claimed_at", UTCDateTime, nullable=False),
        Column("expires_at", UTCDateTime, nullable=False),
        Column("ended_at", UTCDateTime, nullable=True),
        Column("end_reason", String(20), nullable=True),
        Index("ix_claims_task", "task_id", "ended_at"),
        Index("ix_claims_user", "user_id", "ended_at"),
    )
    Table(
        "decisions",
        md,
        Column("id", Integer, primary_key=True),
        Column("task_id", Integer, ForeignKey("tasks.id"), nullable=False),
        Column("claim_id", Integer, ForeignKey("claims.id"), nullable=False, unique=True),
        Column("user_id", Integer, ForeignKey("users.id"), nullable=False),
        Column("round", Integer, nullable=False),
        Column("kind", String(20), nullable=False),
        Column("action", String(20), nullable=False),
        Column("label", Text, nullable=True),
        Column("edit", JSON, nullable=True),
        Column("note", Text, nullable=True),
        Column("seconds", Float, nullable=False),
        Column("created_at", UTCDateTime, nullable=False),
        UniqueConstraint("task_id", "user_id", "round", "kind", name="uq_decisions_once"),
        Index("ix_decisions_task", "task_id", "round"),
    )
    Table(
        "events",
        md,
        Column("id", Integer, primary_key=True),
        Column("queue_id", Integer, ForeignKey("queues.id"), nullable=True),
        Column("task_id", Integer, ForeignKey("tasks.id"), nullable=True),
        Column("actor", String(200), nullable=True),
        Column("at", UTCDateTime, nullable=False),
        Column("kind", String(40), nullable=False),
        Column("before", JSON, nullable=True),
        Column("after", JSON, nullable=True),
        Index("ix_events_task", "task_id", "id"),
    )
    md.create_all(conn)


def _002_queue_members(conn: Connection, now: datetime) -> None:
    """Who works in which queue. Until now every user could work in every queue, so every
    existing reviewer and adjudicator becomes a member of every existing queue."""
    md = MetaData()
    # Stand-ins, only so that the foreign keys below resolve; they create nothing.
    Table("queues", md, Column("id", Integer, primary_key=True))
    Table("users", md, Column("id", Integer, primary_key=True), Column("role", String(20)))
    Table("decisions", md, Column("id", Integer, primary_key=True), Column("user_id", Integer))
    members = Table(
        "queue_members",
        md,
        Column("queue_id", Integer, ForeignKey("queues.id"), primary_key=True),
        Column("user_id", Integer, ForeignKey("users.id"), primary_key=True),
        Column("added_at", UTCDateTime, nullable=False),
        Index("ix_queue_members_user", "user_id"),
    )
    members.create(conn)
    # "Undo last" looks up a reviewer's newest decision.
    Index(
        "ix_decisions_user", md.tables["decisions"].c.user_id, md.tables["decisions"].c.id
    ).create(conn)
    q, u = md.tables["queues"], md.tables["users"]
    conn.execute(
        insert(members).from_select(
            ["queue_id", "user_id", "added_at"],
            select(q.c.id, u.c.id, literal(now, UTCDateTime()))
            .select_from(q.join(u, true()))
            .where(u.c.role != "admin"),
        )
    )


def _003_web_sessions(conn: Connection, now: datetime) -> None:
    """What the review web app keeps: each user's session epoch (bumped at log-out, password
    change and deactivation, which ends every session issued before), a blind reviewer's
    recorded pick on their claim, and the secret that signs cookies when none is configured."""
    conn.execute(text("ALTER TABLE users ADD COLUMN session_epoch INTEGER NOT NULL DEFAULT 0"))
    conn.execute(text("ALTER TABLE claims ADD COLUMN pick TEXT"))
    md = MetaData()
    Table(
        "app_secrets",
        md,
        Column("name", String(100), primary_key=True),
        Column("value", Text, nullable=False),
        Column("created_at", UTCDateTime, nullable=False),
    ).create(conn)


def _004_task_origin(conn: Connection, now: datetime) -> None:
    """The seam with the runs that feed the queues: an indexed `origin` per task (tasks that
    critic queued before carried it as `run_id` and `item_id` inside their draft, and get
    `RUN/ITEM` from there); what a task's decision settles (`answer`: a label, or a revision);
    and the label descriptions a queue shows its reviewers."""
    conn.execute(text("ALTER TABLE tasks ADD COLUMN origin VARCHAR(600)"))
    conn.execute(text("ALTER TABLE tasks ADD COLUMN answer VARCHAR(20) NOT NULL DEFAULT 'label'"))
    conn.execute(text("ALTER TABLE queues ADD COLUMN label_descriptions JSON"))
    md = MetaData()
    legacy = Table(
        "tasks",
        md,
        Column("id", Integer, primary_key=True),
        Column("item_id", String(500)),
        Column("draft", JSON),
        Column("origin", String(600)),
    )
    found = conn.execute(select(legacy.c.id, legacy.c.item_id, legacy.c.draft)).all()
    updates = [
        {"tid": tid, "origin": f"{draft['run_id']}/{draft.get('item_id') or item_id}"}
        for tid, item_id, draft in found
        if isinstance(draft, dict) and draft.get("run_id")
    ]
    for start in range(0, len(updates), 1000):
        conn.execute(
            legacy.update()
            .where(legacy.c.id == bindparam("tid"))
            .values(origin=bindparam("origin")),
            updates[start : start + 1000],
        )
    Index("ix_tasks_origin", legacy.c.origin).create(conn)
    if conn.dialect.name == "postgresql":
        conn.execute(
            text(
                "ALTER TABLE tasks ADD CONSTRAINT ck_tasks_answer "
                "CHECK (answer IN ('label', 'revision'))"
            )
        )


def _005_gold_items(conn: Connection, now: datetime) -> None:
    """Gold items: a task's known answer (`gold_label`), which measures reviewers, and the share
    of each reviewer's items that are gold (`queues.gold_rate`)."""
    conn.execute(text("ALTER TABLE tasks ADD COLUMN gold_label TEXT"))
    conn.execute(text("ALTER TABLE queues ADD COLUMN gold_rate FLOAT NOT NULL DEFAULT 0"))


def _006_webhooks(conn: Connection, now: datetime) -> None:
    """Decision events for webhooks: the URLs, and a delivery log kept until each event is
    delivered (so a restart loses none)."""
    md = MetaData()
    Table("events", md, Column("id", Integer, primary_key=True))  # for the foreign key only
    Table(
        "webhooks",
        md,
        Column("id", Integer, primary_key=True),
        Column("url", String(2000), nullable=False, unique=True),
        Column("since_event", Integer, nullable=False),
        Column("cursor", Integer, nullable=False),
        Column("created_at", UTCDateTime, nullable=False),
    ).create(conn)
    Table(
        "webhook_deliveries",
        md,
        Column("id", Integer, primary_key=True),
        Column("webhook_id", Integer, ForeignKey("webhooks.id"), nullable=False),
        Column("event_id", Integer, ForeignKey("events.id"), nullable=False),
        Column("position", Integer, nullable=False),
        Column("payload", JSON, nullable=False),
        Column("state", String(20), nullable=False),
        Column("attempts", Integer, nullable=False),
        Column("next_attempt_at", UTCDateTime, nullable=False),
        Column("locked_until", UTCDateTime, nullable=True),
        Column("last_error", Text, nullable=True),
        Column("created_at", UTCDateTime, nullable=False),
        Column("delivered_at", UTCDateTime, nullable=True),
        UniqueConstraint("webhook_id", "event_id", "position", name="uq_webhook_deliveries_event"),
        CheckConstraint("state IN ('pending', 'delivered')", name="ck_webhook_deliveries_state"),
        Index("ix_webhook_deliveries_due", "webhook_id", "state", "event_id", "position"),
    ).create(conn)


def _007_queue_settings(conn: Connection, now: datetime) -> None:
    """Queues that change and explain themselves: a description, the item fields hidden from
    reviewers, an archived time; per task, the guidelines it is reviewed under and its pinned
    blindness (set when the queue's blindness changes after the task was claimed); and the
    guidelines themselves, one set per version of what feeds the queue."""
    conn.execute(text("ALTER TABLE queues ADD COLUMN description TEXT"))
    conn.execute(text("ALTER TABLE queues ADD COLUMN hidden_fields JSON"))
    conn.execute(text(f"ALTER TABLE queues ADD COLUMN archived_at {_timestamp(conn)}"))
    conn.execute(text("ALTER TABLE tasks ADD COLUMN guidelines VARCHAR(200)"))
    conn.execute(text("ALTER TABLE tasks ADD COLUMN blind BOOLEAN"))
    md = MetaData()
    Table("queues", md, Column("id", Integer, primary_key=True))  # for the foreign key only
    Table(
        "queue_guidelines",
        md,
        Column("queue_id", Integer, ForeignKey("queues.id"), primary_key=True),
        Column("key", String(200), primary_key=True),
        Column("content", JSON, nullable=False),
        Column("created_at", UTCDateTime, nullable=False),
    ).create(conn)


def _timestamp(conn: Connection) -> str:
    """The SQL type `UTCDateTime` columns have on this database."""
    return "TIMESTAMP WITHOUT TIME ZONE" if conn.dialect.name == "postgresql" else "DATETIME"


def _008_item_search(conn: Connection, now: datetime) -> None:
    """The item list and precedents: full-text indexes of items, drafts and notes (FTS5 on
    SQLite, tsvector with GIN on PostgreSQL), filled from the tasks there are; indexes for the
    list's keyset orders; a task's `assignee` (bulk reassign) and `exemplar` mark."""
    conn.execute(text("ALTER TABLE tasks ADD COLUMN assignee INTEGER REFERENCES users(id)"))
    conn.execute(text("ALTER TABLE tasks ADD COLUMN exemplar BOOLEAN NOT NULL DEFAULT false"))
    md = MetaData()
    legacy = Table(
        "tasks",
        md,
        Column("id", Integer, primary_key=True),
        Column("queue_id", Integer),
        Column("priority", Float),
        Column("updated_at", UTCDateTime),
        Column("state", String(20)),
        Column("assignee", Integer),
    )
    c = legacy.c
    Index("ix_tasks_list_priority", c.queue_id, c.priority, c.id).create(conn)
    Index("ix_tasks_list_updated", c.queue_id, c.updated_at, c.id).create(conn)
    Index("ix_tasks_list_id", c.queue_id, c.id).create(conn)
    Index("ix_tasks_assignee", c.queue_id, c.assignee, c.state, c.priority, c.id).create(conn)
    # The indexes hold derived data only, so filling them with today's code is right: a later
    # change to what is indexed rebuilds them the same way.
    search.create(conn)
    search.rebuild(conn)


MIGRATIONS: tuple[Migration, ...] = (
    _001_initial,
    _002_queue_members,
    _003_web_sessions,
    _004_task_origin,
    _005_gold_items,
    _006_webhooks,
    _007_queue_settings,
    _008_item_search,
)
LATEST = len(MIGRATIONS)


def current_version(conn: Connection) -> int:
    """The queues' schema version recorded in the database (0 for a new, empty one)."""
    return versions.current(conn, COMPONENT)


#: This package's name in the shared `schema_versions` table.
COMPONENT = "adjudication"


def migrate(conn: Connection, now: datetime) -> list[int]:
    """Bring the database up to `LATEST` inside the caller's write transaction.

    Returns:
        The versions applied now (empty when the database was already current).
    """
    versions.ensure(conn)  # on PostgreSQL, one migrating process at a time from here on
    have = current_version(conn)
    if have > LATEST:
        raise StoreError(
            f"the queue database has schema version {have}, newer than this program "
            f"understands (version {LATEST})",
            hint="upgrade critic to the version that last wrote this database",
        )
    applied = []
    for version in range(have + 1, LATEST + 1):
        MIGRATIONS[version - 1](conn, now)
        versions.record(conn, COMPONENT, version, now)
        applied.append(version)
    return applied
