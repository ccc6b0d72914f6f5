"""Constitutional-AI loops: critique → revision chains and pairwise comparisons in both orders.

revise (supervised CAI): per (prompt, response) item, N rounds; each round samples a principle
(seeded by the run seed and the item id, and recorded), asks for a critique citing principle ids
with quotes that are checked against the reply, then asks for a revision *in the same
conversation*, so every request extends the previous one and vLLM's prefix cache serves it.

compare (RL-CAI / RLAIF): per (prompt, a, b) item, k sampled principles, each judged with the
responses shown A/B and then B/A. The preference is a probability from the label tokens of each
order (votes when the backend gives no logprobs), averaged over orders, then over principles.

Both store one outcome per item in the run store (the whole chain or all 2k judgments), so a
rerun resumes exactly where the last one stopped.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache, partial
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from critic import confidence as conf
from critic.backends.base import Backend, Message, Request, Sample
from critic.constitution import Constitution, Principle
from critic.errors import UsageError
from critic.items import BadRow, Fields, Item
from critic.labeling import (
    LabelOptions,
    Progress,
    RunSummary,
    execute_run,
    generation_record,
)
from critic.parsing import Parsed, parse
from critic.render import Templates, render_reask
from critic.schemas import RATIONALE_MAX, json_schema
from critic.store import Outcome, Store

REVISE_TEMPLATES = ("critique_system.j2", "critique_user.j2", "revise_user.j2", "reask.j2")
COMPARE_TEMPLATES = ("compare_system.j2", "compare_user.j2", "reask.j2")

FINDINGS_MAX = 3
QUOTE_MAX = 160
PROBLEM_MAX = 240
CRITIQUE_MAX = 400

Verdict = Literal["a", "b", "tie"]
Order = Literal["ab", "ba"]
PAIR_LABELS = ("A", "B", "tie")


# --------------------------------------------------------------------------------------------
# Output models (field order is generation order: evidence first, summaries and verdicts last)


class _Output(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _literal(values: Sequence[Any]) -> Any:
    return Literal[tuple(values)]


@lru_cache(maxsize=64)
def critique_model(principle_ids: tuple[str, ...]) -> type[BaseModel]:
    """The critique: findings that cite principle ids and quote the reply, then a summary."""
    finding: type[BaseModel] = create_model(
        "Finding",
        __base__=_Output,
        principle=(_literal(principle_ids), Field(description="Id of the principle broken.")),
        quote=(
            str,
            Field(
                min_length=1,
                max_length=QUOTE_MAX,
                description="An exact quote from the reply being critiqued, copied verbatim.",
            ),
        ),
        problem=(str, Field(max_length=PROBLEM_MAX, description="What is wrong with it.")),
    )
    model: type[BaseModel] = create_model(
        "Critique",
        __base__=_Output,
        findings=(
            list[finding],  # type: ignore[valid-type,unused-ignore]
            Field(max_length=FINDINGS_MAX, description="At most three; empty if none."),
        ),
        critique=(str, Field(max_length=CRITIQUE_MAX, description="A short summary.")),
    )
    return model


@lru_cache(maxsize=16)
def revision_model(max_chars: int) -> type[BaseModel]:
    """The revision: the complete rewritten reply."""
    model: type[BaseModel] = create_model(
        "Revision",
        __base__=_Output,
        revision=(
            str,
            Field(min_length=1, max_length=max_chars, description="The full rewritten reply."),
        ),
    )
    return model


@lru_cache(maxsize=16)
def compare_model(labels: tuple[str, ...]) -> type[BaseModel]:
    """The comparison: a rationale, then which response better follows the principle."""
    model: type[BaseModel] = create_model(
        "Comparison",
        __base__=_Output,
        rationale=(str, Field(max_length=RATIONALE_MAX, description="Why; written first.")),
        preference=(_literal(labels), Field(description="A, B, or tie.")),
    )
    return model


# --------------------------------------------------------------------------------------------
# Asking with re-asks


@dataclass
class Answer:
    """A validated answer (or why there is none) and the conversation that produced it."""

    value: dict[str, Any] | None
    sample: Sample | None
    conversation: tuple[Message, ...]  # the request's messages plus the answer, when there is one
    attempts: int
    records: list[dict[str, Any]]
    reason: str | None = None  # failure reason when value is None
    detail: str | None = None
    unresolved: str | None = None  # a `check` problem still there after the last re-ask


async def ask(
    backend: Backend,
    request: Request,
    model: type[BaseModel],
    templates: Templates,
    *,
    max_reasks: int,
    stage: str,
    check: Callable[[dict[str, Any]], str | None] | None = None,
) -> Answer:
    """Send `request` (n=1); re-ask with the error until the answer validates and passes `check`.

    When the answer validates but `check` still objects after the last re-ask, that answer is
    returned with `unresolved` set: the caller records the problem rather than losing the item.
    """
    records: list[dict[str, Any]] = []
    fallback: Answer | None = None
    last = Parsed(None, "no answer", "empty")
    for attempt in range(max_reasks + 1):
        generation = (await backend.generate([request]))[0]
        records.append(generation_record(generation, stage, attempt))
        if generation.error is not None:
            return Answer(
                None, None, request.messages, attempt + 1, records,
                generation.error_kind or "backend_error", generation.error,
            )  # fmt: skip
        sample = generation.samples[0] if generation.samples else None
        last = parse(sample.text, model, sample.finish_reason) if sample else last
        said = {"role": "assistant", "content": sample.text if sample else ""}
        if last.value is not None and sample is not None:
            problem = check(last.value) if check else None
            answer = Answer(last.value, sample, (*request.messages, said), attempt + 1, records)
            if problem is None:
                return answer
            fallback = replace(answer, unresolved=problem)
            last = Parsed(None, problem, "schema")
        reask = {"role": "user", "content": render_reask(templates, last.error or "invalid answer")}
        request = replace(request, messages=(*request.messages, said, reask))
    if fallback is not None:
        return replace(fallback, attempts=max_reasks + 1, records=records)
    reason = "truncated" if last.kind == "truncated" else "parse_failure"
    return Answer(None, None, request.messages, max_reasks + 1, records, reason, last.error)


# --------------------------------------------------------------------------------------------
# revise: critique → revision chains


@dataclass(frozen=True)
class ReviseOptions:
    """Rounds and bounds of a revise run. Everything here is part of the run's identity."""

    rounds: int = 2
    max_revision_chars: int = 2000
    sampling: LabelOptions = field(default_factory=lambda: LabelOptions(max_tokens=1024))

    def __post_init__(self) -> None:
        if self.rounds < 1:
            raise UsageError("--rounds must be at least 1")
        if self.max_revision_chars < 16:
            raise UsageError("--max-revision-chars must be at least 16")
        if self.sampling.samples != 1:
            raise UsageError("revise draws one sample per request; drop --samples")


