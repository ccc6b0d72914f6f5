"""The compare task (RL-CAI / RLAIF): which of two responses better follows a principle.

Per (prompt, a, b) item, k sampled principles, each judged with the responses shown A/B and then
B/A. The preference is a probability from the label tokens of each order (votes when the backend
gives no logprobs), averaged over orders, then over principles. One outcome per item holds all 2k
judgments, so a rerun resumes exactly where the last one stopped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Literal, Unpack

from pydantic import BaseModel, Field, create_model, model_validator
from pydantic.dataclasses import dataclass as pydantic_dataclass

from critic import confidence as conf
from critic.backends.base import Backend, Request, Sample
from critic.config import STRICT, Sampling
from critic.constitution import Constitution, Principle
from critic.errors import ConfigError, UsageError
from critic.items import Fields, Item
from critic.render import Templates
from critic.runs import RunArgs, RunSummary, configure, synchronous
from critic.schemas import RATIONALE_MAX, json_schema
from critic.store import Outcome, Store
from critic.tasks.base import (
    Answer,
    Output,
    Task,
    arun_task,
    ask,
    literal,
    options_and_fields,
    sample_principles,
    user_turn,
)

COMPARE_TEMPLATES = ("compare_system.j2", "compare_user.j2", "reask.j2")

Verdict = Literal["a", "b", "tie"]
Order = Literal["ab", "ba"]
PAIR_LABELS = ("A", "B", "tie")


@lru_cache(maxsize=16)
def compare_model(labels: tuple[str, ...]) -> type[BaseModel]:
    """The comparison: a rationale, then which response better follows the principle."""
    model: type[BaseModel] = create_model(
        "Comparison",
        __base__=Output,
        rationale=(str, Field(max_length=RATIONALE_MAX, description="Why; written first.")),
        preference=(literal(labels), Field(description="A, B, or tie.")),
    )
    return model


@pydantic_dataclass(frozen=True, config=STRICT)
class CompareOptions:
    """How many principles per pair and how wide the tie band is; part of the run's identity."""

    principles_per_item: int = 1
    tie_margin: float = 0.05
    sampling: Sampling = field(default_factory=lambda: Sampling(top_logprobs=5))

    @model_validator(mode="after")
    def _check(self) -> CompareOptions:
        if self.principles_per_item < 1:
            raise ConfigError("principles_per_item", "{principles_per_item} must be at least 1")
        if not 0.0 <= self.tie_margin < 0.5:
            raise ConfigError("tie_margin", "{tie_margin} must be in [0, 0.5)")
        if self.sampling.samples != 1:
            raise ConfigError(
                "samples", "compare draws one sample per order; use {principles_per_item}"
            )
        return self


_TO_ORIGINAL: dict[Order, dict[str, Verdict]] = {
    "ab": {"A": "a", "B": "b", "tie": "tie"},
    "ba": {"A": "b", "B": "a", "tie": "tie"},
}


@dataclass(frozen=True)
class Judgment:
    """One principle judged in one presentation order, as the model wrote it (A/B/tie)."""

    principle: str
    order: Order
    written: str | None  # None: no valid answer
    distribution: Mapping[str, float] | None = None  # over A/B/tie as written, from logprobs

    @property
    def verdict(self) -> Verdict | None:
        """The verdict in the original orientation (a = the item's first response)."""
        return None if self.written is None else _TO_ORIGINAL[self.order][self.written]

    @property
    def prob_a(self) -> float | None:
        """P(a preferred over b) from this judgment alone; a tie counts half."""
        if self.distribution is not None:
            back = {_TO_ORIGINAL[self.order][k]: v for k, v in self.distribution.items()}
            total = sum(back.values())
            if total > 0:
                return (back.get("a", 0.0) + 0.5 * back.get("tie", 0.0)) / total
        if self.verdict is None:
            return None
        return {"a": 1.0, "b": 0.0, "tie": 0.5}[self.verdict]


@dataclass(frozen=True)
class Preference:
    """The aggregate of every judgment of one pair."""

    verdict: Verdict
    prob_a: float
    method: Literal["logprobs", "votes", "mixed"]
    swap_inconsistent: bool
    components: conf.ConfidenceComponents
    per_principle: dict[str, float] = field(default_factory=dict)

    @property
    def margin(self) -> float:
        """P(preferred) - P(other), in [0, 1]; 0 for a tie exactly at 0.5."""
        return abs(2.0 * self.prob_a - 1.0)


def decide(prob_a: float, tie_margin: float) -> Verdict:
    """a, b, or an explicit tie when P(a preferred) is within `tie_margin` of 0.5."""
    if prob_a > 0.5 + tie_margin:
        return "a"
    if prob_a < 0.5 - tie_margin:
        return "b"
    return "tie"


