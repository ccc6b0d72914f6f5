"""Decisions made in another review tool (such as Label Studio), recorded in a queue as if its
reviewers had decided there.

Each `ExternalDecision` names the queue's item, the reviewer, and either an answer (accept, edit
or reject, checked like any decision) or a skip, with the seconds the reviewer spent and when
they decided. `record_external` writes them:

- A reviewer who is not a user yet is added as a reviewer without a password (they cannot log
  in to the web app) and made a member of the queue.
- A decision is a claim that ended `imported` (as `critic queue import`'s: reviewer quality
  does not time it) and a decision row with the reviewer's own time and
  time spent, and a `decided` event naming the reviewer and where it came from (`source`), so
  the item's history, the dashboards, the agreement figures and the webhooks see it like any
  other.
- A skip is a claim that ended `skipped`: the item stays open, and the reviewer is not counted
  as having decided it.
- Once an item has `overlap` reviews (or more: every decision of one call is written before the
  item is settled), it settles as the queue's own reviews do: agreement ships the label,
  disagreement waits for an adjudicator.

Recording the same decisions again changes nothing: a reviewer's decision (or skip) already in
the item's current round is left as it is. One that differs from it (the reviewer changed their
answer in the other tool afterwards) is reported, not applied; so is a new decision on an item
that is already settled or awaiting adjudication.
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import Connection, RowMapping, select

from . import statements as st
from .database import iso
from .errors import QueueError
from .evidence import IMPORTED
from .rows import snapshot
from .rules import Rules, answer, canonical, settle
from .schema import claims, users

if TYPE_CHECKING:
    from .store import Store

__all__ = ["ExternalDecision", "ExternalResult", "record_external"]

_CHUNK = 200


@dataclass(frozen=True)
class ExternalDecision:
    """One reviewer's decision (or skip) on one item, made in another tool."""

    item_id: str
    reviewer: str
    action: Literal["accept", "edit", "reject", "skip"]
    label: str | None = None
    """The label (accept and edit of a label item); None for reject, skip and revisions."""
    edit: Mapping[str, Any] | None = None
    """Edited fields (`{"revision": ...}` for a revision item)."""
    seconds: float = 0.0
    decided_at: datetime | None = None
    """When the reviewer decided (the tool's time); None: now."""
    source: Mapping[str, Any] = field(default_factory=dict)
    """Where it came from, kept in the item's history (`{"tool": "label-studio", ...}`)."""


@dataclass(frozen=True)
class ExternalResult:
    decisions: int
    """New decisions written."""
    skips: int
    """New skips recorded."""
    existing: int
    """Decisions and skips already there (an earlier import of the same ones)."""
    changed: tuple[ExternalDecision, ...]
    """Decisions that differ from the one the reviewer already has in the item's round: left as
    it was."""
    late: tuple[ExternalDecision, ...]
    """New decisions on items already settled or awaiting adjudication: left out."""
    users_added: tuple[str, ...]
    settled: int
    """Items the call settled (the reviews agree)."""
    to_adjudicate: int
    """Items the call completed whose reviews disagree: now awaiting an adjudicator."""


def record_external(
    store: Store, queue: str, found: Sequence[ExternalDecision], *, by: str
) -> ExternalResult:
    """Record decisions made in another tool in `queue` (see the module's docstring).

    Args:
        found: the decisions; their items must be in the queue already (`Store.enqueue`).
        by: who or what records them, for the history (e.g. `label-studio`).
    """
    for d in found:
        if d.action == "skip" and (d.label is not None or d.edit is not None):
            raise QueueError(f"item {d.item_id!r}: a skip takes no label or edit")
        if d.seconds < 0:
            raise QueueError(f"item {d.item_id!r}: seconds spent cannot be negative ({d.seconds})")
    known = {u.name for u in store.users()}
    added = [name for name in dict.fromkeys(d.reviewer for d in found) if name not in known]
    for name in added:
        store.add_user(name, "reviewer", by=by)
    store.add_members(queue, dict.fromkeys(d.reviewer for d in found), by=by)
    by_item: defaultdict[str, list[ExternalDecision]] = defaultdict(list)
    for d in found:
        by_item[d.item_id].append(d)
    totals: dict[str, Any] = {"decisions": 0, "skips": 0, "existing": 0, "changed": [],
                              "late": [], "settled": 0, "to_adjudicate": 0}  # fmt: skip
    items = list(by_item)
    for start in range(0, len(items), _CHUNK):
        chunk = items[start : start + _CHUNK]
        with store._write() as conn:
            q = store._queue_row(conn, queue)
            names = {d.reviewer for item in chunk for d in by_item[item]}
            ids = dict(
                conn.execute(select(users.c.name, users.c.id).where(users.c.name.in_(names))).all()
            )
            for item in chunk:
                outcome = _record_item(store, conn, q, item, by_item[item], ids, by)
                for key, value in outcome.items():
                    totals[key] = totals[key] + value
    return ExternalResult(
        decisions=totals["decisions"],
        skips=totals["skips"],
        existing=totals["existing"],
        changed=tuple(totals["changed"]),
        late=tuple(totals["late"]),
        users_added=tuple(added),
        settled=totals["settled"],
        to_adjudicate=totals["to_adjudicate"],
    )


