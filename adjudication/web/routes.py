"""Pages and form posts. Handlers are plain functions (FastAPI runs them in a thread pool), since
the store is synchronous; each one checks the role it needs through a dependency, and every POST
passes `check_csrf` first.

Who sees what: reviewers and adjudicators see only the queues they are members of (every page
under `/q/NAME/` checks it, and the store refuses claims too); admins see every queue. In their
queues, adjudicators also adjudicate, see dashboards and item histories, and reopen items; admins
manage users, queues and who works in which queue.
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from ..errors import LeaseError, NotFoundError, QueueError
from ..models import ROLES, Claim, ClaimKind, Decision, Queue, Role, Task, User
from . import metrics
from .app import Forbidden, Web, check_csrf, current_user, requires, web
from .auth import Session, fingerprint, hash_password, verify_password
from .render import GAP_PREFIX, draft_view, item_view, needs_note, principles

router = APIRouter(dependencies=[Depends(check_csrf)])

Signed = Annotated[User, Depends(current_user)]
Adjudicator = Annotated[User, Depends(requires("adjudicator", "admin"))]
Admin = Annotated[User, Depends(requires("admin"))]
WebState = Annotated[Web, Depends(web)]
Text = Annotated[str, Form()]
OptionalText = Annotated[str | None, Form()]

NOTICES = {
    "saved": "Saved.",
    "skipped": "Skipped: the item goes to someone else.",
    "expired": "Your lease on the last item had expired, so it was not saved; here is the next.",
    "reopened": "Reopened: the item is back in the queue for a new round of reviews.",
    "created": "Created.",
    "updated": "Updated.",
    "undone": "Undone: your last decision is withdrawn. Here is that item again; decide anew.",
    "members": "Members updated.",
}


def _redirect(path: str, **params: str) -> RedirectResponse:
    query = f"?{urlencode(params)}" if params else ""
    return RedirectResponse(path + query, status_code=303)


def _q(queue: str) -> str:
    return "/q/" + quote(queue, safe="")


def _local(target: str | None) -> str:
    """A redirect target on this site only (no `//host` or `scheme:` tricks)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


# -- sign in and out -------------------------------------------------------------------------


@router.get("/login")
def login_form(request: Request, w: WebState, next: str = "/") -> Response:
    return w.render(request, "login.html", {"next": _local(next), "error": None, "name": ""})


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
    context = {"next": _local(next), "name": username}
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
    return _redirect(_local(next))


@router.post("/logout")
def logout(request: Request, w: WebState) -> Response:
    request.state.session = Session.anonymous(w.now().timestamp())
    return _redirect("/login")


# -- queues ----------------------------------------------------------------------------------


@router.get("/")
def home(request: Request, w: WebState, me: Signed, notice: str = "") -> Response:
    return _home(request, w, me, notice=NOTICES.get(notice))


