"""The item list, bulk actions, precedents and exemplar marks through HTTP (the app in-process)."""

from __future__ import annotations

import re

import pytest

from adjudication import Store

from .conftest import XSS, Client, hidden

pytestmark = pytest.mark.anyio


def _rows(page: str) -> list[str]:
    return re.findall(r'class="item-link" href="[^"]*"><code>([^<]*)</code>', page)


async def test_members_search_the_list_and_hostile_snippets_stay_text(
    client: Client, store: Store
) -> None:
    store.enqueue(
        "harm", [{"item_id": "evil", "item": {"prompt": "hi", "response": "alert me " + XSS}}]
    )
    await client.login("rita")
    page = await client.get("/q/harm/items", params={"q": "alert onerror"})
    assert page.status_code == 200
    assert _rows(page.text) == ["evil"]
    assert "<script>window.__pwned" not in page.text and "<img src=x" not in page.text
    assert "&lt;script&gt;" in page.text
    assert '<mark class="hit">alert</mark>' in page.text
    everything = await client.get("/q/harm/items", params={"sort": "item"})
    assert _rows(everything.text)[:3] == ["confident", "evil", "h0"]
    assert 'name="item"' not in everything.text  # no bulk controls for a reviewer
    bad = await client.get("/q/harm/items", params={"cmin": "lots"})
    assert bad.status_code == 400 and "cmin: &#39;lots&#39; is not a number" in bad.text


async def test_keyset_pages_follow_the_next_link(client: Client, store: Store) -> None:
    store.enqueue("harm", [{"item_id": f"z{i:02d}", "item": {"text": f"t{i}"}} for i in range(60)])
    await client.login("adam")
    first = await client.get("/q/harm/items", params={"sort": "item"})
    found = re.search(r'href="([^"]*)" data-key="n" rel="next"', first.text)
    assert found, "no next page"
    second = await client.get(found.group(1).replace("&amp;", "&"))
    assert len(_rows(first.text)) == 50 and len(_rows(second.text)) == 17
    assert set(_rows(first.text)).isdisjoint(_rows(second.text))
    assert "offset" not in found.group(1).lower()


async def test_bulk_requeue_of_every_matching_item_is_audited_once_per_item(
    client: Client, store: Store
) -> None:
    await client.login("adam")
    await client.get("/q/harm/items")
    form = {
        "csrf": client.csrf(),
        "action": "accept",
        "scope": "matching",
        "q": "answer number",
        "note": "fine as drafted",
    }
    done = await client.post("/q/harm/items/bulk", form)
    assert done.status_code == 303
    shown = await client.get(done.headers["location"])
    assert "Accepted the critic&#39;s answer for 5 item(s); 0 already as asked." in shown.text
    assert all(store.task("harm", f"h{i}").final_source == "adjudicated" for i in range(5))
    again = await client.post("/q/harm/items/bulk", form)
    assert "changed=0" in again.headers["location"]
    requeue = {
        "csrf": client.csrf(),
        "action": "requeue",
        "scope": "selected",
        "item": ["h1", "h2"],
    }
    assert (await client.post("/q/harm/items/bulk", requeue)).status_code == 303
    assert store.task("harm", "h1").state == "pending"
    kinds = [e.kind for e in store.history("harm", "h1")]
    assert (kinds.count("bulk_accepted"), kinds.count("bulk_requeued")) == (1, 1)
    missing = await client.post("/q/harm/items/bulk", {**form, "note": ""})
    assert missing.status_code == 400 and "needs a note" in missing.text


async def test_reviewers_cannot_act_in_bulk_or_mark_exemplars(client: Client) -> None:
    await client.login("rita")
    await client.get("/q/harm/items")
    form = {"csrf": client.csrf(), "action": "requeue", "scope": "matching"}
    assert (await client.post("/q/harm/items/bulk", form)).status_code == 403
    mark = await client.post("/q/harm/items/h1/exemplar", {"csrf": client.csrf()})
    assert mark.status_code == 403


