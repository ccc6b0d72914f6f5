"""Where critic meets the review queues: routed items in, human decisions back out.

`adjudication` never imports `critic`; this module is the one place that sends runs' items to
the queues. Each queued task carries its opaque, indexed origin (`RUN/ITEM`), and decisions come
back through the final record (`critic.ship`), which reads them a batch of origins at a time.
Both keep their tables in the same database, so one `--db` URL holds a project's whole state.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from critic.calibrate import QualityEstimate, estimate_accepted_quality
from critic.judgments import Judgment, stored_verdicts
from critic.quality import PPIEstimate, ppi_mean
from critic.ship import FinalRecord, label_set, origin_of
from critic.ship.stream import batched, joined
from critic.store import Store, open_store, verdict

if TYPE_CHECKING:
    from adjudication.store import Store as QueueStore
    from critic.routing import Policy
    from critic.valid_labels import Label


@contextmanager
def open_stores(db: str) -> Iterator[tuple[Store, QueueStore]]:
    """The run store and the review queues of one database, each opened once and closed after."""
    from adjudication.store import open_store as open_queue_store

    store = open_store(db)  # takes a plain file path too; the queues take its URL
    try:
        queues = open_queue_store(store.engine.url.render_as_string(hide_password=False))
        try:
            yield store, queues
        finally:
            queues.close()
    finally:
        store.close()


def new_task(
    row: dict[str, Any],
    *,
    key: str | None = None,
    principle_texts: Mapping[str, str] | None = None,
    labels: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The queue task for one routed row (as `Store.rows` gives it, plus `route_reason`).

    Args:
        key: the task's id in its queue (default: the item id; see `task_key`).
        principle_texts: `{principle id: text}` of the constitution version that made the draft;
            the cited principles' texts travel in the draft so the review screen can show them.
        labels: the constitution's labels: the draft's verdict is spelled as they spell it.
    """
    from adjudication.rules import match_label

    draft = dict(row.get("output") or {})
    label = verdict(row.get("label"), row.get("score"))
    if label is not None and labels:
        label = match_label(label, labels) or label
    if row["status"] == "failed":
        draft = {"failure": row.get("reason"), "detail": row.get("detail")}
    cited = list(draft.get("principles") or [])
    provenance: dict[str, Any] = {
        "run_id": row["run_id"],
        "item_id": row["item_id"],
        "constitution": row["constitution_hash"],
    }
    fields = (row.get("params") or {}).get("fields") or {}
    if fields:
        provenance["fields"] = {k: v for k, v in fields.items() if v}
    if principle_texts is not None:
        texts = principle_texts
        named = dict.fromkeys([*cited, *_finding_principles(draft)])
        provenance["principle_texts"] = {p: texts[p] for p in named if p in texts}
    # A revise item is reviewed as a revision, also when drafting failed: the reviewer writes it.
    revision = row.get("task") == "revise" and row.get("reason") != "invalid_input"
    return {
        "guidelines": row["constitution_hash"] or None,
        "item_id": key or row["item_id"],
        "item": row.get("row") or {},
        "draft": {**draft, **provenance},
        "draft_label": label,
        "confidence": row.get("confidence"),
        "route_reason": row.get("route_reason"),
        "principle_ids": cited,
        "origin": origin_of(row["run_id"], row["item_id"]),
        "answer": "revision" if revision else "label",
    }


def _finding_principles(draft: Mapping[str, Any]) -> list[str]:
    """The principles a draft's findings name (a finding may name any principle of the
    constitution, not only the one its round asked about); the review screen shows them too."""
    findings = list(draft.get("findings") or [])
    for entry in draft.get("rounds") or []:
        if isinstance(entry, dict):
            findings += entry.get("findings") or []
    return [f["principle"] for f in findings
            if isinstance(f, dict) and isinstance(f.get("principle"), str)]  # fmt: skip


def task_key(item_id: str, run_id: str, taken: Mapping[str, str | None]) -> str:
    """The id of a run's item in a queue: the item id, unless another run's item holds it there.

    `taken` maps the queue's task ids to the origin that queued them. The first run to queue an
    item id keeps it as is (what reviewers see); the same id from a later run becomes `ID@RUN`,
    so both are reviewed apart, and queueing either again finds its own task (idempotent).
    """
    key = item_id
    while key in taken and taken[key] != origin_of(run_id, item_id):
        key = f"{key}@{run_id}"
    return key


