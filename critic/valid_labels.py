"""Which human decisions may calibrate a routing policy, and recalibration on all of them so far.

A threshold's guarantee holds for future items only if the labels that test it are a random
sample of the items the threshold would accept. After routing, most human decisions are not:
they are the drafts the policy sent to review because the critic was unsure. This module decides,
label by label, which decisions may calibrate, and calibrates on those alone with
`critic.calibrate`'s fixed-sequence test and exact binomial bound.

Every label records how its draft came to be reviewed in one routing pass, its *draw*: one
policy (threshold t0, or none), one seeded draw over item ids. The draw picks an item when its
calibration draw is below the calibration rate r (`calibration_draw`) or its audit draw is below
the audit rate a (`critic.routing.audit_draw`), so it picks every item with the same probability
pi = 1 - (1 - r)(1 - a), whatever its confidence or label (`in_draw`).

- `calibration_sample`: picked by the calibration draw, whatever its confidence; valid at every
  threshold.
- `audit_sample`: picked by the audit draw among the items the policy would accept (confidence
  >= t0). At every threshold t >= t0 the audit and calibration samples above t were drawn with
  the same probability pi, so they are a uniform sample of the items above t: valid there.
- `low_confidence`: every item below t0 is reviewed, a census of the stratum below t0 (rate 1)
  beside a sample of the stratum above it (rate pi). Pooled as they come they over-weight the
  items below t0, which makes a threshold wrong in either direction: too strict for a critic
  whose agreement rises with its confidence, too lax where its middle confidences are its best
  (tests/test_valid_labels.py builds one). They enter through equal inclusion rates: the same
  seeded draw is evaluated for the reviewed items below t0 (`in_draw`), and those it picks bring
  the stratum below t0 down to the rate pi of the stratum above. With the audit and calibration
  samples of the same pass they are a uniform sample, at rate pi, of every item the pass routed,
  valid at every threshold, and the unweighted exact binomial test applies. The other
  low-confidence reviews are left out. This needs a label for every item the draw picked below
  t0: a draw marked incomplete (an item not yet decided, a budget that accepted part of the
  stratum) or one with a member left out as seen gives its audit samples at or above t0 only
  and its low-confidence reviews not at all.
- any other reason (`swap_inconsistent`, `critics_disagree`, `parse_failure`, ...): the policy
  reviews such drafts whatever their confidence, so no threshold accepts them and the guarantee
  is about the other items; left out (also when the draw picked them).
- `seen`: a reviewer who saw the critic's label agrees with it more often (automation bias): the
  decision measures agreement with a prompted human, not an independent one. Left out unless
  `allow_seen`.

Why the test keeps its level although each pass was routed by a policy calibrated on earlier
labels: whether an item is in a draw depends only on (seed, id) and the rates, never on its label
or on earlier labels. So each valid label above a threshold t is, given everything before it, a
fresh draw from the population above t, agreeing with probability agreement(t); and with the
rates fixed in advance the number of valid labels above t depends on no label either. The count
agreeing is then Binomial(n, agreement(t)), as for one calibration set, and fixed-sequence
testing over the fixed grid (`critic.calibrate.fixed_sequence`) has level delta. The one
exception is the audit samples of an incomplete draw, used at t >= t0 only: t0 came from earlier
labels, so such a pass adds labels at t only once t had passed, when the labels so far were on
the high side; fresh labels then pull the count back towards agreement(t), which makes a later
false pass less likely, not more. The property tests check both cases by simulation.

Weighting the census below t0 against the sample above it (a stratified estimate, each stratum
bounded at its share of delta) would use every low-confidence review. It was not used: on the
shared PaLM2 judge the stratum below t0 agrees far below the target, so its bound carries little
and the union bound costs the sample above t0 more labels than equal rates need (README, "Which
labels calibrate").
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from critic.calibrate import (
    GRID_STEP,
    MIN_ACCEPTED,
    CalibrationResult,
    ThresholdRow,
    check_calibration_input,
    fixed_sequence,
    grid_table,
    labels_needed_more,
    min_labels_to_pass,
)
from critic.errors import CriticError, UsageError
from critic.routing import Lineage, Policy, audit_draw, calibration_draw, policy_hash
from critic.stats import binomial_lower_bound

__all__ = [
    "AUDIT_SAMPLE",
    "CALIBRATION_SAMPLE",
    "LOW_CONFIDENCE",
    "Label",
    "LabelCalibration",
    "LeftOut",
    "Lineage",
    "Recalibration",
    "calibrate_labels",
    "calibration_draw",
    "in_draw",
    "recalibrate",
]

CALIBRATION_SAMPLE = "calibration_sample"
AUDIT_SAMPLE = "audit_sample"
LOW_CONFIDENCE = "low_confidence"
KINDS = (CALIBRATION_SAMPLE, AUDIT_SAMPLE, LOW_CONFIDENCE)

SEEN = "the reviewer saw the critic's label (pass allow_seen / --allow-seen-labels to use it)"
OUTSIDE_DRAW = (
    "not picked by the seeded draw: every low-confidence item is reviewed, so these "
    "over-represent the items below the threshold"
)
INCOMPLETE = (
    "its draw is incomplete: an item the draw picked has no usable label (not yet decided, "
    "accepted by a budget, or left out as seen)"
)
NOT_DRAWN = (
    "the policy reviews such drafts whatever their confidence, so they are not among the items "
    "a threshold accepts"
)


def in_draw(item_id: str, seed: int, calibration_rate: float, audit_rate: float) -> bool:
    """Whether a pass's seeded draw picks this item, whatever its confidence: its calibration
    draw is below the calibration rate or its audit draw below the audit rate."""
    return (
        calibration_draw(seed, item_id) < calibration_rate or audit_draw(seed, item_id) < audit_rate
    )


@dataclass(frozen=True)
class Label:
    """One human decision on a routed draft, as calibration sees it.

    Args:
        confidence: the draft's confidence, in [0, 1].
        agrees: whether the critic's label agreed with the human's.
        reason: why it was reviewed: `calibration_sample`, `audit_sample`, `low_confidence`,
            or another route reason.
        draw: the routing pass it was routed in (one policy, one seeded draw), e.g. the policy
            hash and the run.
        threshold: that pass's threshold t0; None when the policy accepted nothing.
        in_draw: whether the pass's seeded draw picked it (`in_draw()`); implied for
            calibration and audit samples.
        seen: the reviewer saw the critic's label before deciding.
        draw_complete: every item the draw picked below t0 has a decided label (False while
            some are undecided, or when a budget accepted part of the items below t0).
    """

    confidence: float
    agrees: bool
    reason: str
    draw: str
    threshold: float | None
    in_draw: bool = False
    seen: bool = False
    draw_complete: bool = True


class LeftOut(BaseModel):
    """Labels of one kind left out of calibration for one reason."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str
    reason: str
    count: int = Field(ge=1)


