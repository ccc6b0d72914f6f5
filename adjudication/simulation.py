"""A simulated review team over a queue whose true labels are known, for tests and benchmarks.

Each reviewer answers right with their accuracy and otherwise picks another label uniformly, or,
as a rubber-stamper (`accuracy=None`), gives the critic's label; times are log-normal around the
reviewer's median. Gold items are a `gold_rate` share of the items, each decided by every
reviewer (as a queue hands gold to all its reviewers); every other item goes to `overlap`
reviewers drawn at random. Decisions come out in the order they would be made.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from .raters import Judgment


@dataclass(frozen=True)
class SimulatedReviewer:
    name: str
    accuracy: float | None
    """P(right answer); None for a reviewer who gives the critic's label every time."""
    median_seconds: float = 25.0


@dataclass(frozen=True)
class SimulatedQueue:
    truth: dict[str, str]
    critic: dict[str, str]
    gold: dict[str, str]
    judgments: tuple[Judgment, ...]
    """Oldest first."""


def _answer(rng: random.Random, truth: str, accuracy: float, labels: Sequence[str]) -> str:
    if rng.random() < accuracy:
        return truth
    return rng.choice([label for label in labels if label != truth])


def simulate_team(
    items: int,
    reviewers: Sequence[SimulatedReviewer],
    *,
    labels: Sequence[str] = ("a", "b", "c"),
    priors: Sequence[float] | None = None,
    overlap: int = 3,
    critic_accuracy: float = 0.8,
    gold_rate: float = 0.05,
    seed: int = 0,
) -> SimulatedQueue:
    """Simulate `items` items decided by `reviewers` (see the module's docstring)."""
    if not 1 <= overlap <= len(reviewers):
        raise ValueError(f"overlap must be 1 to {len(reviewers)}, not {overlap}")
    rng = random.Random(seed)
    weights = list(priors) if priors is not None else [1.0] * len(labels)
    truth: dict[str, str] = {}
    critic: dict[str, str] = {}
    gold: dict[str, str] = {}
    judgments: list[Judgment] = []
    for n in range(items):
        item = f"item-{n}"
        truth[item] = rng.choices(list(labels), weights)[0]
        critic[item] = _answer(rng, truth[item], critic_accuracy, labels)
        if rng.random() < gold_rate:
            gold[item] = truth[item]
            team = list(reviewers)
            rng.shuffle(team)
        else:
            team = rng.sample(list(reviewers), overlap)
        for r in team:
            if r.accuracy is None:
                given = critic[item]
            else:
                given = _answer(rng, truth[item], r.accuracy, labels)
            seconds = r.median_seconds * math.exp(rng.gauss(0.0, 0.4))
            judgments.append(
                Judgment(item, r.name, "review", given, critic[item], seconds, latest=True)
            )
    return SimulatedQueue(truth, critic, gold, tuple(judgments))
