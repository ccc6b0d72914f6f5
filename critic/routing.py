"""Route every draft to `accept` or `review`, with the reason, under a calibrated policy.

The policy is a YAML file written by `critic calibrate`: the threshold and the calibration behind
it, disagreement rules, an audit rate, an optional review budget and the seed of the audit draw.
`route` is pure: the same drafts and policy give the same routes, whatever their order.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from critic.calibrate import CalibrationResult
from critic.cascade import CascadeMethod, CascadeResult, PathsTested, Stage
from critic.errors import CriticError, did_you_mean
from critic.text import printable

Decision = Literal["accept", "review"]
Reason = Literal[
    "confident",
    "accept_all",
    "calibration_sample",
    "low_confidence",
    "swap_inconsistent",
    "critics_disagree",
    "parse_failure",
    "audit_sample",
    "budget",
]
REASONS: tuple[Reason, ...] = (
    "confident",
    "accept_all",
    "budget",
    "low_confidence",
    "swap_inconsistent",
    "critics_disagree",
    "parse_failure",
    "audit_sample",
    "calibration_sample",
)


class Binding(BaseModel):
    """What a policy was calibrated on: `route` applies it only to runs that match."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    constitution: str = Field(description="content hash of the constitution version")
    task: str = Field(description="label, compare, revise, ...")
    model: str = Field(description="the critic model")
    template: str = Field(description="hash of the prompt templates")

    def differences(self, other: Binding) -> list[str]:
        """`field: policy X, run Y` for each field that differs."""
        return [
            f"{name}: policy {mine!r}, run {theirs!r}"
            for name, mine, theirs in (
                (n, getattr(self, n), getattr(other, n)) for n in type(self).model_fields
            )
            if mine != theirs
        ]


