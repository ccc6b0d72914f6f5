"""The pages that run the web app's own queries, on SQLite and on a real PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from adjudication import open_store
from adjudication.errors import QueueError
from adjudication.testing import FakeClock
from adjudication.web import create_app

from .conftest import SECRET, Client, hidden

pytestmark = pytest.mark.anyio


@pytest.fixture
async def browser(any_db_url: str, clock: FakeClock) -> AsyncIterator[Client]:
    app = create_app(any_db_url, secret_key=SECRET, clock=clock)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield Client(http)
    app.state.web.store.close()


async def test_review_position_dashboard_and_history_on_each_store(
    browser: Client, any_db_url: str, clock: FakeClock
) -> None:
    await browser.login("ada")
    page = (await browser.open("harm")).text
    assert "1 of 7 pending" in page
    await browser.post("/q/harm/decide", {**browser.claim_form(), "label": "unsafe"})
    page = (await browser.open("harm")).text
    assert hidden(page, "item_id") == "h1"
    assert "1 of 7 pending" in page  # the count is cached for a few seconds
    await browser.post("/q/harm/decide", {**browser.claim_form(), "action": "gap", "note": "x"})
    dashboard = await browser.get("/q/harm/dashboard")
    assert dashboard.status_code == 200
    assert "[constitution gap] x" in dashboard.text
    assert "100.0% (1)" in dashboard.text  # H1: one judged review, overridden
    history = await browser.get("/q/harm/items/h0")
    assert "<td>decided</td>" in history.text
    with open_store(any_db_url, clock=clock) as store:
        assert [(d.item_id, d.action) for d in store.decisions("harm")] == [
            ("h0", "edit"),
            ("h1", "escalate"),
        ]


async def test_a_generated_secret_sessions_and_blind_picks_on_each_store(
    any_db_url: str, clock: FakeClock
) -> None:
    """The web app's own writes (a stored secret, session epochs, blind picks) on both stores."""
    first, second = create_app(any_db_url, clock=clock), create_app(any_db_url, clock=clock)
    try:
        one = httpx.AsyncClient(transport=httpx.ASGITransport(app=first), base_url="http://t")
        two = httpx.AsyncClient(transport=httpx.ASGITransport(app=second), base_url="http://t")
        async with one, two:
            rita = Client(one)
            assert (await rita.login("rita")).status_code == 303
            two.cookies.update(one.cookies)  # the other process signs with the same secret
            assert (await two.get("/")).status_code == 200
            await rita.get("/")
            await rita.post("/logout", {"csrf": rita.csrf()})
            assert (await two.get("/")).status_code == 303  # its epoch moved on
        store = first.state.web.store
        assert store.user("rita").session_epoch == 1
        claim = store.claim("blind", "rick")
        assert claim is not None and claim.pick is None
        assert store.pick(claim.token, "safe").pick == "safe"
        with pytest.raises(QueueError, match="cannot change"):
            store.pick(claim.token, "unsafe")
        store.release(claim.token)
        again = store.claim("blind", "rick")
        assert again is not None and again.pick == "safe"
        assert store.held("blind", "rick", kind="review") == again
        with pytest.raises(QueueError, match="cannot change"):
            store.decide(again.token, "edit", label="unsafe")
        assert store.decide(again.token, "accept", label="safe").label == "safe"
    finally:
        first.state.web.store.close()
        second.state.web.store.close()
