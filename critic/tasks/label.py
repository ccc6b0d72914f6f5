"""The label task: one categorical label (or rubric score) per item, with its confidence.

A panel (`critics`) labels each item with several critic models; their agreement joins the
confidence.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Unpack

from pydantic import BaseModel

from critic import confidence as conf
from critic.backends.base import Backend, Request, Sample
from critic.config import Sampling
from critic.constitution import Constitution
from critic.errors import UsageError
from critic.items import Fields, Item
from critic.parsing import Parsed
from critic.render import LABEL_TEMPLATES, Templates, render_label_system, render_label_user
from critic.runs import Drafter, RunArgs, RunSummary, configure, synchronous
from critic.schemas import json_schema, label_model
from critic.store import Outcome, Store
from critic.tasks.base import Task, arun_task, ask

# The label task's options are its sampling options; the name is kept for callers of 0.1.
LabelOptions = Sampling


def label_identity(
    options: Sampling, fields: Fields | None = None, critics: Sequence[Backend] = ()
) -> dict[str, Any]:
    """A label run's own part of its identity (see `run_key`), as stored in its `params`.

    The sampling options; the input columns, when they are not the default prompt/response (so
    labelling another column of the same file is another run, and `constitution diff --impact`
    can read the columns back; default-column runs keep the keys they always had); the panel.
    """
    identity = asdict(options)
    if fields is not None and fields != Fields():
        identity["fields"] = asdict(fields)
    if critics:
        identity["critics"] = [f"{b.name}:{b.model}" for b in critics]
    return identity


def _verdict_key(constitution: Constitution) -> str:
    return "score" if constitution.task.kind == "rubric" else "label"


def build_outcome(
    item_id: str,
    constitution: Constitution,
    samples: Sequence[tuple[Parsed, Sample]],
    attempts: int,
    generations: tuple[dict[str, Any], ...],
) -> Outcome:
    """The draft for one item from its valid samples: majority verdict, confidence components."""
    key = _verdict_key(constitution)
    verdicts = [p.value[key] for p, _ in samples if p.value is not None]
    chosen = Counter(verdicts).most_common(1)[0][0]
    parsed = next(p for p, _ in samples if p.value and p.value[key] == chosen)
    assert parsed.value is not None
    options = [
        str(o) for o in (constitution.scores if key == "score" else constitution.label_names)
    ]
    # Label-token probabilities, averaged over the valid samples that returned logprobs.
    per_sample = []
    for _, s in samples:
        offset = conf.value_offset(s.text, key) if s.logprobs else None
        if offset is not None and s.logprobs:
            found = conf.label_distribution(s.logprobs, offset, options)
            if found is not None:
                per_sample.append(found)
    distribution = conf.average_distributions(per_sample) if per_sample else None
    components = conf.ConfidenceComponents(
        label_prob=None if distribution is None else distribution.get(str(chosen), 0.0),
        sample_share=verdicts.count(chosen) / len(verdicts),
        n_samples=len(verdicts),
        parse_retries=attempts - 1,
    )
    draft = dict(parsed.value)
    if distribution is not None:
        draft[f"{key}_distribution"] = distribution
        if key == "score":
            draft["expected_score"] = conf.expected_score(distribution)
    return Outcome(
        item_id=item_id,
        status="drafted",
        draft=draft,
        label=str(chosen) if key == "label" else None,
        score=float(chosen) if key == "score" else None,
        rationale=parsed.value.get("rationale"),
        confidence=conf.combine(components),
        components=components.to_dict(),
        parse_attempts=attempts,
        generations=generations,
    )


class Labeler:
    """Drafts one item at a time; many run concurrently against one backend."""

    def __init__(
        self,
        backend: Backend,
        constitution: Constitution,
        templates: Templates,
        options: Sampling,
    ) -> None:
        self.backend = backend
        self.constitution = constitution
        self.templates = templates
        self.options = options
        self.model: type[BaseModel] = label_model(constitution)
        self.schema = json_schema(self.model)
        # Rendered once: the shared prefix is the same for every item (and cached by vLLM).
        self.system = render_label_system(templates, constitution)

    def request(self, item: Item) -> Request:
        return Request(
            messages=(self.system, render_label_user(self.templates, item)),
            json_schema=self.schema,
            max_tokens=self.options.max_tokens,
            temperature=self.options.temperature,
            n=self.options.samples,
            top_logprobs=self.options.top_logprobs,
            seed=self.options.seed,
            affinity=item.id,  # re-asks go to the same server
        )

    async def draft(self, item: Item) -> Outcome:
        answer = await ask(
            self.backend, self.request(item), self.model, self.templates,
            max_reasks=self.options.max_reasks, stage="label",
        )  # fmt: skip
        records = tuple(answer.records)
        if answer.valid:
            return build_outcome(item.id, self.constitution, answer.valid, answer.attempts, records)
        if answer.backend_failed:
            return Outcome(item.id, "failed", answer.reason, answer.detail, generations=records)
        return Outcome(
            item.id, "failed", answer.reason, answer.detail,
            parse_attempts=answer.attempts, generations=records,
        )  # fmt: skip


class Panel:
    """Several critic models label each item; the draft is the primary critic's.

    Every critic's verdict is kept in the draft (`critics`), and the share of critics that agree
    with the majority becomes the `critic_agreement` component, so disagreement lowers the
    confidence and routing can send the item to review (`critics_disagree`).
    """

    def __init__(self, labelers: Sequence[Labeler]) -> None:
        if len(labelers) < 2:
            raise UsageError("a panel needs at least two critics")
        self.labelers = list(labelers)

    async def draft(self, item: Item) -> Outcome:
        outcomes = await asyncio.gather(*(lab.draft(item) for lab in self.labelers))
        primary = outcomes[0]
        generations = tuple(g for o in outcomes for g in o.generations)
        if primary.status != "drafted" or primary.draft is None:
            return replace(primary, generations=generations)
        verdicts = [
            None if o.draft is None else o.label or (None if o.score is None else str(o.score))
            for o in outcomes
        ]
        _, share = conf.critic_agreement(verdicts)
        components = conf.ConfidenceComponents.from_dict(
            {**(primary.components or {}), "critic_agreement": share}
        )
        critics = [
            {"model": lab.backend.model, "verdict": v, "confidence": o.confidence}
            for lab, o, v in zip(self.labelers, outcomes, verdicts, strict=True)
        ]
        return replace(
            primary,
            draft={**primary.draft, "critics": critics},
            confidence=conf.combine(components),
            components=components.to_dict(),
            generations=generations,
        )


def label_fields(constitution: Constitution, fields: Fields | None) -> Fields:
    """The columns a label run reads; refuses a constitution the label task cannot run."""
    if constitution.task.kind not in ("categorical", "rubric"):
        raise UsageError(
            f"constitution '{constitution.id}' drives a {constitution.task.kind} task, "
            "which `critic label` does not run",
            hint="use a categorical or rubric constitution, e.g. harmlessness or helpfulness",
        )
    return fields or Fields()


def _drafter(
    backend: Backend,
    constitution: Constitution,
    templates: Templates,
    options: Sampling,
    critics: Sequence[Backend],
) -> Drafter:
    primary = Labeler(backend, constitution, templates, options)
    if not critics:
        return primary
    return Panel([primary, *(Labeler(b, constitution, templates, options) for b in critics)])


LABEL = Task(
    name="label",
    templates=LABEL_TEMPLATES,
    options=Sampling,
    prepare=label_fields,
    identity=label_identity,
    drafter=_drafter,
)


async def alabel(
    source: str | Path,
    constitution: Constitution,
    backend: Backend,
    store: Store,
    *,
    options: Sampling | None = None,
    critics: Sequence[Backend] = (),
    **run: Unpack[RunArgs],
) -> RunSummary:
    """Label every item of `source` against `constitution`; resume what is already stored.

    `label` is the same for callers without an event loop.

    Args:
        options: how to sample (`Sampling`).
        critics: further critic models: each item is then labelled by a panel (see `Panel`)
            and their agreement becomes part of the confidence.
        run: the input's columns, split and limit, the prompt templates, concurrency,
            `retry_failed`, and the `progress` and `on_bad_row` callbacks (see `RunArgs`).
    """
    return await arun_task(
        LABEL, source, constitution, backend, store, options=options, critics=critics,
        **configure(run),
    )  # fmt: skip


label = synchronous(alabel, "label")
