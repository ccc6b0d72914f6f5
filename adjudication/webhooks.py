"""Decision events posted to webhooks, at least once, outside any reviewer's request.

The event log is the outbox. Every decision already writes an event in the transaction that
stores it (`decided`; `withdrawn` when a reviewer takes one back), whichever program made it: the
web app, the terminal, an import. A `Sender` turns the events newer than its webhook's cursor
into rows of `webhook_deliveries` (one per event, holding the JSON it posts), and posts them
oldest first from a background thread. A delivery stays pending until the receiver answers 2xx;
a failure is retried with exponential back-off, and the rows outlive a restart, so an event is
never lost, only delayed. A receiver may see an event twice (after a timeout whose request did
arrive, or a replay): it can drop repeats by the payload's `id`.

A webhook added to a database with a history starts at its newest event: earlier decisions are
sent only when replayed (`replay(since=...)`).

Each post carries `X-Critic-Signature-256: sha256=HEX`, the HMAC-SHA256 of the raw body under the
shared secret (when one is given), which the receiver checks with `verify`.

Payload (JSON, one event per post):

    {"id": "critic-event-41", "event": "decided", "queue": "harm", "item_id": "42",
     "origin": "RUN/42", "decision": "edit", "label": "unsafe", "reviewer": "alice",
     "kind": "review", "time": "2025-01-01T12:00:00+00:00", "state": "done",
     "final_label": "unsafe"}

`decision` is the reviewer's action (accept, edit, reject, escalate); `event` is `withdrawn` when
a reviewer took a decision back (then `decision` and `label` are the ones withdrawn), and
`imported` for each decision `critic queue import` brought in (one post per decision, ids
`critic-event-N.K`). `state` and `final_label` are the item's after the event.

PostgreSQL commits transactions in any order, so an event may become visible after a newer one.
The collector therefore looks again at the last `RESCAN` events below its cursor each time; a
decision whose transaction commits more than that many events late would be missed (SQLite writes
one transaction at a time, so there it cannot happen).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from sqlalchemy import Connection, and_, func, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from .database import iso
from .errors import QueueError
from .schema import events, queues, tasks, webhook_deliveries, webhooks

if TYPE_CHECKING:
    from .store import Store

__all__ = [
    "EVENT_KINDS",
    "SIGNATURE_HEADER",
    "Delivery",
    "Sender",
    "WebhookStatus",
    "add_webhook",
    "replay",
    "sign",
    "status",
    "verify",
]

#: The event log's kinds that are decision events (`imported`: decisions brought in by
#: `critic queue import`, several in one event).
EVENT_KINDS = ("decided", "withdrawn", "imported")
SIGNATURE_HEADER = "X-Critic-Signature-256"
#: Events below the cursor looked at again on each pass (see the module's docstring).
RESCAN = 1000
_BATCH = 500


def sign(secret: str, body: bytes) -> str:
    """The signature header's value for `body`: `sha256=` and the hex HMAC-SHA256."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str | None) -> bool:
    """Whether `header` (the `X-Critic-Signature-256` value) signs `body` under `secret`."""
    return header is not None and hmac.compare_digest(sign(secret, body), header)


