"""Confidence from signals the engine can measure, never from the model's own claim.

Components, each stored per draft: the probability of the label from label-token logprobs,
agreement across `n` samples, across both presentation orders, across principles and across
critic models, and the number of parse retries. `combine` turns them into the one score that
routing thresholds. Everything here is pure.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Protocol


class TokenLogprobLike(Protocol):
    """One generated token with its log probability and the top alternatives at its position
    (as the backends return it: `critic.backends.base.TokenLogprob`)."""

    @property
    def token(self) -> str: ...

    @property
    def logprob(self) -> float: ...

    @property
    def top(self) -> Mapping[str, float]: ...


# --------------------------------------------------------------------------------------------
# Label-token probabilities


def value_offset(text: str, key: str) -> int | None:
    """The character offset where the value of top-level `key` starts in a JSON object's text.

    The object is scanned key by key, so the same words inside an earlier string (a rationale
    quoting `"label": "x"`) are not mistaken for the key. Returns None when the text is not an
    object or has no such key. The text after the value may be truncated.
    """
    decoder = json.JSONDecoder()
    try:
        i = _skip_ws(text, 0)
        if text[i] != "{":
            return None
        i += 1
        while True:
            i = _skip_ws(text, i)
            if text[i] != '"':
                return None
            name, i = decoder.raw_decode(text, i)
            i = _skip_ws(text, i)
            if text[i] != ":":
                return None
            i = _skip_ws(text, i + 1)
            if name == key:
                return i if i < len(text) else None
            _, i = decoder.raw_decode(text, i)
            i = _skip_ws(text, i)
            if text[i] != ",":
                return None
            i += 1
    except (ValueError, IndexError):
        return None


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


def label_distribution(
    tokens: Sequence[TokenLogprobLike], offset: int, labels: Sequence[str]
) -> dict[str, float] | None:
    """The probability of each label, from the top logprobs of the tokens that spell the value.

    Args:
        tokens: the generated tokens of one sample, in order, each with its top alternatives.
        offset: where the label value starts in the concatenated token texts (see
            `value_offset`); the opening quote of a JSON string, or the first character of a
            bare value such as a rubric score `4`.
        labels: the label set (rubric levels as text: "1", "2", ...).

    How: each label is written as it would appear at `offset` (JSON-quoted when the generated
    value is a string). At the token holding `offset`, every alternative whose text is consistent
    with exactly one label adds its probability to that label. When the token that was generated
    is consistent with several labels (the opening quote, or "harm" for "harmful" / "harmless"),
    the walk moves to the next token, whose alternatives are conditioned on it, multiplying by
    the generated token's probability on the way. The walk ends at the first generated token that
    settles the label. Alternatives consistent with several labels are not followed (their
    continuation is unseen) and drop out in the final renormalisation over the label set.

    Returns None when the value is not one of the labels, the tokens end before it is settled,
    or no probability mass falls on the label set.
    """
    if not labels or offset < 0:
        return None
    start = 0
    first: int | None = None
    for i, tok in enumerate(tokens):
        if start + len(tok.token) > offset:
            first = i
            break
        start += len(tok.token)
    if first is None:
        return None

    quoted = tokens[first].token[offset - start :].startswith('"')
    prefix = tokens[first].token[: offset - start]  # text of the first token before the value
    spelled = {
        label: prefix + (json.dumps(label, ensure_ascii=False) if quoted else label)
        for label in labels
    }

    def consistent(text: str) -> list[str]:
        out = []
        for label, full in spelled.items():
            if full.startswith(text):
                out.append(label)
            elif text.startswith(full) and (quoted or _ends_bare_value(text[len(full) :])):
                out.append(label)  # the token runs on past the value, e.g. `A"}`
        return out

    mass = dict.fromkeys(labels, 0.0)
    context = ""  # generated text from the first token up to the current position
    path_logprob = 0.0
    for tok in tokens[first:]:
        generated = consistent(context + tok.token)
        if not generated:
            return None
        alternatives = dict(tok.top)
        alternatives.setdefault(tok.token, tok.logprob)
        for alt, logprob in alternatives.items():
            if alt == tok.token and len(generated) > 1:
                continue  # followed at the next position instead
            matched = consistent(context + alt)
            if len(matched) == 1:
                mass[matched[0]] += math.exp(path_logprob + logprob)
        if len(generated) == 1:
            break
        context += tok.token
        path_logprob += tok.logprob
    else:
        return None

    return normalise(mass)


def normalise(mass: Mapping[str, float]) -> dict[str, float] | None:
    """The probabilities of the labels renormalised over the label set (mass a judge left on
    other tokens drops out); None when no mass falls on the label set. Judged files use the
    same rule (`critic.judgments`)."""
    total = sum(mass.values())
    if total <= 0.0:
        return None
    return {label: p / total for label, p in mass.items()}


def _ends_bare_value(rest: str) -> bool:
    """Whether text after a bare (unquoted) value ends it: `4,` ends 4 but `45` does not."""
    return not rest or not (rest[0].isalnum() or rest[0] in "._+-")


def average_distributions(
    distributions: Sequence[Mapping[str, float] | None],
) -> dict[str, float] | None:
    """The mean of several label distributions (samples, presentation orders, principles);
    missing ones are skipped. None when all are missing."""
    present = [d for d in distributions if d is not None]
    if not present:
        return None
    labels = list(dict.fromkeys(label for d in present for label in d))
    return {label: sum(d.get(label, 0.0) for d in present) / len(present) for label in labels}


def top_label(distribution: Mapping[str, float]) -> tuple[str, float]:
    """The most probable label and its probability (ties: the first in the mapping)."""
    if not distribution:
        raise ValueError("empty distribution")
    label = max(distribution, key=lambda k: distribution[k])
    return label, distribution[label]


def expected_score(distribution: Mapping[str, float]) -> float:
    """The expected rubric score under a distribution over score levels ("1", "2", ...)."""
    total = sum(distribution.values())
    if total <= 0.0:
        raise ValueError("distribution has no probability mass")
    return sum(float(level) * p for level, p in distribution.items()) / total


# --------------------------------------------------------------------------------------------
# Agreement


def sample_agreement(labels: Sequence[str | None]) -> tuple[str | None, float]:
    """The majority label of several votes and the share of all votes that chose it.

    A missing vote (None: a sample that failed to parse) counts against agreement but never
    wins. Ties go to the label voted first. No votes give (None, 0.0).
    """
    votes = Counter(label for label in labels if label is not None)
    if not votes:
        return None, 0.0
    label, count = votes.most_common(1)[0]  # most_common keeps first-seen order on ties
    return label, count / len(labels)


def critic_agreement(labels_by_critic: Sequence[str | None]) -> tuple[str | None, float]:
    """The majority label across critic models (or principles) and its share of the votes.

    Give the primary critic first: it wins ties. Same vote as `sample_agreement`.
    """
    return sample_agreement(labels_by_critic)


AB_SWAP: Mapping[str, str] = {"A": "B", "B": "A"}


def order_agreement(
    first: str | None, swapped: str | None, swap: Mapping[str, str] = AB_SWAP
) -> tuple[str | None, float]:
    """Agreement of a comparison judged in both presentation orders.

    `first` is the preference with the responses in their original order, `swapped` the
    preference given when they were shown the other way round, as the model wrote it; it is
    mapped back through `swap` (labels not in `swap`, such as a tie, stay as they are). The share
    is 1.0 when both orders agree, 0.5 when they disagree or one failed to parse.
    """
    back = None if swapped is None else swap.get(swapped, swapped)
    return sample_agreement([first, back])


# --------------------------------------------------------------------------------------------
# The combined score

RETRY_FACTOR = 0.8
"""Each parse retry multiplies the confidence by this."""


@dataclass(frozen=True)
class ConfidenceComponents:
    """The measured signals behind one draft's confidence; None where not measured.

    Attributes:
        label_prob: probability of the drafted label from label-token logprobs (averaged over
            samples and orders where there are several).
        sample_share: share of the `n_samples` samples that gave the drafted label.
        n_samples: how many samples were drawn (`n` in one request).
        order_agreement: share of presentation orders agreeing (compare task).
        critic_agreement: share of critic models agreeing.
        principle_agreement: share of principles whose verdicts agree.
        parse_retries: how many re-asks it took to get valid output.
    """

    label_prob: float | None = None
    sample_share: float | None = None
    n_samples: int = 1
    order_agreement: float | None = None
    critic_agreement: float | None = None
    principle_agreement: float | None = None
    parse_retries: int = 0

    def __post_init__(self) -> None:
        for name in (
            "label_prob",
            "sample_share",
            "order_agreement",
            "critic_agreement",
            "principle_agreement",
        ):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if self.n_samples < 1:
            raise ValueError(f"n_samples must be at least 1, got {self.n_samples}")
        if self.parse_retries < 0:
            raise ValueError(f"parse_retries must be at least 0, got {self.parse_retries}")

    def to_dict(self) -> dict[str, float | int | None]:
        # Plain numbers only: no need for asdict's deep copy (it showed in the per-item profile).
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> ConfidenceComponents:
        """Read components back; keys missing (stored by an older version) take defaults."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown confidence components: {', '.join(unknown)}")
        out: dict[str, float | int | None] = {}
        for name, value in data.items():
            if name in ("n_samples", "parse_retries"):
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ValueError(f"{name} must be an integer, got {value!r}")
                out[name] = value
            elif value is None:
                out[name] = None
            elif isinstance(value, int | float) and not isinstance(value, bool):
                out[name] = float(value)
            else:
                raise ValueError(f"{name} must be a number or null, got {value!r}")
        return cls(**out)  # type: ignore[arg-type]


