"""Decisions made elsewhere, brought into a queue: several annotators' labels per item.

`plan` turns rows (already read from a file, each with its item id and its place `FILE:LINE`)
into the tasks and decisions to import; it is pure and checks every row before anything is
written. `import_decisions` writes them.

How a row maps to decisions:

- Long form, one decision per row: `reviewer_field` names the column holding who decided, and
  the one label field holds their label. An item may take several rows.
- Wide form, one item per row: without `reviewer_field`, each label field is one reviewer,
  named after the column (`annotator1`, `annotator2`, ...).
- A label field holding a list (PandaLM's `human_labels: [2, 2, 1]`) is one reviewer per
  position, named `FIELD.1`, `FIELD.2`, ...; or, when `reviewer_field` holds a list of the same
  length, by those names.

A missing or empty label is no decision. Labels are taken as text (`2` becomes `"2"`), then
through the label map when there is one (`0=tie,1=a,2=b`; a label the map lacks is an error);
a label mapped to `<rejected>` is a rejection. The item's task, when the queue lacks it, holds
the row's other fields, and `critic_field`'s label (mapped alike) as the critic's draft label.

What an import writes is marked as imported: each decision's claim ends with the reason
`imported` (so reviewer quality leaves its time, recorded as 0 s, out of the timing), and each
item gets one `imported` event naming the person who imported, every decision and its source
line. Reviewers not yet users are added as reviewers without a password (they cannot log in).
Importing again adds nothing: a reviewer's decision already in the item's current round is
left as it is. Items an import completes settle as the queue's own reviews do: agreement ships
the label, disagreement goes to an adjudicator.
"""

from __future__ import annotations

import json
import secrets
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, RowMapping, select

from . import statements as st
from .errors import QueueError
from .evidence import IMPORTED
from .models import REJECTED, Action, NewTask
from .rows import snapshot
from .rules import check_name, settle, suggest
from .schema import users

if TYPE_CHECKING:
    from .store import Store

_CHUNK = 200


def parse_label_map(text: str) -> dict[str, str]:
    """`"0=tie,1=a,2=b"` as `{"0": "tie", "1": "a", "2": "b"}`."""
    mapping: dict[str, str] = {}
    for part in text.split(","):
        source, sep, target = part.partition("=")
        source, target = source.strip(), target.strip()
        if not sep or not source or not target:
            raise QueueError(
                f"label map {text!r}: {part.strip()!r} is not FROM=TO",
                hint='write it as "0=tie,1=a,2=b"',
            )
        if source in mapping:
            raise QueueError(f"label map {text!r}: {source!r} is mapped twice")
        mapping[source] = target
    return mapping


@dataclass(frozen=True)
class ImportSpec:
    """Which columns hold what (see the module's docstring)."""

    label_fields: tuple[str, ...]
    reviewer_field: str | None = None
    label_map: Mapping[str, str] | None = None
    critic_field: str | None = None


@dataclass(frozen=True)
class Imported:
    """One decision to import."""

    item_id: str
    reviewer: str
    label: str
    """The label (after the map), or `REJECTED`."""
    source: str
    """Where it came from: `FILE:LINE`."""


@dataclass(frozen=True)
class ImportPlan:
    tasks: tuple[NewTask, ...]
    decisions: tuple[Imported, ...]
    sources: Mapping[str, str]
    """The first row of each item, for messages."""


@dataclass(frozen=True)
class ImportResult:
    items: int
    items_added: int
    decisions: int
    added: int
    existing: int
    """Decisions already there (an earlier import, or the reviewer decided in the queue)."""
    skipped: int
    """New decisions on items already settled or awaiting adjudication, left out."""
    users_added: tuple[str, ...]
    settled: int
    """Items the import completed that agree, now done."""
    to_adjudicate: int
    """Items the import completed that disagree, now awaiting an adjudicator."""


def _as_label(value: Any, where: str, spec: ImportSpec) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise QueueError(
            f"{where}: a label must be text or a number, not {json.dumps(value)[:80]}",
            hint="point the label field at a column of labels",
        )
    text = value if isinstance(value, str) else str(value)
    if spec.label_map is None:
        return text
    if text not in spec.label_map:
        known = ", ".join(spec.label_map)
        raise QueueError(
            f"{where}: label {text!r} is not in the label map ({known})",
            hint=suggest(text, spec.label_map) or f"add it: --label-map '...,{text}=LABEL'",
        )
    return spec.label_map[text]


