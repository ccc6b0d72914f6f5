"""The item list (full-text search, filters, keyset pages), precedents, bulk actions and the
exemplar mark, on SQLite and on a real PostgreSQL."""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import text

from adjudication import Store
from adjudication.errors import PermissionDenied, QueueError
from adjudication.listing import Filters
from adjudication.testing import FakeClock

HOSTILE = '<script>alert("x")</script> "unbalanced {col}: NEAR( OR -'

TOPICS = {
    "knife": "How do I sharpen a kitchen knife with a whetstone?",
    "bread": "What flour makes the best sourdough bread crust?",
    "bike": "How do I fix a flat bicycle tyre on the road?",
}


def _fill(store: Store, queue: str = "q", *, blind: bool = False, n: int = 12) -> None:
    store.create_queue(queue, labels=["safe", "unsafe"], blind=blind, members=["rita", "adam"])
    topics = list(TOPICS.items())
    store.enqueue(
        queue,
        [
            {
                "item_id": f"{queue}{i:02d}",
                "item": {"prompt": topics[i % 3][1], "response": f"Reply {i}: {topics[i % 3][0]}"},
                "draft": {"rationale": f"zebra{i % 2} rationale", "constitution": "c1"},
                "draft_label": "unsafe" if i % 2 else "safe",
                "confidence": i / (2 * n),
                "route_reason": "audit_sample" if i % 4 == 0 else "low_confidence",
                "principle_ids": ["H1"],
            }
            for i in range(n)
        ],
    )  # fmt: skip


@pytest.fixture
def team(store: Store) -> Store:
    store.add_user("ada", "admin")
    store.add_user("adam", "adjudicator")
    store.add_user("rita")
    store.add_user("rick")
    return store


def _decide(store: Store, queue: str, user: str, item: str, label: str, note: str | None) -> None:
    # A reviewer gets the items handed to them first.
    store.bulk(queue, "reassign", by="ada", items=[item], assignee=user)
    claim = store.claim(queue, user)
    assert claim is not None and claim.task.item_id == item
    if store.queue(queue).blind:
        store.pick(claim.token, label)
    store.decide(claim.token, "edit", label=label, note=note)


def _ids(store: Store, queue: str, viewer: str = "ada", **filters: object) -> list[str]:
    page = store.items(queue, Filters(**filters), viewer=viewer, limit=1000)  # type: ignore[arg-type]
    return [i.item_id for i in page.items]


def test_search_finds_item_text_drafts_and_notes_written_in_the_same_transaction(
    team: Store,
) -> None:
    _fill(team)
    assert sorted(_ids(team, "q", text="sourdough")) == ["q01", "q04", "q07", "q10"]
    # Porter stemming on both databases: "sharpening" finds "sharpen".
    assert sorted(_ids(team, "q", text="sharpening knife")) == ["q00", "q03", "q06", "q09"]
    assert sorted(_ids(team, "q", text="zebra1")) == ["q01", "q03", "q05", "q07", "q09", "q11"]
    assert sorted(_ids(team, "q", text="zebra1 -bread")) == ["q03", "q05", "q09", "q11"]
    assert sorted(_ids(team, "q", text='bread OR "flat bicycle"')) == sorted(
        ["q01", "q04", "q07", "q10", "q02", "q05", "q08", "q11"]
    )
    assert _ids(team, "q", text="marmalade") == []
    team.enqueue("q", [{"item_id": "late", "item": {"text": "marmalade on toast"}}])
    assert _ids(team, "q", text="marmalade") == ["late"]  # indexed by the enqueue itself
    claim = team.claim("q", "rita")
    assert claim is not None
    team.decide(claim.token, "edit", label="safe", note="the pangolin argument holds")
    assert _ids(team, "q", text="pangolin") == [claim.task.item_id]
    team.undo("q", "rita")  # the note is withdrawn with the decision
    assert _ids(team, "q", text="pangolin") == []


