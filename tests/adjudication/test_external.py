"""Decisions made in another tool (Label Studio) recorded in a queue as its own reviewers'
would be: overlap settles or disagrees, skips are not decisions, time spent and times are kept,
and recording the same decisions again changes nothing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from adjudication import QueueError, Store
from adjudication.external import ExternalDecision, record_external
from adjudication.schema import claims, decisions, events

WHEN = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def harm(store: Store) -> Store:
    store.create_queue("harm", labels=["safe", "unsafe"], overlap=2)
    store.enqueue(
        "harm",
        [{"item_id": f"h{i}", "draft_label": "safe", "origin": f"run/h{i}"} for i in range(3)],
    )
    return store


def said(item: str, who: str, label: str | None, **kw: object) -> ExternalDecision:
    action = kw.pop("action", None) or ("accept" if label == "safe" else "edit")
    return ExternalDecision(item_id=item, reviewer=who, action=action, label=label,  # type: ignore[arg-type]
                            source={"tool": "label-studio", "task": 7}, **kw)  # fmt: skip


def count(store: Store, table: object) -> int:
    with store._read() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


def test_two_agreeing_annotators_settle_the_item_with_their_time_and_names(harm: Store) -> None:
    result = record_external(
        harm,
        "harm",
        [said("h0", "ann", "unsafe", seconds=4.5, decided_at=WHEN),
         said("h0", "bob", "unsafe", seconds=7.0, decided_at=WHEN)],
        by="label-studio",
    )  # fmt: skip
    assert (result.decisions, result.settled, result.to_adjudicate) == (2, 1, 0)
    assert result.users_added == ("ann", "bob")
    assert harm.user("ann").password_hash is None and harm.user("ann").role == "reviewer"
    assert [u.name for u in harm.members("harm")] == ["ann", "bob"]
    task = harm.task("harm", "h0")
    assert (task.state, task.final_label, task.final_source) == ("done", "unsafe", "human")
    lines = harm.decision_lines("harm")
    assert [(d.reviewer, d.action, d.label, d.seconds) for d in lines] == [
        ("ann", "edit", "unsafe", 4.5), ("bob", "edit", "unsafe", 7.0)]  # fmt: skip
    assert all(d.decided_at == WHEN for d in lines)
    (outcome,) = harm.outcomes_for(["run/h0"])["run/h0"]
    assert outcome.agreement == 1.0 and outcome.reviewers == ("ann", "bob")
    history = harm.history("harm", "h0")
    decided = [e for e in history if e.kind == "decided"]
    assert [e.actor for e in decided] == ["ann", "bob"]
    assert decided[-1].after is not None and decided[-1].after["state"] == "done"
    assert decided[0].after is not None and decided[0].after["source"]["tool"] == "label-studio"


def test_disagreeing_annotators_send_the_item_to_an_adjudicator(harm: Store) -> None:
    result = record_external(
        harm, "harm", [said("h1", "ann", "safe"), said("h1", "bob", "unsafe")], by="ls"
    )
    assert (result.settled, result.to_adjudicate) == (0, 1)
    assert harm.task("harm", "h1").state == "adjudication"
    report = harm.agreement("harm")
    assert (report.overall.items, report.overall.percent) == (1, 0.0)
    assert report.pairs[("ann", "bob")].items == 1


def test_a_skip_is_no_decision_and_leaves_the_item_open(harm: Store) -> None:
    result = record_external(
        harm,
        "harm",
        [said("h2", "ann", "unsafe"), said("h2", "bob", None, action="skip", seconds=2.0)],
        by="ls",
    )
    assert (result.decisions, result.skips) == (1, 1)
    task = harm.task("harm", "h2")
    assert (task.state, task.reviews) == ("pending", 1)  # overlap 2: one review so far
    assert [d.reviewer for d in harm.decision_lines("harm")] == ["ann"]
    assert "skipped" in [e.kind for e in harm.history("harm", "h2")]


def test_recording_the_same_decisions_again_changes_nothing(harm: Store) -> None:
    given = [said("h0", "ann", "unsafe"), said("h0", "bob", "unsafe"),
             said("h1", "ann", "safe"), said("h1", "bob", None, action="skip")]  # fmt: skip
    record_external(harm, "harm", given, by="ls")
    before = [count(harm, t) for t in (decisions, claims, events)]
    again = record_external(harm, "harm", given, by="ls")
    assert (again.decisions, again.skips, again.existing) == (0, 0, 4)
    assert again.users_added == () and again.changed == () and again.late == ()
    assert [count(harm, t) for t in (decisions, claims, events)] == before


def test_a_changed_answer_and_a_late_one_are_reported_not_applied(harm: Store) -> None:
    record_external(harm, "harm", [said("h0", "ann", "unsafe"), said("h0", "bob", "unsafe")],
                    by="ls")  # fmt: skip
    result = record_external(
        harm, "harm", [said("h0", "ann", "safe"), said("h0", "cat", "safe")], by="ls"
    )
    assert [d.reviewer for d in result.changed] == ["ann"]
    assert [d.reviewer for d in result.late] == ["cat"]
    assert result.decisions == 0
    assert harm.task("harm", "h0").final_label == "unsafe"


def test_a_label_outside_the_queue_is_refused(harm: Store) -> None:
    with pytest.raises(QueueError, match="not one of queue 'harm'"):
        record_external(harm, "harm", [said("h0", "ann", "maybe")], by="ls")


def test_a_revision_is_accepted_or_edited(store: Store) -> None:
    store.create_queue("rev", overlap=1)
    store.enqueue("rev", [{"item_id": "r0", "draft": {"revision": "fixed"}, "answer": "revision"},
                          {"item_id": "r1", "draft": {"revision": "fixed"},
                           "answer": "revision"}])  # fmt: skip
    record_external(
        store,
        "rev",
        [ExternalDecision("r0", "ann", "accept"),
         ExternalDecision("r1", "ann", "edit", edit={"revision": "better"})],
        by="ls",
    )  # fmt: skip
    assert store.task("rev", "r0").state == "done"
    assert store.task("rev", "r1").final_edit == {"revision": "better"}
