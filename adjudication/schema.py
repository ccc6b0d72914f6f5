"""The current shape of the queue tables (SQLAlchemy Core). `migrations` builds it on disk."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, stored naive so both databases agree."""

    impl = DateTime
    cache_ok = True

    @property
    def python_type(self) -> type[datetime]:
        return datetime

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("queue times must be timezone-aware (the clock must return UTC)")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


metadata = MetaData()

queues = Table(
    "queues",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("overlap", Integer, nullable=False),
    Column("blind", Boolean, nullable=False),
    Column("lease_seconds", Integer, nullable=False),
    Column("labels", JSON, nullable=True),
    Column("ordinal", Boolean, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    # `{label: description}`: what each label means, shown to reviewers (from a constitution).
    Column("label_descriptions", JSON, nullable=True),
    # Share of each reviewer's items that are gold items (known answers), interleaved.
    Column("gold_rate", Float, nullable=False, server_default="0"),
    # What the queue is for, shown to its reviewers; the item fields they must not see (gold
    # columns such as a dataset's own preference); archived queues are hidden and take no claims.
    Column("description", Text, nullable=True),
    Column("hidden_fields", JSON, nullable=True),
    Column("archived_at", UTCDateTime, nullable=True),
    CheckConstraint("overlap >= 1", name="ck_queues_overlap"),
    CheckConstraint("lease_seconds >= 1", name="ck_queues_lease"),
)

users = Table(
    "users",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("role", String(20), nullable=False),
    Column("password_hash", Text, nullable=True),
    Column("active", Boolean, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    # Bumped at log-out, password change and deactivation: sessions carry the epoch they began in.
    Column("session_epoch", Integer, nullable=False, server_default="0"),
    CheckConstraint("role IN ('reviewer', 'adjudicator', 'admin')", name="ck_users_role"),
)

tasks = Table(
    "tasks",
    metadata,
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
    # Where the item came from, opaque to the queues (critic: "RUN/ITEM"): one indexed query
    # answers "the decisions for these items" for a batch of them.
    Column("origin", String(600), nullable=True),
    # What a decision settles: a label, or a text such as a revision (accepted or edited as is).
    Column("answer", String(20), nullable=False, server_default="label"),
    # A gold item's known answer: every reviewer sees it once; it never settles or ships.
    Column("gold_label", Text, nullable=True),
    # Which of the queue's guidelines (`queue_guidelines.key`) the item is reviewed under.
    Column("guidelines", String(200), nullable=True),
    # The queue's blindness as it held when the item was first claimed, pinned when the queue's
    # blindness changes later (NULL: the item follows the queue).
    Column("blind", Boolean, nullable=True),
    # The reviewer an adjudicator handed the item to (bulk reassign): only they may claim it for
    # review until they have decided it in the current round; None: anyone in the queue may.
    Column("assignee", Integer, ForeignKey("users.id"), nullable=True),
    # An adjudicator marked it as a candidate example for the constitution (`critic
    # constitution examples`).
    Column("exemplar", Boolean, nullable=False, server_default=false()),
    UniqueConstraint("queue_id", "item_id", name="uq_tasks_queue_item"),
    CheckConstraint("state IN ('pending', 'adjudication', 'done')", name="ck_tasks_state"),
    CheckConstraint("answer IN ('label', 'revision')", name="ck_tasks_answer"),
    Index("ix_tasks_pick", "queue_id", "state", "priority", "id"),
    Index("ix_tasks_origin", "origin"),
    # The item list pages by keyset in each of its orders.
    Index("ix_tasks_list_priority", "queue_id", "priority", "id"),
    Index("ix_tasks_list_updated", "queue_id", "updated_at", "id"),
    Index("ix_tasks_list_id", "queue_id", "id"),
    Index("ix_tasks_assignee", "queue_id", "assignee", "state", "priority", "id"),
)

claims = Table(
    "claims",
    metadata,
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
    # A blind reviewer's own label, recorded before the draft is shown; it cannot change after.
    Column("pick", Text, nullable=True),
    Index("ix_claims_task", "task_id", "ended_at"),
    Index("ix_claims_user", "user_id", "ended_at"),
)

decisions = Table(
    "decisions",
    metadata,
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
    # The database itself refuses a second decision by one reviewer on one item in one round.
    UniqueConstraint("task_id", "user_id", "round", "kind", name="uq_decisions_once"),
    Index("ix_decisions_task", "task_id", "round"),
    Index("ix_decisions_user", "user_id", "id"),
)

# Who works in which queue: reviewers and adjudicators see and claim only their queues' items;
# admins see every queue.
queue_members = Table(
    "queue_members",
    metadata,
    Column("queue_id", Integer, ForeignKey("queues.id"), primary_key=True),
    Column("user_id", Integer, ForeignKey("users.id"), primary_key=True),
    Column("added_at", UTCDateTime, nullable=False),
    Index("ix_queue_members_user", "user_id"),
)

events = Table(
    "events",
    metadata,
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

# What reviewers read beside each item: one set of guidelines per version of what feeds the
# queue (critic: per constitution hash), as a JSON object (`adjudication.guidelines.Guidelines`).
queue_guidelines = Table(
    "queue_guidelines",
    metadata,
    Column("queue_id", Integer, ForeignKey("queues.id"), primary_key=True),
    Column("key", String(200), primary_key=True),
    Column("content", JSON, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

# Secrets the app generates and keeps (the web app's cookie-signing key when none is given).
app_secrets = Table(
    "app_secrets",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("value", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

# Decision events sent to webhooks (`adjudication.webhooks`): one row per URL, and one delivery
# per (URL, event), kept until delivered, so a restart loses none.
webhooks = Table(
    "webhooks",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("url", String(2000), nullable=False, unique=True),
    # Events up to this id were in the database before the webhook was added: not sent unless
    # replayed.
    Column("since_event", Integer, nullable=False),
    # The newest event id the collector has looked at.
    Column("cursor", Integer, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("webhook_id", Integer, ForeignKey("webhooks.id"), nullable=False),
    Column("event_id", Integer, ForeignKey("events.id"), nullable=False),
    # Which decision of the event (an `imported` event holds several; others one, at 0).
    Column("position", Integer, nullable=False),
    Column("payload", JSON, nullable=False),
    Column("state", String(20), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    # A sender's lease on the delivery while it posts, so two senders do not post it at once.
    Column("locked_until", UTCDateTime, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("delivered_at", UTCDateTime, nullable=True),
    UniqueConstraint("webhook_id", "event_id", "position", name="uq_webhook_deliveries_event"),
    CheckConstraint("state IN ('pending', 'delivered')", name="ck_webhook_deliveries_state"),
    Index("ix_webhook_deliveries_due", "webhook_id", "state", "event_id", "position"),
)
# The full-text indexes (`search.py` writes and reads them) differ by database, so they are not
# in `metadata`; migration 8 creates them:
# - SQLite: FTS5 tables `task_search(item, draft, notes)` with one row per task (rowid = task id)
#   and `precedent_search(item, constitution UNINDEXED)` with one row per decided task;
# - PostgreSQL: `task_search(task_id, queue_id, everything tsvector)` (item text weighted A,
#   draft B, notes C) and
#   `precedent_search(task_id, queue_id, constitution, item tsvector)`, each tsvector with a GIN
#   index, rows deleted with their task.
