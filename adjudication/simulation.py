"""A simulated review team over a queue whose true labels are known, for tests and benchmarks.

Each reviewer answers right with their accuracy and otherwise picks another label uniformly, or,
as a rubber-stamper (`accuracy=None`), gives the critic's label; times are log-normal around the
reviewer's median. Gold items are a `gold_rate` share of the items, each decided by every
reviewer (as a queue hands gold to all its reviewers); every other item goes to `overlap`
reviewers drawn at random. Decisions come out in the order they would be made; `play` makes
them in a real queue.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .models import REJECTED, Action, NewTask
from .raters import Judgment

if TYPE_CHECKING:
    from .store import Store


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


def play(store: Store, queue: str, sim: SimulatedQueue) -> None:
    """Make a simulated team's decisions in a real queue, through `claim` and `decide`.

    Each item is enqueued (with the critic's label as its draft) and decided by its reviewers
    before the next one comes, so every claim gets that item. The queue's overlap must be the
    number of reviewers per item, and `sim` must have no gold (gold goes to every reviewer).
    Reviewers who are not users yet are added as members of the queue.
    """
    if sim.gold:
        raise ValueError("play takes a simulation without gold items (gold_rate=0)")
    known = {u.name for u in store.users()}
    names = list(dict.fromkeys(j.reviewer for j in sim.judgments))
    for name in names:
        if name not in known:
            store.add_user(name)
    store.add_members(queue, names)
    enqueued: set[str] = set()
    for j in sim.judgments:
        if j.item_id not in enqueued:
            enqueued.add(j.item_id)
            store.enqueue(queue, [NewTask(item_id=j.item_id, draft_label=sim.critic[j.item_id])])
        claim = store.claim(queue, j.reviewer, kind="review")
        if claim is None or claim.task.item_id != j.item_id:
            raise ValueError(f"{j.reviewer} was not handed {j.item_id}: is the overlap right?")
        if j.rating is None:
            store.decide(claim.token, "escalate", seconds=j.seconds)
        elif j.rating == REJECTED:
            store.decide(claim.token, "reject", seconds=j.seconds)
        else:
            action: Action = "accept" if j.rating == sim.critic[j.item_id] else "edit"
            store.decide(claim.token, action, label=j.rating, seconds=j.seconds)
