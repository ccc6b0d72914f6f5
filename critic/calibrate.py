"""Calibrate the auto-accept threshold on human decisions, with a stated statistical guarantee.

`calibrate` picks the lowest confidence threshold t such that, with probability at least 1 - delta
over the draw of the calibration set, labels with confidence >= t agree with the human label at a
rate of at least the target. It runs fixed-sequence testing over thresholds from high to low: at
each threshold the null hypothesis "agreement among items scored >= t is below the target" is
tested with the exact binomial (Clopper–Pearson) tail, and the sequence stops at the first
threshold that fails. Because the hypotheses are tested in a fixed order and each at level delta,
the chance of passing any threshold whose true agreement is below the target is at most delta; no
multiplicity correction is needed.

Binomial tails and Clopper–Pearson bounds are computed here in pure Python (the regularized
incomplete beta function by continued fraction, in log space), so calibration needs no scipy.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from critic.errors import CriticError, InputError, UsageError

# --------------------------------------------------------------------------------------------
# Exact binomial tails and Clopper–Pearson bounds


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction for the incomplete beta function (modified Lentz's method)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    # Converges in O(sqrt(max(a, b))) steps; the cap is far above what any n needs.
    for m in range(1, 1_000_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        step = d * c
        h *= step
        if abs(step - 1.0) < 1e-15:
            return h
    raise ArithmeticError(f"incomplete beta did not converge for a={a}, b={b}, x={x}")


def betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b) for a, b > 0 and x in [0, 1]."""
    if a <= 0 or b <= 0:
        raise ValueError(f"betainc needs a > 0 and b > 0, got a={a}, b={b}")
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    front = math.exp(log_front)
    # The continued fraction converges fast on this side of the mean; use symmetry on the other.
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def binomial_sf(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p), exactly (up to floating point)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    return betainc(k, n - k + 1, p)


def _solve_increasing(f: Any, target: float) -> float:
    """The x in [0, 1] where the increasing function f crosses target, by bisection."""
    lo, hi = 0.0, 1.0
    for _ in range(200):
        mid = (lo + hi) / 2.0
        if mid in (lo, hi):
            break
        if f(mid) < target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2.0


def binomial_lower_bound(k: int, n: int, delta: float) -> float:
    """One-sided exact (Clopper–Pearson) lower confidence bound on p at level 1 - delta.

    From k successes in n trials: the p at which seeing k or more has probability delta.
    """
    _check_counts(k, n)
    if k == 0:
        return 0.0
    return _solve_increasing(lambda p: binomial_sf(k, n, p), delta)


def binomial_upper_bound(k: int, n: int, delta: float) -> float:
    """One-sided exact (Clopper–Pearson) upper confidence bound at level 1 - delta on p."""
    _check_counts(k, n)
    if k == n:
        return 1.0
    # P(X <= k | p) = 1 - P(X >= k + 1 | p) falls as p grows; find where it reaches delta.
    return _solve_increasing(lambda p: binomial_sf(k + 1, n, p), 1.0 - delta)


