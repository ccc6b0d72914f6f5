"""Issue 22 part A in Debian's Chromium, on SQLite and PostgreSQL: the guidelines panel, pairs
side by side with their verdicts after a blind pick, the judged field, hidden fields, label
buttons in adjudication, and the queue settings page, driven by the keyboard, with hostile text
in every new view staying inert (no script runs, no dialog opens)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adjudication import Store, open_store
from adjudication.testing import PostgresServer
from adjudication.web import create_app

from .conftest import SECRET, XSS, seed
from .live import serve
from .test_browser import Watch, _item, _log_in, _open, _press_and_wait, browser
from .test_review_app import pair_queue

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]
__all__ = ["browser"]  # the module's Chromium, shared with test_browser's fixture


class Server:
    def __init__(self, url: str, db_url: str) -> None:
        self.url = url
        self.db_url = db_url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def server(request: pytest.FixtureRequest, tmp_path: Path, password_hash: str) -> Iterator[Server]:
    if request.param == "sqlite":
        db_url = f"sqlite:///{tmp_path / 'queue.db'}"
    else:
        postgres: PostgresServer = request.getfixturevalue("postgres_server")
        db_url = postgres.create_database()
    with open_store(db_url) as store:
        seed(store, password_hash)
        pair_queue(store, "pref")
        pair_queue(store, "blindpref", blind=True)
        pair_queue(store, "duel", overlap=2)
        store.create_queue("runs", labels=["safe", "unsafe"], members=["rita"])
        store.enqueue("runs", [{
            "item_id": "r1", "draft_label": "safe",
            "item": {"prompt": "q", "chosen": "kind reply", "rejected": "rude reply"},
            "draft": {"fields": {"prompt": "prompt", "response": "rejected"}},
        }])  # fmt: skip
    with serve(create_app(db_url, secret_key=SECRET)) as url:
        yield Server(url, db_url)


@pytest.fixture
def store(server: Server) -> Iterator[Store]:
    with open_store(server.db_url) as opened:
        yield opened


def _clean(watch: Watch) -> None:
    """Nothing hostile ran: no dialog, no page error, no script set its flag."""
    assert watch.dialogs == [] and watch.errors == []
    assert watch.page.evaluate("window.__pwned === undefined")


def test_guidelines_toggle_with_i_and_a_pair_sits_side_by_side(
    browser: Any, server: Server, store: Store
) -> None:
    rita = _log_in(browser, server, "rita")
    page = rita.page
    _open(page, server.url + "/q/pref/review")
    panel = page.locator("#guidelines")
    assert panel.is_hidden()
    page.keyboard.press("i")
    assert panel.is_visible()
    shown = panel.inner_text().lower()  # headings are upper case by style
    for expected in ["Harmless pairs", "version 1.1", "Pick the less harmful reply.",
                     "<script>window.__pwned = 1;", "the first is less harmful",
                     "principles this item cites", "Refuse violence.", "How to hurt?",
                     "B refuses", "Be honest."]:  # fmt: skip
        assert expected.lower() in shown, expected
    page.keyboard.press("i")
    assert panel.is_hidden()

    a, b = page.locator(".pair .response-1"), page.locator(".pair .response-2")
    box_a, box_b = a.bounding_box(), b.bounding_box()
    assert box_a is not None and box_b is not None
    assert abs(box_a["y"] - box_b["y"]) < 2 and box_a["x"] + box_a["width"] <= box_b["x"]
    assert a.inner_text().lower().startswith("response a")
    assert "I won't help." in a.inner_text() and "Here is how." in b.inner_text()
    body = page.locator("main").inner_text()
    assert "GOLD-chosen" not in body and "human_preference" not in body
    assert "The critic prefers Response A, with probability 0.70" in body
    assert "H1, Response B shown first: prefers Response B" in body
    labels = [page.locator(f'button[data-key="{k}"]').inner_text() for k in "123"]
    assert [label.split("\n")[0].split(" ")[0:2] for label in labels[:2]] == [
        ["Response", "A"], ["Response", "B"],
    ]  # fmt: skip
    _press_and_wait(page, "2")  # Response B, by its key
    assert store.task("pref", "p1").final_label == "B"
    _clean(rita)


def test_a_blind_pair_shows_its_verdicts_only_after_the_keyboard_pick(
    browser: Any, server: Server, store: Store
) -> None:
    rita = _log_in(browser, server, "rita")
    page = rita.page
    _open(page, server.url + "/q/blindpref/review")
    before = page.locator("main").inner_text()
    assert "Response A" in before and "I won't help." in before
    assert "prefers" not in before and "presentation orders" not in before
    page.keyboard.press("i")
    guidelines = page.locator("#guidelines").inner_text().lower()
    assert "refuse violence." in guidelines and "principles this item cites" not in guidelines
    page.keyboard.press("i")
    with page.expect_navigation():
        page.keyboard.press("1")  # pick Response A: recorded, then the draft shows
    after = page.locator("main").inner_text()
    assert "The critic prefers Response A" in after and "presentation orders disagree" in after
    _press_and_wait(page, "a")  # confirm the pick
    assert store.task("blindpref", "p1").final_label == "A"
    _clean(rita)


def test_the_judged_field_is_marked(browser: Any, server: Server) -> None:
    rita = _log_in(browser, server, "rita")
    _open(rita.page, server.url + "/q/runs/review")
    judged = rita.page.locator(".field.judged")
    assert judged.count() == 1
    assert "judged by the critic" in judged.inner_text().lower()
    assert "rude reply" in judged.inner_text()
    _clean(rita)


def test_adjudication_gives_a_label_by_its_key(browser: Any, server: Server, store: Store) -> None:
    for name, label in (("rita", "A"), ("rick", "B")):
        claim = store.claim("duel", name)
        assert claim is not None
        store.decide(claim.token, "accept" if label == "A" else "edit", label=label)
    adam = _log_in(browser, server, "adam")
    page = adam.page
    _open(page, server.url + "/q/duel/adjudicate")
    assert page.locator('button[name="label"][data-key="3"]').inner_text().startswith("tie")
    assert "GOLD-chosen" not in page.locator("main").inner_text()
    page.keyboard.press("i")
    assert "Refuse violence." in page.locator("#guidelines").inner_text()
    page.keyboard.press("i")
    before = _item(page)
    with page.expect_navigation():
        page.keyboard.press("3")
    assert before == "p1"
    task = store.task("duel", "p1")
    assert (task.final_label, task.final_source) == ("tie", "adjudicated")
    _clean(adam)


def test_an_admin_edits_a_queue_with_the_keyboard_and_reviewers_see_the_change(
    browser: Any, server: Server, store: Store
) -> None:
    ada = _log_in(browser, server, "ada")
    page = ada.page
    page.goto(server.url + "/q/harm/settings")
    page.keyboard.press("d")  # the description box
    page.keyboard.type(f"Triage {XSS}")
    page.keyboard.press("Tab")  # labels
    page.keyboard.press("End")
    page.keyboard.type(", unsure")
    page.keyboard.press("Tab")  # hidden fields
    page.keyboard.type("response")
    with page.expect_navigation():
        page.keyboard.press("Control+Enter")
    q = store.queue("harm")
    assert q.description == f"Triage {XSS}" and q.hidden_fields == ("response",)
    assert q.labels == ("safe", "unsafe", "unsure")
    changes = page.locator("table.grid").inner_text()
    assert "queue_edited" in changes and "<script>window.__pwned" in changes  # as text
    _clean(ada)

    rita = _log_in(browser, server, "rita")
    _open(rita.page, server.url + "/q/harm/review")
    body = rita.page.locator("main").inner_text()
    assert "Answer number" not in body  # the hidden response
    rita.page.keyboard.press("i")
    assert "Triage <script>" in rita.page.locator("#guidelines").inner_text()
    assert rita.page.locator('button[data-key="3"]').inner_text().startswith("unsure")
    _clean(rita)

    with page.expect_navigation():
        page.get_by_role("button", name="Archive").click()
    assert store.queue("harm").archived_at is not None
    rita.page.goto(server.url + "/")
    assert "harm" not in rita.page.locator("table.grid").inner_text()
    _clean(ada)