async def test_precedents_beside_the_item_and_only_after_a_blind_pick(
    client: Client, store: Store
) -> None:
    store.enqueue(
        "harm",
        [{"item_id": "twin", "item": {"prompt": "Question 3?", "response": "Answer number 3 "
          "is fine."}, "draft_label": "safe", "confidence": 0.99}],
    )  # fmt: skip
    store.bulk("harm", "accept", by="ada", items=["twin"], note="twin note <b>bold</b>")
    await client.login("rita")
    page = (await client.open("harm")).text
    # The review page does not wait for the ranking: its panel names where the precedents are.
    assert 'aria-label="Precedents"' in page and "twin note" not in page
    held = hidden(page, "item_id")
    assert f'data-src="/q/harm/precedents/{held}"' in page
    assert f'href="/q/harm/items/{held}#precedents"' in page  # without scripts
    answer = await client.get(f"/q/harm/precedents/{held}")
    assert answer.status_code == 200 and answer.headers["cache-control"] == "no-store"
    data = answer.json()
    assert data["after_pick"] is False
    top = data["precedents"][0]
    assert (top["item_id"], top["href"], top["decided"]) == ("twin", "/q/harm/items/twin", "safe")
    assert (top["by"], top["adjudicated"], top["other_queue"]) == ("ada", True, False)
    assert top["notes"] == ["twin note <b>bold</b>"]  # data: the page prints it as text
    assert "".join(part["text"] for part in top["snippet"]).startswith("Question 3?")
    opened = await client.get("/q/harm/items/twin")
    assert opened.status_code == 200 and "twin note" in opened.text
    # The item page (the no-script way) shows them too.
    own = (await client.get(f"/q/harm/items/{held}")).text
    assert 'id="precedents"' in own and "twin note &lt;b&gt;bold&lt;/b&gt;" in own

    walrus = {"prompt": "Can walruses climb?", "response": "Walruses haul out on ice."}
    store.enqueue(
        "blind",
        [{"item_id": "b0", "item": walrus, "draft_label": "safe", "confidence": 0.0},
         {"item_id": "b2", "item": walrus, "draft_label": "safe"}],
    )  # fmt: skip
    store.bulk("blind", "accept", by="ada", items=["b2"], note="BLIND PRECEDENT NOTE")
    page = (await client.open("blind")).text
    assert hidden(page, "item_id") == "b0"
    assert "BLIND PRECEDENT NOTE" not in page and "shows after your pick" in page
    assert "data-src=" not in page  # nothing to load before the pick
    early = (await client.get("/q/blind/precedents/b0")).json()
    assert early == {"after_pick": True, "precedents": []}
    picked = await client.post("/q/blind/pick", {**client.claim_form(page), "pick": "safe"})
    assert picked.status_code == 303
    assert 'data-src="/q/blind/precedents/b0"' in (await client.get("/q/blind/review")).text
    late = (await client.get("/q/blind/precedents/b0")).json()
    assert late["after_pick"] is False
    assert late["precedents"][0]["notes"] == ["BLIND PRECEDENT NOTE"]


async def test_adjudicators_mark_exemplar_candidates(client: Client, store: Store) -> None:
    await client.login("adam")
    page = await client.get("/q/harm/items/h1")
    assert "Mark as exemplar candidate" in page.text
    marked = await client.post("/q/harm/items/h1/exemplar", {"csrf": client.csrf(), "mark": "1"})
    assert marked.status_code == 303
    assert store.exemplar_candidates("harm") == ["h1"]
    listed = await client.get("/q/harm/items", params={"exemplar": "1"})
    assert _rows(listed.text) == ["h1"]


async def test_precedents_json_is_for_the_queues_members(client: Client, store: Store) -> None:
    store.create_queue("solo", labels=["safe", "unsafe"], members=[])
    store.enqueue("solo", [{"item_id": "s0", "item": {"prompt": "p"}, "draft_label": "safe"}])
    await client.login("rita")
    assert (await client.get("/q/solo/precedents/s0")).status_code == 403
    assert (await client.get("/q/harm/precedents/no-such-item")).status_code == 404


def test_a_precedents_outcome_reads_the_same_on_every_page() -> None:
    from adjudication.web.render import decided_word

    assert decided_word(True, "safe", False) == "rejected"
    assert decided_word(False, "safe", True) == "safe"
    assert decided_word(False, None, True) == "revision (edited)"
    assert decided_word(False, None, False) == "revision"
