"""The web app in-process: reviewers see only their queues, admins choose who works where, and
"undo last" takes a decision back on the server."""

from __future__ import annotations

import re

import pytest

from adjudication import Store
from adjudication.testing import FakeClock

from .conftest import Client, hidden

pytestmark = pytest.mark.anyio


@pytest.fixture
def secret(store: Store) -> Store:
    """A queue nobody but the admins works in yet."""
    store.create_queue("secret", labels=["safe", "unsafe"])
    store.enqueue("secret", [{"item_id": "s1", "draft_label": "safe", "item": {"text": "hush"}}])
    return store


def _queues_listed(html: str) -> list[str]:
    return re.findall(r'href="/q/([^/"]+)/review"', html)


# -- membership ------------------------------------------------------------------------------


async def test_reviewers_and_adjudicators_see_only_their_queues(
    client: Client, other: Client, secret: Store
) -> None:
    await client.login("rita")
    assert _queues_listed((await client.get("/")).text) == ["blind", "harm", "pairs"]
    review = await client.open("secret")
    assert review.status_code == 403
    # A generic page: which queues exist, and who is in them, stays in the server log.
    assert "You cannot open this page" in review.text and "not a member" not in review.text
    for page in ("/q/secret/adjudicate", "/q/secret/dashboard"):
        assert (await client.get(page)).status_code == 403, page
    await other.login("adam")
    for page in ("/q/secret/adjudicate", "/q/secret/dashboard", "/q/secret/items/s1"):
        response = await other.get(page)
        assert response.status_code == 403, page
        assert "You cannot open this page" in response.text
        assert "not a member" not in response.text
    reopen = await other.post("/q/secret/items/s1/reopen", {"csrf": other.csrf()})
    assert reopen.status_code == 403


async def test_a_reviewer_outside_every_queue_is_told_to_ask_an_admin(
    client: Client, store: Store
) -> None:
    for queue in ("harm", "blind", "pairs"):
        store.remove_members(queue, ["rick"])
    await client.login("rick")
    page = await client.get("/")
    assert _queues_listed(page.text) == []
    assert "not a member of any queue yet; ask an admin" in page.text


async def test_an_admin_adds_and_removes_members(
    client: Client, other: Client, secret: Store
) -> None:
    await client.login("ada")
    assert "secret" in _queues_listed((await client.get("/")).text)  # admins see every queue
    page = await client.get("/q/secret/members")
    assert "Nobody yet" in page.text
    assert 'value="rita"' in page.text and 'value="ada"' not in page.text  # admins need no seat
    added = await client.post("/q/secret/members", {"add": ["rita", "adam"], "csrf": client.csrf()})
    assert added.status_code == 303
    assert [u.name for u in secret.members("secret")] == ["adam", "rita"]

    await other.login("rita")
    assert "secret" in _queues_listed((await other.get("/")).text)
    review = await other.open("secret")
    assert hidden(review.text, "item_id") == "s1"

    await client.get("/q/secret/members")
    removed = await client.post("/q/secret/members", {"remove": "rita", "csrf": client.csrf()})
    assert removed.status_code == 303
    assert [u.name for u in secret.members("secret")] == ["adam"]
    # Her claim on s1 ended with the membership: the decision is refused, s1 is free again.
    assert secret.claim("secret", "adam") is not None
    assert (await other.open("secret")).status_code == 403
    kinds = [e.kind for e in secret.history("secret", "s1")]
    assert kinds == ["enqueued", "claimed", "claimed"]


async def test_only_admins_manage_members_and_bad_requests_say_why(
    client: Client, other: Client, secret: Store
) -> None:
    await other.login("adam")
    assert (await other.get("/q/secret/members")).status_code == 403
    await other.get("/")
    refused = await other.post("/q/secret/members", {"add": "adam", "csrf": other.csrf()})
    assert refused.status_code == 403
    await client.login("ada")
    await client.get("/q/secret/members")
    empty = await client.post("/q/secret/members", {"csrf": client.csrf()})
    assert empty.status_code == 400 and "tick at least one user" in empty.text
    unknown = await client.post("/q/secret/members", {"add": "nobody", "csrf": client.csrf()})
    assert unknown.status_code == 400 and "no user named &#39;nobody&#39;" in unknown.text
    assert secret.members("secret") == []


