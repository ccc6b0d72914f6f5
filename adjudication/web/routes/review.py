"""The queue list and the review screen: claim, decide, skip, release, heartbeat, undo."""

from __future__ import annotations

from contextlib import suppress
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import JSONResponse, Response

from ...errors import LeaseError, QueueError
from ...models import Queue, Task, User
from ...rules import GAP_PREFIX, blind_for, same_answer
from ..deps import (
    NOTICES,
    Forbidden,
    OptionalText,
    Signed,
    Text,
    Web,
    WebState,
    check_csrf,
    queue_for,
    queue_path,
    redirect,
)
from ..render import needs_note
from ..screen import require_claim, screen, sees_draft, undoable
from .adjudicate import adjudication_page

router = APIRouter(dependencies=[Depends(check_csrf)])


@router.get("/")
def home(request: Request, w: WebState, me: Signed, notice: str = "") -> Response:
    return home_page(request, w, me, notice=NOTICES.get(notice))


def home_page(
    request: Request,
    w: Web,
    me: User,
    *,
    notice: str | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response:
    """The queues the user works in, with their counts."""
    rows = [(q, w.store.stats(q.name)) for q in w.store.queues_for(me.name)]
    archived = [q for q in w.store.queues() if q.archived_at] if me.role == "admin" else []
    context = {"rows": rows, "archived": archived, "notice": notice, "error": error}
    return w.render(request, "home.html", context, status=status)


def _review_page(
    request: Request,
    w: Web,
    me: User,
    q: Queue,
    *,
    notice: str | None = None,
    error: str | None = None,
    note: str = "",
    status: int = 200,
) -> Response:
    """The item the reviewer holds, or a page to claim the next one. Reads only: a GET must
    not claim (a link from another site would claim for the user who follows it)."""
    claim = w.store.held(q.name, me.name, kind="review")
    last = undoable(w, me, q, "review")
    if claim is None:
        stats = w.store.stats(q.name)
        context = {"q": q, "stats": stats, "notice": notice, "error": error, "last": last}
        return w.render(request, "empty.html", context, status=status)
    context = {
        "q": q,
        "s": screen(w, me, q, claim),
        "notice": notice,
        "error": error,
        "note": note,
        "last": last,
    }
    return w.render(request, "review.html", context, status=status)


@router.post("/q/{queue}/claim")
def claim(w: WebState, me: Signed, queue: str, kind: Annotated[str, Form()] = "review") -> Response:
    """Take the next item (or keep the one held) and show it."""
    q = queue_for(w, me, queue)
    if kind not in ("review", "adjudication") or (
        kind == "adjudication" and me.role not in ("adjudicator", "admin")
    ):
        raise Forbidden(f"{me.name} ({me.role}) asked to claim {kind!r} in {queue!r}")
    page = "adjudicate" if kind == "adjudication" else "review"
    found = w.store.claim(
        q.name, me.name, kind="adjudication" if page == "adjudicate" else "review"
    )
    return redirect(f"{queue_path(queue)}/{page}", **({} if found else {"notice": "empty"}))


@router.post("/q/{queue}/pick")
def pick(
    request: Request,
    w: WebState,
    me: Signed,
    queue: str,
    token: Text,
    sig: Text,
    item_id: Text,
    pick: Text,
) -> Response:
    """Record a blind reviewer's own label; only then does the page show the critic's draft."""
    require_claim(w, me, queue, token, sig, item_id)
    q = queue_for(w, me, queue)
    try:
        w.store.pick(token, pick)
    except LeaseError:
        w.store.claim(q.name, me.name, kind="review")
        return redirect(f"{queue_path(queue)}/review", notice="expired")
    except QueueError as exc:
        return _review_page(request, w, me, q, error=str(exc), status=409)
    return redirect(f"{queue_path(queue)}/review")


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
    q = queue_for(w, me, queue)
    try:
        undone = w.store.undo(q.name, me.name, decision=decision, within=w.undo_seconds)
    except (QueueError, LeaseError) as exc:
        error = f"Nothing was undone: {exc}"
        if kind == "adjudication":  # back to the page the request came from
            return adjudication_page(request, w, me, q, error=error, status=409)
        return _review_page(request, w, me, q, error=error, status=409)
    page = "adjudicate" if undone.claim.kind == "adjudication" else "review"
    return redirect(f"{queue_path(queue)}/{page}", notice="undone")


@router.get("/q/{queue}/review")
def review(request: Request, w: WebState, me: Signed, queue: str, notice: str = "") -> Response:
    return _review_page(request, w, me, queue_for(w, me, queue), notice=NOTICES.get(notice))


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
    require_claim(w, me, queue, token, sig, item_id)
    q = queue_for(w, me, queue)
    task = w.store.task(queue, item_id)
    label = (edit_label if action == "edit" else label) or None
    text = note.strip()
    edit = None
    original_revision = task.draft.get("revision")
    if task.answer == "revision" and not isinstance(original_revision, str):
        original_revision = ""  # drafting failed: the reviewer writes the revision
    if action == "edit" and revision is not None and isinstance(original_revision, str):
        revision = revision.replace("\r\n", "\n")
        if revision != original_revision.replace("\r\n", "\n"):
            edit = {"revision": revision}
    blind = blind_for(q.blind, task.blind)
    kind, chosen = _review_action(blind, task, action or "label", label or pick, edit is not None)
    # Before a blind pick the confidence check would answer against the hidden draft; the store
    # refuses accept and edit then, and reject and escalate need no note.
    seen = sees_draft(w, me, q, token)
    if (
        seen
        and needs_note(task.confidence, kind, chosen, task.draft_label, edit is not None)
        and not text
    ):
        error = (
            f"The critic was {task.confidence:.0%} confident here: say in the note why you "
            "override it."
        )
        return _review_page(request, w, me, q, error=error, note=note, status=422)
    if action == "gap":
        text = (GAP_PREFIX + text).strip()
    if kind in ("reject", "escalate"):
        edit = None
    try:
        decision = w.store.decide(token, kind, label=chosen, edit=edit, note=text or None)
    except LeaseError:
        w.store.claim(q.name, me.name, kind="review")
        return redirect(f"{queue_path(queue)}/review", notice="expired")
    except QueueError as exc:
        return _review_page(request, w, me, q, error=str(exc), note=note, status=400)
    w.store.claim(q.name, me.name, kind="review")  # the next item, shown by the GET
    saved = same_answer(decision, kind, chosen, edit, q.labels)
    return redirect(f"{queue_path(queue)}/review", notice="saved" if saved else "kept")


def _review_action(
    blind: bool, task: Task, action: str, label: str | None, edited: bool
) -> tuple[Any, str | None]:
    """The store action and label for what the reviewer pressed."""
    if action == "reject":
        return "reject", None
    if action in ("escalate", "gap"):
        return "escalate", None
    if action not in ("accept", "label", "edit"):
        raise QueueError(f"unknown decision {action!r}", hint="use the buttons on the page")
    if task.answer == "revision":  # the decision is the revision's text: there is no label
        return ("edit" if edited else "accept"), None
    if blind:
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
    require_claim(w, me, queue, token, sig, item_id)
    # Already skipped (a repeated post) or expired: either way, on to the next item.
    with suppress(LeaseError):
        w.store.skip(token)
    w.store.claim(queue, me.name, kind="review")
    return redirect(f"{queue_path(queue)}/review", notice="skipped")


@router.post("/q/{queue}/release")
def release(w: WebState, me: Signed, queue: str, token: Text, sig: Text, item_id: Text) -> Response:
    require_claim(w, me, queue, token, sig, item_id)
    w.store.release(token)
    return redirect("/")


@router.post("/q/{queue}/heartbeat")
def heartbeat(
    w: WebState, me: Signed, queue: str, token: Text, sig: Text, item_id: Text
) -> Response:
    require_claim(w, me, queue, token, sig, item_id)
    try:
        expires = w.store.heartbeat(token)
    except LeaseError as exc:
        return JSONResponse({"error": exc.message, "hint": exc.hint}, status_code=409)
    return JSONResponse({"expires_in": (expires - w.now()).total_seconds()})
