"""Regression tests for the second hardening round of the review app (issue 20, items 3, 4 and
7): NUL characters, what a missing queue or user name costs, queue and password bounds, and a
resubmitted claim. Driven in-process with httpx, on SQLite and on a real PostgreSQL. Each one
failed on the code before its fix (the report that came with the change says how)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, event

from adjudication import open_store
from adjudication.testing import FakeClock
from adjudication.web import create_app

from .conftest import SECRET, Client, hidden

pytestmark = pytest.mark.anyio


@pytest.fixture
async def app_url(any_db_url: str, clock: FakeClock) -> AsyncIterator[tuple[Any, str]]:
    app = create_app(any_db_url, secret_key=SECRET, clock=clock)
    yield app, any_db_url
    app.state.web.store.close()


@pytest.fixture
async def browser(app_url: tuple[Any, str]) -> AsyncIterator[Client]:
    transport = httpx.ASGITransport(app=app_url[0])
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield Client(http)


@pytest.fixture
async def second(app_url: tuple[Any, str]) -> AsyncIterator[Client]:
    transport = httpx.ASGITransport(app=app_url[0])
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield Client(http)


def _refused_for_nul(response: httpx.Response) -> None:
    assert response.status_code == 400, response.text[:300]
    assert "NUL character" in response.text


def _no_error_logged(caplog: pytest.LogCaptureFixture) -> None:
    loud = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert loud == [], [r.getMessage() for r in loud]


# -- 3: a NUL character is a 400, never a 500 -------------------------------------------------


async def test_a_nul_character_without_an_account_is_a_400_and_logs_no_traceback(
    browser: Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await browser.get("/login")
    csrf = browser.csrf()
    login = await browser.post("/login", {"username": "ri\x00ta", "password": "x", "csrf": csrf})
    _refused_for_nul(login)  # the form encodes it as ri%00ta
    raw = await browser.http.post(
        "/login",
        content=f"username=ri\x00ta&password=x&csrf={csrf}".encode(),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    _refused_for_nul(raw)

    async def cut() -> AsyncIterator[bytes]:  # `%00` split between two chunks of the body
        yield b"username=ri%0"
        yield f"0ta&password=x&csrf={csrf}".encode()

    split = await browser.http.post(
        "/login", content=cut(), headers={"content-type": "application/x-www-form-urlencoded"}
    )
    _refused_for_nul(split)
    as_json = await browser.http.get("/login?next=%00", headers={"accept": "application/json"})
    assert as_json.status_code == 400 and "NUL character" in as_json.json()["error"]
    # A literal "%00" typed into a field arrives as %2500: that is text, not a NUL.
    typed = await browser.post("/login", {"username": "rita%00", "password": "x", "csrf": csrf})
    assert typed.status_code == 401
    _no_error_logged(caplog)


async def test_a_nul_character_in_a_note_or_an_address_is_a_400_and_nothing_is_stored(
    browser: Client, app_url: tuple[Any, str], clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await browser.login("adam")  # an adjudicator: may open item histories
    page = await browser.open("harm")
    item = hidden(page.text, "item_id")
    form = {**browser.claim_form(), "label": "unsafe", "note": "fine\x00 really"}
    _refused_for_nul(await browser.post("/q/harm/decide", form))
    for path in ("/q/harm/items/x%00y", "/q/ha%00rm/review", "/q/harm/review?notice=%00"):
        _refused_for_nul(await browser.get(path))
    _no_error_logged(caplog)
    with open_store(app_url[1], clock=clock) as store:
        assert store.decisions("harm") == []
        held = store.held("harm", "adam", kind="review")
        assert held is not None and held.task.item_id == item  # still theirs to decide
    form["note"] = "fine, really"
    assert (await browser.post("/q/harm/decide", form)).status_code == 303


# -- 4: a missing queue or user name costs what an existing one costs --------------------------


@contextmanager
def statements() -> Iterator[list[str]]:
    """The queries every engine sends meanwhile, in order (not BEGIN and the like)."""
    sent: list[str] = []

    def record(*args: Any) -> None:
        if args[2].split(None, 1)[0] in ("SELECT", "INSERT", "UPDATE", "DELETE"):
            sent.append(args[2])

    event.listen(Engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(Engine, "before_cursor_execute", record)


async def test_a_missing_queue_costs_what_a_queue_the_reviewer_is_not_in_costs(
    browser: Client, app_url: tuple[Any, str], clock: FakeClock
) -> None:
    with open_store(app_url[1], clock=clock) as store:
        store.create_queue("secret", labels=["safe", "unsafe"])
    await browser.login("rita")
    with statements() as existing:
        real = await browser.get("/q/secret/review")
    with statements() as missing:
        absent = await browser.get("/q/secrte/review")
    assert real.status_code == absent.status_code == 403
    assert real.text.split("<main>")[1] == absent.text.split("<main>")[1]
    # The same statements, so the same work: no listing of queue names, no did-you-mean.
    assert missing == existing and len(missing) == 2  # the signed-in user, then the queue
    assert not any("FROM queues" in sql and "WHERE" not in sql for sql in missing)


async def test_a_wrong_user_name_costs_what_a_wrong_password_costs(browser: Client) -> None:
    await browser.get("/login")
    csrf = browser.csrf()
    with statements() as known:
        wrong_password = await browser.post(
            "/login", {"username": "rita", "password": "not the one", "csrf": csrf}
        )
    with statements() as unknown:
        wrong_name = await browser.post(
            "/login", {"username": "ritta", "password": "not the one", "csrf": csrf}
        )
    assert wrong_password.status_code == wrong_name.status_code == 401
    assert unknown == known and len(unknown) == 1  # no listing of user names
    assert "rita" not in wrong_name.text.split("<main>")[1].replace('value="ritta"', "")


# -- 7: bounds on a queue's settings and on passwords; a resubmit says what was kept ----------


async def test_an_admin_cannot_create_a_queue_with_an_absurd_overlap_or_lease(
    browser: Client, app_url: tuple[Any, str], clock: FakeClock
) -> None:
    await browser.login("ada")
    await browser.get("/")
    cases = {
        "huge-overlap": ({"overlap": str(10**20)}, "overlap must be between 1 and 100"),
        "huge-lease": ({"lease_seconds": str(10**12)}, "lease_seconds must be between 1 and 86400"),
    }
    for name, (settings, message) in cases.items():
        refused = await browser.post(
            "/admin/queues", {"name": name, "csrf": browser.csrf(), **settings}
        )
        assert refused.status_code == 400, refused.text[:300]
        assert message in refused.text
    made = await browser.post(
        "/admin/queues", {"name": "day-long", "lease_seconds": "86400", "csrf": browser.csrf()}
    )
    assert made.status_code == 303
    with open_store(app_url[1], clock=clock) as store:
        names = {q.name for q in store.queues()}
        assert "huge-overlap" not in names and "huge-lease" not in names
        store.enqueue("day-long", [{"item_id": "d1", "item": {"text": "t"}}])
        claim = store.claim("day-long", "ada")  # a claim on the longest lease works
        assert claim is not None
        assert (claim.expires_at - claim.claimed_at).total_seconds() == 86400


@pytest.mark.parametrize(
    ("password", "message"),
    [
        ("password", "at least 10 characters"),
        ("12345678", "at least 10 characters"),
        ("1234567890", "most common passwords"),
        ("Password2024!", "most common passwords"),
        ("qwertyuiop", "most common passwords"),
        ("aaaaaaaaaaaa", "at least 5 different characters"),
        ("{name} is my name", "may not contain the user name"),
    ],
)
async def test_weak_passwords_are_refused_on_the_users_page(
    browser: Client, password: str, message: str
) -> None:
    await browser.login("ada")
    await browser.get("/admin/users")
    new = password.format(name="nina")
    form = {"name": "nina", "role": "reviewer", "password": new, "csrf": browser.csrf()}
    refused = await browser.post("/admin/users", form)
    assert refused.status_code == 400 and message in refused.text
    assert f'value="{new}"' not in refused.text  # never echoed back
    page = await browser.get("/admin/users")
    assert ">nina<" not in page.text
    changed = await browser.post(
        "/admin/users/rita", {"role": "reviewer", "active": "true",
                              "password": password.format(name="Rita"), "csrf": browser.csrf()}
    )  # fmt: skip
    assert changed.status_code == 400 and message in changed.text


async def test_a_resubmit_with_another_label_says_the_first_decision_stands(
    browser: Client, app_url: tuple[Any, str], clock: FakeClock
) -> None:
    await browser.login("rita")
    page = await browser.open("harm")
    form = browser.claim_form(page.text)
    first = await browser.post("/q/harm/decide", {**form, "label": "unsafe", "note": "why"})
    assert "Saved." in (await browser.get(first.headers["location"])).text
    # The same form posted again (a double click, a retry): the same decision, "Saved."
    again = await browser.post("/q/harm/decide", {**form, "label": "unsafe", "note": "why"})
    assert "Saved." in (await browser.get(again.headers["location"])).text
    # Another answer with the same claim (Back, then another label): not saved, and said so.
    other = await browser.post("/q/harm/decide", {**form, "label": "safe"})
    shown = (await browser.get(other.headers["location"])).text
    assert "Saved." not in shown and "Not saved" in shown and "first decision stands" in shown
    with open_store(app_url[1], clock=clock) as store:
        [decision] = [d for d in store.decisions("harm") if d.item_id == form["item_id"]]
    assert (decision.action, decision.label, decision.note) == ("edit", "unsafe", "why")


async def test_an_adjudicators_resubmit_with_another_answer_says_the_first_stands(
    browser: Client, second: Client, app_url: tuple[Any, str], clock: FakeClock
) -> None:
    await browser.login("rita")
    await second.login("rick")
    for reviewer, label in ((browser, "unsafe"), (second, "safe")):  # they disagree on p1
        await reviewer.open("pairs")
        await reviewer.post("/q/pairs/decide", {**reviewer.claim_form(), "label": label})
    adam = Client(browser.http)
    await browser.post("/logout", {"csrf": browser.csrf((await browser.get("/")).text)})
    await adam.login("adam")
    page = await adam.open("pairs", "adjudicate")
    form = adam.claim_form(page.text)
    first = await adam.post("/q/pairs/adjudicate", {**form, "adopt": "reject"})
    assert "Saved." in (await adam.get(first.headers["location"])).text
    other = await adam.post("/q/pairs/adjudicate", {**form, "adopt": "critic"})
    shown = (await adam.get(other.headers["location"])).text
    assert "Not saved" in shown
    with open_store(app_url[1], clock=clock) as store:
        task = store.task("pairs", "p1")
    assert task.rejected and task.final_source == "adjudicated"