def aggregate(
    judgments: Sequence[Judgment], tie_margin: float = 0.05, parse_retries: int = 0
) -> Preference | None:
    """Average P(a preferred) over the orders of each principle, then over principles.

    Each order gives a probability from its label tokens when it has logprobs, else its vote
    (1, 0, or 0.5 for a tie). The orders of one principle agree when the verdict of the
    swapped order maps back to the first; `order_agreement` is the mean share over principles
    (1.0 only when every principle is swap-consistent). None when no judgment is valid.
    """
    by_principle: dict[str, list[Judgment]] = {}
    for j in judgments:
        by_principle.setdefault(j.principle, []).append(j)
    per_principle: dict[str, float] = {}
    shares: list[float] = []
    for pid, group in by_principle.items():
        probs = [p for p in (j.prob_a for j in group) if p is not None]
        if probs:
            per_principle[pid] = sum(probs) / len(probs)
        first = next((j.written for j in group if j.order == "ab"), None)
        swapped = next((j.written for j in group if j.order == "ba"), None)
        shares.append(conf.order_agreement(first, swapped)[1] if first or swapped else 0.0)
    if not per_principle:
        return None
    prob_a = sum(per_principle.values()) / len(per_principle)
    verdict = decide(prob_a, tie_margin)
    valid = [j for j in judgments if j.verdict is not None]
    with_logprobs = sum(1 for j in valid if j.distribution is not None)
    method: Literal["logprobs", "votes", "mixed"] = (
        "logprobs" if with_logprobs == len(valid) else "votes" if not with_logprobs else "mixed"
    )
    label_prob = None
    if method != "votes":
        label_prob = {"a": prob_a, "b": 1.0 - prob_a, "tie": 1.0 - abs(2.0 * prob_a - 1.0)}[verdict]
    principle_share = None
    if len(per_principle) > 1:
        votes = [decide(p, tie_margin) for p in per_principle.values()]
        principle_share = votes.count(verdict) / len(votes)
    order_share = sum(shares) / len(shares)
    components = conf.ConfidenceComponents(
        label_prob=label_prob,
        sample_share=sum(1 for j in judgments if j.verdict == verdict) / len(judgments),
        n_samples=len(judgments),
        order_agreement=order_share,
        principle_agreement=principle_share,
        parse_retries=parse_retries,
    )
    return Preference(
        verdict=verdict,
        prob_a=prob_a,
        method=method,
        swap_inconsistent=order_share < 1.0,
        components=components,
        per_principle=per_principle,
    )


def written_distribution(sample: Sample, labels: Sequence[str]) -> dict[str, float] | None:
    """P(A), P(B), P(tie) as written, from the top logprobs at the `preference` value."""
    if not sample.logprobs:
        return None
    offset = conf.value_offset(sample.text, "preference")
    return None if offset is None else conf.label_distribution(sample.logprobs, offset, labels)


