"""The item list, search, bulk actions and precedents in Debian's Chromium (Playwright), by
keyboard, on SQLite and on a real PostgreSQL; hostile item text stays inert in search snippets
and precedents.

Skips without Chromium or playwright locally and fails in CI, as `test_browser.py` does.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adjudication import open_store
from adjudication.testing import PostgresServer
from adjudication.web import create_app

from .conftest import SECRET, XSS, seed
from .live import serve
from .test_browser import Server, Watch, _log_in, browser

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]
__all__ = ["browser"]  # the module-scoped Chromium fixture, shared with test_browser.py

WALRUS = {"prompt": "Can walruses climb rocks?", "response": "Walruses haul out on rocks."}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def live(request: pytest.FixtureRequest, tmp_path: Path, password_hash: str) -> Iterator[Server]:
    """The app under uvicorn over a seeded database of each kind, with a hostile item in "harm"
    and a walrus item decided in "blind" (with a hostile note) beside an open one."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'queue.db'}"
    else:
        postgres: PostgresServer = request.getfixturevalue("postgres_server")
        url = postgres.create_database()
    with open_store(url) as store:
        seed(store, password_hash)
        store.enqueue(
            "harm",
            [{"item_id": "evil", "item": {"prompt": "walrus question", "response": XSS},
              "draft_label": "safe", "confidence": 0.99, "priority": 2.0}],
        )  # fmt: skip
        store.enqueue(
            "blind",
            [{"item_id": "w-open", "item": WALRUS, "draft_label": "safe", "confidence": 0.0},
             {"item_id": "w-done", "item": WALRUS, "draft_label": "unsafe", "confidence": 0.9}],
        )  # fmt: skip
        store.bulk("blind", "accept", by="ada", items=["w-done"], note="tusk note " + XSS)
    with serve(create_app(url, secret_key=SECRET)) as base:
        yield Server(base, url)


def _inert(watch: Watch) -> None:
    page = watch.page
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.locator("main img").count() == 0
    assert page.locator("script").count() == 1  # only /static/app.js
    assert page.locator("a[href^='javascript:'], [onerror], [onclick]").count() == 0


def test_search_tick_and_accept_in_bulk_by_keyboard(browser: Any, live: Server) -> None:
    adam = _log_in(browser, live, "adam")
    page = adam.page
    page.goto(live.url + "/q/harm/items")
    assert page.locator("tr.item-row").count() == 8
    page.keyboard.press("/")  # the search box
    page.keyboard.type("walrus")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    rows = page.locator("tr.item-row")
    assert rows.count() == 1 and "evil" in rows.first.inner_text()
    snippet = rows.first.locator("td.snippet").inner_text()
    assert snippet.startswith("walrus question <script>window.__pwned = 1;")  # as text
    assert page.locator("mark.hit").first.inner_text() == "walrus"
    _inert(adam)
    # J moves to the first item, X ticks it; the bulk form is filled and sent from the keyboard.
    page.keyboard.press("j")
    page.keyboard.press("x")
    assert page.locator("input[name=item][value=evil]").is_checked()
    page.select_option("select[name=action]", "accept")
    page.locator("input[name=note]").focus()
    page.keyboard.type("checked by hand")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    notice = page.locator(".notice").first.inner_text()
    assert notice == "Accepted the critic's answer for 1 item(s); 0 already as asked."
    with open_store(live.db_url) as store:
        task = store.task("harm", "evil")
        assert (task.state, task.final_label, task.final_source) == ("done", "safe", "adjudicated")
        kinds = [e.kind for e in store.history("harm", "evil")]
        assert kinds.count("bulk_accepted") == 1
    # J then Enter opens the item.
    page.keyboard.press("j")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url.endswith("/q/harm/items/evil")
    assert "checked by hand" in page.locator("main").inner_text()
    _inert(adam)
    assert adam.dialogs == [] and adam.errors == []


def test_a_blind_reviewer_sees_precedents_only_after_the_pick(browser: Any, live: Server) -> None:
    rita = _log_in(browser, live, "rita")
    page = rita.page
    page.goto(live.url + "/q/blind/review")
    page.wait_for_function("document.activeElement && document.activeElement.type === 'submit'")
    with page.expect_navigation():
        page.keyboard.press("Enter")  # claim
    assert page.locator("input[name=item_id]").input_value() == "w-open"
    panel = page.locator("section.precedents")
    assert "after your pick" in panel.inner_text()
    assert panel.locator("a").count() == 0 and "tusk note" not in page.content()
    # The list does not leak the open item's draft either.
    with open_store(live.db_url) as store:
        assert store.items("blind", viewer="rita").restricted
    with page.expect_navigation():
        page.keyboard.press("1")  # pick "safe"
    panel = page.locator("section.precedents")
    # The page is up before its precedents: the script fills the panel from their JSON.
    panel.locator("li.precedent").first.wait_for()
    assert "w-done" in panel.inner_text() and "unsafe" in panel.inner_text()
    assert "tusk note <script>" in panel.inner_text()  # the hostile note, as text
    _inert(rita)
    page.keyboard.press("p")  # to the first precedent
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert page.url.endswith("/q/blind/items/w-done")
    assert "tusk note" in page.locator("main").inner_text()
    _inert(rita)
    assert rita.dialogs == [] and rita.errors == []
