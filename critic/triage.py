"""Apply a routing policy to stored drafts: store every route, hand the review items over."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

from critic.calibrate import Judgment
from critic.errors import UsageError
from critic.judgments import combine, stored_verdicts
from critic.policies import route_inputs
from critic.routing import (
    Binding,
    Policy,
    Route,
    RouteInput,
    StageVerdict,
    binding_problems,
    policy_hash,
    requests_per_item,
    route,
    route_counts,
)
from critic.store import RunInfo, Store, verdict

# Failures the model caused go to a human; unreadable input rows have nothing to review.
NOT_ROUTABLE = {"invalid_input"}

#: What routing sees as the "label" of a drafted revision (which ships its text, not a label).
REVISION = "<revision>"

#: The policy of `critic route --accept-all`: every draft accepted as the critic made it, with
#: no calibrated guarantee (routes say `accept_all`, records say `guaranteed: false`).
ACCEPT_ALL = "accept-all: every parsed draft ships as the critic made it; no guarantee applies"


@dataclass
class RouteSummary:
    """What routing decided, for printing and `--json`."""

    run_id: str | None
    policy_hash: str
    counts: dict[str, int]
    accepted: int
    review: int
    not_routable: int
    pending: int
    guarantee: str | None
    enqueued: int | None = None
    forced: list[str] = field(default_factory=list)
    """Why the policy did not fit the run, when routed anyway with --force."""
    requests_per_item: dict[str, float] = field(default_factory=dict)
    review_rows: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "review_rows"}


def route_input(row: dict[str, Any], policy: Policy | None = None) -> RouteInput:
    """What routing needs from one stored row (as `Store.rows` gives it); for a cascade or a
    combining policy, the stored critics' verdicts too."""
    components = row.get("components") or {}
    label = verdict(row.get("label"), row.get("score"))
    if label is None and row.get("task") == "revise" and row["status"] == "drafted":
        label = REVISION  # a revision has no label: it is routed on its confidence alone
    confidence = row.get("confidence")
    order = components.get("order_agreement")
    critics = components.get("critic_agreement")
    verdicts = stored_verdicts(row) if policy is not None else ()
    if policy is not None and policy.combine and verdicts and row["status"] != "failed":
        combined = combine(verdicts, policy.combine)
        label, confidence = combined.label, combined.confidence
    return RouteInput(
        id=row["item_id"],
        label=label,
        confidence=confidence,
        parse_failed=row["status"] == "failed",
        swap_inconsistent=order is not None and order < 1.0,
        critics_disagree=critics is not None and critics < 1.0,
        verdicts=tuple(StageVerdict(v.model or "", v.label, v.confidence) for v in verdicts)
        if policy is not None and policy.stages
        else (),
    )


def run_binding(run: RunInfo) -> Binding:
    """What a run was drafted with, as a policy's binding names it."""
    return Binding(constitution=run.constitution_hash, task=run.task, model=run.model,
                   template=run.template_hash)  # fmt: skip


def route_run(
    store: Store, policy: Policy | None, run_id: str, *, force: bool = False
) -> RouteSummary:
    """Route every finished item of one run and store the routes.

    `policy=None` is `--accept-all`: every parsed draft is accepted (reason `accept_all`, no
    guarantee), and only drafts without a valid output go to review (`parse_failure`).

    A policy with a threshold routes only runs that match what it was calibrated on
    (`routing.binding_problems`); `force` routes anyway, and the routes record it (their
    accepts carry no guarantee).
    """
    run = store.run(run_id)
    problems = binding_problems(policy, run_binding(run)) if policy is not None else []
    if problems and not force:
        raise UsageError(
            f"this policy was not calibrated on run {run.id}: " + "; ".join(problems),
            hint="calibrate a policy on this run (critic calibrate --db ... --run "
            f"{run.id}), or route anyway with --force (its accepts then carry no guarantee)",
        )
    rows = list(store.rows(run.id))
    routable = [r for r in rows if r["status"] != "pending" and r.get("reason") not in NOT_ROUTABLE]
    if policy is None:
        routes = [accept_all(route_input(r)) for r in routable]
        digest = hashlib.sha256(ACCEPT_ALL.encode()).hexdigest()
        content = f"# {ACCEPT_ALL}\naccept_all: true\n"
    else:
        routes = route([route_input(r, policy) for r in routable], policy)
        digest = policy_hash(policy)
        content = yaml.safe_dump(policy.model_dump(mode="json"), sort_keys=False)
    store.save_routes(
        digest,
        content,
        [(run.id, rt.id, rt.decision, rt.reason, r.get("confidence"))
         for rt, r in zip(routes, routable, strict=True)],
        forced=bool(problems),
    )  # fmt: skip
    by_id = {r["item_id"]: r for r in routable}
    review_rows = [
        {**by_id[rt.id], "route_reason": rt.reason, "policy": digest}
        for rt in routes
        if rt.decision == "review"
    ]
    summary = _summary(run.id, digest, policy, routes, rows, routable, review_rows)
    summary.forced = problems
    return summary


def accept_all(draft: RouteInput) -> Route:
    """The route of `--accept-all`: accept what parsed, review what did not."""
    if draft.parse_failed or draft.label is None:
        return Route(draft.id, "review", "parse_failure")
    return Route(draft.id, "accept", "accept_all", draft.critic, draft.label)


def route_judgments(judgments: Sequence[Judgment], policy: Policy) -> list[Route]:
    """Route predictions made elsewhere (one critic's rows, a panel's, or a cascade's)."""
    return route(route_inputs(judgments, policy), policy)


def _summary(
    run_id: str | None,
    digest: str,
    policy: Policy | None,
    routes: Sequence[Route],
    rows: Sequence[dict[str, Any]],
    routable: Sequence[dict[str, Any]],
    review_rows: list[dict[str, Any]],
) -> RouteSummary:
    review = sum(1 for r in routes if r.decision == "review")
    return RouteSummary(
        run_id=run_id,
        policy_hash=digest,
        counts=route_counts(routes),
        accepted=len(routes) - review,
        review=review,
        not_routable=sum(1 for r in rows if r.get("reason") in NOT_ROUTABLE),
        pending=sum(1 for r in rows if r["status"] == "pending"),
        guarantee=policy.guarantee if policy is not None else ACCEPT_ALL,
        review_rows=review_rows,
        requests_per_item=requests_per_item(routes, policy.critics) if policy else {},
    )
