"""The Dawid–Skene label model: it recovers known confusion matrices, uses gold as anchors, and
says where it departs from the majority vote."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adjudication import REJECTED
from adjudication.errors import AgreementError
from adjudication.labelmodel import expected_correct, fit, majority, posterior_without


def simulate(
    confusions: dict[str, list[list[float]]],
    priors: list[float],
    items: int,
    seed: int,
    per_item: int | None = None,
) -> tuple[dict[str, dict[str, str]], dict[str, str]]:
    """Ratings drawn from known confusion matrices (rows: true class, columns: given label)."""
    rng = random.Random(seed)
    labels = [f"l{c}" for c in range(len(priors))]
    ratings: dict[str, dict[str, str]] = {}
    truth: dict[str, str] = {}
    raters = sorted(confusions)
    for n in range(items):
        c = rng.choices(range(len(priors)), priors)[0]
        truth[f"i{n}"] = labels[c]
        chosen = raters if per_item is None else rng.sample(raters, per_item)
        ratings[f"i{n}"] = {
            r: labels[rng.choices(range(len(priors)), confusions[r][c])[0]] for r in chosen
        }
    return ratings, truth


def _row(accuracy: float, spread: list[float], c: int) -> list[float]:
    """A confusion row: `accuracy` on the diagonal, the rest in the proportions of `spread`."""
    rest = [w for i, w in enumerate(spread) if i != c]
    total = sum(rest)
    others = iter(rest)
    return [
        accuracy if i == c else (1 - accuracy) * next(others) / total for i in range(len(spread))
    ]


@st.composite
def teams(draw: st.DrawFn) -> tuple[dict[str, list[list[float]]], list[float], int]:
    k = draw(st.integers(2, 3))
    priors = draw(st.lists(st.floats(0.25, 1.0), min_size=k, max_size=k))
    priors = [p / sum(priors) for p in priors]
    # Few, weak raters leave 3,000 items' estimates loose (the priors trade off against each
    # rater's bias; four raters of 0.75 on two labels missed a prior by 0.05): four or more
    # raters, each right at least 75% of the time.
    raters = draw(st.integers(4, 5))
    confusions = {}
    for j in range(raters):
        spread = draw(st.lists(st.floats(0.2, 1.0), min_size=k, max_size=k))
        confusions[f"r{j}"] = [_row(draw(st.floats(0.75, 0.95)), spread, c) for c in range(k)]
    return confusions, priors, draw(st.integers(0, 10_000))


@settings(
    max_examples=20, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(teams())
def test_recovers_known_confusion_matrices(
    team: tuple[dict[str, list[list[float]]], list[float], int],
) -> None:
    """Fitted without the truth, the model finds each rater's confusion matrix and the class
    priors as the simulated data show them (the truth known): the sample's own matrices, so
    what is tested is the estimator, not the luck of the draw."""
    confusions, priors, seed = team
    ratings, truth = simulate(confusions, priors, items=3000, seed=seed)
    model = fit(ratings)
    labels = [f"l{c}" for c in range(len(priors))]
    assert model.converged
    shares = Counter(truth.values())
    for label in labels:
        assert model.priors[label] == pytest.approx(shares[label] / len(truth), abs=0.03)
    for rater in confusions:
        seen = Counter((truth[item], unit[rater]) for item, unit in ratings.items())
        fitted = model.raters[rater]
        for true in labels:
            row = sum(seen[true, answer] for answer in labels)
            for answer in labels:
                assert fitted.confusion[true][answer] == pytest.approx(
                    seen[true, answer] / row, abs=0.05
                ), (rater, true, answer)
        right = sum(seen[label, label] for label in labels) / len(truth)
        assert fitted.accuracy == pytest.approx(right, abs=0.03)


def test_the_model_outvotes_two_careless_raters_with_a_careful_one() -> None:
    careful = [[0.98, 0.02], [0.02, 0.98]]
    careless = [[0.6, 0.4], [0.4, 0.6]]
    confusions = {"ann": careful, "bob": careless, "cy": careless}
    ratings, truth = simulate(confusions, [0.5, 0.5], items=2000, seed=3)
    model = fit(ratings)
    outvoted = [item for item, unit in ratings.items() if unit["bob"] == unit["cy"] != unit["ann"]]
    assert len(outvoted) > 100
    for item in outvoted:
        fitted = model.items[item]
        assert fitted.label == ratings[item]["ann"]
        assert fitted.majority == ratings[item]["bob"]
        assert fitted.disagrees_with_majority
    by_model = sum(model.items[i].label == truth[i] for i in ratings) / len(ratings)
    by_vote = sum(majority(list(u.values())) == truth[i] for i, u in ratings.items()) / len(ratings)
    assert by_model > by_vote + 0.05


def test_gold_items_anchor_the_model_against_raters_who_swap_labels() -> None:
    swapped = [[0.1, 0.9], [0.9, 0.1]]
    confusions = {"ann": swapped, "bob": swapped, "cy": swapped}
    ratings, truth = simulate(confusions, [0.5, 0.5], items=1000, seed=5)
    # Without gold the model believes the raters: most of its labels are wrong.
    alone = fit(ratings)
    assert sum(alone.items[i].label == truth[i] for i in ratings) / len(ratings) < 0.2
    gold = {item: truth[item] for item in list(ratings)[:100]}
    anchored = fit(ratings, gold=gold)
    assert sum(anchored.items[i].label == truth[i] for i in ratings) / len(ratings) > 0.9
    assert anchored.raters["ann"].accuracy < 0.2
    for item, label in gold.items():
        fitted = anchored.items[item]
        assert (fitted.label, fitted.probability, fitted.gold) == (label, 1.0, True)
    assert not anchored.items[list(ratings)[200]].gold


def test_fits_are_deterministic_and_ordered_by_the_given_classes() -> None:
    ratings = {
        "x": {"ann": "safe", "bob": "unsafe"},
        "y": {"ann": "safe", "bob": "safe", "cy": REJECTED},
        "z": {"cy": "unsafe"},
    }
    first = fit(ratings, classes=["unsafe", "safe"])
    assert first == fit(ratings, classes=["unsafe", "safe"])
    assert first.classes == ("unsafe", "safe", REJECTED)  # a rejection is a class of its own
    assert list(first.items["x"].posterior) == ["unsafe", "safe", REJECTED]
    assert first.items["x"].majority is None  # one each: no majority
    assert not first.items["x"].disagrees_with_majority
    assert first.items["y"].majority == "safe"
    assert first.raters["cy"].ratings == 2
    assert sum(first.items["y"].posterior.values()) == pytest.approx(1.0)


def test_expected_correct_and_the_leave_one_out_posterior() -> None:
    ratings = {"x": {"ann": "a", "bob": "a"}, "y": {"ann": "b"}, "g": {"ann": "b", "bob": "a"}}
    model = fit(ratings, gold={"g": "a"})
    expected, counted = expected_correct(model, ratings, "ann")
    # x (shared) and g (gold, where ann is wrong) count; y only ann rated.
    assert counted == 2
    assert expected == pytest.approx(model.items["x"].posterior["a"])
    without = posterior_without(model, ratings["x"], "ann")
    assert without is not None and without["a"] > 0.5
    assert posterior_without(model, ratings["y"], "ann") is None


def test_bad_input_is_an_agreement_error() -> None:
    with pytest.raises(AgreementError, match="at least one rated item"):
        fit({"x": {}})
    with pytest.raises(AgreementError, match="must be positive"):
        fit({"x": {"ann": "a"}}, shrinkage=0)
