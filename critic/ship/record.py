"""The final record: per (run, item), what ships and why. Every export and page reads it.

`compose` is pure: one stored row (as `Store.rows` gives it), its latest route, what the review
queues settled for it, and the constitution's label set in; one `FinalRecord` out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from adjudication.labelmodel import ItemPosterior
from adjudication.models import REJECTED, OriginOutcome
from critic.items import prompt_of
from critic.ship.labels import LabelSet, preferred
from critic.store.rows import verdict

Status = Literal["accepted", "decided", "adjudicated", "pending", "rejected", "failed"]
STATUSES: tuple[Status, ...] = (
    "accepted",
    "decided",
    "adjudicated",
    "pending",
    "rejected",
    "failed",
)
#: What ships by default: accepted by the policy, or decided by humans.
SHIPPED: tuple[Status, ...] = ("accepted", "decided", "adjudicated")

#: The label model's posterior per (queue, task id), for queues with several reviewers per item.
Posteriors = Mapping[tuple[str, str], ItemPosterior]

#: Route reasons under which an accepted label carries the policy's calibrated guarantee.
GUARANTEED_REASONS = ("confident",)


def origin_of(run_id: str, item_id: str) -> str:
    """The opaque origin a queued task carries for a run's item (indexed in the queues)."""
    return f"{run_id}/{item_id}"


def parse_origin(origin: str) -> tuple[str, str]:
    """(run_id, item_id) of an origin made by `origin_of` (run ids hold no `/`)."""
    run_id, _, item_id = origin.partition("/")
    return run_id, item_id


@dataclass(frozen=True)
class OrderVerdict:
    """One principle of a pair judged in one presentation order."""

    principle: str
    order: str  # "ab" or "ba"
    preferred: str | None  # a / b / tie, mapped back to the original order
    prob_a: float | None


@dataclass(frozen=True)
class FinalRecord:
    """What ships for one (run, item), why, and where it came from."""

    run_id: str
    item_id: str
    task: str
    status: Status
    # -- what ships ----------------------------------------------------------------------------
    label: str | None
    """The label (or rubric score as text) that ships, spelled as the constitution spells it;
    None when nothing ships (pending, rejected, failed) or the task has no label (revise)."""
    score: float | None
    """The shipped rubric score as a number (rubric constitutions only)."""
    expected_score: float | None
    """rubric: the critic's expected score under its score distribution (with logprobs)."""
    score_distribution: dict[str, float] | None
    """rubric: the critic's probability of each score (with logprobs)."""
    label_source: Literal["critic", "human", "adjudicated"] | None
    critic_label: str | None
    human_label: str | None
    human_edited: bool
    """A human changed what the critic drafted: another label, or an edited revision."""
    revision: str | None
    """revise: the revision that ships (the reviewer's edit where there is one)."""
    critic_revision: str | None
    original: str | None
    critique: str | None
    preferred: str | None
    """compare: `a`, `b` or `tie` (of the shipped label)."""
    preference_probability: float | None
    """compare: the critic's probability of the shipped preference (P(a) or P(b)); None for a
    tie or a human decision."""
    prob_a: float | None
    order_verdicts: tuple[OrderVerdict, ...]
    rationale: str | None
    principles: tuple[str, ...]
    confidence: float | None
    components: dict[str, float] | None
    parse_attempts: int | None
    # -- why -----------------------------------------------------------------------------------
    route: str | None
    route_reason: str | None
    policy: str | None
    guaranteed: bool
    """Accepted by a calibrated policy's threshold, so its stated guarantee covers this label
    (not an accept-all route, a budget overflow, or a human decision)."""
    queue: str | None
    reviewers: tuple[str, ...]
    agreement: float | None
    conflict: bool
    """Settled differently in more than one queue (the rule in `settle_outcomes` chose)."""
    posterior: float | None
    """With several reviewers and no adjudication: the label model's posterior probability of
    the shipped label (`adjudication.labelmodel`)."""
    majority_disagrees: bool
    """The label model's label is not the reviewers' majority vote."""
    failure_reason: str | None
    failure_detail: str | None
    # -- provenance ----------------------------------------------------------------------------
    constitution: str | None
    constitution_id: str | None
    constitution_version: str | None
    model: str | None
    backend: str | None
    template: str | None
    run_created_at: str | None
    drafted_at: str | None
    updated_at: str | None
    location: str | None
    """Where the input row came from (`FILE:LINE`)."""
    fields: dict[str, str] = field(default_factory=dict)
    """Which input field played which part (`prompt`, `response`, `a`, `b`)."""
    input: dict[str, Any] = field(default_factory=dict)
    prompt: Any = None
    """The conversation the item answers (the prompt field's value), for the TRL formats."""
    responses: tuple[str | None, str | None] = (None, None)
    """compare: the two responses (A, B) as judged."""


