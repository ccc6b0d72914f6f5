"""Small read-only queries the web app needs and `Store`'s public methods do not offer.

They run inside the store's own read transaction (`Store._read`, same package), select only the
columns they need, and use the `ix_tasks_pick` index, so they stay cheap with 100,000 tasks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, tuple_

from ..schema import decisions, queues, tasks, users
from ..store import Store


def ahead(store: Store, queue: str, item_id: str) -> int:
    """Pending items that come before this one in priority order (held by others, or waiting).

    Cheap while the item is near the front of the queue, as a claimed item is.
    """
    with store._read() as conn:
        row = conn.execute(
            select(tasks.c.queue_id, tasks.c.priority, tasks.c.id)
            .join(queues, queues.c.id == tasks.c.queue_id)
            .where(queues.c.name == queue, tasks.c.item_id == item_id)
        ).first()
        if row is None:
            return 0
        count: int = conn.execute(
            select(func.count()).where(
                tasks.c.queue_id == row.queue_id,
                tasks.c.state == "pending",
                # A row value, not an OR of two comparisons: both databases then walk the
                # (queue, state, priority, id) index only up to this item.
                tuple_(tasks.c.priority, tasks.c.id) < tuple_(row.priority, row.id),
            )
        ).scalar_one()
        return count


def pending(store: Store, queue: str) -> int:
    """Pending items in a queue (an index scan: a few ms per 10,000 items)."""
    with store._read() as conn:
        count: int = conn.execute(
            select(func.count())
            .select_from(tasks)
            .join(queues, queues.c.id == tasks.c.queue_id)
            .where(queues.c.name == queue, tasks.c.state == "pending")
        ).scalar_one()
        return count


@dataclass(frozen=True)
class TaskLine:
    """One task, without its item and draft."""

    item_id: str
    state: str
    draft_label: str | None
    principle_ids: tuple[str, ...]
    created_at: datetime
    updated_at: datetime


def task_lines(store: Store, queue: str) -> list[TaskLine]:
    """Every task of a queue, without the (large) item and draft columns."""
    with store._read() as conn:
        rows = conn.execute(
            select(
                tasks.c.item_id,
                tasks.c.state,
                tasks.c.draft_label,
                tasks.c.principle_ids,
                tasks.c.created_at,
                tasks.c.updated_at,
            )
            .join(queues, queues.c.id == tasks.c.queue_id)
            .where(queues.c.name == queue)
        ).all()
    return [
        TaskLine(r.item_id, r.state, r.draft_label, tuple(r.principle_ids or ()), r[4], r[5])
        for r in rows
    ]


@dataclass(frozen=True)
class DecisionLine:
    item_id: str
    reviewer: str
    kind: str
    action: str
    label: str | None
    edited: bool
    note: str | None
    seconds: float
    round: int
    decided_at: datetime


def decision_lines(store: Store, queue: str) -> list[DecisionLine]:
    """Every decision of a queue, oldest first."""
    with store._read() as conn:
        rows: Any = conn.execute(
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
            .join(queues, queues.c.id == tasks.c.queue_id)
            .join(users, users.c.id == decisions.c.user_id)
            .where(queues.c.name == queue)
            .order_by(decisions.c.id)
        ).all()
    # JSON columns store None as JSON null, so whether a decision edited is read in Python.
    return [DecisionLine(r[0], r[1], r[2], r[3], r[4], r[5] is not None, *r[6:]) for r in rows]
