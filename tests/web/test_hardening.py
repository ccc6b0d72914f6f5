"""Regression tests for the review app's hardening (issue 14, items 7-14, 16, 17), each through
a real server: uvicorn on a loopback port, driven with httpx. Every one of them failed on the
code before the fix (the report that came with the change says how each failed)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from adjudication import Store, open_store
from adjudication.errors import QueueError, SettingsError
from adjudication.testing import FakeClock
from adjudication.web import create_app

from .conftest import PASSWORD, SECRET, hidden, seed
from .live import serve, serve_process


class Browser:
    """One browser's cookies on a live server, with the page it last loaded."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=60)
        self.last = ""

    def get(self, path: str, **kw: Any) -> httpx.Response:
        response = self.http.get(path, **kw)
        self.last = response.text
        return response

    def post(self, path: str, data: dict[str, Any] | None = None, **kw: Any) -> httpx.Response:
        response = self.http.post(path, data=data or {}, **kw)
        self.last = response.text
        return response

    def csrf(self) -> str:
        return hidden(self.last, "csrf")

    def login(self, name: str, password: str = PASSWORD, **kw: Any) -> httpx.Response:
        self.get("/login")
        form = {"username": name, "password": password, "csrf": self.csrf()}
        return self.post("/login", form, **kw)

    def open(self, queue: str) -> httpx.Response:
        """The review page with an item: claimed with the page's POST button if none is held."""
        page = self.get(f"/q/{queue}/review")
        if 'name="token"' not in page.text:
            claimed = self.post(f"/q/{queue}/claim", {"csrf": self.csrf(), "kind": "review"})
            page = self.get(claimed.headers["location"])
        return page


@pytest.fixture
def db(tmp_path: Path, password_hash: str) -> str:
    url = f"sqlite:///{tmp_path / 'queue.db'}"
    with open_store(url) as store:
        seed(store, password_hash)
        store.create_queue("secret", labels=["safe", "unsafe"])
        store.enqueue("secret", [{"item_id": "s1", "item": {"text": "hush"}}])
    return url


@pytest.fixture
def store(db: str) -> Iterator[Store]:
    with open_store(db) as opened:
        yield opened


@pytest.fixture
def url(db: str) -> Iterator[str]:
    with serve(create_app(db, secret_key=SECRET)) as base:
        yield base


# -- 7: sessions end at log-out, and after a while without requests --------------------------


def test_a_saved_cookie_opens_nothing_after_log_out(url: str, store: Store) -> None:
    rita, laptop = Browser(url), Browser(url)
    rita.login("rita")
    laptop.login("rita")  # the same user on a second device
    replay = {"cookie": f"critic_session={rita.http.cookies['critic_session']}"}
    page = rita.get("/")
    saved_csrf = rita.csrf()
    assert page.status_code == 200
    assert rita.post("/logout", {"csrf": saved_csrf}).status_code == 303

    # Whoever kept a copy of the cookie (and a CSRF token of its page) replays it.
    assert httpx.get(url + "/", headers=replay).status_code == 303  # to the log-in form
    claim = httpx.post(
        url + "/q/harm/claim", data={"csrf": saved_csrf, "kind": "review"}, headers=replay
    )
    assert claim.status_code == 303 and claim.headers["location"].startswith("/login")
    assert store.held("harm", "rita", kind="review") is None
    assert [e.kind for e in store.history("harm", "h0")] == ["enqueued"]
    assert laptop.get("/").status_code == 303  # log-out ends the user's other sessions too
    assert store.user("rita").session_epoch == 1


def test_a_session_ends_after_the_idle_timeout_but_not_while_in_use(db: str) -> None:
    clock = FakeClock()
    app = create_app(db, secret_key=SECRET, clock=clock, idle_minutes=30, session_hours=12)
    with serve(app) as base:
        rita = Browser(base)
        rita.login("rita")
        for _ in range(3):  # a request every 20 minutes keeps the session
            clock.advance(20 * 60)
            assert rita.get("/").status_code == 200
        clock.advance(31 * 60)
        assert rita.get("/").status_code == 303
    short = create_app(db, secret_key=SECRET, clock=clock, idle_minutes=1)
    with serve(short) as base:  # a request every 50 s keeps even a one-minute timeout at bay
        rick = Browser(base)
        rick.login("rick")
        for _ in range(4):
            clock.advance(50)
            assert rick.get("/").status_code == 200


