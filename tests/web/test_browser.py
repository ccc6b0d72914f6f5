"""End to end in Debian's Chromium, driven by Playwright: keyboard-only review, an edit, undo,
an adjudication, the lease heartbeat, and untrusted content that stays inert.

Needs the `chromium` Debian package (or CRITIC_CHROMIUM) and the playwright Python package; skips
without them locally and fails in CI.
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adjudication import Store, open_store
from adjudication.errors import QueueError
from adjudication.web import create_app

from .conftest import PASSWORD, SECRET, XSS, seed
from .live import chromium, serve

pytestmark = [pytest.mark.browser, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


class Server:
    def __init__(self, url: str, db_url: str) -> None:
        self.url = url
        self.db_url = db_url


@pytest.fixture
def server(tmp_path: Path, password_hash: str) -> Iterator[Server]:
    """The app under uvicorn on a loopback port; the queue "secret" has no members yet."""
    db_url = f"sqlite:///{tmp_path / 'queue.db'}"
    with open_store(db_url) as store:
        seed(store, password_hash)
        store.create_queue("beat", labels=["safe", "unsafe"], lease_seconds=9, members=["rita"])
        store.enqueue("beat", [{"item_id": "t1", "draft_label": "safe", "item": {"text": "x"}}])
        store.create_queue("secret", labels=["safe", "unsafe"])
        store.enqueue("secret", [{"item_id": "s1", "draft_label": "safe", "item": {"text": "y"}}])
    with serve(create_app(db_url, secret_key=SECRET)) as url:
        yield Server(url, db_url)


@pytest.fixture
def store(server: Server) -> Iterator[Store]:
    with open_store(server.db_url) as opened:
        yield opened


class Watch:
    """A page with every dialog and page error recorded (and dialogs dismissed)."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        page.on("dialog", self._dialog)
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()


def _log_in(browser: Any, server: Server, name: str) -> Watch:
    """Log in with the keyboard only."""
    page = browser.new_context().new_page()
    watch = Watch(page)
    page.goto(server.url + "/")
    assert page.url.startswith(server.url + "/login")
    # The user name field has autofocus, which Chromium may apply a moment after the load event:
    # typing before it would go nowhere.
    page.wait_for_function("document.activeElement && document.activeElement.name === 'username'")
    page.keyboard.type(name)
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    try:
        page.wait_for_url(server.url + "/")
    except Exception as exc:
        body = page.locator("body").inner_text()[:500]
        raise AssertionError(f"{name} was not logged in; {page.url} says: {body}") from exc
    return watch


def _item(page: Any) -> str:
    value: str = page.locator("input[name=item_id]").input_value()
    return value


def _open(page: Any, url: str) -> None:
    """Open a review or adjudicate page; when it holds no item yet, press Enter to claim one
    (claiming is a POST: opening the page alone claims nothing)."""
    page.goto(url)
    if page.locator("input[name=item_id]").count() == 0:
        page.wait_for_function("document.activeElement && document.activeElement.type === 'submit'")
        with page.expect_navigation():
            page.keyboard.press("Enter")


def _press_and_wait(page: Any, *keys: str) -> None:
    """Press keys that end in a decision, then wait for the next item's page."""
    before = _item(page)
    with page.expect_navigation():
        for key in keys:
            page.keyboard.press(key)
    assert page.locator("input[name=item_id]").count() == 0 or _item(page) != before


