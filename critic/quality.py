"""How good is what shipped: the agreement of auto-accepted labels with humans, estimated.

Two intervals, both from the audit sample (a seeded uniform random share of the would-be-accepted
items, decided by humans):

- exact: Clopper–Pearson on the audited items alone; valid at any sample size.
- PPI++ (prediction-powered inference, Angelopoulos et al., arXiv 2311.01453): also uses the
  critic's confidence on every accepted item. The confidence predicts "the human will agree";
  its mean over all accepted items is corrected by the audit sample's rectifier
  (agreement - lambda * confidence). lambda is tuned to minimise the estimated variance, and
  lambda = 0 is the classical estimate, so the interval is never wider than the classical
  (normal-approximation) interval on the audit sample; both use Student's t quantile and a
  continuity correction of 1/(2n) for the n audited items. It is
  asymptotic (a CLT interval); tests/test_calibration_power.py checks its coverage by
  simulated audits on real judges' files.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

from critic.errors import CriticError, UsageError
from critic.stats import clopper_pearson


def _pct(x: float) -> str:
    return f"{x * 100:.4g}%"


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


def _check_confidence(confidence: float) -> None:
    if not 0.0 < confidence < 1.0:
        raise UsageError(f"confidence must be between 0 and 1, got {confidence}")


def estimate_accepted_quality(
    audit_correct: Sequence[bool], confidence: float = 0.95
) -> QualityEstimate:
    """Estimate the agreement of auto-accepted labels from human decisions on the audit sample.

    The audit sample is a seeded uniform random share of the would-be-accepted items, so its
    agreement rate is an unbiased estimate for all of them; the interval is exact
    (Clopper–Pearson, two-sided at the given confidence).
    """
    _check_confidence(confidence)
    n = len(audit_correct)
    k = sum(1 for ok in audit_correct if ok)
    lo, hi = clopper_pearson(k, n, 1.0 - confidence)
    return QualityEstimate(n, k, k / n if n else None, lo, hi, confidence)


@dataclass(frozen=True)
class PPIEstimate:
    """The PPI++ estimate of agreement and, beside it, the classical one on the same audits."""

    n_audited: int
    n_unlabeled: int
    estimate: float
    lower: float
    upper: float
    classical: float
    classical_lower: float
    classical_upper: float
    lam: float
    effective_labels: float
    confidence: float
    half_width: float
    classical_half_width: float

    @property
    def labels_gained(self) -> float:
        """How many more human labels the classical interval would need to be this narrow."""
        return self.effective_labels - self.n_audited

    @property
    def summary(self) -> str:
        return (
            f"PPI++ ({self.n_unlabeled} accepted items' confidences + {self.n_audited} audits): "
            f"{self.estimate:.1%} ({_pct(self.confidence)} CI {self.lower:.1%}–"
            f"{self.upper:.1%}); classical {self.classical_lower:.1%}–"
            f"{self.classical_upper:.1%}; worth {self.effective_labels:.0f} audits "
            f"({self.labels_gained:+.0f})"
        )


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs)


def _var(xs: Sequence[float]) -> float:
    """Sample variance (n - 1 in the denominator)."""
    m = _mean(xs)
    return sum((x - m) ** 2 for x in xs) / (len(xs) - 1)


def t_quantile(p: float, df: int) -> float:
    """Student's t quantile by the Cornish–Fisher expansion around the normal one (accurate to
    about 1e-3 from 5 degrees of freedom on); a little wider than the normal quantile, which
    keeps small audit samples from under-covering."""
    z = NormalDist().inv_cdf(p)
    v = float(max(df, 1))
    return (
        z
        + (z**3 + z) / (4 * v)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * v**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * v**3)
    )


def ppi_mean(
    audit_correct: Sequence[bool],
    audit_confidence: Sequence[float],
    accepted_confidence: Sequence[float],
    confidence: float = 0.95,
) -> PPIEstimate:
    """PPI++ interval for the agreement of accepted labels (module docstring).

    Args:
        audit_correct: per audited item, whether the critic's label agreed with the human's.
        audit_confidence: the critic's confidence on the same audited items.
        accepted_confidence: the critic's confidence on the accepted items nobody audited.
        confidence: the two-sided confidence of the interval.
    """
    _check_confidence(confidence)
    n, big_n = len(audit_correct), len(accepted_confidence)
    if n != len(audit_confidence):
        raise CriticError(f"{n} audit verdicts but {len(audit_confidence)} confidences")
    if n < 2 or big_n < 2:
        raise UsageError(
            f"PPI++ needs at least 2 audited and 2 unaudited accepted items (got {n} and {big_n})",
            hint="route with an audit rate (--audit-rate) and review the audit sample",
        )
    y = [1.0 if ok else 0.0 for ok in audit_correct]
    f = [float(c) for c in audit_confidence]
    f_unl = [float(c) for c in accepted_confidence]
    var_y, var_f, var_unl = _var(y), _var(f), _var(f_unl)
    my, mf = _mean(y), _mean(f)
    cov = sum((a - my) * (b - mf) for a, b in zip(y, f, strict=True)) / (n - 1)
    # The plug-in variance of the estimate is var(Y - lam f)/n + lam^2 var(f_unl)/N, a convex
    # quadratic in lam; its minimiser, clipped to [0, 1], is never worse than lam = 0.
    denom = var_f + var_unl * n / big_n
    lam = min(1.0, max(0.0, cov / denom)) if denom > 0 else 0.0
    estimate = lam * _mean(f_unl) + my - lam * mf
    variance = (var_y - 2 * lam * cov + lam**2 * var_f) / n + lam**2 * var_unl / big_n
    variance = max(variance, 0.0)
    classical_var = var_y / n
    z = t_quantile(0.5 + confidence / 2, n - 1)
    # The audit term is a count over n: the continuity correction 1/(2n), on both intervals,
    # keeps small audit samples from under-covering as the plain normal interval does.
    correction = 0.5 / n
    half = z * math.sqrt(variance) + correction
    classical_half = z * math.sqrt(classical_var) + correction
    effective = n * classical_var / variance if variance > 0 else float(n)
    return PPIEstimate(
        n_audited=n,
        n_unlabeled=big_n,
        estimate=estimate,
        lower=max(0.0, estimate - half),
        upper=min(1.0, estimate + half),
        classical=my,
        classical_lower=max(0.0, my - classical_half),
        classical_upper=min(1.0, my + classical_half),
        lam=lam,
        effective_labels=max(effective, float(n)),
        confidence=confidence,
        half_width=half,
        classical_half_width=classical_half,
    )