class Lineage(BaseModel):
    """Where a recalibrated policy comes from: the policy it replaces and the labels behind it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    previous: str | None = Field(description="policy_hash of the policy this one replaces")
    labels: dict[str, int] = Field(description="labels used, by how they were sampled")


class Policy(BaseModel):
    """A routing policy. Unknown keys are an error, so a typo is not a silent default."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    threshold: float | None = Field(
        ge=0, le=1, description="auto-accept at confidence >= threshold; None: accept nothing"
    )
    target_agreement: float = Field(gt=0, lt=1)
    delta: float = Field(gt=0, lt=1)
    calibration: CalibrationResult | None = None
    audit_rate: float = Field(
        default=0.0, ge=0, le=1, description="share of would-be-accepted items sent to review"
    )
    budget: int | None = Field(default=None, ge=0, description="at most this many reviews")
    seed: int = Field(default=0, description="seed of the audit sample")
    route_swap_inconsistent: bool = Field(
        default=True, description="review comparisons whose verdict flips with the order"
    )
    route_critics_disagree: bool = Field(
        default=True, description="review items on which the critic models disagree"
    )
    combine: Literal["mean", "vote"] | None = Field(
        default=None,
        description="how the panel's verdicts were combined into one (calibrate "
        "--combine); rows to route are combined the same way",
    )
    stages: list[Stage] | None = Field(
        default=None,
        description="a cascade: ask the critics in order, accept at the first stage whose "
        "critic clears its threshold (then `threshold` is unused and must be null)",
    )
    cascade_method: CascadeMethod | None = Field(
        default=None,
        description="how the cascade was calibrated (`paths`, `joint` or `stagewise`; none "
        "written: stagewise)",
    )
    cascade_paths: PathsTested | None = Field(
        default=None,
        description="`paths`: the family of paths tested (each at delta / their number) and "
        "the one the stages' thresholds lie on",
    )
    calibration_rate: float = Field(
        default=0.0, ge=0, le=1,
        description="share of all drafts, whatever their confidence, sent to review as "
        "calibration samples (a seeded draw; review them in a blind queue): the labels that "
        "keep recalibration valid",
    )  # fmt: skip
    binding: Binding | None = Field(
        default=None,
        description="what the policy was calibrated on; `route` refuses other runs",
    )
    lineage: Lineage | None = Field(
        default=None, description="the policy this one recalibrates, and the labels used"
    )
    content_hash: str | None = Field(
        default=None,
        description="policy_hash of everything above, written by save_policy: a hand edit "
        "shows as a mismatch",
    )

    @model_validator(mode="after")
    def _matches_calibration(self) -> Policy:
        cals = [self.calibration] + [s.calibration for s in self.stages or []]
        for cal in cals:
            if cal is None:
                continue
            same = cal.target_agreement == self.target_agreement
            if not same or (cal.delta != self.delta and not self.stages):
                raise ValueError(
                    "target_agreement and delta must be those the calibration was run with "
                    f"({cal.target_agreement} and {cal.delta}); recalibrate to change them"
                )
        if self.stages is not None:
            if not self.stages:
                raise ValueError("stages: a cascade needs at least one stage")
            if self.threshold is not None:
                raise ValueError("threshold: a cascade policy keeps its thresholds in stages")
        elif self.cascade_method is not None:
            raise ValueError("cascade_method: only a cascade policy (with stages) has one")
        if (self.cascade_method == "paths") != (self.cascade_paths is not None):
            raise ValueError("cascade_paths: recorded exactly when cascade_method is `paths`")
        return self

    @property
    def critics(self) -> list[str]:
        """The critics a cascade asks, in order (empty for a one-critic policy)."""
        return [s.critic for s in self.stages or []]

    @property
    def guarantee(self) -> str | None:
        if self.stages:
            method = self.cascade_method or "stagewise"
            result = CascadeResult.from_stages(
                self.stages, self.target_agreement, self.delta, method, self.cascade_paths
            )
            return result.guarantee
        return self.calibration.guarantee if self.calibration else None

    @classmethod
    def from_calibration(
        cls,
        result: CalibrationResult,
        *,
        audit_rate: float = 0.0,
        budget: int | None = None,
        seed: int = 0,
        route_swap_inconsistent: bool = True,
        route_critics_disagree: bool = True,
    ) -> Policy:
        """The policy that auto-accepts at the calibrated threshold."""
        return cls(
            threshold=result.threshold,
            target_agreement=result.target_agreement,
            delta=result.delta,
            calibration=result,
            audit_rate=audit_rate,
            budget=budget,
            seed=seed,
            route_swap_inconsistent=route_swap_inconsistent,
            route_critics_disagree=route_critics_disagree,
        )

    @classmethod
    def from_cascade(
        cls, result: CascadeResult, *, audit_rate: float = 0.0, budget: int | None = None,
        seed: int = 0,
    ) -> Policy:  # fmt: skip
        """The policy that runs the calibrated cascade."""
        return cls(
            threshold=None, target_agreement=result.target_agreement, delta=result.delta,
            stages=result.stages, audit_rate=audit_rate, budget=budget, seed=seed,
            cascade_method=result.method, cascade_paths=result.paths,
        )  # fmt: skip


def policy_hash(policy: Policy) -> str:
    """sha256 of the policy's canonical JSON (sorted keys, no whitespace, its own
    `content_hash` left out): stored with routes."""
    canonical = json.dumps(
        policy.model_dump(mode="json", exclude={"content_hash"}),
        sort_keys=True, separators=(",", ":"), ensure_ascii=False,
    )  # fmt: skip
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def edited(policy: Policy) -> bool:
    """The policy's content differs from what `save_policy` wrote (a hand edit)."""
    return policy.content_hash is not None and policy.content_hash != policy_hash(policy)


