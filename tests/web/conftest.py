"""Fixtures for the review web app: a seeded queue database, the app, and signed-in clients."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from adjudication import Store, open_store
from adjudication.testing import (
    FakeClock,
    PostgresServer,
)
from adjudication.web import create_app, hash_password

PASSWORD = "correct horse battery"
SECRET = "tests-only-signing-key-7f3Kq9Zx2LmP4vW8sYt1uBc6dHf0gJ"
"""A signing key long and varied enough for `create_app` (never use it outside tests)."""
XSS = (
    '<script>window.__pwned = 1; alert("xss")</script>'
    '<img src=x onerror="window.__pwned = 2; alert(1)">'
    '<a href="javascript:alert(3)" onclick="alert(4)">click</a> {{ 7*7 }} {% if 1 %}T{% endif %}'
)


@pytest.fixture(scope="session")
def password_hash() -> str:
    """One argon2 hash for every test user (hashing is deliberately slow)."""
    return hash_password(PASSWORD)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def seed(store: Store, password_hash: str) -> None:
    """Users of each role, a labelled queue, a blind queue and a double-review queue."""
    for name, role in [
        ("ada", "admin"),
        ("adam", "adjudicator"),
        ("rita", "reviewer"),
        ("rick", "reviewer"),
    ]:
        store.add_user(name, role, password_hash=password_hash)  # type: ignore[arg-type]
    team = ["adam", "rita", "rick"]
    store.create_queue("harm", labels=["safe", "unsafe"], lease_seconds=300, members=team)
    store.create_queue("blind", labels=["safe", "unsafe"], blind=True, members=team)
    store.create_queue("pairs", labels=["safe", "unsafe"], overlap=2, members=team)
    texts = {"principle_texts": {"H1": "Do not help with violence.", "H2": "Be honest."}}
    store.enqueue(
        "harm",
        [
            {
                "item_id": f"h{i}",
                "item": {"prompt": f"Question {i}?", "response": f"Answer number {i} is fine."},
                "draft": {
                    "rationale": f"Rationale {i}",
                    "principles": ["H1"],
                    "label": "safe",
                    **texts,
                },
                "draft_label": "safe",
                "confidence": 0.2 + i / 100,
                "route_reason": "low_confidence",
                "principle_ids": ["H1"],
            }
            for i in range(5)
        ]
        + [
            {
                "item_id": "confident",
                "item": {"prompt": "Is this fine?", "response": "Yes, it is."},
                "draft": {"rationale": "Clearly fine.", "principles": ["H2"], **texts},
                "draft_label": "safe",
                "confidence": 0.95,
                "route_reason": "audit_sample",
                "principle_ids": ["H2"],
                "priority": 0.9,
            },
            {
                "item_id": "revised",
                "item": {"prompt": "Tell me", "response": "The cat sat on the mat."},
                "draft": {
                    "original": "The cat sat on the mat.",
                    "revision": "The dog sat on the big mat.",
                    "findings": [{"principle": "H2", "quote": "cat sat", "problem": "wrong"}],
                    "critique": "It says cat.",
                    **texts,
                },
                "draft_label": "unsafe",
                "confidence": 0.5,
                "route_reason": "critics_disagree",
                "principle_ids": ["H2"],
                "priority": 0.95,
            },
        ],
    )
    store.enqueue(
        "blind",
        [
            {
                "item_id": "b1",
                "item": {"prompt": "p", "response": "r"},
                "draft": {"rationale": "SECRET RATIONALE"},
                "draft_label": "unsafe",
                "confidence": 0.4,
                "route_reason": "low_confidence",
            }
        ],
    )
    store.enqueue(
        "pairs",
        [
            {
                "item_id": "p1",
                "item": {"prompt": "p", "response": XSS},
                "draft": {"rationale": XSS, "findings": [{"principle": "H1", "quote": "alert"}]},
                "draft_label": "safe",
                "confidence": 0.3,
                "route_reason": "low_confidence",
                "principle_ids": ["H1"],
            }
        ],
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def db_url(tmp_path: Path, password_hash: str, clock: FakeClock) -> str:
    """A seeded SQLite queue database."""
    url = f"sqlite:///{tmp_path / 'queue.db'}"
    with open_store(url, clock=clock) as store:
        seed(store, password_hash)
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_db_url(
    request: pytest.FixtureRequest, tmp_path: Path, password_hash: str, clock: FakeClock
) -> str:
    """A seeded queue database of each kind."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'queue.db'}"
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        url = server.create_database()
    with open_store(url, clock=clock) as store:
        seed(store, password_hash)
    return url


@pytest.fixture
def store(db_url: str, clock: FakeClock) -> Iterator[Store]:
    with open_store(db_url, clock=clock) as opened:
        yield opened


@pytest.fixture
def app(db_url: str, clock: FakeClock) -> FastAPI:
    return create_app(db_url, secret_key=SECRET, clock=clock)


class Client:
    """An httpx client on the app in-process, with form helpers."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.last = ""

    async def get(self, url: str, **kwargs: Any) -> httpx.Response:
        response = await self.http.get(url, **kwargs)
        if response.headers.get("content-type", "").startswith("text/html"):
            self.last = response.text
        return response

    async def post(self, url: str, data: dict[str, Any] | None = None, **kw: Any) -> httpx.Response:
        return await self.http.post(url, data=data or {}, **kw)

    def csrf(self, html: str | None = None) -> str:
        return hidden(html or self.last, "csrf")

    async def login(self, name: str, password: str = PASSWORD) -> httpx.Response:
        await self.get("/login")
        return await self.post(
            "/login", {"username": name, "password": password, "csrf": self.csrf()}
        )

    async def open(self, queue: str, page: str = "review") -> httpx.Response:
        """Open a queue's review (or adjudicate) page as a browser would: it shows the item the
        user holds, or a button that claims the next one with a POST, which is pressed here."""
        shown = await self.get(f"/q/{queue}/{page}")
        if shown.status_code != 200 or 'name="token"' in shown.text:
            return shown
        kind = "adjudication" if page == "adjudicate" else "review"
        claimed = await self.post(f"/q/{queue}/claim", {"csrf": self.csrf(), "kind": kind})
        assert claimed.status_code == 303, claimed.text
        return await self.get(claimed.headers["location"])

    def claim_form(self, html: str | None = None) -> dict[str, str]:
        page = html or self.last
        return {k: hidden(page, k) for k in ("csrf", "token", "sig", "item_id")}


def hidden(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found, f"no hidden field {name!r} in the page"
    return found.group(1)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[Client]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield Client(http)


@pytest.fixture
async def other(app: FastAPI) -> AsyncIterator[Client]:
    """A second browser."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield Client(http)
