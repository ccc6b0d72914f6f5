"""Revise items are reviewed as revisions (accept or edit the text, no label), and a queue fed
from a pairwise constitution shows its labels with what they mean."""

from __future__ import annotations

import re

import pytest

from adjudication.errors import QueueError
from adjudication.store import Store
from tests.web.conftest import Client

pytestmark = pytest.mark.anyio

REVISION = {"original": "Sure, here is how.", "revision": "I can't help with that."}


def _revision_queue(store: Store) -> None:
    store.create_queue("revise", lease_seconds=300, members=["rita"])
    store.enqueue("revise", [
        {"item_id": f"v{i}", "item": {"prompt": "Human: q", "response": "Sure, here is how."},
         "draft": REVISION, "answer": "revision", "origin": f"run/v{i}"}
        for i in range(2)
    ])  # fmt: skip


async def test_a_revision_is_accepted_without_a_label(client: Client, store: Store) -> None:
    _revision_queue(store)
    await client.login("rita")
    page = await client.open("revise")
    assert "Accept revision" in page.text and "disabled" not in page.text.split("Accept")[1][:60]
    saved = await client.post("/q/revise/decide", {**client.claim_form(), "action": "accept"})
    assert saved.status_code == 303
    decided = [t for t in store.tasks("revise") if t.state == "done"]
    assert len(decided) == 1 and decided[0].final_label is None and decided[0].final_edit is None


async def test_a_revision_is_edited_without_a_label(client: Client, store: Store) -> None:
    _revision_queue(store)
    await client.login("rita")
    await client.open("revise")
    form = {**client.claim_form(), "action": "edit", "revision": "HUMAN REVISED TEXT"}
    assert (await client.post("/q/revise/decide", form)).status_code == 303
    (done,) = [t for t in store.tasks("revise") if t.state == "done"]
    assert done.final_edit == {"revision": "HUMAN REVISED TEXT"} and done.final_label is None
    (outcome,) = store.outcomes_for([done.origin or ""])[done.origin or ""]
    assert outcome.edit == {"revision": "HUMAN REVISED TEXT"} and outcome.source == "human"


def test_a_revision_takes_no_label_and_an_edit_needs_its_text(store: Store) -> None:
    _revision_queue(store)
    claim = store.claim("revise", "rita")
    assert claim is not None
    with pytest.raises(QueueError, match="takes no label"):
        store.decide(claim.token, "edit", label="harmless")
    with pytest.raises(QueueError, match="needs the edited text"):
        store.decide(claim.token, "edit", edit={"revision": "  "})


async def test_pairwise_labels_come_from_the_constitution_with_their_meaning(
    client: Client, store: Store
) -> None:
    store.create_queue("pref", lease_seconds=300, members=["rita"])
    meaning = {"A": "Response A: <b>better</b>", "B": "Response B", "tie": "tie"}
    store.adopt_labels("pref", ["A", "B", "tie"], meaning)
    store.enqueue("pref", [{"item_id": "p1", "item": {"prompt": "q", "a": "x", "b": "y"},
                            "draft_label": "a"}])  # fmt: skip
    assert store.task("pref", "p1").draft_label == "A"  # spelled as the set spells it
    await client.login("rita")
    page = await client.open("pref")
    assert 'name="label" value="B"' in page.text and "Response B" in page.text
    assert "Response A: &lt;b&gt;better&lt;/b&gt;" in page.text  # inert text
    form = {**client.claim_form(), "action": "label", "label": "b"}  # any case: the set's B
    assert (await client.post("/q/pref/decide", form)).status_code == 303
    assert store.task("pref", "p1").final_label == "B"


def test_a_label_outside_the_set_is_refused_naming_the_set(store: Store) -> None:
    store.create_queue("pref", lease_seconds=300, members=["rita"])
    store.adopt_labels("pref", ["A", "B", "tie"])
    store.enqueue("pref", [{"item_id": "p1", "draft_label": "a"}])
    claim = store.claim("pref", "rita")
    assert claim is not None
    with pytest.raises(QueueError, match=r"not one of queue 'pref'.s labels \(A, B, tie\)"):
        store.decide(claim.token, "edit", label="C")
    with pytest.raises(QueueError, match="has the labels"):
        store.adopt_labels("pref", ["harmless", "harmful"])


async def test_a_blind_pair_says_which_text_is_response_b_before_the_pick(
    client: Client, store: Store
) -> None:
    store.create_queue("bpref", lease_seconds=300, members=["rita"], blind=True)
    store.adopt_labels("bpref", ["A", "B", "tie"])
    store.enqueue("bpref", [{
        "item_id": "p1",
        "item": {"chosen": "Call a locksmith.", "prompt": "How?", "rejected": "Break it."},
        "draft": {"rationale": "SECRET RATIONALE", "fields": {"a": "rejected", "b": "chosen"}},
        "draft_label": "a",
    }])  # fmt: skip
    await client.login("rita")
    page = (await client.open("bpref")).text
    assert "SECRET RATIONALE" not in page  # still blind
    a, b = page.index("Response A"), page.index("Response B")
    assert a < page.index("Break it.") < b < page.index("Call a locksmith.")


async def test_the_item_page_says_which_revision_ships_not_a_missing_label(
    client: Client, store: Store
) -> None:
    _revision_queue(store)
    await client.login("rita")
    await client.open("revise")
    form = {**client.claim_form(), "action": "edit", "revision": "HUMAN REVISED TEXT"}
    assert (await client.post("/q/revise/decide", form)).status_code == 303
    await client.open("revise")
    accepted = await client.post("/q/revise/decide", {**client.claim_form(), "action": "accept"})
    assert accepted.status_code == 303
    await client.login("ada")
    shown = {}
    for item in ("v0", "v1"):
        page = (await client.get(f"/q/revise/items/{item}")).text
        found = re.search(r'class="k">ships</span>\s*([^<]*)', page)
        assert found is not None
        shown[item] = found.group(1).strip()
    assert shown == {
        "v0": "the reviewer&#39;s edited revision (human)",
        "v1": "the critic&#39;s revision (human)",
    }


async def test_a_failed_revision_is_written_by_the_reviewer(client: Client, store: Store) -> None:
    store.create_queue("revise", lease_seconds=300, members=["rita"])
    failed = {"item_id": "f1", "item": {"prompt": "q", "response": "bad"},
              "draft": {"failure": "parse_failure"}, "answer": "revision"}  # fmt: skip
    store.enqueue("revise", [failed])
    await client.login("rita")
    page = await client.open("revise")
    assert 'name="revision"' in page.text and ">None</textarea>" not in page.text
    refused = await client.post("/q/revise/decide", {**client.claim_form(), "action": "accept"})
    assert refused.status_code == 400 and "no revision to accept" in refused.text
    written = {**client.claim_form(), "action": "edit", "revision": "A safe reply."}
    assert (await client.post("/q/revise/decide", written)).status_code == 303
    assert store.task("revise", "f1").final_edit == {"revision": "A safe reply."}
