"""Which labels calibrate (critic.valid_labels): the guarantee by simulation, what is left out and
why, recalibration with lineage."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from critic.calibrate import calibrate
from critic.errors import CriticError, UsageError
from critic.routing import Policy, RouteInput, audit_draw, policy_hash, route
from critic.valid_labels import (
    AUDIT_SAMPLE,
    CALIBRATION_SAMPLE,
    LOW_CONFIDENCE,
    Label,
    calibrate_labels,
    calibration_draw,
    in_draw,
    recalibrate,
)

DELTA = 0.1


@dataclass(frozen=True)
class World:
    """A population: confidence levels, the share of items at each, and the chance that the
    critic agrees with the human at each."""

    levels: tuple[float, ...]
    mass: tuple[float, ...]
    agree: tuple[float, ...]

    def draw(self, rng: random.Random) -> tuple[float, bool]:
        k = rng.choices(range(len(self.levels)), weights=self.mass)[0]
        return self.levels[k], rng.random() < self.agree[k]

    def agreement(self, threshold: float) -> float | None:
        """The agreement of everything the threshold accepts, exactly."""
        above = [k for k, c in enumerate(self.levels) if c >= threshold]
        total = sum(self.mass[k] for k in above)
        return sum(self.mass[k] * self.agree[k] for k in above) / total if total else None

    def violates(self, threshold: float | None, target: float) -> bool:
        a = None if threshold is None else self.agreement(threshold)
        return a is not None and a < target


def _stream(
    world: World, rng: random.Random, target: float, *, passes: int, size: int, initial: int,
    calibration_rate: float, audit_rate: float, complete: bool, audits_everywhere: bool = False,
) -> list[float | None]:  # fmt: skip
    """Calibrate on `initial` calibration samples, then route `passes` batches with critic's
    route, label what is reviewed, recalibrate after each: the threshold in force per batch.
    `audits_everywhere` passes audit samples off as calibration samples (a mistake)."""
    labels = []
    for _ in range(initial):
        c, ok = world.draw(rng)
        labels.append(Label(c, ok, CALIBRATION_SAMPLE, "initial", None, in_draw=True))
    seed = rng.randrange(2**31)
    start = calibrate_labels(labels, target, DELTA).calibration
    policy = Policy.from_calibration(start, audit_rate=audit_rate, seed=seed)
    thresholds: list[float | None] = []
    for b in range(passes):
        thresholds.append(policy.threshold)
        items = [world.draw(rng) for _ in range(size)]
        ids = [f"{b}/{k}" for k in range(size)]
        drafts = [RouteInput(id_, "x", c) for id_, (c, _) in zip(ids, items, strict=True)]
        for r, (c, ok) in zip(route(drafts, policy), items, strict=True):
            sampled = calibration_draw(seed, r.id) < calibration_rate
            if sampled or r.decision == "review":
                as_calibration = sampled or (audits_everywhere and r.reason == AUDIT_SAMPLE)
                labels.append(Label(
                    c, ok, CALIBRATION_SAMPLE if as_calibration else r.reason, f"pass {b}",
                    policy.threshold, in_draw=in_draw(r.id, seed, calibration_rate, audit_rate),
                    draw_complete=complete,
                ))  # fmt: skip
        policy = recalibrate(labels, policy).policy
    return thresholds


@settings(max_examples=8, deadline=None, derandomize=True)
@given(
    target=st.sampled_from([0.7, 0.8, 0.85]),
    agree=st.lists(st.floats(-0.12, 0.12), min_size=5, max_size=5),
    mass=st.lists(st.floats(0.05, 1.0), min_size=5, max_size=5),
    calibration_rate=st.sampled_from([0.02, 0.1]),
    audit_rate=st.sampled_from([0.05, 0.3]),
    complete=st.booleans(),
    seed=st.integers(0, 2**31),
)
def test_calibration_and_audit_samples_keep_the_guarantee_batch_after_batch(
    target: float, agree: list[float], mass: list[float], calibration_rate: float,
    audit_rate: float, complete: bool, seed: int,
) -> None:  # fmt: skip
    # Agreement within 0.12 of the target at every level, rising with confidence on average:
    # thresholds on both sides of the target, some close to it, where a wrong pass is likeliest.
    levels = (0.6, 0.7, 0.8, 0.9, 1.0)
    chance = [target + a + 0.1 * (c - 0.8) for a, c in zip(agree, levels, strict=True)]
    world = World(levels, tuple(mass), tuple(min(0.99, max(0.01, p)) for p in chance))
    rng = random.Random(seed)
    trials, violations, batches = 60, 0, 0
    for _ in range(trials):
        for t in _stream(world, rng, target, passes=4, size=300, initial=100,
                         calibration_rate=calibration_rate, audit_rate=audit_rate,
                         complete=complete):  # fmt: skip
            violations += world.violates(t, target)
            batches += 1
    # Batches of one stream share labels, so count the slack on streams, not batches.
    assert violations / batches <= DELTA + 3 * math.sqrt(DELTA * (1 - DELTA) / trials)


@pytest.mark.parametrize("complete", [False, True])
def test_audit_samples_used_below_their_threshold_would_break_the_guarantee(
    complete: bool,
) -> None:
    # Agreement rises steeply with confidence: 0.8 and above meet the target 0.8 (0.883), 0.7
    # does not (0.7875). Audits drawn above a threshold of 0.8, counted at 0.7 as if they were
    # a uniform sample, make 0.7 look good; counted only where they are valid they do not.
    world = World((0.6, 0.7, 0.8, 0.9, 1.0), (1, 1, 1, 1, 1), (0.4, 0.5, 0.8, 0.9, 0.95))
    trials = 60

    def violation_rate(audits_everywhere: bool) -> float:
        rng = random.Random(1)
        found = [
            world.violates(t, 0.8)
            for _ in range(trials)
            for t in _stream(
                world, rng, 0.8, passes=4, size=300, initial=100, calibration_rate=0.02,
                audit_rate=0.3, complete=complete, audits_everywhere=audits_everywhere,
            )
        ]  # fmt: skip
        return sum(found) / len(found)

    assert violation_rate(False) <= DELTA + 3 * math.sqrt(DELTA * (1 - DELTA) / trials)
    if not complete:  # with the draw complete, audits are valid everywhere anyway
        assert violation_rate(True) >= 0.15  # 0.246 here


def test_low_confidence_reviews_and_seen_labels_would_be_too_optimistic_and_are_left_out() -> None:
    # Two levels, both below the target 0.8 in the population: the confident items agree 72% of
    # the time, and the whole population (72% and 90%) 79.2%. The policy in force accepts the
    # confident ones. Its low-confidence reviews (all of them, 90% agreement) and its audits
    # are decided in a queue that shows the critic's label: the reviewer keeps it on half of
    # the items they would have changed. Calibration samples (2%) are reviewed blind.
    world = World((0.8, 1.0), (0.4, 0.6), (0.9, 0.72))
    assert world.violates(1.0, 0.8) and world.violates(0.8, 0.8)
    rng = random.Random(7)
    trials, naive_violations, default_violations = 40, 0, 0
    for trial in range(trials):
        policy = Policy(threshold=0.9, target_agreement=0.8, delta=DELTA, audit_rate=0.1,
                        seed=trial)  # fmt: skip
        labels = []
        for b in range(5):
            items = [world.draw(rng) for _ in range(1000)]
            drafts = [RouteInput(f"{b}/{k}", "x", c) for k, (c, _) in enumerate(items)]
            for r, (c, ok) in zip(route(drafts, policy), items, strict=True):
                sampled = calibration_draw(trial, r.id) < 0.02
                if not sampled and r.decision == "accept":
                    continue
                seen = not sampled
                decided_ok = ok or (seen and rng.random() < 0.5)
                labels.append(Label(c, decided_ok, CALIBRATION_SAMPLE if sampled else r.reason,
                                    f"pass {b}", 0.9, in_draw=in_draw(r.id, trial, 0.02, 0.1),
                                    seen=seen))  # fmt: skip
        # What `calibrate --db` did: every human decision.
        naive = calibrate([lab.confidence for lab in labels], [lab.agrees for lab in labels],
                          0.8, DELTA).threshold  # fmt: skip
        naive_violations += world.violates(naive, 0.8)
        result = calibrate_labels(labels, 0.8, DELTA)
        default_violations += world.violates(result.calibration.threshold, 0.8)
        assert result.used[LOW_CONFIDENCE] == 0 and result.used[AUDIT_SAMPLE] == 0
        assert {o.kind for o in result.left_out} == {AUDIT_SAMPLE, LOW_CONFIDENCE}
        with_seen = calibrate_labels(labels, 0.8, DELTA, allow_seen=True)
        assert with_seen.used[AUDIT_SAMPLE] > 0 and with_seen.used[LOW_CONFIDENCE] > 0
    assert naive_violations / trials >= 0.5  # 30 of 40 here
    assert default_violations / trials <= DELTA + 3 * math.sqrt(DELTA * (1 - DELTA) / trials)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    pairs=st.lists(
        st.tuples(st.sampled_from([0.5, 0.6, 0.75, 0.8, 0.9, 0.95, 1.0]), st.booleans()),
        max_size=300,
    ),
    target=st.sampled_from([0.6, 0.8, 0.9]),
)
def test_calibration_samples_alone_choose_what_calibrate_chooses(
    pairs: list[tuple[float, bool]], target: float
) -> None:
    labels = [Label(c, ok, CALIBRATION_SAMPLE, "d", None) for c, ok in pairs]
    mine = calibrate_labels(labels, target, DELTA).calibration
    theirs = calibrate([c for c, _ in pairs], [ok for _, ok in pairs], target, DELTA)
    assert mine == theirs


def _labels(reason: str, draw: str, t0: float | None, conf: float, agree: int, n: int,
            **kw: bool) -> list[Label]:  # fmt: skip
    return [Label(conf, i < agree, reason, draw, t0, **kw) for i in range(n)]


def test_audit_samples_of_an_incomplete_draw_count_only_at_or_above_their_threshold() -> None:
    def labels(complete: bool) -> list[Label]:
        return [
            *_labels(AUDIT_SAMPLE, "p", 0.8, 0.9, 60, 60, draw_complete=complete),
            *_labels(CALIBRATION_SAMPLE, "p", 0.8, 0.7, 20, 40, draw_complete=complete),
        ]

    # Complete: the 100 labels are one uniform sample; 80 of 100 agree pass from 0.7 down.
    full = calibrate_labels(labels(True), 0.7, DELTA)
    assert full.calibration.threshold == 0.0  # the grid goes on to 0 with the same set
    assert (full.calibration.n_accepted, full.calibration.n_agree) == (100, 80)
    assert full.above_threshold_only == 0
    # Incomplete: below 0.8 only the calibration samples count, 20 of 40, which fails.
    part = calibrate_labels(labels(False), 0.7, DELTA)
    assert part.calibration.threshold == 0.8
    assert (part.calibration.n_accepted, part.calibration.n_agree) == (60, 60)
    assert part.above_threshold_only == 60
    assert part.used == {CALIBRATION_SAMPLE: 40, AUDIT_SAMPLE: 60, LOW_CONFIDENCE: 0}
    # Coverage is read on the labels valid everywhere: none of the 40 is at or above 0.8.
    assert part.calibration.coverage == 0.0


def test_low_confidence_reviews_count_through_the_draw_and_the_rest_is_left_out_with_why() -> None:
    labels = [
        *_labels(AUDIT_SAMPLE, "p1", 0.8, 0.9, 27, 30),
        *_labels(LOW_CONFIDENCE, "p1", 0.8, 0.6, 8, 10, in_draw=True),
        *_labels(LOW_CONFIDENCE, "p1", 0.8, 0.6, 50, 100),
        *_labels(CALIBRATION_SAMPLE, "p1", 0.8, 0.6, 3, 5, seen=True),
        *_labels("swap_inconsistent", "p1", 0.8, 0.95, 1, 4),
        *_labels(AUDIT_SAMPLE, "p2", 0.8, 0.85, 10, 10),
        *_labels(LOW_CONFIDENCE, "p2", 0.8, 0.7, 2, 3, in_draw=True),
        *_labels(LOW_CONFIDENCE, "p3", 0.9, 0.7, 2, 3, in_draw=True, draw_complete=False),
    ]
    result = calibrate_labels(labels, 0.7, DELTA)
    # p1 lost a draw member (a seen calibration sample), p3 is marked incomplete: their audits
    # count at or above their threshold only, their low-confidence reviews not at all.
    assert result.used == {CALIBRATION_SAMPLE: 0, AUDIT_SAMPLE: 40, LOW_CONFIDENCE: 3}
    assert result.above_threshold_only == 30
    got = {(o.kind, o.reason.split(":")[0].split(" (")[0], o.count) for o in result.left_out}
    assert got == {
        (CALIBRATION_SAMPLE, "the reviewer saw the critic's label", 5),
        (LOW_CONFIDENCE, "not picked by the seeded draw", 100),
        (LOW_CONFIDENCE, "its draw is incomplete", 13),
        ("swap_inconsistent", "the policy reviews such drafts whatever their confidence, so "
         "they are not among the items a threshold accepts", 4),
    }  # fmt: skip
    lines = result.summary()
    assert lines[0] == "labels used: audit_sample 40, low_confidence 3"
    assert "left out: 100 low_confidence (not picked by the seeded draw" in "\n".join(lines)
    assert calibrate_labels(labels, 0.7, DELTA, allow_seen=True).used[CALIBRATION_SAMPLE] == 5


def test_a_draw_with_two_thresholds_and_a_confidence_out_of_range_are_errors() -> None:
    two = [Label(0.9, True, AUDIT_SAMPLE, "p", 0.8), Label(0.9, True, AUDIT_SAMPLE, "p", 0.7)]
    with pytest.raises(CriticError, match=r"label 1: draw 'p' has threshold 0\.7 here and 0\.8"):
        calibrate_labels(two, 0.8, DELTA)
    with pytest.raises(CriticError, match=r"confidence 1.5 is not in \[0, 1\]"):
        calibrate_labels([Label(1.5, True, CALIBRATION_SAMPLE, "p", None)], 0.8, DELTA)


def test_the_draw_picks_every_item_alike_and_apart_from_the_audit_draw() -> None:
    ids = [f"item-{i}" for i in range(20_000)]
    calib = [calibration_draw(3, i) < 0.1 for i in ids]
    audit = [audit_draw(3, i) < 0.2 for i in ids]
    picked = [in_draw(i, 3, 0.1, 0.2) for i in ids]
    assert abs(sum(calib) / len(ids) - 0.1) < 0.01
    # Independent draws: P(both) = 0.1 * 0.2, and the draw's rate is 1 - 0.9 * 0.8.
    assert abs(sum(c and a for c, a in zip(calib, audit, strict=True)) / len(ids) - 0.02) < 0.005
    assert abs(sum(picked) / len(ids) - 0.28) < 0.015
    assert calibration_draw(3, "x") == calibration_draw(3, "x") != calibration_draw(4, "x")


def test_recalibrate_keeps_the_policy_settings_and_records_its_lineage() -> None:
    rng = random.Random(1)
    labels = [Label(c, rng.random() < 0.95, CALIBRATION_SAMPLE, "d", None)
              for c in (rng.choice([0.7, 0.9, 1.0]) for _ in range(400))]  # fmt: skip
    previous = Policy(threshold=None, target_agreement=0.85, delta=DELTA, audit_rate=0.05,
                      seed=9, budget=100, route_swap_inconsistent=False)  # fmt: skip
    again = recalibrate(labels, previous)
    assert again.policy.threshold == again.result.calibration.threshold == 0.0
    assert again.policy.calibration == again.result.calibration
    kept = {"audit_rate": 0.05, "seed": 9, "budget": 100, "route_swap_inconsistent": False}
    assert {k: getattr(again.policy, k) for k in kept} == kept
    assert again.lineage.previous == policy_hash(previous)
    assert again.lineage.labels == {CALIBRATION_SAMPLE: 400, AUDIT_SAMPLE: 0, LOW_CONFIDENCE: 0}
    assert recalibrate(labels, again.policy).lineage.previous == policy_hash(again.policy)


def test_recalibrate_refuses_a_cascade_policy() -> None:
    from critic.cascade import Stage

    cal = calibrate([1.0] * 40, [True] * 40, 0.8, DELTA)
    stage = Stage(critic="a", threshold=cal.threshold, calibration=cal, reached=40)
    cascade = Policy(threshold=None, target_agreement=0.8, delta=DELTA, stages=[stage])
    with pytest.raises(UsageError, match="cascade"):
        recalibrate([], cascade)
