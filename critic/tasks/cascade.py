"""A live cascade of critics (`critic label --escalate-to MODEL --policy cascade.yaml`).

The first critic labels every item; the next one is asked only for the items whose stage did
not clear its calibrated threshold, and so on. A stage whose threshold is none (the policy lets
it settle nothing, as a `last alone` cascade policy does) is not asked at all, except the last.
Every stage's draft is stored with the item (`critics` in its output, each with its own full
draft), the draft that ships is the settling stage's (or, when no stage settles it, the last
drafted one, for a human to review), and `route` with the same policy accepts exactly the items
a stage settled.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, Unpack

from critic.backends.base import Backend
from critic.cascade import Stage
from critic.config import Sampling
from critic.constitution import Constitution
from critic.errors import UsageError
from critic.items import Fields, Item
from critic.render import LABEL_TEMPLATES, Templates
from critic.routing import Policy
from critic.runs import Drafter, RunArgs, RunSummary, configure, synchronous
from critic.store import Outcome, Store, verdict
from critic.tasks.base import Task, arun_task
from critic.tasks.label import Labeler, label_fields, label_identity


class Cascade:
    """Ask the stages' critics in order until one clears its threshold."""

    def __init__(self, labelers: Sequence[Labeler], stages: Sequence[Stage]) -> None:
        self.labelers = list(labelers)
        self.stages = list(stages)

    async def draft(self, item: Item) -> Outcome:
        outcomes: list[Outcome] = []
        asked_stages: list[Stage] = []
        settled: str | None = None
        last = len(self.stages) - 1
        for i, (labeler, stage) in enumerate(zip(self.labelers, self.stages, strict=True)):
            if stage.threshold is None and i < last:
                # This critic can settle nothing under the policy (`last alone`): asking it
                # would only cost a request. The last critic is always asked, so a reviewer
                # sees a draft.
                continue
            outcome = await labeler.draft(item)
            outcomes.append(outcome)
            asked_stages.append(stage)
            if _clears(outcome, stage):
                settled = stage.critic
                break
        drafted = [o for o in outcomes if o.status == "drafted" and o.draft is not None]
        final = drafted[-1] if drafted else outcomes[-1]
        generations = tuple(g for o in outcomes for g in o.generations)
        if final.draft is None:
            return replace(final, generations=generations)
        critics = [
            {"model": stage.critic, "verdict": _verdict(o), "confidence": o.confidence,
             "status": o.status, "draft": o.draft}
            for o, stage in zip(outcomes, asked_stages, strict=True)
        ]  # fmt: skip
        asked = [s.critic for s in asked_stages]
        cascade = {"settled_by": settled, "asked": asked}
        return replace(
            final,
            draft={**final.draft, "critics": critics, "cascade": cascade},
            generations=generations,
        )


def _verdict(outcome: Outcome) -> str | None:
    return None if outcome.draft is None else verdict(outcome.label, outcome.score)


def _clears(outcome: Outcome, stage: Stage) -> bool:
    return (
        outcome.status == "drafted"
        and _verdict(outcome) is not None
        and stage.threshold is not None
        and outcome.confidence is not None
        and outcome.confidence >= stage.threshold
    )


def cascade_stages(policy: Policy, models: Sequence[str]) -> list[Stage]:
    """The policy's stages, checked against the models the run asks (first, then each
    `--escalate-to`, in order)."""
    if not policy.stages:
        raise UsageError(
            "--escalate-to needs a cascade policy",
            hint="write one with: critic calibrate --cascade SMALL,BIG ... -o cascade.yaml",
        )
    if policy.critics != list(models):
        raise UsageError(
            f"the policy's cascade is {' → '.join(policy.critics)}, but this run asks "
            f"{' → '.join(models)}",
            hint=f"--model {policy.critics[0]} "
            + " ".join(f"--escalate-to {c}" for c in policy.critics[1:]),
        )
    return list(policy.stages)


def _task(stages: Sequence[Stage]) -> Task:
    thresholds = [{"critic": s.critic, "threshold": s.threshold} for s in stages]

    def identity(options: Sampling, fields: Fields, critics: Sequence[Backend]) -> dict[str, Any]:
        # Other thresholds escalate other items: another run.
        return {**label_identity(options, fields, critics), "cascade": thresholds}

    def drafter(
        backend: Backend, constitution: Constitution, templates: Templates, options: Sampling,
        critics: Sequence[Backend],
    ) -> Drafter:  # fmt: skip
        labelers = [Labeler(b, constitution, templates, options) for b in (backend, *critics)]
        return Cascade(labelers, stages)

    return Task(name="label", templates=LABEL_TEMPLATES, options=Sampling, prepare=label_fields,
                identity=identity, drafter=drafter)  # fmt: skip


async def alabel_cascade(
    source: str | Path,
    constitution: Constitution,
    backend: Backend,
    store: Store,
    *,
    escalate_to: Sequence[Backend],
    policy: Policy,
    options: Sampling | None = None,
    **run: Unpack[RunArgs],
) -> RunSummary:
    """Label `source` with a live cascade: `backend`'s critic first, then each of `escalate_to`
    only for the items the stage before did not settle (see the module docstring)."""
    if not escalate_to:
        raise UsageError("a cascade needs at least one --escalate-to critic")
    stages = cascade_stages(policy, [backend.model, *(b.model for b in escalate_to)])
    return await arun_task(
        _task(stages), source, constitution, backend, store, options=options,
        critics=escalate_to, **configure(run),
    )  # fmt: skip


label_cascade = synchronous(alabel_cascade, "label_cascade")


def settled_counts(store: Store, run_id: str) -> dict[str, int]:
    """How many items each stage of a cascade run settled, and how many none did."""
    counts: Counter[str] = Counter()
    for row in _asked_rows(store, run_id):
        cascade = (row.get("output") or {}).get("cascade") or {}
        counts[cascade.get("settled_by") or "none (to review)"] += 1
    return dict(counts)


def asked_counts(store: Store, run_id: str) -> dict[str, int]:
    """How many items each critic of a cascade run was asked about (its requests, re-asks
    aside); an item neither stage drafted counts for every critic, since each was tried."""
    counts: Counter[str] = Counter()
    params = store.run(run_id).params or {}
    everyone = [s["critic"] for s in params.get("cascade") or []]
    for row in _asked_rows(store, run_id):
        cascade = (row.get("output") or {}).get("cascade")
        counts.update(cascade["asked"] if cascade else everyone)
    return dict(counts)


def _asked_rows(store: Store, run_id: str) -> list[dict[str, Any]]:
    """The run's rows a critic was asked about: not pending, not unreadable input."""
    return [
        r for r in store.rows(run_id)
        if r["status"] != "pending" and r.get("reason") != "invalid_input"
    ]  # fmt: skip
