"""Exact binomial tails and Clopper–Pearson bounds, in pure Python (no scipy).

Shared by critic (calibration, quality) and the queues (reviewer accuracy): it lives here because
`adjudication` never imports `critic`.

The regularized incomplete beta function is computed by continued fraction in log space; the
binomial tail is an incomplete beta, and one-sided exact bounds solve the tail equation by
bisection.
"""

from __future__ import annotations

import math
from typing import Any


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


def passes(k: int, n: int, target_agreement: float, delta: float) -> bool:
    """Reject H0 'agreement < target' at level delta: the exact p-value P(X >= k | target)."""
    return n > 0 and binomial_sf(k, n, target_agreement) <= delta
