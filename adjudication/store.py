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

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, cast

from pydantic import ValidationError
from sqlalchemy import Connection, RowMapping, delete, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from . import search
from . import statements as st
from .accounts import Accounts
from .bulk import Bulk
from .claims import Claims
from .database import Clock, engine_for, pick_locked, utc_now
from .errors import PermissionDenied, QueueError
from .gold import Gold, check_gold_rate
from .models import (
    Action,
    ClaimKind,
    Decision,
    EnqueueResult,
    NewTask,
    Queue,
    Task,
    Undone,
)
from .rows import decision_of, queue_of, snapshot, task_of
from .rules import (
    Rules,
    answer,
    blind_for,
    check_name,
    check_queue_settings,
    claim_kinds,
    final,
    in_label_set,
    priority,
    require_pick,
    settle,
)
from .schema import claims, decisions, events, queues, tasks
from .settings import Settings, refuse_archived

__all__ = ["UNDO_SECONDS", "Clock", "Store", "open_store", "utc_now"]

_CHUNK = 500
UNDO_SECONDS = 600.0
"""How long after a decision its reviewer may still take it back with `Store.undo`."""


def open_store(url: str, *, clock: Clock = utc_now, busy_timeout: float = 30.0) -> Store:
    """Open the queue database at a SQLAlchemy URL, creating and migrating it as needed.

    Args:
        url: `sqlite:///path/to/queue.db` or `postgresql+psycopg://user@host/db`
            (`postgresql://` is taken to mean psycopg 3).
        clock: returns the current time as an aware datetime; tests pass a fake one to expire
            leases without sleeping.
        busy_timeout: SQLite only: seconds to wait for another process's write lock.
    """
    return Store(engine_for(url, busy_timeout), clock)


