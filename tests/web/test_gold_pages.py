"""A gold item is indistinguishable on every page a reviewer can open: the same HTML shape and
no gold marker in any response; its known answer shows to admins only."""

from __future__ import annotations

import re

import pytest

from adjudication.store import Store
from tests.web.conftest import Client

pytestmark = pytest.mark.anyio

_SHAPE = re.compile(r'<([a-z0-9]+)|(?:class|id|name|data-[a-z-]+)="[^"]*"')


def _shape(html: str) -> list[str]:
    """The page's tags and attribute values, every digit made 0 (the items differ only in
    their numbers: ids h1/h2, confidences, tokens' digits are random anyway)."""
    return sorted({m.group(0) for m in _SHAPE.finditer(re.sub(r"\d+", "0", html))
                   if "token" not in m.group(0) and "sig" not in m.group(0)})


async def test_gold_items_look_like_any_other_item(client: Client, store: Store) -> None:
    store.add_gold("harm", {"h1": "unsafe"})  # at rate 0 it waits
    await client.login("rita")
    await client.open("harm")  # one real item first, so every page after has the undo bar
    first = await client.post("/q/harm/decide", {**client.claim_form(), "action": "accept"})
    assert first.status_code == 303
    store.set_gold_rate("harm", 0.5)
    pages: dict[str, str] = {}
    while len(pages) < 6:
        page = await client.open("harm")
        if 'name="token"' not in page.text:
            break
        item = client.claim_form()["item_id"]
        pages[item] = page.text
        for response in (page,):
            assert "gold" not in response.text.lower()
        form = {**client.claim_form(), "action": "label", "label": "safe"}
        saved = await client.post("/q/harm/decide", form)
        assert saved.status_code == 303 and "gold" not in saved.text.lower()
        after = await client.get(saved.headers["location"])
        assert "gold" not in after.text.lower()
    assert "h1" in pages and "h2" in pages
    assert _shape(pages["h1"]) == _shape(pages["h2"])
    assert store.task("harm", "h1").state == "pending"  # answered, never settled


async def test_the_known_answer_shows_to_admins_only(
    client: Client, other: Client, store: Store
) -> None:
    store.add_gold("harm", {"h1": "unsafe"})
    await other.login("adam")  # an adjudicator, who may review too
    page = await other.get("/q/harm/items/h1")
    assert page.status_code == 200 and "gold" not in page.text.lower()
    await client.login("ada")
    admin = await client.get("/q/harm/items/h1")
    assert "Gold answers" in admin.text or "gold_set" in admin.text
