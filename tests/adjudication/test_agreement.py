"""Agreement statistics against published worked examples, a real 3-annotator set, and laws."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from adjudication import AgreementError, Store
from adjudication.agreement import (
    Label,
    by_group,
    by_reviewer,
    cohen_kappa,
    fleiss_kappa,
    item_agreement,
    krippendorff_alpha,
    pairwise,
    percent_agreement,
    summarize,
)

PANDALM = Path(__file__).resolve().parents[3] / "shared" / "data" / "pandalm" / "testset.jsonl"


def from_columns(**raters: list[Label | None]) -> dict[str, dict[str, Label | None]]:
    """`{item: {rater: label}}` from one list per rater (None = that rater skipped the item)."""
    n = len(next(iter(raters.values())))
    return {f"u{i + 1}": {r: labels[i] for r, labels in raters.items()} for i in range(n)}


def from_counts(table: list[list[int]], categories: list[str]) -> dict[str, dict[str, Label]]:
    """Fleiss-style count rows (raters per category) turned into per-rater ratings."""
    ratings = {}
    for i, row in enumerate(table):
        labels = [c for c, n in zip(categories, row, strict=True) for _ in range(n)]
        ratings[f"s{i + 1}"] = {f"rater{j}": label for j, label in enumerate(labels)}
    return ratings


# -- published worked examples ----------------------------------------------------------------


def test_cohen_kappa_matches_the_textbook_two_by_two_example() -> None:
    # Wikipedia, "Cohen's kappa", worked example: 50 grant proposals, two readers.
    # yes/yes 20, A yes & B no 5, A no & B yes 10, no/no 15: p_o = 0.7, p_e = 0.5, kappa = 0.4.
    cells = [("yes", "yes")] * 20 + [("yes", "no")] * 5 + [("no", "yes")] * 10 + [("no", "no")] * 15
    a = {f"p{i}": pair[0] for i, pair in enumerate(cells)}
    b = {f"p{i}": pair[1] for i, pair in enumerate(cells)}
    assert cohen_kappa(a, b) == pytest.approx(0.4)


def test_fleiss_kappa_matches_the_published_fourteen_rater_table() -> None:
    # Wikipedia, "Fleiss' kappa", worked example: 10 subjects, 14 raters, 5 categories;
    # P-bar = 0.378, P-e = 0.213, kappa = 0.210.
    table = [
        [0, 0, 0, 0, 14],
        [0, 2, 6, 4, 2],
        [0, 0, 3, 5, 6],
        [0, 3, 9, 2, 0],
        [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0],
        [3, 2, 6, 3, 0],
        [2, 5, 3, 2, 2],
        [6, 5, 2, 1, 0],
        [0, 2, 2, 3, 7],
    ]
    ratings = from_counts(table, ["1", "2", "3", "4", "5"])
    assert percent_agreement(ratings) == pytest.approx(0.378, abs=5e-4)
    assert fleiss_kappa(ratings) == pytest.approx(0.210, abs=5e-4)


# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: four observers,
# twelve units, values 1-5, with missing data. Published: nominal 0.743, ordinal 0.815,
# interval 0.849.
KRIPPENDORFF_C = from_columns(
    A=[1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
    B=[1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
    C=[None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
    D=[1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
)


@pytest.mark.parametrize(
    ("level", "published"), [("nominal", 0.743), ("ordinal", 0.815), ("interval", 0.849)]
)
def test_krippendorff_alpha_matches_the_worked_example_with_missing_data(
    level: str, published: float
) -> None:
    alpha = krippendorff_alpha(KRIPPENDORFF_C, level)  # type: ignore[arg-type]
    assert alpha == pytest.approx(published, abs=5e-4)


def test_krippendorff_alpha_matches_the_two_observer_binary_example() -> None:
    # Krippendorff (2011), section A: two observers, ten units, binary; alpha = 0.095.
    ratings = from_columns(A=[0, 1, 0, 0, 0, 0, 0, 0, 1, 0], B=[1, 1, 1, 0, 0, 1, 0, 0, 0, 0])
    assert krippendorff_alpha(ratings) == pytest.approx(0.095, abs=5e-4)


def test_ordinal_alpha_uses_the_given_order_for_text_labels() -> None:
    words = {1: "none", 2: "low", 3: "mid", 4: "high", 5: "max"}
    as_text = {
        item: {r: None if v is None else words[int(v)] for r, v in unit.items()}
        for item, unit in KRIPPENDORFF_C.items()
    }
    order = ["none", "low", "mid", "high", "max"]
    assert krippendorff_alpha(as_text, "ordinal", order) == pytest.approx(0.815, abs=5e-4)
    with pytest.raises(AgreementError, match="order of the labels"):
        krippendorff_alpha(as_text, "ordinal")
    with pytest.raises(AgreementError, match="missing from the ordinal order: none"):
        krippendorff_alpha(as_text, "ordinal", order[1:])


# -- edge cases -------------------------------------------------------------------------------


def test_statistics_without_variation_are_nan_and_summaries_none() -> None:
    same = from_columns(a=["x", "x", "x"], b=["x", "x", "x"])
    assert math.isnan(cohen_kappa({"i": "x", "j": "x"}, {"i": "x", "j": "x"}))
    assert math.isnan(krippendorff_alpha(same))
    assert math.isnan(fleiss_kappa(same))
    summary = summarize(same)
    assert (summary.percent, summary.alpha_nominal, summary.fleiss_kappa) == (1.0, None, None)


def test_inputs_that_cannot_carry_a_statistic_raise_agreement_error() -> None:
    with pytest.raises(AgreementError, match="same number"):
        fleiss_kappa(from_columns(a=["x", "y"], b=["x", None], c=["y", "y"]))
    with pytest.raises(AgreementError, match="two ratings"):
        krippendorff_alpha({"only": {"a": "x"}})
    with pytest.raises(AgreementError, match="rated by both"):
        cohen_kappa({"i": "x"}, {"j": "x"})


def test_summaries_group_by_principle_and_reviewer() -> None:
    ratings = from_columns(ann=["x", "x", "y", "y"], bob=["x", "y", "y", None])
    groups = {"u1": ["H1"], "u2": ["H1", "H2"], "u3": ["H2"], "u4": ["H2"]}
    per_principle = by_group(ratings, groups)
    assert per_principle["H1"].percent == pytest.approx(0.5)
    assert per_principle["H2"].items == 2  # u4 has one rating only
    reviewers = by_reviewer(ratings, final={"u1": "x", "u2": "y"}, critic={"u1": "x", "u2": "x"})
    assert reviewers["ann"].items == 4
    assert reviewers["ann"].with_others == pytest.approx(2 / 3)
    assert reviewers["ann"].with_final == pytest.approx(1 / 2)
    assert reviewers["bob"].with_critic == pytest.approx(1 / 2)
    assert pairwise(ratings)["ann", "bob"].items == 3


# -- laws that must hold for any ratings ------------------------------------------------------

complete_tables = st.integers(min_value=2, max_value=6).flatmap(
    lambda raters: st.lists(
        st.lists(st.sampled_from("abcd"), min_size=raters, max_size=raters),
        min_size=2,
        max_size=30,
    )
)


@given(complete_tables)
def test_nominal_alpha_is_fleiss_kappa_with_the_small_sample_correction(
    table: list[list[str]],
) -> None:
    # With no missing data, alpha = kappa + (1 - kappa) / n, n being the number of ratings
    # (Krippendorff's coincidences count each value once, Fleiss' chance term does not).
    ratings = {f"i{i}": {f"r{j}": v for j, v in enumerate(row)} for i, row in enumerate(table)}
    kappa, alpha = fleiss_kappa(ratings), krippendorff_alpha(ratings)
    if math.isnan(kappa):
        assert math.isnan(alpha)
    else:
        n = sum(len(row) for row in table)
        assert alpha == pytest.approx(kappa + (1 - kappa) / n)


@given(complete_tables, st.permutations("abcd"))
def test_nominal_statistics_ignore_what_the_labels_are_called(
    table: list[list[str]], renamed: list[str]
) -> None:
    ratings = {f"i{i}": {f"r{j}": v for j, v in enumerate(row)} for i, row in enumerate(table)}
    rename = dict(zip("abcd", renamed, strict=True))
    relabelled = {i: {r: rename[str(v)] for r, v in unit.items()} for i, unit in ratings.items()}
    for stat in (percent_agreement, fleiss_kappa, krippendorff_alpha):
        before, after = stat(ratings), stat(relabelled)
        assert (math.isnan(before) and math.isnan(after)) or before == pytest.approx(after)


@given(st.lists(st.tuples(st.sampled_from("xyz"), st.sampled_from("xyz")), min_size=1))
def test_cohen_kappa_is_symmetric_and_at_most_one(pairs: list[tuple[str, str]]) -> None:
    a = {f"i{i}": p[0] for i, p in enumerate(pairs)}
    b = {f"i{i}": p[1] for i, p in enumerate(pairs)}
    ab, ba = cohen_kappa(a, b), cohen_kappa(b, a)
    assert (math.isnan(ab) and math.isnan(ba)) or (ab == pytest.approx(ba) and ab <= 1 + 1e-12)


# -- a real data set with three annotators per item -------------------------------------------


@pytest.fixture(scope="module")
def pandalm() -> dict[str, dict[str, Label]]:
    if not PANDALM.exists():
        pytest.skip(f"{PANDALM} is not there (the PandaLM test set is shared data)")
    rows = [json.loads(line) for line in PANDALM.read_text().splitlines() if line.strip()]
    return {
        str(row["idx"]): {f"annotator{j}": label for j, label in enumerate(row["human_labels"])}
        for row in rows
    }


def test_pandalm_fleiss_and_krippendorff_agree_on_complete_data(
    pandalm: Mapping[str, Mapping[str, Label]],
) -> None:
    kappa, alpha = fleiss_kappa(pandalm), krippendorff_alpha(pandalm)
    assert 0.0 < kappa < 1.0
    assert abs(alpha - kappa) < 0.005
    assert alpha == pytest.approx(kappa + (1 - kappa) / (3 * len(pandalm)))


def test_pandalm_percent_agreement_matches_a_count_of_splits(
    pandalm: Mapping[str, Mapping[str, Label]],
) -> None:
    # With three annotators an item is unanimous (all 3 pairs agree), split 2-1 (1 pair of 3)
    # or split three ways (none).
    shapes = Counter(tuple(sorted(Counter(unit.values()).values())) for unit in pandalm.values())
    expected = (shapes[(3,)] + shapes[(1, 2)] / 3) / len(pandalm)
    assert percent_agreement(pandalm) == pytest.approx(expected)
    assert all(item_agreement(list(u.values())) in (0.0, 1 / 3, 1.0) for u in pandalm.values())


def test_pandalm_pairwise_cohen_matches_a_hand_count(
    pandalm: Mapping[str, Mapping[str, Label]],
) -> None:
    first = {item: unit["annotator0"] for item, unit in pandalm.items()}
    second = {item: unit["annotator1"] for item, unit in pandalm.items()}
    n = len(first)
    confusion = Counter((first[i], second[i]) for i in first)
    labels = {label for pair in confusion for label in pair}
    p_o = sum(confusion[label, label] for label in labels) / n
    p_e = sum(
        sum(confusion[label, x] for x in labels) * sum(confusion[x, label] for x in labels)
        for label in labels
    ) / (n * n)
    assert cohen_kappa(first, second) == pytest.approx((p_o - p_e) / (1 - p_e))
    assert pairwise(pandalm)["annotator0", "annotator1"].kappa == pytest.approx(
        cohen_kappa(first, second)
    )


def test_pandalm_agreement_survives_a_trip_through_a_queue(
    store: Store, pandalm: Mapping[str, Mapping[str, Label]]
) -> None:
    sample = dict(list(pandalm.items())[:60])
    store.create_queue("pandalm", overlap=3, labels=["0", "1", "2"])
    for name in ("annotator0", "annotator1", "annotator2"):
        store.add_user(name, queues=["pandalm"])
    store.enqueue("pandalm", [{"item_id": item, "draft_label": "1"} for item in sample])
    for name in ("annotator0", "annotator1", "annotator2"):
        while (claim := store.claim("pandalm", name)) is not None:
            label = str(sample[claim.task.item_id][name])
            store.decide(claim.token, "accept" if label == "1" else "edit", label=label)
    as_text = {i: {r: str(v) for r, v in unit.items()} for i, unit in sample.items()}
    assert store.ratings("pandalm") == as_text
    overall = store.agreement("pandalm").overall
    assert overall.items == 60
    assert overall.fleiss_kappa == pytest.approx(fleiss_kappa(sample))
    assert overall.alpha_nominal == pytest.approx(krippendorff_alpha(sample))
    assert overall.percent == pytest.approx(percent_agreement(sample))


def test_summaries_rank_numeric_labels_and_leave_markers_off_the_scale() -> None:
    scores = from_columns(a=["1", "2", "3", "<rejected>"], b=["1", "3", "3", "<rejected>"])
    summary = summarize(scores)
    assert summary.alpha_ordinal is not None
    assert summary.alpha_nominal is not None
    assert summarize(from_columns(a=["x", "y"], b=["x", "x"])).alpha_ordinal is None
