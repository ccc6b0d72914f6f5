"""Reviewer quality: per reviewer, how often right, how much in agreement, how fast, and flags.

Pure: the decisions of one queue in (`QueueEvidence`, which `evidence.read` builds in one read),
a `RaterReport` out; no database, no clock. Gold answers, where a queue has them, come in as a
`{item_id: label}` mapping.

The flags and their rules (`FlagRules` holds the numbers; the README's "Reviewer quality" has the
reasoning and the simulated figures behind them):

- `low_gold_accuracy`: at least `min_gold` gold items decided, and the exact 95% interval of the
  reviewer's gold accuracy lies wholly below `accuracy_floor` (0.70).
- `low_agreement`: the label model, fitted on every reviewer's decisions, believes too few of
  the reviewer's labels: on at least `min_overlapped` items that others rated too, the expected
  number right, as k of n, has a one-sided 95% upper bound below `accuracy_floor`. This is
  agreement weighed by who agrees: agreeing with a careful peer counts more than with a careless
  one, which a raw κ cannot do (a careful reviewer paired with careless peers has a low κ too).
- `rubber_stamp`: in a non-blind queue, after `min_judged` decisions, the reviewer gives the
  critic's label significantly more often than an honest reviewer could: the one-sided 95%
  lower bound of their critic-match rate is above halfway from the baseline to 100%. The
  baseline is what an honest reviewer's match rate is at most, the critic's accuracy, taken from
  (first that has `baseline_min` decisions): blind queues of the same constitution (their
  reviewers' rate of giving the critic's label without seeing it), gold items (the critic's
  accuracy on them), adjudicated outcomes (the critic's agreement with them), and else the
  other reviewers' consensus on this reviewer's items (the critic's agreement with it, by the
  label model with this reviewer left out).
- `too_fast`: the median time of at least `too_fast_min` timed decisions is under
  `too_fast_seconds` (3 s): nobody reads an item, its draft and a principle in less.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from .agreement import Label, versus
from .binomial import binomial_lower_bound, binomial_upper_bound, clopper_pearson
from .labelmodel import LabelModel, expected_correct, fit, posterior_without
from .models import ClaimKind

FLAGS = ("low_gold_accuracy", "rubber_stamp", "too_fast", "low_agreement")


@dataclass(frozen=True)
class FlagRules:
    """The numbers behind the flags (see the module's docstring)."""

    accuracy_floor: float = 0.70
    """Flag a reviewer confidently less accurate than this (gold, or by the label model)."""
    min_gold: int = 10
    min_overlapped: int = 30
    min_judged: int = 20
    """Decisions before `rubber_stamp` is tested."""
    baseline_min: int = 20
    """Decisions (or items) a baseline for the critic-match rate needs."""
    too_fast_seconds: float = 3.0
    too_fast_min: int = 10
    alpha: float = 0.05
    """One-sided error level of the flag tests (intervals shown are two-sided 1 - alpha)."""


@dataclass(frozen=True)
class Judgment:
    """One decision as reviewer quality reads it."""

    item_id: str
    reviewer: str
    kind: ClaimKind
    rating: str | None
    """The label it stands for, `REJECTED` for a rejection, None for an escalation."""
    critic_label: str | None
    seconds: float | None
    """Time spent; None when not measured (an imported decision)."""
    latest: bool
    """Made in the item's latest round (the round agreement and the label model use)."""


@dataclass(frozen=True)
class Baseline:
    """What an honest reviewer's critic-match rate is at most: the critic's accuracy."""

    source: str
    n: int
    rate: float


@dataclass(frozen=True)
class QueueEvidence:
    """Everything reviewer quality needs from one queue (built by `evidence.read`)."""

    queue: str
    blind: bool
    labels: tuple[str, ...] | None
    judgments: tuple[Judgment, ...]
    """Every decision of the queue, oldest first, all rounds."""
    adjudicated: Mapping[str, str]
    """The outcome of each item an adjudicator settled (`REJECTED` for a rejection)."""
    withdrawn: Mapping[str, int]
    """Decisions each reviewer took back (undo)."""
    blind_baseline: Baseline | None = None
    """Blind queues of the same constitution: how often their reviewers gave the critic's label."""


@dataclass(frozen=True)
class Share:
    n: int
    hits: int

    @property
    def rate(self) -> float | None:
        return self.hits / self.n if self.n else None


@dataclass(frozen=True)
class Gold:
    """A reviewer's score on gold items, with its exact (Clopper–Pearson) interval."""

    n: int
    correct: int
    accuracy: float | None
    low: float | None
    high: float | None


@dataclass(frozen=True)
class PeerKappa:
    peer: str
    items: int
    percent: float | None
    kappa: float | None


@dataclass(frozen=True)
class Flag:
    name: str
    evidence: str


@dataclass(frozen=True)
class ReviewerQuality:
    name: str
    decisions: int
    """Review decisions (every round)."""
    adjudications: int
    imported: int
    """Of the decisions, how many were imported (`critic queue import`), not made here."""
    gold: Gold
    peers: tuple[PeerKappa, ...]
    kappa: float | None
    """Cohen's κ against the other reviewers, pooled: one table of (this reviewer's label,
    a peer's label) over every item and peer they share."""
    overlapped: int
    """Items of the latest round that at least one other reviewer rated too."""
    with_adjudicated: Share
    model_accuracy: float | None
    """The label model's estimate of the reviewer's accuracy (None without overlap or gold)."""
    model_items: int
    median_seconds: float | None
    timed: int
    with_critic: Share | None
    """Non-blind queues: review decisions equal to the critic's label."""
    baseline: Baseline | None
    withdrawn: int
    flags: tuple[Flag, ...] = field(default=())

    @property
    def undo_rate(self) -> float | None:
        made = self.decisions + self.adjudications + self.withdrawn
        return self.withdrawn / made if made else None


@dataclass(frozen=True)
class RaterReport:
    queue: str
    blind: bool
    reviewers: tuple[ReviewerQuality, ...]
    model: LabelModel | None


def latest_ratings(judgments: Iterable[Judgment]) -> dict[str, dict[str, str]]:
    """`{item_id: {reviewer: rating}}` from the latest round's reviews (escalations left out),
    as agreement and the label model read them."""
    ratings: defaultdict[str, dict[str, str]] = defaultdict(dict)
    for j in judgments:
        if j.kind == "review" and j.latest and j.rating is not None:
            ratings[j.item_id][j.reviewer] = j.rating
    return dict(ratings)


def gold_score(ratings: Mapping[str, str], gold: Mapping[str, str], alpha: float = 0.05) -> Gold:
    """A reviewer's `{item_id: rating}` scored against the gold items among them."""
    scored = [item for item in ratings if item in gold]
    correct = sum(ratings[item] == gold[item] for item in scored)
    if not scored:
        return Gold(0, 0, None, None, None)
    low, high = clopper_pearson(correct, len(scored), alpha)
    return Gold(len(scored), correct, correct / len(scored), low, high)


def timing(judgments: Iterable[Judgment]) -> dict[str, list[float]]:
    """Each reviewer's measured decision times (imported decisions have none)."""
    times: defaultdict[str, list[float]] = defaultdict(list)
    for j in judgments:
        if j.seconds is not None:
            times[j.reviewer].append(j.seconds)
    return dict(times)


def too_fast(seconds: Sequence[float], rules: FlagRules = FlagRules()) -> Flag | None:
    """The `too_fast` flag for one reviewer's decision times, or None."""
    if len(seconds) < rules.too_fast_min:
        return None
    median = statistics.median(seconds)
    if median >= rules.too_fast_seconds:
        return None
    return Flag(
        "too_fast",
        f"median {median:.1f} s per decision over {len(seconds)} decisions "
        f"(under {rules.too_fast_seconds:g} s)",
    )


def _pooled_kappa(
    mine: Mapping[str, str], ratings: Mapping[str, Mapping[str, str]], me: str
) -> float | None:
    """Cohen's κ over one table of (my label, a peer's label) for every shared item and peer."""
    a: dict[str, Label | None] = {}
    b: dict[str, Label | None] = {}
    for item, label in mine.items():
        for peer, other in ratings[item].items():
            if peer != me:
                a[f"{item}\x00{peer}"] = label
                b[f"{item}\x00{peer}"] = other
    return versus(a, b, (me, "peers")).kappa


def _queue_baseline(
    evidence: QueueEvidence, gold: Mapping[str, str], rules: FlagRules
) -> Baseline | None:
    """The first queue-wide baseline with enough data: blind queues, gold, adjudicated."""
    if evidence.blind_baseline is not None and evidence.blind_baseline.n >= rules.baseline_min:
        return evidence.blind_baseline
    critic = {j.item_id: j.critic_label for j in evidence.judgments}
    for source, answers in (("gold items", gold), ("adjudicated outcomes", evidence.adjudicated)):
        judged = [item for item in answers if critic.get(item) is not None]
        if len(judged) >= rules.baseline_min:
            hits = sum(critic[item] == answers[item] for item in judged)
            return Baseline(source, len(judged), hits / len(judged))
    return None


def _consensus_baseline(
    model: LabelModel,
    ratings: Mapping[str, Mapping[str, str]],
    critic: Mapping[str, str | None],
    me: str,
) -> Baseline | None:
    """The critic's expected accuracy on `me`'s items, judged by the other reviewers alone."""
    total, n = 0.0, 0
    for item, unit in ratings.items():
        label = critic.get(item)
        if me not in unit or label is None:
            continue
        others = posterior_without(model, unit, me)
        if others is None:
            continue
        total += others.get(label, 0.0)
        n += 1
    return Baseline("other reviewers' consensus", n, total / n) if n else None


def _stamp_flag(match: Share, baseline: Baseline | None, rules: FlagRules) -> Flag | None:
    if baseline is None or baseline.n < rules.baseline_min or match.n < rules.min_judged:
        return None
    bar = baseline.rate + (1.0 - baseline.rate) / 2
    low = binomial_lower_bound(match.hits, match.n, rules.alpha)
    if low <= bar:
        return None
    return Flag(
        "rubber_stamp",
        f"gave the critic's label on {match.hits} of {match.n} decisions "
        f"({match.hits / match.n:.0%}, at least {low:.0%} at 95%), against "
        f"{baseline.rate:.0%} from {baseline.source} (n={baseline.n}); the bar is {bar:.0%}",
    )


def _gold_flag(score: Gold, rules: FlagRules) -> Flag | None:
    if score.n < rules.min_gold or score.high is None or score.high >= rules.accuracy_floor:
        return None
    return Flag(
        "low_gold_accuracy",
        f"{score.correct} of {score.n} gold items right ({score.accuracy:.0%}; 95% interval "
        f"{score.low:.0%}–{score.high:.0%}, below {rules.accuracy_floor:.0%})",
    )


def _agreement_flag(
    expected: float, n: int, kappa: float | None, peers: int, rules: FlagRules
) -> Flag | None:
    if n < rules.min_overlapped:
        return None
    high = binomial_upper_bound(min(n, round(expected)), n, rules.alpha)
    if high >= rules.accuracy_floor:
        return None
    pooled = "–" if kappa is None else f"{kappa:.2f}"
    return Flag(
        "low_agreement",
        f"the label model believes {expected:.0f} of {n} shared items right ({expected / n:.0%}, "
        f"at most {high:.0%} at 95%, below {rules.accuracy_floor:.0%}); "
        f"pooled Cohen's κ {pooled} with {peers} peer(s)",
    )


def assess(
    evidence: QueueEvidence,
    *,
    gold: Mapping[str, str] | None = None,
    rules: FlagRules = FlagRules(),
    model: LabelModel | None = None,
) -> RaterReport:
    """Every reviewer's quality figures and flags in one queue.

    Args:
        evidence: the queue's decisions (see `evidence.read`).
        gold: known answers of gold items, `{item_id: label}`; empty or None when the queue
            has none.
        rules: the flag thresholds.
        model: a label model already fitted on these ratings (and this gold), to reuse.
    """
    gold = gold or {}
    ratings = latest_ratings(evidence.judgments)
    if model is None and ratings:
        model = fit(ratings, gold=gold, classes=evidence.labels)
    critic = {j.item_id: j.critic_label for j in evidence.judgments}
    queue_baseline = _queue_baseline(evidence, gold, rules)
    times = timing(evidence.judgments)

    by_reviewer: defaultdict[str, list[Judgment]] = defaultdict(list)
    for j in evidence.judgments:
        by_reviewer[j.reviewer].append(j)
    for name in evidence.withdrawn:
        by_reviewer.setdefault(name, [])

    reviewers = []
    for name in sorted(by_reviewer):
        mine = by_reviewer[name]
        reviews = [j for j in mine if j.kind == "review"]
        latest = {item: unit[name] for item, unit in ratings.items() if name in unit}
        first: dict[str, str] = {}
        for j in reviews:
            if j.rating is not None:
                first.setdefault(j.item_id, j.rating)  # each reviewer sees a gold item once
        score = gold_score(first, gold, rules.alpha)

        peer_names = sorted({p for item in latest for p in ratings[item] if p != name})
        peers = []
        for peer in peer_names:
            theirs = {item: unit[peer] for item, unit in ratings.items() if peer in unit}
            pair = versus(latest, theirs, (name, peer))
            peers.append(PeerKappa(peer, pair.items, pair.percent, pair.kappa))
        overlapped = sum(1 for item in latest if len(ratings[item]) > 1)
        pooled = _pooled_kappa(latest, ratings, name)

        decided = {i: evidence.adjudicated[i] for i in latest if i in evidence.adjudicated}
        with_adjudicated = Share(
            len(decided), sum(latest[i] == outcome for i, outcome in decided.items())
        )

        expected, counted = (0.0, 0)
        if model is not None and name in model.raters:
            expected, counted = expected_correct(model, ratings, name)
        model_accuracy = model.raters[name].accuracy if model and counted else None

        with_critic: Share | None = None
        baseline: Baseline | None = None
        if not evidence.blind:
            judged = [j for j in reviews if j.rating is not None and j.critic_label is not None]
            with_critic = Share(len(judged), sum(j.rating == j.critic_label for j in judged))
            baseline = queue_baseline
            if baseline is None and model is not None and name in model.raters:
                baseline = _consensus_baseline(model, ratings, critic, name)

        spent = times.get(name, [])
        flags = [
            flag
            for flag in (
                _gold_flag(score, rules),
                None if with_critic is None else _stamp_flag(with_critic, baseline, rules),
                too_fast(spent, rules),
                _agreement_flag(expected, counted, pooled, len(peer_names), rules),
            )
            if flag is not None
        ]
        reviewers.append(
            ReviewerQuality(
                name=name,
                decisions=len(reviews),
                adjudications=len(mine) - len(reviews),
                imported=sum(1 for j in mine if j.seconds is None),
                gold=score,
                peers=tuple(peers),
                kappa=pooled,
                overlapped=overlapped,
                with_adjudicated=with_adjudicated,
                model_accuracy=model_accuracy,
                model_items=counted,
                median_seconds=statistics.median(spent) if spent else None,
                timed=len(spent),
                with_critic=with_critic,
                baseline=baseline,
                withdrawn=evidence.withdrawn.get(name, 0),
                flags=tuple(flags),
            )
        )
    return RaterReport(evidence.queue, evidence.blind, tuple(reviewers), model)
