"""Issue 19, item 5: in a blind queue nothing derived from the draft is shown or answered before
the reviewer's pick is recorded, through the web app in-process (one test per leak)."""

from __future__ import annotations

import html
import re

import pytest

from adjudication import Store

from .conftest import Client, hidden

pytestmark = pytest.mark.anyio

# Everything on these items that comes from the critic's draft, as a page would print it.
DERIVED = (
    "SEALED",  # rationale, critique, revision
    "audit_sample",  # why s1 is here
    "critics_disagree",  # why s2 is here
    "H7",  # the cited principle
    "Never reveal the sealed draft.",  # its text
    "1.00",  # s1's confidence
    "0.97",  # s2's confidence
    "confident here",  # the confidence check
    "1 of 2 pending",  # s1's position, which follows the confidence
)
REFUSAL = (
    "queue 'sealed' is blind: pick your own label for item 's1' first, then confirm it\n"
    "  hint: pick a label (the number keys; Store.pick), then accept with that label"
)


@pytest.fixture
def sealed(store: Store) -> Store:
    """A blind queue wanting two reviews; s1 comes first, the critic was sure of it."""
    store.create_queue(
        "sealed",
        overlap=2,
        labels=["safe", "unsafe"],
        blind=True,
        members=["adam", "rita", "rick"],
    )
    draft = {
        "rationale": "SEALED RATIONALE",
        "critique": "SEALED CRITIQUE",
        "revision": "SEALED REVISION",
        "principles": ["H7"],
        "principle_texts": {"H7": "Never reveal the sealed draft."},
    }
    store.enqueue(
        "sealed",
        [
            {
                "item_id": "s1",
                "item": {"prompt": "Question?", "response": "Reply."},
                "draft": draft,
                "draft_label": "safe",
                "confidence": 1.0,
                "route_reason": "audit_sample",
                "principle_ids": ["H7"],
                "priority": 0.3,
            },
            {
                "item_id": "s2",
                "item": {"prompt": "Other?", "response": "Other reply."},
                "draft": draft,
                "draft_label": "unsafe",
                "confidence": 0.97,
                "route_reason": "critics_disagree",
                "principle_ids": ["H7"],
                "priority": 0.6,
            },
        ],
    )
    return store


#: Random values a page carries (claim tokens, signatures, CSRF tokens): "H7" can occur in one.
_RANDOM = re.compile(r'="[A-Za-z0-9_-]{16,}"')


def leaks(page: str) -> list[str]:
    """What of the drafts a page shows (its random tokens left out)."""
    page = _RANDOM.sub('=""', page)
    return [text for text in DERIVED if text in page]


def alert(page: str) -> str:
    found = re.search(r'<p class="error" role="alert" id="form-error">(.*?)</p>', page, re.S)
    assert found, "no error on the page"
    return html.unescape(found.group(1))


async def _pick(client: Client, label: str) -> str:
    """Pick `label` on the page the client shows; returns the page after the pick."""
    picked = await client.post("/q/sealed/pick", {**client.claim_form(), "pick": label})
    assert picked.status_code == 303, picked.text
    return (await client.get("/q/sealed/review")).text


async def test_before_the_pick_the_review_page_shows_nothing_derived_from_the_draft(
    client: Client, sealed: Store
) -> None:
    """The route reason, the cited principles, the confidence and the queue position (which
    follows the confidence) show only after the pick."""
    await client.login("rita")
    page = (await client.open("sealed")).text
    assert hidden(page, "item_id") == "s1"
    assert leaks(page) == []
    assert "why here, confidence, position</span> hidden until you pick" in page
    shown = await _pick(client, "unsafe")
    assert leaks(shown) == [
        "SEALED",
        "audit_sample",
        "H7",
        "Never reveal the sealed draft.",
        "1.00",
        "1 of 2 pending",
    ]


async def test_a_guessed_decision_before_the_pick_gets_one_answer_whatever_the_guess(
    client: Client, sealed: Store
) -> None:
    """The confidence check and the accept/edit distinction no longer answer against the
    hidden draft: every guess, right or wrong, is refused alike and nothing is stored."""
    await client.login("rita")
    page = (await client.open("sealed")).text
    form = client.claim_form(page)
    guesses = [
        {"action": "accept", "pick": "safe"},  # the critic's label
        {"action": "accept", "pick": "unsafe"},
        {"action": "accept", "label": "safe"},
        {"label": "safe"},
        {"label": "unsafe"},
        {"action": "edit", "edit_label": "safe"},
        {"action": "edit", "edit_label": "unsafe", "revision": "mine"},
    ]
    answers = []
    for guess in guesses:
        response = await client.post("/q/sealed/decide", {**form, **guess})
        answers.append((response.status_code, alert(response.text), leaks(response.text)))
    assert answers == [(400, REFUSAL, [])] * len(guesses)
    assert sealed.decisions("sealed") == []
    assert [e.kind for e in sealed.history("sealed", "s1")] == ["enqueued", "claimed"]


