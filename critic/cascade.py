"""Cascades of critics (Trust or Escalate, arXiv 2407.18370): a cheap critic first, the next one
only for what the previous stage did not accept, humans for what the last cannot settle.

Two ways to calibrate one (`calibrate --cascade-method`).

**joint**: one fixed-sequence test over a path of cascade policies fixed before any
data are seen. Policy pi_l puts every stage's threshold at l, for l on `calibrate`'s grid 1.0,
0.995, ..., 0.0: an item is accepted by the first critic whose confidence is at least l (so it is
accepted at all iff its highest confidence across the critics is at least l), and that critic's
label ships; stage s is asked only when every earlier critic's confidence was below l. The
policies are tested from l = 1.0 down; pi_l is tested once at least `least` calibration items are
accepted by it (as in `calibrate`: a rule on the scores alone); it passes when the exact binomial
tail P(X >= k | n, target) is at most delta, k of the n calibration items it accepts agreeing with
the human label; the sequence stops at the first failure and the loosest policy passed is chosen.

Why what the cascade accepts meets the target with probability >= 1 - delta:
1. For a fixed l, whether pi_l accepts an item, and whether the label it ships agrees with the
   human, are functions of that item alone. Given that n calibration items are accepted, they
   are an i.i.d. sample of the items pi_l accepts in the population (the calibration items are
   exchangeable with the items to route), so the number agreeing is Binomial(n, a(l)), a(l) the
   agreement of pi_l on the population. The test of H_l: "a(l) < target" has level delta.
2. The order of the tests is fixed before the labels are seen. A policy with a(l) < target is
   chosen only if some true H_l is rejected; since the sequence stops at its first failure, the
   first true H_l it tests must be rejected, which has probability at most delta. This needs a
   fixed order, not nested sets: as l falls an item can move from the strong critic's label to
   the weak one's, and the accepted labels are not nested, but nothing in the argument uses that.
3. There is one sequence for the whole cascade, so delta is not split across stages.
Where the sequence starts (the first policy accepting `least` items) depends on the scores alone,
as in `calibrate`; tests/test_cascade_joint.py checks the level by simulation with that rule,
including cheap critics that are confidently wrong.

**stagewise** (the default, as measured below): stage s is calibrated on the calibration items
that reach it (those no earlier stage accepted), by `calibrate`'s procedure, at level delta / S.
Why its union holds:
1. The union's agreement is the average of the stages' agreements weighted by the share each
   accepts, so it is at least the target whenever every stage's accepted set is.
2. Stage s fails (passes a threshold whose agreement, on the items reaching stage s, is below the
   target) with probability at most delta / S, even though which items reach it was decided on
   the same data. Earlier stages looked at the labels of items that reach stage s only through
   the test that failed and ended their sequence, an event that is *decreasing* in those labels
   (more agreement would have made it pass); a false pass at stage s is *increasing* in them.
   Given everything else, labels of different items are independent, so by Harris's inequality
   conditioning on the earlier stages' decisions can only lower the chance of a false pass.
3. A union bound over the S stages gives at most delta in all. delta must be split: two stages
   each tested at delta could fail with probability about 2 delta (for example when the first
   stage accepts nothing and the second is tested on every item).

When each wins (bench/calibration.py on the LLMBar judges; README, `critic calibrate`): joint
needs no split of delta and lets a stage accept items below the target when the others make up
for it, so it asks the last critic less; but its path moves every stage at once, so an early
critic whose most confident items are often wrong stops the sequence near the top, while
stagewise just leaves that stage at a strict threshold (or none) and keeps the last one's
coverage. On LLMBar's judges, confidently wrong on its adversarial sets, stage-wise keeps more
coverage on every panel (ChatGPT -> PaLM2 at 0.70: 0.69 against 0.58; PaLM2 alone 0.87) and joint
asks PaLM2 less (0.64 against 0.84 per item); hence stage-wise is the default. On a synthetic
panel whose confidences are calibrated, joint matches stage-wise's coverage with fewer requests.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from critic.calibrate import (
    GRID_STEP,
    MIN_ACCEPTED,
    CalibrationResult,
    Forecast,
    ThresholdRow,
    calibrate,
    check_calibration_input,
    fixed_sequence,
    forecast_coverage,
    labels_needed_more,
    threshold_grid,
)
from critic.errors import UsageError
from critic.stats import binomial_lower_bound, min_labels_to_pass

CascadeMethod = Literal["joint", "stagewise"]
CASCADE_METHODS: tuple[CascadeMethod, ...] = ("joint", "stagewise")


class Stage(BaseModel):
    """One stage of a cascade policy: its critic, threshold and what it did on calibration."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    critic: str = Field(min_length=1)
    threshold: float | None = Field(ge=0, le=1)
    reached: int = Field(ge=0, description="calibration items that reached this stage")
    accepted: int = Field(ge=0, description="calibration items this stage accepted")
    agree: int = Field(ge=0, description="of those, how many agree with the human label")
    calibration: CalibrationResult | None = Field(
        default=None,
        description="stagewise: this stage's own test on the items reaching it; joint: none "
        "(one test for the whole cascade)",
    )

    @model_validator(mode="before")
    @classmethod
    def _counts_from_calibration(cls, data: Any) -> Any:
        """Policies written before `accepted` / `agree` existed carry them in `calibration`."""
        if isinstance(data, dict) and "accepted" not in data and data.get("calibration"):
            cal = data["calibration"]
            get = cal.get if isinstance(cal, dict) else lambda k: getattr(cal, k)
            data = {**data, "accepted": get("n_accepted"), "agree": get("n_agree")}
        return data


