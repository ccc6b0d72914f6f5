"""Final records streamed from the stores: in input order, a batch at a time.

Each batch of stored rows looks up its own routes (run store) and its own decisions (the queues,
through the tasks' indexed origin), so memory does not grow with the run or with the queues.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import islice
from typing import Any, Protocol

from adjudication.labelmodel import ItemPosterior
from adjudication.models import OriginOutcome, Queue
from critic.ship.labels import LabelSet, label_set
from critic.ship.record import FinalRecord, compose, origin_of
from critic.store import Store

#: Stored rows per batch of route and decision lookups.
BATCH = 2000


class Decisions(Protocol):
    """What the final record needs from the review queues (`adjudication.store.Store`)."""

    def outcomes_for(self, origins: Sequence[str]) -> dict[str, list[OriginOutcome]]: ...

    def queue(self, name: str) -> Queue: ...


def _label_model(queues: Decisions, name: str) -> dict[tuple[str, str], ItemPosterior]:
    """The label model of a queue whose items get several reviewers (fitted once per read: its
    EM needs every item of the queue), by (queue, task id); nothing for a one-reviewer queue."""
    from adjudication.evidence import label_model_outcomes
    from adjudication.store import Store as QueueStore

    if not isinstance(queues, QueueStore) or queues.queue(name).overlap < 2:
        return {}
    return {(name, item): fitted for item, fitted in label_model_outcomes(queues, name).items()}


def batched(rows: Iterable[Any], size: int = BATCH) -> Iterator[list[Any]]:
    it = iter(rows)
    while batch := list(islice(it, size)):
        yield batch


def final_records(
    store: Store,
    queues: Decisions | None,
    run_ids: Sequence[str],
    *,
    batch: int = BATCH,
) -> Iterator[FinalRecord]:
    """The final record of every item of these runs, run by run, each in input order.

    Args:
        store: the run store.
        queues: the review queues of the same database (None: nothing was ever queued).
        run_ids: the runs, in the order to read them (see `critic.store.selection`).
    """
    for _, record in joined(store, queues, run_ids, batch=batch):
        yield record


def joined(
    store: Store,
    queues: Decisions | None,
    run_ids: Sequence[str],
    *,
    batch: int = BATCH,
) -> Iterator[tuple[dict[str, Any], FinalRecord]]:
    """`final_records`, each beside the stored row it was composed from (for readers that
    need more of the draft, such as a panel's per-critic verdicts)."""
    labels: dict[str, LabelSet | None] = {}
    posteriors: dict[tuple[str, str], ItemPosterior] = {}
    fitted: set[str] = set()
    for run_id in run_ids:
        for rows in batched(store.rows(run_id), batch):
            keys = [(r["run_id"], r["item_id"]) for r in rows]
            routes = store.routes_for(keys)
            found = queues.outcomes_for([origin_of(*k) for k in keys]) if queues else {}
            for outcome in (o for outs in found.values() for o in outs):
                if queues is not None and outcome.queue not in fitted:
                    fitted.add(outcome.queue)
                    posteriors.update(_label_model(queues, outcome.queue))
            for row, key in zip(rows, keys, strict=True):
                digest = row.get("constitution_hash") or ""
                if digest not in labels:
                    labels[digest] = label_set(
                        store.constitution_content(digest) if digest else None
                    )
                queued = found.get(origin_of(*key), [])
                record = compose(row, routes.get(key), queued, labels[digest], posteriors)
                yield row, record