def check_url(url: str) -> str:
    """`url` if it is an http(s) URL; a QueueError saying what to give otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise QueueError(
            f"webhook URL {url!r} is not an http:// or https:// URL",
            hint="give the receiver's full address, e.g. https://hooks.example.com/critic",
        )
    return url


def add_webhook(store: Store, url: str) -> int:
    """The id of the webhook for `url`, added now if new, starting after the newest event (so
    the history already in the database is sent only when replayed)."""
    check_url(url)
    with store._write() as conn:
        return _webhook_id(store, conn, url)


def _webhook_id(store: Store, conn: Connection, url: str) -> int:
    found = conn.execute(select(webhooks.c.id).where(webhooks.c.url == url)).scalar()
    if found is not None:
        return int(found)
    newest = int(conn.execute(select(func.coalesce(func.max(events.c.id), 0))).scalar_one())
    values = {"url": url, "since_event": newest, "cursor": newest, "created_at": store._now()}
    return int(
        conn.execute(insert(webhooks).values(**values).returning(webhooks.c.id)).scalar_one()
    )


def _payloads(rows: Sequence[Any]) -> list[tuple[int, int, dict[str, Any]]]:
    """(event id, position, payload) of each decision in event rows (with their queue's name,
    task's item id and origin)."""
    found = []
    for row in rows:
        after: dict[str, Any] = row.after or {}
        if row.kind == "imported":
            told = [{**d, "kind": "review", "reviewer": d.get("reviewer")}
                    for d in after.get("decisions") or []]  # fmt: skip
        else:
            one = after if row.kind == "decided" else (row.before or {})
            told = [{**one, "reviewer": row.actor}]
        for position, decision in enumerate(told):
            payload = {
                "id": f"critic-event-{row.id}" + (f".{position}" if row.kind == "imported" else ""),
                "event": row.kind,
                "queue": row.queue,
                "item_id": row.item_id,
                "origin": row.origin,
                "decision": decision.get("action"),
                "label": decision.get("label"),
                "reviewer": decision.get("reviewer"),
                "kind": decision.get("kind"),
                "time": after.get("decided_at") or iso(row.at),
                "state": after.get("state"),
                "final_label": after.get("final_label"),
            }
            found.append((row.id, position, payload))
    return found


def _collect(store: Store, conn: Connection, webhook_id: int, *, since: int | None = None) -> int:
    """Turn decision events after the webhook's cursor (or after event `since`) into pending
    deliveries; return how many were new."""
    hook = conn.execute(select(webhooks).where(webhooks.c.id == webhook_id)).mappings().one()
    start = since if since is not None else max(hook["since_event"], hook["cursor"] - RESCAN)
    now = store._now()
    added, newest = 0, hook["cursor"]
    while True:
        rows = conn.execute(
            select(events.c.id, events.c.kind, events.c.actor, events.c.at, events.c.before,
                   events.c.after, queues.c.name.label("queue"), tasks.c.item_id, tasks.c.origin)
            .join(tasks, tasks.c.id == events.c.task_id)
            .join(queues, queues.c.id == tasks.c.queue_id)
            .where(events.c.id > start, events.c.kind.in_(EVENT_KINDS))
            .order_by(events.c.id)
            .limit(_BATCH)
        ).all()  # fmt: skip
        if not rows:
            break
        values = [
            {"webhook_id": webhook_id, "event_id": event_id, "position": position,
             "payload": payload, "state": "pending", "attempts": 0, "next_attempt_at": now,
             "locked_until": None, "last_error": None, "created_at": now, "delivered_at": None}
            for event_id, position, payload in _payloads(rows)
        ]  # fmt: skip
        dialect_insert = pg_insert if store.dialect == "postgresql" else sqlite_insert
        statement = dialect_insert(webhook_deliveries).on_conflict_do_nothing(
            index_elements=["webhook_id", "event_id", "position"]
        )
        if values:
            added += conn.execute(statement, values).rowcount or 0
        start = rows[-1].id
        newest = max(newest, start)
    conn.execute(update(webhooks).where(webhooks.c.id == webhook_id).values(cursor=newest))
    return added


@dataclass(frozen=True)
class Delivery:
    """One event to post."""

    id: int
    event_id: int
    payload: dict[str, Any]
    attempts: int


@dataclass(frozen=True)
class WebhookStatus:
    url: str
    pending: int
    delivered: int
    oldest_pending_at: datetime | None
    last_error: str | None
    next_attempt_at: datetime | None


def status(store: Store) -> list[WebhookStatus]:
    """Every webhook with its backlog, by URL."""
    with store._read() as conn:
        hooks = conn.execute(select(webhooks).order_by(webhooks.c.url)).mappings().all()
        found = []
        for hook in hooks:
            counts: dict[str, int] = dict(
                conn.execute(
                    select(webhook_deliveries.c.state, func.count())
                    .where(webhook_deliveries.c.webhook_id == hook["id"])
                    .group_by(webhook_deliveries.c.state)
                ).all()
            )
            head = (
                conn.execute(
                    select(webhook_deliveries)
                    .where(
                        webhook_deliveries.c.webhook_id == hook["id"],
                        webhook_deliveries.c.state == "pending",
                    )
                    .order_by(webhook_deliveries.c.event_id, webhook_deliveries.c.position)
                    .limit(1)
                )
                .mappings()
                .first()
            )
            found.append(
                WebhookStatus(
                    url=hook["url"],
                    pending=int(counts.get("pending", 0)),
                    delivered=int(counts.get("delivered", 0)),
                    oldest_pending_at=head["created_at"] if head else None,
                    last_error=head["last_error"] if head else None,
                    next_attempt_at=head["next_attempt_at"] if head else None,
                )
            )
        return found


def replay(store: Store, url: str, since: datetime) -> int:
    """Send again every decision event at or after `since` to `url` (adding the webhook if it is
    new): delivered ones go back to pending, and events from before the webhook existed get a
    delivery. Returns how many deliveries are now pending because of the replay."""
    with store._write() as conn:
        webhook_id = _webhook_id(store, conn, url)
        first = conn.execute(
            select(func.min(events.c.id)).where(
                events.c.at >= since, events.c.kind.in_(EVENT_KINDS)
            )
        ).scalar()
        if first is None:
            return 0
        _collect(store, conn, webhook_id, since=int(first) - 1)
        chosen = select(events.c.id).where(events.c.id >= first, events.c.at >= since)
        now = store._now()
        return int(
            conn.execute(
                update(webhook_deliveries)
                .where(
                    webhook_deliveries.c.webhook_id == webhook_id,
                    webhook_deliveries.c.event_id.in_(chosen),
                )
                .values(
                    state="pending",
                    attempts=0,
                    next_attempt_at=now,
                    locked_until=None,
                    last_error=None,
                    delivered_at=None,
                )
            ).rowcount
            or 0
        )


Post = Callable[[str, bytes, dict[str, str], float], int]


def post_json(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
    """POST `body` and return the HTTP status (an HTTP error status too); raise OSError when the
    receiver cannot be reached."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


class Sender:
    """Posts one webhook's deliveries, oldest first, from a background thread (`start`/`stop`)
    or a pass at a time (`send_due`).

    Args:
        store: the queue database (its own handle: the sender shares no request's connection).
        url: the receiver.
        secret: signs each body (see `sign`); None sends unsigned posts.
        backoff: seconds before the first retry; doubled after each failure, up to
            `max_backoff`.
        poll: seconds between looks at the event log when there is nothing to send.
        timeout: seconds a receiver gets to answer one post.
    """

    def __init__(
        self,
        store: Store,
        url: str,
        *,
        secret: str | None = None,
        backoff: float = 1.0,
        max_backoff: float = 600.0,
        poll: float = 1.0,
        timeout: float = 10.0,
        post: Post = post_json,
    ) -> None:
        self.store = store
        self.url = check_url(url)
        self.secret = secret
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.poll = poll
        self.timeout = timeout
        self._post = post
        self.webhook_id = add_webhook(store, url)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.errors: list[str] = []
        """The last failures (newest last, at most 20), for logs and tests."""

    # -- one pass ---------------------------------------------------------------------------

    def collect(self) -> int:
        """Turn new decision events into pending deliveries; return how many."""
        with self.store._write() as conn:
            return _collect(self.store, conn, self.webhook_id)

    def _next(self) -> Delivery | None:
        """Lease the oldest pending delivery if it is due (order is kept: a later event waits
        while an earlier one is backing off)."""
        with self.store._write() as conn:
            now = self.store._now()
            head = (
                conn.execute(
                    select(webhook_deliveries)
                    .where(
                        webhook_deliveries.c.webhook_id == self.webhook_id,
                        webhook_deliveries.c.state == "pending",
                    )
                    .order_by(webhook_deliveries.c.event_id, webhook_deliveries.c.position)
                    .limit(1)
                )
                .mappings()
                .first()
            )
            if head is None or head["next_attempt_at"] > now:
                return None
            leased = conn.execute(
                update(webhook_deliveries)
                .where(
                    webhook_deliveries.c.id == head["id"],
                    webhook_deliveries.c.state == "pending",
                    or_(
                        webhook_deliveries.c.locked_until.is_(None),
                        webhook_deliveries.c.locked_until <= now,
                    ),
                )
                .values(locked_until=now + timedelta(seconds=self.timeout * 2 + 5))
            ).rowcount
            if not leased:
                return None  # another sender is posting it
            return Delivery(head["id"], head["event_id"], dict(head["payload"]), head["attempts"])

    def _finish(self, delivery: Delivery, error: str | None) -> None:
        with self.store._write() as conn:
            now = self.store._now()
            row = webhook_deliveries.c
            if error is None:
                values: dict[str, Any] = {"state": "delivered", "delivered_at": now,
                                          "locked_until": None, "last_error": None,
                                          "attempts": delivery.attempts + 1}  # fmt: skip
            else:
                wait = min(self.max_backoff, self.backoff * 2**delivery.attempts)
                values = {"attempts": delivery.attempts + 1, "locked_until": None,
                          "last_error": error[:500],
                          "next_attempt_at": now + timedelta(seconds=wait)}  # fmt: skip
            conn.execute(
                update(webhook_deliveries)
                .where(and_(row.id == delivery.id, row.state == "pending"))
                .values(**values)
            )

    def deliver(self, delivery: Delivery) -> bool:
        """Post one delivery; record the outcome. True when the receiver took it."""
        body = json.dumps(delivery.payload, sort_keys=True, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "critic-webhooks",
            "X-Critic-Event": str(delivery.payload.get("event")),
            "X-Critic-Delivery": str(delivery.id),
        }
        if self.secret:
            headers[SIGNATURE_HEADER] = sign(self.secret, body)
        error: str | None
        try:
            code = self._post(self.url, body, headers, self.timeout)
            error = None if 200 <= code < 300 else f"HTTP {code}"
        except (OSError, ValueError) as exc:  # refused, reset, timed out, bad response
            error = f"{type(exc).__name__}: {exc}"
        if error is not None:
            self.errors = [*self.errors[-19:], error]
        self._finish(delivery, error)
        return error is None

    def send_due(self) -> int:
        """Collect new events and post what is due, in order, until one fails or nothing is
        due; return how many were delivered."""
        self.collect()
        sent = 0
        while not self._stop.is_set() and (delivery := self._next()) is not None:
            if not self.deliver(delivery):
                break
            sent += 1
        return sent

    def pending(self) -> int:
        with self.store._read() as conn:
            return int(
                conn.execute(
                    select(func.count()).where(
                        webhook_deliveries.c.webhook_id == self.webhook_id,
                        webhook_deliveries.c.state == "pending",
                    )
                ).scalar_one()
            )

    # -- in the background ------------------------------------------------------------------

    def start(self) -> Sender:
        """Send in a daemon thread until `stop`."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="critic-webhooks", daemon=True)
            self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.send_due()
            except Exception as exc:  # a database hiccup must not end the sender for good
                self.errors = [*self.errors[-19:], f"{type(exc).__name__}: {exc}"]
            self._stop.wait(self.poll)

    def stop(self, timeout: float = 15.0) -> None:
        """Stop after the post in flight (pending deliveries wait in the database)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> Sender:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
