"""Cascades of critics (Trust or Escalate, arXiv 2407.18370): a cheap critic first, the next one
only for what the previous stage did not accept, humans for what the last cannot settle.

`calibrate_cascade` calibrates stage s on the calibration items that reach it (those no earlier
stage accepted), by the same fixed-sequence procedure as `calibrate`, at level delta / S.

Why the union of accepted items meets the target with probability >= 1 - delta:
1. The union's agreement is the average of the stages' agreements weighted by the share each
   accepts, so it is at least the target whenever every stage's accepted set is.
2. Stage s fails (passes a threshold whose agreement, on the items reaching stage s, is below the
   target) with probability at most delta / S, even though which items reach it was decided on
   the same data. Earlier stages looked at the labels of items that reach stage s only through
   the test that failed and ended their sequence, an event that is *decreasing* in those labels
   (more agreement would have made it pass); a false pass at stage s is *increasing* in them.
   Given everything else, labels of different items are independent, so by Harris's inequality
   conditioning on the earlier stages' decisions can only lower the chance of a false pass.
3. A union bound over the S stages gives at most delta in all.
delta must be split: two stages each tested at delta could fail with probability about 2 delta
(for example when the first stage accepts nothing and the second is tested on every item).
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from critic.calibrate import MIN_ACCEPTED, CalibrationResult, calibrate, check_calibration_input
from critic.errors import UsageError


class Stage(BaseModel):
    """One stage of a cascade policy: its critic, threshold and the calibration behind it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    critic: str = Field(min_length=1)
    threshold: float | None = Field(ge=0, le=1)
    reached: int = Field(ge=0, description="calibration items that reached this stage")
    calibration: CalibrationResult


class CascadeResult(BaseModel):
    """The outcome of `calibrate_cascade`: each stage, and the cascade as a whole."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stages: list[Stage]
    target_agreement: float = Field(gt=0, lt=1)
    delta: float = Field(gt=0, lt=1)
    n_calibration: int = Field(ge=0)
    n_accepted: int = Field(ge=0)
    n_agree: int = Field(ge=0)
    requests_per_item: dict[str, float] = Field(
        description="per critic: requests per calibration item (share of items reaching it)"
    )

    @property
    def coverage(self) -> float:
        return self.n_accepted / self.n_calibration if self.n_calibration else 0.0

    @property
    def agreement(self) -> float | None:
        return self.n_agree / self.n_accepted if self.n_accepted else None

    @property
    def guarantee(self) -> str:
        stages = len(self.stages)
        conf = f"{(1 - self.delta) * 100:.4g}%"
        each = f"{self.delta / stages:.4g}"
        settled = ", ".join(
            f"{s.critic} ≥ {s.threshold:.4g} ({s.calibration.n_accepted})"
            if s.threshold is not None
            else f"{s.critic}: none"
            for s in self.stages
        )
        if self.n_accepted == 0:
            return (
                f"No stage of the cascade can be guaranteed at {self.target_agreement:.4g} "
                f"agreement with probability ≥ {conf} (each stage tested at delta {each}); "
                f"nothing will be auto-accepted."
            )
        assert self.agreement is not None
        return (
            f"With probability ≥ {conf} over the draw of the {self.n_calibration} calibration "
            f"items, the labels the cascade auto-accepts agree with humans at a rate of at least "
            f"{self.target_agreement:.4g} on items like them (each of the {stages} stages "
            f"calibrated at delta {each} on the items reaching it). Stages: {settled}. On the "
            f"calibration set: {self.n_accepted} of {self.n_calibration} accepted "
            f"({self.coverage:.1%}), {self.agreement:.1%} agreement."
        )


def calibrate_cascade(
    critics: Sequence[str],
    scores: Sequence[Sequence[float]],
    correct: Sequence[Sequence[bool]],
    target_agreement: float,
    delta: float,
    *,
    min_accepted: int = MIN_ACCEPTED,
) -> CascadeResult:
    """Calibrate each stage of a cascade on the calibration items that reach it (module doc).

    Args:
        critics: the critics' names, cheapest (first asked) first.
        scores: per item, each critic's confidence, in the order of `critics`.
        correct: per item, whether each critic's label agreed with the human label.
        target_agreement, delta: as for `calibrate`; each stage is tested at delta / S.
    """
    if not critics:
        raise UsageError("a cascade needs at least one critic", hint="--cascade small,big")
    if len(set(critics)) != len(critics):
        raise UsageError(f"--cascade names a critic twice: {','.join(critics)}")
    if len(scores) != len(correct):
        raise UsageError(f"{len(scores)} items' scores but {len(correct)} items' verdicts")
    for row_s, row_c in zip(scores, correct, strict=True):
        if len(row_s) != len(critics) or len(row_c) != len(critics):
            raise UsageError(f"every item needs one score and one verdict per critic ({critics})")
    for s in range(len(critics)):
        check_calibration_input([r[s] for r in scores], [r[s] for r in correct], target_agreement,
                                delta)  # fmt: skip
    per_stage = delta / len(critics)
    reaching = list(range(len(scores)))
    stages: list[Stage] = []
    n_accepted = n_agree = 0
    requests: dict[str, float] = {}
    for s, name in enumerate(critics):
        requests[name] = len(reaching) / len(scores) if scores else 0.0
        result = calibrate(
            [scores[i][s] for i in reaching],
            [correct[i][s] for i in reaching],
            target_agreement,
            per_stage,
            min_accepted=min_accepted,
        )
        stages.append(Stage(critic=name, threshold=result.threshold, reached=len(reaching),
                            calibration=result))  # fmt: skip
        if result.threshold is not None:
            t = result.threshold
            n_accepted += result.n_accepted
            n_agree += result.n_agree
            reaching = [i for i in reaching if scores[i][s] < t]
    return CascadeResult(
        stages=stages,
        target_agreement=target_agreement,
        delta=delta,
        n_calibration=len(scores),
        n_accepted=n_accepted,
        n_agree=n_agree,
        requests_per_item=requests,
    )