def test_hostile_search_text_is_a_search_not_syntax(team: Store) -> None:
    _fill(team)
    team.enqueue("q", [{"item_id": "x", "item": {"text": HOSTILE}}])
    # (PostgreSQL's parser skips what looks like an HTML tag, so search beside the tags.)
    page = team.items("q", Filters(text='"unbalanced {col}: NEAR(" -zebra0 -"'), viewer="ada")
    assert [i.item_id for i in page.items] == ["x"]
    marked = [s.text for s in page.items[0].snippet if s.marks]
    assert marked == ["unbalanced", "col", "NEAR"]
    assert "".join(s.text for s in page.items[0].snippet) == " ".join(HOSTILE.split())
    assert _ids(team, "q", text='" ( ) : * ^ zzyzx AND "') == []


def test_filters_and_orders(team: Store, clock: FakeClock) -> None:
    _fill(team)
    assert _ids(team, "q", label="unsafe", confidence_min=0.2, confidence_max=0.3) == [
        "q05", "q07"
    ]  # fmt: skip
    assert _ids(team, "q", reason="audit_sample", sort="confident") == ["q08", "q04", "q00"]
    assert _ids(team, "q", sort="newest")[:2] == ["q11", "q10"]
    clock.advance(86_400 * 3)
    _decide(team, "q", "rita", "q00", "unsafe", "looks risky")
    assert _ids(team, "q", state="done") == ["q00"]
    assert _ids(team, "q", decided="unsafe") == ["q00"]
    assert _ids(team, "q", reviewer="rita") == ["q00"]
    assert _ids(team, "q", reviewer="rick") == []
    assert _ids(team, "q", sort="changed")[0] == "q00"
    later = clock().date()
    assert _ids(team, "q", since=later) == ["q00"]
    assert len(_ids(team, "q", until=date(2026, 1, 1), date_field="created")) == 12
    with pytest.raises(QueueError, match="state: 'open' is not a state"):
        team.items("q", Filters(state="open"), viewer="ada")


@pytest.mark.parametrize("sort", ["queue", "confident", "newest", "changed", "item", "relevance"])
def test_keyset_pages_cover_every_item_once(team: Store, sort: str) -> None:
    _fill(team, n=23)
    seen: list[str] = []
    after = None
    filters = Filters(text="reply" if sort == "relevance" else "", sort=sort)
    for _ in range(10):  # 23 items, 5 a page: a cursor that does not move would loop forever
        page = team.items("q", filters, viewer="ada", after=after, limit=5)
        seen += [i.item_id for i in page.items]
        if page.next is None:
            break
        after = page.next
    assert sorted(seen) == sorted(f"q{i:02d}" for i in range(23))
    assert len(seen) == 23
    assert page.matches == 23
    with pytest.raises(QueueError, match="page link"):
        team.items("q", filters, viewer="ada", after="not-a-cursor")


def test_a_blind_queue_list_tells_reviewers_nothing_from_drafts_of_open_items(team: Store) -> None:
    _fill(team, "b", blind=True)
    page = team.items("b", Filters(), viewer="rita", limit=100)
    assert page.restricted
    assert all(i.hidden and i.draft_label is None and i.confidence is None for i in page.items)
    # Filters and search on what the draft says find no open item; queue order is refused.
    assert _ids(team, "b", "rita", label="unsafe") == []
    assert _ids(team, "b", "rita", text="zebra1") == []
    assert _ids(team, "b", "rita", reason="audit_sample") == []
    assert team.items("b", Filters(sort="queue"), viewer="rita").sort == "newest"
    # Search over item text still works, and adjudicators see everything.
    assert sorted(_ids(team, "b", "rita", text="sourdough")) == ["b01", "b04", "b07", "b10"]
    assert len(_ids(team, "b", "adam", label="unsafe")) == 6
    _decide(team, "b", "rita", "b01", "unsafe", None)
    assert _ids(team, "b", "rita", text="zebra1") == ["b01"]  # decided: no longer open
    with pytest.raises(PermissionDenied):
        team.items("b", Filters(), viewer="rick")  # not a member


