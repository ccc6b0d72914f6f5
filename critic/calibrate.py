"""Calibrate the auto-accept threshold on human decisions, with a stated statistical guarantee.

`calibrate` picks a confidence threshold t such that, with probability at least 1 - delta over
the draw of the calibration set, labels with confidence >= t agree with the human label at a rate
of at least the target. The procedure is fixed-sequence testing over a fixed grid:

- the candidate thresholds are 1.0, 0.995, ..., 0.005, 0.0 (`GRID_STEP`), the same whatever the
  data, so ties and saturation near 1.0 cannot multiply or shift the tests;
- they are tested from the top, but a threshold is tested only once at least `min_accepted`
  (default 30, and never fewer than can pass at all) calibration items score at or above it: a
  judge's most confident handful is often not its most accurate, and a test on a handful would
  end the sequence by chance;
- the null hypothesis "agreement among items scored >= t is below the target" is rejected when
  the exact binomial (Clopper–Pearson) tail P(X >= k | n, target) is at most delta;
- the sequence stops at the first threshold that fails; the lowest threshold passed is chosen.

Why this holds: the order of the tests depends on the scores only, never on the labels, and
given the n items at or above a threshold the number agreeing is Binomial(n, agreement(t)) for
exchangeable items, so each test has level delta. A wrong threshold can only be chosen if the
first true null in the sequence is rejected, which has probability at most delta; no
multiplicity correction is needed. The guarantee is about items exchangeable with the
calibration items (drawn from the same distribution as the items that will be routed).

This design was chosen by measurement (bench/calibration.py) against fixed sequence with two
starts, Learn-then-Test over a coarse grid, a fallback procedure and the randomized exact test;
see the README, `critic calibrate`.
"""

from __future__ import annotations

import bisect
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

from critic.errors import CriticError, UsageError
from critic.judgments import Judgment, load_judgments
from critic.quality import QualityEstimate, estimate_accepted_quality
from critic.stats import (
    betainc,
    binomial_lower_bound,
    binomial_sf,
    binomial_upper_bound,
    clopper_pearson,
    min_labels_to_pass,
    passes,
)

__all__ = [
    "GRID_STEP",
    "MIN_ACCEPTED",
    "CalibrationResult",
    "Forecast",
    "Judgment",
    "QualityEstimate",
    "ThresholdRow",
    "betainc",
    "binomial_lower_bound",
    "binomial_sf",
    "binomial_upper_bound",
    "calibrate",
    "clopper_pearson",
    "estimate_accepted_quality",
    "fixed_sequence",
    "forecast_calibration",
    "forecast_coverage",
    "grid_table",
    "load_judgments",
    "min_labels_to_pass",
    "threshold_grid",
    "threshold_table",
]

GRID_STEP = 0.005
MIN_ACCEPTED = 30


def threshold_grid(step: float = GRID_STEP) -> list[float]:
    """The candidate thresholds, highest first: 1.0, 1 - step, ..., 0.0."""
    count = round(1.0 / step)
    return [round(1.0 - i * step, 10) for i in range(count + 1)]


@dataclass(frozen=True)
class ThresholdRow:
    """The calibration items at or above one candidate threshold."""

    threshold: float
    n_accepted: int
    n_agree: int

    @property
    def agreement(self) -> float:
        return self.n_agree / self.n_accepted


def threshold_table(scores: Sequence[float], correct: Sequence[bool]) -> list[ThresholdRow]:
    """One row per distinct score, highest first: how many items score at least that, how many
    of them agree with the human label."""
    if len(scores) != len(correct):
        raise ValueError(f"{len(scores)} scores but {len(correct)} correctness flags")
    pairs = sorted(zip(scores, correct, strict=True), key=lambda p: -p[0])
    rows: list[ThresholdRow] = []
    k = 0
    for n, (score, ok) in enumerate(pairs, start=1):
        k += int(ok)
        if n == len(pairs) or pairs[n][0] != score:
            rows.append(ThresholdRow(float(score), n, k))
    return rows