def settle_outcomes(found: Sequence[OriginOutcome]) -> tuple[OriginOutcome | None, bool]:
    """The one settled outcome that counts for an item queued in several queues, and whether
    they conflict.

    Rule: an adjudicated outcome beats one the reviewers agreed on; among equals, the newest
    settled wins (ties by queue name, last). Outcomes not settled yet do not count. A conflict is
    two settled outcomes with different answers (label, rejection or edited text).
    """
    settled = [o for o in found if o.state == "done" and o.source is not None]
    if not settled:
        return None, False
    ranked = sorted(
        settled,
        key=lambda o: (o.source == "adjudicated", o.settled_at is not None, o.settled_at, o.queue),
    )
    answers = {(o.label, o.rejected, repr(sorted((o.edit or {}).items()))) for o in settled}
    return ranked[-1], len(answers) > 1


def by_label_model(
    queued: Sequence[OriginOutcome], human: OriginOutcome | None, posteriors: Posteriors
) -> tuple[OriginOutcome | None, ItemPosterior | None]:
    """Without adjudication, several reviewers' decision is the label model's: the outcome
    (the settled one, or one waiting for adjudication) with its posterior."""
    if human is not None and human.source == "adjudicated":
        return human, None
    for o in [human] if human is not None else queued:
        if o is None or o.state not in ("done", "adjudication"):
            continue
        fitted = posteriors.get((o.queue, o.item_id))
        if fitted is None or fitted.ratings < 2:
            continue
        rejected = fitted.label == REJECTED
        label = None if rejected else fitted.label
        settled = replace(o, state="done", source="human", label=label, rejected=rejected,
                          edit=o.edit if o.state == "done" else None)  # fmt: skip
        return settled, fitted
    return human, None


