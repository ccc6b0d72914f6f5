"""The reviewer-quality page (admins only) and the dashboard's too_fast flag, in-process on
SQLite and on a real PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest

from adjudication import Store, open_store
from adjudication.simulation import SimulatedReviewer, play, simulate_team
from adjudication.testing import FakeClock
from adjudication.web import create_app

from .conftest import SECRET, Client

pytestmark = pytest.mark.anyio

TEAM = [
    SimulatedReviewer("ann", 0.95),
    SimulatedReviewer("stamp", None, median_seconds=2.0),
    SimulatedReviewer("script", 0.9, median_seconds=0.0045),
]


def seed_team(store: Store) -> None:
    """Queue "team": a careful reviewer, a rubber-stamper and a scripted reviewer (0.0045 s a
    decision: some 800,000 decisions per hour), two reviews per item."""
    sim = simulate_team(60, TEAM, labels=("safe", "unsafe"), overlap=2, critic_accuracy=0.75,
                        gold_rate=0.0, seed=7)  # fmt: skip
    store.create_queue("team", overlap=2, labels=["safe", "unsafe"], members=["adam"])
    play(store, "team", sim)


def flag_items(html: str) -> set[tuple[str, str]]:
    return set(re.findall(r'<li data-reviewer="([^"]+)" data-flag="([^"]+)">', html))


async def test_admins_see_each_reviewers_quality_and_flags(client: Client, store: Store) -> None:
    seed_team(store)
    await client.login("ada")
    page = await client.get("/q/team/raters")
    assert page.status_code == 200
    assert flag_items(page.text) == {
        ("stamp", "rubber_stamp"), ("stamp", "too_fast"), ("script", "too_fast"),
    }  # fmt: skip
    assert "gave the critic&#39;s label on" in page.text
    assert '<tr data-reviewer="ann">' in page.text
    assert "other reviewers&#39; consensus" in page.text  # the baseline beside the share
    assert "<h2>Label model</h2>" in page.text and "answers unsafe" in page.text

    dashboard = await client.get("/q/team/dashboard")
    assert 'href="/q/team/raters"' in dashboard.text
    row = re.search(r"<tr><td>script</td>.*?</tr>", dashboard.text, re.S)
    assert row is not None and "too_fast" in row.group(0)
    assert "median 0.0 s per decision over" in row.group(0)
    careful = re.search(r"<tr><td>ann</td>.*?</tr>", dashboard.text, re.S)
    assert careful is not None and "too_fast" not in careful.group(0)
    members = await client.get("/q/team/members")
    assert 'href="/q/team/raters"' in members.text


async def test_only_admins_open_the_reviewer_page(client: Client, store: Store) -> None:
    seed_team(store)
    for user in ("adam", "rita"):
        await client.login(user)
        assert (await client.get("/q/team/raters")).status_code == 403, user
    await client.login("adam")
    dashboard = await client.get("/q/team/dashboard")
    assert dashboard.status_code == 200
    assert "/q/team/raters" not in dashboard.text  # adjudicators see no link to it
    assert "too_fast" in dashboard.text  # but they do see the flag


async def test_a_queue_without_decisions_has_an_empty_page(client: Client) -> None:
    await client.login("ada")
    page = await client.get("/q/harm/raters")
    assert page.status_code == 200
    assert "No decisions yet." in page.text
    assert (await client.get("/q/nope/raters")).status_code == 404


@pytest.fixture
async def browser(any_db_url: str, clock: FakeClock) -> AsyncIterator[Client]:
    with open_store(any_db_url, clock=clock) as store:
        seed_team(store)
    app = create_app(any_db_url, secret_key=SECRET, clock=clock)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield Client(http)
    app.state.web.store.close()


async def test_the_reviewer_page_on_each_store(browser: Client) -> None:
    """The page's one read (decisions, outcomes, withdrawals, the blind baseline's JSON path
    into the drafts) runs on SQLite and PostgreSQL alike."""
    await browser.login("ada")
    page = await browser.get("/q/team/raters")
    assert page.status_code == 200
    assert ("stamp", "rubber_stamp") in flag_items(page.text)
    assert (await browser.get("/q/team/dashboard")).status_code == 200
