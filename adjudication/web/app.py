"""The app factory: builds the shared state, the templates, the middleware, the error pages and
mounts the routers. Nothing imports this module back; routes reach what they need through
`deps.py`.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import quote

import jinja2
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from ..errors import AdjudicationError, LeaseError, NotFoundError, PermissionDenied
from ..rules import MAX_LEASE_SECONDS, MAX_OVERLAP
from ..store import UNDO_SECONDS, Clock, open_store, utc_now
from .auth import ClientAddress, LoginLimiter, PasswordSlots, Signer, signing_secret
from .deps import FORBIDDEN, NOT_FOUND, Forbidden, LoginRequired, Web, log
from .middleware import NUL_HINT, NUL_MESSAGE, BodyLimit, NulInRequest, RefuseNul, Sessions
from .passwords import MIN_PASSWORD_LENGTH
from .render import as_text, decided_word, when
from .routes import ROUTERS

HERE = Path(__file__).resolve().parent


def _templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,  # every value is escaped; nothing from items or drafts is marked safe
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(pct=_pct, num=_num, when=when, seconds=_seconds, part=_part, pretty=as_text)
    # The bounds the store enforces, so the forms can say them too.
    env.globals.update(
        min_password=MIN_PASSWORD_LENGTH,
        max_overlap=MAX_OVERLAP,
        max_lease=MAX_LEASE_SECONDS,
        decided_word=decided_word,
    )
    return Jinja2Templates(env=env)


def _part(value: str) -> str:
    """A value as one URL path segment (a queue name or item id may hold `/` or `?`)."""
    return quote(value, safe="")


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}%"


def _num(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _seconds(value: float | None) -> str:
    if value is None:
        return "–"
    if value < 90:
        return f"{value:.0f} s"
    if value < 5400:
        return f"{value / 60:.0f} min"
    return f"{value / 3600:.1f} h"


_STATUS = {LeaseError: 409}
SECRET_NAME = "web_session_key"
"""The name the generated cookie-signing secret is stored under (`Store.app_secret`)."""
MAX_BODY_BYTES = 1024 * 1024
"""The default cap on a request body (a decision with an edited revision fits many times)."""


def create_app(
    db_url: str,
    *,
    secret_key: str | bytes | None = None,
    clock: Clock | None = None,
    undo_seconds: float = UNDO_SECONDS,
    session_hours: float = 12.0,
    idle_minutes: float = 60.0,
    secure_cookies: bool = False,
    forwarded_allow_ips: Sequence[str] = (),
    max_body_bytes: int = MAX_BODY_BYTES,
    password_checks: int = 2,
) -> FastAPI:
    """The review web app over the queue database at `db_url`.

    Args:
        db_url: the queue database (`sqlite:///queue.db` or `postgresql+psycopg://...`).
        secret_key: signs session cookies and CSRF tokens; at least 32 random bytes (43
            characters as text, e.g. `secrets.token_urlsafe(32)`), else SettingsError. Without
            one, the app generates a secret on first start and keeps it in the database, so
            sessions outlive a restart.
        clock: the time source (tests pass `adjudication.testing.FakeClock`).
        undo_seconds: how long after a decision its reviewer may still take it back (Z), as
            long as nobody decided the item since. 0 turns undo off.
        session_hours: a log-in lasts at most this long.
        idle_minutes: a log-in ends after this long without a request.
        secure_cookies: mark the session cookie Secure (serve over HTTPS); it is also set
            whenever the request itself came over HTTPS.
        forwarded_allow_ips: addresses or networks of the proxies whose `X-Forwarded-For`
            names the client (for the log-in limit); `*` trusts any. Empty: the header is
            ignored.
        max_body_bytes: requests with a larger body get 413 (the log-in form's cap is 16 KiB).
        password_checks: how many argon2 password checks (64 MiB each) may run at once.
    """
    clock = clock or utc_now
    store = open_store(db_url, clock=clock)
    try:
        key = (
            signing_secret(secret_key)
            if secret_key is not None
            else store.app_secret(SECRET_NAME, lambda: secrets.token_urlsafe(32)).encode()
        )
        client_address = ClientAddress(forwarded_allow_ips)
    except AdjudicationError:
        store.close()
        raise
    state = Web(
        store=store,
        signer=Signer(key),
        templates=_templates(),
        limiter=LoginLimiter(clock),
        clock=clock,
        undo_seconds=max(0.0, undo_seconds),
        session_seconds=session_hours * 3600,
        idle_seconds=idle_minutes * 60,
        secure_cookies=secure_cookies,
        password_slots=PasswordSlots(password_checks),
        client_address=client_address,
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

    app.add_middleware(RefuseNul, state=state)  # inside Sessions: its page needs the session
    app.add_middleware(Sessions, state=state)
    app.add_middleware(BodyLimit, limit=max_body_bytes)  # outermost: before anything reads
    page = state.error_page

    @app.exception_handler(NulInRequest)
    async def nul(request: Request, _exc: NulInRequest) -> Response:
        log.info("400 %s %s: a NUL character in the body", request.method, request.url.path)
        return page(request, 400, NUL_MESSAGE, NUL_HINT)

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, _exc: LoginRequired) -> Response:
        if _wants_json(request):
            return JSONResponse({"error": "not signed in"}, status_code=401)
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)

    # What a signed-in user may not see or that does not exist gets a page that says only
    # that; the detail (which queue, which user, what is missing) goes to the server log.
    @app.exception_handler(Forbidden)
    async def forbidden(request: Request, exc: Forbidden) -> Response:
        log.warning("403 %s %s: %s", request.method, request.url.path, exc.message)
        return page(request, 403, exc.shown)

    @app.exception_handler(PermissionDenied)
    async def denied(request: Request, exc: PermissionDenied) -> Response:
        log.warning("403 %s %s: %s", request.method, request.url.path, exc.message)
        return page(request, 403, FORBIDDEN)

    @app.exception_handler(NotFoundError)
    async def not_found(request: Request, exc: NotFoundError) -> Response:
        log.info("404 %s %s: %s", request.method, request.url.path, exc.message)
        return page(request, 404, NOT_FOUND)

    @app.exception_handler(AdjudicationError)
    async def failed(request: Request, exc: AdjudicationError) -> Response:
        status = next((code for kind, code in _STATUS.items() if isinstance(exc, kind)), 400)
        return page(request, status, exc.message, exc.hint)

    for router in ROUTERS:
        app.include_router(router)
    return app


def _wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")
