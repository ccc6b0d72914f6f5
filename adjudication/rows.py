"""Database rows as the package's values (`Queue`, `User`, `Task`, `Decision`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import RowMapping

from .models import Decision, Queue, Task, User


def decision_of(row: Mapping[Any, Any]) -> Decision:
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


def snapshot(task: Mapping[Any, Any]) -> dict[str, Any]:
    keys = ("state", "round", "reviews", "final_label", "final_source", "rejected")
    return {key: task[key] for key in keys}


def queue_of(row: RowMapping) -> Queue:
    return Queue(
        name=row["name"],
        overlap=row["overlap"],
        blind=row["blind"],
        lease_seconds=row["lease_seconds"],
        labels=None if row["labels"] is None else tuple(row["labels"]),
        ordinal=row["ordinal"],
        created_at=row["created_at"],
        label_descriptions=row.get("label_descriptions"),
        gold_rate=row.get("gold_rate") or 0.0,
    )


def user_of(row: RowMapping) -> User:
    return User(
        name=row["name"],
        role=row["role"],
        active=row["active"],
        password_hash=row["password_hash"],
        created_at=row["created_at"],
        session_epoch=row["session_epoch"],
    )


def task_of(queue: str, row: Mapping[Any, Any]) -> Task:
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
        origin=row.get("origin"),
        answer=row.get("answer") or "label",
    )