class LabelCalibration(BaseModel):
    """A calibration on valid labels only, with what was used and what was left out."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    calibration: CalibrationResult = Field(
        description="the threshold and its test; n_calibration counts the labels used, "
        "coverage is estimated on the labels valid at every threshold"
    )
    used: dict[str, int] = Field(description="labels used, by how they were sampled")
    above_threshold_only: int = Field(
        default=0, ge=0, description="of the audit samples used, those valid only at or above "
        "the threshold they were drawn under (their draw is incomplete)",
    )  # fmt: skip
    left_out: list[LeftOut] = Field(default_factory=list)

    def summary(self) -> list[str]:
        """Lines for the CLI: labels used per kind, then each kind left out and why."""
        used = ", ".join(f"{k} {n}" for k, n in self.used.items() if n) or "none"
        lines = [f"labels used: {used}"]
        if self.above_threshold_only:
            lines.append(
                f"  of which {self.above_threshold_only} audit samples only at or above the "
                "threshold they were drawn under"
            )
        lines += [f"left out: {o.count} {o.kind} ({o.reason})" for o in self.left_out]
        return lines


def _sort(
    labels: Sequence[Label], allow_seen: bool
) -> tuple[list[Label], list[Label], Counter[str], Counter[tuple[str, str]]]:
    """(valid at every threshold, valid at or above their draw's threshold, used per kind,
    left out per (kind, reason))."""
    thresholds: dict[str, float | None] = {}
    for i, lab in enumerate(labels):
        if not 0.0 <= lab.confidence <= 1.0:  # also NaN
            raise CriticError(f"label {i}: confidence {lab.confidence} is not in [0, 1]")
        t0 = thresholds.setdefault(lab.draw, lab.threshold)
        if t0 != lab.threshold:
            raise CriticError(
                f"label {i}: draw {lab.draw!r} has threshold {lab.threshold} here and {t0} on "
                "an earlier label",
                hint="a draw is one routing pass under one policy: key it by the policy hash",
            )

    def dropped_as_seen(lab: Label) -> bool:
        return lab.seen and not allow_seen

    incomplete = {lab.draw for lab in labels if not lab.draw_complete}
    incomplete |= {
        lab.draw for lab in labels if dropped_as_seen(lab) and _picked(lab) and lab.reason in KINDS
    }
    everywhere: list[Label] = []
    above_only: list[Label] = []
    used: Counter[str] = Counter()
    left: Counter[tuple[str, str]] = Counter()
    for lab in labels:
        if dropped_as_seen(lab):
            left[lab.reason, SEEN] += 1
        elif lab.reason == CALIBRATION_SAMPLE:
            everywhere.append(lab)
            used[lab.reason] += 1
        elif lab.reason == AUDIT_SAMPLE:
            (above_only if lab.draw in incomplete else everywhere).append(lab)
            used[lab.reason] += 1
        elif lab.reason == LOW_CONFIDENCE and not lab.in_draw:
            left[lab.reason, OUTSIDE_DRAW] += 1
        elif lab.reason == LOW_CONFIDENCE and lab.draw in incomplete:
            left[lab.reason, INCOMPLETE] += 1
        elif lab.reason == LOW_CONFIDENCE:
            everywhere.append(lab)
            used[lab.reason] += 1
        else:
            left[lab.reason, NOT_DRAWN] += 1
    return everywhere, above_only, used, left


def _picked(lab: Label) -> bool:
    """Whether the pass's seeded draw picked the item."""
    return lab.in_draw or lab.reason in (CALIBRATION_SAMPLE, AUDIT_SAMPLE)


