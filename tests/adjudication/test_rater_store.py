"""Reviewer quality, the label model and imports on every store (SQLite file, real PostgreSQL):
the one read behind them, and the writes of an import."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from adjudication import REJECTED, QueueError, Store
from adjudication.evidence import label_model, label_model_outcomes, rater_report, read
from adjudication.importing import ImportSpec, import_decisions, parse_label_map, plan
from adjudication.raters import Baseline, FlagRules
from adjudication.schema import claims
from adjudication.testing import FakeClock


def tasks(prefix: str, n: int, constitution: str, label: str = "safe") -> list[dict[str, Any]]:
    return [
        {
            "item_id": f"{prefix}{i}",
            "item": {"prompt": f"p{i}", "response": f"r{i}"},
            "draft": {"rationale": "...", "constitution": constitution, "run_id": "run1"},
            "draft_label": label,
            "confidence": i / 100,
        }
        for i in range(n)
    ]


def review(store: Store, queue: str, user: str, label: str | None, seconds: float) -> str:
    """Claim the next item as `user` and decide it: reject for None, else the label."""
    claim = store.claim(queue, user, kind="review")
    assert claim is not None
    if label is None:
        store.decide(claim.token, "reject", seconds=seconds)
    else:
        if store.queue(queue).blind:
            store.pick(claim.token, label)
        action = "accept" if label == claim.task.draft_label else "edit"
        store.decide(claim.token, action, label=label, seconds=seconds)
    return claim.task.item_id


@pytest.fixture
def team(store: Store, clock: FakeClock) -> Store:
    """A non-blind queue with two reviews per item and a blind queue, both of constitution C1,
    and a blind queue of constitution C2."""
    store.create_queue("harm", overlap=2, labels=["safe", "unsafe"])
    store.create_queue("blind", blind=True, labels=["safe", "unsafe"])
    store.create_queue("other", blind=True, labels=["safe", "unsafe"])
    for name in ("ann", "bob", "cy"):
        store.add_user(name, queues=["harm", "blind", "other"])
    store.add_user("ada", "admin")
    store.enqueue("harm", tasks("h", 4, "C1"))
    store.enqueue("blind", tasks("b", 4, "C1"))
    store.enqueue("other", tasks("o", 2, "C2"))
    # Blind reviews of C1: three of four give the critic's label; C2's do not count.
    for label in ("safe", "safe", "unsafe", "safe"):
        review(store, "blind", "cy", label, 30.0)
    for label in ("unsafe", "unsafe"):
        review(store, "other", "cy", label, 30.0)
    # h0: both keep the critic's label. h1: they disagree; the adjudicator says unsafe.
    # h2: both reject. ann's h3 is undone once, then made again.
    for user, label, seconds in [
        ("ann", "safe", 20.0), ("bob", "safe", 40.0),
        ("ann", "safe", 10.0), ("bob", "unsafe", 50.0),
        ("ann", None, 30.0), ("bob", None, 60.0),
    ]:  # fmt: skip
        review(store, "harm", user, label, seconds)
    claim = store.claim("harm", "ada", kind="adjudication")
    assert claim is not None and claim.task.item_id == "h1"
    store.decide(claim.token, "edit", label="unsafe", seconds=5.0)
    review(store, "harm", "ann", "unsafe", 15.0)
    clock.advance(1)
    undone = store.undo("harm", "ann")
    store.decide(undone.claim.token, "edit", label="unsafe", seconds=25.0)
    return store


def test_one_read_gathers_decisions_outcomes_withdrawals_and_the_blind_baseline(
    team: Store,
) -> None:
    evidence = read(team, "harm")
    assert (evidence.queue, evidence.blind, evidence.labels) == ("harm", False, ("safe", "unsafe"))
    seen = [(j.item_id, j.reviewer, j.kind, j.rating, j.seconds) for j in evidence.judgments]
    assert seen == [
        ("h0", "ann", "review", "safe", 20.0),
        ("h0", "bob", "review", "safe", 40.0),
        ("h1", "ann", "review", "safe", 10.0),
        ("h1", "bob", "review", "unsafe", 50.0),
        ("h2", "ann", "review", REJECTED, 30.0),
        ("h2", "bob", "review", REJECTED, 60.0),
        ("h1", "ada", "adjudication", "unsafe", 5.0),
        ("h3", "ann", "review", "unsafe", 25.0),
    ]
    assert all(j.critic_label == "safe" and j.latest for j in evidence.judgments)
    assert evidence.adjudicated == {"h1": "unsafe"}
    assert evidence.withdrawn == {"ann": 1}
    assert evidence.blind_baseline == Baseline("blind queues, same constitution", 4, 0.75)
    assert read(team, "blind").blind_baseline is None  # a blind queue needs none


def test_the_rater_report_from_the_store(team: Store) -> None:
    report = rater_report(team, "harm", rules=FlagRules(baseline_min=1))
    ann, bob = (next(r for r in report.reviewers if r.name == n) for n in ("ann", "bob"))
    assert (ann.decisions, ann.withdrawn, ann.undo_rate) == (4, 1, pytest.approx(1 / 5))
    assert ann.median_seconds == pytest.approx(22.5)
    assert (ann.with_adjudicated.n, ann.with_adjudicated.hits) == (1, 0)
    assert (bob.with_adjudicated.n, bob.with_adjudicated.hits) == (1, 1)
    assert ann.with_critic is not None and (ann.with_critic.n, ann.with_critic.hits) == (4, 2)
    assert ann.baseline == Baseline("blind queues, same constitution", 4, 0.75)
    assert [(p.peer, p.items) for p in ann.peers] == [("bob", 3)]
    ada = next(r for r in report.reviewers if r.name == "ada")
    assert (ada.decisions, ada.adjudications) == (0, 1)
    gold = rater_report(team, "harm", gold={"h0": "safe", "h1": "unsafe"})
    bob_gold = next(r for r in gold.reviewers if r.name == "bob").gold
    assert (bob_gold.n, bob_gold.correct, bob_gold.accuracy) == (2, 2, 1.0)


def test_label_model_outcomes_from_the_store(team: Store) -> None:
    outcomes = label_model_outcomes(team, "harm")
    assert set(outcomes) == {"h0", "h1", "h2", "h3"}
    assert outcomes["h0"].label == "safe" and outcomes["h0"].majority == "safe"
    assert outcomes["h2"].label == REJECTED
    assert outcomes["h1"].majority is None  # one each
    with_critic = label_model(team, "harm", critics_as_raters=True)
    assert with_critic is not None and "critic" in with_critic.raters
    assert with_critic.items["h1"].majority == "safe"  # the critic's vote breaks the tie
    assert "h1" not in label_model_outcomes(team, "harm", gold={"h1": "unsafe"})  # gold ships not


def test_importing_decisions_is_marked_settles_items_and_is_idempotent(store: Store) -> None:
    store.create_queue("panda", overlap=3, labels=["tie", "a", "b"])
    store.add_user("ann")
    store.enqueue("panda", [{"item_id": "0", "item": {"x": 1}, "draft_label": "a"}])
    rows = [
        ("f.jsonl:1", "0", {"idx": 0, "labels": [1, 1, 1], "judge": 1}),
        ("f.jsonl:2", "1", {"idx": 1, "labels": [1, 2, 0], "judge": 2, "text": "hi"}),
        ("f.jsonl:3", "2", {"idx": 2, "labels": [2, None], "judge": 2}),
    ]
    spec = ImportSpec(("labels",), label_map=parse_label_map("0=tie,1=a,2=b"), critic_field="judge")
    found = plan(rows, spec)
    first = import_decisions(store, "panda", found, by="cli:tester")
    assert (first.items, first.items_added, first.decisions, first.added) == (3, 2, 7, 7)
    assert (first.settled, first.to_adjudicate, first.existing) == (1, 1, 0)
    assert first.users_added == ("labels.1", "labels.2", "labels.3")
    assert store.task("panda", "0").state == "done"
    assert store.task("panda", "0").final_label == "a"
    assert store.task("panda", "1").state == "adjudication"
    assert store.task("panda", "2").state == "pending"  # two of three reviews so far
    assert store.task("panda", "1").item == {"idx": 1, "text": "hi"}
    assert store.task("panda", "1").draft_label == "b"
    history = store.history("panda", "1")
    assert [e.kind for e in history] == ["enqueued", "imported"]
    assert history[-1].actor == "cli:tester"
    assert [d["source"] for d in history[-1].after["decisions"]] == [  # type: ignore[index]
        "f.jsonl:2: labels[0]", "f.jsonl:2: labels[1]", "f.jsonl:2: labels[2]",
    ]  # fmt: skip
    with store._read() as conn:
        reasons = set(conn.execute(select(claims.c.end_reason)).scalars())
    assert reasons == {"imported"}
    evidence = read(store, "panda")
    assert {j.seconds for j in evidence.judgments} == {None}  # imported: not timed

    again = import_decisions(store, "panda", found, by="cli:tester")
    assert (again.items_added, again.added, again.existing, again.users_added) == (0, 0, 7, ())
    assert len(store.decisions("panda")) == 7
    assert [e.kind for e in store.history("panda", "1")] == ["enqueued", "imported"]

    more = plan([("g.jsonl:1", "1", {"labels": [1, 1, 1, 2]})], spec)
    late = import_decisions(store, "panda", more, by="cli:tester")
    assert (late.added, late.existing, late.skipped) == (0, 3, 1)  # item 1 awaits adjudication


def test_import_errors_name_the_line_and_field(store: Store) -> None:
    store.create_queue("q", labels=["safe", "unsafe"])
    spec = ImportSpec(("a1", "a2"), label_map={"0": "safe", "1": "unsafe"})
    with pytest.raises(QueueError, match=r"f:2: a2: label '7' is not in the label map"):
        plan([("f:1", "x", {"a1": 0, "a2": 1}), ("f:2", "y", {"a1": 0, "a2": 7})], spec)
    with pytest.raises(QueueError, match=r"f:1: no field 'a2'") as missing:
        plan([("f:1", "x", {"a1": 0, "a_2": 1})], spec)
    assert missing.value.hint == "did you mean 'a_2'?"
    long = ImportSpec(("label",), reviewer_field="who")
    with pytest.raises(QueueError, match=r"f:2: label: bob labels item 'x' 'no', but 'yes' at f:1"):
        plan([("f:1", "x", {"who": "bob", "label": "yes"}),
              ("f:2", "x", {"who": "bob", "label": "no"})], long)  # fmt: skip
    with pytest.raises(QueueError, match=r"f:1: who: user name 'b b' may not contain ' '"):
        plan([("f:1", "x", {"who": "b b", "label": "yes"})], long)
    found = plan([("f:1", "x", {"who": "bob", "label": "maybe"})], long)
    with pytest.raises(QueueError, match=r"f:1: label: label 'maybe' is not one of queue 'q'"):
        import_decisions(store, "q", found, by="t")
    assert store.tasks("q") == []  # nothing written
    with pytest.raises(QueueError, match="is not FROM=TO"):
        parse_label_map("0=tie,1")
