"""`critic review serve --webhook URL --webhook-secret S` against a real local receiver: a
receiver that hangs never slows a reviewer; one that fails its first answers, and a server
killed mid-backlog and started again, still get every decision, signed, none lost.
`critic webhooks replay` sends a stretch again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from adjudication import Store, open_store
from adjudication.schema import events
from adjudication.web import hash_password
from adjudication.webhooks import SIGNATURE_HEADER, status, verify
from critic.cli import app
from tests.web.live import free_port

SECRET = "webhook-secret-for-tests"
PASSWORD = "rita-password-1"
ROOT = Path(__file__).resolve().parents[2]


class Receiver:
    """A local HTTP receiver. Each post is answered by the next entry of `script` (an HTTP
    status, or `"hold"`: wait until `release()`, then 200); after the script, `then`."""

    def __init__(self, script: list[int | str], then: int = 200) -> None:
        self.script = list(script)
        self.then = then
        self.posts: list[tuple[dict[str, Any], bool, int]] = []  # (payload, signed ok, status)
        self.holding = threading.Event()
        self._release = threading.Event()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with receiver._lock:
                    step = receiver.script.pop(0) if receiver.script else receiver.then
                if step == "hold":
                    receiver.holding.set()
                    receiver._release.wait(60)
                    receiver.holding.clear()
                    step = 200
                signed = verify(SECRET, body, self.headers.get(SIGNATURE_HEADER))
                with receiver._lock:
                    receiver.posts.append((json.loads(body), signed, int(step)))
                self.send_response(int(step))
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/critic"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def release(self) -> None:
        self._release.set()

    def delivered(self) -> list[str]:
        """Event ids answered 2xx, in order."""
        with self._lock:
            return [p["id"] for p, _, code in self.posts if 200 <= code < 300]

    def close(self) -> None:
        self._release.set()
        self.server.shutdown()


@pytest.fixture
def db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    with open_store(url) as store:
        store.add_user("rita", "reviewer", password_hash=hash_password(PASSWORD))
        store.create_queue("harm", labels=["safe", "unsafe"], members=["rita"])
        store.enqueue(
            "harm",
            [{"item_id": f"h{i}", "item": {"text": f"reply {i}"}, "draft_label": "safe",
              "confidence": 0.5, "origin": f"run7/h{i}"} for i in range(8)],
        )  # fmt: skip
    return url


@contextmanager
def serving(
    db: str, receiver: Receiver, *extra: str
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "critic", "review", "serve", "--db", db, "--port", str(port),
               "--webhook", receiver.url, "--webhook-secret", SECRET, *extra]  # fmt: skip
    process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        assert process.poll() is None, "critic review serve exited"
        try:
            httpx.get(url + "/login", timeout=2)
            break
        except httpx.TransportError:
            assert time.monotonic() < deadline, "critic review serve did not start"
            time.sleep(0.1)
    try:
        yield process, url
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=20)


def hidden(html: str, name: str) -> str:
    import re

    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found, f"no hidden field {name!r}"
    return found.group(1)


def accept_next(web: httpx.Client) -> str:
    """Claim the next item in the browser's way and accept the critic's label."""
    page = web.get("/q/harm/review")
    if 'name="token"' not in page.text:
        claimed = web.post("/q/harm/claim", data={"csrf": hidden(page.text, "csrf"),
                                                  "kind": "review"})  # fmt: skip
        assert claimed.status_code == 303, claimed.text
        page = web.get(claimed.headers["location"])
    form = {k: hidden(page.text, k) for k in ("csrf", "token", "sig", "item_id")}
    decided = web.post("/q/harm/decide", data={**form, "action": "accept"})
    assert decided.status_code == 303, decided.text
    return form["item_id"]


def logged_in(url: str) -> httpx.Client:
    web = httpx.Client(base_url=url, timeout=30)
    page = web.get("/login")
    web.post("/login", data={"username": "rita", "password": PASSWORD,
                             "csrf": hidden(page.text, "csrf")})  # fmt: skip
    return web


def decided_events(db: str) -> list[str]:
    with open_store(db) as store, store._read() as conn:
        ids = conn.execute(select(events.c.id).where(events.c.kind == "decided")
                           .order_by(events.c.id)).scalars()  # fmt: skip
        return [f"critic-event-{i}" for i in ids]


def wait_for(check: Any, seconds: float = 90.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.1)


def test_a_receiver_that_hangs_never_slows_a_reviewer(db: str) -> None:
    receiver = Receiver(["hold"])
    try:
        with serving(db, receiver, "--webhook-timeout", "60") as (_, url):
            web = logged_in(url)
            first = accept_next(web)
            wait_for(receiver.holding.is_set)  # the first decision's post hangs now
            later = [accept_next(web) for _ in range(3)]  # each answered while it hangs
            assert receiver.holding.is_set() and receiver.posts == []
            receiver.release()
            wait_for(lambda: len(receiver.delivered()) == 4)
        assert [p["item_id"] for p, _, _ in receiver.posts] == [first, *later]
        assert all(signed for _, signed, _ in receiver.posts)
    finally:
        receiver.close()


def test_every_decision_arrives_signed_through_failures_and_a_restart(db: str) -> None:
    receiver = Receiver([], then=503)  # failing until told otherwise
    try:
        with serving(db, receiver, "--webhook-timeout", "2") as (process, _):
            with open_store(db) as store:
                for _ in range(3):
                    decide_next(store)
            wait_for(lambda: len(receiver.posts) >= 2)  # the first one, retried after 1 s
            assert receiver.delivered() == []
            os.killpg(process.pid, signal.SIGKILL)  # the server dies with its backlog
            process.wait(timeout=20)
        with open_store(db) as store:
            assert status(store)[0].pending == 3
            decide_next(store)  # decided while no server runs
            decide_next(store)
        receiver.then = 200
        with serving(db, receiver, "--webhook-timeout", "2"):
            wait_for(lambda: set(receiver.delivered()) >= set(decided_events(db)))
        wanted = decided_events(db)
        assert len(wanted) == 5
        assert receiver.delivered() == wanted  # each once, in the order decided
        assert all(signed for _, signed, _ in receiver.posts)
        first = receiver.posts[0][0]
        assert (first["queue"], first["origin"], first["decision"], first["label"],
                first["reviewer"]) == ("harm", "run7/h0", "accept", "safe", "rita")  # fmt: skip
        with open_store(db) as store:
            (hook,) = status(store)
            assert (hook.pending, hook.delivered) == (0, 5)
    finally:
        receiver.close()


def decide_next(store: Store) -> str:
    claim = store.claim("harm", "rita")
    assert claim is not None
    store.decide(claim.token, "accept")
    return claim.task.item_id


def test_replay_sends_a_stretch_again(db: str) -> None:
    receiver = Receiver([])
    try:
        with open_store(db) as store:
            decide_next(store)
            decide_next(store)
        runner = CliRunner()
        result = runner.invoke(app, ["webhooks", "replay", "--url", receiver.url, "--since",
                                     "2000-01-01", "--secret", SECRET, "--db", db])  # fmt: skip
        assert result.exit_code == 0, result.output
        assert "2 event(s)" in result.output and "2 delivered now, 0 still pending" in result.output
        assert receiver.delivered() == decided_events(db)
        assert all(signed for _, signed, _ in receiver.posts)
        listed = runner.invoke(app, ["webhooks", "list", "--db", db, "--json"])
        assert json.loads(listed.stdout)[0]["delivered"] == 2
        late = runner.invoke(app, ["webhooks", "replay", "--url", receiver.url, "--since",
                                   "yesterday", "--db", db])  # fmt: skip
        assert late.exit_code == 2 and "is not a date or time" in late.output
    finally:
        receiver.close()