def _rows(
    everywhere: Sequence[Label], above_only: Sequence[Label], step: float
) -> list[ThresholdRow]:
    """Per grid threshold t, highest first: the valid labels at or above t and how many agree.
    An above-only label counts at t only when t is at or above its draw's threshold."""
    rows = grid_table([lab.confidence for lab in everywhere],
                      [lab.agrees for lab in everywhere], step)  # fmt: skip
    groups: dict[float, list[Label]] = {}
    for lab in above_only:
        assert lab.threshold is not None  # an audit sample is drawn above a threshold
        groups.setdefault(lab.threshold, []).append(lab)
    for t0, group in groups.items():
        extra = grid_table([lab.confidence for lab in group], [lab.agrees for lab in group], step)
        rows = [
            ThresholdRow(r.threshold, r.n_accepted + e.n_accepted, r.n_agree + e.n_agree)
            if r.threshold >= t0 - 1e-12 else r
            for r, e in zip(rows, extra, strict=True)
        ]  # fmt: skip
    return rows


def calibrate_labels(
    labels: Sequence[Label],
    target_agreement: float,
    delta: float,
    *,
    allow_seen: bool = False,
    min_accepted: int = MIN_ACCEPTED,
    grid_step: float = GRID_STEP,
) -> LabelCalibration:
    """Choose the auto-accept threshold on the labels that are a fair sample (module doc).

    The test is `critic.calibrate`'s: the fixed grid from the top, each threshold tested once
    `min_accepted` valid labels are at or above it, exact binomial tail at level `delta`, stop at
    the first failure. On labels that are all calibration samples it chooses what
    `critic.calibrate.calibrate` chooses.
    """
    check_calibration_input(
        [lab.confidence for lab in labels], [lab.agrees for lab in labels], target_agreement,
        delta,
    )  # fmt: skip
    everywhere, above_only, used, left = _sort(labels, allow_seen)
    rows = _rows(everywhere, above_only, grid_step)
    min_labels = min_labels_to_pass(target_agreement, delta)
    least = max(min_labels, min_accepted)
    chosen = fixed_sequence(rows, target_agreement, delta, least)
    n_used = len(everywhere) + len(above_only)
    needed_more = None
    if chosen is None:
        needed_more = labels_needed_more(rows, n_used, target_agreement, delta, least)
    if chosen is None:
        coverage = 0.0
    elif everywhere:
        coverage = sum(lab.confidence >= chosen.threshold for lab in everywhere) / len(everywhere)
    else:  # audit samples alone: nothing says how many items fall below their draws' threshold
        coverage = chosen.n_accepted / n_used
    result = CalibrationResult(
        threshold=chosen.threshold if chosen else None,
        target_agreement=target_agreement,
        delta=delta,
        n_calibration=n_used,
        n_accepted=chosen.n_accepted if chosen else 0,
        n_agree=chosen.n_agree if chosen else 0,
        coverage=coverage,
        agreement=chosen.agreement if chosen else None,
        lower_bound=binomial_lower_bound(chosen.n_agree, chosen.n_accepted, delta)
        if chosen
        else None,
        min_labels=min_labels,
        min_accepted=min_accepted,
        grid_step=grid_step,
        needed_more=needed_more,
    )
    order = {k: i for i, k in enumerate(KINDS)}
    return LabelCalibration(
        calibration=result,
        used={k: used[k] for k in KINDS},
        above_threshold_only=len(above_only),
        left_out=[
            LeftOut(kind=kind, reason=reason, count=n)
            for (kind, reason), n in sorted(
                left.items(), key=lambda kv: (order.get(kv[0][0], len(KINDS)), kv[0])
            )
        ],
    )