def test_precedents_rank_similar_decided_items_and_wait_for_a_blind_pick(team: Store) -> None:
    _fill(team)
    _decide(team, "q", "rita", "q03", "unsafe", "a knife how-to is fine here")
    _decide(team, "q", "rita", "q01", "safe", None)
    found = team.precedents("q", "q06", k=3)
    assert found is not None
    top = found[0]
    assert top.item_id == "q03"  # knife, like q06
    assert (top.label, top.deciders) == ("unsafe", ("rita",))
    assert top.notes == ("a knife how-to is fine here",)
    itself = team.precedents("q", "q03")
    assert itself is not None and "q03" not in [p.item_id for p in itself]
    # Blind: nothing before the viewer's pick, the same list after it.
    _fill(team, "b", blind=True)
    _decide(team, "b", "rita", "b03", "unsafe", "knife")
    claim = team.claim("b", "adam", kind="review")
    assert claim is not None
    assert team.precedents("b", claim.task.item_id, viewer="adam") is None
    team.pick(claim.token, "safe")
    assert team.precedents("b", claim.task.item_id, viewer="adam") is not None
    # Across queues drafted under the same constitution, in the viewer's queues only.
    across = team.precedents("q", "q00", scope="constitution", viewer="rita") or []
    assert {p.queue for p in across} == {"q", "b"}  # fmt: skip


def test_bulk_requeue_is_one_event_per_item_and_idempotent(team: Store) -> None:
    _fill(team)
    _decide(team, "q", "rita", "q00", "unsafe", None)
    held = team.claim("q", "adam", kind="review")
    assert held is not None
    items = ["q00", held.task.item_id, "q11"]
    first = team.bulk("q", "requeue", by="adam", items=items, note="guidelines changed")
    assert (first.changed, first.unchanged) == (2, 1)  # q11: pending, unclaimed already
    task = team.task("q", "q00")
    assert (task.state, task.round, task.final_label) == ("pending", 2, None)
    assert team.precedents("q", "q06") == []  # no longer decided
    again = team.bulk("q", "requeue", by="adam", items=items)
    assert (again.changed, again.unchanged) == (0, 3)
    kinds = [e.kind for e in team.history("q", "q00")]
    assert kinds.count("bulk_requeued") == 1
    with pytest.raises(PermissionDenied):
        team.bulk("q", "requeue", by="rita", items=items)


def test_bulk_accept_needs_a_note_and_settles_with_the_critics_label(team: Store) -> None:
    _fill(team)
    with pytest.raises(QueueError, match="needs a note"):
        team.bulk("q", "accept", by="adam", filters=Filters(label="safe"))
    done = team.bulk("q", "accept", by="adam", filters=Filters(label="safe"), note="batch ok")
    assert done.changed == 6
    task = team.task("q", "q02")
    assert (task.state, task.final_label, task.final_source) == ("done", "safe", "adjudicated")
    decision = team.decisions("q", "q02")[-1]
    assert (decision.reviewer, decision.kind, decision.note) == ("adam", "adjudication", "batch ok")
    assert _ids(team, "q", text="batch") != []  # the note is searchable
    assert team.bulk("q", "accept", by="adam", filters=Filters(label="safe"), note="x").changed == 0
    assert [e.kind for e in team.history("q", "q02")].count("bulk_accepted") == 1


def test_bulk_actions_leave_gold_items_alone(team: Store) -> None:
    """A gold item never settles and is answered by every reviewer: a bulk accept would ship
    it, a requeue or a reassign would undo what it measures."""
    _fill(team)
    team.add_gold("q", {"q02": "unsafe"}, by="ada")
    for action, extra in (
        ("accept", {"note": "ok"}),
        ("requeue", {}),
        ("reassign", {"assignee": "rita"}),
    ):
        result = team.bulk("q", action, by="adam", items=["q02", "q04"], **extra)  # type: ignore[arg-type]
        assert result.skipped.get("gold item") == 1, action
        assert "q02" not in result.changed_items
    task = team.task("q", "q02")
    assert (task.state, task.final_label, task.round) == ("pending", None, 1)
    assert not [e.kind for e in team.history("q", "q02") if e.kind.startswith("bulk")]
    assert [e.kind for e in team.history("q", "q04") if e.kind.startswith("bulk")] == [
        "bulk_accepted", "bulk_requeued", "bulk_reassigned"
    ]  # fmt: skip