def clopper_pearson(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """The exact two-sided 1 - alpha confidence interval (lo, hi) for a binomial p, from k of n."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if n == 0:
        return (0.0, 1.0)
    return (binomial_lower_bound(k, n, alpha / 2), binomial_upper_bound(k, n, alpha / 2))


def _check_counts(k: int, n: int) -> None:
    if n < 0 or not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")


def min_labels_to_pass(target_agreement: float, delta: float) -> int:
    """The fewest accepted items with which a threshold can pass: all of them must agree.

    n items that all agree pass when target**n <= delta.
    """
    n = max(1, math.ceil(math.log(delta) / math.log(target_agreement)))
    while target_agreement**n > delta:  # guard against rounding in the logarithms
        n += 1
    while n > 1 and target_agreement ** (n - 1) <= delta:
        n -= 1
    return n


def _passes(k: int, n: int, target_agreement: float, delta: float) -> bool:
    """Reject H0 'agreement < target' at level delta: the exact p-value P(X >= k | target)."""
    return n > 0 and binomial_sf(k, n, target_agreement) <= delta


# --------------------------------------------------------------------------------------------
# Calibration


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
        if self.n_calibration < self.min_labels:
            return (
                f"{head} Even if every label agreed, at least {self.min_labels} are needed "
                f"({self.min_labels - self.n_calibration} more)."
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


def _labels_needed(agreement: float, share: float, target: float, delta: float) -> int | None:
    """Total labels needed for a bucket holding `share` of all items, with observed `agreement`,
    to pass; None when it can never pass or would need an absurd number (over 10^8)."""
    if agreement <= target:
        return None

    def passes(size: int) -> bool:
        return _passes(math.floor(agreement * size), size, target, delta)

    hi = 1
    while not passes(hi):
        hi *= 2
        if hi > 10**8:
            return None
    lo = hi // 2
    while hi - lo > 1:  # smallest passing size (the test is monotone up to rounding of k)
        mid = (lo + hi) // 2
        if passes(mid):
            hi = mid
        else:
            lo = mid
    return math.ceil(hi / share)


def _candidates(rows: list[ThresholdRow], min_labels: int, step: int) -> list[ThresholdRow]:
    """The thresholds to test, highest first: from the first accepting `min_labels` items, each
    accepting at least `step` more than the one before, and always the lowest."""
    out: list[ThresholdRow] = []
    for i, row in enumerate(rows):
        if row.n_accepted < min_labels:
            continue
        if not out or row.n_accepted - out[-1].n_accepted >= step or i == len(rows) - 1:
            out.append(row)
    return out


def calibrate(
    scores: Sequence[float],
    correct: Sequence[bool],
    target_agreement: float,
    delta: float,
) -> CalibrationResult:
    """Choose the auto-accept threshold by fixed-sequence testing with exact binomial bounds.

    Args:
        scores: the combined confidence of each calibration item, in [0, 1].
        correct: whether the critic's label agreed with the human label, per item.
        target_agreement: the agreement rate auto-accepted labels must reach, e.g. 0.9.
        delta: the risk that the guarantee fails, e.g. 0.1 for "with probability ≥ 0.9".

    Candidate thresholds are the distinct scores, from the highest down, thinned so that each
    accepts at least 1% of the calibration set more than the one before (the lowest score is
    always a candidate). Tests at near-identical thresholds add nothing but chances for a chance
    failure to end the sequence early, so thinning buys coverage. A threshold accepting fewer
    than `min_labels_to_pass(target, delta)` items cannot pass whatever the labels say, so it is
    not tested and does not end the sequence. Which thresholds are candidates depends only on the
    scores, never on correctness. The sequence stops at the first failure and the lowest
    threshold passed is chosen.

    When nothing passes, `needed_more` estimates how many more human labels are needed,
    assuming new labels look like the ones so far: for each candidate threshold whose observed
    agreement p is above the target, find the smallest accepted-set size N at which agreement p
    would pass; the threshold accepts a share f of all items, so about N / f labels are needed in
    all. The estimate is the smallest such total minus the labels there are. With fewer labels
    than `min_labels`, at least `min_labels` are needed even if all agree.
    """
    if not 0.0 < target_agreement < 1.0:
        raise UsageError(f"--target-agreement must be between 0 and 1, got {target_agreement}")
    if not 0.0 < delta < 1.0:
        raise UsageError(f"--delta must be between 0 and 1, got {delta}", hint="e.g. --delta 0.1")
    if len(scores) != len(correct):
        raise CriticError(f"{len(scores)} scores but {len(correct)} correctness flags")
    for i, s in enumerate(scores):
        if not 0.0 <= s <= 1.0:  # also rejects NaN
            raise CriticError(f"calibration item {i}: confidence {s} is not in [0, 1]")

    n_total = len(scores)
    min_labels = min_labels_to_pass(target_agreement, delta)
    rows = threshold_table(scores, correct)
    tested = _candidates(rows, min_labels, max(1, n_total // 100))
    chosen: ThresholdRow | None = None
    for row in tested:
        if not _passes(row.n_agree, row.n_accepted, target_agreement, delta):
            break
        chosen = row

    needed_more: int | None = None
    if chosen is None:
        if n_total < min_labels:
            needed_more = min_labels - n_total
        else:
            totals = [
                _labels_needed(r.agreement, r.n_accepted / n_total, target_agreement, delta)
                for r in tested
            ]
            known = [t for t in totals if t is not None]
            if known:
                needed_more = max(1, min(known) - n_total)

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
        needed_more=needed_more,
    )


# --------------------------------------------------------------------------------------------
# Judgments made elsewhere


def _label_text(value: Any) -> Any:
    """Labels and ids may be written as numbers (0 / 1 / 2); compare them as text."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return str(value)
    return value


class Judgment(BaseModel):
    """One row of a judged or predictions file: the critic's label, its confidence and, for
    calibration, the human label. Give `confidence`, or `probs` over the label set (the
    confidence is then the probability of `label`). Other keys in a row are ignored."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str
    label: str
    confidence: float = Field(ge=0, le=1)
    human_label: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_row(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ValueError("each line must be a JSON object")
        row = dict(data)
        for key in ("id", "label", "human_label"):
            if key in row:
                row[key] = _label_text(row[key])
        probs = row.pop("probs", None)
        if probs is not None:
            if "confidence" in row:
                raise ValueError("give either 'confidence' or 'probs', not both")
            if not isinstance(probs, dict) or not probs:
                raise ValueError("'probs' must be an object mapping each label to its probability")
            probs = {str(_label_text(k)): v for k, v in probs.items()}
            for label, p in probs.items():
                if isinstance(p, bool) or not isinstance(p, int | float) or not 0 <= p <= 1:
                    raise ValueError(f"probs[{label!r}] must be a number in [0, 1], got {p!r}")
            if sum(probs.values()) > 1 + 1e-6:
                raise ValueError(f"'probs' sum to {sum(probs.values()):.4g}, more than 1")
            label = row.get("label")
            if label not in probs:
                raise ValueError(f"label {label!r} is not a key of 'probs'")
            row["confidence"] = float(probs[label])
        elif "confidence" not in row:
            raise ValueError("each row needs 'confidence' (a number in [0, 1]) or 'probs'")
        return row

    @property
    def correct(self) -> bool:
        """Whether the critic's label agrees with the human label (which must be present)."""
        if self.human_label is None:
            raise CriticError(f"item {self.id!r} has no human_label")
        return self.label == self.human_label


def load_judgments(path: str | Path, *, require_human_label: bool = True) -> list[Judgment]:
    """Read a JSONL file of judgments made elsewhere.

    Rows are `{"id", "label", "confidence"}` or `{"id", "label", "probs": {label: p}}`, plus
    `"human_label"` in calibration files (required unless `require_human_label` is False, as for
    a predictions file to route). Errors name FILE:LINE.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read: {exc}") from None
    judgments: list[Judgment] = []
    first_line: dict[str, int] = {}
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{where}: invalid JSON: {exc.msg} (column {exc.colno})") from None
        try:
            judgment = Judgment.model_validate(data)
        except ValidationError as exc:
            raise InputError(f"{where}: {_describe(exc)}") from None
        if require_human_label and judgment.human_label is None:
            raise InputError(
                f"{where}: no 'human_label'",
                hint="calibration needs the human decision for every row",
            )
        if judgment.id in first_line:
            raise InputError(
                f"{where}: id {judgment.id!r} already used on line {first_line[judgment.id]}"
            )
        first_line[judgment.id] = lineno
        judgments.append(judgment)
    if not judgments:
        raise InputError(f"{path}: no rows")
    return judgments


def _describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


# --------------------------------------------------------------------------------------------
# Estimating what shipped


@dataclass(frozen=True)
class QualityEstimate:
    """Agreement of auto-accepted labels with humans, estimated from the audit sample."""

    n_audited: int
    n_agree: int
    agreement: float | None
    lower: float
    upper: float
    confidence: float

    @property
    def summary(self) -> str:
        if self.agreement is None:
            return "no audited items yet: route with an audit rate (--audit-rate) and review them"
        return (
            f"auto-accepted labels agree with humans {self.agreement:.1%} of the time "
            f"({_pct(self.confidence)} CI {self.lower:.1%}–{self.upper:.1%}, "
            f"{self.n_agree} of {self.n_audited} audited items)"
        )


def estimate_accepted_quality(
    audit_correct: Sequence[bool], confidence: float = 0.95
) -> QualityEstimate:
    """Estimate the agreement of auto-accepted labels from human decisions on the audit sample.

    The audit sample is a seeded uniform random share of the would-be-accepted items, so its
    agreement rate is an unbiased estimate for all of them; the interval is exact
    (Clopper–Pearson, two-sided at the given confidence).
    """
    if not 0.0 < confidence < 1.0:
        raise UsageError(f"confidence must be between 0 and 1, got {confidence}")
    n = len(audit_correct)
    k = sum(1 for ok in audit_correct if ok)
    lo, hi = clopper_pearson(k, n, 1.0 - confidence)
    return QualityEstimate(n, k, k / n if n else None, lo, hi, confidence)
