"""The measured blast radius of a constitution change: re-label only what it can affect.

The old verdicts are the stored drafts of the old version's label run (never re-run); the new ones
are a label run of the new version over the same input, opened through the run engine, so
rerunning resumes and a later full `critic label` with the same options reuses them.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from critic.backends.base import Backend
from critic.calibrate import clopper_pearson
from critic.constitution import (
    Constitution,
)
from critic.errors import (
    CriticError,
    InputError,
    StoreError,
    UsageError,
)
from critic.items import Fields, Item
from critic.render import LABEL_TEMPLATES, Templates
from critic.runs import Progress, open_run, run_items
from critic.store import RunInfo, Store, verdict
from critic.tasks.label import Labeler, LabelOptions, label_identity
from critic.workbench.common import LABEL_KINDS, snippet
from critic.workbench.diff import ConstitutionDiff, diff_constitutions


@dataclass(frozen=True)
class Flip:
    """One item whose verdict differs between the old version's stored draft and the new one."""

    item_id: str
    old: str
    new: str
    old_principles: tuple[str, ...]
    new_principles: tuple[str, ...]
    old_rationale: str | None
    new_rationale: str | None
    snippet: str

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "old_principles": list(self.old_principles),
                "new_principles": list(self.new_principles)}  # fmt: skip


@dataclass
class ImpactReport:
    """What a change flips on stored data: overall, per principle, with example items."""

    old: dict[str, Any]
    new: dict[str, Any]
    diff: ConstitutionDiff
    mode: Literal["cited", "sample"]
    reason: str
    population: int
    selected: int
    seed: int
    compared: int
    failed: int
    relabeled: int
    reused: int
    flips: list[Flip]
    by_principle: dict[str, dict[str, Any]]
    transitions: dict[str, int]
    warnings: list[str]
    elapsed_s: float
    new_rows: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)
    enqueued: int | None = None

    @property
    def flip_rate(self) -> float | None:
        return len(self.flips) / self.compared if self.compared else None

    @property
    def flip_interval(self) -> tuple[float, float]:
        return clopper_pearson(len(self.flips), self.compared)

    def to_dict(self, examples: int = 3) -> dict[str, Any]:
        rate = self.flip_rate
        lo, hi = self.flip_interval
        return {
            "old": self.old,
            "new": self.new,
            "diff": self.diff.to_dict(),
            "selection": {
                "mode": self.mode, "reason": self.reason, "population": self.population,
                "selected": self.selected, "seed": self.seed,
            },
            "compared": self.compared,
            "failed": self.failed,
            "relabeled": self.relabeled,
            "reused": self.reused,
            "flipped": len(self.flips),
            "flip_rate": rate,
            "flip_rate_95": [lo, hi],
            "estimated_flips": None if rate is None else round(rate * self.population),
            "transitions": self.transitions,
            "by_principle": {
                p: {**v, "examples": [f.to_dict() for f in v["examples"][:examples]]}
                for p, v in self.by_principle.items()
            },
            "flips": [f.to_dict() for f in self.flips],
            "warnings": self.warnings,
            "enqueued": self.enqueued,
            "elapsed_s": round(self.elapsed_s, 3),
        }  # fmt: skip


def _old_run(store: Store, old: Constitution, run_id: str | None) -> RunInfo:
    if run_id:
        run = store.run(run_id)
        if run.constitution_hash != old.hash:
            raise UsageError(
                f"run {run.id} used constitution {run.constitution_hash[:12]}, not the old "
                f"version given ({old.id} v{old.version}, {old.hash[:12]})",
                hint=f"give the version it used: critic constitution diff "
                f"{run.constitution_hash[:12]} NEW --db {store.url} --impact",
            )
        return run
    runs = [r for r in store.runs() if r.task == "label" and r.constitution_hash == old.hash]
    if not runs:
        raise StoreError(
            f"{store.url} holds no label run of {old.id} v{old.version} ({old.hash[:12]})",
            hint="label the data with the old version first (critic label INPUT -c OLD --db "
            "URL), or give the old version as a stored hash (critic runs --db URL lists them)",
        )
    return runs[-1]