async def test_a_new_user_can_be_given_queues_on_the_users_page(
    client: Client, store: Store
) -> None:
    await client.login("ada")
    page = await client.get("/admin/users")
    assert 'name="queues" value="pairs"' in page.text
    response = await client.post(
        "/admin/users",
        {"name": "nina", "role": "reviewer", "password": "long enough words",
         "queues": ["harm", "pairs"], "csrf": client.csrf()},
    )  # fmt: skip
    assert response.status_code == 303
    assert [q.name for q in store.queues_for("nina")] == ["harm", "pairs"]
    listing = (await client.get("/admin/users")).text
    assert re.search(r"<td>nina</td><td>reviewer</td><td>harm, pairs</td>", listing)


# -- undo last -------------------------------------------------------------------------------


async def test_undo_takes_back_the_last_decision_and_shows_the_item_again(
    client: Client, store: Store
) -> None:
    await client.login("rita")
    first = await client.open("harm")
    assert 'class="undo-bar"' not in first.text  # nothing to undo yet
    await client.post("/q/harm/decide", {**client.claim_form(), "label": "unsafe"})
    page = await client.open("harm")
    assert hidden(page.text, "item_id") == "h1"
    assert "edit</strong> “unsafe” on item <code>h0</code>" in page.text
    decision = hidden(page.text, "decision")
    form = {"csrf": client.csrf(), "decision": decision, "kind": "review"}
    undone = await client.post("/q/harm/undo", form)
    assert undone.status_code == 303
    assert undone.headers["location"] == "/q/harm/review?notice=undone"
    again = await client.get(undone.headers["location"])
    assert hidden(again.text, "item_id") == "h0"
    assert "Undone: your last decision is withdrawn" in again.text
    assert store.decisions("harm") == []
    assert store.task("harm", "h0").state == "pending"
    # h1, which rita held when she pressed Z, is free for someone else at once.
    rick = store.claim("harm", "rick")
    assert rick is not None and rick.task.item_id == "h1"

    # The same undo form sent twice (a double press) takes back nothing more.
    repeated = await client.post("/q/harm/undo", form)
    assert repeated.status_code == 409
    assert "Nothing was undone" in repeated.text
    await client.post("/q/harm/decide", {**client.claim_form(again.text), "action": "accept"})
    assert [(d.item_id, d.action) for d in store.decisions("harm")] == [("h0", "accept")]


async def test_undo_is_refused_once_someone_else_decided_the_item(
    client: Client, other: Client, store: Store, clock: FakeClock
) -> None:
    await client.login("rita")
    await client.open("pairs")
    await client.post("/q/pairs/decide", {**client.claim_form(), "action": "accept"})
    rick = store.claim("pairs", "rick")
    assert rick is not None
    store.decide(rick.token, "edit", label="unsafe")
    page = await client.open("pairs")
    form = {"csrf": client.csrf(), "decision": hidden(page.text, "decision")}
    refused = await client.post("/q/pairs/undo", form)
    assert refused.status_code == 409
    assert "rick decided item" in refused.text
    assert len(store.decisions("pairs")) == 2

    # The bar disappears once the decision is too old to undo.
    await client.open("harm")
    await client.post("/q/harm/decide", {**client.claim_form(), "action": "accept"})
    assert 'class="undo-bar"' in (await client.open("harm")).text
    clock.advance(601)
    assert 'class="undo-bar"' not in (await client.open("harm")).text


async def test_an_adjudicator_undoes_an_adjudication(client: Client, store: Store) -> None:
    for user, label in (("rita", "safe"), ("rick", "unsafe")):
        claim = store.claim("pairs", user)
        assert claim is not None
        store.decide(claim.token, "accept" if label == "safe" else "edit", label=label)
    await client.login("adam")
    page = await client.open("pairs", "adjudicate")
    await client.post("/q/pairs/adjudicate", {**client.claim_form(page.text), "adopt": "critic"})
    assert store.task("pairs", "p1").final_source == "adjudicated"
    page = await client.open("pairs", "adjudicate")
    assert 'name="kind" value="adjudication"' in page.text
    form = {"csrf": client.csrf(), "decision": hidden(page.text, "decision"),
            "kind": "adjudication"}  # fmt: skip
    undone = await client.post("/q/pairs/undo", form)
    assert undone.headers["location"] == "/q/pairs/adjudicate?notice=undone"
    back = await client.get(undone.headers["location"])
    assert hidden(back.text, "item_id") == "p1"
    assert store.task("pairs", "p1").state == "adjudication"
