"""Inter-rater agreement: pure functions over ratings keyed by item id.

Ratings are `{item_id: {rater: label}}`; a rater absent from an item, or a `None` label, is a
missing rating. Labels are compared for equality (nominal), or placed on a scale for the ordinal
and interval forms of Krippendorff's alpha.

Where a statistic is undefined because the raters show no variation at all (everyone used one
label), the functions return NaN, as scikit-learn does; where the input cannot carry the
statistic at all (no items, unequal rater counts for Fleiss) they raise `AgreementError`. The
summaries built on them (`summarize`, `report`, ...) turn both into None.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import Literal

from .errors import AgreementError

Label = str | int | float
Ratings = Mapping[str, Mapping[str, Label | None]]
Level = Literal["nominal", "ordinal", "interval"]


def _units(ratings: Ratings) -> list[list[Label]]:
    return [[v for v in unit.values() if v is not None] for unit in ratings.values()]


def item_agreement(labels: Sequence[Label]) -> float | None:
    """Share of rater pairs on one item that gave the same label; None under two labels."""
    m = len(labels)
    if m < 2:
        return None
    same = sum(n * (n - 1) for n in Counter(labels).values())
    return same / (m * (m - 1))


def percent_agreement(ratings: Ratings) -> float:
    """Mean pairwise agreement over items with at least two ratings (Fleiss' P-bar)."""
    shares = [s for s in map(item_agreement, _units(ratings)) if s is not None]
    if not shares:
        raise AgreementError("percent agreement needs at least one item with two ratings")
    return sum(shares) / len(shares)


def cohen_kappa(a: Mapping[str, Label | None], b: Mapping[str, Label | None]) -> float:
    """Cohen's kappa of two raters, over the items both rated.

    Args:
        a: the first rater's labels, keyed by item id.
        b: the second rater's labels, keyed by item id.
    """
    items = [i for i in a.keys() & b.keys() if a[i] is not None and b[i] is not None]
    n = len(items)
    if n == 0:
        raise AgreementError("Cohen's kappa needs at least one item rated by both raters")
    observed = sum(a[i] == b[i] for i in items)
    count_a = Counter(a[i] for i in items)
    count_b = Counter(b[i] for i in items)
    # Kept as integers (scaled by n²) so that "chance agreement is certain" is tested exactly.
    chance = sum(count_a[c] * count_b[c] for c in count_a)
    if chance == n * n:
        return math.nan
    return (observed * n - chance) / (n * n - chance)


def fleiss_kappa(ratings: Ratings) -> float:
    """Fleiss' kappa; every item must carry the same number (two or more) of ratings."""
    units = _units(ratings)
    if not units:
        raise AgreementError("Fleiss' kappa needs at least one item")
    sizes = {len(u) for u in units}
    m = len(units[0])
    if len(sizes) > 1 or m < 2:
        raise AgreementError(
            "Fleiss' kappa needs the same number (two or more) of ratings on every item; "
            f"these items have between {min(sizes)} and {max(sizes)}",
            hint="use krippendorff_alpha, which allows missing ratings",
        )
    totals: Counter[Label] = Counter()
    p_bar = 0.0
    for unit in units:
        counts = Counter(unit)
        totals.update(counts)
        p_bar += (sum(c * c for c in counts.values()) - m) / (m * (m - 1))
    p_bar /= len(units)
    everyone = len(units) * m
    p_e = sum((c / everyone) ** 2 for c in totals.values())
    if math.isclose(p_e, 1.0):
        return math.nan
    return (p_bar - p_e) / (1 - p_e)


def _ordinal_distance(
    order: Sequence[Label], marginals: Mapping[Label, float]
) -> Callable[[Label, Label], float]:
    rank = {v: i for i, v in enumerate(order)}
    cumulative = [0.0]
    for v in order:
        cumulative.append(cumulative[-1] + marginals.get(v, 0.0))

    def distance(c: Label, k: Label) -> float:
        lo, hi = sorted((rank[c], rank[k]))
        between = cumulative[hi + 1] - cumulative[lo]
        return (between - (marginals[c] + marginals[k]) / 2) ** 2

    return distance


def _is_number(value: Label) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _numeric_order(values: Iterable[Label]) -> list[Label] | None:
    values = list(values)
    if not values or not all(map(_is_number, values)):
        return None
    return sorted(values, key=float)


def krippendorff_alpha(
    ratings: Ratings, level: Level = "nominal", order: Sequence[Label] | None = None
) -> float:
    """Krippendorff's alpha, which allows any number of raters and missing ratings.

    Args:
        ratings: `{item_id: {rater: label}}`; items with fewer than two ratings are unpairable
            and left out, as Krippendorff prescribes.
        level: "nominal", "ordinal" or "interval" (the interval level needs numeric labels).
        order: for "ordinal", the labels from lowest to highest; by default numeric labels are
            sorted by value.
    """
    units = [u for u in _units(ratings) if len(u) >= 2]
    if not units:
        raise AgreementError("Krippendorff's alpha needs at least one item with two ratings")
    coincidences: defaultdict[tuple[Label, Label], float] = defaultdict(float)
    for unit in units:
        counts = Counter(unit)
        for c, n_c in counts.items():
            for k, n_k in counts.items():
                pairs = n_c * (n_k - 1) if c == k else n_c * n_k
                if pairs:
                    coincidences[c, k] += pairs / (len(unit) - 1)
    marginals: defaultdict[Label, float] = defaultdict(float)
    for (c, _), o in coincidences.items():
        marginals[c] += o
    total = sum(marginals.values())

    distance: Callable[[Label, Label], float]
    if level == "nominal":
        distance = _nominal_distance
    elif level == "interval":
        if _numeric_order(marginals) is None:
            raise AgreementError("interval alpha needs numeric labels")
        distance = _interval_distance
    elif level == "ordinal":
        scale = list(order) if order is not None else _numeric_order(marginals)
        if scale is None:
            raise AgreementError(
                "ordinal alpha needs to know the order of the labels",
                hint="pass order=[lowest, ..., highest]",
            )
        unknown = sorted(str(v) for v in marginals.keys() - set(scale))
        if unknown:
            raise AgreementError(f"labels missing from the ordinal order: {', '.join(unknown)}")
        distance = _ordinal_distance(scale, marginals)
    else:
        raise AgreementError(f"unknown level {level!r}; use nominal, ordinal or interval")

    observed = sum(o * distance(c, k) for (c, k), o in coincidences.items())
    expected = sum(
        marginals[c] * marginals[k] * distance(c, k) for c in marginals for k in marginals
    ) / (total - 1)
    if expected == 0:
        return math.nan
    return 1 - observed / expected


def _nominal_distance(c: Label, k: Label) -> float:
    return 0.0 if c == k else 1.0


def _interval_distance(c: Label, k: Label) -> float:
    return (float(c) - float(k)) ** 2


# Summaries: what `critic queue stats` and the web app show. Undefined values are None.


@dataclass(frozen=True)
class Agreement:
    """Agreement among the raters of a set of items."""

    items: int
    """Items with at least two ratings (the ones agreement is measured on)."""
    ratings: int
    percent: float | None
    fleiss_kappa: float | None
    """Over the items that carry the most common number of ratings."""
    alpha_nominal: float | None
    alpha_ordinal: float | None
    """None when the labels have no known order."""


@dataclass(frozen=True)
class PairAgreement:
    a: str
    b: str
    items: int
    percent: float | None
    kappa: float | None


@dataclass(frozen=True)
class ReviewerAgreement:
    reviewer: str
    items: int
    with_others: float | None
    """Share of this reviewer's pairings with co-reviewers on the same item that agree."""
    with_final: float | None
    """Share of this reviewer's labels that match what finally shipped."""
    with_critic: float | None
    """Share of this reviewer's labels that match the critic's draft label."""


@dataclass(frozen=True)
class AgreementReport:
    overall: Agreement
    by_principle: dict[str, Agreement]
    by_reviewer: dict[str, ReviewerAgreement]
    pairs: dict[tuple[str, str], PairAgreement]
    critic_vs_human: PairAgreement


def _defined(compute: Callable[[], float]) -> float | None:
    try:
        value = compute()
    except AgreementError:
        return None
    return None if math.isnan(value) else value


def summarize(ratings: Ratings, *, order: Sequence[Label] | None = None) -> Agreement:
    """Percent agreement, Fleiss' kappa and Krippendorff's alpha for one set of ratings.

    Args:
        ratings: `{item_id: {rater: label}}`.
        order: the labels from lowest to highest, for ordinal alpha. Without it, numeric labels
            are put in order of value. Labels off the scale (such as a rejection marker) count
            as missing for ordinal alpha; with no scale at all it is None.
    """
    units = {
        item: {r: v for r, v in unit.items() if v is not None} for item, unit in ratings.items()
    }
    paired = {item: unit for item, unit in units.items() if len(unit) >= 2}
    sizes = Counter(len(unit) for unit in paired.values())
    usual = max(sizes, key=lambda size: (sizes[size], size)) if sizes else 0
    complete = {item: unit for item, unit in paired.items() if len(unit) == usual}
    if order is None:
        numbers = {v for unit in paired.values() for v in unit.values() if _is_number(v)}
        scale = _numeric_order(numbers)
    else:
        scale = list(order)
    ordinal: float | None = None
    if scale is not None:
        known = set(scale)
        on_scale = {i: {r: v for r, v in u.items() if v in known} for i, u in paired.items()}
        ordinal = _defined(lambda: krippendorff_alpha(on_scale, "ordinal", scale))
    return Agreement(
        items=len(paired),
        ratings=sum(len(unit) for unit in units.values()),
        percent=_defined(lambda: percent_agreement(paired)),
        fleiss_kappa=_defined(lambda: fleiss_kappa(complete)),
        alpha_nominal=_defined(lambda: krippendorff_alpha(paired)),
        alpha_ordinal=ordinal,
    )


def versus(
    a: Mapping[str, Label | None], b: Mapping[str, Label | None], names: tuple[str, str]
) -> PairAgreement:
    """Percent agreement and Cohen's kappa of two label sources over the items both have."""
    both = [i for i in a.keys() & b.keys() if a[i] is not None and b[i] is not None]
    percent = sum(a[i] == b[i] for i in both) / len(both) if both else None
    return PairAgreement(
        a=names[0],
        b=names[1],
        items=len(both),
        percent=percent,
        kappa=_defined(lambda: cohen_kappa(a, b)),
    )


def _by_rater(ratings: Ratings) -> dict[str, dict[str, Label]]:
    raters: defaultdict[str, dict[str, Label]] = defaultdict(dict)
    for item, unit in ratings.items():
        for rater, label in unit.items():
            if label is not None:
                raters[rater][item] = label
    return dict(raters)


def pairwise(ratings: Ratings) -> dict[tuple[str, str], PairAgreement]:
    """Cohen's kappa and percent agreement for every pair of raters who share an item."""
    raters = _by_rater(ratings)
    pairs = {}
    for a, b in combinations(sorted(raters), 2):
        if raters[a].keys() & raters[b].keys():
            pairs[a, b] = versus(raters[a], raters[b], (a, b))
    return pairs


def by_group(
    ratings: Ratings,
    groups: Mapping[str, Iterable[str]],
    *,
    order: Sequence[Label] | None = None,
) -> dict[str, Agreement]:
    """`summarize` per group, such as per cited principle.

    Args:
        ratings: `{item_id: {rater: label}}`.
        groups: the groups each item belongs to, keyed by item id (an item may be in several).
        order: as for `summarize`.
    """
    members: defaultdict[str, dict[str, Mapping[str, Label | None]]] = defaultdict(dict)
    for item, unit in ratings.items():
        for group in groups.get(item, ()):
            members[group][item] = unit
    return {group: summarize(members[group], order=order) for group in sorted(members)}


def _share(hits: int, total: int) -> float | None:
    return hits / total if total else None


def by_reviewer(
    ratings: Ratings,
    *,
    final: Mapping[str, Label | None] | None = None,
    critic: Mapping[str, Label | None] | None = None,
) -> dict[str, ReviewerAgreement]:
    """Each rater's agreement with co-raters, with the shipped label and with the critic."""
    final = final or {}
    critic = critic or {}
    result = {}
    for rater, labels in sorted(_by_rater(ratings).items()):
        agree = pairs = 0
        for item, label in labels.items():
            others = [v for r, v in ratings[item].items() if r != rater and v is not None]
            pairs += len(others)
            agree += sum(v == label for v in others)
        with_final = [labels[i] == final[i] for i in labels if final.get(i) is not None]
        with_critic = [labels[i] == critic[i] for i in labels if critic.get(i) is not None]
        result[rater] = ReviewerAgreement(
            reviewer=rater,
            items=len(labels),
            with_others=_share(agree, pairs),
            with_final=_share(sum(with_final), len(with_final)),
            with_critic=_share(sum(with_critic), len(with_critic)),
        )
    return result


def report(
    ratings: Ratings,
    *,
    groups: Mapping[str, Iterable[str]],
    critic: Mapping[str, Label | None],
    final: Mapping[str, Label | None],
    order: Sequence[Label] | None = None,
) -> AgreementReport:
    """Everything a queue's agreement page shows.

    Args:
        ratings: reviewers' labels, `{item_id: {reviewer: label}}`.
        groups: principle ids cited per item.
        critic: the critic's draft label per item.
        final: the label that ships per decided item (human or adjudicated).
        order: the label order for ordinal alpha, if the labels have one.
    """
    return AgreementReport(
        overall=summarize(ratings, order=order),
        by_principle=by_group(ratings, groups, order=order),
        by_reviewer=by_reviewer(ratings, final=final, critic=critic),
        pairs=pairwise(ratings),
        critic_vs_human=versus(critic, final, ("critic", "human")),
    )