def user_turn(content: str) -> Message:
    return {"role": "user", "content": content}


def _squash(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().casefold()


def quote_found(quote: str, text: str) -> bool:
    """Whether `quote` occurs in `text`, ignoring case, runs of whitespace and wrapping quotes or
    ellipses (models add them around quotes)."""
    core = _squash(quote).strip("\"'“”‘’`").strip(". …").strip()
    return bool(core) and core in _squash(text)


def evidence_problem(value: Mapping[str, Any], text: str) -> str | None:
    """The re-ask message for findings whose quote is not in `text`, or None when all are."""
    missing = [f["quote"] for f in value.get("findings", []) if not quote_found(f["quote"], text)]
    if not missing:
        return None
    listed = "; ".join(json.dumps(q, ensure_ascii=False) for q in missing[:3])
    return (
        f"field `findings`: these quotes do not occur in the reply being critiqued: {listed}. "
        "Copy each quote exactly from that reply, or drop the finding"
    )


def sample_principles(
    principles: Sequence[Principle], k: int, seed: int | None, item_id: str
) -> list[Principle]:
    """`k` principles for one item, seeded by the run seed and the item id (reproducible, and
    independent of input order). Without replacement until every principle has been used."""
    rng = random.Random(f"{seed}:{item_id}")
    chosen: list[Principle] = []
    while len(chosen) < k:
        chosen.extend(rng.sample(list(principles), min(len(principles), k - len(chosen))))
    return chosen


def _require_requests(constitution: Constitution, which: tuple[str, ...]) -> None:
    missing = [p.id for p in constitution.principles if any(not getattr(p, w) for w in which)]
    if missing:
        raise UsageError(
            f"constitution '{constitution.id}': principle(s) {', '.join(missing)} have no "
            f"{' or '.join(w.replace('_', ' ') for w in which)}",
            hint="revise needs a critique_request and a revision_request on every principle; "
            "see constitutions/cai-principles.yaml",
        )


class Reviser:
    """Runs one item's critique → revision chain; many items run concurrently."""

    def __init__(
        self,
        backend: Backend,
        constitution: Constitution,
        templates: Templates,
        options: ReviseOptions,
    ) -> None:
        self.backend = backend
        self.constitution = constitution
        self.templates = templates
        self.options = options
        self.critique_model = critique_model(tuple(constitution.principle_ids))
        self.revision_model = revision_model(options.max_revision_chars)
        self.system = templates.render(
            "critique_system.j2",
            constitution=constitution,
            max_findings=FINDINGS_MAX,
            max_chars=options.max_revision_chars,
        )

    def _request(self, messages: tuple[Message, ...], model: type[BaseModel]) -> Request:
        s = self.options.sampling
        return Request(
            messages=messages, json_schema=json_schema(model), max_tokens=s.max_tokens,
            temperature=s.temperature, seed=s.seed,
        )  # fmt: skip

    async def draft(self, item: Item) -> Outcome:
        response = item.response or ""
        principles = sample_principles(
            self.constitution.principles, self.options.rounds, self.options.sampling.seed, item.id
        )
        conversation: tuple[Message, ...] = ({"role": "system", "content": self.system},)
        current = response
        rounds: list[dict[str, Any]] = []
        records: list[dict[str, Any]] = []
        retries = 0
        for number, principle in enumerate(principles, start=1):
            user = self.templates.render(
                "critique_user.j2",
                item={"prompt": item.prompt, "response": response} if number == 1 else None,
                principle=principle,
                round=number,
            )
            shown = current  # the reply this round critiques: the original, then each revision
            critique = await ask(
                self.backend, self._request((*conversation, user_turn(user)), self.critique_model),
                self.critique_model, self.templates, max_reasks=self.options.sampling.max_reasks,
                stage=f"critique-{number}", check=partial(evidence_problem, text=shown),
            )  # fmt: skip
            records += critique.records
            retries += critique.attempts - 1
            if critique.value is None:
                return _failed(item.id, critique, records, number)
            request = self.templates.render(
                "revise_user.j2",
                principle=principle,
                round=number,
                max_chars=self.options.max_revision_chars,
            )
            # The revision request continues the critique conversation: the whole critique
            # request is a prefix of it, which vLLM's prefix cache serves.
            revision = await ask(
                self.backend,
                self._request((*critique.conversation, user_turn(request)), self.revision_model),
                self.revision_model, self.templates, max_reasks=self.options.sampling.max_reasks,
                stage=f"revision-{number}",
            )  # fmt: skip
            records += revision.records
            retries += revision.attempts - 1
            if revision.value is None:
                return _failed(item.id, revision, records, number)
            conversation = revision.conversation
            findings = [
                {**f, "found": quote_found(f["quote"], shown)} for f in critique.value["findings"]
            ]
            current = revision.value["revision"]
            rounds.append(
                {
                    "round": number,
                    "principle": principle.id,
                    "findings": findings,
                    "critique": critique.value["critique"],
                    "evidence_problem": critique.unresolved,
                    "revision": current,
                    "attempts": {"critique": critique.attempts, "revision": revision.attempts},
                }
            )
        components = conf.ConfidenceComponents(parse_retries=retries)
        return Outcome(
            item_id=item.id,
            status="drafted",
            draft={
                "original": response,
                "revision": current,
                "principles": [r["principle"] for r in rounds],
                "rounds": rounds,
                "unverified_quotes": sum(
                    1 for r in rounds for f in r["findings"] if not f["found"]
                ),
            },
            rationale=rounds[-1]["critique"] if rounds else None,
            # No measured signal vouches for a revision yet: combine() gives 0.0, so revisions
            # are reviewed unless calibration finds they can be accepted.
            confidence=conf.combine(components),
            components=components.to_dict(),
            parse_attempts=1 + retries,
            generations=tuple(records),
        )


def _failed(item_id: str, answer: Answer, records: list[dict[str, Any]], number: int) -> Outcome:
    detail = f"round {number}: {answer.detail}" if answer.detail else f"round {number}"
    return Outcome(
        item_id, "failed", answer.reason or "parse_failure", detail,
        parse_attempts=answer.attempts, generations=tuple(records),
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# compare: both presentation orders, soft preferences


@dataclass(frozen=True)
class CompareOptions:
    """How many principles per pair and how wide the tie band is; part of the run's identity."""

    principles_per_item: int = 1
    tie_margin: float = 0.05
    sampling: LabelOptions = field(default_factory=lambda: LabelOptions(top_logprobs=5))

    def __post_init__(self) -> None:
        if self.principles_per_item < 1:
            raise UsageError("--principles-per-item must be at least 1")
        if not 0.0 <= self.tie_margin < 0.5:
            raise UsageError("--tie-margin must be in [0, 0.5)")
        if self.sampling.samples != 1:
            raise UsageError("compare draws one sample per order; use --principles-per-item")


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
            top_logprobs=s.top_logprobs, seed=s.seed,
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


# --------------------------------------------------------------------------------------------
# Runs


@dataclass(frozen=True)
class _Task:
    name: str
    templates: tuple[str, ...]
    options: Any
    fields: Fields
    make: Callable[[Templates], Reviser | Comparer]


async def _arun(
    task: _Task,
    source: str | Path,
    constitution: Constitution,
    backend: Backend,
    store: Store,
    *,
    prompts: str | Path | None,
    split: str | None,
    retry_failed: bool,
    concurrency: int,
    limit: int | None,
    progress: Progress | None,
    on_bad_row: Callable[[BadRow], None] | None,
) -> RunSummary:
    templates = Templates.load(prompts)
    drafter = task.make(templates)  # renders the shared system prompt: template errors first
    # The task's own options (rounds, principles per item, fields) are part of the run's identity.
    identity = {**asdict(task.options), "fields": asdict(task.fields)}
    return await execute_run(
        task.name, identity, drafter, templates.hash(task.templates), source, constitution,
        backend, store, fields=task.fields, split=split, retry_failed=retry_failed,
        concurrency=concurrency, limit=limit, progress=progress, on_bad_row=on_bad_row,
    )  # fmt: skip


async def arevise(
    source: str | Path,
    constitution: Constitution,
    backend: Backend,
    store: Store,
    *,
    fields: Fields | None = None,
    options: ReviseOptions | None = None,
    prompts: str | Path | None = None,
    split: str | None = None,
    retry_failed: bool = False,
    concurrency: int = 64,
    limit: int | None = None,
    progress: Progress | None = None,
    on_bad_row: Callable[[BadRow], None] | None = None,
) -> RunSummary:
    """The async form of `revise`."""
    opts = options or ReviseOptions()
    _require_requests(constitution, ("critique_request", "revision_request"))
    fields = fields or Fields()
    if fields.text or fields.a:
        raise UsageError("revise takes (prompt, response) items", hint="use --response-field")
    task = _Task(
        "revise", REVISE_TEMPLATES, opts, fields,
        lambda t: Reviser(backend, constitution, t, opts),
    )  # fmt: skip
    return await _arun(
        task, source, constitution, backend, store, prompts=prompts, split=split,
        retry_failed=retry_failed, concurrency=concurrency, limit=limit, progress=progress,
        on_bad_row=on_bad_row,
    )  # fmt: skip


def revise(source: str | Path, constitution: Constitution, backend: Backend, store: Store,
           **kwargs: Any) -> RunSummary:  # fmt: skip
    """Critique and revise every (prompt, response) item for N rounds; resume what is stored.

    Keyword arguments are those of `arevise`.
    """
    return asyncio.run(arevise(source, constitution, backend, store, **kwargs))


async def acompare(
    source: str | Path,
    constitution: Constitution,
    backend: Backend,
    store: Store,
    *,
    fields: Fields | None = None,
    options: CompareOptions | None = None,
    prompts: str | Path | None = None,
    split: str | None = None,
    retry_failed: bool = False,
    concurrency: int = 64,
    limit: int | None = None,
    progress: Progress | None = None,
    on_bad_row: Callable[[BadRow], None] | None = None,
) -> RunSummary:
    """The async form of `compare`."""
    opts = options or CompareOptions()
    _check_pairwise(constitution)
    fields = fields or Fields(a="response_a", b="response_b")
    if not (fields.a and fields.b):
        raise UsageError("compare needs the two response fields", hint="--a-field, --b-field")
    task = _Task(
        "compare", COMPARE_TEMPLATES, opts, fields,
        lambda t: Comparer(backend, constitution, t, opts),
    )  # fmt: skip
    return await _arun(
        task, source, constitution, backend, store, prompts=prompts, split=split,
        retry_failed=retry_failed, concurrency=concurrency, limit=limit, progress=progress,
        on_bad_row=on_bad_row,
    )  # fmt: skip


def compare(source: str | Path, constitution: Constitution, backend: Backend, store: Store,
            **kwargs: Any) -> RunSummary:  # fmt: skip
    """Judge every (prompt, a, b) pair in both orders under sampled principles; resume.

    Keyword arguments are those of `acompare`.
    """
    return asyncio.run(acompare(source, constitution, backend, store, **kwargs))