def test_keyboard_only_review_edit_undo_and_adjudication(
    browser: Any, server: Server, store: Store
) -> None:
    rita = _log_in(browser, server, "rita")
    page = rita.page
    _open(page, server.url + "/q/harm/review")
    assert _item(page) == "h0"
    assert page.locator(".why").inner_text().count("low_confidence") == 1

    assert page.locator("form.undo-bar").count() == 0  # nothing decided yet, nothing to undo

    # Undo: A sends the decision at once; Z takes it back and brings the item back.
    _press_and_wait(page, "a")
    assert _item(page) == "h1"
    assert "accept “safe” on item h0" in page.locator("form.undo-bar").inner_text()
    assert [d.item_id for d in store.decisions("harm")] == ["h0"]
    _press_and_wait(page, "z")
    assert _item(page) == "h0"
    assert "Undone" in page.locator(".notice").first.inner_text()
    assert store.decisions("harm") == []
    assert store.task("harm", "h0").state == "pending"
    assert [e.kind for e in store.history("harm", "h0")][-2:] == ["withdrawn", "claimed"]

    _press_and_wait(page, "a")  # h0: accept
    assert _item(page) == "h1"
    _press_and_wait(page, "2")  # h1: label 2 (unsafe)
    _press_and_wait(page, "r")  # h2: reject
    _press_and_wait(page, "1")  # h3: label 1 (safe) = the critic's label
    # h4: edit with the keyboard: E opens the panel on the label list, pick unsafe, note, save.
    page.keyboard.press("e")
    assert page.locator("#edit-panel").is_visible()
    page.keyboard.press("ArrowDown")  # safe -> unsafe in the focused <select>
    page.keyboard.press("Escape")
    page.keyboard.press("n")
    page.keyboard.type("edited by keyboard")
    with page.expect_navigation():
        page.keyboard.press("Control+Enter")
    assert _item(page) == "confident"

    # The high-confidence item: overriding without a note is refused on the page.
    page.keyboard.press("r")
    assert "note" in page.locator("#js-error").inner_text()
    assert _item(page) == "confident"  # nothing was sent
    page.keyboard.press("Escape")  # leave the note box the refusal focused
    _press_and_wait(page, "s")  # skip it

    decided = {d.item_id: d for d in store.decisions("harm")}
    assert {k: (d.action, d.label) for k, d in decided.items()} == {
        "h0": ("accept", "safe"),
        "h1": ("edit", "unsafe"),
        "h2": ("reject", None),
        "h3": ("accept", "safe"),
        "h4": ("edit", "unsafe"),
    }
    assert decided["h4"].note == "edited by keyboard"
    assert all(d.reviewer == "rita" for d in decided.values())

    # A disagreement: rick said unsafe through the store, rita says safe in the browser.
    claim = store.claim("pairs", "rick")
    assert claim is not None
    store.decide(claim.token, "edit", label="unsafe", note="looks bad")
    _open(page, server.url + "/q/pairs/review")
    _press_and_wait(page, "1")
    assert store.task("pairs", "p1").state == "adjudication"

    adam = _log_in(browser, server, "adam")
    _open(adam.page, server.url + "/q/pairs/adjudicate")
    answers = adam.page.locator(".answer")
    assert answers.count() == 3  # the critic, rita and rick side by side
    with adam.page.expect_navigation():
        adam.page.get_by_role("button", name="Adopt rick's answer").click()
    task = store.task("pairs", "p1")
    assert (task.state, task.final_label, task.final_source) == ("done", "unsafe", "adjudicated")
    assert rita.dialogs == adam.dialogs == []
    assert rita.errors == adam.errors == []


def test_reviewers_see_only_their_queues_until_an_admin_adds_them(
    browser: Any, server: Server, store: Store
) -> None:
    rita = _log_in(browser, server, "rita")
    listed = rita.page.locator("table.grid tbody tr td:first-child").all_inner_texts()
    assert "secret" not in " ".join(listed) and any(name.startswith("harm") for name in listed)
    response = rita.page.goto(server.url + "/q/secret/review")
    assert response is not None and response.status == 403
    shown = rita.page.locator("main").inner_text()  # generic: the detail is in the server log
    assert "You cannot open this page" in shown and "not a member" not in shown

    ada = _log_in(browser, server, "ada")  # the admin sees every queue
    assert "secret" in ada.page.locator("table.grid").inner_text()
    ada.page.goto(server.url + "/q/secret/members")
    ada.page.get_by_label("rita").check()
    with ada.page.expect_navigation():
        ada.page.get_by_role("button", name="Add").click()
    assert "rita" in ada.page.locator("table.grid").inner_text()
    assert [u.name for u in store.members("secret")] == ["rita"]

    _open(rita.page, server.url + "/q/secret/review")
    assert _item(rita.page) == "s1"
    assert rita.dialogs == ada.dialogs == [] and rita.errors == ada.errors == []


def test_the_lease_counts_down_and_the_heartbeat_renews_it(browser: Any, server: Server) -> None:
    rita = _log_in(browser, server, "rita")
    page = rita.page
    _open(page, server.url + "/q/beat/review")
    first = page.locator("#lease").inner_text()
    assert first in ("0:09", "0:08", "0:07", "0:06")
    page.mouse.move(5, 5)  # the heartbeat runs only while the reviewer is active
    with page.expect_response(lambda r: r.url.endswith("/q/beat/heartbeat"), timeout=8000) as beat:
        pass
    assert beat.value.status == 200
    page.wait_for_timeout(300)
    remaining = page.locator("#lease").inner_text()
    assert remaining.startswith("0:0") and int(remaining[-1]) >= 7


