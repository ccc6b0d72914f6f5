"""Signing in and out."""

from __future__ import annotations

from contextlib import suppress
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response

from ..auth import Busy, Session, verify_password
from ..deps import LoginRequired, Text, WebState, check_csrf, current_user, local, log, redirect

router = APIRouter(dependencies=[Depends(check_csrf)])

WRONG = "Wrong user name or password."


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
    peer = request.client.host if request.client else None
    address = w.client_address(peer, request.headers.getlist("x-forwarded-for"))
    context = {"next": local(next), "name": username}
    # Counted before the password is checked, so concurrent guesses cannot pass the limit.
    wait = w.limiter.attempt(username, address)
    if wait is not None:
        minutes = max(1, round(wait / 60))
        error = f"Too many log-in attempts. Try again in about {minutes} minute(s)."
        response = w.render(request, "login.html", {**context, "error": error}, status=429)
        response.headers["Retry-After"] = str(int(wait) + 1)
        return response
    # One look-up that names no other user: a wrong name costs what a wrong password costs.
    user = w.store.find_user(username)
    try:
        with w.password_slots.hold():
            ok, fresh = verify_password(user.password_hash if user else None, password)
    except Busy:
        error = "The server is busy checking other log-ins; try again in a few seconds."
        response = w.render(request, "login.html", {**context, "error": error}, status=503)
        response.headers["Retry-After"] = "5"
        return response
    if user is None or not ok or not user.active:
        if user is not None and ok:  # the user is not told that the password was right
            log.info("log-in of deactivated user %r refused", user.name)
        return w.render(request, "login.html", {**context, "error": WRONG}, status=401)
    w.limiter.succeeded(username, address)
    if fresh is not None:
        user = w.store.update_user(user.name, password_hash=fresh, by=user.name)
    now = w.now().timestamp()
    # A new session id at log-in: a session id planted before it is worth nothing after.
    request.state.session = Session(
        sid=Session.anonymous(0).sid, user=user.name, issued=now, epoch=user.session_epoch, seen=now
    )
    return redirect(local(next))


@router.post("/logout")
def logout(request: Request, w: WebState) -> Response:
    """End the session, and with it every other session of the user (their epoch moves on)."""
    with suppress(LoginRequired):
        w.store.end_sessions(current_user(request).name)
    request.state.session = Session.anonymous(w.now().timestamp())
    return redirect("/login")