def grid_table(
    scores: Sequence[float], correct: Sequence[bool], step: float = GRID_STEP
) -> list[ThresholdRow]:
    """One row per grid threshold, highest first (rows may repeat a set: nothing between)."""
    if len(scores) != len(correct):
        raise ValueError(f"{len(scores)} scores but {len(correct)} correctness flags")
    pairs = sorted(zip(scores, correct, strict=True))
    ascending = [s for s, _ in pairs]
    agree_below = [0]
    for _, ok in pairs:
        agree_below.append(agree_below[-1] + int(ok))
    total = agree_below[-1]
    rows = []
    for t in threshold_grid(step):
        first = bisect.bisect_left(ascending, t)
        rows.append(ThresholdRow(t, len(pairs) - first, total - agree_below[first]))
    return rows


def _pct(x: float) -> str:
    """90% for 0.9, 97.5% for 0.975: as many digits as the number has, up to four."""
    return f"{x * 100:.4g}%"


class CalibrationResult(BaseModel):
    """The outcome of `calibrate`, stored in the routing policy."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    threshold: float | None = Field(
        description="auto-accept labels with confidence >= threshold; None: accept nothing"
    )
    target_agreement: float = Field(gt=0, lt=1)
    delta: float = Field(gt=0, lt=1)
    n_calibration: int = Field(ge=0)
    n_accepted: int = Field(ge=0, description="calibration items at or above the threshold")
    n_agree: int = Field(ge=0, description="of those, how many agree with the human label")
    coverage: float = Field(ge=0, le=1, description="share of calibration items auto-accepted")
    agreement: float | None = Field(description="agreement with humans among accepted items")
    lower_bound: float | None = Field(description="one-sided 1 - delta lower bound on agreement")
    min_labels: int = Field(
        ge=1, description="accepted items needed for any threshold to pass, if all agree"
    )
    min_accepted: int = Field(
        default=MIN_ACCEPTED, ge=1, description="a threshold is tested once this many are above"
    )
    grid_step: float = Field(default=GRID_STEP, gt=0, le=1, description="spacing of thresholds")
    needed_more: int | None = Field(
        default=None,
        description="when nothing passes: estimated further human labels needed; None when no "
        "amount would do at the agreement observed so far",
    )

    @property
    def guarantee(self) -> str:
        """The guarantee in words, or why there is none and what to do."""
        conf, target = _pct(1 - self.delta), _pct(self.target_agreement)
        if self.threshold is not None:
            assert self.agreement is not None and self.lower_bound is not None
            return (
                f"With probability ≥ {conf} over the draw of the {self.n_calibration} calibration "
                f"items, labels auto-accepted at confidence ≥ {self.threshold:.4g} agree with "
                f"humans at a rate of at least {target} on items like them. On the calibration "
                f"set: {self.n_accepted} of {self.n_calibration} accepted "
                f"({self.coverage:.1%} coverage), {self.agreement:.1%} agreement, lower bound "
                f"{self.lower_bound:.1%}."
            )
        head = (
            f"No threshold can be guaranteed: {self.n_calibration} human labels do not show, "
            f"with probability ≥ {conf}, {target} agreement at any confidence level, so nothing "
            f"will be auto-accepted."
        )
        needed = max(self.min_labels, self.min_accepted)
        if self.n_calibration < needed:
            return (
                f"{head} A threshold is tested only once at least {needed} labelled items are "
                f"at or above it ({needed - self.n_calibration} more)."
            )
        if self.needed_more is None:
            return (
                f"{head} The critic's agreement with humans, even at its highest confidence, is "
                f"not above {target}, so more labels will not help: lower the target agreement "
                f"or improve the critic."
            )
        return (
            f"{head} If new labels agree as the ones so far do, about {self.needed_more} more "
            f"human labels are needed."
        )


def _labels_needed(
    agreement: float, share: float, target: float, delta: float, least: int
) -> int | None:
    """Total labels needed for a set holding `share` of all items, with observed `agreement`,
    to pass with at least `least` items in it; None when it can never pass or would need an
    absurd number (over 10^8)."""
    if agreement <= target:
        return None

    def ok(size: int) -> bool:
        return size >= least and passes(math.floor(agreement * size), size, target, delta)

    hi = 1
    while not ok(hi):
        hi *= 2
        if hi > 10**8:
            return None
    lo = hi // 2
    while hi - lo > 1:  # smallest passing size (the test is monotone up to rounding of k)
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid
    return math.ceil(hi / share)


def fixed_sequence(
    rows: Sequence[ThresholdRow], target_agreement: float, delta: float, least: int
) -> ThresholdRow | None:
    """Fixed-sequence testing down `rows`, in their order (the strictest first, an order fixed
    before the labels are seen): a row is tested once at least `least` items are accepted,
    passes when the exact binomial tail P(X >= k | n, target) is at most delta, and the sequence
    stops at the first failure. Returns the last row passed, or None. `calibrate` runs it over
    thresholds, `critic.cascade` over cascade policies."""
    chosen: ThresholdRow | None = None
    for row in rows:
        if row.n_accepted < least:
            continue
        if not passes(row.n_agree, row.n_accepted, target_agreement, delta):
            break
        chosen = row
    return chosen


def labels_needed_more(
    rows: Sequence[ThresholdRow], n_total: int, target_agreement: float, delta: float, least: int
) -> int | None:
    """When nothing passed: about how many more labels would let some row pass, if new labels
    look like these (see `calibrate`); None when no amount would."""
    if n_total < least:
        return least - n_total
    tested = [r for r in rows if r.n_accepted >= least]
    distinct = {r.n_accepted: r for r in tested}.values()
    totals = [
        _labels_needed(r.agreement, r.n_accepted / n_total, target_agreement, delta, least)
        for r in distinct
    ]
    known = [t for t in totals if t is not None]
    return max(1, min(known) - n_total) if known else None


def check_calibration_input(
    scores: Sequence[float], correct: Sequence[bool], target_agreement: float, delta: float
) -> None:
    """Usage errors for the target and delta; errors for malformed scores."""
    if not 0.0 < target_agreement < 1.0:
        raise UsageError(f"--target-agreement must be between 0 and 1, got {target_agreement}")
    if not 0.0 < delta < 1.0:
        raise UsageError(f"--delta must be between 0 and 1, got {delta}", hint="e.g. --delta 0.1")
    if len(scores) != len(correct):
        raise CriticError(f"{len(scores)} scores but {len(correct)} correctness flags")
    for i, s in enumerate(scores):
        if not 0.0 <= s <= 1.0:  # also rejects NaN
            raise CriticError(f"calibration item {i}: confidence {s} is not in [0, 1]")


def calibrate(
    scores: Sequence[float],
    correct: Sequence[bool],
    target_agreement: float,
    delta: float,
    *,
    min_accepted: int = MIN_ACCEPTED,
    grid_step: float = GRID_STEP,
) -> CalibrationResult:
    """Choose the auto-accept threshold by fixed-sequence testing on a fixed grid (module doc).

    Args:
        scores: the combined confidence of each calibration item, in [0, 1].
        correct: whether the critic's label agreed with the human label, per item.
        target_agreement: the agreement rate auto-accepted labels must reach, e.g. 0.9.
        delta: the risk that the guarantee fails, e.g. 0.1 for "with probability ≥ 0.9".
        min_accepted: a threshold is tested only once this many items are at or above it.
        grid_step: the spacing of the candidate thresholds.

    When nothing passes, `needed_more` estimates how many more human labels are needed,
    assuming new labels look like the ones so far: for each testable threshold whose observed
    agreement p is above the target, find the smallest accepted-set size N (at least
    `min_accepted`) at which agreement p would pass; the threshold accepts a share f of all
    items, so about N / f labels are needed in all. The estimate is the smallest such total
    minus the labels there are.
    """
    check_calibration_input(scores, correct, target_agreement, delta)
    n_total = len(scores)
    min_labels = min_labels_to_pass(target_agreement, delta)
    least = max(min_labels, min_accepted)
    rows = grid_table(scores, correct, grid_step)
    chosen = fixed_sequence(rows, target_agreement, delta, least)
    needed_more = None
    if chosen is None:
        needed_more = labels_needed_more(rows, n_total, target_agreement, delta, least)

    n_accepted = chosen.n_accepted if chosen else 0
    n_agree = chosen.n_agree if chosen else 0
    return CalibrationResult(
        threshold=chosen.threshold if chosen else None,
        target_agreement=target_agreement,
        delta=delta,
        n_calibration=n_total,
        n_accepted=n_accepted,
        n_agree=n_agree,
        coverage=n_accepted / n_total if n_total else 0.0,
        agreement=chosen.agreement if chosen else None,
        lower_bound=binomial_lower_bound(n_agree, n_accepted, delta) if chosen else None,
        min_labels=min_labels,
        min_accepted=min_accepted,
        grid_step=grid_step,
        needed_more=needed_more,
    )


# --------------------------------------------------------------------------------------------
# Planning: what more labels buy

FORECAST_MORE = (250, 500)
FORECAST_DRAWS = 100


@dataclass(frozen=True)
class Forecast:
    """The coverage expected from a calibration on `labels` human labels (`more` than now)."""

    more: int
    labels: int
    coverage: float


def forecast_coverage(
    n: int,
    coverage_of: Callable[[Sequence[int]], float],
    more: Sequence[int] = FORECAST_MORE,
    *,
    draws: int = FORECAST_DRAWS,
    seed: int = 0,
) -> list[Forecast]:
    """Bootstrap the coverage a calibration on more labels would reach (first: 0 more).

    Args:
        n: how many calibration labels there are.
        coverage_of: calibrates on the given item indices (a bootstrap sample, with repeats)
            and returns the share of all n items the chosen policy accepts.
        more: the numbers of further labels to forecast.
        draws: bootstrap samples per size; `seed` fixes them.

    Each draw takes n + m items with replacement from the n labelled ones, as if m more labels
    came from the same distribution, calibrates on them, and measures the policy's coverage on
    the n items (the empirical stand-in for the population). The mean over draws is the
    forecast. The `more=0` row is the same estimate at today's size: compare with it rather
    than with this calibration's own coverage, which includes its luck of the draw.
    """
    if n <= 0:
        return [Forecast(m, m, 0.0) for m in (0, *more)]
    rng = random.Random(seed)
    out = []
    for m in (0, *more):
        total = 0.0
        for _ in range(draws):
            total += coverage_of([rng.randrange(n) for _ in range(n + m)])
        out.append(Forecast(m, n + m, total / draws))
    return out


def forecast_calibration(
    scores: Sequence[float],
    correct: Sequence[bool],
    target_agreement: float,
    delta: float,
    more: Sequence[int] = FORECAST_MORE,
    *,
    draws: int = FORECAST_DRAWS,
    seed: int = 0,
    min_accepted: int = MIN_ACCEPTED,
    grid_step: float = GRID_STEP,
) -> list[Forecast]:
    """`forecast_coverage` for `calibrate` on these items (same target, delta and settings)."""
    ascending = sorted(scores)

    def coverage_of(picks: Sequence[int]) -> float:
        result = calibrate([scores[i] for i in picks], [correct[i] for i in picks],
                           target_agreement, delta, min_accepted=min_accepted,
                           grid_step=grid_step)  # fmt: skip
        if result.threshold is None:
            return 0.0
        return 1.0 - bisect.bisect_left(ascending, result.threshold) / len(ascending)

    return forecast_coverage(len(scores), coverage_of, more, draws=draws, seed=seed)
