"""What reviewers read beside an item: the instructions, the labels with what they mean, the
principles with their examples, for the version of what fed the queue that drafted the item.

The program that fills a queue stores one `Guidelines` per version (`Store.set_guidelines`,
critic: one per constitution hash) and names it on each task (`NewTask.guidelines`). Nothing
here comes from a draft, so a blind queue shows the guidelines before the pick too; which
principles the item cites does come from the draft, and `arrange` takes it only once shown.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field


class _Stored(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GuidelineExample(_Stored):
    """A worked example: the item's text, the label it deserves and why."""

    prompt: str | None = None
    response: str | None = None
    text: str | None = None
    label: str | None = Field(default=None, description="the label (or score, as text)")
    explanation: str | None = None


class GuidelinePrinciple(_Stored):
    id: str = Field(min_length=1, max_length=200)
    text: str
    examples: tuple[GuidelineExample, ...] = ()


class GuidelineLabel(_Stored):
    name: str = Field(min_length=1, max_length=200)
    description: str = ""


class Guidelines(_Stored):
    """One version of the guidelines of a queue (critic: a constitution)."""

    title: str | None = None
    version: str | None = Field(default=None, description="the version reviewers see, e.g. 1.1")
    kind: str | None = Field(
        default=None, description="the task: categorical, rubric, pairwise or revise"
    )
    instructions: str | None = None
    question: str | None = Field(default=None, description="the question the task asks")
    labels: tuple[GuidelineLabel, ...] = ()
    principles: tuple[GuidelinePrinciple, ...] = ()


@dataclass(frozen=True)
class Arranged:
    """Guidelines as a panel shows them: the item's cited principles first."""

    guidelines: Guidelines
    cited: tuple[GuidelinePrinciple, ...]
    """The principles the item cites (none before a blind pick: which ones is the draft's)."""
    others: tuple[GuidelinePrinciple, ...]

    @property
    def examples(self) -> int:
        return sum(len(p.examples) for p in (*self.cited, *self.others))


def arrange(guidelines: Guidelines, cited: Iterable[str]) -> Arranged:
    """Split the principles into those the item cites (in citing order) and the rest."""
    by_id = {p.id: p for p in guidelines.principles}
    first = tuple(by_id[pid] for pid in dict.fromkeys(cited) if pid in by_id)
    chosen = {p.id for p in first}
    rest = tuple(p for p in guidelines.principles if p.id not in chosen)
    return Arranged(guidelines, first, rest)
