"""ASGI middleware: the body-size cap, the session cookie, the security headers, and the
refusal of NUL characters."""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import unquote_to_bytes

from fastapi import Request
from fastapi.responses import PlainTextResponse, Response
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .auth import Session
from .deps import Web, log

COOKIE = "critic_session"
LOGIN_BODY_BYTES = 16 * 1024
"""The log-in form (a name, a password, a token and a return path) never needs more."""
SEEN_EVERY = 60.0
"""How often (seconds, at most; a quarter of the idle timeout if shorter) a signed-in session's
last-request time is re-signed into its cookie."""

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


class BodyLimit:
    """Refuses request bodies over a cap with 413, before anything parses them: `LOGIN_BODY_BYTES`
    for `/login` (anyone may post there), `limit` for every other path. A declared
    Content-Length over the cap is refused at once; a body without one is counted as it comes."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = LOGIN_BODY_BYTES if scope["path"] == "/login" else self.limit
        declared = Request(scope).headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            too_large = PlainTextResponse(
                f"request body over {limit} bytes", status_code=413, headers={"Connection": "close"}
            )
            await too_large(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # An HTTPException passes through FastAPI's body parsing as it is.
                    raise HTTPException(413, f"request body over {limit} bytes")
            return message

        await self.app(scope, counted, send)


class Sessions:
    """Reads the session cookie into `request.state.session` (a new anonymous session when it
    is missing, malformed, forged, expired or idle too long), writes the cookie back when a route
    replaced the session or its last-request time moved on, and adds the security headers."""

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
        loaded = (
            web.signer.loads(cookie, now, web.session_seconds, web.idle_seconds) if cookie else None
        )
        session = loaded or Session.anonymous(now)
        stale = loaded is None
        # Often enough that a user active more often than the idle timeout is never logged out.
        every = min(SEEN_EVERY, web.idle_seconds / 4)
        if loaded is not None and loaded.user is not None and now - loaded.seen >= every:
            session, stale = replace(loaded, seen=now), True
        shared = scope.setdefault("state", {})
        shared["session"] = session
        static = scope["path"].startswith("/static/")
        secure = web.secure_cookies or scope.get("scheme") == "https"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                current: Session = shared["session"]
                if stale or current is not session:
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


NUL_MESSAGE = "The request contains a NUL character (\\x00, or %00 in a URL or form)."
NUL_HINT = "No page here accepts one: remove it and send the request again."


class NulInRequest(HTTPException):
    """A NUL character in a request body. An HTTPException, so that it passes through FastAPI's
    body parsing as it is; the app renders it as a 400 page (`create_app`)."""

    def __init__(self) -> None:
        super().__init__(400, NUL_MESSAGE)


class RefuseNul:
    """Answers 400, before any route runs, a request with a NUL character (U+0000) in its
    path, its query string or its body (raw, or as `%00` in a form), for every route at once.

    PostgreSQL cannot store or compare text holding NUL (its driver raised, which was a 500
    with a traceback, without an account: a log-in name `ri%00ta`), and no page has a use for
    one. The path and query are checked at once; the body as it is read, chunk by chunk, so it
    is never held twice. The store refuses NUL as well (`adjudication.database`), for callers
    other than this app.
    """

    def __init__(self, app: ASGIApp, state: Web) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        if "\x00" in scope["path"] or b"\x00" in unquote_to_bytes(scope["query_string"]):
            log.info("400 %s: a NUL character in the URL", scope["method"])
            refused = self.state.error_page(request, 400, NUL_MESSAGE, NUL_HINT)
            await refused(scope, receive, send)
            return
        kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        form = kind == "application/x-www-form-urlencoded"
        tail = b""

        async def checked() -> Message:
            nonlocal tail
            message = await receive()
            if message["type"] == "http.request":
                # The last two bytes of the chunk before: a `%00` may be cut between chunks.
                seen = tail + message.get("body", b"")
                if b"\x00" in seen or (form and b"%00" in seen):
                    raise NulInRequest
                tail = seen[-2:]
            return message

        await self.app(scope, checked, send)
