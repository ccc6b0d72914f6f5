"""The app factory and its plumbing: sessions, CSRF, roles, templates, errors, security headers.

Routes live in `routes.py`; they reach everything through `Web`, kept on `app.state.web`.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import AdjudicationError, LeaseError, NotFoundError, PermissionDenied
from ..models import Role, User
from ..store import UNDO_SECONDS, Clock, Store, open_store, utc_now
from .auth import LoginLimiter, Session, Signer, fingerprint
from .render import as_text

HERE = Path(__file__).resolve().parent
COOKIE = "critic_session"
PENDING_TTL = 5.0
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"

# Scripts and styles only from this server: model output that slipped into markup could not run.
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}


class LoginRequired(Exception):
    """No signed-in user: pages redirect to the log-in form, scripts get 401."""


class Forbidden(Exception):
    """The signed-in user's role does not allow this page or action."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


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
    secure_cookies: bool
    _pending: dict[str, tuple[float, int]] = field(default_factory=dict)
    _counting: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def now(self) -> datetime:
        return self.clock()

    def pending(self, queue: str) -> int:
        """A queue's pending count, at most `PENDING_TTL` seconds old: the review header shows
        it on every page, and counting 100,000 tasks each time would cost more than the page.
        One request recounts when it is stale; the others meanwhile show the last count."""
        now = time.monotonic()
        with self._lock:
            cached = self._pending.get(queue)
            fresh = cached is not None and now - cached[0] < PENDING_TTL
            if cached is not None and (fresh or queue in self._counting):
                return cached[1]
            self._counting.add(queue)
        try:
            count = self.store.pending_count(queue)
        finally:
            with self._lock:
                self._counting.discard(queue)
        with self._lock:
            self._pending[queue] = (now, count)
        return count

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


def _web(request: Request) -> Web:
    state: Web = request.app.state.web
    return state


async def web(request: Request) -> Web:
    """A dependency: the app's `Web` (async, so that FastAPI does not hop to a thread for it)."""
    return _web(request)


class Sessions:
    """ASGI middleware: reads the session cookie into `request.state.session` (a new anonymous
    session when it is missing, forged or expired), writes the cookie back when a route replaced
    the session, and adds the security headers to every response."""

    def __init__(self, app: ASGIApp, state: Web) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        web = self.state
        now = web.now().timestamp()
        cookie = Request(scope).cookies.get(COOKIE)
        loaded = web.signer.loads(cookie, now, web.session_seconds) if cookie else None
        session = loaded or Session.anonymous(now)
        shared = scope.setdefault("state", {})
        shared["session"] = session
        static = scope["path"].startswith("/static/")
        secure = web.secure_cookies or scope.get("scheme") == "https"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                current: Session = shared["session"]
                if loaded is None or current is not session:
                    carrier = Response()
                    carrier.set_cookie(
                        COOKIE,
                        web.signer.dumps(current),
                        max_age=int(web.session_seconds),
                        httponly=True,
                        samesite="lax",
                        secure=secure,
                        path="/",
                    )
                    headers.append("set-cookie", carrier.headers["set-cookie"])
                for name, value in _HEADERS.items():
                    headers.setdefault(name, value)
                if not static:
                    headers.setdefault("Cache-Control", "no-store")
            await send(message)

        await self.app(scope, receive, send_with_headers)


def current_user(request: Request) -> User:
    """The signed-in, active user whose password has not changed since they signed in."""
    cached: User | None = getattr(request.state, "user", None)
    if cached is not None:
        return cached
    session: Session = request.state.session
    if session.user is None:
        raise LoginRequired
    try:
        user = _web(request).store.user(session.user)
    except NotFoundError:
        user = None
    if user is None or not user.active or fingerprint(user.password_hash) != session.key:
        request.state.session = Session.anonymous(_web(request).now().timestamp())
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
    if not _web(request).signer.check_csrf(request.state.session, token):
        raise Forbidden(
            "this form has expired or did not come from this site (CSRF check failed); "
            "reload the page and try again"
        )


def _templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every value is escaped; nothing from items or drafts is marked safe
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(pct=_pct, num=_num, when=_when, seconds=_seconds, part=_part, pretty=as_text)
    return Jinja2Templates(env=env)


def _part(value: str) -> str:
    """A value as one URL path segment (a queue name or item id may hold `/` or `?`)."""
    return quote(value, safe="")


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def _num(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _when(value: datetime | None) -> str:
    return "–" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


def _seconds(value: float | None) -> str:
    if value is None:
        return "–"
    if value < 90:
        return f"{value:.0f} s"
    if value < 5400:
        return f"{value / 60:.0f} min"
    return f"{value / 3600:.1f} h"


_STATUS = {NotFoundError: 404, PermissionDenied: 403, LeaseError: 409}


def create_app(
    db_url: str,
    *,
    secret_key: str | bytes | None = None,
    clock: Clock | None = None,
    undo_seconds: float = UNDO_SECONDS,
    session_hours: float = 12.0,
    secure_cookies: bool = False,
) -> FastAPI:
    """The review web app over the queue database at `db_url`.

    Args:
        db_url: the queue database (`sqlite:///queue.db` or `postgresql+psycopg://...`).
        secret_key: signs session cookies and CSRF tokens. Without one, a random key is made,
            so sessions end when the server restarts.
        clock: the time source (tests pass `adjudication.testing.FakeClock`).
        undo_seconds: how long after a decision its reviewer may still take it back (Z), as
            long as nobody decided the item since. 0 turns undo off.
        session_hours: a log-in lasts this long.
        secure_cookies: mark the session cookie Secure (serve over HTTPS); it is also set
            whenever the request itself came over HTTPS.
    """
    clock = clock or utc_now
    key = secret_key if secret_key is not None else secrets.token_bytes(32)
    store = open_store(db_url, clock=clock)
    state = Web(
        store=store,
        signer=Signer(key.encode() if isinstance(key, str) else key),
        templates=_templates(),
        limiter=LoginLimiter(clock),
        clock=clock,
        undo_seconds=max(0.0, undo_seconds),
        session_seconds=session_hours * 3600,
        secure_cookies=secure_cookies,
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        store.close()

    app = FastAPI(
        title="critic review", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.web = state
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    app.add_middleware(Sessions, state=state)

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, _exc: LoginRequired) -> Response:
        if _wants_json(request):
            return JSONResponse({"error": "not signed in"}, status_code=401)
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)

    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, exc: Forbidden) -> Response:
        if _wants_json(request):
            return JSONResponse({"error": exc.message}, status_code=403)
        return state.render(
            request, "error.html", {"message": exc.message, "hint": None}, status=403
        )

    @app.exception_handler(AdjudicationError)
    async def failed(request: Request, exc: AdjudicationError) -> Response:
        status = next((code for kind, code in _STATUS.items() if isinstance(exc, kind)), 400)
        if _wants_json(request):
            return JSONResponse({"error": exc.message, "hint": exc.hint}, status_code=status)
        return state.render(
            request, "error.html", {"message": exc.message, "hint": exc.hint}, status=status
        )

    from .routes import router

    app.include_router(router)
    return app


def _wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")