def _cited(row: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(str(p) for p in (row.get("output") or {}).get("principles") or ())


def _select(
    rows: Sequence[dict[str, Any]], diff: ConstitutionDiff, sample: int, seed: int
) -> tuple[Literal["cited", "sample"], str, list[dict[str, Any]], list[dict[str, Any]]]:
    """(mode, reason, population, chosen): the drafts a change can affect, at most `sample`."""
    mode: Literal["cited", "sample"] = "sample"
    affected = set(diff.affected_principles)
    if diff.global_changes:
        reason = "the change reaches every item: " + "; ".join(diff.global_changes)
        population = list(rows)
    else:
        population = [r for r in rows if affected & set(_cited(r))]
        if population:
            mode = "cited"
            reason = "stored drafts cite changed principles " + ", ".join(sorted(affected))
        else:
            reason = "no stored draft cites " + ", ".join(sorted(affected)) + "; a sample"
            population = list(rows)
    if len(population) <= sample:
        return mode, reason, population, population
    picked = set(random.Random(seed).sample(range(len(population)), sample))
    return mode, reason, population, [r for i, r in enumerate(population) if i in picked]


def _label_options(run: RunInfo) -> LabelOptions:
    if run.params.get("critics"):
        raise UsageError(
            f"run {run.id} was labelled by a panel of critics ({', '.join(run.params['critics'])})"
            "; impact re-labels with one critic",
            hint="pass --run with a single-critic label run of the old version",
        )
    params = {k: v for k, v in run.params.items() if k not in ("fields", "critics")}
    try:
        return LabelOptions(**params)
    except (
        TypeError,
        ValueError,
        CriticError,
    ) as exc:  # pydantic's ValidationError is a ValueError
        raise StoreError(
            f"run {run.id}: its stored sampling options cannot be reused ({exc})",
            hint="label the data again with the old version in this critic version",
        ) from None


def _run_fields(run: RunInfo) -> Fields:
    """The input columns a label run read: stored with it when they were not the defaults."""
    stored = run.params.get("fields")
    if not stored:
        return Fields()
    try:
        return Fields(**stored)
    except TypeError as exc:
        raise StoreError(
            f"run {run.id}: its stored input fields cannot be read ({exc})",
            hint="pass --prompt-field/--response-field/--text-field as the old run was given",
        ) from None


async def aimpact(
    old: Constitution,
    new: Constitution,
    store: Store,
    backend: Backend,
    *,
    sample: int = 500,
    seed: int = 0,
    run_id: str | None = None,
    fields: Fields | None = None,
    prompts: str | Path | None = None,
    concurrency: int = 64,
    progress: Progress | None = None,
) -> ImpactReport:
    """Re-label with `new` only what the change from `old` can affect; count what flips.

    The old verdicts are the stored drafts of the old version's label run (never re-run). The new
    drafts are stored as a label run of the new version over the same input, so rerunning this
    resumes, and a later full `critic label` of that input with the same options resumes too.

    Args:
        sample: at most this many items are re-labeled (a seeded sample of the candidates).
        seed: the seed of that sample.
        run_id: the old version's run (default: its latest label run in the store).
        fields: the input columns the old run read (as `critic label --prompt-field ...` took);
            by default the ones stored with the old run.
        prompts: the prompt templates (the shipped ones by default; the old run's should match).
    """
    started = time.perf_counter()
    if sample < 1:
        raise UsageError("--sample must be at least 1")
    diff = diff_constitutions(old, new)
    if diff.identical:
        raise UsageError(f"the two versions are identical (hash {old.hash[:12]}): nothing can flip")
    if old.task.kind != new.task.kind:
        raise UsageError(
            f"impact compares label verdicts of one task kind; this change goes from "
            f"{old.task.kind} to {new.task.kind}",
            hint="label the data with the new version instead (critic label INPUT -c NEW)",
        )
    if new.task.kind not in LABEL_KINDS:
        raise UsageError(
            f"impact re-labels stored label runs (categorical or rubric), not {new.task.kind}",
            hint="run `critic constitution test` with cases for this constitution instead",
        )
    run = _old_run(store, old, run_id)
    options = _label_options(run)
    fields = fields or _run_fields(run)
    drafted = [r for r in store.rows(run.id) if r["status"] == "drafted"]
    if not drafted:
        raise StoreError(f"run {run.id} has no drafted items to compare with")
    mode, reason, population, chosen = _select(drafted, diff, sample, seed)
    missing = [r["item_id"] for r in chosen if any(n not in (r["row"] or {})
                                                    for n in fields.required)]  # fmt: skip
    if missing:
        raise InputError(
            f"run {run.id}: item '{missing[0]}' (and {len(missing) - 1} more) lack the input "
            f"field(s) {', '.join(fields.required)}",
            hint="pass the --prompt-field/--response-field/--text-field the old run was given",
        )
    templates = Templates.load(prompts)
    template_hash = templates.hash(LABEL_TEMPLATES)
    warnings = []
    if template_hash != run.template_hash:
        warnings.append("the prompt templates differ from the old run's: flips may come from them")
    if backend.model != run.model:
        warnings.append(f"the old run used model {run.model!r}, this one {backend.model!r}: "
                        "flips may come from the model")  # fmt: skip
    wanted = {r["item_id"] for r in chosen}
    try:
        # The new version's drafts are a label run over the old run's input: the same run as a
        # `critic label` of that input with the same options, so either resumes the other.
        opened = await open_run(
            store, backend, new, task="label", identity=label_identity(options, fields),
            template_hash=template_hash, input_name=run.input,
            records=[{"item_id": r["item_id"], "source": r["source"], "row": r["row"]}
                     for r in chosen],
            items={r["item_id"]: Item(r["item_id"], r["row"], r["source"], fields)
                   for r in chosen},
        )  # fmt: skip
        new_run, todo = opened.run, opened.todo
        labeler = Labeler(backend, new, templates, options)
        if progress:
            progress(0, len(todo))
        await run_items(labeler, store, new_run.id, todo, concurrency=concurrency,
                        progress=progress)  # fmt: skip
    finally:
        await backend.aclose()
    new_rows = {r["item_id"]: r for r in store.rows(new_run.id) if r["item_id"] in wanted}
    report = _compare_runs(old, new, diff, chosen, new_rows, fields)
    return ImpactReport(
        old={"id": old.id, "version": old.version, "hash": old.hash, "run_id": run.id},
        new={"id": new.id, "version": new.version, "hash": new.hash, "run_id": new_run.id},
        diff=diff, mode=mode, reason=reason, population=len(population), selected=len(chosen),
        seed=seed, relabeled=len(todo), reused=len(chosen), warnings=warnings,
        elapsed_s=time.perf_counter() - started, new_rows=new_rows, **report,
    )  # fmt: skip


def _compare_runs(
    old: Constitution,
    new: Constitution,
    diff: ConstitutionDiff,
    chosen: Sequence[dict[str, Any]],
    new_rows: Mapping[str, dict[str, Any]],
    fields: Fields,
) -> dict[str, Any]:
    changed = set(diff.affected_principles) | set(diff.principles_added)
    flips: list[Flip] = []
    transitions: Counter[str] = Counter()
    per: dict[str, dict[str, Any]] = defaultdict(lambda: {"items": 0, "flipped": 0, "examples": []})
    compared = failed = 0
    for row in chosen:
        after = new_rows.get(row["item_id"])
        if after is None or after["status"] != "drafted":
            failed += 1
            continue
        compared += 1
        before_v = verdict(row["label"], row["score"])
        after_v = verdict(after["label"], after["score"])
        cited = sorted(set(_cited(row)) | set(_cited(after))) or ["(none)"]
        flip = None
        if before_v != after_v:
            transitions[f"{before_v} -> {after_v}"] += 1
            flip = Flip(
                row["item_id"], str(before_v), str(after_v), _cited(row), _cited(after),
                row.get("rationale"), after.get("rationale"), snippet(row["row"], fields),
            )  # fmt: skip
            flips.append(flip)
        for p in cited:
            per[p]["items"] += 1
            if flip is not None:
                per[p]["flipped"] += 1
                per[p]["examples"].append(flip)
    order = [*old.principle_ids, *(p for p in new.principle_ids if p not in old.principle_ids)]
    by_principle = {}
    for p in sorted(per, key=lambda x: order.index(x) if x in order else len(order)):
        stats = per[p]
        by_principle[p] = {
            **stats,
            "flip_rate": stats["flipped"] / stats["items"] if stats["items"] else None,
            "changed": p in changed,
        }
    return {
        "compared": compared, "failed": failed, "flips": flips,
        "transitions": dict(transitions.most_common()), "by_principle": by_principle,
    }  # fmt: skip


def impact(
    old: Constitution, new: Constitution, store: Store, backend: Backend, **kwargs: Any
) -> ImpactReport:
    """`aimpact` for callers without an event loop."""
    return asyncio.run(aimpact(old, new, store, backend, **kwargs))


def enqueue_flips(db: str, queue: str, report: ImpactReport) -> int:
    """Send the flipped items (with the new draft and the old verdict) to a review queue."""
    from critic.review import enqueue_review, open_stores

    rows = []
    for flip in report.flips:
        row = report.new_rows[flip.item_id]
        output = {
            **(row.get("output") or {}),
            "previous_verdict": flip.old,
            "previous_constitution": report.old["hash"],
            "previous_run_id": report.old["run_id"],
        }
        rows.append({**row, "output": output, "route_reason": "constitution_change"})
    with open_stores(db) as (store, queues):
        return enqueue_review(store, queues, queue, rows)
