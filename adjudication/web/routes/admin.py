"""Admin pages: queues, who works in which queue, reviewer quality, and users."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response

from ...errors import QueueError
from ...evidence import rater_report
from ...models import ROLES, Queue, Role
from ..auth import Busy, hash_password
from ..deps import (
    NOTICES,
    Admin,
    OptionalText,
    Text,
    Web,
    WebState,
    check_csrf,
    queue_path,
    redirect,
)
from .review import home_page

router = APIRouter(dependencies=[Depends(check_csrf)])


@router.post("/admin/queues")
def create_queue(
    request: Request,
    w: WebState,
    me: Admin,
    name: Text,
    labels: Annotated[str, Form()] = "",
    overlap: Annotated[int, Form()] = 1,
    lease_seconds: Annotated[int, Form()] = 600,
    blind: Annotated[bool, Form()] = False,
    ordinal: Annotated[bool, Form()] = False,
) -> Response:
    label_list = [part.strip() for part in labels.split(",") if part.strip()] or None
    try:
        w.store.create_queue(
            name.strip(),
            overlap=overlap,
            blind=blind,
            lease_seconds=lease_seconds,
            labels=label_list,
            ordinal=ordinal,
            by=me.name,
        )
    except QueueError as exc:
        return home_page(request, w, me, error=str(exc), status=400)
    return redirect(f"{queue_path(name.strip())}/members", notice="created")


# -- who works in which queue ----------------------------------------------------------------


def _members_page(
    request: Request,
    w: Web,
    q: Queue,
    *,
    notice: str | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response:
    members = w.store.members(q.name)
    names = {u.name for u in members}
    others = [u for u in w.store.users() if u.name not in names and u.role != "admin"]
    context = {"q": q, "members": members, "others": others, "notice": notice, "error": error}
    return w.render(request, "members.html", context, status=status)


@router.get("/q/{queue}/members")
def members(request: Request, w: WebState, me: Admin, queue: str, notice: str = "") -> Response:
    return _members_page(request, w, w.store.queue(queue), notice=NOTICES.get(notice))


@router.post("/q/{queue}/members")
def change_members(
    request: Request,
    w: WebState,
    me: Admin,
    queue: str,
    add: Annotated[list[str] | None, Form()] = None,
    remove: OptionalText = None,
) -> Response:
    """Add the users ticked in `add`, or remove the one named in `remove`."""
    q = w.store.queue(queue)
    try:
        if remove:
            w.store.remove_members(q.name, [remove], by=me.name)
        elif add:
            w.store.add_members(q.name, add, by=me.name)
        else:
            raise QueueError("tick at least one user to add", hint="or press Remove beside one")
    except QueueError as exc:
        return _members_page(request, w, q, error=str(exc), status=400)
    return redirect(f"{queue_path(queue)}/members", notice="members")


# -- reviewer quality ------------------------------------------------------------------------


@router.get("/q/{queue}/raters")
def raters(request: Request, w: WebState, me: Admin, queue: str) -> Response:
    """Per reviewer: gold accuracy, κ with peers, timing, the critic's label, undo rate, flags."""
    q = w.store.queue(queue)
    return w.render(request, "raters.html", {"q": q, "report": rater_report(w.store, q.name)})


# -- users -----------------------------------------------------------------------------------


def _users_page(
    request: Request,
    w: Web,
    *,
    notice: str | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response:
    people = w.store.users()
    context = {
        "users": people,
        "works_in": w.store.memberships(),
        "queues": w.store.queues(),
        "roles": ROLES,
        "notice": notice,
        "error": error,
    }
    return w.render(request, "users.html", context, status=status)


@router.get("/admin/users")
def users(request: Request, w: WebState, me: Admin, notice: str = "") -> Response:
    return _users_page(request, w, notice=NOTICES.get(notice))


@router.post("/admin/users")
def add_user(
    request: Request,
    w: WebState,
    me: Admin,
    name: Text,
    role: Text,
    password: Text,
    queues: Annotated[list[str] | None, Form()] = None,
) -> Response:
    try:
        w.store.add_user(
            name.strip(),
            _role(role),
            password_hash=_hash(w, password, name.strip()),
            queues=queues or (),
            by=me.name,
        )
    except QueueError as exc:
        return _users_page(request, w, error=str(exc), status=400)
    return redirect("/admin/users", notice="created")


@router.post("/admin/users/{name}")
def update_user(
    request: Request,
    w: WebState,
    me: Admin,
    name: str,
    role: Text,
    active: Annotated[bool, Form()] = False,
    password: Annotated[str, Form()] = "",
) -> Response:
    if name == me.name and (role != "admin" or not active):
        return _users_page(
            request, w, error="You cannot take away your own admin role or account.", status=400
        )
    try:
        w.store.update_user(
            name,
            role=_role(role),
            active=active,
            password_hash=_hash(w, password, name) if password else None,
            by=me.name,
        )
    except QueueError as exc:
        return _users_page(request, w, error=str(exc), status=400)
    return redirect("/admin/users", notice="updated")


def _hash(w: Web, password: str, user: str) -> str:
    """Hash a new password in one of the bounded argon2 slots (64 MiB each)."""
    try:
        with w.password_slots.hold():
            return hash_password(password, user=user)
    except Busy as exc:
        raise QueueError(
            "the server is busy checking passwords", hint="try again in a few seconds"
        ) from exc


def _role(role: str) -> Role:
    for known in ROLES:
        if role == known:
            return known
    raise QueueError(f"unknown role {role!r}", hint=f"use one of: {', '.join(ROLES)}")
