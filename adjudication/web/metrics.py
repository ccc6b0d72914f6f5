"""Dashboard figures as pure functions over task and decision lines: no database, no clock."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from ..models import DecisionLine, TaskLine
from ..rules import is_gap_note

MIN_RATE_COUNT = 10
MIN_RATE_SECONDS = 600.0
"""A rate per hour is shown only over at least `MIN_RATE_COUNT` events in at least
`MIN_RATE_SECONDS` (ten minutes): three decisions in four seconds are not 2,700 an hour."""


def rate_per_hour(count: int, seconds: float) -> float | None:
    """`count` per hour over `seconds`, or None when the window is too short or too sparse
    to mean anything (see `MIN_RATE_COUNT`, `MIN_RATE_SECONDS`)."""
    if count < MIN_RATE_COUNT or seconds < MIN_RATE_SECONDS:
        return None
    return count / seconds * 3600


@dataclass(frozen=True)
class BurnDown:
    times: tuple[datetime, ...]
    open: tuple[int, ...]
    """Items not yet done (pending or awaiting adjudication) at each time."""
    done_per_hour: float | None
    """Items settled per hour over the last `recent` window (or since the first enqueue, if
    later); None while that is too short or too sparse to give a rate (`rate_per_hour`)."""
    eta_hours: float | None
    """Hours until the queue is empty at that rate."""

    def points(self, width: int = 600, height: int = 160) -> str:
        """SVG polyline points, the first time at x=0 and the most open items at y=0."""
        if len(self.times) < 2:
            return ""
        start, span = self.times[0], (self.times[-1] - self.times[0]).total_seconds() or 1.0
        top = max(self.open) or 1
        return " ".join(
            f"{(t - start).total_seconds() / span * width:.1f},{height - n / top * height:.1f}"
            for t, n in zip(self.times, self.open, strict=True)
        )


def burn_down(
    lines: Sequence[TaskLine],
    now: datetime,
    *,
    steps: int = 48,
    recent: timedelta = timedelta(hours=24),
) -> BurnDown:
    """Open items over time, from the first enqueue to now, and the recent settling rate.

    A done item counts as settled at its last update (its final decision).
    """
    if not lines:
        return BurnDown((), (), None, None)
    start = min(line.created_at for line in lines)
    created = sorted(line.created_at for line in lines)
    settled = sorted(line.updated_at for line in lines if line.state == "done")
    span = max((now - start).total_seconds(), 1.0)
    times = tuple(start + timedelta(seconds=span * i / steps) for i in range(steps + 1))
    counts = []
    c = s = 0
    for t in times:
        while c < len(created) and created[c] <= t:
            c += 1
        while s < len(settled) and settled[s] <= t:
            s += 1
        counts.append(c - s)
    window_start = now - recent
    done_recently = sum(1 for t in settled if t > window_start)
    rate = rate_per_hour(done_recently, min(recent, now - start).total_seconds())
    remaining = len(lines) - len(settled)
    eta = remaining / rate if rate else None
    return BurnDown(times, tuple(counts), rate, eta)


@dataclass(frozen=True)
class PrincipleOverrides:
    principle: str
    items: int
    reviews: int
    """Review decisions (escalations aside) on items that cite the principle."""
    overridden: int
    """Of those, rejections and changed labels."""
    edited: int
    gaps: int
    """Review decisions whose note flags a gap in the constitution (`rules.is_gap_note`, the
    rule `critic constitution stats` counts by)."""

    @property
    def rate(self) -> float | None:
        return self.overridden / self.reviews if self.reviews else None


def overrides_by_principle(
    lines: Iterable[TaskLine], decided: Iterable[DecisionLine]
) -> list[PrincipleOverrides]:
    """How often reviewers overturn the critic, per cited principle, most overturned first."""
    by_item = {line.item_id: line for line in lines}
    items: Counter[str] = Counter()
    for line in by_item.values():
        items.update(set(line.principle_ids))
    reviews: Counter[str] = Counter()
    overridden: Counter[str] = Counter()
    edited: Counter[str] = Counter()
    gaps: Counter[str] = Counter()
    for d in decided:
        task = by_item.get(d.item_id)
        if task is None or d.kind != "review":
            continue
        for principle in set(task.principle_ids):
            gaps[principle] += is_gap_note(d.note)
            if d.action == "escalate":
                continue
            reviews[principle] += 1
            overridden[principle] += d.action == "reject" or d.label != task.draft_label
            edited[principle] += d.edited
    result = [
        PrincipleOverrides(p, items[p], reviews[p], overridden[p], edited[p], gaps[p])
        for p in items
    ]
    return sorted(result, key=lambda r: (-(r.rate or 0.0), -r.reviews, r.principle))


@dataclass(frozen=True)
class Throughput:
    reviewer: str
    reviews: int
    adjudications: int
    seconds: float
    last_day: int
    """Decisions in the 24 hours before now."""

    @property
    def per_hour(self) -> float | None:
        """Decisions per hour of review time; None under `MIN_RATE_COUNT` decisions or
        `MIN_RATE_SECONDS` of review time."""
        return rate_per_hour(self.reviews + self.adjudications, self.seconds)

    @property
    def mean_seconds(self) -> float | None:
        decisions = self.reviews + self.adjudications
        return self.seconds / decisions if decisions else None


def throughput(decided: Iterable[DecisionLine], now: datetime) -> list[Throughput]:
    """Decisions per reviewer, time spent on them and decisions per hour of review time."""
    counts: defaultdict[str, Counter[str]] = defaultdict(Counter)
    seconds: defaultdict[str, float] = defaultdict(float)
    for d in decided:
        counts[d.reviewer][d.kind] += 1
        counts[d.reviewer]["day"] += d.decided_at > now - timedelta(hours=24)
        seconds[d.reviewer] += d.seconds
    return [
        Throughput(name, c["review"], c["adjudication"], seconds[name], c["day"])
        for name, c in sorted(counts.items())
    ]
