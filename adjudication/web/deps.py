"""What every route shares: the app's state (`Web`), the signed-in user, role checks, the CSRF
check, and small helpers for redirects. Routes import this module; it imports no route and
not the app factory.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import Depends, Form, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from ..errors import NotFoundError
from ..models import Queue, Role, User
from ..store import Clock, Store
from .auth import ClientAddress, LoginLimiter, PasswordSlots, Session, Signer

log = logging.getLogger("adjudication.web")

PENDING_TTL = 5.0
"""Seconds a queue's pending count is shown before it is recounted (`Web.pending`)."""
PENDING_SHARE = 20.0
"""A slow recount waits this many times as long as the last one took."""
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"

NOTICES = {
    "saved": "Saved.",
    "kept": (
        "Not saved: that item was already decided with the same claim (in another tab or by an "
        "earlier click), and that first decision stands. Undo it, if offered, to decide again."
    ),
    "skipped": "Skipped: the item goes to someone else.",
    "expired": "Your lease on the last item had expired, so it was not saved; here is the next.",
    "reopened": "Reopened: the item is back in the queue for a new round of reviews.",
    "created": "Created.",
    "updated": "Updated.",
    "undone": "Undone: your last decision is withdrawn. Here is that item again; decide anew.",
    "members": "Members updated.",
    "archived": "Archived: the queue is hidden and takes no claims; unarchive it here.",
    "deleted": "Deleted.",
    "empty": "Nothing for you in this queue right now.",
}


class LoginRequired(Exception):
    """No signed-in user: pages redirect to the log-in form, scripts get 401."""


FORBIDDEN = "You cannot open this page, or it does not exist."
NOT_FOUND = "There is no such page here."


class Forbidden(Exception):
    """The signed-in user may not open this page or do this. `message` goes to the server log;
    the user sees `shown`, which by default tells nothing about what exists or why."""

    def __init__(self, message: str, *, shown: str = FORBIDDEN) -> None:
        super().__init__(message)
        self.message = message
        self.shown = shown


@dataclass
class Web:
    """What every route needs: the store, the signer, the templates and the options."""

    store: Store
    signer: Signer
    templates: Jinja2Templates
    limiter: LoginLimiter
    clock: Clock
    undo_seconds: float
    session_seconds: float
    idle_seconds: float
    secure_cookies: bool
    password_slots: PasswordSlots
    client_address: ClientAddress
    _pending: dict[str, tuple[float, int, float]] = field(default_factory=dict)
    _counting: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def now(self) -> datetime:
        return self.clock()

    def pending(self, queue: str) -> int:
        """A queue's pending count, a few seconds old: the review header shows it on every page,
        and counting a million tasks takes longer than the page. The first request for a queue
        counts; after that, a count older than `PENDING_TTL` (or than `PENDING_SHARE` times what
        the last count took, when counting is slow) is redone in a background thread while every
        request shows the last count. So no reviewer waits for a recount, and recounting keeps
        the database busy for at most 1/`PENDING_SHARE` of the time."""
        now = time.monotonic()
        with self._lock:
            cached = self._pending.get(queue)
            if cached is not None:
                counted, count, took = cached
                stale = now - counted >= max(PENDING_TTL, PENDING_SHARE * took)
                if stale and queue not in self._counting:
                    self._counting.add(queue)
                    threading.Thread(
                        target=self._recount_quietly, args=(queue,), daemon=True
                    ).start()
                return count
            self._counting.add(queue)
        return self._recount(queue)

    def _recount(self, queue: str) -> int:
        began = time.monotonic()
        try:
            count = self.store.pending_count(queue)
        finally:
            with self._lock:
                self._counting.discard(queue)
        done = time.monotonic()
        with self._lock:
            self._pending[queue] = (done, count, done - began)
        return count

    def _recount_quietly(self, queue: str) -> None:
        # In a background thread: a failure is logged, and the next request tries again.
        try:
            self._recount(queue)
        except Exception:
            log.exception("counting the pending items of queue %r failed", queue)

    def render(
        self,
        request: Request,
        name: str,
        context: Mapping[str, Any] | None = None,
        *,
        status: int = 200,
    ) -> Response:
        session: Session = request.state.session
        base = {
            "me": getattr(request.state, "user", None),
            "csrf": self.signer.csrf(session),
            "undo_seconds": self.undo_seconds,
            "notice": None,
            "error": None,
        }
        return self.templates.TemplateResponse(
            request, name, {**base, **(context or {})}, status_code=status
        )

    def error_page(
        self, request: Request, status: int, message: str, hint: str | None = None
    ) -> Response:
        """An error as a page, or as JSON `{"error", "hint"}` to a script that asks for JSON."""
        if "application/json" in request.headers.get("accept", ""):
            return JSONResponse({"error": message, "hint": hint}, status_code=status)
        return self.render(request, "error.html", {"message": message, "hint": hint}, status=status)