def _reviewer(name: Any, where: str) -> str:
    if not isinstance(name, str):
        raise QueueError(f"{where}: a reviewer's name must be text, not {json.dumps(name)[:80]}")
    try:
        check_name("user", name)
    except QueueError as exc:
        raise QueueError(f"{where}: {exc.message}", hint=exc.hint) from None
    return name


def _row_decisions(
    row: Mapping[str, Any], where: str, spec: ImportSpec
) -> list[tuple[str, str | None, str]]:
    """(reviewer, label, where) for each annotator of one row."""
    found = []
    for field in spec.label_fields:
        if field not in row:
            present = ", ".join(sorted(row)[:12])
            raise QueueError(
                f"{where}: no field {field!r}",
                hint=suggest(field, row) or f"fields present: {present}",
            )
        value = row[field]
        named = row.get(spec.reviewer_field) if spec.reviewer_field else None
        if spec.reviewer_field is not None and spec.reviewer_field not in row:
            raise QueueError(f"{where}: no field {spec.reviewer_field!r} (the reviewer field)")
        if isinstance(value, list):
            if named is not None and not (isinstance(named, list) and len(named) == len(value)):
                raise QueueError(
                    f"{where}: {field} holds {len(value)} labels, so {spec.reviewer_field} must "
                    "hold as many reviewer names",
                )
            for k, each in enumerate(value):
                at = f"{where}: {field}[{k}]"
                name = _reviewer(named[k], at) if named is not None else f"{field}.{k + 1}"
                found.append((name, _as_label(each, at, spec), at))
            continue
        at = f"{where}: {field}"
        name = _reviewer(
            named if named is not None else field, f"{where}: {spec.reviewer_field or field}"
        )
        found.append((name, _as_label(value, at, spec), at))
    return found


def plan(rows: Iterable[tuple[str, str, Mapping[str, Any]]], spec: ImportSpec) -> ImportPlan:
    """The tasks and decisions in `rows`, checked; nothing is written.

    Args:
        rows: `(where, item_id, row)` per input row, `where` being `FILE:LINE`.
        spec: which columns hold the labels, reviewers and critic label.
    """
    if not spec.label_fields:
        raise QueueError("name at least one label field", hint="--label-field COLUMN")
    if spec.reviewer_field is not None and len(spec.label_fields) > 1:
        raise QueueError(
            "a reviewer field names who gave the one label of each row; with several label "
            "fields each column is a reviewer already",
            hint="give one --label-field with --reviewer-field, or several without it",
        )
    used = {*spec.label_fields, spec.reviewer_field, spec.critic_field}
    tasks: dict[str, NewTask] = {}
    sources: dict[str, str] = {}
    decisions: dict[tuple[str, str], Imported] = {}
    for where, item_id, row in rows:
        for reviewer, label, at in _row_decisions(row, where, spec):
            if label is None:
                continue
            earlier = decisions.get((item_id, reviewer))
            if earlier is not None and earlier.label != label:
                raise QueueError(
                    f"{at}: {reviewer} labels item {item_id!r} {label!r}, but "
                    f"{earlier.label!r} at {earlier.source}",
                    hint="keep one decision per reviewer and item",
                )
            decisions.setdefault((item_id, reviewer), Imported(item_id, reviewer, label, at))
        if item_id not in tasks:
            critic = None
            if spec.critic_field is not None and spec.critic_field in row:
                critic = _as_label(row[spec.critic_field], f"{where}: {spec.critic_field}", spec)
            fields = {k: v for k, v in row.items() if k not in used}
            try:
                tasks[item_id] = NewTask(item_id=item_id, item=fields, draft_label=critic)
            except ValueError as exc:
                raise QueueError(f"{where}: item {item_id!r}: {exc}") from None
            sources[item_id] = where
    return ImportPlan(tuple(tasks.values()), tuple(decisions.values()), sources)


def _check_labels(queue: str, labels: Sequence[str] | None, found: ImportPlan) -> None:
    if labels is None:
        return
    allowed = [*labels, REJECTED]
    for d in found.decisions:
        if d.label not in allowed:
            raise QueueError(
                f"{d.source}: label {d.label!r} is not one of queue {queue!r}'s labels "
                f"({', '.join(labels)})",
                hint=suggest(d.label, allowed) or "map the file's labels: --label-map '0=a,1=b'",
            )
    for t in found.tasks:
        if t.draft_label is not None and t.draft_label not in labels:
            raise QueueError(
                f"{found.sources[t.item_id]}: critic label {t.draft_label!r} is not one of queue "
                f"{queue!r}'s labels ({', '.join(labels)})",
                hint=suggest(t.draft_label, labels) or "map it with --label-map",
            )