def test_untrusted_html_scripts_handlers_and_template_syntax_stay_inert(
    browser: Any, server: Server, store: Store
) -> None:
    payload_draft = {
        "rationale": XSS,
        "critique": XSS,
        "findings": [{"principle": "H1", "quote": "alert(1)", "problem": XSS}],
        "revision": XSS + " revised",
        "principle_texts": {"H1": XSS},
        XSS: XSS,
    }
    store.create_queue("xss", labels=["safe", XSS])
    with pytest.raises(QueueError, match="user name"):
        store.add_user(XSS[:200], "reviewer", queues=["xss"])
    store.enqueue(
        "xss",
        [{
            "item_id": XSS,
            "item": {"prompt": XSS, "response": XSS, "messages": [{"role": XSS, "content": XSS}],
                     XSS: XSS},
            "draft": payload_draft,
            "draft_label": XSS,
            "confidence": 0.5,
            "route_reason": XSS,
            "principle_ids": ["H1", XSS],
        }],
    )  # fmt: skip
    ada = _log_in(browser, server, "ada")
    page = ada.page

    def inert() -> None:
        assert page.evaluate("typeof window.__pwned") == "undefined"
        assert page.locator("main img").count() == 0
        assert page.locator("script").count() == 1  # only /static/app.js
        assert page.locator("a[href^='javascript:'], [onerror], [onclick]").count() == 0

    _open(page, server.url + "/q/xss/review")
    body = page.locator("main").inner_text()
    assert "{{ 7*7 }}" in body and "{% if 1 %}T{% endif %}" in body and "49" not in body
    assert '<script>window.__pwned = 1; alert("xss")</script>' in body
    assert page.locator("mark.ev").count() > 0  # evidence highlighted inside the payload text
    inert()
    page.keyboard.press("e")  # the edit panel holds the revision as plain text
    assert page.locator("textarea[name=revision]").input_value() == XSS + " revised"
    page.keyboard.press("Escape")
    page.keyboard.press("e")
    with page.expect_navigation():
        page.keyboard.press("2")  # the payload is also a label: give it (the critic's: accept)
        page.keyboard.press("Enter")
    inert()
    from urllib.parse import quote

    for path in ("/q/xss/items/" + quote(XSS, safe=""), "/q/xss/dashboard", "/", "/admin/users"):
        page.goto(server.url + path)
        # User names can no longer hold markup (see the refusal above): the users page has none.
        assert page.get_by_text("{{ 7*7 }}").count() > 0 or path in ("/", "/admin/users")
        inert()
    page.wait_for_timeout(300)
    assert ada.dialogs == []
    assert ada.errors == []
    (decision,) = store.decisions("xss")
    assert (decision.action, decision.label) == ("accept", XSS)


ATTACKER = "http://attacker.example"


def test_a_link_from_another_site_claims_nothing_and_enter_claims(
    browser: Any, server: Server, store: Store
) -> None:
    """A cross-site top-level GET carries the SameSite=Lax cookie; it must not change state."""
    rita = _log_in(browser, server, "rita")
    page = rita.page
    link = f'<a id="go" href="{server.url}/q/harm/review">win a prize</a>'
    page.context.route(
        ATTACKER + "/**", lambda route: route.fulfill(body=link, content_type="text/html")
    )
    page.goto(ATTACKER + "/")
    with page.expect_navigation():
        page.click("#go")
    assert page.url == server.url + "/q/harm/review"
    assert "rita" in page.locator("header").inner_text()  # signed in: the cookie went along
    assert page.locator("input[name=item_id]").count() == 0  # no item is shown...
    assert store.held("harm", "rita", kind="review") is None  # ...and none was claimed
    assert [e.kind for e in store.history("harm", "h0")] == ["enqueued"]
    page.goto(ATTACKER + "/")  # a second visit changes nothing either
    with page.expect_navigation():
        page.click("#go")
    assert [e.kind for e in store.history("harm", "h0")] == ["enqueued"]

    # The reviewer's own key press claims, with a POST.
    page.wait_for_function("document.activeElement && document.activeElement.type === 'submit'")
    with page.expect_navigation():
        page.keyboard.press("Enter")
    assert _item(page) == "h0"
    assert [e.kind for e in store.history("harm", "h0")] == ["enqueued", "claimed"]
    page.reload()  # reloading shows the same claim and renews nothing
    assert _item(page) == "h0"
    assert [e.kind for e in store.history("harm", "h0")] == ["enqueued", "claimed"]
    assert rita.dialogs == [] and rita.errors == []


