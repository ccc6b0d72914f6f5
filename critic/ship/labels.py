"""One label identity: the constitution's label set, and how every verdict is matched to it.

Drafts store a compare verdict as `a`/`b`/`tie`, a rubric score as a number, and a reviewer picks
from the queue's labels. All of them are matched to the constitution's spelling the same way
(`adjudication.rules.match_label`: exact, else the one label equal ignoring case), in drafts,
decisions, agreement, calibration and export.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from adjudication.rules import match_label


@dataclass(frozen=True)
class LabelSet:
    """A constitution's labels (or rubric scores as text), with what each means."""

    labels: tuple[str, ...]
    descriptions: dict[str, str]
    kind: str

    def spell(self, label: str | None) -> str | None:
        """`label` as the constitution spells it; unknown labels are kept as they are."""
        if label is None:
            return None
        return match_label(label, self.labels) or label

    def same(self, one: str | None, other: str | None) -> bool:
        """Whether two verdicts are the same label (None matches nothing)."""
        return one is not None and other is not None and self.spell(one) == self.spell(other)


#: Reviewer-facing words for a pairwise constitution's labels when it has no description.
PAIRWISE_WORDS = {"a": "Response A", "b": "Response B", "tie": "tie"}


def label_set(content: str | None) -> LabelSet | None:
    """The label set of a stored constitution (its canonical JSON); None without one (a
    critique-and-revise constitution, or no stored content)."""
    if not content:
        return None
    data = json.loads(content)
    task = data.get("task") or {}
    kind = str(task.get("kind") or "")
    if task.get("labels"):
        labels = tuple(str(x["name"]) for x in task["labels"])
        notes = {str(x["name"]): str(x.get("description") or "") for x in task["labels"]}
    elif task.get("levels"):
        labels = tuple(str(x["score"]) for x in task["levels"])
        notes = {str(x["score"]): str(x.get("description") or "") for x in task["levels"]}
    else:
        return None
    if kind == "pairwise":
        notes = {k: f"{PAIRWISE_WORDS.get(k.casefold(), k)}: {v}" if v else
                 PAIRWISE_WORDS.get(k.casefold(), k) for k, v in notes.items()}  # fmt: skip
    return LabelSet(labels, notes, kind)


def preferred(label: str | None) -> str | None:
    """A pairwise verdict as `a`, `b` or `tie` (whatever its spelling); None otherwise."""
    if label is None:
        return None
    folded = label.casefold()
    return folded if folded in ("a", "b", "tie") else None


def same_label(one: str | None, other: str | None, labels: Sequence[str] | None = None) -> bool:
    """Two verdicts match: the same label of `labels` (or equal ignoring case without one)."""
    if one is None or other is None:
        return False
    if labels is None:
        return one.casefold() == other.casefold()
    return (match_label(one, labels) or one) == (match_label(other, labels) or other)
