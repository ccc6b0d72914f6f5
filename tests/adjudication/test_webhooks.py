"""Decision events sent to webhooks: what a post holds, its signature, retries with back-off in
order, a restart that loses nothing, replays, and two senders that do not post one event twice.

The receiver here is a function (the `post` seam of `Sender`); tests/cli/test_webhooks_serve.py
posts to a real HTTP receiver from `critic review serve`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta

import pytest

from adjudication import Store
from adjudication.testing import FakeClock
from adjudication.webhooks import (
    SIGNATURE_HEADER,
    Sender,
    add_webhook,
    replay,
    status,
    verify,
)

URL = "http://127.0.0.1:9/hook"
SECRET = "s3cret"


@dataclass
class Receiver:
    """Answers each post with the next status of `script` (then 200), recording every post."""

    script: list[int | Exception] = field(default_factory=list)
    posts: list[tuple[dict, dict[str, str]]] = field(default_factory=list)

    def __call__(self, url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
        self.posts.append((json.loads(body), headers))
        assert verify(SECRET, body, headers.get(SIGNATURE_HEADER)), "an unsigned or bad post"
        outcome = self.script.pop(0) if self.script else 200
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def delivered_ids(self, ok_from: int = 0) -> list[str]:
        return [p["id"] for p, _ in self.posts[ok_from:]]


@pytest.fixture
def team(store: Store) -> Iterator[Store]:
    store.create_queue("harm", labels=["safe", "unsafe"], overlap=1, members=[])
    store.add_user("rita", "reviewer", queues=["harm"])
    store.enqueue(
        "harm",
        [
            {"item_id": f"h{i}", "item": {"text": f"t{i}"}, "draft_label": "safe",
             "origin": f"run1/h{i}"}
            for i in range(6)
        ],
    )  # fmt: skip
    yield store


def decide(store: Store, label: str = "unsafe") -> str:
    claim = store.claim("harm", "rita")
    assert claim is not None
    if label == "safe":
        store.decide(claim.token, "accept")
    else:
        store.decide(claim.token, "edit", label=label)
    return claim.task.item_id


def test_a_decision_is_posted_signed_with_queue_origin_decision_label_reviewer_and_time(
    team: Store, clock: FakeClock
) -> None:
    receiver = Receiver()
    sender = Sender(team, URL, secret=SECRET, post=receiver)
    item = decide(team)
    assert sender.send_due() == 1
    (payload, headers), = receiver.posts  # fmt: skip
    assert payload == {
        "id": payload["id"], "event": "decided", "queue": "harm", "item_id": item,
        "origin": f"run1/{item}", "decision": "edit", "label": "unsafe", "reviewer": "rita",
        "kind": "review", "time": clock().isoformat(), "state": "done",
        "final_label": "unsafe",
    }  # fmt: skip
    assert payload["id"].startswith("critic-event-")
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Critic-Event"] == "decided"
    assert sender.send_due() == 0  # delivered once


def test_unsigned_without_a_secret_and_a_signature_checks_the_exact_body(team: Store) -> None:
    seen: list[dict[str, str]] = []

    def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
        seen.append(headers)
        assert not verify(SECRET, body + b" ", headers.get(SIGNATURE_HEADER))
        return 204

    sender = Sender(team, URL, post=post)
    decide(team)
    sender.send_due()
    assert SIGNATURE_HEADER not in seen[0]
    assert not verify(SECRET, b"{}", None)


def test_a_webhook_added_to_a_database_with_history_starts_after_it(team: Store) -> None:
    decide(team)
    receiver = Receiver()
    sender = Sender(team, URL, secret=SECRET, post=receiver)
    assert sender.send_due() == 0 and receiver.posts == []
    decide(team)
    assert sender.send_due() == 1


def test_failures_are_retried_with_back_off_and_later_events_wait_in_order(
    team: Store, clock: FakeClock
) -> None:
    receiver = Receiver(script=[503, OSError("connection refused"), 500])
    sender = Sender(team, URL, secret=SECRET, backoff=10, max_backoff=25, post=receiver)
    first, second = decide(team), decide(team)
    assert sender.send_due() == 0  # 503: the first is held back, the second waits behind it
    assert [p["item_id"] for p, _ in receiver.posts] == [first]
    clock.advance(9)
    assert sender.send_due() == 0 and len(receiver.posts) == 1  # not due yet (10 s)
    clock.advance(1)
    assert sender.send_due() == 0 and len(receiver.posts) == 2  # refused; next in 20 s
    (hook,) = status(team)
    assert hook.pending == 2 and hook.last_error == "OSError: connection refused"
    assert hook.next_attempt_at == clock() + timedelta(seconds=20)
    clock.advance(20)
    assert sender.send_due() == 0 and len(receiver.posts) == 3  # 500; next in 25 s (the cap)
    assert status(team)[0].next_attempt_at == clock() + timedelta(seconds=25)
    clock.advance(25)
    assert sender.send_due() == 2
    assert [p["item_id"] for p, _ in receiver.posts] == [first] * 4 + [second]
    assert status(team)[0].pending == 0 and status(team)[0].delivered == 2


def test_a_restart_loses_nothing_pending(store_url: str, team: Store, clock: FakeClock) -> None:
    from adjudication import open_store

    failing = Receiver(script=[503] * 100)
    first = Sender(team, URL, secret=SECRET, post=failing)
    items = [decide(team) for _ in range(3)]
    first.send_due()
    assert status(team)[0].pending == 3
    first.stop()  # the server goes away with the backlog
    decide(team)  # a decision while no sender runs
    with open_store(store_url, clock=clock) as reopened:
        receiver = Receiver()
        again = Sender(reopened, URL, secret=SECRET, post=receiver)
        clock.advance(3600)
        assert again.send_due() == 4
    assert [p["item_id"] for p, _ in receiver.posts][:3] == items
    assert len({p["id"] for p, _ in receiver.posts}) == 4


def test_an_undo_is_posted_as_withdrawn(team: Store) -> None:
    receiver = Receiver()
    sender = Sender(team, URL, secret=SECRET, post=receiver)
    item = decide(team)
    team.undo("harm", "rita")
    sender.send_due()
    assert [(p["event"], p["item_id"], p["label"], p["state"]) for p, _ in receiver.posts] == [
        ("decided", item, "unsafe", "done"),
        ("withdrawn", item, "unsafe", "pending"),
    ]


def test_replay_sends_again_since_a_time_and_history_from_before_the_webhook(
    team: Store, clock: FakeClock
) -> None:
    old = decide(team)  # before the webhook existed
    clock.advance(60)
    since = clock()
    receiver = Receiver()
    sender = Sender(team, URL, secret=SECRET, post=receiver)
    clock.advance(60)
    recent = decide(team)
    sender.send_due()
    assert [p["item_id"] for p, _ in receiver.posts] == [recent]
    assert replay(team, URL, since) == 1  # the recent one again
    sender.send_due()
    assert [p["item_id"] for p, _ in receiver.posts] == [recent, recent]
    assert replay(team, URL, since - timedelta(seconds=120)) == 2  # and the old one too
    sender.send_due()
    assert [p["item_id"] for p, _ in receiver.posts][2:] == [old, recent]


def test_two_senders_never_post_one_event_at_once(team: Store) -> None:
    receiver = Receiver()
    one = Sender(team, URL, secret=SECRET, post=receiver)
    two = Sender(team, URL, secret=SECRET, post=receiver)
    decide(team)
    one.collect()
    leased = one._next()
    assert leased is not None
    assert two._next() is None  # leased by the first
    assert one.deliver(leased)
    assert two.send_due() == 0
    assert len(receiver.posts) == 1


def test_a_background_sender_delivers_as_decisions_are_made(team: Store) -> None:
    import time

    receiver = Receiver()
    with Sender(team, URL, secret=SECRET, poll=0.05, post=receiver):
        decided = [decide(team) for _ in range(3)]
        deadline = time.monotonic() + 30
        while len(receiver.posts) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert [p["item_id"] for p, _ in receiver.posts] == decided


def test_a_webhook_url_must_be_http(team: Store) -> None:
    from adjudication.errors import QueueError

    with pytest.raises(QueueError, match="not an http"):
        add_webhook(team, "ftp://example.com/x")


def test_decisions_of_critic_queue_import_are_posted_one_each(team: Store) -> None:
    from adjudication.importing import ImportSpec, import_decisions, plan

    receiver = Receiver()
    sender = Sender(team, URL, secret=SECRET, post=receiver)
    rows = [("file.csv:2", "h5", {"ann": "unsafe", "bob": "safe"})]
    found = plan(rows, ImportSpec(label_fields=("ann", "bob")))
    import_decisions(team, "harm", found, by="importer")
    assert sender.send_due() == 2
    posted = [p for p, _ in receiver.posts]
    assert [(p["event"], p["reviewer"], p["label"], p["item_id"]) for p in posted] == [
        ("imported", "ann", "unsafe", "h5"), ("imported", "bob", "safe", "h5")]  # fmt: skip
    assert posted[0]["id"].endswith(".0") and posted[1]["id"].endswith(".1")
    assert posted[0]["origin"] == "run1/h5"