class Store(Claims, Gold, Accounts, Settings, Bulk):
    """A handle on one queue database; safe to share between threads. Use `open_store`."""

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
        gold_rate: float = 0.0,
        by: str | None = None,
    ) -> Queue:
        """Create a review queue.

        Args:
            name: the queue's name, unique in the database.
            overlap: independent reviews each item needs (1 to `MAX_OVERLAP`); if they
                disagree, an adjudicator decides.
            blind: reviewers do not see the critic's draft (label, critique, confidence) and
                give their own label; adjudicators always see everything.
            lease_seconds: how long a claim lasts without a heartbeat (1 to
                `MAX_LEASE_SECONDS`, a day).
            labels: the allowed labels; None allows any label.
            ordinal: the labels are a scale, given lowest first (agreement then includes
                ordinal alpha in this order).
            members: users who may work in it (see `add_members`); admins always may.
            gold_rate: about this share of each reviewer's items are gold items
                (`adjudication.gold`).
            by: who is creating it, for the history.
        """
        check_name("queue", name)
        check_gold_rate(gold_rate)
        check_queue_settings(overlap, lease_seconds)
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
                "gold_rate": gold_rate,
            }
            queue_id = conn.execute(
                insert(queues).values(**values).returning(queues.c.id)
            ).scalar_one()
            after = {k: v for k, v in values.items() if k != "created_at"}
            self._event(conn, "queue_created", at=now, actor=by, queue_id=queue_id, after=after)
            row = conn.execute(select(queues).where(queues.c.id == queue_id)).mappings().one()
            self._add_members(conn, row, members, by, now)
            return queue_of(row)

    def queue(self, name: str) -> Queue:
        """The queue called `name`."""
        with self._read() as conn:
            return queue_of(self._queue_row(conn, name))

    def adopt_labels(
        self,
        queue: str,
        labels: Sequence[str],
        descriptions: Mapping[str, str] | None = None,
        *,
        by: str | None = None,
    ) -> Queue:
        """Give a queue the label set of what feeds it (a run's constitution), with what each
        label means.

        A queue created without labels takes these; a queue that has every one of them
        (matched as `match_label` does; an admin may have added labels since, see
        `edit_queue`) keeps its own spelling and gains the descriptions it lacks. A queue
        lacking any of them is refused, naming both sets: its reviewers could not give a label
        the feeding run drafts. Recorded as a `labels_adopted` event when anything changes.
        """
        wanted = [str(label) for label in labels]
        if not wanted or len({w.casefold() for w in wanted}) != len(wanted):
            raise QueueError(f"labels must be a non-empty list without repeats, not {wanted!r}")
        with self._write() as conn:
            q = self._queue_row(conn, queue)
            have = q["labels"]
            if have is not None:
                folded = {label.casefold() for label in have}
                if not {w.casefold() for w in wanted} <= folded:
                    raise QueueError(
                        f"queue {queue!r} has the labels ({', '.join(have)}), but the items "
                        f"sent to it are labelled ({', '.join(wanted)})",
                        hint="send them to a queue created without --labels (it takes the "
                        "constitution's), or to one with the same labels",
                    )
            spelled = list(have) if have is not None else wanted
            notes = dict(q["label_descriptions"] or {})
            for label, text in (descriptions or {}).items():
                mine = in_label_set(queue, str(label), spelled)
                notes.setdefault(mine, str(text))
            if have == spelled and (q["label_descriptions"] or {}) == notes:
                return queue_of(q)
            conn.execute(
                update(queues)
                .where(queues.c.id == q["id"])
                .values(labels=spelled, label_descriptions=notes or None)
            )
            self._event(
                conn,
                "labels_adopted",
                at=self._now(),
                actor=by,
                queue_id=q["id"],
                before={"labels": have, "label_descriptions": q["label_descriptions"]},
                after={"labels": spelled, "label_descriptions": notes or None},
            )
            return queue_of(self._queue_row(conn, queue))

    def queues(self) -> list[Queue]:
        """Every queue, by name."""
        with self._read() as conn:
            rows = conn.execute(select(queues).order_by(queues.c.name)).mappings()
            return [queue_of(row) for row in rows]

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
        refuse_archived(q, "new items")
        allowed = q["labels"]
        for index, task in enumerate(new):
            if allowed is not None and task.draft_label is not None:
                spelled = in_label_set(
                    queue, task.draft_label, allowed, what=f"item {task.item_id!r}: draft label"
                )
                if spelled != task.draft_label:  # stored as the queue spells it
                    new[index] = task.model_copy(update={"draft_label": spelled})
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
                "origin": t.origin,
                "answer": t.answer,
                "guidelines": t.guidelines,
                "blind": None,
            }
            for t in batch
        ]
        dialect_insert = pg_insert if self.dialect == "postgresql" else sqlite_insert
        statement = (
            dialect_insert(tasks)
            .on_conflict_do_nothing(index_elements=["queue_id", "item_id"])
            .returning(tasks.c.id, tasks.c.priority, tasks.c.item_id)
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
                    for task_id, rank, _ in inserted
                ],
            )
            by_id = {t.item_id: t for t in batch}
            search.index_new(
                conn,
                [
                    {
                        "id": task_id,
                        "queue_id": q["id"],
                        "item": by_id[item_id].item,
                        "draft": by_id[item_id].draft,
                    }
                    for task_id, _, item_id in inserted
                ],
                q["hidden_fields"],
            )
        return len(inserted)

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
                adjudicator. In a blind queue reviewers give their own `label` with accept/edit,
                after recording it with `pick` (without a pick, accept and edit are refused).
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
                return decision_of(prior.mappings().one())
            now = self._now()
            self._require_live(held, task, q, now)
            kind = cast(ClaimKind, held["kind"])
            if held["pick"] is not None and action in ("accept", "edit") and label != held["pick"]:
                raise pick_locked(held["pick"])
            # A revision has no label to pick: blindness does not apply to it.
            blind = blind_for(q["blind"], task["blind"])
            blind_review = blind and kind == "review" and task["answer"] == "label"
            require_pick(q["name"], task["item_id"], blind_review, action, held["pick"])
            drafted = isinstance((task["draft"] or {}).get("revision"), str)
            rules = Rules(q["name"], q["labels"], blind, task["item_id"], task["draft_label"],
                          task["answer"], has_revision=drafted)  # fmt: skip
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
            if task["gold_label"] is not None and kind == "review":
                after = dict(task)  # a gold item measures the reviewer: it never settles
            else:
                after = {**task, **self._advance(conn, q, task, kind, action, chosen, edit)}
            self._save(conn, after, now)
            if note or after["state"] == "done":
                search.refresh(conn, [task["id"]])
            self._event(
                conn,
                "decided",
                at=now,
                actor=held["reviewer"],
                queue_id=q["id"],
                task_id=task["id"],
                before=snapshot(task),
                after={
                    **snapshot(after),
                    "decision": decision_id,
                    "kind": kind,
                    "action": action,
                    "label": chosen,
                    "note": note,
                },
            )
            return decision_of(
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
            search.forget_precedents(conn, [task["id"]])
            self._event(
                conn,
                "reopened",
                at=now,
                actor=by,
                queue_id=q["id"],
                task_id=task["id"],
                before=snapshot(task),
                after={**snapshot({**task, **changes}), "reason": reason},
            )
            return task_of(queue, self._task_row(conn, q, item_id))

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
            return decision_of(row)

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
            search.refresh(conn, [task["id"]])  # its note, and no longer a precedent
            withdrawn = decision_of(last)
            self._event(
                conn,
                "withdrawn",
                at=now,
                actor=user,
                queue_id=q["id"],
                task_id=task["id"],
                before={
                    **snapshot(task),
                    "decision": last["id"],
                    "kind": kind,
                    "action": last["action"],
                    "label": last["label"],
                    "note": last["note"],
                },
                after=snapshot({**task, **changes, "rejected": False}),
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