# -- 8, 9: the log-in limiter ----------------------------------------------------------------


@pytest.mark.anyio
async def test_concurrent_wrong_passwords_get_exactly_the_limit_of_checks(url: str) -> None:
    clients = [httpx.AsyncClient(base_url=url, timeout=120) for _ in range(100)]
    try:
        forms = []
        for http in clients:
            page = await http.get("/login")
            forms.append(
                {"username": "ada", "password": "wrong guess", "csrf": hidden(page.text, "csrf")}
            )
        answers = await asyncio.gather(
            *(http.post("/login", data=form) for http, form in zip(clients, forms, strict=True))
        )
    finally:
        for http in clients:
            await http.aclose()
    statuses = sorted(a.status_code for a in answers)
    # Every 401 is one password check: the limit is 5 per name and address, however concurrent.
    assert statuses.count(401) == 5, statuses
    assert statuses.count(429) == 95


def test_guessing_from_one_address_locks_neither_the_name_elsewhere_nor_the_address(
    db: str,
) -> None:
    app = create_app(db, secret_key=SECRET, forwarded_allow_ips=["127.0.0.1"])
    with serve(app) as base:
        guesser = {"X-Forwarded-For": "203.0.113.9"}
        for name in ("ada", "rita", "rick", "adam", "nobody"):
            for _ in range(5):
                assert Browser(base).login(name, "wrong", headers=guesser).status_code == 401
        assert Browser(base).login("ada", headers=guesser).status_code == 429
        # The admin, elsewhere behind the same proxy, still gets in.
        admin = {"X-Forwarded-For": "198.51.100.7"}
        assert Browser(base).login("ada", headers=admin).status_code == 303


def test_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy(url: str) -> None:
    # The app trusts no proxy: a guesser cannot dodge the limit with a new header each time.
    for n in range(5):
        spoof = {"X-Forwarded-For": f"192.0.2.{n}"}
        assert Browser(url).login("rita", "wrong", headers=spoof).status_code == 401
    spoof = {"X-Forwarded-For": "192.0.2.99"}
    assert Browser(url).login("rita", headers=spoof).status_code == 429


def test_a_team_behind_one_address_is_not_locked_out_by_a_guesser(url: str) -> None:
    for name in [f"guess{n}" for n in range(10)] + ["rick"]:  # 55 failures from 127.0.0.1
        for _ in range(5):
            assert Browser(url).login(name, "wrong").status_code == 401
    assert Browser(url).login("ada").status_code == 303


# -- 10: secrets and password-less users -----------------------------------------------------


@pytest.mark.parametrize(
    "weak", ["x", "a" * 64, secrets.token_urlsafe(20), b"k" * 40, b"\x01" * 31]
)
def test_a_weak_secret_is_refused(db: str, weak: str | bytes) -> None:
    with pytest.raises(SettingsError, match="too weak"):
        create_app(db, secret_key=weak)


def _forge(secret: str, user: str, now: float) -> str:
    """A session cookie as an attacker who knows the secret would sign it: every field that
    any version of the app reads, the empty-password fingerprint included."""
    fields = {"s": "forged", "u": user, "t": now, "e": 0, "a": now,
              "k": hashlib.sha256(b"").hexdigest()[:16]}  # fmt: skip
    payload = base64.urlsafe_b64encode(json.dumps(fields).encode()).decode().rstrip("=")
    mac = hmac.new(secret.encode(), f"session\x00{payload}".encode(), hashlib.sha256).digest()
    return f"{payload}.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"


def test_no_session_is_accepted_for_a_user_without_a_password(url: str, store: Store) -> None:
    store.add_user("ghost", "admin")  # made by the CLI without --password-stdin
    visitor = Browser(url)
    now = time.time()
    visitor.http.cookies.set("critic_session", _forge(SECRET, "ghost", now))
    assert visitor.get("/admin/users").status_code == 303
    assert visitor.login("ghost", "").status_code in (401, 422)