def binding_problems(policy: Policy, run: Binding) -> list[str]:
    """Why this policy's guarantee does not carry to a run (empty: it does).

    A policy that accepts nothing (no threshold) needs no binding; one with a threshold must
    have been calibrated on the same constitution, task, model and templates, and not edited.
    """
    if policy.threshold is None and not policy.stages:
        return []
    problems: list[str] = []
    if edited(policy):
        problems.append("the policy file was edited after critic calibrate wrote it")
    if policy.binding is None:
        problems.append(
            "the policy is bound to no run (calibrated from a file): critic cannot check that "
            "its critic, constitution and templates are this run's"
        )
    else:
        problems += policy.binding.differences(run)
    return problems


def save_policy(policy: Policy, path: str | Path) -> None:
    """Write the policy as YAML, headed by its guarantee in words as a comment, with its own
    `content_hash` so a later hand edit is detected."""
    policy = policy.model_copy(update={"content_hash": None})
    policy = policy.model_copy(update={"content_hash": policy_hash(policy)})
    lines = ["# critic routing policy, written by `critic calibrate`."]
    if policy.guarantee is not None:
        lines += [f"# {line}" for line in _wrap(policy.guarantee, 96)]
    body = yaml.safe_dump(policy.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
    try:
        Path(path).write_text("\n".join(lines) + "\n" + body, encoding="utf-8")
    except OSError as exc:
        raise CriticError(f"{path}: cannot write the policy: {exc.strerror}") from None


def _wrap(text: str, width: int) -> list[str]:
    lines: list[str] = []
    current = ""
    for word in text.split():
        if current and len(current) + 1 + len(word) > width:
            lines.append(current)
            current = word
        else:
            current = f"{current} {word}" if current else word
    return [*lines, current] if current else lines


def _other_kind(data: dict[Any, Any]) -> str | None:
    """What kind of critic file a mapping that is not a policy is, if it is one."""
    if {"principles", "task"} <= data.keys():
        return f"a constitution ('{printable(data.get('id'))}'; give it with -c/--constitution)"
    if "cases" in data:
        return "a constitution's test cases (for `critic constitution test`)"
    return None


def load_policy(path: str | Path) -> Policy:
    """Read a policy YAML file; errors name the file and the field, and say what to do."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CriticError(
            f"{path}: no such policy file",
            hint="write one with: critic calibrate ... --target-agreement 0.9 --delta 0.1 "
            f"-o {path}",
        ) from None
    except OSError as exc:
        raise CriticError(f"{path}: cannot read the policy: {exc.strerror}") from None
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise CriticError(f"{where}: {problem}") from None
    if not isinstance(data, dict):
        raise CriticError(f"{path}: a policy is a YAML mapping of keys to values")
    if "threshold" not in data and (kind := _other_kind(data)):
        raise CriticError(
            f"{path}: this is {kind}, not a routing policy",
            hint="--policy takes the file `critic calibrate ... -o policy.yaml` writes",
        )
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        hint = None
        if err["type"] == "extra_forbidden":
            field = str(err["loc"][-1])
            model: type[BaseModel] = Policy if len(err["loc"]) == 1 else CalibrationResult
            hint = did_you_mean(field, model.model_fields)
            message = f"unknown key '{field}'"
        else:
            message = err["msg"].removeprefix("Value error, ")
        prefix = f"{path}: {loc}: " if loc else f"{path}: "
        raise CriticError(prefix + message, hint=hint) from None


# --------------------------------------------------------------------------------------------
# Routing


@dataclass(frozen=True)
class StageVerdict:
    """One cascade critic's label and confidence for a draft."""

    critic: str
    label: str | None
    confidence: float | None


@dataclass(frozen=True)
class RouteInput:
    """What routing needs to know about one draft. A cascade policy reads `verdicts` (the
    critics asked so far, by name); a one-critic policy reads `label` and `confidence`."""

    id: str
    label: str | None
    confidence: float | None
    parse_failed: bool = False
    swap_inconsistent: bool = False
    critics_disagree: bool = False
    critic: str | None = None
    verdicts: tuple[StageVerdict, ...] = ()


@dataclass(frozen=True)
class Route:
    """Where one draft goes and why; with the critic whose label ships (None: nobody's) and
    the critics consulted, in order."""

    id: str
    decision: Decision
    reason: Reason
    critic: str | None = None
    label: str | None = None
    critics_asked: tuple[str, ...] = ()

    def to_row(self) -> dict[str, object]:
        """The route as a JSON row: `route` (accept/review) as export names it."""
        return {
            "id": self.id, "route": self.decision, "reason": self.reason,
            "critic": self.critic, "label": self.label, "critics_asked": list(self.critics_asked),
        }  # fmt: skip


def calibration_draw(seed: int, item_id: str) -> float:
    """A uniform number in [0, 1) fixed by (seed, id), independent of the audit draw: an item is
    a calibration sample when it falls below the policy's calibration rate."""
    digest = hashlib.sha256(f"calibration\x00{seed}\x00{item_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def audit_draw(seed: int, item_id: str) -> float:
    """A uniform number in [0, 1) fixed by (seed, id): the same under reordering and resume."""
    digest = hashlib.sha256(f"{seed}\x00{item_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass(frozen=True)
class _Trust:
    reason: Reason | None  # None: the policy would accept the label
    critic: str | None
    label: str | None
    asked: tuple[str, ...]


def _trust(draft: RouteInput, policy: Policy) -> _Trust:
    """Why the policy does not trust this draft (or None), and whose label it would ship."""
    if policy.stages:
        return _cascade_trust(draft, policy.stages)
    asked = (draft.critic,) if draft.critic else ()
    reason: Reason | None = None
    if draft.parse_failed or draft.label is None:
        reason = "parse_failure"
    elif draft.swap_inconsistent and policy.route_swap_inconsistent:
        reason = "swap_inconsistent"
    elif draft.critics_disagree and policy.route_critics_disagree:
        reason = "critics_disagree"
    elif (
        policy.threshold is None or draft.confidence is None or draft.confidence < policy.threshold
    ):
        reason = "low_confidence"
    if reason is None:
        return _Trust(None, draft.critic, draft.label, asked)
    return _Trust(reason, None, None, asked)


def _cascade_trust(draft: RouteInput, stages: Sequence[Stage]) -> _Trust:
    """Accept at the first stage whose critic clears its threshold. A critic without a verdict
    was not asked yet (the walk ends there) unless a later critic has one (it was asked and
    failed, so the item went on)."""
    by_critic = {v.critic: v for v in draft.verdicts}
    asked: list[str] = []
    reason: Reason = "low_confidence"
    for i, stage in enumerate(stages):
        verdict = by_critic.get(stage.critic)
        if verdict is None and stage.threshold is None:
            continue  # it could settle nothing, so a live cascade does not ask it
        if verdict is None:
            if not any(s.critic in by_critic for s in stages[i + 1 :]):
                break  # not asked yet
            asked.append(stage.critic)  # asked, but it gave no verdict: the next one was asked
            continue
        asked.append(stage.critic)
        if verdict.label is None:
            reason = "parse_failure"
            continue
        if (
            stage.threshold is not None
            and verdict.confidence is not None
            and verdict.confidence >= stage.threshold
        ):
            return _Trust(None, stage.critic, verdict.label, tuple(asked))
    if draft.parse_failed and not asked:
        reason = "parse_failure"
    return _Trust(reason, None, None, tuple(asked))


def next_critic(draft: RouteInput, policy: Policy) -> str | None:
    """For a live cascade: the critic to ask next for this draft, or None when the stages it
    has reached settle it (accepted) or none is left to ask."""
    trust = _cascade_trust(draft, policy.stages or [])
    if trust.reason is None:
        return None
    for stage in policy.stages or []:
        if stage.critic not in trust.asked:
            return stage.critic
    return None


def route(drafts: Sequence[RouteInput], policy: Policy) -> list[Route]:
    """Assign every draft `accept` or `review` with the reason, in the order given.

    1. A draft the policy does not trust goes to review, with the first reason that applies:
       `parse_failure` (no valid output, so no label to ship), `swap_inconsistent`,
       `critics_disagree` (each when its rule is on), `low_confidence` (below the threshold, no
       confidence, or no threshold). The rest would be accepted (`confident`).
    2. Of those, a seeded random share `audit_rate` goes to review as `audit_sample`, so the
       agreement of auto-accepted labels can be estimated without bias. Whether an item is drawn
       depends only on (seed, id), so the draw is stable under reordering and resume.
    3. With a budget of K, at most K drafts go to review. They are kept in this order: parse
       failures (they are never accepted, having no label; if there are more than K they all
       still go to review), then the untrusted drafts least confident first (no confidence
       counts as least; ties by id), then audit samples in the order of their draw, so a
       truncated audit sample is still a uniform random sample. Every review draft past K is
       accepted instead, with reason `budget`: its label ships unreviewed and outside the
       calibrated guarantee, and `route_counts` shows how many did.
    """
    seen: set[str] = set()
    for draft in drafts:
        if draft.id in seen:
            raise CriticError(f"draft id {draft.id!r} appears twice; route each item once")
        seen.add(draft.id)

    reasons: dict[str, Reason] = {}
    trusts: dict[str, _Trust] = {}
    for draft in drafts:
        trust = trusts[draft.id] = _trust(draft, policy)
        reason = trust.reason
        sampled = calibration_draw(policy.seed, draft.id) < policy.calibration_rate
        if reason in (None, "low_confidence") and sampled:
            reason = "calibration_sample"  # whatever its confidence: a uniform sample
        elif reason is None:
            audited = audit_draw(policy.seed, draft.id) < policy.audit_rate
            reason = "audit_sample" if audited else "confident"
        reasons[draft.id] = reason

    if policy.budget is not None:
        for draft in _over_budget(drafts, reasons, policy):
            reasons[draft.id] = "budget"

    routes = []
    for d in drafts:
        trust, reason = trusts[d.id], reasons[d.id]
        accept = reason in ("confident", "budget")
        ships = accept and trust.reason is None  # a budget accept of an untrusted draft:
        critic = trust.critic if ships else None  # its own (first) label ships, unguaranteed
        label = trust.label if ships else (d.label if accept else None)
        if accept and not ships and policy.stages and d.verdicts:
            first = d.verdicts[0]
            critic, label = first.critic, first.label
        elif accept and not ships:
            critic = d.critic
        routes.append(Route(d.id, "accept" if accept else "review", reason, critic, label,
                            trust.asked))  # fmt: skip
    return routes


def _over_budget(
    drafts: Sequence[RouteInput], reasons: dict[str, Reason], policy: Policy
) -> list[RouteInput]:
    """The review drafts past the budget, which will be accepted instead."""
    assert policy.budget is not None
    failed = [d for d in drafts if reasons[d.id] == "parse_failure"]
    untrusted = sorted(
        (d for d in drafts if reasons[d.id] not in ("parse_failure", "audit_sample", "confident")),
        key=lambda d: (-1.0 if d.confidence is None else d.confidence, d.id),
    )
    audits = sorted(
        (d for d in drafts if reasons[d.id] == "audit_sample"),
        key=lambda d: (audit_draw(policy.seed, d.id), d.id),
    )
    room = max(0, policy.budget - len(failed))
    return [*untrusted, *audits][room:]


def requests_per_item(routes: Sequence[Route], critics: Sequence[str]) -> dict[str, float]:
    """Per cascade critic, the share of routed items it was asked about (its requests per item,
    re-asks aside); empty for a one-critic policy."""
    if not routes:
        return {}
    return {c: sum(c in r.critics_asked for r in routes) / len(routes) for c in critics}


def route_counts(routes: Sequence[Route]) -> dict[str, int]:
    """How many routes have each reason, every reason listed (accept reasons first)."""
    counts: dict[str, int] = dict.fromkeys(REASONS, 0)
    for r in routes:
        counts[r.reason] += 1
    return counts
