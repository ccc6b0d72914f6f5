"""Queues that change: settings edited after creation, archive, delete, and the guidelines
reviewers read. Every change is one write transaction and one event.

What may change, and how it reaches items already in the queue:

- labels: only added once decisions use them; never a label an item's draft, a decision or a
  blind pick uses;
- overlap: items still open need the new number of reviews; lowering it settles at once the
  open items that already have enough;
- blindness: applies to items nobody has claimed yet; an item already claimed keeps the
  blindness it was claimed under (pinned on the task);
- lease time, description and hidden fields: from the next claim or page on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Connection, RowMapping, delete, exists, func, select, union, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from . import search
from . import statements as st
from .database import StoreBase
from .errors import QueueError
from .guidelines import Guidelines
from .models import Event, Queue
from .rows import queue_of, snapshot
from .rules import check_queue_settings, settle
from .schema import (
    claims,
    decisions,
    events,
    queue_guidelines,
    queue_members,
    queues,
    tasks,
)

MAX_DESCRIPTION = 5000
"""The longest queue description (it is shown on every review page)."""


@dataclass(frozen=True)
class Deleted:
    """What `Store.delete_queue` removed."""

    queue: str
    items: int
    decisions: int
    claims: int


def _labels(labels: Sequence[str]) -> list[str]:
    wanted = [str(label).strip() for label in labels]
    if not wanted or not all(wanted) or len({w.casefold() for w in wanted}) != len(wanted):
        raise QueueError(
            f"labels must be a non-empty list without repeats, not {list(labels)!r}",
            hint="give every label once, e.g. safe,unsafe,unsure",
        )
    if any(len(w) > 200 for w in wanted):
        raise QueueError("a label may have at most 200 characters")
    return wanted


def _fields(names: Sequence[str]) -> list[str]:
    fields = list(dict.fromkeys(str(name).strip() for name in names))
    if not all(fields) or any(len(f) > 200 for f in fields):
        raise QueueError(
            f"hidden fields must be field names of 1 to 200 characters, not {list(names)!r}",
            hint="name the item's fields, e.g. --hide-fields human_preference,source",
        )
    return fields


class Settings(StoreBase):
    """Editing, archiving and deleting queues, and the guidelines they show."""

    # -- settings ---------------------------------------------------------------------------

    def edit_queue(
        self,
        name: str,
        *,
        labels: Sequence[str] | None = None,
        overlap: int | None = None,
        blind: bool | None = None,
        lease_seconds: int | None = None,
        description: str | None = None,
        hidden_fields: Sequence[str] | None = None,
        by: str | None = None,
    ) -> Queue:
        """Change a queue's settings; None leaves a setting as it is. Recorded as one
        `queue_edited` event with what changed (nothing changed: no event).

        Args:
            labels: the new label list. Once decisions use the queue's labels it may only
                add to them; it must keep every label an item's draft, a decision or a blind
                pick uses. Descriptions of kept labels stay.
            overlap: reviews per item. Open items need the new number; lowering it settles
                the open items that already have that many reviews (their live claims end).
            blind: applies to items nobody has claimed yet; claimed items keep theirs.
            lease_seconds: from the next claim or heartbeat on.
            description: what the queue is for, shown to reviewers ("" clears it).
            hidden_fields: item fields reviewers are not shown ([] shows every field); they
                stay in the item, its history and exports.
        """
        if description is not None and len(description) > MAX_DESCRIPTION:
            raise QueueError(
                f"a queue description may have at most {MAX_DESCRIPTION} characters, "
                f"not {len(description)}",
                hint="link to a longer document instead",
            )
        with self._write() as conn:
            q = self._queue_row(conn, name)
            check_queue_settings(
                q["overlap"] if overlap is None else overlap,
                q["lease_seconds"] if lease_seconds is None else lease_seconds,
            )
            changes: dict[str, Any] = {}
            if labels is not None:
                wanted = _labels(labels)
                if wanted != q["labels"]:
                    self._check_labels(conn, q, wanted)
                    changes["labels"] = wanted
                    notes = {k: v for k, v in (q["label_descriptions"] or {}).items()
                             if k in wanted}  # fmt: skip
                    if notes != (q["label_descriptions"] or {}):
                        changes["label_descriptions"] = notes or None
            if overlap is not None and overlap != q["overlap"]:
                changes["overlap"] = overlap
            if blind is not None and blind != q["blind"]:
                changes["blind"] = blind
            if lease_seconds is not None and lease_seconds != q["lease_seconds"]:
                changes["lease_seconds"] = lease_seconds
            if description is not None and (description.strip() or None) != q["description"]:
                changes["description"] = description.strip() or None
            if hidden_fields is not None:
                hidden = _fields(hidden_fields) or None
                if hidden != (q["hidden_fields"] or None):
                    changes["hidden_fields"] = hidden
            if not changes:
                return queue_of(q)
            now = self._now()
            conn.execute(update(queues).where(queues.c.id == q["id"]).values(**changes))
            after: dict[str, Any] = dict(changes)
            if "blind" in changes:
                after["items_keeping_blindness"] = self._pin_blindness(conn, q)
            if "hidden_fields" in changes:
                # The search index holds only what reviewers may see.
                after["items_reindexed"] = search.reindex_queue(conn, q["id"])
            if "overlap" in changes and changes["overlap"] < q["overlap"]:
                after["items_settled"] = self._settle_open(conn, q, changes["overlap"], by, now)
            self._event(
                conn,
                "queue_edited",
                at=now,
                actor=by,
                queue_id=q["id"],
                before={key: q[key] for key in changes},
                after=after,
            )
            return queue_of(self._queue_row(conn, name))

    def _check_labels(self, conn: Connection, q: RowMapping, wanted: list[str]) -> None:
        have = q["labels"]
        folded = {w.casefold() for w in wanted}
        decided = conn.execute(
            select(decisions.c.id)
            .join(tasks, tasks.c.id == decisions.c.task_id)
            .where(tasks.c.queue_id == q["id"])
            .limit(1)
        ).first()
        if decided is not None and have is not None:
            dropped = [label for label in have if label.casefold() not in folded]
            if dropped:
                raise QueueError(
                    f"queue {q['name']!r} has decisions, so its labels can only be added to; "
                    f"the new list drops {', '.join(dropped)}",
                    hint=f"keep {', '.join(have)} and add the new labels after them",
                )
        used = conn.execute(
            union(
                select(tasks.c.draft_label.label("label")).where(
                    tasks.c.queue_id == q["id"], tasks.c.draft_label.is_not(None)
                ),
                select(decisions.c.label)
                .join(tasks, tasks.c.id == decisions.c.task_id)
                .where(tasks.c.queue_id == q["id"], decisions.c.label.is_not(None)),
                select(claims.c.pick)
                .join(tasks, tasks.c.id == claims.c.task_id)
                .where(tasks.c.queue_id == q["id"], claims.c.pick.is_not(None)),
            )
        ).scalars()
        missing = sorted({label for label in used if label.casefold() not in folded})
        if missing:
            raise QueueError(
                f"queue {q['name']!r} uses the labels {', '.join(missing)}, which the new list "
                "lacks (items' drafts, decisions or blind picks carry them)",
                hint="keep those labels in the list",
            )

    def _pin_blindness(self, conn: Connection, q: RowMapping) -> int:
        """Give every task claimed so far the blindness it was claimed under."""
        claimed = exists().where(claims.c.task_id == tasks.c.id)
        pinned = conn.execute(
            update(tasks)
            .where(tasks.c.queue_id == q["id"], tasks.c.blind.is_(None), claimed)
            .values(blind=q["blind"])
        ).rowcount
        return int(pinned or 0)

    def _settle_open(
        self, conn: Connection, q: RowMapping, overlap: int, by: str | None, now: datetime
    ) -> int:
        """Settle the open tasks that already have `overlap` reviews, as `decide` would have."""
        ready = conn.execute(
            select(tasks.c.id)
            .where(
                tasks.c.queue_id == q["id"],
                tasks.c.state == "pending",
                tasks.c.reviews >= overlap,
            )
            .order_by(tasks.c.id)
        ).scalars()
        count = 0
        for task_id in list(ready):
            task = self._lock_task(conn, task_id)
            live = conn.execute(
                st.LIVE_ON_TASK, {"task_id": task_id, "kind": "review", "now": now}
            ).all()
            if live:
                ids = [row.id for row in live]
                conn.execute(st.END_CLAIMS, {"claim_ids": ids, "now": now, "reason": "settled"})
            rows = conn.execute(st.ROUND_REVIEWS, {"task_id": task_id, "round": task["round"]})
            after = {**task, **settle(rows.mappings().all())}
            conn.execute(
                st.SAVE_TASK,
                {
                    "task_id": task_id,
                    "new_state": after["state"],
                    "new_round": after["round"],
                    "new_reviews": after["reviews"],
                    "new_final_label": after["final_label"],
                    "new_final_source": after["final_source"],
                    "new_final_edit": after["final_edit"],
                    "new_rejected": after["rejected"],
                    "now": now,
                },
            )
            self._event(
                conn,
                "settled",
                at=now,
                actor=by,
                queue_id=q["id"],
                task_id=task_id,
                before=snapshot(task),
                after={**snapshot(after), "reason": f"overlap lowered to {overlap}",
                       "claims_ended": len(live)},
            )  # fmt: skip
            count += 1
        return count

    # -- archive and delete -----------------------------------------------------------------

    def archive_queue(self, name: str, *, archived: bool = True, by: str | None = None) -> Queue:
        """Archive a queue (hidden from the queue lists, no new claims or items), or bring it
        back with `archived=False`. Its items, decisions and history stay."""
        with self._write() as conn:
            q = self._queue_row(conn, name)
            if (q["archived_at"] is not None) == archived:
                return queue_of(q)
            now = self._now()
            conn.execute(
                update(queues)
                .where(queues.c.id == q["id"])
                .values(archived_at=now if archived else None)
            )
            if archived:  # items held now go back: nobody may decide in an archived queue
                held = conn.execute(
                    select(claims.c.id)
                    .join(tasks, tasks.c.id == claims.c.task_id)
                    .where(tasks.c.queue_id == q["id"], claims.c.ended_at.is_(None))
                ).scalars()
                ids = list(held)
                if ids:
                    ended = {"claim_ids": ids, "now": now, "reason": "archived"}
                    conn.execute(st.END_CLAIMS, ended)
            self._event(
                conn,
                "queue_archived" if archived else "queue_unarchived",
                at=now,
                actor=by,
                queue_id=q["id"],
                before={"archived": not archived},
                after={"archived": archived},
            )
            return queue_of(self._queue_row(conn, name))

    def delete_queue(self, name: str, *, force: bool = False, by: str | None = None) -> Deleted:
        """Delete a queue. A queue with items is refused unless `force`, which deletes its
        items, claims and decisions too (exports then no longer see those decisions).

        The queue's events stay in the log, detached from it, and one `queue_deleted` event
        names the queue and counts what went with it.
        """
        with self._write() as conn:
            q = self._queue_row(conn, name)
            in_queue = select(tasks.c.id).where(tasks.c.queue_id == q["id"]).scalar_subquery()
            items = self._count(conn, select(tasks.c.id).where(tasks.c.queue_id == q["id"]))
            decided = self._count(
                conn, select(decisions.c.id).where(decisions.c.task_id.in_(in_queue))
            )
            if items and not force:
                raise QueueError(
                    f"queue {name!r} has {items} item(s) and {decided} decision(s); only an "
                    "empty queue is deleted without --force",
                    hint=f"archive it to hide it (critic queue archive {name}), or delete it "
                    f"with everything in it: critic queue delete {name} --force",
                )
            held = self._count(conn, select(claims.c.id).where(claims.c.task_id.in_(in_queue)))
            now = self._now()
            conn.execute(
                update(events)
                .where((events.c.queue_id == q["id"]) | events.c.task_id.in_(in_queue))
                .values(queue_id=None, task_id=None)
            )
            search.forget_queue(conn, q["id"])
            conn.execute(delete(decisions).where(decisions.c.task_id.in_(in_queue)))
            conn.execute(delete(claims).where(claims.c.task_id.in_(in_queue)))
            conn.execute(delete(tasks).where(tasks.c.queue_id == q["id"]))
            conn.execute(delete(queue_members).where(queue_members.c.queue_id == q["id"]))
            conn.execute(delete(queue_guidelines).where(queue_guidelines.c.queue_id == q["id"]))
            conn.execute(delete(queues).where(queues.c.id == q["id"]))
            gone = Deleted(name, items, decided, held)
            self._event(
                conn,
                "queue_deleted",
                at=now,
                actor=by,
                before={"queue": name, "settings": _settings(q)},
                after={"queue": name, "items": items, "decisions": decided, "claims": held},
            )
            return gone

    @staticmethod
    def _count(conn: Connection, query: Any) -> int:
        return int(conn.execute(select(func.count()).select_from(query.subquery())).scalar_one())

    # -- guidelines -------------------------------------------------------------------------

    def set_guidelines(
        self,
        queue: str,
        key: str,
        guidelines: Guidelines | Mapping[str, Any],
        *,
        by: str | None = None,
    ) -> bool:
        """Store the guidelines reviewers read for items enqueued with `guidelines=key`.

        A key names one version (critic: a constitution hash), so its guidelines never change:
        storing them again does nothing. Returns whether they were new (then a
        `guidelines_added` event records the key, title and version).
        """
        if not key or len(key) > 200:
            raise QueueError(f"a guidelines key must have 1 to 200 characters, not {key!r}")
        try:
            parsed = (
                guidelines
                if isinstance(guidelines, Guidelines)
                else Guidelines.model_validate(guidelines)
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "guidelines"
            raise QueueError(
                f"guidelines {key!r}: {where}: {first['msg']}",
                hint="allowed keys: " + ", ".join(Guidelines.model_fields),
            ) from exc
        with self._write() as conn:
            q = self._queue_row(conn, queue)
            now = self._now()
            dialect_insert = pg_insert if self.dialect == "postgresql" else sqlite_insert
            added = conn.execute(
                dialect_insert(queue_guidelines)
                .values(
                    queue_id=q["id"],
                    key=key,
                    content=parsed.model_dump(mode="json", exclude_defaults=True),
                    created_at=now,
                )
                .on_conflict_do_nothing(index_elements=["queue_id", "key"])
                .returning(queue_guidelines.c.key)
            ).first()
            if added:
                self._event(
                    conn,
                    "guidelines_added",
                    at=now,
                    actor=by,
                    queue_id=q["id"],
                    after={"key": key, "title": parsed.title, "version": parsed.version},
                )
            return added is not None

    def guidelines(self, queue: str, key: str | None) -> Guidelines | None:
        """The guidelines stored under `key` for a queue, or None (no key, or none stored)."""
        if key is None:
            return None
        with self._read() as conn:
            q = self._queue_row(conn, queue)
            content = conn.execute(
                select(queue_guidelines.c.content).where(
                    queue_guidelines.c.queue_id == q["id"], queue_guidelines.c.key == key
                )
            ).scalar()
        return None if content is None else Guidelines.model_validate(content)

    def queue_events(self, queue: str) -> list[Event]:
        """The queue's own history, oldest first: created, edited, archived, members and
        guidelines added (each item's events are in `history`)."""
        with self._read() as conn:
            q = self._queue_row(conn, queue)
            rows = conn.execute(
                select(events)
                .where(events.c.queue_id == q["id"], events.c.task_id.is_(None))
                .order_by(events.c.id)
            ).mappings()
            return [
                Event(r["id"], queue, None, r["actor"], r["at"], r["kind"], r["before"], r["after"])
                for r in rows
            ]

    def blind_origins(self, queue: str) -> dict[str, bool]:
        """`{origin: blindness}` of the tasks whose blindness differs from the queue's now
        (claimed before an admin changed it): a label given on such an item was given under
        that blindness, not the queue's."""
        with self._read() as conn:
            q = self._queue_row(conn, queue)
            rows = conn.execute(
                select(tasks.c.origin, tasks.c.blind).where(
                    tasks.c.queue_id == q["id"],
                    tasks.c.origin.is_not(None),
                    tasks.c.blind.is_not(None),
                    tasks.c.blind != q["blind"],
                )
            ).all()
        return {origin: bool(pinned) for origin, pinned in rows}


def _settings(q: RowMapping) -> dict[str, Any]:
    keys = ("overlap", "blind", "lease_seconds", "labels", "description", "hidden_fields")
    return {key: q[key] for key in keys}


def refuse_archived(q: RowMapping, doing: str) -> None:
    """An archived queue takes no claims and no items."""
    if q["archived_at"] is not None:
        raise QueueError(
            f"queue {q['name']!r} is archived: it takes no {doing}",
            hint=f"an admin can bring it back: critic queue unarchive {q['name']}",
        )
