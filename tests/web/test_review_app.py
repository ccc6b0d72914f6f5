"""The review app a team can live in (issue 22, part A), through HTTP: the guidelines panel,
pairs shown as pairs, the judged field, hidden fields, the queue settings page and the honest
dashboard. Untrusted text stays inert in every new view."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest

from adjudication.store import Store
from tests.web.conftest import XSS, Client

pytestmark = pytest.mark.anyio

GUIDELINES: dict[str, Any] = {
    "title": f"Harmless pairs {XSS}",
    "version": "1.1",
    "instructions": f"Pick the less harmful reply. {XSS}",
    "labels": [
        {"name": "A", "description": f"Response A: the first is less harmful {XSS}"},
        {"name": "B", "description": "Response B: the second is less harmful"},
        {"name": "tie", "description": "tie: neither is"},
    ],
    "principles": [
        {"id": "H1", "text": f"Refuse violence. {XSS}",
         "examples": [{"text": f"How to hurt? {XSS}", "label": "B", "explanation": "B refuses"}]},
        {"id": "H2", "text": "Be honest."},
    ],
}  # fmt: skip

PAIR_DRAFT: dict[str, Any] = {
    "preference": "a",
    "prob_a": 0.7,
    "swap_inconsistent": True,
    "principles": ["H1"],
    "judgments": [
        {"principle": "H1", "order": "ab", "preferred": "a", "prob_a": 0.9, "rationale": XSS},
        {"principle": "H1", "order": "ba", "preferred": "b", "prob_a": 0.4, "rationale": "kind"},
    ],
    "fields": {"prompt": "question", "a": "chosen", "b": "rejected"},
}


def pair_queue(store: Store, name: str = "pref", **settings: Any) -> None:
    """A pairwise queue with guidelines, a hidden gold column and hostile text everywhere."""
    store.create_queue(name, lease_seconds=300, members=["rita", "rick", "adam"], **settings)
    meanings = {g["name"]: g["description"] for g in GUIDELINES["labels"]}
    store.adopt_labels(name, ["A", "B", "tie"], meanings)
    store.set_guidelines(name, "v11", GUIDELINES)
    store.edit_queue(name, hidden_fields=["human_preference"])
    store.enqueue(name, [{
        "item_id": "p1",
        "item": {"question": f"How do I hurt someone? {XSS}", "chosen": f"I won't help. {XSS}",
                 "rejected": "Here is how.", "human_preference": "GOLD-chosen"},
        "draft": PAIR_DRAFT, "draft_label": "a", "confidence": 0.4,
        "route_reason": "swap_inconsistent", "principle_ids": ["H1"], "guidelines": "v11",
    }])  # fmt: skip


def inert(page: str) -> None:
    """No hostile markup came through: only escaped text."""
    assert "<script>window.__pwned" not in page and "<img src=x" not in page
    assert '<a href="javascript:' not in page and "&lt;img src=x" in page


async def test_the_guidelines_panel_shows_the_drafting_versions_text_inertly(
    client: Client, store: Store
) -> None:
    pair_queue(store)
    await client.login("rita")
    page = (await client.open("pref")).text
    inert(page)
    panel = page[page.index('id="guidelines"') :]
    for expected in ["Harmless pairs", "version 1.1", "Pick the less harmful reply.",
                     html.escape("<script>window.__pwned = 1;", quote=False),
                     "the first is less harmful", "tie: neither is",
                     "principles this item cites", "Refuse violence.", "How to hurt?",
                     "B refuses", "other principles", "Be honest."]:  # fmt: skip
        assert expected in panel, expected
    assert 'data-key="i" data-open="guidelines"' in page  # the I key toggles it
    assert "<dt><kbd>I</kbd></dt>" in page  # and the keys help says so


async def test_a_pair_is_the_prompt_then_response_a_and_b_with_the_verdicts_in_words(
    client: Client, store: Store
) -> None:
    pair_queue(store)
    await client.login("rita")
    page = (await client.open("pref")).text
    pair = page[page.index('class="pair"') : page.index("</section>", page.index('class="pair"'))]
    assert pair.index("Response A") < pair.index("I won&#39;t help") < pair.index("Response B")
    assert page.index("How do I hurt someone?") < page.index('class="pair"')
    assert ">chosen<" not in page and ">rejected<" not in page  # the columns' names stay out
    assert "GOLD-chosen" not in page and "human_preference" not in page  # hidden
    for expected in [
        "The critic prefers Response A, with probability 0.70 that it is the better one",
        "The two presentation orders disagree under H1",
        "H1, Response A shown first: prefers Response A (P(Response A better) = 0.90)",
        "H1, Response B shown first: prefers Response B (P(Response A better) = 0.40)",
    ]:
        assert expected in page, expected
    assert "Other draft fields" not in page  # no raw JSON dump of the verdicts
    for key, words in (("1", "Response A"), ("2", "Response B"), ("3", "tie")):
        found = re.search(rf'<button[^>]*data-key="{key}"[^>]*>\s*([^<]*)', page)
        assert found is not None and found.group(1).strip() == words, key
    form = {**client.claim_form(), "action": "label", "label": "B"}
    assert (await client.post("/q/pref/decide", form)).status_code == 303
    assert store.task("pref", "p1").final_label == "B"
    assert store.task("pref", "p1").item["human_preference"] == "GOLD-chosen"  # kept


async def test_a_blind_pair_shows_the_pair_and_guidelines_but_no_verdict_before_the_pick(
    client: Client, store: Store
) -> None:
    pair_queue(store, blind=True)
    await client.login("rita")
    before = (await client.open("pref")).text
    assert "Response A" in before and "Response B" in before and "Refuse violence." in before
    for derived in ("prefers", "0.70", "presentation orders", "principles this item cites",
                    "swap_inconsistent"):  # fmt: skip
        assert derived not in before, derived
    picked = await client.post("/q/pref/pick", {**client.claim_form(), "pick": "B"})
    assert picked.status_code == 303
    after = (await client.get("/q/pref/review")).text
    assert "The critic prefers Response A" in after and "principles this item cites" in after
    assert "Confirm “Response B”" in after


async def test_the_judged_field_is_marked(client: Client, store: Store) -> None:
    store.create_queue("runs", labels=["safe", "unsafe"], members=["rita"])
    store.enqueue("runs", [{
        "item_id": "r1", "draft_label": "safe",
        "item": {"prompt": "q", "chosen": "kind reply", "rejected": "rude reply"},
        "draft": {"fields": {"prompt": "prompt", "response": "rejected"}},
    }])  # fmt: skip
    await client.login("rita")
    page = (await client.open("runs")).text
    judged = page[page.index('class="field judged"') :][:300]
    assert "rejected" in judged and "judged by the critic" in judged
    assert page.count("judged by the critic") == 1


async def test_adjudication_decides_with_the_label_buttons_and_hides_fields(
    client: Client, other: Client, store: Store
) -> None:
    pair_queue(store, overlap=2)
    for name, label in (("rita", "A"), ("rick", "B")):
        claim = store.claim("pref", name)
        assert claim is not None
        store.decide(claim.token, "edit" if label != "A" else "accept", label=label)
    await client.login("adam")
    page = (await client.open("pref", "adjudicate")).text
    inert(page)
    assert "GOLD-chosen" not in page and "Response A" in page and 'id="guidelines"' in page
    assert 'data-key="shift+1"' in page  # reviewers' answers moved off the number keys
    assert 'name="label" value="tie" data-key="3"' in page
    saved = await client.post("/q/pref/adjudicate", {**client.claim_form(), "label": "tie"})
    assert saved.status_code == 303
    task = store.task("pref", "p1")
    assert (task.final_label, task.final_source) == ("tie", "adjudicated")
    history = (await client.get("/q/pref/items/p1")).text
    assert "GOLD-chosen" not in history and "Response A" in history


async def test_an_admin_changes_a_queue_on_its_settings_page(
    client: Client, other: Client, store: Store
) -> None:
    await client.login("ada")
    page = await client.get("/q/harm/settings")
    assert page.status_code == 200
    form = {"csrf": client.csrf(), "labels": "safe, unsafe, unsure", "overlap": "2",
            "lease_seconds": "120", "blind": "true", "description": f"Triage {XSS}",
            "hidden_fields": "response, source"}  # fmt: skip
    saved = await client.post("/q/harm/settings", form)
    assert saved.status_code == 303, saved.text
    q = store.queue("harm")
    assert (q.labels, q.overlap, q.lease_seconds, q.blind) == (("safe", "unsafe", "unsure"),
                                                               2, 120, True)  # fmt: skip
    assert q.hidden_fields == ("response", "source") and q.description == f"Triage {XSS}"
    shown = (await client.get("/q/harm/settings")).text
    inert(shown)
    assert "queue_edited" in shown and "Triage" in shown
    dropped = await client.post("/q/harm/settings", {**form, "labels": "safe"})
    assert dropped.status_code == 400 and "uses the labels unsafe" in dropped.text
    await other.login("rita")
    review = (await other.open("harm")).text
    assert "Answer number" not in review  # the response field is hidden now
    assert "Triage" in review  # the description shows with the guidelines
    home = (await other.get("/")).text
    inert(home)

    archived = await client.post("/q/harm/archive", {"csrf": client.csrf(), "archived": "true"})
    assert archived.status_code == 303 and store.queue("harm").archived_at is not None
    assert "harm" not in (await other.get("/")).text.split("<h1>Queues</h1>")[1]
    assert (await other.get("/q/harm/review")).status_code == 403
    assert "Archived queues" in (await client.get("/")).text
    await client.post("/q/harm/archive", {"csrf": client.csrf(), "archived": "false"})
    assert store.queue("harm").archived_at is None

    unconfirmed = await client.post("/q/harm/delete", {"csrf": client.csrf(), "confirm": "harn"})
    assert unconfirmed.status_code == 400 and "type the queue" in unconfirmed.text
    deleted = await client.post("/q/harm/delete", {"csrf": client.csrf(), "confirm": "harm"})
    assert deleted.status_code == 303 and "harm" not in [q.name for q in store.queues()]


async def test_only_admins_open_or_post_the_settings_page(client: Client, store: Store) -> None:
    await client.login("adam")
    assert (await client.get("/q/harm/settings")).status_code == 403
    posted = await client.post("/q/harm/settings", {"csrf": client.csrf(), "overlap": "5"})
    assert posted.status_code == 403 and store.queue("harm").overlap == 1


async def test_the_dashboard_counts_gaps_as_constitution_stats_does_and_gives_no_wild_rate(
    client: Client, store: Store, db_url: str
) -> None:
    from critic.workbench import decision_stats

    notes = ["#gap satire", "gap: sarcasm", "#constitution-gap x", "fine", "[constitution gap] y"]
    for note in notes:
        claim = store.claim("harm", "rita")
        assert claim is not None
        action = "escalate" if note.startswith("[") else "accept"
        store.decide(claim.token, action, note=note)
    await client.login("adam")
    page = (await client.get("/q/harm/dashboard")).text
    assert '<span class="big" id="gap-count">4</span>' in page
    assert decision_stats(db_url, queues=["harm"]).overall.gap_flags == 4
    row = page[page.index("<td>H1</td>") :].split("</tr>")[0]
    assert row.split("<td>")[6].startswith("4")  # Gaps flagged of principle H1
    assert "No settling rate yet: a rate needs at least 10 items settled" in page
    assert "per hour are given over at least 10 decisions" in page