def compose(
    row: dict[str, Any],
    route: dict[str, Any] | None,
    queued: Sequence[OriginOutcome],
    labels: LabelSet | None,
    posteriors: Posteriors | None = None,
) -> FinalRecord:
    """The final record of one stored row. `posteriors`: the label model of queues with
    several reviewers per item, by (queue, task id)."""
    output: dict[str, Any] = row.get("output") or {}
    task = str(row["task"])
    spell = labels.spell if labels is not None else (lambda x: x)
    critic_label = spell(verdict(row.get("label"), row.get("score")))
    human, conflict = settle_outcomes(queued)
    human, fitted = by_label_model(queued, human, posteriors or {})
    pending_queue = next((o for o in queued if o.state != "done"), None)
    failed = row["status"] == "failed"

    status: Status
    if human is not None:
        status = "rejected" if human.rejected else (
            "adjudicated" if human.source == "adjudicated" else "decided")  # fmt: skip
    elif failed:
        status = "failed"
    elif row["status"] == "drafted" and route is not None and route["decision"] == "accept":
        status = "accepted"
    else:
        status = "pending"
    ships = status in SHIPPED

    human_label = spell(human.label) if human is not None and not human.rejected else None
    edit = (human.edit or {}) if human is not None else {}
    critic_revision = output.get("revision") if task == "revise" else None
    edited_revision = edit.get("revision") if isinstance(edit.get("revision"), str) else None
    revision = (edited_revision or critic_revision) if ships else None
    human_edited = human is not None and not human.rejected and (
        (edited_revision is not None and edited_revision != critic_revision)
        or (human_label is not None and human_label != critic_label)
    )  # fmt: skip

    if human is not None:  # the decision's source, a rejection included (it ships nothing)
        label = human_label if human.answer == "label" and not human.rejected else None
        source: Literal["critic", "human", "adjudicated"] | None = (
            "adjudicated" if human.source == "adjudicated" else "human")  # fmt: skip
    elif status == "accepted":
        label, source = critic_label, "critic"
    else:
        label, source = None, None
    if task == "revise":
        label = None

    prob_a = output.get("prob_a") if task == "compare" else None
    pick = preferred(label) if task == "compare" else None
    probability = None
    if pick in ("a", "b") and source == "critic" and isinstance(prob_a, int | float):
        probability = float(prob_a) if pick == "a" else 1.0 - float(prob_a)
    orders = tuple(
        OrderVerdict(str(j.get("principle")), str(j.get("order")), j.get("preferred"),
                     j.get("prob_a"))
        for j in output.get("judgments") or () if isinstance(j, dict)
    )  # fmt: skip
    score = None
    if label is not None and labels is not None and labels.kind == "rubric":
        try:
            score = float(label)
        except ValueError:
            score = None
    raw_input: dict[str, Any] = row.get("row") or {}
    params = row.get("params") or {}
    fields = {str(k): ", ".join(v) if isinstance(v, list) else str(v)  # several prompt fields
              for k, v in (params.get("fields") or {}).items() if v}  # fmt: skip
    a_field, b_field = fields.get("a") or "a", fields.get("b") or "b"
    responses = (
        (_text(raw_input.get(a_field)), _text(raw_input.get(b_field)))
        if task == "compare" else (None, None)
    )  # fmt: skip
    components = row.get("components")
    return FinalRecord(
        run_id=row["run_id"],
        item_id=row["item_id"],
        task=task,
        status=status,
        label=label,
        score=score,
        expected_score=output.get("expected_score"),
        score_distribution=_numbers(output.get("score_distribution")),
        label_source=source,
        critic_label=critic_label,
        human_label=human_label,
        human_edited=bool(human_edited),
        revision=revision,
        critic_revision=critic_revision,
        # A failed draft has no `original`: the reply it was to revise is the input's.
        original=(
            output.get("original") or _text(raw_input.get(fields.get("response") or "response"))
        )
        if task == "revise"
        else None,
        critique=row.get("rationale") if task == "revise" else None,
        preferred=pick,
        preference_probability=probability,
        prob_a=float(prob_a) if isinstance(prob_a, int | float) else None,
        order_verdicts=orders,
        rationale=row.get("rationale"),
        principles=tuple(str(p) for p in output.get("principles") or ()),
        confidence=row.get("confidence"),
        components=_numbers(components),
        parse_attempts=row.get("parse_attempts"),
        route=route["decision"] if route else None,
        route_reason=route["reason"] if route else None,
        policy=route["policy_hash"] if route else None,
        guaranteed=status == "accepted"
        and route is not None
        and route["reason"] in GUARANTEED_REASONS
        and not route.get("forced"),
        queue=(human.queue if human else pending_queue.queue if pending_queue else None),
        reviewers=human.reviewers if human else (),
        agreement=human.agreement if human else None,
        conflict=conflict,
        posterior=fitted.probability if fitted is not None else None,
        majority_disagrees=fitted.disagrees_with_majority if fitted is not None else False,
        failure_reason=row.get("reason") if failed else None,
        failure_detail=row.get("detail") if failed else None,
        constitution=row.get("constitution_hash"),
        constitution_id=row.get("constitution_id"),
        constitution_version=row.get("constitution_version"),
        model=row.get("model"),
        backend=row.get("backend"),
        template=row.get("template_hash"),
        run_created_at=row.get("run_created_at"),
        drafted_at=row.get("drafted_at"),
        updated_at=row.get("updated_at"),
        location=row.get("source"),
        fields=fields,
        input=raw_input,
        prompt=prompt_of(raw_input, (params.get("fields") or {}).get("prompt") or "prompt"),
        responses=responses,
    )


def _numbers(components: dict[str, Any] | None) -> dict[str, float] | None:
    if components is None:
        return None
    return {
        str(k): float(v)
        for k, v in components.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
