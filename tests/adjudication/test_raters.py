"""Reviewer quality, pure: gold scores, κ, timing, the critic's label, undo rate and the flags,
on simulated teams whose truth is known."""

from __future__ import annotations

import pytest

from adjudication import REJECTED
from adjudication.raters import (
    FLAGS,
    Baseline,
    FlagRules,
    Judgment,
    QueueEvidence,
    assess,
    gold_score,
    too_fast,
)
from adjudication.simulation import SimulatedQueue, SimulatedReviewer, simulate_team

TEAM = (
    SimulatedReviewer("careful", 0.95),
    SimulatedReviewer("good", 0.85),
    SimulatedReviewer("fair", 0.70),
    SimulatedReviewer("poor", 0.55),
    SimulatedReviewer("stamper", None, median_seconds=2.0),
)


def evidence(sim: SimulatedQueue, *, blind: bool = False, **extra: object) -> QueueEvidence:
    return QueueEvidence(
        "q", blind, ("a", "b", "c"), sim.judgments, extra.pop("adjudicated", {}),  # type: ignore[arg-type]
        extra.pop("withdrawn", {}), **extra,  # type: ignore[arg-type]
    )  # fmt: skip


def flags(report: object, name: str) -> set[str]:
    reviewer = next(r for r in report.reviewers if r.name == name)  # type: ignore[attr-defined]
    return {f.name for f in reviewer.flags}


@pytest.fixture(scope="module")
def team() -> SimulatedQueue:
    return simulate_team(1000, TEAM, overlap=3, priors=(0.2, 0.4, 0.4), gold_rate=0.1, seed=11)


def test_the_rubber_stamp_flag_fires_on_a_stamper_and_not_on_a_careful_reviewer(
    team: SimulatedQueue,
) -> None:
    report = assess(evidence(team), gold=team.gold)
    stamper = next(r for r in report.reviewers if r.name == "stamper")
    assert "rubber_stamp" in flags(report, "stamper")
    assert stamper.with_critic is not None and stamper.with_critic.rate == 1.0
    assert stamper.baseline is not None and stamper.baseline.source == "gold items"
    assert stamper.baseline.rate == pytest.approx(0.8, abs=0.1)
    evidence_text = next(f.evidence for f in stamper.flags if f.name == "rubber_stamp")
    assert "gave the critic's label" in evidence_text and "gold items" in evidence_text
    careful = next(r for r in report.reviewers if r.name == "careful")
    assert careful.with_critic is not None and careful.with_critic.rate < 0.85
    assert flags(report, "careful") == set()
    assert flags(report, "good") == set()


def test_a_stamper_who_takes_their_time_is_still_caught_and_the_baseline_can_be_peers() -> None:
    slow = (*TEAM[:4], SimulatedReviewer("stamper", None, median_seconds=30.0))
    sim = simulate_team(400, slow, overlap=3, gold_rate=0.0, seed=4)
    report = assess(evidence(sim))
    stamper = next(r for r in report.reviewers if r.name == "stamper")
    assert flags(report, "stamper") == {"rubber_stamp"}
    assert stamper.baseline is not None
    assert stamper.baseline.source == "other reviewers' consensus"
    assert flags(report, "careful") == set()


def test_the_poor_reviewer_is_flagged_by_gold_and_by_agreement(team: SimulatedQueue) -> None:
    report = assess(evidence(team), gold=team.gold)
    assert flags(report, "poor") == {"low_gold_accuracy", "low_agreement"}
    poor = next(r for r in report.reviewers if r.name == "poor")
    assert poor.gold.n == len(team.gold)
    assert poor.gold.high is not None and poor.gold.high < 0.70
    assert poor.model_accuracy == pytest.approx(0.55, abs=0.06)
    # Without gold, agreement alone still finds them.
    assert flags(assess(evidence(team)), "poor") == {"low_agreement"}


def test_no_flag_on_reviewers_of_accuracy_085_or_more_at_any_point(team: SimulatedQueue) -> None:
    for end in range(60, len(team.judgments) + 1, 150):
        prefix = SimulatedQueue(team.truth, team.critic, team.gold, team.judgments[:end])
        report = assess(evidence(prefix), gold=team.gold)
        assert flags(report, "careful") == set(), end
        assert flags(report, "good") == set(), end