class CascadeResult(BaseModel):
    """The outcome of `calibrate_cascade`: each stage, and the cascade as a whole."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: CascadeMethod = "stagewise"  # policies written before joint existed were stagewise
    stages: list[Stage]
    target_agreement: float = Field(gt=0, lt=1)
    delta: float = Field(gt=0, lt=1)
    n_calibration: int = Field(ge=0)
    n_accepted: int = Field(ge=0)
    n_agree: int = Field(ge=0)
    requests_per_item: dict[str, float] = Field(
        description="per critic: requests per calibration item (share of items reaching it)"
    )
    needed_more: int | None = Field(
        default=None,
        description="joint, when nothing passes: estimated further human labels needed",
    )

    @classmethod
    def from_stages(
        cls, stages: Sequence[Stage], target_agreement: float, delta: float,
        method: CascadeMethod,
    ) -> CascadeResult:  # fmt: skip
        """The result as a policy file records it (its stages), for the guarantee in words."""
        n = stages[0].reached if stages else 0
        return cls(
            method=method, stages=list(stages), target_agreement=target_agreement, delta=delta,
            n_calibration=n, n_accepted=sum(s.accepted for s in stages),
            n_agree=sum(s.agree for s in stages),
            requests_per_item={s.critic: s.reached / n if n else 0.0 for s in stages},
        )  # fmt: skip

    @property
    def coverage(self) -> float:
        return self.n_accepted / self.n_calibration if self.n_calibration else 0.0

    @property
    def agreement(self) -> float | None:
        return self.n_agree / self.n_accepted if self.n_accepted else None

    @property
    def lower_bound(self) -> float | None:
        """joint: the one-sided 1 - delta lower bound on the cascade's agreement."""
        if self.method != "joint" or not self.n_accepted:
            return None
        return binomial_lower_bound(self.n_agree, self.n_accepted, self.delta)

    @property
    def guarantee(self) -> str:
        stages = len(self.stages)
        conf = f"{(1 - self.delta) * 100:.4g}%"
        each = f"{self.delta / stages:.4g}"
        how = (
            f"one test of the cascade as a whole at delta {self.delta:.4g}, every stage at the "
            "same threshold"
            if self.method == "joint"
            else f"each of the {stages} stages calibrated at delta {each} on the items reaching it"
        )
        settled = ", ".join(
            f"{s.critic} ≥ {s.threshold:.4g} ({s.accepted})"
            if s.threshold is not None
            else f"{s.critic}: none"
            for s in self.stages
        )
        if self.n_accepted == 0:
            more = (
                f" If new labels agree as the ones so far do, about {self.needed_more} more "
                "human labels are needed."
                if self.needed_more is not None
                else ""
            )
            return (
                f"No stage of the cascade can be guaranteed at {self.target_agreement:.4g} "
                f"agreement with probability ≥ {conf} ({how}); nothing will be auto-accepted."
                + more
            )
        assert self.agreement is not None
        bound = self.lower_bound
        tail = f", lower bound {bound:.1%}" if bound is not None else ""
        return (
            f"With probability ≥ {conf} over the draw of the {self.n_calibration} calibration "
            f"items, the labels the cascade auto-accepts agree with humans at a rate of at least "
            f"{self.target_agreement:.4g} on items like them ({how}). Stages: {settled}. On the "
            f"calibration set: {self.n_accepted} of {self.n_calibration} accepted "
            f"({self.coverage:.1%}), {self.agreement:.1%} agreement{tail}."
        )


