"""Bulk actions on a queue's items (reassign, requeue, accept the critic's answer) and the
exemplar-candidate mark. Adjudicators and admins only.

Each action is idempotent: it changes an item only when the item is not already where the action
would put it, so sending the same action twice (a double click, a retried request) changes
nothing the second time. Every item it changes gets exactly one event, named for the action, with
the item's state before and after. Items are handled in chunks, one write transaction each, so
reviewers' claims and decisions interleave with a long bulk action instead of waiting for it.
"""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Connection, RowMapping, insert, select, update

from . import search
from . import statements as st
from .errors import PermissionDenied, QueueError
from .listing import Filters, Listing
from .rows import snapshot
from .rules import final, in_label_set
from .schema import claims, events, tasks

Change = tuple[RowMapping, dict[str, Any], dict[str, Any]]
"""A changed task: its row before, extra before-values for the event, the event's after."""
BulkAction = Literal["reassign", "requeue", "accept"]
BULK_ACTIONS: tuple[BulkAction, ...] = ("reassign", "requeue", "accept")
CHUNK = 500
MAX_ITEMS = 100_000
"""The most items one bulk action takes (a selection by filter beyond it is refused)."""


@dataclass(frozen=True)
class BulkResult:
    """What a bulk action did: items changed, items already as asked, and items it left alone
    with the reason (`{reason: count}`)."""

    action: BulkAction
    changed: int
    unchanged: int
    skipped: dict[str, int] = field(default_factory=dict)
    changed_items: tuple[str, ...] = ()