def _home(
    request: Request,
    w: Web,
    me: User,
    *,
    notice: str | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response:
    rows = [(q, w.store.stats(q.name)) for q in w.store.queues_for(me.name)]
    context = {"rows": rows, "notice": notice, "error": error}
    return w.render(request, "home.html", context, status=status)


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
        return _home(request, w, me, error=str(exc), status=400)
    return _redirect(f"{_q(name.strip())}/members", notice="created")


# -- review ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Screen:
    """Everything the review and adjudication pages show about one claimed task."""

    claim: Claim
    task: Task
    """The full task (the claim's view hides the draft in blind queues)."""
    revealed: bool
    sig: str
    ahead: int
    """Pending items before this one."""
    pending: int
    """Pending items in the queue (a few seconds old at most)."""
    expires_in: float
    item: Any
    draft: Any
    principles: Any
    pick: str | None


def _screen(w: Web, me: User, q: Queue, claim: Claim, pick: str | None) -> Screen:
    blind = claim.kind == "review" and q.blind
    revealed = not blind or pick is not None
    task = w.store.task(q.name, claim.task.item_id) if blind and revealed else claim.task
    draft = task.draft if revealed else {}
    return Screen(
        claim=claim,
        task=task,
        revealed=revealed,
        sig=w.signer.claim(me.name, q.name, claim.token, claim.task.item_id),
        ahead=w.store.position(q.name, claim.task.item_id),
        pending=w.pending(q.name),
        expires_in=max(0.0, (claim.expires_at - w.now()).total_seconds()),
        item=item_view(task.item, draft),
        draft=draft_view(task.item, draft, task.draft_label if revealed else None),
        principles=principles(task.principle_ids, draft),
        pick=pick,
    )


def _label_ok(q: Queue, label: str | None) -> bool:
    if label is None or not label.strip() or len(label) > 200:
        return False
    return q.labels is None or label in q.labels


def _review_page(
    request: Request,
    w: WebState,
    me: User,
    q: Queue,
    *,
    pick: str | None = None,
    notice: str | None = None,
    error: str | None = None,
    note: str = "",
    status: int = 200,
) -> Response:
    claim = w.store.claim(q.name, me.name, kind="review")
    last = _undoable(w, me, q, "review")
    if claim is None:
        stats = w.store.stats(q.name)
        context = {"q": q, "stats": stats, "notice": notice, "error": error, "last": last}
        return w.render(request, "empty.html", context, status=status)
    # A pick only matters in a blind queue, where it reveals the draft.
    screen = _screen(w, me, q, claim, pick if q.blind and _label_ok(q, pick) else None)
    context = {
        "q": q,
        "s": screen,
        "notice": notice,
        "error": error,
        "note": note,
        "last": last,
    }
    return w.render(request, "review.html", context, status=status)


def _undoable(w: Web, me: User, q: Queue, kind: ClaimKind) -> Decision | None:
    """The user's newest decision of this kind in the queue, if still young enough to undo
    (whether someone decided the item since is checked when the undo is asked for)."""
    if w.undo_seconds <= 0:
        return None
    last = w.store.last_decision(q.name, me.name)
    if last is None or last.kind != kind:
        return None
    if (w.now() - last.decided_at).total_seconds() > w.undo_seconds:
        return None
    return last


@router.post("/q/{queue}/undo")
def undo(
    request: Request,
    w: WebState,
    me: Signed,
    queue: str,
    decision: Annotated[int, Form()],
    kind: Annotated[str, Form()] = "review",
) -> Response:
    """Take back the user's newest decision in the queue and show that item again."""
    q = w.store.queue_for(me.name, queue)
    try:
        undone = w.store.undo(q.name, me.name, decision=decision, within=w.undo_seconds)
    except (QueueError, LeaseError) as exc:
        error = f"Nothing was undone: {exc}"
        if kind == "adjudication":  # back to the page the request came from
            return _adjudication_page(request, w, me, q, error=error, status=409)
        return _review_page(request, w, me, q, error=error, status=409)
    page = "adjudicate" if undone.claim.kind == "adjudication" else "review"
    return _redirect(f"{_q(queue)}/{page}", notice="undone")


@router.get("/q/{queue}/review")
def review(
    request: Request,
    w: WebState,
    me: Signed,
    queue: str,
    pick: str | None = None,
    notice: str = "",
) -> Response:
    return _review_page(
        request, w, me, w.store.queue_for(me.name, queue), pick=pick, notice=NOTICES.get(notice)
    )


def _claimed(w: Web, me: User, queue: str, token: str, sig: str, item_id: str) -> None:
    if not w.signer.check_claim(sig, me.name, queue, token, item_id):
        raise Forbidden("this claim was not handed to you; reload the page to get your own")


@router.post("/q/{queue}/decide")
def decide(
    request: Request,
    w: WebState,
    me: Signed,
    queue: str,
    token: Text,
    sig: Text,
    item_id: Text,
    action: Annotated[str, Form()] = "",
    label: OptionalText = None,
    edit_label: OptionalText = None,
    pick: OptionalText = None,
    note: Annotated[str, Form()] = "",
    revision: OptionalText = None,
) -> Response:
    """Record a review decision; a repeated post of the same form returns the same decision."""
    _claimed(w, me, queue, token, sig, item_id)
    q = w.store.queue_for(me.name, queue)
    task = w.store.task(queue, item_id)
    label = (edit_label if action == "edit" else label) or None
    text = note.strip()
    edit = None
    original_revision = task.draft.get("revision")
    if action == "edit" and revision is not None and isinstance(original_revision, str):
        revision = revision.replace("\r\n", "\n")
        if revision != original_revision.replace("\r\n", "\n"):
            edit = {"revision": revision}
    kind, chosen = _review_action(q, task, action or "label", label or pick, edit is not None)
    if needs_note(task.confidence, kind, chosen, task.draft_label, edit is not None) and not text:
        error = (
            f"The critic was {task.confidence:.0%} confident here: say in the note why you "
            "override it."
        )
        return _review_page(request, w, me, q, pick=pick, error=error, note=note, status=422)
    if action == "gap":
        text = (GAP_PREFIX + text).strip()
    if kind in ("reject", "escalate"):
        edit = None
    try:
        w.store.decide(token, kind, label=chosen, edit=edit, note=text or None)
    except LeaseError:
        return _redirect(f"{_q(queue)}/review", notice="expired")
    except QueueError as exc:
        return _review_page(request, w, me, q, pick=pick, error=str(exc), note=note, status=400)
    return _redirect(f"{_q(queue)}/review", notice="saved")


def _review_action(
    q: Queue, task: Task, action: str, label: str | None, edited: bool
) -> tuple[Any, str | None]:
    """The store action and label for what the reviewer pressed."""
    if action == "reject":
        return "reject", None
    if action in ("escalate", "gap"):
        return "escalate", None
    if action not in ("accept", "label", "edit"):
        raise QueueError(f"unknown decision {action!r}", hint="use the buttons on the page")
    if q.blind:
        if label is None:
            raise QueueError(
                "this queue is blind: pick your own label first (number keys)",
                hint="press the number of a label, then confirm it",
            )
        return ("accept" if label == task.draft_label and not edited else "edit"), label
    if action == "accept":
        return "accept", None
    changed = label if label is not None and label != task.draft_label else None
    if changed is None and not edited:
        return "accept", None
    return "edit", changed


@router.post("/q/{queue}/skip")
def skip(w: WebState, me: Signed, queue: str, token: Text, sig: Text, item_id: Text) -> Response:
    _claimed(w, me, queue, token, sig, item_id)
    # Already skipped (a repeated post) or expired: either way, on to the next item.
    with suppress(LeaseError):
        w.store.skip(token)
    return _redirect(f"{_q(queue)}/review", notice="skipped")


@router.post("/q/{queue}/release")
def release(w: WebState, me: Signed, queue: str, token: Text, sig: Text, item_id: Text) -> Response:
    _claimed(w, me, queue, token, sig, item_id)
    w.store.release(token)
    return _redirect("/")


@router.post("/q/{queue}/heartbeat")
def heartbeat(
    w: WebState, me: Signed, queue: str, token: Text, sig: Text, item_id: Text
) -> Response:
    _claimed(w, me, queue, token, sig, item_id)
    try:
        expires = w.store.heartbeat(token)
    except LeaseError as exc:
        return JSONResponse({"error": exc.message, "hint": exc.hint}, status_code=409)
    return JSONResponse({"expires_in": (expires - w.now()).total_seconds()})


# -- adjudication ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    decision: Decision
    adoptable: bool
    draft: Any
    """The answer's edited revision as a diff against the original, if it edited one."""


def _answers(screen: Screen) -> list[Answer]:
    answers = []
    for d in screen.claim.answers:
        edited = dict(screen.task.draft)
        if d.edit:
            edited.update(d.edit)
        view = draft_view(screen.task.item, edited, d.label) if d.edit else None
        answers.append(Answer(d, d.action != "escalate", view))
    return answers


def _adjudication_page(
    request: Request,
    w: Web,
    me: User,
    q: Queue,
    *,
    notice: str | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response:
    claim = w.store.claim(q.name, me.name, kind="adjudication")
    last = _undoable(w, me, q, "adjudication")
    if claim is None:
        stats = w.store.stats(q.name)
        context = {
            "q": q,
            "stats": stats,
            "notice": notice,
            "error": error,
            "adjudication": True,
            "last": last,
        }
        return w.render(request, "empty.html", context, status=status)
    screen = _screen(w, me, q, claim, None)
    context = {
        "q": q,
        "s": screen,
        "answers": _answers(screen),
        "notice": notice,
        "error": error,
        "last": last,
    }
    return w.render(request, "adjudicate.html", context, status=status)


@router.get("/q/{queue}/adjudicate")
def adjudication(
    request: Request, w: WebState, me: Adjudicator, queue: str, notice: str = ""
) -> Response:
    return _adjudication_page(
        request, w, me, w.store.queue_for(me.name, queue), notice=NOTICES.get(notice)
    )


@router.post("/q/{queue}/adjudicate")
def adjudicate(
    request: Request,
    w: WebState,
    me: Adjudicator,
    queue: str,
    token: Text,
    sig: Text,
    item_id: Text,
    adopt: Text,
    label: OptionalText = None,
    note: Annotated[str, Form()] = "",
) -> Response:
    """Settle a disagreement: adopt the critic's draft, one reviewer's answer, or a new label."""
    _claimed(w, me, queue, token, sig, item_id)
    q = w.store.queue_for(me.name, queue)
    task = w.store.task(queue, item_id)
    action: Any
    edit: dict[str, Any] | None = None
    if adopt == "critic":
        action, label = "accept", None
    elif adopt == "reject":
        action, label = "reject", None
    elif adopt == "label":
        if not label:
            raise QueueError("pick the label to give this item", hint="choose one in the list")
        action = "accept" if label == task.draft_label else "edit"
        label = None if action == "accept" else label
    else:
        chosen = next(
            (
                d
                for d in w.store.decisions(queue, item_id)
                if str(d.id) == adopt and d.round == task.round and d.kind == "review"
            ),
            None,
        )
        if chosen is None or chosen.action == "escalate":
            raise QueueError(
                f"there is no answer {adopt!r} to adopt for this item in this round",
                hint="reload the page; the item may have been reopened",
            )
        edit = chosen.edit
        if chosen.action == "reject":
            action, label = "reject", None
        elif chosen.label == task.draft_label and not edit:
            action, label = "accept", None
        else:
            action, label = "edit", chosen.label
    try:
        w.store.decide(token, action, label=label, edit=edit, note=note.strip() or None)
    except LeaseError:
        return _redirect(f"{_q(queue)}/adjudicate", notice="expired")
    except QueueError as exc:
        return _adjudication_page(request, w, me, q, error=str(exc), status=400)
    return _redirect(f"{_q(queue)}/adjudicate", notice="saved")


# -- dashboard and history -------------------------------------------------------------------


@router.get("/q/{queue}/dashboard")
def dashboard(request: Request, w: WebState, me: Adjudicator, queue: str) -> Response:
    q = w.store.queue_for(me.name, queue)
    now = w.now()
    lines = w.store.task_lines(queue)
    decided = w.store.decision_lines(queue)
    gaps = [d for d in decided if d.action == "escalate" and (d.note or "").startswith(GAP_PREFIX)]
    context = {
        "q": q,
        "stats": w.store.stats(queue),
        "agreement": w.store.agreement(queue),
        "burn": metrics.burn_down(lines, now),
        "overrides": metrics.overrides_by_principle(lines, decided),
        "throughput": {t.reviewer: t for t in metrics.throughput(decided, now)},
        "recent": decided[-30:][::-1],
        "gaps": gaps[-20:][::-1],
    }
    return w.render(request, "dashboard.html", context)


@router.get("/q/{queue}/items")
def find_item(w: WebState, me: Adjudicator, queue: str, item_id: str = "") -> Response:
    return _redirect(f"{_q(queue)}/items/{quote(item_id.strip(), safe='')}")


@router.get("/q/{queue}/items/{item_id:path}")
def item_history(
    request: Request, w: WebState, me: Adjudicator, queue: str, item_id: str, notice: str = ""
) -> Response:
    q = w.store.queue_for(me.name, queue)
    task = w.store.task(queue, item_id)
    context = {
        "q": q,
        "task": task,
        "item": item_view(task.item, task.draft),
        "draft": draft_view(task.item, task.draft, task.draft_label),
        "principles": principles(task.principle_ids, task.draft),
        "decisions": w.store.decisions(queue, item_id),
        "events": w.store.history(queue, item_id),
        "notice": NOTICES.get(notice),
    }
    return w.render(request, "item.html", context)


@router.post("/q/{queue}/items/{item_id:path}/reopen")
def reopen(
    w: WebState, me: Adjudicator, queue: str, item_id: str, note: Annotated[str, Form()] = ""
) -> Response:
    w.store.reopen(queue, item_id, by=me.name, reason=note.strip() or None)
    return _redirect(f"{_q(queue)}/items/{quote(item_id, safe='')}", notice="reopened")


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
    return _redirect(f"{_q(queue)}/members", notice="members")


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
            password_hash=hash_password(password),
            queues=queues or (),
            by=me.name,
        )
    except QueueError as exc:
        return _users_page(request, w, error=str(exc), status=400)
    return _redirect("/admin/users", notice="created")


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
            password_hash=hash_password(password) if password else None,
            by=me.name,
        )
    except QueueError as exc:
        return _users_page(request, w, error=str(exc), status=400)
    return _redirect("/admin/users", notice="updated")


def _role(role: str) -> Role:
    for known in ROLES:
        if role == known:
            return known
    raise QueueError(f"unknown role {role!r}", hint=f"use one of: {', '.join(ROLES)}")
