"""Where critic meets the review queues: routed items in, human decisions back out.

`adjudication` never imports `critic`; this module is the one place that joins them. Both keep
their tables in the same database, so one `--db` URL holds a project's whole state.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from critic.calibrate import QualityEstimate, estimate_accepted_quality
from critic.store import Store, open_store


def _queues(db: str) -> Any:
    from adjudication.store import open_store as open_queue_store

    return open_queue_store(db)


def new_task(row: dict[str, Any]) -> dict[str, Any]:
    """The queue task for one routed row (as `Store.rows` gives it, plus `route_reason`)."""
    draft = dict(row.get("output") or {})
    label = row.get("label")
    if label is None and row.get("score") is not None:
        label = str(int(row["score"]))
    if row["status"] == "failed":
        draft = {"failure": row.get("reason"), "detail": row.get("detail")}
    return {
        "item_id": row["item_id"],
        "item": row.get("row") or {},
        "draft": {**draft, "run_id": row["run_id"], "constitution": row["constitution_hash"]},
        "draft_label": label,
        "confidence": row.get("confidence"),
        "route_reason": row.get("route_reason"),
        "principle_ids": list(draft.get("principles") or []),
    }


def enqueue_review(db: str, queue: str, rows: Iterable[dict[str, Any]]) -> int:
    """Put routed review items into a queue (idempotent per item id); return how many were new."""
    queues = _queues(db)
    try:
        queues.queue(queue)  # a clear error, with a hint, when the queue does not exist
        return int(queues.enqueue(queue, [new_task(r) for r in rows], by="route").added)
    finally:
        queues.close()


def human_outcomes(db: str) -> dict[str, dict[str, Any]]:
    """Decided items across every queue: `{item_id: {label, source, reviewers, agreement}}`."""
    queues = _queues(db)
    try:
        found: dict[str, dict[str, Any]] = {}
        for q in queues.queues():
            for o in queues.outcomes(q.name):
                if o.source == "critic":
                    continue
                found[o.item_id] = {
                    "label": None if o.rejected else o.label, "source": o.source,
                    "rejected": o.rejected, "reviewers": o.reviewers,
                    "agreement": o.agreement, "queue": q.name,
                }  # fmt: skip
        return found
    finally:
        queues.close()


def human_judgments(db: str, run_id: str | None = None) -> tuple[list[float], list[bool]]:
    """(confidence, critic agrees with the human) for every drafted item a human has decided."""
    store = open_store(db)
    humans = human_outcomes(db)
    scores, correct = [], []
    for row in _drafted(store, run_id):
        human = humans.get(row["item_id"])
        if human is None or human["rejected"] or row["confidence"] is None:
            continue
        scores.append(float(row["confidence"]))
        correct.append(_verdict(row) == human["label"])
    return scores, correct


def audit_quality(db: str, run_id: str | None = None, confidence: float = 0.95) -> QualityEstimate:
    """Agreement of auto-accepted labels, estimated without bias from the decided audit sample."""
    store = open_store(db)
    humans = human_outcomes(db)
    audited = {
        item for (run, item), r in store.latest_routes(_run_id(store, run_id)).items()
        if r["reason"] == "audit_sample"
    }  # fmt: skip
    verdicts = [
        _verdict(row) == humans[row["item_id"]]["label"]
        for row in _drafted(store, run_id)
        if row["item_id"] in audited
        and row["item_id"] in humans
        and not humans[row["item_id"]]["rejected"]
    ]
    return estimate_accepted_quality(verdicts, confidence)


def _run_id(store: Store, run_id: str | None) -> str | None:
    if run_id:
        return store.run(run_id).id
    runs = store.runs()
    return runs[-1].id if runs else None


def _drafted(store: Store, run_id: str | None) -> Sequence[dict[str, Any]]:
    return [r for r in store.rows(_run_id(store, run_id)) if r["status"] == "drafted"]


def _verdict(row: dict[str, Any]) -> str | None:
    if row.get("label") is not None:
        return str(row["label"])
    return None if row.get("score") is None else str(int(row["score"]))
