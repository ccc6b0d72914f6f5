"""The reviewer-quality page in Debian's Chromium (Playwright): an admin goes from the dashboard
to it and sees the rubber-stamper and the scripted reviewer flagged, the careful one not."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adjudication import open_store
from adjudication.web import create_app

from .conftest import SECRET, seed
from .live import serve
from .test_browser import Server, _log_in, browser  # noqa: F401 (the module's browser fixture)
from .test_raters_page import seed_team

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]


@pytest.fixture
def team_server(tmp_path: Path, password_hash: str) -> Iterator[Server]:
    db_url = f"sqlite:///{tmp_path / 'queue.db'}"
    with open_store(db_url) as store:
        seed(store, password_hash)
        seed_team(store)
    with serve(create_app(db_url, secret_key=SECRET)) as url:
        yield Server(url, db_url)


def test_an_admin_reads_the_reviewer_page_in_a_real_browser(
    browser: Any,  # noqa: F811 (the fixture imported above)
    team_server: Server,
) -> None:
    ada = _log_in(browser, team_server, "ada")
    page = ada.page
    page.goto(team_server.url + "/q/team/dashboard")
    script = page.locator("tr", has=page.locator("td", has_text="script")).first
    assert "too_fast" in script.inner_text()
    with page.expect_navigation():
        page.get_by_role("link", name="Reviewer quality: gold, κ, flags").click()
    assert page.url == team_server.url + "/q/team/raters"
    flags = page.get_by_role("region", name="flags")
    assert flags.is_visible()
    shown = {
        (item.get_attribute("data-reviewer"), item.get_attribute("data-flag"))
        for item in flags.locator("li").all()
    }
    assert shown == {("stamp", "rubber_stamp"), ("stamp", "too_fast"), ("script", "too_fast")}
    stamp = page.locator('#reviewers tr[data-reviewer="stamp"]')
    assert "100.0% of" in stamp.inner_text()  # gave the critic's label every time
    ann = page.locator('#reviewers tr[data-reviewer="ann"]')
    assert ann.locator(".tag").count() == 0
    # The evidence is in the flag's tooltip too.
    title = stamp.locator(".tag", has_text="rubber_stamp").get_attribute("title") or ""
    assert title.startswith("gave the critic's label on")
    assert ada.errors == [] and ada.dialogs == []