def _check(
    critics: Sequence[str],
    scores: Sequence[Sequence[float]],
    correct: Sequence[Sequence[bool]],
    target_agreement: float,
    delta: float,
) -> None:
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


def calibrate_cascade(
    critics: Sequence[str],
    scores: Sequence[Sequence[float]],
    correct: Sequence[Sequence[bool]],
    target_agreement: float,
    delta: float,
    *,
    method: CascadeMethod = "stagewise",
    min_accepted: int = MIN_ACCEPTED,
) -> CascadeResult:
    """Calibrate a cascade, jointly or stage by stage (module doc).

    Args:
        critics: the critics' names, cheapest (first asked) first.
        scores: per item, each critic's confidence, in the order of `critics`.
        correct: per item, whether each critic's label agreed with the human label.
        target_agreement, delta: as for `calibrate`.
        method: `joint` (one test over the path of equal thresholds, at delta) or `stagewise`
            (each stage on the items reaching it, at delta / S).
    """
    _check(critics, scores, correct, target_agreement, delta)
    if method == "joint":
        return _joint(critics, scores, correct, target_agreement, delta, min_accepted)
    if method != "stagewise":
        raise UsageError(f"--cascade-method must be one of {', '.join(CASCADE_METHODS)}, "
                         f"got {method!r}")  # fmt: skip
    return _stagewise(critics, scores, correct, target_agreement, delta, min_accepted)


def _stagewise(
    critics: Sequence[str],
    scores: Sequence[Sequence[float]],
    correct: Sequence[Sequence[bool]],
    target_agreement: float,
    delta: float,
    min_accepted: int,
) -> CascadeResult:
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
                            accepted=result.n_accepted, agree=result.n_agree,
                            calibration=result))  # fmt: skip
        if result.threshold is not None:
            t = result.threshold
            n_accepted += result.n_accepted
            n_agree += result.n_agree
            reaching = [i for i in reaching if scores[i][s] < t]
    return CascadeResult(
        method="stagewise",
        stages=stages,
        target_agreement=target_agreement,
        delta=delta,
        n_calibration=len(scores),
        n_accepted=n_accepted,
        n_agree=n_agree,
        requests_per_item=requests,
    )


@dataclass(frozen=True)
class PathRow:
    """The calibration items under one policy of the joint path (every stage at `threshold`)."""

    threshold: float
    reached: tuple[int, ...]  # per stage: items asked
    accepted: tuple[int, ...]  # per stage: items it accepted
    agree: tuple[int, ...]  # per stage: of those, agreeing with the human label

    def total(self) -> ThresholdRow:
        return ThresholdRow(self.threshold, sum(self.accepted), sum(self.agree))