def _action(label: str, draft_label: str | None) -> Action:
    if label == REJECTED:
        return "reject"
    return "accept" if label == draft_label else "edit"


def import_decisions(store: Store, queue: str, found: ImportPlan, *, by: str) -> ImportResult:
    """Write a checked plan into `queue` (see the module's docstring); safe to run again.

    Args:
        by: who imports, for the history (the `imported` events' actor).
    """
    q = store.queue(queue)
    _check_labels(queue, q.labels, found)
    known = {u.name for u in store.users()}
    added_users = []
    for name in dict.fromkeys(d.reviewer for d in found.decisions):
        if name not in known:
            store.add_user(name, "reviewer", by=by)
            added_users.append(name)
    enqueued = store.enqueue(queue, found.tasks, by=by)
    by_item: defaultdict[str, list[Imported]] = defaultdict(list)
    for d in found.decisions:
        by_item[d.item_id].append(d)
    totals = {"added": 0, "existing": 0, "skipped": 0, "settled": 0, "to_adjudicate": 0}
    items = list(by_item)
    for start in range(0, len(items), _CHUNK):
        with store._write() as conn:
            qrow = store._queue_row(conn, queue)
            names = {d.reviewer for item in items[start : start + _CHUNK] for d in by_item[item]}
            ids = dict(
                conn.execute(select(users.c.name, users.c.id).where(users.c.name.in_(names))).all()
            )
            for item in items[start : start + _CHUNK]:
                outcome = _import_item(store, conn, qrow, item, by_item[item], ids, by)
                for key, value in outcome.items():
                    totals[key] += value
    return ImportResult(
        items=len(found.tasks),
        items_added=enqueued.added,
        decisions=len(found.decisions),
        added=totals["added"],
        existing=totals["existing"],
        skipped=totals["skipped"],
        users_added=tuple(added_users),
        settled=totals["settled"],
        to_adjudicate=totals["to_adjudicate"],
    )


def _import_item(
    store: Store,
    conn: Connection,
    q: RowMapping,
    item_id: str,
    wanted: list[Imported],
    ids: Mapping[str, int],
    by: str,
) -> dict[str, int]:
    task = store._task_row(conn, q, item_id, lock=True)
    round_params = {"task_id": task["id"], "round": task["round"]}
    there = {row["reviewer"] for row in conn.execute(st.ROUND_REVIEWS, round_params).mappings()}
    new = [d for d in wanted if d.reviewer not in there]
    outcome = {"existing": len(wanted) - len(new)}
    if not new:
        return outcome
    if task["state"] != "pending":
        outcome["skipped"] = len(new)
        return outcome
    now = store._now()
    written = []
    for d in new:
        claim_id = conn.execute(
            st.INSERT_CLAIM,
            {
                "task_id": task["id"],
                "user_id": ids[d.reviewer],
                "round": task["round"],
                "kind": "review",
                "token": secrets.token_urlsafe(24),
                "claimed_at": now,
                "expires_at": now,
                "ended_at": now,
                "end_reason": IMPORTED,
                "pick": None,
            },
        ).scalar_one()
        action = _action(d.label, task["draft_label"])
        label = None if action == "reject" else d.label
        decision_id = conn.execute(
            st.INSERT_DECISION,
            {
                "task_id": task["id"],
                "claim_id": claim_id,
                "user_id": ids[d.reviewer],
                "round": task["round"],
                "kind": "review",
                "action": action,
                "label": label,
                "edit": None,
                "note": None,
                "seconds": 0.0,
                "created_at": now,
            },
        ).scalar_one()
        written.append(
            {
                "decision": decision_id,
                "reviewer": d.reviewer,
                "action": action,
                "label": label,
                "source": d.source,
            }
        )
    reviews = task["reviews"] + len(new)
    changes: dict[str, Any] = {"reviews": reviews}
    if reviews >= q["overlap"]:
        changes.update(settle(conn.execute(st.ROUND_REVIEWS, round_params).mappings().all()))
    after = {**task, **changes}
    store._save(conn, after, now)
    store._event(
        conn,
        "imported",
        at=now,
        actor=by,
        queue_id=q["id"],
        task_id=task["id"],
        before=snapshot(task),
        after={**snapshot(after), "decisions": written},
    )
    outcome["added"] = len(new)
    if after["state"] == "done":
        outcome["settled"] = 1
    elif after["state"] == "adjudication":
        outcome["to_adjudicate"] = 1
    return outcome