def test_a_blind_pick_is_recorded_before_the_draft_shows_and_stays(
    browser: Any, server: Server, store: Store
) -> None:
    rita = _log_in(browser, server, "rita")
    page = rita.page
    _open(page, server.url + "/q/blind/review")
    assert _item(page) == "b1"
    assert "SECRET RATIONALE" not in page.content()
    page.goto(server.url + "/q/blind/review?pick=unsafe")  # the old peek
    assert "SECRET RATIONALE" not in page.content()
    assert [e.kind for e in store.history("blind", "b1")] == ["enqueued", "claimed"]

    with page.expect_navigation():
        page.keyboard.press("1")  # pick "safe": posted and recorded, then the draft shows
    assert "SECRET RATIONALE" in page.locator(".draft").inner_text()
    assert "Your pick: safe (recorded)" in page.locator("main").inner_text()
    assert [e.kind for e in store.history("blind", "b1")][-1] == "picked"
    held = store.held("blind", "rita", kind="review")
    assert held is not None and held.pick == "safe"
    # No key picks again now: the number keys are gone, only the pick can be confirmed.
    assert page.locator("button[name=pick], button[name=label]").count() == 0
    page.keyboard.press("2")
    assert store.held("blind", "rita", kind="review").pick == "safe"  # type: ignore[union-attr]
    # A forged second pick is refused by the server.
    form = {k: page.locator(f"input[name={k}]").first.input_value()
            for k in ("csrf", "token", "sig", "item_id")}  # fmt: skip
    forged = page.request.post(server.url + "/q/blind/pick", form={**form, "pick": "unsafe"})
    assert forged.status == 409
    with page.expect_navigation():
        page.keyboard.press("a")  # confirm the pick
    (decision,) = store.decisions("blind")
    assert (decision.action, decision.label) == ("edit", "safe")
    assert rita.dialogs == [] and rita.errors == []


def test_a_blind_item_shows_nothing_from_the_draft_until_the_pick_keyboard_only(
    browser: Any, server: Server, store: Store
) -> None:
    """Issue 19, item 5, end to end: before the pick no reason, principle, confidence or
    position shows, a reject asks for no note, its undo brings the item back unpicked, a
    guessed decision is refused; the number key records the pick, then everything shows and
    the confidence check applies as before."""
    store.enqueue(
        "blind",
        [
            {
                "item_id": "b0",
                "item": {"prompt": "Sure?", "response": "Certainly."},
                "draft": {
                    "rationale": "SURE RATIONALE",
                    "principle_texts": {"H1": "Do not help with violence."},
                },
                "draft_label": "safe",
                "confidence": 1.0,
                "route_reason": "audit_sample",
                "principle_ids": ["H1"],
                "priority": 0.1,
            }
        ],
    )
    derived = ("SURE RATIONALE", "audit_sample", "H1", "violence", "1.00", "of 2 pending")
    rita = _log_in(browser, server, "rita")
    page = rita.page

    def shown() -> list[str]:
        return [text for text in derived if text in page.locator("main").inner_text()]

    _open(page, server.url + "/q/blind/review")
    assert _item(page) == "b0" and shown() == []
    assert "hidden until you pick" in page.locator(".why").inner_text()
    assert page.locator(".principles").count() == 0

    _press_and_wait(page, "r")  # reject at once: no note is asked for
    assert _item(page) == "b1" and shown() == []
    assert "Your last decision: reject on item b0" in page.locator("form.undo-bar").inner_text()
    _press_and_wait(page, "z")
    assert _item(page) == "b0" and shown() == []
    assert page.locator("button[name=pick]").count() == 2  # still to pick

    form = {k: page.locator(f"input[name={k}]").first.input_value()
            for k in ("csrf", "token", "sig", "item_id")}  # fmt: skip
    for guess in ("safe", "unsafe"):
        forged = page.request.post(
            server.url + "/q/blind/decide", form={**form, "action": "accept", "pick": guess}
        )
        answer = html.unescape(forged.text())
        assert forged.status == 400 and "pick your own label for item 'b0' first" in answer
        assert "SURE" not in answer and "confident" not in answer

    with page.expect_navigation():
        page.keyboard.press("2")  # pick "unsafe"
    assert shown() == list(derived)
    assert page.locator(".principles").count() == 1
    page.keyboard.press("a")  # overriding a sure critic needs a note, as before
    assert "note" in page.locator("#js-error").inner_text()
    page.keyboard.press("Escape")
    page.keyboard.press("n")
    page.keyboard.type("unsafe to me")
    page.keyboard.press("Escape")
    _press_and_wait(page, "a")
    assert _item(page) == "b1"
    assert "edit “unsafe” on item b0" in page.locator("form.undo-bar").inner_text()

    assert [e.kind for e in store.history("blind", "b0")] == [
        "enqueued",
        "claimed",
        "decided",
        "withdrawn",
        "claimed",
        "picked",
        "decided",
    ]
    (decision,) = store.decisions("blind")
    assert (decision.action, decision.label, decision.note) == ("edit", "unsafe", "unsafe to me")
    assert rita.dialogs == [] and rita.errors == []