def test_without_a_secret_one_is_generated_stored_and_kept_across_restarts(db: str) -> None:
    with serve(create_app(db)) as first:
        rita = Browser(first)
        assert rita.login("rita").status_code == 303
        cookies = dict(rita.http.cookies)
    with serve(create_app(db)) as second:  # a restart
        again = Browser(second)
        again.http.cookies.update(cookies)
        assert again.get("/").status_code == 200
    with open_store(db) as store:
        stored = store.app_secret("web_session_key", lambda: "unused")
    assert len(stored) >= 43 and stored != "unused"


# -- 11: memory -----------------------------------------------------------------------------


def _stream(fields: int) -> Iterator[bytes]:
    """A form of `fields` fields just under a MiB each: under any per-field limit of a form
    parser, so only a cap on the whole body stops it."""
    yield b"username=ada&password=x"
    for n in range(fields):
        yield f"&f{n}=".encode() + b"a" * ((1 << 20) - 16)


def test_a_huge_anonymous_log_in_body_is_refused_without_reading_it(db: str) -> None:
    form = {"content-type": "application/x-www-form-urlencoded"}
    with serve_process(db, SECRET) as child:
        Browser(child.url).login("ada", "wrong")  # warm up: one full log-in
        before = child.peak_mib()
        declared = httpx.post(child.url + "/login", content=b"".join(_stream(20)), headers=form)
        try:
            streamed = httpx.post(
                child.url + "/login", content=_stream(200), headers=form, timeout=120
            ).status_code
        except httpx.TransportError:
            streamed = 413  # the server answered 413 and closed while the body was still coming
        grown = child.peak_mib() - before
    assert grown < 40, (before, grown)
    assert (declared.status_code, streamed) == (413, 413)


@pytest.mark.anyio
async def test_a_burst_of_log_ins_runs_a_bounded_number_of_argon2_checks(db: str) -> None:
    with serve_process(db, SECRET) as child:
        Browser(child.url).login("ada", "wrong")
        before = child.peak_mib()
        clients = [httpx.AsyncClient(base_url=child.url, timeout=300) for _ in range(30)]
        try:
            forms = []
            for n, http in enumerate(clients):
                page = await http.get("/login")
                forms.append({"username": f"user{n}", "password": "guess",
                              "csrf": hidden(page.text, "csrf")})  # fmt: skip
            answers = await asyncio.gather(
                *(http.post("/login", data=f) for http, f in zip(clients, forms, strict=True))
            )
        finally:
            for http in clients:
                await http.aclose()
        assert {a.status_code for a in answers} <= {401, 503}
        # Two checks of 64 MiB at a time (the default), not one per request thread.
        assert child.peak_mib() - before < 250, (before, child.peak_mib())


def test_a_signed_in_post_over_the_body_cap_gets_413(url: str) -> None:
    rita = Browser(url)
    rita.login("rita")
    rita.open("harm")
    form = {"csrf": rita.csrf(), "action": "escalate", "note": "n" * (2 << 20)}
    assert rita.post("/q/harm/decide", form).status_code == 413


# -- 12: malformed cookies --------------------------------------------------------------------


@pytest.mark.parametrize(
    "cookie",
    ["critic_session=é.é".encode(), b"critic_session=\xff\xfe.x", b"critic_session=a.b.c",
     b"critic_session=.", b'critic_session="x'],
)  # fmt: skip
def test_a_malformed_or_non_ascii_cookie_is_an_anonymous_visitor(url: str, cookie: bytes) -> None:
    answer = httpx.get(url + "/", headers={"cookie": cookie})
    assert answer.status_code == 303 and answer.headers["location"].startswith("/login")
    assert httpx.get(url + "/login", headers={"cookie": cookie}).status_code == 200


# -- 13: a GET never claims -------------------------------------------------------------------


def test_opening_the_review_or_adjudicate_page_claims_nothing(url: str, store: Store) -> None:
    adam = Browser(url)
    adam.login("adam")
    for path in ("/q/harm/review", "/q/harm/review", "/q/pairs/adjudicate"):
        page = adam.get(path)
        assert page.status_code == 200 and 'name="token"' not in page.text
    assert store.held("harm", "adam", kind="review") is None
    assert [e.kind for e in store.history("harm", "h0")] == ["enqueued"]
    claimed = adam.post("/q/harm/claim", {"csrf": adam.csrf(), "kind": "review"})
    assert claimed.headers["location"] == "/q/harm/review"
    assert hidden(adam.get("/q/harm/review").text, "item_id") == "h0"


