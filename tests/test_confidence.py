"""Confidence components: label-token probabilities, agreement, and their combination."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest

from critic.confidence import (
    RETRY_FACTOR,
    ConfidenceComponents,
    average_distributions,
    combine,
    critic_agreement,
    expected_score,
    label_distribution,
    order_agreement,
    sample_agreement,
    top_label,
    value_offset,
)


@dataclass(frozen=True)
class Tok:
    token: str
    logprob: float
    top: dict[str, float] = field(default_factory=dict)


def tok(token: str, **alternatives: float) -> Tok:
    """A generated token with its alternatives given as probabilities (the token's own too)."""
    top = {k: math.log(p) for k, p in alternatives.items()}
    return Tok(token, top.get(token, 0.0), top)


def tokens_for(*toks: Tok) -> tuple[list[Tok], str]:
    return list(toks), "".join(t.token for t in toks)


# --------------------------------------------------------------------------------------------
# value_offset


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        ('{"label": "safe"}', "label", '"safe"}'),
        ('{"rationale": "x", "label":"safe"}', "label", '"safe"}'),
        (
            '{\n  "rationale": "it says \\"label\\": \\"no\\"",\n  "label": "ok"\n}',
            "label",
            '"ok"\n}',
        ),
        ('{"rationale": {"label": "inner"}, "label": "outer"}', "label", '"outer"}'),
        ('{"score": 4}', "score", "4}"),
        ('{"rationale": "r", "label": "sa', "label", '"sa'),
    ],
)
def test_value_offset_finds_the_top_level_value(text: str, key: str, expected: str) -> None:
    offset = value_offset(text, key)
    assert offset is not None
    assert text[offset:] == expected


@pytest.mark.parametrize(
    "text",
    ['{"rationale": "r"}', '{"a": {"label": "x"}}', '["label", "x"]', '{"rationale": "trunc', ""],
)
def test_value_offset_none_without_the_key(text: str) -> None:
    assert value_offset(text, "label") is None


# --------------------------------------------------------------------------------------------
# label_distribution


def test_single_token_labels_after_a_straddling_quote_token() -> None:
    tokens, text = tokens_for(
        tok('{"'),
        tok("label"),
        tok('":'),
        tok(' "'),  # holds the space before the value and its opening quote
        tok("safe", safe=0.7, unsafe=0.2, maybe=0.1),
        tok('"}'),
    )
    dist = label_distribution(tokens, value_offset(text, "label") or -1, ["safe", "unsafe"])
    assert dist == pytest.approx({"safe": 0.7 / 0.9, "unsafe": 0.2 / 0.9})


def test_labels_sharing_a_first_token_walk_to_the_next_position() -> None:
    tokens, text = tokens_for(
        tok('{"label": '),
        tok('"'),
        tok("harm", harm=0.6, safe=0.4),
        tok("less", less=0.75, ful=0.25),
        tok('"}'),
    )
    dist = label_distribution(tokens, text.index('"h'), ["harmful", "harmless", "safe"])
    assert dist == pytest.approx({"harmful": 0.15, "harmless": 0.45, "safe": 0.4})


def test_token_holding_quote_and_value_and_running_past_it() -> None:
    tokens, text = tokens_for(tok('{"preference": '), tok('"A"}', **{'"A"}': 0.8, '"B"}': 0.15}))
    dist = label_distribution(tokens, text.index('"A'), ["A", "B", "tie"])
    assert dist == pytest.approx({"A": 0.8 / 0.95, "B": 0.15 / 0.95, "tie": 0.0})


def test_value_starting_inside_a_token() -> None:
    tokens, text = tokens_for(tok('{"label'), tok('": "un', **{'": "un': 0.3, '": "sa': 0.6}))
    tokens.append(tok('safe"}'))
    dist = label_distribution(tokens, text.index('"un'), ["safe", "unsafe"])
    assert dist == pytest.approx({"safe": 2 / 3, "unsafe": 1 / 3})


def test_bare_rubric_scores() -> None:
    tokens, text = tokens_for(
        tok('{"score": '), tok("4", **{"4": 0.5, "3": 0.3, "5": 0.1, "45": 0.05}), tok("}")
    )
    dist = label_distribution(tokens, text.index("4"), ["1", "2", "3", "4", "5"])
    assert dist is not None
    assert dist == pytest.approx({"1": 0, "2": 0, "3": 1 / 3, "4": 5 / 9, "5": 1 / 9})
    assert expected_score(dist) == pytest.approx(3 * 1 / 3 + 4 * 5 / 9 + 5 / 9)


def test_alternative_shared_by_several_labels_is_not_attributed() -> None:
    # "ne" could start negative or neutral; its continuation is unseen.
    tokens = [tok('"'), tok("pos", pos=0.5, ne=0.3, neg=0.2), tok('"')]
    dist = label_distribution(tokens, 0, ["pos", "negative", "neutral"])
    assert dist == pytest.approx({"pos": 0.5 / 0.7, "negative": 0.2 / 0.7, "neutral": 0.0})


def test_generated_token_missing_from_its_own_top_list_still_counts() -> None:
    tokens = [Tok('"', 0.0), Tok("yes", math.log(0.6), {"no": math.log(0.3)}), Tok('"', 0.0)]
    assert label_distribution(tokens, 0, ["yes", "no"]) == pytest.approx(
        {"yes": 2 / 3, "no": 1 / 3}
    )