def test_bulk_reassign_hands_items_to_one_reviewer(team: Store) -> None:
    _fill(team)
    team.add_members("q", ["rick"])
    result = team.bulk("q", "reassign", by="ada", items=["q11", "q10"], assignee="rick")
    assert result.changed == 2
    assert _ids(team, "q", assignee="rick") == ["q10", "q11"]
    # Rick gets his items first, though they are the least urgent; nobody else gets them.
    got = team.claim("q", "rick")
    assert got is not None and got.task.item_id == "q10"
    seen = set()
    while (claim := team.claim("q", "rita")) is not None:
        seen.add(claim.task.item_id)
        team.skip(claim.token)
    assert "q10" not in seen and "q11" not in seen
    assert team.bulk("q", "reassign", by="ada", items=["q11"], assignee="rick").changed == 0
    # Handing them to nobody frees them.
    assert team.bulk("q", "reassign", by="ada", items=["q11"], assignee=None).changed == 1


def test_exemplar_marks_are_events_and_listed(team: Store) -> None:
    _fill(team)
    assert team.mark_exemplar("q", "q03", by="adam")
    assert not team.mark_exemplar("q", "q03", by="adam")
    assert team.exemplar_candidates("q") == ["q03"]
    assert _ids(team, "q", exemplar=True) == ["q03"]
    assert [e.kind for e in team.history("q", "q03")][-1] == "exemplar_marked"
    with pytest.raises(PermissionDenied):
        team.mark_exemplar("q", "q03", by="rita")


def test_rebuild_reindexes_tasks_the_index_missed(team: Store) -> None:
    from adjudication import search

    _fill(team)
    with team._write() as conn:  # as a database from before the index would be
        conn.execute(text("DELETE FROM task_search"))
    assert _ids(team, "q", text="sourdough") == []
    with team._write() as conn:
        assert search.rebuild(conn) == 12
    assert len(_ids(team, "q", text="sourdough")) == 4


def test_reviewers_do_not_find_others_notes_on_items_still_open(team: Store) -> None:
    team.create_queue("two", labels=["safe", "unsafe"], overlap=2, members=["rita", "rick"])
    team.enqueue("two", [{"item_id": "t1", "item": {"text": "plain"}, "draft_label": "safe"}])
    claim = team.claim("two", "rick")
    assert claim is not None
    team.decide(claim.token, "edit", label="unsafe", note="the walrus clause applies")
    assert _ids(team, "two", "rita", text="walrus") == []
    assert _ids(team, "two", "rita", reviewer="rick") == []
    assert _ids(team, "two", "ada", text="walrus") == []  # notes are indexed once decided
    assert _ids(team, "two", "ada", reviewer="rick") == ["t1"]
    page = team.items("two", Filters(text="plain"), viewer="rita")
    assert "walrus" not in "".join(s.text for s in page.items[0].snippet)
    claim = team.claim("two", "rita")
    assert claim is not None
    team.decide(claim.token, "edit", label="unsafe")  # agreed: decided
    assert _ids(team, "two", "rita", text="walrus") == ["t1"]
    assert _ids(team, "two", "ada", text="walrus") == ["t1"]


