"""The app factory: builds the shared state, the templates, the middleware, the error pages and
mounts the routers. Nothing imports this module back; routes reach what they need through
`deps.py`.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

import jinja2
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from ..errors import AdjudicationError, LeaseError, NotFoundError, PermissionDenied
from ..store import UNDO_SECONDS, Clock, open_store, utc_now
from .auth import LoginLimiter, Signer
from .deps import Forbidden, LoginRequired, Web
from .middleware import Sessions
from .render import as_text
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

    for router in ROUTERS:
        app.include_router(router)
    return app


def _wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")
