"""Pairwise items in plain words: what the labels A, B and tie mean to a reviewer, and what a
pairwise draft says (its preference probability and each presentation order's verdict).

Pure functions over a draft as the compare task stores it: `preference` (a, b or tie),
`prob_a` (the probability that Response A is the better one, averaged over both presentation
orders and the principles), `swap_inconsistent`, and `judgments`, one per principle and order
(`order` "ab" showed Response A first, "ba" Response B first; `preferred` is the verdict mapped
back to the item's own A and B; `prob_a` that judgment's probability; `rationale`; `failure`).
Everything here is derived from the draft: in a blind queue it shows only after the pick.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

PAIR_WORDS = {"a": "Response A", "b": "Response B", "tie": "tie"}
"""How a pairwise label reads to a reviewer, whatever its spelling (A, a)."""

ORDER_WORDS = {"ab": "Response A shown first", "ba": "Response B shown first"}


def is_pairwise(labels: Sequence[str] | None) -> bool:
    """A label set that is the pairwise one: A and B, and maybe tie (any case)."""
    folded = {label.casefold() for label in labels or ()}
    return {"a", "b"} <= folded <= {"a", "b", "tie"}


@dataclass(frozen=True)
class Caption:
    """A label as its button reads: the words, and what the label means beyond them."""

    label: str
    words: str
    meaning: str | None


def caption(label: str, meaning: str | None, pairwise: bool) -> Caption:
    """The words for a label's button. In a pairwise set `A` reads "Response A"; a meaning
    that only repeats those words (critic writes "Response A: ...") is trimmed to the rest."""
    if not pairwise or label.casefold() not in PAIR_WORDS:
        return Caption(label, label, meaning or None)
    words = PAIR_WORDS[label.casefold()]
    rest = (meaning or "").strip()
    if rest.casefold().startswith(words.casefold()):
        rest = rest[len(words) :].lstrip(" :-–").strip()
    return Caption(label, words, rest or None)


def captions(
    labels: Sequence[str] | None, meanings: Mapping[str, str] | None
) -> dict[str, Caption]:
    """Every label of a set with its caption."""
    pairwise = is_pairwise(labels)
    return {label: caption(label, (meanings or {}).get(label), pairwise) for label in labels or ()}


def words(label: str | None) -> str:
    """A pairwise verdict in words (`a` -> "Response A"); any other label as it is."""
    if label is None:
        return "none"
    return PAIR_WORDS.get(label.casefold(), label)


@dataclass(frozen=True)
class OrderVerdict:
    principle: str
    order: str
    """How the pair was shown: "Response A shown first" or "Response B shown first"."""
    preferred: str | None
    """In the item's own terms: "Response A", "Response B", "tie"; None without an answer."""
    prob_a: float | None
    rationale: str | None
    failure: str | None

    @property
    def sentence(self) -> str:
        if self.preferred is None:
            return f"{self.principle}, {self.order}: no usable answer ({self.failure or 'failed'})"
        verdict = "calls it a tie" if self.preferred == "tie" else f"prefers {self.preferred}"
        odds = "" if self.prob_a is None else f" (P(Response A better) = {self.prob_a:.2f})"
        return f"{self.principle}, {self.order}: {verdict}{odds}"


@dataclass(frozen=True)
class PairDraft:
    """A pairwise draft in plain words."""

    preferred: str
    """"Response A", "Response B" or "tie"."""
    prob_a: float | None
    summary: str
    """One sentence: the preference and its probability."""
    orders: str | None
    """Whether the two presentation orders agreed, in one sentence."""
    verdicts: tuple[OrderVerdict, ...]
    disagreeing: tuple[str, ...]
    """Principles whose two orders gave different verdicts."""


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def pair_draft(draft: Mapping[str, Any]) -> PairDraft | None:
    """A compare draft in plain words; None for a draft that is not one."""
    preference = draft.get("preference")
    if not isinstance(preference, str) or preference.casefold() not in PAIR_WORDS:
        return None
    preferred = PAIR_WORDS[preference.casefold()]
    prob_a = _float(draft.get("prob_a"))
    verdicts = []
    for j in draft.get("judgments") or ():
        if not isinstance(j, Mapping):
            continue
        choice = j.get("preferred")
        verdicts.append(
            OrderVerdict(
                principle=str(j.get("principle") or "?"),
                order=ORDER_WORDS.get(str(j.get("order")), str(j.get("order") or "?")),
                preferred=words(choice) if isinstance(choice, str) else None,
                prob_a=_float(j.get("prob_a")),
                rationale=j.get("rationale") if isinstance(j.get("rationale"), str) else None,
                failure=str(j["failure"]) if j.get("failure") else None,
            )
        )
    principles = list(dict.fromkeys(v.principle for v in verdicts))
    disagreeing = tuple(
        p
        for p in principles
        if len({v.preferred for v in verdicts if v.principle == p and v.preferred}) > 1
    )
    if draft.get("identical"):
        summary = "The two responses are identical: a tie."
    elif prob_a is None:
        summary = f"The critic's verdict: {preferred}."
    else:
        better = prob_a if preference.casefold() != "b" else 1.0 - prob_a
        over = "averaged over both presentation orders"
        if len(principles) > 1:
            over += f" and {len(principles)} principles"
        if preference.casefold() == "tie":
            summary = (
                f"The critic calls it a tie: the probability that Response A is better is "
                f"{prob_a:.2f} ({over})."
            )
        else:
            summary = (
                f"The critic prefers {preferred}, with probability {better:.2f} that it is "
                f"the better one ({over})."
            )
    orders = None
    if disagreeing:
        orders = (
            "The two presentation orders disagree under "
            f"{', '.join(disagreeing)}: the verdict changed when the responses swapped places."
        )
    elif verdicts and draft.get("swap_inconsistent") is False:
        orders = "Both presentation orders agree."
    return PairDraft(preferred, prob_a, summary, orders, tuple(verdicts), disagreeing)


#: Draft keys a `PairDraft` shows in words (so a page does not list them again as raw JSON).
PAIR_KEYS = frozenset(
    {
        "preference",
        "prob_a",
        "margin",
        "method",
        "swap_inconsistent",
        "judgments",
        "per_principle_prob_a",
        "identical",
    }
)