class Comparer:
    """Judges one pair under k sampled principles, each in both presentation orders."""

    def __init__(
        self,
        backend: Backend,
        constitution: Constitution,
        templates: Templates,
        options: CompareOptions,
    ) -> None:
        self.backend = backend
        self.constitution = constitution
        self.templates = templates
        self.options = options
        self.labels = tuple(constitution.label_names)
        self.model = compare_model(self.labels)
        self.schema = json_schema(self.model)
        self.system = templates.render("compare_system.j2", constitution=constitution)

    def request(self, item: Item, principle: Principle, order: Order) -> Request:
        a, b = item.get(item.fields.a or "a"), item.get(item.fields.b or "b")
        first, second = (a, b) if order == "ab" else (b, a)
        user = self.templates.render(
            "compare_user.j2",
            prompt=item.prompt,
            response_a=first,
            response_b=second,
            principle=principle,
            question=self.constitution.task.question,
        )
        s = self.options.sampling
        return Request(
            messages=({"role": "system", "content": self.system}, user_turn(user)),
            json_schema=self.schema, max_tokens=s.max_tokens, temperature=s.temperature,
            top_logprobs=s.top_logprobs, seed=s.seed, affinity=item.id,  # both orders, one server
        )  # fmt: skip

    async def _judge(
        self, item: Item, principle: Principle, order: Order, index: int
    ) -> tuple[Judgment, Answer]:
        answer = await ask(
            self.backend, self.request(item, principle, order), self.model, self.templates,
            max_reasks=self.options.sampling.max_reasks, stage=f"compare-{order}-p{index}",
        )  # fmt: skip
        if answer.value is None or answer.sample is None:
            return Judgment(principle.id, order, None), answer
        written = str(answer.value["preference"])
        return Judgment(
            principle.id, order, written, written_distribution(answer.sample, self.labels)
        ), answer

    async def draft(self, item: Item) -> Outcome:
        a, b = item.get(item.fields.a or "a"), item.get(item.fields.b or "b")
        if a.strip() == b.strip():
            components = conf.ConfidenceComponents(order_agreement=1.0)
            return Outcome(
                item.id, "drafted", label="tie", rationale="the two responses are identical",
                draft={"preference": "tie", "prob_a": 0.5, "margin": 0.0, "identical": True,
                       "principles": [], "judgments": [], "swap_inconsistent": False,
                       "method": "identical"},
                confidence=conf.combine(components), components=components.to_dict(),
                parse_attempts=0,
            )  # fmt: skip
        principles = sample_principles(
            self.constitution.principles,
            self.options.principles_per_item,
            self.options.sampling.seed,
            item.id,
        )
        orders: tuple[Order, Order] = ("ab", "ba")
        jobs = [(p, order, i) for i, p in enumerate(principles) for order in orders]
        # The first principle's pair goes first: the item's conversation is then in vLLM's prefix
        # cache before the other principles (same item text, different tail) are prefilled.
        results = list(await asyncio.gather(*(self._judge(item, *job) for job in jobs[:2])))
        results += await asyncio.gather(*(self._judge(item, *job) for job in jobs[2:]))
        records = [r for _, answer in results for r in answer.records]
        retries = sum(answer.attempts - 1 for _, answer in results)
        judgments = [j for j, _ in results]
        preference = aggregate(judgments, self.options.tie_margin, retries)
        if preference is None:
            last = results[-1][1]
            return Outcome(
                item.id, "failed", last.reason or "parse_failure", last.detail,
                parse_attempts=1 + retries, generations=tuple(records),
            )  # fmt: skip
        rationale = next(
            (ans.value["rationale"] for j, ans in results
             if ans.value is not None and j.verdict == preference.verdict),
            None,
        )  # fmt: skip
        return Outcome(
            item_id=item.id,
            status="drafted",
            label=preference.verdict,
            rationale=rationale,
            draft={
                "preference": preference.verdict,
                "prob_a": round(preference.prob_a, 6),
                "margin": round(preference.margin, 6),
                "method": preference.method,
                "swap_inconsistent": preference.swap_inconsistent,
                "principles": [p.id for p in principles],
                "per_principle_prob_a": preference.per_principle,
                "judgments": [
                    {
                        "principle": j.principle,
                        "order": j.order,
                        "verdict": j.written,
                        "preferred": j.verdict,
                        "prob_a": j.prob_a,
                        "distribution": None if j.distribution is None else dict(j.distribution),
                        "rationale": None if ans.value is None else ans.value["rationale"],
                        "attempts": ans.attempts,
                        "failure": ans.reason,
                    }
                    for j, ans in results
                ],
            },
            confidence=conf.combine(preference.components),
            components=preference.components.to_dict(),
            parse_attempts=1 + retries,
            generations=tuple(records),
        )


def _check_pairwise(constitution: Constitution) -> None:
    labels = constitution.label_names
    if constitution.task.kind != "pairwise" or set(labels) - set(PAIR_LABELS) or len(labels) < 2:
        raise UsageError(
            f"constitution '{constitution.id}' is not a pairwise constitution with labels "
            "A and B (and optionally tie)",
            hint="use constitutions/harmlessness-pairwise.yaml as a model",
        )
    if not {"A", "B"} <= set(labels):
        raise UsageError(f"constitution '{constitution.id}': pairwise labels need both A and B")


def _prepare(constitution: Constitution, fields: Fields | None) -> Fields:
    _check_pairwise(constitution)
    fields = fields or Fields(a="response_a", b="response_b")
    if not (fields.a and fields.b):
        raise UsageError("compare needs the two response fields", hint="--a-field, --b-field")
    return fields


COMPARE = Task(
    name="compare",
    templates=COMPARE_TEMPLATES,
    options=CompareOptions,
    prepare=_prepare,
    identity=options_and_fields,
    drafter=lambda backend, constitution, templates, options, _: Comparer(
        backend, constitution, templates, options
    ),
)


async def acompare(
    source: str | Path,
    constitution: Constitution,
    backend: Backend,
    store: Store,
    *,
    options: CompareOptions | None = None,
    **run: Unpack[RunArgs],
) -> RunSummary:
    """Judge every (prompt, a, b) pair in both orders under sampled principles; resume.

    `compare` is the same for callers without an event loop. Keyword arguments besides
    `options` are those of `critic.label` (see `RunArgs`).
    """
    return await arun_task(
        COMPARE, source, constitution, backend, store, options=options, **configure(run)
    )


compare = synchronous(acompare, "compare")