def enqueue_review(
    store: Store, queues: QueueStore, queue: str, rows: Iterable[dict[str, Any]]
) -> int:
    """Put routed review items into a queue (idempotent per run and item); return how many were
    new. The queue takes the label set of the constitution behind the items, with the labels'
    descriptions (`adjudication.Store.adopt_labels`), so reviewers pick from the same labels
    the critic drafted."""
    queues.queue(queue)  # a clear error, with a hint, when the queue does not exist
    contents: dict[str, Any] = {}
    added = 0
    for batch in batched(rows, 1000):
        for row in batch:
            digest = row["constitution_hash"]
            if digest not in contents:
                content = store.constitution_content(digest) if digest else None
                contents[digest] = (content, label_set(content))
                labels = contents[digest][1]
                if labels is not None:
                    queues.adopt_labels(queue, labels.labels, labels.descriptions, by="route")
                if content is not None:
                    queues.set_guidelines(queue, digest, guidelines(content), by="route")
        spelled = queues.queue(queue).labels
        taken = queues.origins_in(queue, _candidate_keys(batch))
        tasks = []
        for row in batch:
            content = contents[row["constitution_hash"]][0]
            key = task_key(row["item_id"], row["run_id"], taken)
            taken[key] = origin_of(row["run_id"], row["item_id"])
            tasks.append(new_task(row, key=key, principle_texts=_principle_texts(content),
                                  labels=spelled))  # fmt: skip
        added += int(queues.enqueue(queue, tasks, by="route").added)
    return added