def test_a_blind_queue_has_no_critic_match_and_no_rubber_stamp(team: SimulatedQueue) -> None:
    report = assess(evidence(team, blind=True), gold=team.gold)
    for r in report.reviewers:
        assert r.with_critic is None and r.baseline is None
    assert "rubber_stamp" not in flags(report, "stamper")


def test_a_blind_baseline_comes_first() -> None:
    sim = simulate_team(200, TEAM, overlap=3, seed=2)
    blind = Baseline("blind queues, same constitution", 500, 0.62)
    report = assess(evidence(sim, blind_baseline=blind), gold=sim.gold)
    assert all(r.baseline == blind for r in report.reviewers)
    stamper = next(r for r in report.reviewers if r.name == "stamper")
    assert "81%" in next(f.evidence for f in stamper.flags if f.name == "rubber_stamp")


def test_too_fast_on_scripted_reviewers_and_imported_decisions_untimed() -> None:
    assert too_fast([0.0045] * 40) is not None
    assert "median 0.0 s per decision over 40" in too_fast([0.0045] * 40).evidence  # type: ignore[union-attr]
    assert too_fast([2.0] * 9) is None  # too few to tell
    assert too_fast([3.5] * 50) is None
    judgments = tuple(
        Judgment(f"i{n}", "imported", "review", "a", "a", None, latest=True) for n in range(50)
    )
    report = assess(QueueEvidence("q", False, None, judgments, {}, {}))
    (only,) = report.reviewers
    assert (only.imported, only.timed, only.median_seconds) == (50, 0, None)
    assert only.flags == ()


def test_kappa_adjudicated_agreement_and_undo_rate() -> None:
    def j(item: str, who: str, label: str | None, kind: str = "review") -> Judgment:
        return Judgment(item, who, kind, label, "a", 10.0, latest=True)  # type: ignore[arg-type]

    judgments = (
        j("x", "ann", "a"), j("x", "bob", "a"),
        j("y", "ann", "b"), j("y", "bob", "a"), j("y", "ada", "b", "adjudication"),
        j("z", "ann", REJECTED), j("z", "bob", REJECTED),
        j("w", "ann", None),  # an escalation: no rating
    )  # fmt: skip
    report = assess(QueueEvidence("q", False, None, judgments, {"y": "b"}, {"ann": 2}))
    ann = next(r for r in report.reviewers if r.name == "ann")
    assert ann.decisions == 4 and ann.adjudications == 0
    assert ann.overlapped == 3
    assert [(p.peer, p.items) for p in ann.peers] == [("bob", 3)]
    # ann and bob agree on x and z and not on y: κ over (a, a), (b, a), (<rejected>, <rejected>).
    assert ann.kappa == pytest.approx(0.5)
    assert (ann.with_adjudicated.n, ann.with_adjudicated.hits) == (1, 1)
    bob = next(r for r in report.reviewers if r.name == "bob")
    assert (bob.with_adjudicated.n, bob.with_adjudicated.hits) == (1, 0)
    assert ann.withdrawn == 2 and ann.undo_rate == pytest.approx(2 / 6)
    ada = next(r for r in report.reviewers if r.name == "ada")
    assert (ada.decisions, ada.adjudications) == (0, 1)
    assert ada.median_seconds == 10.0


def test_gold_score_has_an_exact_interval() -> None:
    score = gold_score({"a": "x", "b": "y", "c": "x", "d": "x"}, {"a": "x", "b": "x", "c": "x"})
    assert (score.n, score.correct) == (3, 2)
    assert score.accuracy == pytest.approx(2 / 3)
    # Clopper-Pearson 95% for 2 of 3: (0.0943, 0.9916).
    assert score.low == pytest.approx(0.0943, abs=1e-4)
    assert score.high == pytest.approx(0.9916, abs=1e-4)
    assert gold_score({"a": "x"}, {}).accuracy is None


def test_flag_names_and_rules_are_what_the_report_documents() -> None:
    assert FLAGS == ("low_gold_accuracy", "rubber_stamp", "too_fast", "low_agreement")
    strict = FlagRules(too_fast_seconds=60.0)
    sim = simulate_team(200, TEAM, overlap=3, seed=1)
    report = assess(evidence(sim), gold=sim.gold, rules=strict)
    assert all("too_fast" in flags(report, r.name) for r in report.reviewers)