@pytest.mark.parametrize(
    ("toks", "offset"),
    [
        ([tok('"'), tok("other"), tok('"')], 0),  # not a label
        ([tok('"'), tok("harm")], 0),  # ends before the label is settled
        ([tok('"'), tok("safe"), tok('"')], 50),  # offset past the text
        ([tok('"'), tok("safe"), tok('"')], -1),
    ],
)
def test_undetermined_distribution_is_none(toks: list[Tok], offset: int) -> None:
    assert label_distribution(toks, offset, ["safe", "harmful", "harmless"]) is None


def test_average_and_top_label() -> None:
    dist = average_distributions([{"A": 0.9, "B": 0.1}, None, {"A": 0.5, "B": 0.3, "tie": 0.2}])
    assert dist == pytest.approx({"A": 0.7, "B": 0.2, "tie": 0.1})
    assert top_label(dist) == ("A", pytest.approx(0.7))
    assert average_distributions([None, None]) is None


# --------------------------------------------------------------------------------------------
# Agreement


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        (["a", "a", "b", "a", "c"], ("a", 0.6)),
        (["b", "a", "a", "b"], ("b", 0.5)),  # tie: the label voted first
        (["a", None, None], ("a", 1 / 3)),  # a failed sample counts against agreement
        ([None, None], (None, 0.0)),
        ([], (None, 0.0)),
    ],
)
def test_sample_agreement(labels: list[str | None], expected: tuple[str | None, float]) -> None:
    assert sample_agreement(labels) == (expected[0], pytest.approx(expected[1]))


def test_critic_agreement_primary_critic_wins_ties() -> None:
    assert critic_agreement(["1", "2"]) == ("1", 0.5)
    assert critic_agreement([None, "2"]) == ("2", 0.5)
    assert critic_agreement(["2", "2", "1"]) == ("2", pytest.approx(2 / 3))


@pytest.mark.parametrize(
    ("first", "swapped", "expected"),
    [
        ("A", "B", ("A", 1.0)),  # B in the swapped order is A in the original order
        ("A", "A", ("A", 0.5)),  # position bias: the verdict followed the position
        ("tie", "tie", ("tie", 1.0)),
        ("A", None, ("A", 0.5)),
        (None, None, (None, 0.0)),
    ],
)
def test_order_agreement_maps_the_swapped_verdict_back(
    first: str | None, swapped: str | None, expected: tuple[str | None, float]
) -> None:
    assert order_agreement(first, swapped) == expected


def test_order_agreement_custom_labels() -> None:
    swap = {"response_1": "response_2", "response_2": "response_1"}
    assert order_agreement("response_2", "response_1", swap) == ("response_2", 1.0)


# --------------------------------------------------------------------------------------------
# Combination


@pytest.mark.parametrize(
    ("components", "expected"),
    [
        (ConfidenceComponents(label_prob=0.9), 0.9),
        (ConfidenceComponents(label_prob=0.9, sample_share=0.2, n_samples=5), 0.9),
        (ConfidenceComponents(sample_share=0.8, n_samples=5), 0.8),
        (ConfidenceComponents(sample_share=1.0, n_samples=1), 0.0),  # one sample says nothing
        (ConfidenceComponents(critic_agreement=1.0), 1.0),
        (ConfidenceComponents(critic_agreement=0.5), 0.5),
        (ConfidenceComponents(label_prob=0.9, order_agreement=0.5), 0.45),
        (
            ConfidenceComponents(
                label_prob=0.8, order_agreement=1.0, critic_agreement=0.5, principle_agreement=0.75
            ),
            0.3,
        ),
        (ConfidenceComponents(label_prob=1.0, parse_retries=2), RETRY_FACTOR**2),
        (ConfidenceComponents(), 0.0),
        (ConfidenceComponents(parse_retries=1), 0.0),
    ],
)
def test_combine(components: ConfidenceComponents, expected: float) -> None:
    assert combine(components) == pytest.approx(expected)


def test_combine_is_monotone_in_every_component() -> None:
    base = ConfidenceComponents(label_prob=0.7, order_agreement=0.5, critic_agreement=0.5)
    for name in ("label_prob", "order_agreement", "critic_agreement"):
        higher = ConfidenceComponents(**{**base.to_dict(), name: 1.0})  # type: ignore[arg-type]
        assert combine(higher) > combine(base)
    more_retries = ConfidenceComponents(**{**base.to_dict(), "parse_retries": 1})  # type: ignore[arg-type]
    assert combine(more_retries) < combine(base)


def test_components_round_trip() -> None:
    c = ConfidenceComponents(label_prob=0.8, sample_share=0.6, n_samples=5, parse_retries=1)
    assert ConfidenceComponents.from_dict(c.to_dict()) == c
    assert ConfidenceComponents.from_dict({"label_prob": 1}) == ConfidenceComponents(label_prob=1.0)


@pytest.mark.parametrize(
    "data",
    [
        {"label_prob": 1.5},
        {"n_samples": 0},
        {"parse_retries": -1},
        {"n_samples": 2.5},
        {"label_prob": "high"},
        {"label_probability": 0.5},
    ],
)
def test_components_reject_bad_values(data: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        ConfidenceComponents.from_dict(data)