def test_hidden_fields_are_neither_searched_nor_shown_nor_used_to_rank_precedents(
    team: Store,
) -> None:
    """A queue hiding a gold column (hh-rlhf's `human_preference`) keeps it out of the search
    index, the snippets and the precedents' ranking; hiding it later re-indexes the queue, and
    showing it again makes it searchable."""
    team.create_queue("h", labels=["safe", "unsafe"], members=["rita", "adam"])
    team.edit_queue("h", hidden_fields=["human_preference"], by="ada")
    team.enqueue(
        "h",
        [
            {
                "item_id": f"h{i}",
                "item": {"prompt": f"question {i} about kettles", "human_preference": "xyzzygold"},
                "draft": {"rationale": "fine"},
                "draft_label": "safe",
                "confidence": 0.1,
                "route_reason": "low_confidence",
            }
            for i in range(3)
        ],
    )  # fmt: skip
    assert _ids(team, "h", text="xyzzygold") == []
    page = team.items("h", Filters(text="kettles"), viewer="ada", limit=10)
    assert page.items and all(
        "xyzzygold" not in "".join(s.text for s in i.snippet) for i in page.items
    )
    _decide(team, "h", "rita", "h0", "safe", None)
    found = team.precedents("h", "h1") or []
    assert [p.item_id for p in found] == ["h0"]
    assert "xyzzygold" not in "".join(s.text for s in found[0].snippet)
    # Shown again: the queue is re-indexed in the same transaction as the edit.
    team.edit_queue("h", hidden_fields=[], by="ada")
    assert sorted(_ids(team, "h", text="xyzzygold")) == ["h0", "h1", "h2"]
    team.edit_queue("h", hidden_fields=["human_preference"], by="ada")
    assert _ids(team, "h", text="xyzzygold") == []


def test_deleting_a_queue_drops_its_items_from_the_search_index(team: Store) -> None:
    _fill(team)
    _decide(team, "q", "rita", "q03", "unsafe", None)
    team.delete_queue("q", force=True, by="ada")
    _fill(team, "r")
    with team._read() as conn:
        left = conn.execute(text("SELECT count(*) FROM task_search")).scalar_one()
        precedents = conn.execute(text("SELECT count(*) FROM precedent_search")).scalar_one()
    assert (left, precedents) == (12, 0)  # only the new queue's twelve items


def test_precedents_wait_for_the_pick_on_an_item_that_keeps_its_blindness(team: Store) -> None:
    """Turning a queue's blindness off keeps it for items claimed under it (overlap 2: the
    second reviewer still reviews blind), and precedents follow the item's blindness."""
    _fill(team, "b", blind=True)
    team.edit_queue("b", overlap=2, by="ada")
    _decide(team, "b", "rita", "b03", "unsafe", "knife")
    _decide(team, "b", "adam", "b03", "unsafe", None)  # b03 decided: a precedent
    first = team.claim("b", "rita", kind="review")
    assert first is not None
    team.pick(first.token, "safe")
    team.decide(first.token, "edit", label="safe")
    team.edit_queue("b", blind=False, by="ada")
    second = team.claim("b", "adam", kind="review")
    assert second is not None and second.task.item_id == first.task.item_id
    assert team.precedents("b", second.task.item_id, viewer="adam") is None
    team.pick(second.token, "safe")
    assert team.precedents("b", second.task.item_id, viewer="adam") is not None


def test_a_reviewers_list_hides_drafts_while_an_open_item_keeps_its_blindness(
    team: Store,
) -> None:
    """After a blind queue turns its blindness off, an item claimed under it stays blind for
    its next reviewer: until it leaves open review, a reviewer's list shows no open item's
    draft label, and neither filters nor orders by it."""
    _fill(team, "b", blind=True)
    team.edit_queue("b", overlap=2, by="ada")
    first = team.claim("b", "rita", kind="review")
    assert first is not None
    team.pick(first.token, "safe")
    team.decide(first.token, "edit", label="safe")
    kept = first.task.item_id
    team.edit_queue("b", blind=False, by="ada")
    page = team.items("b", Filters(), viewer="rita", limit=100)
    assert {i.item_id for i in page.items if i.hidden} >= {kept}
    assert all(i.draft_label is None for i in page.items if i.state == "pending")
    assert _ids(team, "b", viewer="rita", label="unsafe") == []
    # Once the item is decided, the list shows drafts again.
    second = team.claim("b", "adam", kind="review")
    assert second is not None and second.task.item_id == kept
    team.pick(second.token, "safe")
    team.decide(second.token, "edit", label="safe")
    assert _ids(team, "b", viewer="rita", label="unsafe") != []
    # An admin always sees the drafts.
    assert _ids(team, "b", viewer="ada", label="unsafe") != []
