"""Leases: claim a task, renew, release or skip it, and blind picks. The rules of concurrency
are written at the top of `store.py`."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, RowMapping, select, update

from . import statements as st
from .database import iso, pick_locked
from .errors import LeaseError, QueueError
from .models import Claim, ClaimKind, Decision
from .reports import Reports
from .rows import decision_of, snapshot, task_of
from .rules import blind_for, claim_kinds
from .schema import claims, tasks
from .settings import refuse_archived


class Claims(Reports):
    """Time-limited leases on tasks."""

    def claim(self, queue: str, user: str, *, kind: ClaimKind | None = None) -> Claim | None:
        """Lease the next task for a user, or None when there is nothing they may take now.

        A user holds at most one live claim per queue: calling again returns (and renews) the
        one they hold, so a reloaded review page shows the same item. Reviewers get the most
        urgent pending task (lowest priority value, i.e. least confident, first) that they have
        neither decided nor skipped this round and that still has a free review slot.
        Adjudicators and admins get disagreements to adjudicate first, then reviews. Only
        members of the queue (and admins) may claim in it.

        Args:
            queue: the queue's name.
            user: the claiming user's name.
            kind: "review" or "adjudication" to ask for one kind only.
        """
        with self._write() as conn:
            q = self._queue_row(conn, queue)
            refuse_archived(q, "claims")
            u = self._user_row(conn, user, lock=True)
            kinds = claim_kinds(user, u["role"], u["active"], kind)
            self._require_member(conn, q, u)
            now = self._now()
            held = (
                conn.execute(
                    st.HELD, {"user_id": u["id"], "queue_id": q["id"], "kinds": kinds, "now": now}
                )
                .mappings()
                .first()
            )
            if held is not None:
                task = self._lock_task(conn, held["task_id"])
                expires = now + timedelta(seconds=q["lease_seconds"])
                conn.execute(st.RENEW_CLAIM, {"claim_id": held["id"], "new_expiry": expires})
                return self._claim_view(conn, q, user, {**held, "expires_at": expires}, task)
            for wanted in kinds:
                picked = self._pick(conn, q, u["id"], wanted, now)
                if picked is not None:
                    return self._lease(conn, q, user, u["id"], picked, wanted, now)
            if "review" in kinds and q["gold_rate"]:
                # Nothing else is left for this reviewer: the gold items they have not answered
                # yet, so every reviewer answers each one, whatever the overlap.
                gold = self._pick_gold(conn, q, u["id"])
                if gold is not None:
                    return self._lease(conn, q, user, u["id"], gold, "review", now)
            return None

    def _gold_due(self, conn: Connection, q: RowMapping, user: str, user_id: int) -> bool:
        """Whether this reviewer's next item should be a gold item: a seeded draw per reviewer
        and position, below the queue's gold rate, so about that share of their items are gold,
        interleaved unpredictably (and the same on a retry)."""
        if not q["gold_rate"]:
            return False
        made = conn.execute(st.REVIEWS_BY_USER, {"user_id": user_id, "queue_id": q["id"]}).one()
        digest = hashlib.sha256(f"gold\x00{q['name']}\x00{user}\x00{made[0]}".encode()).digest()
        return bool(int.from_bytes(digest[:8], "big") / 2**64 < q["gold_rate"])

    def _pick_gold(self, conn: Connection, q: RowMapping, user_id: int) -> RowMapping | None:
        params: dict[str, Any] = {"queue_id": q["id"], "user_id": user_id, "tried": []}
        while (task_id := conn.execute(st.GOLD_PICK, params).scalar()) is not None:
            row = conn.execute(st.GOLD_RECHECK, {**params, "task_id": task_id}).mappings().first()
            if row is not None:
                return row
            params["tried"] = [*params["tried"], task_id]
        return None

    def held(self, queue: str, user: str, *, kind: ClaimKind) -> Claim | None:
        """The live claim of this kind that `user` holds in `queue`, or None. Reads only: it
        neither renews the lease nor claims anything (what a page shows on a GET)."""
        with self._read() as conn:
            q = self._queue_row(conn, queue)
            u = self._user_row(conn, user)
            kinds = claim_kinds(user, u["role"], u["active"], kind)
            self._require_member(conn, q, u)
            params = {"user_id": u["id"], "queue_id": q["id"], "kinds": kinds, "now": self._now()}
            row = conn.execute(st.HELD, params).mappings().first()
            if row is None:
                return None
            task = conn.execute(select(tasks).where(tasks.c.id == row["task_id"])).mappings()
            return self._claim_view(conn, q, user, dict(row), task.one())

    def pick(self, token: str, label: str) -> Claim:
        """Record a blind reviewer's own label before the draft is shown to them.

        The first pick holds for the item's round: a repeated pick of the same label returns
        the claim, a different one is refused, and a decision must confirm the pick (or reject,
        escalate or skip the item)."""
        with self._write() as conn:
            held, task, q = self._held(conn, token)
            now = self._now()
            self._require_live(held, task, q, now)
            if not blind_for(q["blind"], task["blind"]) or held["kind"] != "review":
                raise QueueError(
                    f"queue {q['name']!r} is not blind: there is nothing to pick before deciding",
                    hint="decide with accept or a label",
                )
            if not label.strip() or len(label) > 200 or (q["labels"] and label not in q["labels"]):
                raise QueueError(
                    f"{label!r} is not a label of queue {q['name']!r}",
                    hint=f"use one of: {', '.join(q['labels'] or ['any text'])}",
                )
            if held["pick"] is None:
                conn.execute(update(claims).where(claims.c.id == held["id"]).values(pick=label))
                self._event(
                    conn,
                    "picked",
                    at=now,
                    actor=held["reviewer"],
                    queue_id=q["id"],
                    task_id=task["id"],
                    after={"claim": held["id"], "pick": label},
                )
            elif held["pick"] != label:
                raise pick_locked(held["pick"])
            return self._claim_view(conn, q, held["reviewer"], {**held, "pick": label}, task)

    def picked(self, queue: str, item_id: str, user: str) -> str | None:
        """The label `user` picked for an item in its current round (`pick`), or None. Reads only.

        In a blind queue this is what lets pages show them the draft: before a pick, nothing
        derived from the draft is shown to someone who may still review the item."""
        with self._read() as conn:
            q = self._queue_row(conn, queue)
            task = self._task_row(conn, q, item_id)
            u = self._user_row(conn, user)
            params = {"task_id": task["id"], "user_id": u["id"], "round": task["round"]}
            found: str | None = conn.execute(st.EARLIER_PICK, params).scalar()
            return found

    def _pick(
        self, conn: Connection, q: RowMapping, user_id: int, kind: ClaimKind, now: datetime
    ) -> RowMapping | None:
        if kind == "review" and q["gold_rate"]:
            name = conn.execute(st.USER_NAME, {"user_id": user_id}).scalar_one()
            if self._gold_due(conn, q, name, user_id):
                gold = self._pick_gold(conn, q, user_id)
                if gold is not None:
                    return gold
        params: dict[str, Any] = {
            "queue_id": q["id"],
            "user_id": user_id,
            "now": now,
            "overlap": q["overlap"],
            "tried": [],
        }
        picks = [st.PICK_ASSIGNED, st.PICK[kind]] if kind == "review" else [st.PICK[kind]]
        for statement in picks:
            while (task_id := conn.execute(statement, params).scalar()) is not None:
                # We hold the row lock now; only a new statement sees what committed before it.
                recheck = conn.execute(st.RECHECK[kind], {**params, "task_id": task_id})
                row = recheck.mappings().first()
                if row is not None:
                    return row
                params["tried"] = [*params["tried"], task_id]
        return None

    def _lease(
        self,
        conn: Connection,
        q: RowMapping,
        user: str,
        user_id: int,
        task: RowMapping,
        kind: ClaimKind,
        now: datetime,
    ) -> Claim:
        self._close_expired(conn, q, task, now)
        values = {
            "task_id": task["id"],
            "user_id": user_id,
            "round": task["round"],
            "kind": kind,
            "token": secrets.token_urlsafe(24),
            "claimed_at": now,
            "expires_at": now + timedelta(seconds=q["lease_seconds"]),
            "ended_at": None,
            "end_reason": None,
            # A blind pick holds for the round, also across a release and a new claim.
            "pick": conn.execute(
                st.EARLIER_PICK, {"task_id": task["id"], "user_id": user_id, "round": task["round"]}
            ).scalar()
            if kind == "review"
            else None,
        }
        claim_id = conn.execute(st.INSERT_CLAIM, values).scalar_one()
        self._event(
            conn,
            "claimed",
            at=now,
            actor=user,
            queue_id=q["id"],
            task_id=task["id"],
            before=snapshot(task),
            after={
                **snapshot(task),
                "claim": claim_id,
                "kind": kind,
                "expires_at": iso(values["expires_at"]),
            },
        )
        return self._claim_view(conn, q, user, {**values, "id": claim_id}, task)

    def _close_expired(
        self, conn: Connection, q: RowMapping, task: RowMapping, now: datetime
    ) -> None:
        stale = conn.execute(st.EXPIRED, {"task_id": task["id"], "now": now}).all()
        if not stale:
            return
        ids = [row.id for row in stale]
        conn.execute(st.END_CLAIMS, {"claim_ids": ids, "now": now, "reason": "expired"})
        for row in stale:
            self._event(
                conn,
                "lease_expired",
                at=now,
                actor=None,
                queue_id=q["id"],
                task_id=task["id"],
                before={
                    "claim": row.id,
                    "reviewer": row.name,
                    "kind": row.kind,
                    "expires_at": iso(row.expires_at),
                },
                after={"claim": row.id, "ended": "expired"},
            )

    def _claim_view(
        self,
        conn: Connection,
        q: RowMapping,
        user: str,
        claim: Mapping[str, Any],
        task: RowMapping,
    ) -> Claim:
        view = task_of(q["name"], task)
        answers: tuple[Decision, ...] = ()
        blind = claim["kind"] == "review" and blind_for(q["blind"], task["blind"])
        if claim["kind"] == "adjudication":
            rows = conn.execute(st.ROUND_REVIEWS, {"task_id": task["id"], "round": task["round"]})
            answers = tuple(decision_of(row) for row in rows.mappings())
        else:
            if task["gold_label"] is not None:
                # A gold item looks like any item waiting for its first review.
                view = replace(view, state="pending", round=1, reviews=0, final_label=None,
                               final_source=None, final_edit=None, rejected=False)  # fmt: skip
            if blind:
                # Which input field is which (`fields`: Response A, B) is no judgment: it stays.
                kept = {"fields": view.draft["fields"]} if "fields" in view.draft else {}
                view = replace(view, draft=kept, draft_label=None, confidence=None)
                if claim.get("pick") is None:
                    # Why the critic sent the item and what it cited come from the draft too.
                    view = replace(view, route_reason=None, principle_ids=())
        return Claim(
            token=claim["token"],
            queue=q["name"],
            reviewer=user,
            kind=claim["kind"],
            task=view,
            claimed_at=claim["claimed_at"],
            expires_at=claim["expires_at"],
            answers=answers,
            pick=claim.get("pick"),
            blind=blind,
        )

    def _held(self, conn: Connection, token: str) -> tuple[RowMapping, RowMapping, RowMapping]:
        """The claim for a token, with its task locked and its queue."""
        q = conn.execute(st.TOKEN_QUEUE, {"token": token}).mappings().first()
        if q is None:
            raise LeaseError(
                "unknown claim token",
                hint="claim an item first and use the token that claim returned",
            )
        task = self._lock_task(conn, q["task_id"])
        # Read after taking the lock: a retry of the same submit may have just committed.
        held = conn.execute(st.CLAIM_BY_TOKEN, {"token": token}).mappings().one()
        return held, task, q

    @staticmethod
    def _require_live(held: RowMapping, task: RowMapping, q: RowMapping, now: datetime) -> None:
        item = task["item_id"]
        if held["ended_at"] is not None:
            raise LeaseError(
                f"the claim on item {item!r} in queue {q['name']!r} has already ended "
                f"({held['end_reason']} at {iso(held['ended_at'])})",
                hint="claim again to get your next item",
            )
        if held["expires_at"] <= now:
            raise LeaseError(
                f"the lease on item {item!r} in queue {q['name']!r} expired at "
                f"{iso(held['expires_at'])} (leases last {q['lease_seconds']} s unless "
                "renewed by a heartbeat)",
                hint="claim again; the item may have gone to another reviewer meanwhile",
            )

    def heartbeat(self, token: str) -> datetime:
        """Renew a live claim's lease; returns the new expiry. Expired claims are not revived."""
        with self._write() as conn:
            held, task, q = self._held(conn, token)
            now = self._now()
            self._require_live(held, task, q, now)
            expires = now + timedelta(seconds=q["lease_seconds"])
            conn.execute(st.RENEW_CLAIM, {"claim_id": held["id"], "new_expiry": expires})
            return expires

    def release(self, token: str) -> bool:
        """Give a claimed item back to the pool; the same reviewer may get it again later.

        Returns:
            False if the claim had already ended or expired (nothing to release).
        """
        with self._write() as conn:
            held, task, q = self._held(conn, token)
            now = self._now()
            if held["ended_at"] is not None or held["expires_at"] <= now:
                return False
            self._end(conn, held, task, q, now, "released")
            return True

    def skip(self, token: str) -> None:
        """This reviewer passes on the item: it goes back to the pool for others, not for them."""
        with self._write() as conn:
            held, task, q = self._held(conn, token)
            now = self._now()
            self._require_live(held, task, q, now)
            self._end(conn, held, task, q, now, "skipped")

    def _end(
        self,
        conn: Connection,
        held: RowMapping,
        task: RowMapping,
        q: RowMapping,
        now: datetime,
        reason: str,
    ) -> None:
        conn.execute(st.END_CLAIMS, {"claim_ids": [held["id"]], "now": now, "reason": reason})
        self._event(
            conn,
            reason,
            at=now,
            actor=held["reviewer"],
            queue_id=q["id"],
            task_id=task["id"],
            before={**snapshot(task), "claim": held["id"]},
            after={**snapshot(task), "claim": held["id"], "ended": reason},
        )