def combine(components: ConfidenceComponents) -> float:
    """The single confidence score in [0, 1] that routing thresholds.

    score = base × order_agreement × critic_agreement × principle_agreement × 0.8^parse_retries

    - base is the label probability when logprobs were measured; otherwise the share of samples
      voting for the label when there were two or more; otherwise 1.0 if any agreement was
      measured, so the agreements alone carry the score; with nothing measured at all it is 0.0,
      so a label no signal vouches for is auto-accepted only if calibration finds even those
      agree with humans often enough.
    - The label probability is preferred to the sample share because it measures the same thing
      (how likely the model is to give this label) without the noise of a handful of draws.
    - Agreements multiply: they are shares of the majority, in [1/k, 1] for k votes, so full
      agreement leaves the base as it is and any disagreement pulls it down (a swap-inconsistent
      comparison or two critics that disagree halve it). Agreement across orders, critics and
      principles is evidence the base cannot see, because a single model can be confidently
      wrong in one order or under one principle.
    - Each parse retry multiplies by 0.8: a model that needed re-asking was struggling with the
      item, but the retried output is valid, so the penalty is mild.

    The guarantee does not rest on this formula: calibration finds a safe threshold for any score
    that is fixed before the calibration data are seen. A score that ranks right from wrong
    better only buys more coverage at the same guarantee.
    """
    c = components
    agreements = [
        a for a in (c.order_agreement, c.critic_agreement, c.principle_agreement) if a is not None
    ]
    if c.label_prob is not None:
        score = c.label_prob
    elif c.sample_share is not None and c.n_samples >= 2:
        score = c.sample_share
    elif agreements:
        score = 1.0
    else:
        return 0.0
    for agreement in agreements:
        score *= agreement
    score *= RETRY_FACTOR**c.parse_retries
    return min(1.0, max(0.0, score))
