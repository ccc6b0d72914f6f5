"""The queue contract, run against every store (SQLite file and real PostgreSQL)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest

from adjudication import (
    REJECTED,
    LeaseError,
    NewTask,
    NotFoundError,
    PermissionDenied,
    QueueError,
    Store,
)
from adjudication.testing import FakeClock

LABELS = ["safe", "unsafe", "unclear"]


def items(n: int, **extra: Any) -> list[dict[str, Any]]:
    return [
        {
            "item_id": f"item-{i}",
            "item": {"prompt": f"p{i}", "response": f"r{i}"},
            "draft": {"critique": f"c{i}", "revision": f"v{i}"},
            "draft_label": "safe",
            "confidence": 0.5 + i / 100,
            "route_reason": "low_confidence",
            "principle_ids": ["H1"] if i % 2 == 0 else ["H2"],
            **extra,
        }
        for i in range(n)
    ]


def team(store: Store, reviewers: Sequence[str] = ("ann", "bob", "cat")) -> None:
    """Reviewers, an adjudicator and an admin; all but the admin work in every queue so far."""
    queues = [q.name for q in store.queues()]
    for name in reviewers:
        store.add_user(name, "reviewer", queues=queues)
    store.add_user("ada", "adjudicator", queues=queues)
    store.add_user("root", "admin")


@pytest.fixture
def pair(store: Store) -> Store:
    """A queue that wants two independent reviews per item, with one item in it."""
    store.create_queue("harm", overlap=2, labels=LABELS)
    team(store)
    store.enqueue("harm", items(1))
    return store


# -- queues, users, enqueue --------------------------------------------------------------------


def test_queue_settings_are_stored_with_defaults(store: Store) -> None:
    store.create_queue("harm", overlap=3, blind=True, labels=LABELS)
    queue = store.queue("harm")
    assert (queue.overlap, queue.blind, queue.lease_seconds) == (3, True, 600)
    assert queue.labels == tuple(LABELS)
    assert [q.name for q in store.queues()] == ["harm"]


def test_creating_a_queue_twice_or_with_bad_settings_is_refused(store: Store) -> None:
    store.create_queue("harm")
    with pytest.raises(QueueError, match="already exists"):
        store.create_queue("harm")
    with pytest.raises(QueueError, match="overlap"):
        store.create_queue("other", overlap=0)
    with pytest.raises(QueueError, match="without repeats"):
        store.create_queue("other", labels=["a", "a"])


def test_unknown_queue_error_suggests_the_close_name(store: Store) -> None:
    store.create_queue("harm-review")
    with pytest.raises(NotFoundError, match="no queue named 'harm-reveiw'") as err:
        store.enqueue("harm-reveiw", items(1))
    assert err.value.hint == "did you mean 'harm-review'?"


def test_users_have_roles_and_a_nullable_password_hash(store: Store) -> None:
    store.add_user("ann")
    store.add_user("ada", "adjudicator", password_hash="$argon2id$v=19$...")
    assert store.user("ann").role == "reviewer"
    assert store.user("ann").password_hash is None
    assert store.user("ada").password_hash == "$argon2id$v=19$..."
    updated = store.update_user("ann", role="admin", active=False)
    assert (updated.role, updated.active) == ("admin", False)
    with pytest.raises(QueueError, match="unknown role 'reveiwer'"):
        store.add_user("bob", "reveiwer")  # type: ignore[arg-type]
    with pytest.raises(QueueError, match="already exists"):
        store.add_user("ann")
    assert [u.name for u in store.users()] == ["ada", "ann"]


def test_enqueue_is_idempotent_on_queue_and_item_id(store: Store) -> None:
    store.create_queue("harm")
    store.create_queue("other")
    first = store.enqueue("harm", items(3))
    again = store.enqueue("harm", [*items(3), *items(1, draft_label="unsafe")])
    assert (first.added, first.existing) == (3, 0)
    assert (again.added, again.existing) == (0, 4)
    assert store.task("harm", "item-0").draft_label == "safe"  # the first enqueue stands
    assert store.enqueue("other", items(3)).added == 3  # same ids, other queue
    assert len(store.tasks("harm")) == 3


def test_enqueue_keeps_the_whole_routed_payload(store: Store) -> None:
    store.create_queue("harm")
    store.enqueue("harm", [NewTask(item_id="x", draft_label=2, principle_ids=["H1", "H3"])])
    store.enqueue("harm", items(1))
    task = store.task("harm", "item-0")
    assert task.item == {"prompt": "p0", "response": "r0"}
    assert task.draft == {"critique": "c0", "revision": "v0"}
    assert (task.route_reason, task.confidence, task.principle_ids) == (
        "low_confidence",
        0.5,
        ("H1",),
    )
    assert store.task("harm", "x").draft_label == "2"


def test_enqueue_rejects_bad_items_with_the_item_named(store: Store) -> None:
    store.create_queue("harm", labels=LABELS)
    with pytest.raises(QueueError, match=r"items\[1\] \(item_id 'b'\): confidence"):
        store.enqueue("harm", [{"item_id": "a"}, {"item_id": "b", "confidence": 3}])
    with pytest.raises(QueueError, match="lable"):
        store.enqueue("harm", [{"item_id": "a", "lable": "safe"}])
    with pytest.raises(QueueError, match="draft label 'safr' is not one of") as err:
        store.enqueue("harm", [{"item_id": "a", "draft_label": "safr"}])
    assert err.value.hint == "did you mean 'safe'?"
    assert store.tasks("harm") == []


# -- claiming ----------------------------------------------------------------------------------


def test_claims_come_least_confident_first(store: Store) -> None:
    store.create_queue("harm")
    team(store)
    store.enqueue(
        "harm",
        [
            {"item_id": "sure", "confidence": 0.9},
            {"item_id": "unsure", "confidence": 0.2},
            {"item_id": "parse-failure", "confidence": None},
            {"item_id": "pinned", "confidence": 0.95, "priority": -1},
        ],
    )
    order = []
    for name in ("ann", "bob", "cat", "ada"):
        claim = store.claim("harm", name)
        assert claim is not None
        order.append(claim.task.item_id)
    assert order == ["pinned", "parse-failure", "unsure", "sure"]


def test_claiming_again_returns_the_held_claim_with_a_renewed_lease(
    pair: Store, clock: FakeClock
) -> None:
    pair.enqueue("harm", items(2))
    first = pair.claim("harm", "ann")
    clock.advance(300)
    again = pair.claim("harm", "ann")
    assert first is not None and again is not None
    assert again.token == first.token
    assert again.task.item_id == first.task.item_id
    assert again.expires_at == clock() + timedelta(seconds=600)


def test_overlap_lets_k_reviewers_hold_one_item_and_no_more(pair: Store) -> None:
    ann, bob = pair.claim("harm", "ann"), pair.claim("harm", "bob")
    assert ann is not None and bob is not None
    assert ann.task.item_id == bob.task.item_id == "item-0"
    assert pair.claim("harm", "cat") is None


def test_a_reviewer_never_gets_an_item_they_decided(pair: Store) -> None:
    claim = pair.claim("harm", "ann")
    assert claim is not None
    pair.decide(claim.token, "accept")
    assert pair.claim("harm", "ann") is None
    other = pair.claim("harm", "bob")
    assert other is not None and other.task.item_id == "item-0"


def test_a_reviewer_cannot_adjudicate(pair: Store) -> None:
    with pytest.raises(PermissionDenied, match="only adjudicators and admins") as err:
        pair.claim("harm", "ann", kind="adjudication")
    assert err.value.hint and "adjudicator role" in err.value.hint


def test_inactive_and_unknown_users_cannot_claim(pair: Store) -> None:
    pair.update_user("ann", active=False)
    with pytest.raises(PermissionDenied, match="deactivated"):
        pair.claim("harm", "ann")
    with pytest.raises(NotFoundError, match="no user named 'bobb'") as err:
        pair.claim("harm", "bobb")
    assert err.value.hint == "did you mean 'bob'?"


# -- leases ------------------------------------------------------------------------------------


def test_an_expired_lease_frees_the_item_without_a_reaper(pair: Store, clock: FakeClock) -> None:
    ann, bob = pair.claim("harm", "ann"), pair.claim("harm", "bob")
    assert ann is not None and bob is not None
    assert pair.claim("harm", "cat") is None
    clock.advance(601)
    cat = pair.claim("harm", "cat")
    assert cat is not None and cat.task.item_id == "item-0"
    kinds = [event.kind for event in pair.history("harm", "item-0")]
    assert kinds.count("lease_expired") == 2


def test_a_decision_on_an_expired_lease_is_refused(pair: Store, clock: FakeClock) -> None:
    claim = pair.claim("harm", "ann")
    assert claim is not None
    clock.advance(600)
    with pytest.raises(LeaseError, match="lease on item 'item-0' in queue 'harm' expired") as err:
        pair.decide(claim.token, "accept")
    assert err.value.hint and "claim again" in err.value.hint
    assert pair.decisions("harm") == []


def test_heartbeats_keep_a_lease_alive(pair: Store, clock: FakeClock) -> None:
    claim = pair.claim("harm", "ann")
    assert claim is not None
    for _ in range(3):
        clock.advance(500)
        assert pair.heartbeat(claim.token) == clock() + timedelta(seconds=600)
    clock.advance(500)
    assert pair.decide(claim.token, "accept").reviewer == "ann"
    with pytest.raises(LeaseError, match="already ended"):
        pair.heartbeat(claim.token)


def test_a_heartbeat_does_not_revive_an_expired_lease(pair: Store, clock: FakeClock) -> None:
    claim = pair.claim("harm", "ann")
    assert claim is not None
    clock.advance(601)
    with pytest.raises(LeaseError, match="expired"):
        pair.heartbeat(claim.token)


def test_unknown_tokens_are_refused(pair: Store) -> None:
    with pytest.raises(LeaseError, match="unknown claim token"):
        pair.decide("forged", "accept")


def test_release_puts_the_item_back_for_anyone(pair: Store) -> None:
    claim = pair.claim("harm", "ann")
    assert claim is not None
    assert pair.release(claim.token) is True
    assert pair.release(claim.token) is False
    with pytest.raises(LeaseError, match="released"):
        pair.decide(claim.token, "accept")
    again = pair.claim("harm", "ann")
    assert again is not None and again.task.item_id == "item-0"
    assert again.token != claim.token


def test_skip_passes_the_item_to_others_only(pair: Store) -> None:
    claim = pair.claim("harm", "ann")
    assert claim is not None
    pair.skip(claim.token)
    assert pair.claim("harm", "ann") is None
    bob, cat = pair.claim("harm", "bob"), pair.claim("harm", "cat")
    assert bob is not None and cat is not None
    with pytest.raises(LeaseError, match="skipped"):
        pair.decide(claim.token, "accept")


# -- deciding ----------------------------------------------------------------------------------


def test_a_retried_submit_returns_the_stored_decision(pair: Store, clock: FakeClock) -> None:
    claim = pair.claim("harm", "ann")
    assert claim is not None
    first = pair.decide(claim.token, "edit", label="unsafe", note="slur in line 2")
    clock.advance(3600)  # even after the lease would have run out
    retry = pair.decide(claim.token, "edit", label="unsafe", note="slur in line 2")
    different = pair.decide(claim.token, "accept")
    assert retry == first == different
    assert len(pair.decisions("harm")) == 1


def test_time_spent_defaults_to_the_time_since_the_claim(pair: Store, clock: FakeClock) -> None:
    ann, bob = pair.claim("harm", "ann"), pair.claim("harm", "bob")
    assert ann is not None and bob is not None
    clock.advance(42)
    assert pair.decide(ann.token, "accept").seconds == 42
    assert pair.decide(bob.token, "accept", seconds=7.5).seconds == 7.5


@pytest.mark.parametrize(
    ("action", "kwargs", "message"),
    [
        ("approve", {}, "unknown action 'approve'"),
        ("accept", {"label": "unsafe"}, "accept keeps the critic's label 'safe'"),
        ("edit", {}, "edit needs a corrected label or edited fields"),
        ("edit", {"label": "unsure"}, "label 'unsure' is not one of queue 'harm'"),
        ("reject", {"label": "unsafe"}, "reject takes no label"),
        ("accept", {"edit": {"revision": "x"}}, "accept takes no edited fields"),
    ],
)
def test_invalid_decisions_are_refused_and_the_claim_stays_live(
    pair: Store, action: str, kwargs: dict[str, Any], message: str
) -> None:
    claim = pair.claim("harm", "ann")
    assert claim is not None
    with pytest.raises(QueueError, match=message):
        pair.decide(claim.token, action, **kwargs)  # type: ignore[arg-type]
    assert pair.decide(claim.token, "accept").action == "accept"


def test_agreeing_reviews_finish_the_item_as_human(pair: Store) -> None:
    for name in ("ann", "bob"):
        claim = pair.claim("harm", name)
        assert claim is not None
        pair.decide(claim.token, "edit", label="unsafe")
    task = pair.task("harm", "item-0")
    assert (task.state, task.final_label, task.final_source) == ("done", "unsafe", "human")
    assert pair.claim("harm", "cat") is None


def test_accept_and_an_edit_to_the_same_label_agree(pair: Store) -> None:
    ann, bob = pair.claim("harm", "ann"), pair.claim("harm", "bob")
    assert ann is not None and bob is not None
    pair.decide(ann.token, "accept")
    pair.decide(bob.token, "edit", label="safe")
    assert pair.task("harm", "item-0").state == "done"


def test_disagreement_goes_to_an_adjudicator_who_sees_every_answer(pair: Store) -> None:
    ann, bob = pair.claim("harm", "ann"), pair.claim("harm", "bob")
    assert ann is not None and bob is not None
    pair.decide(ann.token, "accept", note="fine")
    pair.decide(bob.token, "edit", label="unsafe", note="threat")
    assert pair.task("harm", "item-0").state == "adjudication"
    assert pair.claim("harm", "cat") is None  # reviewers cannot take it
    adjudication = pair.claim("harm", "ada")
    assert adjudication is not None and adjudication.kind == "adjudication"
    side_by_side = [(d.reviewer, d.action, d.label, d.note) for d in adjudication.answers]
    assert side_by_side == [
        ("ann", "accept", "safe", "fine"),
        ("bob", "edit", "unsafe", "threat"),
    ]
    assert adjudication.task.draft_label == "safe"
    with pytest.raises(QueueError, match="cannot escalate"):
        pair.decide(adjudication.token, "escalate")
    pair.decide(adjudication.token, "edit", label="unsafe")
    task = pair.task("harm", "item-0")
    assert (task.state, task.final_label, task.final_source) == ("done", "unsafe", "adjudicated")


def test_an_escalation_goes_to_adjudication_even_without_overlap(store: Store) -> None:
    store.create_queue("solo", overlap=1)
    team(store)
    store.enqueue("solo", items(2))
    claim = store.claim("solo", "ann")
    assert claim is not None
    store.decide(claim.token, "escalate", note="needs legal")
    other = store.claim("solo", "ann")
    assert other is not None
    store.decide(other.token, "accept")
    assert [t.state for t in store.tasks("solo")] == ["adjudication", "done"]
    # adjudicators get adjudications before reviews; admins adjudicate too
    admin = store.claim("solo", "root")
    assert admin is not None and admin.kind == "adjudication"
    assert store.claim("solo", "ada") is None  # the one adjudication is taken
    store.decide(admin.token, "reject", note="not our policy area")
    task = store.task("solo", "item-0")
    assert (task.state, task.rejected, task.final_label) == ("done", True, None)


def test_two_rejections_agree(pair: Store) -> None:
    for name in ("ann", "bob"):
        claim = pair.claim("harm", name)
        assert claim is not None
        pair.decide(claim.token, "reject")
    task = pair.task("harm", "item-0")
    assert (task.state, task.rejected, task.final_source) == ("done", True, "human")


def test_different_edited_revisions_need_adjudication(pair: Store) -> None:
    pair.enqueue("harm", items(2))
    for name, revision in (("ann", "one"), ("bob", "two")):
        claim = pair.claim("harm", name)
        assert claim is not None
        pair.decide(claim.token, "edit", edit={"revision": revision})
    for name in ("ann", "bob"):
        claim = pair.claim("harm", name)
        assert claim is not None
        pair.decide(claim.token, "edit", edit={"revision": "same"})
    assert pair.task("harm", "item-0").state == "adjudication"
    done = pair.task("harm", "item-1")
    assert (done.state, done.final_label, done.final_edit) == ("done", "safe", {"revision": "same"})


def test_a_blind_queue_hides_the_draft_from_reviewers_only(store: Store) -> None:
    store.create_queue("blind", overlap=2, blind=True, labels=LABELS)
    team(store)
    store.enqueue("blind", items(1))
    ann = store.claim("blind", "ann")
    assert ann is not None
    seen = ann.task
    hidden = (seen.draft, seen.draft_label, seen.confidence, seen.route_reason, seen.principle_ids)
    assert hidden == ({}, None, None, None, ())  # before the pick, nothing from the draft
    assert ann.task.item == {"prompt": "p0", "response": "r0"}
    assert store.picked("blind", "item-0", "ann") is None
    store.pick(ann.token, "unsafe")
    assert store.picked("blind", "item-0", "ann") == "unsafe"
    after = store.held("blind", "ann", kind="review")
    assert after is not None and after.pick == "unsafe"
    assert (after.task.draft, after.task.draft_label, after.task.confidence) == ({}, None, None)
    assert (after.task.route_reason, after.task.principle_ids) == ("low_confidence", ("H1",))
    with pytest.raises(QueueError, match="a blind pick cannot change"):
        store.decide(ann.token, "accept")  # accept confirms the pick, so it names it
    store.decide(ann.token, "accept", label="unsafe")
    bob = store.claim("blind", "bob")
    assert bob is not None
    store.pick(bob.token, "safe")
    store.decide(bob.token, "edit", label="safe")
    ada = store.claim("blind", "ada")
    assert ada is not None and ada.task.draft_label == "safe"
    assert ada.task.draft == {"critique": "c0", "revision": "v0"}


def test_a_blind_review_cannot_accept_or_edit_before_its_pick(store: Store) -> None:
    """Issue 19, item 5: accept and edit are told apart by the draft's label, so a decision
    with a guessed label before the pick would answer against the hidden draft."""
    store.create_queue("blind", blind=True, labels=LABELS)
    team(store)
    store.enqueue("blind", items(2))  # the critic's label is "safe" on both
    ann = store.claim("blind", "ann")
    assert ann is not None
    refusals: dict[str, set[str]] = {"accept": set(), "edit": set()}
    for action, label, edit in [
        ("accept", "safe", None),  # the right guess
        ("accept", "unsafe", None),
        ("edit", "safe", None),
        ("edit", "unsafe", None),
        ("edit", None, {"revision": "mine"}),
    ]:
        with pytest.raises(QueueError) as refused:
            store.decide(ann.token, action, label=label, edit=edit)  # type: ignore[arg-type]
        refusals[action].add(str(refused.value))
    # The same refusal whatever the guess and the action (a client may choose accept or edit
    # by the draft), naming the queue, the item and what to do.
    refusal = (
        "queue 'blind' is blind: pick your own label for item 'item-0' first, then confirm it"
        "\n  hint: pick a label (the number keys; Store.pick), then accept with that label"
    )
    assert refusals == {"accept": {refusal}, "edit": {refusal}}
    assert store.decisions("blind") == []
    # Reject and escalate do not depend on the draft; taking one back gives no pick either.
    store.decide(ann.token, "reject")
    undone = store.undo("blind", "ann")
    assert undone.claim.pick is None and undone.claim.task.route_reason is None
    with pytest.raises(QueueError, match="pick your own label"):
        store.decide(undone.claim.token, "accept", label="safe")
    store.pick(undone.claim.token, "unsafe")
    store.decide(undone.claim.token, "accept", label="unsafe")
    kinds = [e.kind for e in store.history("blind", "item-0")]
    assert kinds == ["enqueued", "claimed", "decided", "withdrawn", "claimed", "picked", "decided"]
    # An admin's review claim is a blind review too; an adjudication claim is not.
    root = store.claim("blind", "root")
    assert root is not None and root.kind == "review"
    with pytest.raises(QueueError, match="pick your own label"):
        store.decide(root.token, "accept", label="safe")


def test_reopen_starts_a_new_round_and_keeps_the_old_decisions(pair: Store) -> None:
    for name in ("ann", "bob"):
        claim = pair.claim("harm", name)
        assert claim is not None
        pair.decide(claim.token, "accept")
    with pytest.raises(PermissionDenied, match="cannot reopen"):
        pair.reopen("harm", "item-0", by="ann")
    task = pair.reopen("harm", "item-0", by="root", reason="policy changed")
    assert (task.state, task.round, task.reviews, task.final_label) == ("pending", 2, 0, None)
    with pytest.raises(QueueError, match="still open"):
        pair.reopen("harm", "item-0", by="root")
    again = pair.claim("harm", "ann")  # a new round: earlier reviewers may review again
    assert again is not None and again.task.round == 2
    pair.decide(again.token, "edit", label="unsafe")
    assert [(d.reviewer, d.round, d.label) for d in pair.decisions("harm", "item-0")] == [
        ("ann", 1, "safe"),
        ("bob", 1, "safe"),
        ("ann", 2, "unsafe"),
    ]


# -- history and reading -----------------------------------------------------------------------


def test_every_state_change_is_an_event_with_before_and_after(
    pair: Store, clock: FakeClock
) -> None:
    ann = pair.claim("harm", "ann")
    assert ann is not None
    pair.skip(ann.token)
    bob = pair.claim("harm", "bob")
    clock.advance(700)
    cat, ada = pair.claim("harm", "cat"), pair.claim("harm", "ada", kind="review")
    assert bob is not None and cat is not None and ada is not None
    pair.decide(cat.token, "accept")
    pair.decide(ada.token, "reject", note="spam")
    history = pair.history("harm", "item-0")
    assert [(e.kind, e.actor) for e in history] == [
        ("enqueued", None),
        ("claimed", "ann"),
        ("skipped", "ann"),
        ("claimed", "bob"),
        ("lease_expired", None),
        ("claimed", "cat"),
        ("claimed", "ada"),
        ("decided", "cat"),
        ("decided", "ada"),
    ]
    last = history[-1]
    assert last.before is not None and last.after is not None
    assert last.before["state"] == "pending"
    assert last.after["state"] == "adjudication"
    assert last.after["note"] == "spam"
    assert history[4].before is not None and history[4].before["reviewer"] == "bob"
    assert all(e.at.tzinfo is not None for e in history)


def test_outcomes_give_label_source_reviewers_and_agreement(store: Store) -> None:
    store.create_queue("harm", overlap=3, labels=LABELS)
    team(store)
    store.enqueue("harm", items(3))
    script = {
        "item-0": ["accept", "accept", "accept"],
        "item-1": ["accept", "accept", ("edit", "unsafe")],
    }
    for name, index in (("ann", 0), ("bob", 1), ("cat", 2)):
        for item_id, actions in script.items():
            claim = store.claim("harm", name)
            assert claim is not None and claim.task.item_id == item_id
            action = actions[index]
            if isinstance(action, tuple):
                store.decide(claim.token, action[0], label=action[1])  # type: ignore[arg-type]
            else:
                store.decide(claim.token, action)  # type: ignore[arg-type]
    adjudication = store.claim("harm", "ada")
    assert adjudication is not None
    store.decide(adjudication.token, "edit", label="unsafe")
    outcomes = {o.item_id: o for o in store.outcomes("harm")}
    assert (outcomes["item-0"].label, outcomes["item-0"].source) == ("safe", "human")
    assert (outcomes["item-0"].reviewers, outcomes["item-0"].agreement) == (3, 1.0)
    assert (outcomes["item-1"].label, outcomes["item-1"].source) == ("unsafe", "adjudicated")
    assert outcomes["item-1"].reviewers == 4
    assert outcomes["item-1"].agreement == pytest.approx(1 / 3)
    assert (outcomes["item-2"].label, outcomes["item-2"].source) == ("safe", "critic")
    assert (outcomes["item-2"].state, outcomes["item-2"].reviewers) == ("pending", 0)


def test_stats_count_states_actions_and_overrides(pair: Store) -> None:
    pair.enqueue("harm", items(4))
    decide = {"ann": ["accept", "reject", "escalate"], "bob": ["accept", "accept", "accept"]}
    for name, actions in decide.items():
        for action in actions:
            claim = pair.claim("harm", name)
            assert claim is not None
            pair.decide(claim.token, action)  # type: ignore[arg-type]
    held = pair.claim("harm", "cat")
    stats = pair.stats("harm")
    assert (stats.tasks, stats.pending, stats.adjudication, stats.done) == (4, 1, 2, 1)
    assert held is not None and stats.claimed == 1
    assert stats.actions == {"accept": 4, "edit": 0, "reject": 1, "escalate": 1}
    assert stats.reviews == 6
    assert stats.override_rate == pytest.approx(1 / 5)
    assert stats.escalation_rate == pytest.approx(1 / 6)


def test_agreement_is_computed_from_stored_decisions_by_item(store: Store) -> None:
    store.create_queue("harm", overlap=2, labels=LABELS)
    team(store)
    store.enqueue("harm", items(4))
    answers = {
        "ann": ["safe", "unsafe", "safe", "unsafe"],
        "bob": ["safe", "unsafe", "unsafe", REJECTED],
    }
    for name, labels in answers.items():
        for label in labels:
            claim = store.claim("harm", name)
            assert claim is not None
            if label == REJECTED:
                store.decide(claim.token, "reject")
            else:
                store.decide(claim.token, "edit", label=label)
    ratings = store.ratings("harm")
    assert ratings["item-3"] == {"ann": "unsafe", "bob": REJECTED}
    assert set(store.ratings("harm", principle="H1")) == {"item-0", "item-2"}
    report = store.agreement("harm")
    assert report.overall.items == 4
    assert report.overall.percent == pytest.approx(0.5)
    assert report.pairs["ann", "bob"].items == 4
    assert report.by_principle["H1"].percent == pytest.approx(0.5)
    assert report.by_principle["H2"].percent == pytest.approx(0.5)
    assert report.by_reviewer["ann"].with_critic == pytest.approx(0.5)
    # item-0 and item-1 are done by agreement: critic said safe, humans safe and unsafe
    assert report.critic_vs_human.items == 2
    assert report.critic_vs_human.percent == pytest.approx(0.5)


def test_ordinal_queues_report_ordinal_alpha_in_their_label_order(store: Store) -> None:
    with pytest.raises(QueueError, match="ordinal queue needs its labels"):
        store.create_queue("bad", ordinal=True)
    store.create_queue("nominal", overlap=2, labels=LABELS)
    store.create_queue("scale", overlap=2, labels=["low", "mid", "high"], ordinal=True)
    team(store)
    for queue, answers in (("nominal", ["safe", "unsafe"]), ("scale", ["low", "mid"])):
        store.enqueue(queue, [{"item_id": f"i{n}", "draft_label": answers[0]} for n in range(2)])
        for name, label in (("ann", answers[0]), ("bob", answers[1]), ("ann", answers[1])):
            claim = store.claim(queue, name)
            assert claim is not None
            store.decide(claim.token, "edit", label=label)
        claim = store.claim(queue, "bob")
        assert claim is not None
        store.decide(claim.token, "edit", label=answers[1])
    assert store.queue("scale").ordinal is True
    assert store.agreement("nominal").overall.alpha_ordinal is None
    assert store.agreement("scale").overall.alpha_ordinal is not None


# -- queue membership --------------------------------------------------------------------------


def test_only_members_and_admins_claim_in_a_queue(pair: Store) -> None:
    pair.create_queue("secret", labels=LABELS)
    pair.enqueue("secret", items(2))
    for user in ("ann", "ada"):
        with pytest.raises(
            PermissionDenied, match=f"{user} is not a member of queue 'secret'"
        ) as e:
            pair.claim("secret", user)
        assert e.value.hint == f"an admin can add them: critic queue assign secret {user}"
        with pytest.raises(PermissionDenied):
            pair.queue_for(user, "secret")
    root = pair.claim("secret", "root")  # admins work in every queue without being members
    assert root is not None and root.kind == "review"
    assert [q.name for q in pair.queues_for("ann")] == ["harm"]
    assert [q.name for q in pair.queues_for("root")] == ["harm", "secret"]
    assert pair.add_members("secret", ["ann", "ann", "ada"], by="root") == ["ann", "ada"]
    assert pair.add_members("secret", ["ann"]) == []  # already in: nothing changes
    assert [u.name for u in pair.members("secret")] == ["ada", "ann"]
    assert [q.name for q in pair.queues_for("ann")] == ["harm", "secret"]
    claim = pair.claim("secret", "ann")
    assert claim is not None and claim.task.item_id != root.task.item_id
    assert pair.queue_for("ann", "secret").name == "secret"
    assert pair.queue_for("root", "secret").labels == tuple(LABELS)
    with pytest.raises(NotFoundError, match="no queue named 'secrte'") as unknown:
        pair.queue_for("ann", "secrte")
    assert unknown.value.hint is None  # the access path names no other queue (SECURITY.md 4)
    with pytest.raises(NotFoundError, match="no user named 'anne'"):
        pair.queue_for("anne", "secret")
    pair.update_user("ada", active=False)
    everyone = pair.memberships()
    assert everyone["ann"] == ["harm", "secret"] and everyone["ada"] == []  # inactive: none
    assert everyone["root"] == ["harm", "secret"]  # admins: every queue
    assert everyone == {u.name: [q.name for q in pair.queues_for(u.name)] for u in pair.users()}


def test_removing_a_member_ends_their_claims_in_that_queue_only(pair: Store) -> None:
    pair.create_queue("other", labels=LABELS, members=["ann"])
    pair.enqueue("other", items(1))
    here = pair.claim("harm", "ann")
    there = pair.claim("other", "ann")
    assert here is not None and there is not None
    assert pair.remove_members("harm", ["ann", "bob", "ann"], by="root") == ["ann", "bob"]
    assert pair.remove_members("harm", ["ann"]) == []
    with pytest.raises(LeaseError, match="already ended"):
        pair.decide(here.token, "accept")
    with pytest.raises(PermissionDenied, match="ann is not a member of queue 'harm'"):
        pair.claim("harm", "ann")
    pair.decide(there.token, "accept")  # the claim in the other queue stands
    # The item ann held is free again at once, not only when her lease would have expired.
    cat = pair.claim("harm", "cat")
    assert cat is not None and cat.task.item_id == here.task.item_id
    kinds = [e.kind for e in pair.history("harm", here.task.item_id)]
    assert kinds == ["enqueued", "claimed", "claimed"]
    assert [u.name for u in pair.members("harm")] == ["ada", "cat"]


def test_membership_names_unknown_users_and_queues(store: Store) -> None:
    store.create_queue("harm-review")
    store.add_user("ann")
    with pytest.raises(NotFoundError, match="no user named 'anne'") as err:
        store.add_members("harm-review", ["anne"])
    assert err.value.hint == "did you mean 'ann'?"
    with pytest.raises(NotFoundError, match="no queue named 'harm-reveiw'"):
        store.add_user("bob", queues=["harm-reveiw"])
    assert [u.name for u in store.users()] == ["ann"]  # the failed add left nothing behind
    with pytest.raises(NotFoundError, match="no user named 'zed'"):
        store.create_queue("new", members=["zed"])
    assert [q.name for q in store.queues()] == ["harm-review"]


def test_an_adjudicator_reopens_only_in_their_queues(pair: Store) -> None:
    pair.create_queue("secret", labels=LABELS, members=["ann"])
    pair.enqueue("secret", items(1))
    claim = pair.claim("secret", "ann")
    assert claim is not None
    pair.decide(claim.token, "accept")
    with pytest.raises(PermissionDenied, match="ada is not a member of queue 'secret'"):
        pair.reopen("secret", "item-0", by="ada")
    assert pair.reopen("secret", "item-0", by="root").state == "pending"


def test_membership_changes_are_events(pair: Store) -> None:
    pair.create_queue("q2", members=["ann"], by="root")
    pair.remove_members("q2", ["ann"], by="root")
    assert pair.members("q2") == []
    assert pair.queues_for("ann") == [pair.queue("harm")]
    pair.update_user("bob", active=False)
    assert pair.queues_for("bob") == []  # a deactivated user works nowhere


# -- undo --------------------------------------------------------------------------------------


def test_undo_takes_the_decision_back_and_hands_the_item_back(store: Store) -> None:
    store.create_queue("solo", labels=LABELS)
    team(store)
    store.enqueue("solo", items(3))
    first = store.claim("solo", "ann")
    assert first is not None
    decided = store.decide(first.token, "edit", label="unsafe", note="oops")
    assert store.task("solo", "item-0").state == "done"
    held = store.claim("solo", "ann")  # already on to the next item
    assert held is not None and held.task.item_id == "item-1"
    assert store.last_decision("solo", "ann") == decided
    assert store.last_decision("solo", "bob") is None  # nothing decided yet
    with pytest.raises(NotFoundError, match="no user named 'anne'"):
        store.last_decision("solo", "anne")

    undone = store.undo("solo", "ann", decision=decided.id)
    assert undone.withdrawn == decided
    assert (undone.claim.task.item_id, undone.claim.kind) == ("item-0", "review")
    task = store.task("solo", "item-0")
    assert (task.state, task.reviews, task.final_label, task.final_source) == (
        "pending", 0, None, None
    )  # fmt: skip
    assert store.decisions("solo") == []
    assert store.last_decision("solo", "ann") is None
    # The item ann held meanwhile went back to the pool, and a new claim returns the undone one.
    bob = store.claim("solo", "bob")
    assert bob is not None and bob.task.item_id == "item-1"
    again = store.claim("solo", "ann")
    assert again is not None and again.token == undone.claim.token
    redone = store.decide(again.token, "accept")
    assert (redone.action, store.task("solo", "item-0").final_label) == ("accept", "safe")
    withdrawn = [e for e in store.history("solo", "item-0") if e.kind == "withdrawn"]
    assert len(withdrawn) == 1 and withdrawn[0].actor == "ann"
    assert withdrawn[0].before is not None and withdrawn[0].after is not None
    assert (withdrawn[0].before["action"], withdrawn[0].before["label"]) == ("edit", "unsafe")
    assert (withdrawn[0].before["state"], withdrawn[0].after["state"]) == ("done", "pending")
    assert [e.kind for e in store.history("solo", "item-1")][-2:] == ["released", "claimed"]
    stats = store.stats("solo")
    assert (stats.reviews, stats.actions["edit"], stats.actions["accept"]) == (1, 0, 1)


def test_a_repeated_undo_does_not_take_back_the_decision_before(store: Store) -> None:
    store.create_queue("solo", labels=LABELS)
    team(store)
    store.enqueue("solo", items(2))
    ids = []
    for _ in range(2):
        claim = store.claim("solo", "ann")
        assert claim is not None
        ids.append(store.decide(claim.token, "accept").id)
    store.undo("solo", "ann", decision=ids[1])
    with pytest.raises(QueueError, match=f"decision {ids[1]} is not ann's newest") as err:
        store.undo("solo", "ann", decision=ids[1])
    assert err.value.hint and "reload" in err.value.hint
    assert [d.id for d in store.decisions("solo")] == [ids[0]]
    # Asked for by its id, the older decision can be undone as well.
    store.undo("solo", "ann", decision=ids[0])
    assert store.decisions("solo") == []


def test_undo_of_one_review_in_an_overlap_round(pair: Store) -> None:
    ann = pair.claim("harm", "ann")
    bob = pair.claim("harm", "bob")
    assert ann is not None and bob is not None
    pair.decide(ann.token, "accept")
    with pytest.raises(QueueError, match="cat has no decision in queue 'harm' to undo"):
        pair.undo("harm", "cat")
    pair.decide(bob.token, "edit", label="unsafe")
    assert pair.task("harm", "item-0").state == "adjudication"
    # Bob decided after ann: ann's decision is part of a settled round now.
    with pytest.raises(QueueError, match="bob decided item 'item-0' in queue 'harm' after you"):
        pair.undo("harm", "ann")
    undone = pair.undo("harm", "bob")
    task = pair.task("harm", "item-0")
    assert (task.state, task.reviews) == ("pending", 1)
    assert undone.claim.task.item_id == "item-0"
    assert pair.claim("harm", "cat") is None  # ann's review and bob's new lease fill both slots
    pair.decide(undone.claim.token, "accept")
    assert (pair.task("harm", "item-0").state, pair.task("harm", "item-0").final_source) == (
        "done", "human"
    )  # fmt: skip


def test_undo_is_refused_late_after_a_reopen_or_during_an_adjudication(
    pair: Store, clock: FakeClock
) -> None:
    ann = pair.claim("harm", "ann")
    assert ann is not None
    pair.decide(ann.token, "accept")
    clock.advance(601)
    with pytest.raises(QueueError, match="made 601 s ago; a decision can be undone for 600 s"):
        pair.undo("harm", "ann")
    assert pair.undo("harm", "ann", within=3600).claim.task.item_id == "item-0"
    again = pair.claim("harm", "ann")
    bob = pair.claim("harm", "bob")
    assert again is not None and bob is not None
    pair.decide(again.token, "accept")
    pair.decide(bob.token, "escalate")
    adjudication = pair.claim("harm", "ada", kind="adjudication")
    assert adjudication is not None
    with pytest.raises(QueueError, match="ada is adjudicating item 'item-0'"):
        pair.undo("harm", "bob")
    pair.release(adjudication.token)
    pair.reopen("harm", "item-0", by="ada")
    with pytest.raises(QueueError, match="was reopened after your decision"):
        pair.undo("harm", "bob")


def test_an_adjudicator_can_undo_an_adjudication(pair: Store) -> None:
    for user, label in (("ann", "safe"), ("bob", "unsafe")):
        claim = pair.claim("harm", user)
        assert claim is not None
        pair.decide(claim.token, "edit" if label != "safe" else "accept", label=label)
    adjudication = pair.claim("harm", "ada", kind="adjudication")
    assert adjudication is not None
    pair.decide(adjudication.token, "reject")
    assert pair.task("harm", "item-0").rejected
    undone = pair.undo("harm", "ada")
    assert undone.claim.kind == "adjudication" and len(undone.claim.answers) == 2
    task = pair.task("harm", "item-0")
    assert (task.state, task.rejected, task.final_source, task.reviews) == (
        "adjudication", False, None, 2
    )  # fmt: skip
    pair.decide(undone.claim.token, "edit", label="unsafe")
    assert pair.task("harm", "item-0").final_label == "unsafe"


def test_nothing_to_undo_is_a_clear_error(pair: Store) -> None:
    with pytest.raises(QueueError, match="ann has no decision in queue 'harm' to undo"):
        pair.undo("harm", "ann")
    pair.create_queue("secret")
    with pytest.raises(PermissionDenied, match="not a member"):
        pair.undo("secret", "ann")


# -- dashboard reads ---------------------------------------------------------------------------


def test_position_pending_count_and_lines(pair: Store) -> None:
    pair.enqueue("harm", items(4)[1:])  # confidences 0.51, 0.52, 0.53 come after item-0's 0.5
    assert [pair.position("harm", f"item-{i}") for i in range(4)] == [0, 1, 2, 3]
    assert pair.position("harm", "no-such-item") == 0
    with pytest.raises(NotFoundError, match="no queue named 'harn'"):
        pair.position("harn", "item-1")
    assert pair.pending_count("harm") == 4
    claim = pair.claim("harm", "ann")
    assert claim is not None
    pair.decide(claim.token, "edit", label="unsafe", edit={"revision": "new"}, note="n")
    lines = {line.item_id: line for line in pair.task_lines("harm")}
    assert set(lines) == {f"item-{i}" for i in range(4)}
    assert lines["item-1"].principle_ids == ("H2",) and lines["item-1"].draft_label == "safe"
    (line,) = pair.decision_lines("harm")
    assert (line.item_id, line.reviewer, line.action, line.label, line.edited, line.note) == (
        "item-0", "ann", "edit", "unsafe", True, "n"
    )  # fmt: skip
