"""ASGI middleware: the session cookie and the security headers of every response."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import Response
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .auth import Session
from .deps import Web

COOKIE = "critic_session"

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


class Sessions:
    """Reads the session cookie into `request.state.session` (a new anonymous session when it
    is missing, forged or expired), writes the cookie back when a route replaced the session,
    and adds the security headers to every response."""

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