# -- 14: a blind pick is recorded and locked before the draft shows ---------------------------


def test_a_blind_pick_is_recorded_first_and_cannot_change(url: str, store: Store) -> None:
    rita = Browser(url)
    rita.login("rita")
    page = rita.open("blind")
    assert "SECRET RATIONALE" not in page.text
    assert "SECRET RATIONALE" not in rita.get("/q/blind/review?pick=safe").text  # no peeking
    form = {k: hidden(page.text, k) for k in ("csrf", "token", "sig", "item_id")}
    assert rita.post("/q/blind/pick", {**form, "pick": "safe"}).status_code == 303
    assert "SECRET RATIONALE" in rita.get("/q/blind/review").text
    changed = rita.post("/q/blind/pick", {**form, "pick": "unsafe"})
    assert changed.status_code == 409 and "cannot change" in changed.text
    refused = rita.post("/q/blind/decide", {**form, "action": "accept", "pick": "unsafe"})
    assert refused.status_code == 400 and "cannot change" in refused.text
    rita.post("/q/blind/release", form)  # giving it back and claiming again keeps the pick
    again = rita.open("blind").text
    assert "SECRET RATIONALE" in again and hidden(again, "pick") == "safe"
    picked = [e for e in store.history("blind", "b1") if e.kind == "picked"]
    assert len(picked) == 1 and picked[0].after == {
        "claim": picked[0].after["claim"],
        "pick": "safe",
    }
    fresh = {k: hidden(again, k) for k in ("csrf", "token", "sig", "item_id")}
    rita.post("/q/blind/decide", {**fresh, "action": "accept", "pick": "safe"})
    (decision,) = store.decisions("blind")
    assert decision.label == "safe"


# -- 16: names that fit in a URL --------------------------------------------------------------


@pytest.mark.parametrize("name", ["team/a", "a b", "x?y", "../up", "", "é", "q" * 201, "-lead"])
def test_queue_and_user_names_outside_letters_digits_dash_underscore_dot_are_refused(
    store: Store, name: str
) -> None:
    with pytest.raises(QueueError, match="queue name") as queue_error:
        store.create_queue(name)
    assert queue_error.value.hint and "letters, digits" in queue_error.value.hint
    with pytest.raises(QueueError, match="user name"):
        store.add_user(name)
    store.create_queue("team-a_1.v2")
    store.add_user("jo.smith-2_b")


def test_the_cli_and_the_admin_page_say_why_a_name_is_refused(
    url: str, db: str, store: Store
) -> None:
    from critic.cli import app

    result = CliRunner().invoke(app, ["queue", "create", "team/a", "--db", db])
    assert result.exit_code != 0 and "may not contain '/'" in result.output
    assert "Traceback" not in result.output
    ada = Browser(url)
    ada.login("ada")
    ada.get("/")
    page = ada.post("/admin/queues", {"name": "team/a", "csrf": ada.csrf()})
    assert page.status_code == 400 and "may not contain &#39;/&#39;" in page.text
    assert "team/a" not in [q.name for q in store.queues()]


# -- 17: nothing about other queues or about a right password leaks -------------------------------


def test_a_reviewer_learns_nothing_about_queues_they_are_not_in(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    rita = Browser(url)
    rita.login("rita")
    caplog.set_level(logging.INFO, logger="adjudication.web")
    pages = {path: rita.get(path) for path in ("/q/secret/review", "/q/secre/review")}
    for path, page in pages.items():
        assert page.status_code == 403, path
        main = page.text.split("<main>")[1]
        for leak in ("secret", "did you mean", "not a member", "no queue"):
            assert leak not in main, (path, leak)
    assert {p.text.split("<main>")[1] for p in pages.values()} == {
        pages["/q/secret/review"].text.split("<main>")[1]
    }
    logged = caplog.text
    assert "not a member of queue 'secret'" in logged and "no queue named 'secre'" in logged


def test_a_deactivated_account_is_refused_like_a_wrong_password(url: str, store: Store) -> None:
    store.update_user("rick", active=False)
    right, wrong = Browser(url).login("rick"), Browser(url).login("rick", "not it at all")
    assert right.status_code == wrong.status_code == 401
    assert "deactivated" not in right.text
    assert "Wrong user name or password." in right.text