@dataclass(frozen=True)
class Recalibration:
    """A recalibrated policy, its lineage and the calibration behind it."""

    policy: Policy
    lineage: Lineage
    result: LabelCalibration


def recalibrate(
    labels: Sequence[Label], previous: Policy, *, allow_seen: bool = False
) -> Recalibration:
    """Recalibrate `previous` on all valid labels so far, at its target and delta.

    Every other setting of the policy (audit rate, budget, seed, routing rules, combine) is kept,
    so the draws of the next passes are made as before.
    """
    if previous.stages:
        raise UsageError(
            "recalibrating a cascade policy is not supported: its stages are calibrated together",
            hint="calibrate the cascade again with critic calibrate --cascade",
        )
    result = calibrate_labels(
        labels, previous.target_agreement, previous.delta, allow_seen=allow_seen,
        min_accepted=previous.calibration.min_accepted if previous.calibration else MIN_ACCEPTED,
        grid_step=previous.calibration.grid_step if previous.calibration else GRID_STEP,
    )  # fmt: skip
    lineage = Lineage(previous=policy_hash(previous), labels=result.used)
    fields = previous.model_dump()
    fields.update(threshold=result.calibration.threshold, calibration=result.calibration,
                  lineage=lineage, content_hash=None)  # fmt: skip
    return Recalibration(Policy.model_validate(fields), lineage, result)