async def test_reject_and_undo_before_the_pick_reveal_nothing_and_the_pick_still_comes_first(
    client: Client, sealed: Store
) -> None:
    """A reject asks for no note (that would tell the critic was sure), its undo bar says only
    reject, and the item comes back unpicked; after the pick the check applies as before."""
    await client.login("rita")
    page = (await client.open("sealed")).text
    reject = {**client.claim_form(page), "action": "reject"}
    rejected = await client.post("/q/sealed/decide", reject)
    assert rejected.status_code == 303
    assert rejected.headers["location"] == "/q/sealed/review?notice=saved"
    after = (await client.get(rejected.headers["location"])).text
    assert hidden(after, "item_id") == "s2" and leaks(after) == []
    assert "Your last decision: <strong>reject</strong> on item <code>s1</code>" in after
    undone = await client.post(
        "/q/sealed/undo", {"csrf": client.csrf(after), "decision": hidden(after, "decision")}
    )
    back = (await client.get(undone.headers["location"])).text
    assert hidden(back, "item_id") == "s1" and leaks(back) == []
    assert 'name="pick"' in back  # still to pick
    refused = await client.post(
        "/q/sealed/decide", {**client.claim_form(back), "action": "accept", "pick": "safe"}
    )
    assert (refused.status_code, alert(refused.text), leaks(refused.text)) == (400, REFUSAL, [])

    shown = await _pick(client, "unsafe")
    assert "1.00" in shown and "SEALED RATIONALE" in shown
    confirm = {**client.claim_form(shown), "action": "accept", "pick": "unsafe"}
    unexplained = await client.post("/q/sealed/decide", confirm)
    assert unexplained.status_code == 422
    assert "The critic was 100% confident here" in alert(unexplained.text)
    saved = await client.post("/q/sealed/decide", {**confirm, "note": "not safe to me"})
    assert saved.status_code == 303
    assert [e.kind for e in sealed.history("sealed", "s1")] == [
        "enqueued",
        "claimed",
        "decided",
        "withdrawn",
        "claimed",
        "picked",
        "decided",
    ]
    (decision,) = sealed.decisions("sealed")
    assert (decision.action, decision.label, decision.note) == ("edit", "unsafe", "not safe to me")


async def test_an_adjudicators_history_and_dashboard_hide_an_open_blind_item_until_they_pick(
    client: Client, other: Client, sealed: Store
) -> None:
    """An adjudicator may review the item next: the history shows the item and who did what
    when, not the draft, the reason, the principles, nor rita's answer (an accept names the
    critic's label); the dashboard hides that answer too."""
    await other.login("rita")
    await other.open("sealed")
    shown = await _pick(other, "safe")
    confirm = {**other.claim_form(shown), "action": "accept", "pick": "safe"}
    assert (await other.post("/q/sealed/decide", confirm)).status_code == 303
    (rita,) = sealed.decisions("sealed")
    assert (rita.action, rita.label) == ("accept", "safe")

    await client.login("adam")
    page = (await client.get("/q/sealed/items/s1")).text
    assert leaks(page) == [] and "<td>accept</td>" not in page
    assert "safe" not in page  # neither rita's pick nor her label
    assert "Reply." in page and "rita" in page and "<td>picked</td>" in page
    assert "have not picked a label for it in this round" in page
    dashboard = (await client.get("/q/sealed/dashboard")).text
    assert "hidden while the item is open for review (blind queue)" in dashboard
    assert "<td>accept" not in dashboard

    page = (await client.open("sealed")).text  # adam reviews s1 himself
    assert hidden(page, "item_id") == "s1" and leaks(page) == []
    await _pick(client, "safe")
    page = (await client.get("/q/sealed/items/s1")).text
    assert "SEALED RATIONALE" in page and "audit_sample" in page and "1.00" in page
    assert "Never reveal the sealed draft." in page and "<td>accept</td>" in page
    assert "hidden until you pick" not in page