def _record_item(
    store: Store,
    conn: Connection,
    q: RowMapping,
    item_id: str,
    wanted: list[ExternalDecision],
    ids: Mapping[str, int],
    by: str,
) -> dict[str, Any]:
    task: Mapping[str, Any] = dict(store._task_row(conn, q, item_id, lock=True))
    rules = Rules(q["name"], q["labels"], False, item_id, task["draft_label"], task["answer"])
    round_params = {"task_id": task["id"], "round": task["round"]}
    there: dict[str, Mapping[str, Any]] = {
        r["reviewer"]: dict(r) for r in conn.execute(st.ROUND_REVIEWS, round_params).mappings()
    }
    skipped = set(
        conn.execute(
            select(users.c.name)
            .join(claims, claims.c.user_id == users.c.id)
            .where(claims.c.task_id == task["id"], claims.c.round == task["round"],
                   claims.c.kind == "review", claims.c.end_reason == "skipped")
        ).scalars()
    )  # fmt: skip
    outcome: dict[str, Any] = {"existing": 0, "changed": [], "late": []}
    new: list[tuple[ExternalDecision, str | None]] = []
    now = store._now()
    for d in wanted:
        if d.action == "skip":
            if d.reviewer in skipped:
                outcome["existing"] += 1
                continue
            skipped.add(d.reviewer)
            _claim(store, conn, task, ids[d.reviewer], d, now, "skipped")
            after = {**snapshot(task), "ended": "skipped", "source": dict(d.source)}
            store._event(conn, "skipped", at=now, actor=d.reviewer, queue_id=q["id"],
                         task_id=task["id"], before=snapshot(task), after=after)  # fmt: skip
            outcome["skips"] = outcome.get("skips", 0) + 1
            continue
        chosen = answer(rules, "review", d.action, d.label, d.edit)
        earlier = there.get(d.reviewer)
        if earlier is not None:
            same = (
                earlier["action"] == "reject",
                earlier["label"],
                canonical(earlier["edit"]),
            ) == (d.action == "reject", chosen, canonical(d.edit))
            if same:
                outcome["existing"] += 1
            else:
                outcome["changed"].append(d)
            continue
        if task["state"] != "pending":
            outcome["late"].append(d)
            continue
        there[d.reviewer] = {"action": d.action, "label": chosen, "edit": d.edit}
        new.append((d, chosen))
    if not new:
        return outcome
    written = []
    for d, chosen in new:
        claim_id = _claim(store, conn, task, ids[d.reviewer], d, now, IMPORTED)
        decided_at = d.decided_at or now
        decision_id = conn.execute(
            st.INSERT_DECISION,
            {
                "task_id": task["id"],
                "claim_id": claim_id,
                "user_id": ids[d.reviewer],
                "round": task["round"],
                "kind": "review",
                "action": d.action,
                "label": chosen,
                "edit": None if d.edit is None else dict(d.edit),
                "note": None,
                "seconds": d.seconds,
                "created_at": decided_at,
            },
        ).scalar_one()
        written.append((d, chosen, decision_id, decided_at))
    reviews = task["reviews"] + len(new)
    changes: dict[str, Any] = {"reviews": reviews}
    if task.get("gold_label") is not None:
        changes = {}  # a gold item measures the reviewers: it never settles (`adjudication.gold`)
    elif reviews >= q["overlap"]:
        changes.update(settle(conn.execute(st.ROUND_REVIEWS, round_params).mappings().all()))
    after = {**task, **changes}
    store._save(conn, after, now)
    # One `decided` event per decision, as the queue's own decisions write; the last one shows
    # where the item ended up.
    step: Mapping[str, Any] = dict(task)
    for k, (d, chosen, decision_id, decided_at) in enumerate(written):
        previous = step
        step = after if k == len(written) - 1 else {**step, "reviews": step["reviews"] + 1}
        store._event(
            conn,
            "decided",
            at=now,
            actor=d.reviewer,
            queue_id=q["id"],
            task_id=task["id"],
            before=snapshot(previous),
            after={**snapshot(step), "decision": decision_id, "kind": "review",
                   "action": d.action, "label": chosen, "note": None,
                   "decided_at": iso(decided_at), "source": dict(d.source)},
        )  # fmt: skip
    outcome["decisions"] = len(new)
    if after["state"] == "done":
        outcome["settled"] = 1
    elif after["state"] == "adjudication":
        outcome["to_adjudicate"] = 1
    return outcome


def _claim(
    store: Store,
    conn: Connection,
    task: Mapping[str, Any],
    user_id: int,
    d: ExternalDecision,
    now: datetime,
    reason: str,
) -> int:
    """A claim that began `seconds` before the decision and ended with it."""
    ended = d.decided_at or now
    return int(
        conn.execute(
            st.INSERT_CLAIM,
            {
                "task_id": task["id"],
                "user_id": user_id,
                "round": task["round"],
                "kind": "review",
                "token": secrets.token_urlsafe(24),
                "claimed_at": ended - timedelta(seconds=d.seconds),
                "expires_at": ended,
                "ended_at": ended,
                "end_reason": reason,
                "pick": None,
            },
        ).scalar_one()
    )
