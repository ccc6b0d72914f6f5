"""Queues change after creation: labels (adding only once decided), overlap, blindness (for
items not yet claimed), lease, description, hidden fields; archive and delete; guidelines.
Every change is an event. On SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from adjudication import QueueError, Store
from adjudication.guidelines import Guidelines, arrange
from adjudication.schema import events


def _events(store: Store, kind: str) -> list[tuple[dict | None, dict | None]]:  # type: ignore[type-arg]
    with store._read() as conn:
        rows = conn.execute(
            select(events.c.before, events.c.after).where(events.c.kind == kind)
        ).all()
    return [(r[0], r[1]) for r in rows]


def _team(store: Store, *names: str) -> None:
    for name in names:
        store.add_user(name)


def _queue(store: Store, **settings: object) -> None:
    _team(store, "ann", "bob")
    store.create_queue("q", labels=["safe", "unsafe"], members=["ann", "bob"], **settings)  # type: ignore[arg-type]
    store.enqueue("q", [{"item_id": f"i{n}", "draft_label": "safe"} for n in range(3)])


def test_every_setting_changes_and_is_one_event(store: Store) -> None:
    _queue(store)
    edited = store.edit_queue(
        "q",
        overlap=2,
        lease_seconds=120,
        description="Harm <b>triage</b>",
        hidden_fields=["human_preference", "source"],
        labels=["safe", "unsafe", "unsure"],
        by="ada",
    )
    assert (edited.overlap, edited.lease_seconds, edited.description) == (
        2, 120, "Harm <b>triage</b>",
    )  # fmt: skip
    assert edited.hidden_fields == ("human_preference", "source")
    assert edited.labels == ("safe", "unsafe", "unsure")
    assert store.queue("q") == edited
    ((before, after),) = _events(store, "queue_edited")
    assert before == {"overlap": 1, "lease_seconds": 600, "description": None,
                      "hidden_fields": None, "labels": ["safe", "unsafe"]}  # fmt: skip
    assert after is not None and after["hidden_fields"] == ["human_preference", "source"]
    store.edit_queue("q", overlap=2, by="ada")  # nothing changes: no event
    assert len(_events(store, "queue_edited")) == 1
    cleared = store.edit_queue("q", description="", hidden_fields=[], by="ada")
    assert cleared.description is None and cleared.hidden_fields == ()


def test_labels_are_only_added_once_decisions_use_them(store: Store) -> None:
    _queue(store)
    store.edit_queue("q", labels=["unsafe", "safe"])  # no decision yet: reordering is fine
    with pytest.raises(QueueError, match="uses the labels safe"):
        store.edit_queue("q", labels=["unsafe", "other"])  # the drafts say "safe"
    claim = store.claim("q", "ann")
    assert claim is not None
    store.decide(claim.token, "edit", label="unsafe")
    with pytest.raises(QueueError, match="can only be added to; the new list drops safe"):
        store.edit_queue("q", labels=["unsafe", "unsure"])
    with pytest.raises(QueueError, match="without repeats"):
        store.edit_queue("q", labels=["unsafe", "Unsafe"])
    assert store.edit_queue("q", labels=["unsafe", "safe", "unsure"]).labels == (
        "unsafe", "safe", "unsure",
    )  # fmt: skip
    claim = store.claim("q", "ann")
    assert claim is not None
    assert store.decide(claim.token, "edit", label="unsure").label == "unsure"


def test_a_queue_with_added_labels_still_takes_its_constitutions_items(store: Store) -> None:
    store.create_queue("pref")
    store.adopt_labels("pref", ["A", "B", "tie"], {"A": "Response A"})
    store.edit_queue("pref", labels=["A", "B", "tie", "both bad"])
    store.adopt_labels("pref", ["A", "B", "tie"], {"B": "Response B"})  # a subset: taken
    assert store.queue("pref").label_descriptions == {"A": "Response A", "B": "Response B"}
    with pytest.raises(QueueError, match="has the labels"):
        store.adopt_labels("pref", ["A", "C"])


def test_raising_overlap_keeps_items_open_and_lowering_it_settles_them(store: Store) -> None:
    _queue(store, overlap=3)
    for name in ("ann", "bob"):
        claim = store.claim("q", name)
        assert claim is not None and claim.task.item_id == "i0"
        store.decide(claim.token, "accept")
    assert store.task("q", "i0").state == "pending"
    held = store.claim("q", "ann")  # ann holds i1 while the overlap is lowered
    assert held is not None and held.task.item_id == "i1"
    edited = store.edit_queue("q", overlap=2, by="ada")
    assert edited.overlap == 2
    i0 = store.task("q", "i0")
    assert (i0.state, i0.final_label, i0.final_source) == ("done", "safe", "human")
    assert store.task("q", "i1").state == "pending"  # one review short: still open
    ((_, after),) = _events(store, "queue_edited")
    assert after is not None and after["items_settled"] == 1
    ((_, settled),) = _events(store, "settled")
    assert settled is not None and settled["reason"] == "overlap lowered to 2"


def test_blindness_changes_only_for_items_not_yet_claimed(store: Store) -> None:
    _queue(store)
    seen = store.claim("q", "ann")  # ann sees i0's draft under the old, open setting
    assert seen is not None and not seen.blind and seen.task.draft_label == "safe"
    store.edit_queue("q", blind=True, by="ada")
    assert store.task("q", "i0").blind is False and store.task("q", "i1").blind is None
    again = store.claim("q", "ann")  # the same claim: i0 keeps the blindness it was seen under
    assert again is not None and again.task.item_id == "i0" and not again.blind
    store.decide(again.token, "accept")  # no pick needed
    fresh = store.claim("q", "ann")
    assert fresh is not None and fresh.task.item_id == "i1" and fresh.blind
    assert fresh.task.draft_label is None  # the draft is hidden until the pick
    with pytest.raises(QueueError, match="pick your own label"):
        store.decide(fresh.token, "accept", label="safe")
    store.pick(fresh.token, "safe")
    store.decide(fresh.token, "accept", label="safe")
    ((_, after),) = _events(store, "queue_edited")
    assert after == {"blind": True, "items_keeping_blindness": 1}


def test_blind_origins_name_items_claimed_under_another_blindness(store: Store) -> None:
    _team(store, "ann")
    store.create_queue("q", blind=True, members=["ann"])
    store.enqueue("q", [{"item_id": f"i{n}", "origin": f"run/i{n}"} for n in range(2)])
    store.claim("q", "ann")
    store.edit_queue("q", blind=False)
    assert store.blind_origins("q") == {"run/i0": True}


def test_an_archived_queue_is_hidden_and_takes_no_claims_or_items(store: Store) -> None:
    _queue(store)
    store.add_user("ada", "admin")
    held = store.claim("q", "ann")
    assert held is not None
    archived = store.archive_queue("q", by="ada")
    assert archived.archived_at is not None
    assert [q.name for q in store.queues_for("ann")] == []
    assert [q.name for q in store.queues_for("ada")] == []
    assert [q.name for q in store.queues()] == ["q"]  # still there, for the admin pages
    with pytest.raises(QueueError, match="archived: it takes no claims"):
        store.claim("q", "ann")
    with pytest.raises(QueueError, match="archived: it takes no new items"):
        store.enqueue("q", [{"item_id": "late"}])
    with pytest.raises(Exception, match="already ended"):  # archiving ended the live lease
        store.decide(held.token, "accept")
    store.archive_queue("q", archived=False, by="ada")
    assert [q.name for q in store.queues_for("ann")] == ["q"]
    assert [k for k in ("queue_archived", "queue_unarchived") if _events(store, k)] == [
        "queue_archived", "queue_unarchived",
    ]  # fmt: skip


def test_delete_needs_an_empty_queue_or_force(store: Store) -> None:
    _queue(store)
    store.create_queue("empty")
    store.set_guidelines("q", "v1", {"title": "T"})
    claim = store.claim("q", "ann")
    assert claim is not None
    store.decide(claim.token, "accept")
    store.claim("q", "ann")
    with pytest.raises(QueueError, match=r"has 3 item.* and 1 decision") as refused:
        store.delete_queue("q")
    assert refused.value.hint is not None and "--force" in refused.value.hint
    assert store.delete_queue("empty").items == 0
    gone = store.delete_queue("q", force=True, by="ada")
    assert (gone.items, gone.decisions, gone.claims) == (3, 1, 2)
    assert [q.name for q in store.queues()] == []
    deleted = [after for _, after in _events(store, "queue_deleted")]
    assert deleted[-1] == {"queue": "q", "items": 3, "decisions": 1, "claims": 2}
    store.create_queue("q")  # the name is free again, with nothing of the old queue in it
    assert store.tasks("q") == [] and store.guidelines("q", "v1") is None


def test_guidelines_are_stored_once_per_key_and_cited_principles_come_first(
    store: Store,
) -> None:
    store.create_queue("q")
    content = {
        "title": "Harm",
        "version": "1.1",
        "instructions": "Judge <script>x</script> the reply.",
        "labels": [{"name": "safe", "description": "no harm"}],
        "principles": [
            {"id": "H1", "text": "No violence."},
            {"id": "H2", "text": "Be honest.", "examples": [{"text": "I lied", "label": "unsafe"}]},
        ],
    }
    assert store.set_guidelines("q", "abc", content, by="route") is True
    assert store.set_guidelines("q", "abc", content, by="route") is False
    assert len(_events(store, "guidelines_added")) == 1
    found = store.guidelines("q", "abc")
    assert found == Guidelines.model_validate(content)
    assert store.guidelines("q", "other") is None and store.guidelines("q", None) is None
    shown = arrange(found, ["H2", "H9"])
    assert [p.id for p in shown.cited] == ["H2"] and [p.id for p in shown.others] == ["H1"]
    assert shown.examples == 1
    with pytest.raises(QueueError, match=r"guidelines .bad.: labels\.0\.name"):
        store.set_guidelines("q", "bad", {"labels": [{"description": "no name"}]})
    store.enqueue("q", [{"item_id": "i", "guidelines": "abc"}])
    assert store.task("q", "i").guidelines == "abc"