def _candidate_keys(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Every task id `task_key` may try for these rows (the id, then `@RUN` suffixes)."""
    keys = []
    for row in rows:
        key = row["item_id"]
        for _ in range(4):
            keys.append(key)
            key = f"{key}@{row['run_id']}"
    return keys


def guidelines(content: str) -> dict[str, Any]:
    """What reviewers read beside an item (`adjudication.guidelines.Guidelines`), from a stored
    constitution's canonical JSON: its instructions, labels (or score levels) with what they
    mean, and principles with their examples."""
    data = json.loads(content)
    task = data.get("task") or {}
    found = label_set(content)
    labels = [{"name": name, "description": (found.descriptions if found else {}).get(name, "")}
              for name in (found.labels if found else ())]  # fmt: skip
    return {
        "title": data.get("title"),
        "version": data.get("version"),
        "kind": task.get("kind"),
        "instructions": "\n\n".join(
            text for text in (data.get("description"), data.get("instructions")) if text
        )
        or None,
        "question": task.get("question"),
        "labels": labels,
        "principles": [
            {
                "id": str(p["id"]),
                "text": str(p["text"]),
                "examples": [_example(e) for e in p.get("examples") or ()],
            }
            for p in data.get("principles") or ()
        ],
    }


def _example(example: Mapping[str, Any]) -> dict[str, Any]:
    label = example.get("label")
    if label is None and example.get("score") is not None:
        label = str(example["score"])
    keys = ("prompt", "response", "text", "explanation")
    return {
        **{k: example[k] for k in keys if example.get(k)},
        **({"label": label} if label else {}),
    }


def _principle_texts(content: str | None) -> dict[str, str]:
    if content is None:
        return {}
    return {str(p["id"]): str(p["text"]) for p in json.loads(content).get("principles") or []}


def _decided(
    store: Store, queues: QueueStore, run_ids: Sequence[str]
) -> Iterator[tuple[dict[str, Any], FinalRecord]]:
    """Every drafted item of the runs a human has decided (not rejected), with its record."""
    for row, record in joined(store, queues, run_ids):
        if row["status"] == "drafted" and record.status in ("decided", "adjudicated"):
            yield row, record


def human_judgments(
    store: Store, queues: QueueStore, run_ids: Sequence[str]
) -> tuple[list[float], list[bool]]:
    """(confidence, critic agrees with the human) for every drafted item a human has labelled,
    whatever how it came to be reviewed (`decided_labels` says which are a fair sample)."""
    scores, correct = [], []
    for _, record in _decided(store, queues, run_ids):
        if record.confidence is None or record.human_label is None:
            continue
        scores.append(float(record.confidence))
        correct.append(record.critic_label == record.human_label)
    return scores, correct


def human_panel_judgments(
    store: Store, queues: QueueStore, run_ids: Sequence[str]
) -> list[Judgment]:
    """Every drafted item a human has labelled, with each critic's stored verdict (a panel run's
    critics, or the one critic), for `calibrate --db --combine/--cascade`."""
    found = []
    for row, record in _decided(store, queues, run_ids):
        verdicts = stored_verdicts(row)
        if record.human_label is None or not verdicts:
            continue
        found.append(Judgment(row["item_id"], verdicts, record.human_label))
    return found


#: Route reasons whose items a pass's seeded draw may have picked and sent to review.
_DRAWN = ("calibration_sample", "audit_sample", "low_confidence", "budget")


def decided_labels(store: Store, queues: QueueStore, run_ids: Sequence[str]) -> list[Label]:
    """Every human label on a drafted item of the runs, as `critic.valid_labels` weighs it: how
    its draft came to be reviewed (the route's reason, under which policy's seeded draw), whether
    the reviewer saw the critic's label (a queue that is not blind), and whether its draw is
    complete (every item the draw picked below the threshold decided, none accepted by a
    budget). `calibrate_labels` then keeps only the labels that are a fair sample."""
    from critic.valid_labels import Label, in_draw

    policies: dict[str, Policy | None] = {}
    blind: dict[str, bool] = {}
    pinned: dict[tuple[str, str], bool] = {}
    incomplete: set[str] = set()
    found: list[tuple[FinalRecord, str, Policy]] = []
    for row, record in joined(store, queues, run_ids):
        if row["status"] != "drafted" or record.policy is None:
            continue
        if record.policy not in policies:
            policies[record.policy] = _policy(store.policy_content(record.policy))
        policy = policies[record.policy]
        if policy is None:  # routed with --accept-all: no draw, no threshold
            continue
        draw = f"{record.policy}/{record.run_id}"
        picked = in_draw(record.item_id, policy.seed, policy.calibration_rate, policy.audit_rate)
        if (
            picked
            and record.route_reason in _DRAWN
            and (record.route_reason == "budget" or record.status == "pending")
        ):
            incomplete.add(draw)
        if record.status in ("decided", "adjudicated") and record.human_label is not None:
            found.append((record, draw, policy))
    labels = []
    for record, draw, policy in found:
        if record.confidence is None:
            continue
        if record.queue is not None and record.queue not in blind:
            blind[record.queue] = queues.queue(record.queue).blind
            # Items claimed before an admin changed the queue's blindness keep their own.
            pinned.update({(record.queue, o): b for o, b in
                           queues.blind_origins(record.queue).items()})  # fmt: skip
        queue_blind = blind.get(record.queue or "", False)
        was_blind = pinned.get((record.queue or "", origin_of(record.run_id, record.item_id)),
                               queue_blind)  # fmt: skip
        labels.append(
            Label(
                confidence=float(record.confidence),
                agrees=record.critic_label == record.human_label,
                reason=record.route_reason or "",
                draw=draw,
                threshold=policy.threshold,
                in_draw=in_draw(record.item_id, policy.seed, policy.calibration_rate,
                                policy.audit_rate),
                seen=not was_blind,
                draw_complete=draw not in incomplete,
            )
        )  # fmt: skip
    return labels


def _policy(content: str | None) -> Policy | None:
    """A stored policy, or None for `--accept-all` (or content no longer readable)."""
    import yaml
    from pydantic import ValidationError

    from critic.routing import Policy

    data = yaml.safe_load(content or "") if content else None
    if not isinstance(data, dict) or data.get("accept_all"):
        return None
    try:
        return Policy.model_validate(data)
    except ValidationError:
        return None


def _audited(store: Store, queues: QueueStore, run_ids: Sequence[str]) -> Iterator[FinalRecord]:
    for row, record in joined(store, queues, run_ids):
        if row["status"] == "drafted":
            yield record


def audit_quality(
    store: Store, queues: QueueStore, run_ids: Sequence[str], confidence: float = 0.95
) -> QualityEstimate:
    """Agreement of auto-accepted labels, estimated without bias from the decided audit sample."""
    verdicts = [
        r.critic_label == r.human_label
        for r in _audited(store, queues, run_ids)
        if r.route_reason == "audit_sample" and r.human_label is not None
    ]
    return estimate_accepted_quality(verdicts, confidence)


def ppi_quality(
    store: Store, queues: QueueStore, run_ids: Sequence[str], confidence: float = 0.95
) -> PPIEstimate:
    """PPI++ estimate of the same agreement: the decided audit sample plus the critic's
    confidence on every auto-accepted (confident) item of the runs."""
    audit_ok, audit_conf, accepted_conf = [], [], []
    for r in _audited(store, queues, run_ids):
        if r.route is None or r.confidence is None:
            continue
        if r.route_reason == "confident":
            accepted_conf.append(float(r.confidence))
        elif r.route_reason == "audit_sample" and r.human_label is not None:
            audit_ok.append(r.critic_label == r.human_label)
            audit_conf.append(float(r.confidence))
    return ppi_mean(audit_ok, audit_conf, accepted_conf, confidence)