def path_table(
    scores: Sequence[Sequence[float]], correct: Sequence[Sequence[bool]], step: float = GRID_STEP
) -> list[PathRow]:
    """One row per grid threshold l, strictest first: what the cascade with every stage at l
    does on these items. Stage s accepts an item for l in (max of earlier confidences, its own
    confidence], so each item adds one interval of the grid per stage (difference arrays)."""
    grid = threshold_grid(step)  # descending
    ascending = grid[::-1]
    size = len(grid)
    stages = len(scores[0]) if scores else 0
    reach = [[0] * (size + 1) for _ in range(stages)]
    take = [[0] * (size + 1) for _ in range(stages)]
    good = [[0] * (size + 1) for _ in range(stages)]
    for row_s, row_c in zip(scores, correct, strict=True):
        lo = 0  # ascending index of the smallest l above every earlier confidence
        for s in range(stages):
            reach[s][lo] += 1
            hi = bisect.bisect_right(ascending, row_s[s])  # l <= own confidence below hi
            if hi > lo:
                take[s][lo] += 1
                take[s][hi] -= 1
                if row_c[s]:
                    good[s][lo] += 1
                    good[s][hi] -= 1
            lo = max(lo, hi)
            if lo >= size:
                break

    def running(diff: list[int]) -> list[int]:
        out, acc = [], 0
        for i in range(size):
            acc += diff[i]
            out.append(acc)
        return out

    reached, accepted, agreeing = ([running(d) for d in diffs] for diffs in (reach, take, good))
    rows = []
    for j in range(size):  # descending grid index j is ascending index size - 1 - j
        a = size - 1 - j
        row = PathRow(grid[j], *(tuple(c[a] for c in counts)
                                 for counts in (reached, accepted, agreeing)))  # fmt: skip
        rows.append(row)
    return rows


def _joint(
    critics: Sequence[str],
    scores: Sequence[Sequence[float]],
    correct: Sequence[Sequence[bool]],
    target_agreement: float,
    delta: float,
    min_accepted: int,
) -> CascadeResult:
    n = len(scores)
    least = max(min_labels_to_pass(target_agreement, delta), min_accepted)
    path = path_table(scores, correct)
    by_threshold = {r.threshold: r for r in path}
    totals = [r.total() for r in path]
    chosen = fixed_sequence(totals, target_agreement, delta, least)
    if chosen is None:
        stages = [Stage(critic=c, threshold=None, reached=n, accepted=0, agree=0)
                  for c in critics]  # fmt: skip
        return CascadeResult(
            method="joint", stages=stages, target_agreement=target_agreement, delta=delta,
            n_calibration=n, n_accepted=0, n_agree=0,
            requests_per_item=dict.fromkeys(critics, 1.0 if n else 0.0),
            needed_more=labels_needed_more(totals, n, target_agreement, delta, least),
        )  # fmt: skip
    row = by_threshold[chosen.threshold]
    stages = [
        Stage(critic=c, threshold=row.threshold, reached=row.reached[s],
              accepted=row.accepted[s], agree=row.agree[s])
        for s, c in enumerate(critics)
    ]  # fmt: skip
    return CascadeResult(
        method="joint", stages=stages, target_agreement=target_agreement, delta=delta,
        n_calibration=n, n_accepted=chosen.n_accepted, n_agree=chosen.n_agree,
        requests_per_item={c: row.reached[s] / n for s, c in enumerate(critics)},
    )  # fmt: skip


def accepts(thresholds: Sequence[float | None], confidences: Sequence[float]) -> int | None:
    """The stage (0-based) whose critic accepts an item under these thresholds, or None."""
    for s, (t, c) in enumerate(zip(thresholds, confidences, strict=True)):
        if t is not None and c >= t:
            return s
    return None


def forecast_cascade(
    critics: Sequence[str],
    scores: Sequence[Sequence[float]],
    correct: Sequence[Sequence[bool]],
    target_agreement: float,
    delta: float,
    *,
    method: CascadeMethod = "joint",
    draws: int = 50,
    seed: int = 0,
) -> list[Forecast]:
    """`critic.calibrate.forecast_coverage` for `calibrate_cascade` on these items."""

    def coverage_of(picks: Sequence[int]) -> float:
        result = calibrate_cascade(critics, [scores[i] for i in picks],
                                   [correct[i] for i in picks], target_agreement, delta,
                                   method=method)  # fmt: skip
        ts = [s.threshold for s in result.stages]
        return sum(accepts(ts, row) is not None for row in scores) / len(scores)

    return forecast_coverage(len(scores), coverage_of, draws=draws, seed=seed)