class Bulk(Listing):
    """Bulk actions and exemplar marks."""

    def _curator(self, conn: Connection, q: RowMapping, by: str) -> RowMapping:
        u = self._user_row(conn, by)
        if u["role"] not in ("adjudicator", "admin") or not u["active"]:
            raise PermissionDenied(
                f"{by} cannot change items in bulk (role {u['role']})",
                hint="ask an adjudicator or an admin",
            )
        self._require_member(conn, q, u)
        return u

    def bulk(
        self,
        queue: str,
        action: BulkAction,
        *,
        by: str,
        items: Sequence[str] = (),
        filters: Filters | None = None,
        assignee: str | None = None,
        note: str | None = None,
    ) -> BulkResult:
        """Apply one action to chosen items, or to every item matching `filters`.

        Args:
            action: "reassign" hands items awaiting review to `assignee` (None: to nobody),
                ending other reviewers' leases on them; "requeue" sends items back for a fresh
                round of reviews, ending any leases; "accept" settles items not yet decided
                with the critic's label (or revision) as an adjudication by `by`.
            by: an adjudicator or admin who works in the queue.
            items: item ids; or
            filters: every item that matches (what the item list shows an adjudicator).
            assignee: for reassign: a reviewer (or adjudicator, admin) of the queue.
            note: why; required for accept (it is the decision's note).
        """
        if action not in BULK_ACTIONS:
            raise QueueError(
                f"unknown bulk action {action!r}", hint=f"use one of: {', '.join(BULK_ACTIONS)}"
            )
        text = (note or "").strip() or None
        if action == "accept" and text is None:
            raise QueueError(
                "accepting the critic's answers in bulk needs a note",
                hint="say why these items need no human review",
            )
        if (not items) == (filters is None):
            raise QueueError("choose items, or a filter for every matching item, not both")
        with self._read() as conn:
            q = self._queue_row(conn, queue)
            u = self._curator(conn, q, by)
            target = self._assignee(conn, q, assignee) if action == "reassign" else None
            if filters is not None:
                ids = self.matching_ids(conn, q, filters, cap=MAX_ITEMS + 1)
            else:
                wanted = list(dict.fromkeys(items))
                ids = []
                for start in range(0, len(wanted), CHUNK):
                    ids += conn.execute(
                        select(tasks.c.id).where(
                            tasks.c.queue_id == q["id"],
                            tasks.c.item_id.in_(wanted[start : start + CHUNK]),
                        )
                    ).scalars()
                if len(ids) < len(wanted):
                    found = set(
                        conn.execute(
                            select(tasks.c.item_id).where(tasks.c.id.in_(ids[:CHUNK]))
                        ).scalars()
                    )
                    missing = next(i for i in wanted if i not in found)
                    raise QueueError(
                        f"queue {queue!r} has no item {missing!r}",
                        hint="reload the list; the item ids come from it",
                    )
        if len(ids) > MAX_ITEMS:
            raise QueueError(
                f"more than {MAX_ITEMS:,} items match; a bulk action takes at most that many",
                hint="narrow the filter",
            )
        changed: list[str] = []
        unchanged = 0
        skipped: Counter[str] = Counter()
        step = {"reassign": self._reassign, "requeue": self._requeue, "accept": self._accept}
        for start in range(0, len(ids), CHUNK):
            with self._write() as conn:
                now = self._now()
                rows = (
                    conn.execute(
                        select(tasks)
                        .where(tasks.c.id.in_(ids[start : start + CHUNK]))
                        .order_by(tasks.c.id)
                        .with_for_update(key_share=True)
                    )
                    .mappings()
                    .all()
                )
                # A gold item measures every reviewer and never settles: no bulk action
                # touches it (accepting would ship it, requeueing would lose its scores).
                gold = sum(1 for r in rows if r["gold_label"] is not None)
                if gold:
                    skipped["gold item"] += gold
                    rows = [r for r in rows if r["gold_label"] is None]
                done, same, left = step[action](conn, q, u, rows, now, target, text)
                changed += done
                unchanged += same
                skipped.update(left)
        return BulkResult(action, len(changed), unchanged, dict(skipped), tuple(changed))

    def _assignee(self, conn: Connection, q: RowMapping, name: str | None) -> RowMapping | None:
        if name is None:
            return None
        u = self._user_row(conn, name)
        if not u["active"]:
            raise QueueError(f"{name} is not active", hint="hand the items to an active reviewer")
        self._require_member(conn, q, u)
        return u

    def _live_claims(
        self, conn: Connection, task_ids: Sequence[int], now: datetime
    ) -> dict[int, list[RowMapping]]:
        live: dict[int, list[RowMapping]] = {}
        if task_ids:
            for row in conn.execute(
                select(claims.c.id, claims.c.task_id, claims.c.user_id, claims.c.kind).where(
                    claims.c.task_id.in_(task_ids),
                    claims.c.ended_at.is_(None),
                    claims.c.expires_at > now,
                )
            ).mappings():
                live.setdefault(row["task_id"], []).append(row)
        return live

    def _events(
        self,
        conn: Connection,
        kind: str,
        q: RowMapping,
        by: str,
        now: datetime,
        changes: Sequence[Change],
    ) -> None:
        if changes:
            conn.execute(
                insert(events),
                [
                    {
                        "queue_id": q["id"],
                        "task_id": row["id"],
                        "actor": by,
                        "at": now,
                        "kind": kind,
                        "before": {**snapshot(row), **extra_before},
                        "after": after,
                    }
                    for row, extra_before, after in changes
                ],
            )

    def _end_claims(
        self, conn: Connection, claim_ids: Sequence[int], now: datetime, why: str
    ) -> None:
        if claim_ids:
            conn.execute(st.END_CLAIMS, {"claim_ids": list(claim_ids), "now": now, "reason": why})

    def _requeue(
        self,
        conn: Connection,
        q: RowMapping,
        u: RowMapping,
        rows: Sequence[RowMapping],
        now: datetime,
        _target: RowMapping | None,
        note: str | None,
    ) -> tuple[list[str], int, Counter[str]]:
        live = self._live_claims(conn, [r["id"] for r in rows], now)
        fresh: list[int] = []  # a new round
        cleared: list[int] = []  # same round: leases ended, hand-over undone
        changes: list[Change] = []
        for row in rows:
            new_round = row["state"] != "pending" or row["reviews"] > 0
            if not new_round and not live.get(row["id"]) and row["assignee"] is None:
                continue
            (fresh if new_round else cleared).append(row["id"])
            after = {
                **snapshot(row),
                "state": "pending",
                "round": row["round"] + (1 if new_round else 0),
                "reviews": 0,
                "final_label": None,
                "final_source": None,
                "rejected": False,
                "claims_ended": len(live.get(row["id"], [])),
                "reason": note,
            }
            changes.append((row, {}, after))
        reset = {"state": "pending", "reviews": 0, "assignee": None, "updated_at": now}
        if fresh:
            conn.execute(
                update(tasks)
                .where(tasks.c.id.in_(fresh))
                .values(round=tasks.c.round + 1, **final(None, False, None, None) | reset)
            )
        if cleared:
            conn.execute(update(tasks).where(tasks.c.id.in_(cleared)).values(**reset))
        ended = [c["id"] for tid in (*fresh, *cleared) for c in live.get(tid, [])]
        self._end_claims(conn, ended, now, "requeued")
        search.forget_precedents(conn, [r["id"] for r in rows if r["state"] == "done"])
        self._events(conn, "bulk_requeued", q, u["name"], now, changes)
        return [r["item_id"] for r, _, _ in changes], len(rows) - len(changes), Counter()

    def _reassign(
        self,
        conn: Connection,
        q: RowMapping,
        u: RowMapping,
        rows: Sequence[RowMapping],
        now: datetime,
        target: RowMapping | None,
        note: str | None,
    ) -> tuple[list[str], int, Counter[str]]:
        skipped: Counter[str] = Counter()
        waiting = [r for r in rows if r["state"] == "pending"]
        skipped["not awaiting review"] = len(rows) - len(waiting)
        live = self._live_claims(conn, [r["id"] for r in waiting], now)
        want = None if target is None else target["id"]
        changes: list[Change] = []
        ended: list[int] = []
        for row in waiting:
            others = [
                c["id"]
                for c in live.get(row["id"], [])
                if c["kind"] == "review" and c["user_id"] != want
            ]
            if row["assignee"] == want and not others:
                continue
            ended += others
            after = {
                **snapshot(row),
                "assignee": None if target is None else target["name"],
                "claims_ended": len(others),
                "reason": note,
            }
            changes.append((row, {"assignee": row["assignee"]}, after))
        if changes:
            conn.execute(
                update(tasks)
                .where(tasks.c.id.in_([r["id"] for r, _, _ in changes]))
                .values(assignee=want, updated_at=now)
            )
        self._end_claims(conn, ended, now, "reassigned")
        self._events(conn, "bulk_reassigned", q, u["name"], now, changes)
        skipped = +skipped
        return [r["item_id"] for r, _, _ in changes], len(waiting) - len(changes), skipped

    def _accept(
        self,
        conn: Connection,
        q: RowMapping,
        u: RowMapping,
        rows: Sequence[RowMapping],
        now: datetime,
        _target: RowMapping | None,
        note: str | None,
    ) -> tuple[list[str], int, Counter[str]]:
        skipped: Counter[str] = Counter()
        open_rows = []
        for row in rows:
            if row["state"] == "done":
                continue
            if row["answer"] == "label" and row["draft_label"] is None:
                skipped["the critic gave no label"] += 1
                continue
            open_rows.append(row)
        same = sum(1 for r in rows if r["state"] == "done")
        live = self._live_claims(conn, [r["id"] for r in open_rows], now)
        changes: list[Change] = []
        for row in open_rows:
            label = None
            if row["answer"] == "label":
                label = in_label_set(q["name"], row["draft_label"], q["labels"])
            claim_id = conn.execute(
                st.INSERT_CLAIM,
                {
                    "task_id": row["id"],
                    "user_id": u["id"],
                    "round": row["round"],
                    "kind": "adjudication",
                    "token": secrets.token_urlsafe(24),
                    "claimed_at": now,
                    "expires_at": now,
                    "ended_at": now,
                    "end_reason": "decided",
                    "pick": None,
                },
            ).scalar_one()
            decision_id = conn.execute(
                st.INSERT_DECISION,
                {
                    "task_id": row["id"],
                    "claim_id": claim_id,
                    "user_id": u["id"],
                    "round": row["round"],
                    "kind": "adjudication",
                    "action": "accept",
                    "label": label,
                    "edit": None,
                    "note": note,
                    "seconds": 0.0,
                    "created_at": now,
                },
            ).scalar_one()
            settled = {**row, **final(label, False, None, "adjudicated")}
            self._save_settled(conn, settled, now)
            after = {
                **snapshot(settled),
                "decision": decision_id,
                "kind": "adjudication",
                "action": "accept",
                "label": label,
                "note": note,
                "claims_ended": len(live.get(row["id"], [])),
            }
            changes.append((row, {}, after))
        ended = [c["id"] for r, _, _ in changes for c in live.get(r["id"], [])]
        self._end_claims(conn, ended, now, "settled")
        search.refresh(conn, [r["id"] for r, _, _ in changes])
        self._events(conn, "bulk_accepted", q, u["name"], now, changes)
        return [r["item_id"] for r, _, _ in changes], same, +skipped

    @staticmethod
    def _save_settled(conn: Connection, task: dict[str, Any], now: datetime) -> None:
        conn.execute(
            update(tasks)
            .where(tasks.c.id == task["id"])
            .values(
                state=task["state"],
                final_label=task["final_label"],
                final_source=task["final_source"],
                final_edit=task["final_edit"],
                rejected=task["rejected"],
                updated_at=now,
            )
        )

    # -- exemplar candidates ------------------------------------------------------------------

    def mark_exemplar(self, queue: str, item_id: str, *, by: str, candidate: bool = True) -> bool:
        """Mark (or unmark) an item as a candidate example for the constitution.

        Returns:
            Whether anything changed (marking a marked item again changes nothing).
        """
        with self._write() as conn:
            q = self._queue_row(conn, queue)
            u = self._curator(conn, q, by)
            task = self._task_row(conn, q, item_id, lock=True)
            if bool(task["exemplar"]) == candidate:
                return False
            conn.execute(update(tasks).where(tasks.c.id == task["id"]).values(exemplar=candidate))
            self._event(
                conn,
                "exemplar_marked" if candidate else "exemplar_unmarked",
                at=self._now(),
                actor=u["name"],
                queue_id=q["id"],
                task_id=task["id"],
                before={"exemplar": bool(task["exemplar"])},
                after={"exemplar": candidate},
            )
            return True

    def exemplar_candidates(self, queue: str) -> list[str]:
        """The ids of a queue's items marked as exemplar candidates, oldest first."""
        with self._read() as conn:
            q = self._queue_row(conn, queue)
            return list(
                conn.execute(
                    select(tasks.c.item_id)
                    .where(tasks.c.queue_id == q["id"], tasks.c.exemplar)
                    .order_by(tasks.c.id)
                ).scalars()
            )


__all__ = ["BULK_ACTIONS", "MAX_ITEMS", "Bulk", "BulkAction", "BulkResult"]
