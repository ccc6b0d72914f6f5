"""From judged rows to a routing policy, and from predictions to route inputs: one critic,
several combined (`--combine mean|vote`), or a cascade (`--cascade a,b`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from critic.calibrate import CalibrationResult, calibrate
from critic.cascade import CascadeMethod, CascadeResult, calibrate_cascade
from critic.errors import UsageError
from critic.judgments import Combine, Judgment, agrees, check_critics, scored
from critic.routing import Policy, RouteInput, StageVerdict


@dataclass(frozen=True)
class Calibrated:
    """A calibration and what it was computed from (per stage, for the plot)."""

    result: CalibrationResult | CascadeResult
    scores: list[list[float]]  # per item, one confidence per stage (one stage unless a cascade)
    correct: list[list[bool]]
    critics: list[str]

    def policy(self, *, audit_rate: float = 0.0, budget: int | None = None, seed: int = 0,
               how: Combine | None = None) -> Policy:  # fmt: skip
        if isinstance(self.result, CascadeResult):
            return Policy.from_cascade(self.result, audit_rate=audit_rate, budget=budget, seed=seed)
        policy = Policy.from_calibration(self.result, audit_rate=audit_rate, budget=budget,
                                         seed=seed)  # fmt: skip
        return policy.model_copy(update={"combine": how}) if how else policy


def calibrate_judgments(
    judgments: Sequence[Judgment],
    source: str | Path,
    target_agreement: float,
    delta: float,
    *,
    how: Combine | None = None,
    cascade: Sequence[str] | None = None,
    cascade_method: CascadeMethod = "paths",
) -> Calibrated:
    """Calibrate on judged rows: the single critic, the combined panel, or the cascade (jointly
    or stage by stage, `critic.cascade`)."""
    if how is not None and cascade:
        raise UsageError("give --combine or --cascade, not both")
    if cascade:
        check_critics(judgments, cascade, source)
        scores = [[j.verdict(c).confidence for c in cascade] for j in judgments]
        correct = [[agrees(j.verdict(c), j) for c in cascade] for j in judgments]
        result: CalibrationResult | CascadeResult = calibrate_cascade(
            list(cascade), scores, correct, target_agreement, delta, method=cascade_method
        )
        return Calibrated(result, scores, correct, list(cascade))
    verdicts = scored(judgments, how)
    scores = [[v.confidence] for v in verdicts]
    correct = [[agrees(v, j)] for v, j in zip(verdicts, judgments, strict=True)]
    result = calibrate([s[0] for s in scores], [c[0] for c in correct], target_agreement, delta)
    return Calibrated(result, scores, correct, [verdicts[0].model or "critic"])


def route_inputs(judgments: Sequence[Judgment], policy: Policy) -> list[RouteInput]:
    """What routing needs from prediction rows, for the policy's kind."""
    if policy.stages:
        names = policy.critics
        return [
            RouteInput(
                id=j.id, label=None, confidence=None,
                verdicts=tuple(StageVerdict(v.model or "", v.label, v.confidence)
                               for v in j.verdicts if v.model in names),
            )
            for j in judgments
        ]  # fmt: skip
    verdicts = scored(judgments, policy.combine)
    return [
        RouteInput(id=j.id, label=v.label, confidence=v.confidence, critic=v.model)
        for j, v in zip(judgments, verdicts, strict=True)
    ]