def state_of(request: Request) -> Web:
    """The app's `Web`, kept on `app.state.web` by the factory."""
    state: Web = request.app.state.web
    return state


async def web(request: Request) -> Web:
    """A dependency: the app's `Web` (async, so that FastAPI does not hop to a thread for it)."""
    return state_of(request)


def current_user(request: Request) -> User:
    """The signed-in, active user whose password has not changed since they signed in."""
    cached: User | None = getattr(request.state, "user", None)
    if cached is not None:
        return cached
    session: Session = request.state.session
    if session.user is None:
        raise LoginRequired
    user = state_of(request).store.find_user(session.user)
    # No session for a user without a password: nobody can log in as them, so none was issued.
    if (
        user is None
        or not user.active
        or user.password_hash is None
        or user.session_epoch != session.epoch
    ):
        request.state.session = Session.anonymous(state_of(request).now().timestamp())
        raise LoginRequired
    request.state.user = user
    return user


def requires(*roles: Role) -> Callable[[Request], User]:
    """A dependency: the current user, who must have one of `roles`."""

    def check(request: Request) -> User:
        user = current_user(request)
        if user.role not in roles:
            raise Forbidden(
                f"{user.name} is a {user.role}; this page is for {' and '.join(roles)}s"
            )
        return user

    return check


async def check_csrf(request: Request) -> None:
    """Every POST carries the session's CSRF token, in the form or in the X-CSRF-Token header."""
    if request.method != "POST":
        return
    token = request.headers.get(CSRF_HEADER)
    if token is None:
        form = await request.form()
        value = form.get(CSRF_FIELD)
        token = value if isinstance(value, str) else ""
    if not state_of(request).signer.check_csrf(request.state.session, token):
        shown = (
            "This form has expired or did not come from this site (CSRF check failed); "
            "reload the page and try again."
        )
        raise Forbidden(f"CSRF check failed on {request.url.path}", shown=shown)


def queue_for(w: Web, me: User, name: str) -> Queue:
    """The queue `name`, if `me` may work in it. To anyone but an admin, a queue that does not
    exist looks like one they are not in: the answer must not tell which queue names exist."""
    try:
        found = w.store.queue_for(me.name, name)
    except NotFoundError as exc:
        if me.role == "admin":
            raise
        raise Forbidden(f"{me.name} asked for {name!r}: {exc.message}") from exc
    if found.archived_at is not None and me.role != "admin":  # archived: hidden as if not there
        raise Forbidden(f"{me.name} asked for archived queue {name!r}")
    return found


Signed = Annotated[User, Depends(current_user)]
Adjudicator = Annotated[User, Depends(requires("adjudicator", "admin"))]
Admin = Annotated[User, Depends(requires("admin"))]
WebState = Annotated[Web, Depends(web)]
Text = Annotated[str, Form()]
OptionalText = Annotated[str | None, Form()]


def redirect(path: str, **params: str) -> RedirectResponse:
    """A 303 to `path` (after a POST the browser GETs it)."""
    query = f"?{urlencode(params)}" if params else ""
    return RedirectResponse(path + query, status_code=303)


def queue_path(queue: str) -> str:
    """The URL of a queue's pages."""
    return "/q/" + quote(queue, safe="")


def local(target: str | None) -> str:
    """A redirect target on this site only (no `//host` or `scheme:` tricks)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target
