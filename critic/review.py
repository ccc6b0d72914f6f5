"""Where critic meets the review queues: routed items in, human decisions back out.

`adjudication` never imports `critic`; this module is the one place that joins them. Both keep
their tables in the same database, so one `--db` URL holds a project's whole state.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from critic.calibrate import QualityEstimate, estimate_accepted_quality
from critic.judgments import Judgment, stored_verdicts
from critic.quality import PPIEstimate, ppi_mean
from critic.store import Store, open_store, verdict


def _queues(db: str) -> Any:
    from adjudication.store import open_store as open_queue_store

    return open_queue_store(db)


def new_task(
    row: dict[str, Any], *, key: str | None = None, principle_texts: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The queue task for one routed row (as `Store.rows` gives it, plus `route_reason`).

    Args:
        key: the task's id in its queue (default: the item id; see `task_key`).
        principle_texts: `{principle id: text}` of the constitution version that made the draft;
            the cited principles' texts travel in the draft so the review screen can show them.
    """
    draft = dict(row.get("output") or {})
    label = verdict(row.get("label"), row.get("score"))
    if row["status"] == "failed":
        draft = {"failure": row.get("reason"), "detail": row.get("detail")}
    cited = list(draft.get("principles") or [])
    provenance: dict[str, Any] = {
        "run_id": row["run_id"],
        "item_id": row["item_id"],
        "constitution": row["constitution_hash"],
    }
    if principle_texts is not None:
        texts = principle_texts
        provenance["principle_texts"] = {p: texts[p] for p in cited if p in texts}
    return {
        "item_id": key or row["item_id"],
        "item": row.get("row") or {},
        "draft": {**draft, **provenance},
        "draft_label": label,
        "confidence": row.get("confidence"),
        "route_reason": row.get("route_reason"),
        "principle_ids": cited,
    }


def task_key(item_id: str, run_id: str, taken: Mapping[str, str | None]) -> str:
    """The id of a run's item in a queue: the item id, unless another run's item holds it there.

    `taken` maps the queue's task ids to the run that queued them. The first run to queue an item
    id keeps it as is (what reviewers see); the same id from a later run becomes `ID@RUN`, so
    both are reviewed apart, and queueing either again finds its own task (idempotent).
    """
    key = item_id
    while key in taken and taken[key] != run_id:
        key = f"{key}@{run_id}"
    return key


def enqueue_review(db: str, queue: str, rows: Iterable[dict[str, Any]]) -> int:
    """Put routed review items into a queue (idempotent per run and item); return how many were
    new. Each draft carries its run, item id and the texts of the principles it cites."""
    queues = _queues(db)
    store = open_store(db)
    try:
        queues.queue(queue)  # a clear error, with a hint, when the queue does not exist
        taken = {t.item_id: t.draft.get("run_id") for t in queues.tasks(queue)}
        texts: dict[str, dict[str, str]] = {}
        tasks = []
        for row in rows:
            digest = row["constitution_hash"]
            if digest not in texts:
                texts[digest] = _principle_texts(store, digest)
            key = task_key(row["item_id"], row["run_id"], taken)
            taken[key] = row["run_id"]
            tasks.append(new_task(row, key=key, principle_texts=texts[digest]))
        return int(queues.enqueue(queue, tasks, by="route").added)
    finally:
        queues.close()
        store.close()


def _principle_texts(store: Store, digest: str | None) -> dict[str, str]:
    content = store.constitution_content(digest) if digest else None
    if content is None:
        return {}
    return {str(p["id"]): str(p["text"]) for p in json.loads(content).get("principles") or []}


def human_outcomes(db: str) -> dict[tuple[str, str], dict[str, Any]]:
    """Decided items across every queue: `{(run_id, item_id): {label, source, reviewers, ...}}`.

    A decision belongs to the run whose draft the reviewer saw (the queued draft's `run_id`);
    tasks queued without a run (not from critic) belong to none.
    """
    queues = _queues(db)
    try:
        found: dict[tuple[str, str], dict[str, Any]] = {}
        for q in queues.queues():
            decided = [o for o in queues.outcomes(q.name) if o.source != "critic"]
            if not decided:
                continue  # spare reading the queue's drafts
            owner = {
                t.item_id: (str(t.draft["run_id"]), str(t.draft.get("item_id") or t.item_id))
                for t in queues.tasks(q.name) if t.draft.get("run_id")
            }  # fmt: skip
            for o in decided:
                if o.item_id not in owner:
                    continue
                found[owner[o.item_id]] = {
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
        human = humans.get((row["run_id"], row["item_id"]))
        if human is None or human["rejected"] or row["confidence"] is None:
            continue
        scores.append(float(row["confidence"]))
        correct.append(verdict(row.get("label"), row.get("score")) == human["label"])
    return scores, correct


def human_panel_judgments(db: str, run_id: str | None = None) -> list[Judgment]:
    """Every drafted item a human has decided, with each critic's stored verdict (a panel run's
    critics, or the one critic), for `calibrate --db --combine/--cascade`."""
    store = open_store(db)
    humans = human_outcomes(db)
    found = []
    for row in _drafted(store, run_id):
        human = humans.get((row["run_id"], row["item_id"]))
        verdicts = stored_verdicts(row)
        if human is None or human["rejected"] or not verdicts:
            continue
        found.append(Judgment(row["item_id"], verdicts, human["label"]))
    return found


def audit_quality(db: str, run_id: str | None = None, confidence: float = 0.95) -> QualityEstimate:
    """Agreement of auto-accepted labels, estimated without bias from the decided audit sample."""
    store = open_store(db)
    humans = human_outcomes(db)
    audited = {
        key for key, r in store.latest_routes(_run_id(store, run_id)).items()
        if r["reason"] == "audit_sample"
    }  # fmt: skip
    verdicts = [
        verdict(row.get("label"), row.get("score")) == humans[key]["label"]
        for row in _drafted(store, run_id)
        if (key := (row["run_id"], row["item_id"])) in audited
        and key in humans
        and not humans[key]["rejected"]
    ]
    return estimate_accepted_quality(verdicts, confidence)


def ppi_quality(db: str, run_id: str | None = None, confidence: float = 0.95) -> PPIEstimate:
    """PPI++ estimate of the same agreement: the decided audit sample plus the critic's
    confidence on every auto-accepted (confident) item of the run."""
    store = open_store(db)
    humans = human_outcomes(db)
    latest = store.latest_routes(_run_id(store, run_id))
    audit_ok, audit_conf, accepted_conf = [], [], []
    for row in _drafted(store, run_id):
        key = (row["run_id"], row["item_id"])
        routed, conf = latest.get(key), row.get("confidence")
        if routed is None or conf is None:
            continue
        if routed["reason"] == "confident":
            accepted_conf.append(float(conf))
        elif routed["reason"] == "audit_sample" and key in humans and not humans[key]["rejected"]:
            audit_ok.append(verdict(row.get("label"), row.get("score")) == humans[key]["label"])
            audit_conf.append(float(conf))
    return ppi_mean(audit_ok, audit_conf, accepted_conf, confidence)


def _run_id(store: Store, run_id: str | None) -> str | None:
    if run_id:
        return store.run(run_id).id
    runs = store.runs()
    return runs[-1].id if runs else None


def _drafted(store: Store, run_id: str | None) -> Sequence[dict[str, Any]]:
    return [r for r in store.rows(_run_id(store, run_id)) if r["status"] == "drafted"]
