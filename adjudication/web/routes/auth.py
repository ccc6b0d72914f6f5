"""Signing in and out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response

from ...errors import NotFoundError
from ...models import User
from ..auth import Session, fingerprint, verify_password
from ..deps import Text, WebState, check_csrf, local, redirect

router = APIRouter(dependencies=[Depends(check_csrf)])


@router.get("/login")
def login_form(request: Request, w: WebState, next: str = "/") -> Response:
    return w.render(request, "login.html", {"next": local(next), "error": None, "name": ""})


@router.post("/login")
def login(
    request: Request,
    w: WebState,
    username: Text,
    password: Text,
    next: Annotated[str, Form()] = "/",
) -> Response:
    address = request.client.host if request.client else "unknown"
    wait = w.limiter.wait(username, address)
    context = {"next": local(next), "name": username}
    if wait is not None:
        minutes = max(1, round(wait / 60))
        error = f"Too many log-in attempts. Try again in about {minutes} minute(s)."
        response = w.render(request, "login.html", {**context, "error": error}, status=429)
        response.headers["Retry-After"] = str(int(wait) + 1)
        return response
    try:
        user: User | None = w.store.user(username)
    except NotFoundError:
        user = None
    ok, fresh = verify_password(user.password_hash if user else None, password)
    if user is None or not ok or not user.active:
        w.limiter.failed(username, address)
        error = "Wrong user name or password."
        if user is not None and ok:
            error = "This account is deactivated; ask an admin."
        return w.render(request, "login.html", {**context, "error": error}, status=401)
    w.limiter.succeeded(username)
    if fresh is not None:
        user = w.store.update_user(user.name, password_hash=fresh, by=user.name)
    # A new session id at log-in: a session id planted before it is worth nothing after.
    request.state.session = Session(
        sid=Session.anonymous(0).sid,
        user=user.name,
        issued=w.now().timestamp(),
        key=fingerprint(user.password_hash),
    )
    return redirect(local(next))


@router.post("/logout")
def logout(request: Request, w: WebState) -> Response:
    request.state.session = Session.anonymous(w.now().timestamp())
    return redirect("/login")
