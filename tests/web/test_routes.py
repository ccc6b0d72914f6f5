"""The web app in-process (httpx ASGI transport): log-in, roles, CSRF, review and adjudication."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from adjudication import Store
from adjudication.testing import FakeClock

from .conftest import PASSWORD, XSS, Client, hidden

pytestmark = pytest.mark.anyio


# -- log-in and sessions ---------------------------------------------------------------------


async def test_pages_need_a_log_in_and_come_back_after_it(client: Client) -> None:
    response = await client.get("/q/harm/review?x=1")
    assert response.status_code == 303
    target = urlparse(response.headers["location"])
    assert target.path == "/login"
    assert parse_qs(target.query)["next"] == ["/q/harm/review?x=1"]
    await client.get(response.headers["location"])
    response = await client.post(
        "/login",
        {
            "username": "rita",
            "password": PASSWORD,
            "csrf": client.csrf(),
            "next": "/q/harm/review?x=1",
        },
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/q/harm/review?x=1"


async def test_log_in_sets_an_httponly_samesite_cookie_and_a_new_session(client: Client) -> None:
    await client.get("/login")
    before = client.http.cookies["critic_session"]
    response = await client.post(
        "/login", {"username": "rita", "password": PASSWORD, "csrf": client.csrf()}
    )
    assert response.status_code == 303
    cookie = response.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=lax" in cookie
    assert client.http.cookies["critic_session"] != before
    assert (await client.get("/")).status_code == 200


async def test_wrong_passwords_and_unknown_users_are_refused_alike(client: Client) -> None:
    wrong = await client.login("rita", "not the password")
    assert wrong.status_code == 401
    assert "Wrong user name or password" in wrong.text
    unknown = await client.login("nobody", PASSWORD)
    assert unknown.status_code == 401
    assert "Wrong user name or password" in unknown.text
    assert (await client.get("/")).status_code == 303


async def test_log_in_attempts_are_rate_limited_per_user(client: Client, clock: FakeClock) -> None:
    for _ in range(5):
        assert (await client.login("rita", "wrong password")).status_code == 401
    limited = await client.login("rita", PASSWORD)  # even the right password waits
    assert limited.status_code == 429
    assert int(limited.headers["retry-after"]) > 0
    assert (await client.login("rick", PASSWORD)).status_code == 303  # other users are not
    clock.advance(301)
    assert (await client.login("rita", PASSWORD)).status_code == 303


async def test_a_redirect_after_log_in_stays_on_this_site(client: Client) -> None:
    await client.get("/login")
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
        response = await client.post(
            "/login",
            {"username": "rita", "password": PASSWORD, "csrf": client.csrf(), "next": target},
        )
        assert response.headers["location"] == "/"
        await client.get("/login")


async def test_log_out_ends_the_session_and_its_csrf_token(client: Client) -> None:
    await client.login("rita")
    await client.get("/")
    old_csrf = client.csrf()
    response = await client.post("/logout", {"csrf": old_csrf})
    assert response.status_code == 303
    assert (await client.get("/")).status_code == 303
    await client.login("rita")
    assert (await client.post("/logout", {"csrf": old_csrf})).status_code == 403


async def test_deactivation_and_a_new_password_end_open_sessions(
    client: Client, other: Client, store: Store, password_hash: str
) -> None:
    await client.login("rita")
    await other.login("rick")
    store.update_user("rita", active=False)
    assert (await client.get("/")).status_code == 303
    assert (await client.login("rita")).status_code == 401
    store.update_user("rick", password_hash=password_hash.replace("$", "$", 1) + "")
    assert (await other.get("/")).status_code == 200  # same hash: same session
    from adjudication.web import hash_password

    store.update_user("rick", password_hash=hash_password("a brand new one"))
    assert (await other.get("/")).status_code == 303


async def test_passwords_are_stored_as_argon2id_hashes(client: Client, store: Store) -> None:
    await client.login("ada")
    await client.get("/admin/users")
    response = await client.post(
        "/admin/users",
        {"name": "newbie", "role": "reviewer", "password": "s3cret-words", "csrf": client.csrf()},
    )
    assert response.status_code == 303
    stored = store.user("newbie").password_hash
    assert stored is not None and stored.startswith("$argon2id$")
    assert "s3cret-words" not in stored


# -- CSRF ------------------------------------------------------------------------------------


def _post_routes(app: FastAPI) -> list[str]:
    paths = []
    for route in app.routes:
        if isinstance(route, APIRoute) and "POST" in route.methods:
            paths.append(
                route.path.replace("{queue}", "harm")
                .replace("{item_id:path}", "h0")
                .replace("{name}", "rita")
            )
    return paths


async def test_every_post_route_refuses_a_missing_or_foreign_csrf_token(
    app: FastAPI, client: Client, other: Client
) -> None:
    await client.login("ada")
    await other.login("adam")
    await other.get("/")
    foreign = other.csrf()
    paths = _post_routes(app)
    # 15; a queue's settings, archive and delete: 18; bulk actions and exemplar marks: 20
    assert len(paths) == 20
    for path in paths:
        assert (await client.post(path, {})).status_code == 403, path
        assert (await client.post(path, {"csrf": foreign})).status_code == 403, path
        assert (
            await client.post(path, {}, headers={"X-CSRF-Token": "forged"})
        ).status_code == 403, path


async def test_the_log_in_form_itself_needs_its_csrf_token(client: Client) -> None:
    await client.get("/login")
    response = await client.post("/login", {"username": "rita", "password": PASSWORD})
    assert response.status_code == 403


# -- roles -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user", "allowed"),
    [
        # Members open the item list and items (a precedent opens there).
        ("rita", {"/", "/q/harm/review", "/q/harm/items", "/q/harm/items/h0"}),
        (
            "adam",
            {
                "/",
                "/q/harm/review",
                "/q/harm/adjudicate",
                "/q/harm/dashboard",
                "/q/harm/items",
                "/q/harm/items/h0",
            },
        ),
        (
            "ada",
            {
                "/",
                "/q/harm/review",
                "/q/harm/adjudicate",
                "/q/harm/dashboard",
                "/q/harm/items",
                "/q/harm/items/h0",
                "/q/harm/members",
                "/admin/users",
            },
        ),
    ],
)
async def test_roles_decide_which_pages_open(client: Client, user: str, allowed: set[str]) -> None:
    await client.login(user)
    pages = ["/", "/q/harm/review", "/q/harm/adjudicate", "/q/harm/dashboard", "/q/harm/items",
             "/q/harm/items/h0", "/q/harm/members", "/admin/users"]  # fmt: skip
    for page in pages:
        status = (await client.get(page)).status_code
        assert status == (200 if page in allowed else 403), (user, page, status)


async def test_only_admins_create_queues_and_users(client: Client, store: Store) -> None:
    for name in ("rita", "adam"):
        await client.login(name)
        await client.get("/")
        csrf = client.csrf()
        queue = await client.post("/admin/queues", {"name": "x", "csrf": csrf})
        user = await client.post(
            "/admin/users", {"name": "x", "role": "admin", "password": "long enough", "csrf": csrf}
        )
        promote = await client.post(
            f"/admin/users/{name}", {"role": "admin", "active": "true", "csrf": csrf}
        )
        assert (queue.status_code, user.status_code, promote.status_code) == (403, 403, 403)
        await client.post("/logout", {"csrf": csrf})
    assert "x" not in [q.name for q in store.queues()]
    assert store.user("rita").role == "reviewer"
    await client.login("ada")
    await client.get("/")
    response = await client.post(
        "/admin/queues",
        {
            "name": "fresh",
            "labels": "good, bad",
            "overlap": "2",
            "blind": "true",
            "csrf": client.csrf(),
        },
    )
    assert response.status_code == 303
    fresh = store.queue("fresh")
    assert (fresh.labels, fresh.overlap, fresh.blind) == (("good", "bad"), 2, True)


async def test_a_claim_cannot_be_decided_by_someone_it_was_not_handed_to(
    client: Client, other: Client, store: Store
) -> None:
    await client.login("rita")
    await client.open("harm")
    form = client.claim_form()
    await other.login("rick")
    await other.get("/")
    stolen = {**form, "csrf": other.csrf(), "action": "accept"}
    assert (await other.post("/q/harm/decide", stolen)).status_code == 403
    assert store.decisions("harm") == []


# -- reviewing -------------------------------------------------------------------------------


async def test_the_review_page_says_why_the_item_is_here(client: Client) -> None:
    await client.login("rita")
    page = await client.open("harm")
    assert page.status_code == 200
    text = page.text
    assert "low_confidence" in text and "0.20" in text  # route reason, confidence
    assert "1 of 7 pending" in text
    assert 'data-expires-in="300"' in text
    assert "Question 0?" in text and "Rationale 0" in text
    assert "Do not help with violence." in text  # the cited principle's text
    for key in ("A", "E", "R", "X", "G", "S", "Z", "1", "2"):
        assert f"<kbd>{key}</kbd>" in text


async def test_a_repeated_submit_stores_one_decision(client: Client, store: Store) -> None:
    await client.login("rita")
    await client.open("harm")
    form = {**client.claim_form(), "action": "accept"}
    first = await client.post("/q/harm/decide", form)
    second = await client.post("/q/harm/decide", form)
    assert first.status_code == second.status_code == 303
    assert first.headers["location"] == "/q/harm/review?notice=saved"
    decided = store.decisions("harm")
    assert [(d.item_id, d.reviewer, d.action, d.label) for d in decided] == [
        ("h0", "rita", "accept", "safe")
    ]
    assert store.task("harm", "h0").state == "done"
    assert "Question 1?" in (await client.open("harm")).text


async def test_a_number_key_gives_that_label(client: Client, store: Store) -> None:
    await client.login("rita")
    await client.open("harm")
    await client.post("/q/harm/decide", {**client.claim_form(), "label": "unsafe"})
    await client.open("harm")
    await client.post("/q/harm/decide", {**client.claim_form(), "label": "safe"})
    decided = store.decisions("harm")
    assert [(d.action, d.label) for d in decided] == [("edit", "unsafe"), ("accept", "safe")]


async def test_overriding_a_confident_draft_needs_a_note(client: Client, store: Store) -> None:
    store.enqueue("harm", [{"item_id": "first", "draft_label": "safe", "confidence": 0.97,
                            "priority": -1, "item": {"response": "x"}}])  # fmt: skip
    await client.login("rita")
    page = await client.open("harm")
    assert "first" in page.text
    form = client.claim_form()
    refused = await client.post("/q/harm/decide", {**form, "action": "reject"})
    assert refused.status_code == 422
    assert "say in the note why" in refused.text
    assert store.decisions("harm") == []
    accepted = await client.post("/q/harm/decide", {**form, "label": "safe"})  # no override
    assert accepted.status_code == 303
    # The decision claimed rita's next item (h0); give it back so that the reopened item,
    # the most urgent, comes to her next.
    held = store.held("harm", "rita", kind="review")
    assert held is not None and held.task.item_id == "h0"
    store.release(held.token)
    store.reopen("harm", "first", by="ada")
    await client.open("harm")
    form = client.claim_form()
    saved = await client.post("/q/harm/decide", {**form, "label": "unsafe", "note": "threat"})
    assert saved.status_code == 303
    assert store.decisions("harm", "first")[-1].note == "threat"


async def test_an_edited_revision_is_stored_with_the_decision(client: Client, store: Store) -> None:
    await client.login("rita")
    await client.open("harm")
    while hidden(client.last, "item_id") != "revised":  # it comes last (priority 0.95)
        await client.post("/q/harm/skip", client.claim_form())
        await client.open("harm")
    page = client.last
    assert "<del> cat</del><ins> dog</ins>" in page  # word diff
    assert '<mark class="ev"' in page  # the finding's evidence in the item
    form = {**client.claim_form(), "action": "edit", "edit_label": "unsafe",
            "revision": "The dog sat on the mat."}  # fmt: skip
    assert (await client.post("/q/harm/decide", form)).status_code == 303
    (decision,) = store.decisions("harm", "revised")
    assert (decision.action, decision.label) == ("edit", "unsafe")
    assert decision.edit == {"revision": "The dog sat on the mat."}


async def test_skip_escalate_and_constitution_gap(client: Client, store: Store) -> None:
    await client.login("rita")
    await client.open("harm")
    assert (await client.post("/q/harm/skip", client.claim_form())).status_code == 303
    await client.open("harm")
    assert hidden(client.last, "item_id") == "h1"
    await client.post("/q/harm/decide", {**client.claim_form(), "action": "escalate"})
    await client.open("harm")
    await client.post(
        "/q/harm/decide", {**client.claim_form(), "action": "gap", "note": "no rule on satire"}
    )
    decided = store.decisions("harm")
    assert [(d.item_id, d.action, d.note) for d in decided] == [
        ("h1", "escalate", None),
        ("h2", "escalate", "[constitution gap] no rule on satire"),
    ]
    assert store.task("harm", "h0").state == "pending"  # skipped: someone else's now


async def test_the_heartbeat_renews_the_lease(client: Client, clock: FakeClock) -> None:
    await client.login("rita")
    await client.open("harm")
    form = client.claim_form()
    clock.advance(200)
    headers = {"X-CSRF-Token": form.pop("csrf"), "Accept": "application/json"}
    beat = await client.post("/q/harm/heartbeat", form, headers=headers)
    assert beat.status_code == 200
    assert beat.json() == {"expires_in": 300.0}
    clock.advance(301)
    late = await client.post("/q/harm/heartbeat", form, headers=headers)
    assert late.status_code == 409
    assert "expired" in late.json()["error"]


async def test_a_decision_after_the_lease_expired_is_not_stored(
    client: Client, store: Store, clock: FakeClock
) -> None:
    await client.login("rita")
    await client.open("harm")
    form = client.claim_form()
    clock.advance(301)
    response = await client.post("/q/harm/decide", {**form, "action": "accept"})
    assert response.headers["location"] == "/q/harm/review?notice=expired"
    assert store.decisions("harm") == []


async def test_a_blind_queue_hides_the_draft_until_the_first_pick(
    client: Client, store: Store
) -> None:
    await client.login("rita")
    page = (await client.open("blind")).text
    assert "SECRET RATIONALE" not in page
    assert "unsafe</strong>" not in page and "0.40" not in page
    assert 'formaction="/q/blind/pick"' in page and 'name="pick" value="safe"' in page
    picked = await client.post("/q/blind/pick", {**client.claim_form(page), "pick": "safe"})
    assert picked.status_code == 303
    picked_page = (await client.get(picked.headers["location"])).text
    assert "SECRET RATIONALE" in picked_page and "0.40" in picked_page
    assert hidden(picked_page, "pick") == "safe"
    assert "Confirm “safe”" in picked_page
    await client.post(
        "/q/blind/decide",
        {**client.claim_form(picked_page), "pick": "safe", "action": "accept"},
    )
    (decision,) = store.decisions("blind")
    assert (decision.action, decision.label) == ("edit", "safe")  # differs from the critic


# -- adjudication, dashboard, history --------------------------------------------------------


async def test_an_adjudicator_adopts_one_reviewers_answer(
    client: Client, other: Client, store: Store
) -> None:
    await client.login("rita")
    await client.open("pairs")
    await client.post("/q/pairs/decide", {**client.claim_form(), "action": "accept"})
    await other.login("rick")
    await other.open("pairs")
    await other.post("/q/pairs/decide", {**other.claim_form(), "label": "unsafe", "note": "bad"})
    assert store.task("pairs", "p1").state == "adjudication"
    await client.post("/logout", {"csrf": client.csrf()})
    await client.login("adam")
    page = (await client.open("pairs", "adjudicate")).text
    assert "rita" in page and "rick" in page and "Adopt critic" in page
    rick = next(d for d in store.decisions("pairs") if d.reviewer == "rick")
    response = await client.post(
        "/q/pairs/adjudicate", {**client.claim_form(page), "adopt": str(rick.id)}
    )
    assert response.status_code == 303
    task = store.task("pairs", "p1")
    assert (task.state, task.final_label, task.final_source) == ("done", "unsafe", "adjudicated")
    again = await client.post(
        "/q/pairs/adjudicate", {**client.claim_form(page), "adopt": str(rick.id)}
    )
    assert again.status_code == 303  # a repeated click changes nothing
    assert [d.kind for d in store.decisions("pairs")].count("adjudication") == 1


async def test_dashboard_and_item_history(client: Client, store: Store) -> None:
    await client.login("ada")
    for _ in range(3):
        await client.open("harm")
        await client.post("/q/harm/decide", {**client.claim_form(), "label": "unsafe"})
    page = await client.get("/q/harm/dashboard")
    assert page.status_code == 200
    assert "<polyline points=" in page.text
    assert "100.0% (3)" in page.text  # H1 overridden in all three reviews
    history = await client.get("/q/harm/items/h0")
    assert history.status_code == 200
    for kind in ("enqueued", "claimed", "decided"):
        assert f"<td>{kind}</td>" in history.text
    reopened = await client.post("/q/harm/items/h0/reopen", {"csrf": client.csrf(), "note": "oops"})
    assert reopened.status_code == 303
    assert store.task("harm", "h0").state == "pending"


async def test_untrusted_text_is_escaped_and_template_syntax_stays_text(client: Client) -> None:
    await client.login("rita")
    page = (await client.open("pairs")).text
    assert "<script>window" not in page and "<img src=x" not in page
    assert "&lt;script&gt;window.__pwned" in page
    assert "onerror=&#34;" in page or "onerror=&quot;" in page
    assert "{{ 7*7 }}" in page and "{% if 1 %}T{% endif %}" in page
    assert ">49<" not in page
    assert "script-src 'self'" in (await client.open("pairs")).headers["content-security-policy"]
    assert XSS.count("alert") == 4
