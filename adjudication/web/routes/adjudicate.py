"""Adjudication (settling disagreements), the queue dashboard and item histories."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response

from ...errors import LeaseError, QueueError
from ...evidence import read
from ...models import Decision, Queue, User
from ...parts import parts_of, visible
from ...raters import timing, too_fast
from ...rules import blind_for, is_gap_note, same_answer
from .. import metrics
from ..deps import (
    NOTICES,
    Adjudicator,
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
from ..render import draft_view, item_view, principles
from ..screen import Screen, draft_hidden, require_claim, screen, undoable

router = APIRouter(dependencies=[Depends(check_csrf)])


@dataclass(frozen=True)
class Answer:
    decision: Decision
    adoptable: bool
    draft: Any
    """The answer's edited revision as a diff against the original, if it edited one."""


def _answers(q: Queue, shown: Screen) -> list[Answer]:
    answers = []
    item = visible(shown.task.item, q.hidden_fields)
    for d in shown.claim.answers:
        edited = dict(shown.task.draft)
        if d.edit:
            edited.update(d.edit)
        view = draft_view(item, edited, d.label) if d.edit else None
        answers.append(Answer(d, d.action != "escalate", view))
    return answers


def adjudication_page(
    request: Request,
    w: Web,
    me: User,
    q: Queue,
    *,
    notice: str | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response:
    """The disagreement the adjudicator holds, or a page to claim the next one. Reads only: a
    GET must not claim (a link from another site would claim for the user who follows it)."""
    claim = w.store.held(q.name, me.name, kind="adjudication")
    last = undoable(w, me, q, "adjudication")
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
    shown = screen(w, me, q, claim, with_precedents=True)
    context = {
        "q": q,
        "s": shown,
        "answers": _answers(q, shown),
        "notice": notice,
        "error": error,
        "last": last,
    }
    return w.render(request, "adjudicate.html", context, status=status)


@router.get("/q/{queue}/adjudicate")
def adjudication(
    request: Request, w: WebState, me: Adjudicator, queue: str, notice: str = ""
) -> Response:
    return adjudication_page(request, w, me, queue_for(w, me, queue), notice=NOTICES.get(notice))


@router.post("/q/{queue}/adjudicate")
def adjudicate(
    request: Request,
    w: WebState,
    me: Adjudicator,
    queue: str,
    token: Text,
    sig: Text,
    item_id: Text,
    adopt: Annotated[str, Form()] = "",
    label: OptionalText = None,
    note: Annotated[str, Form()] = "",
) -> Response:
    """Settle a disagreement: adopt the critic's draft, one reviewer's answer, or a label (a
    label button posts only its label)."""
    require_claim(w, me, queue, token, sig, item_id)
    adopt = adopt or ("label" if label else "")
    q = queue_for(w, me, queue)
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
        decision = w.store.decide(token, action, label=label, edit=edit, note=note.strip() or None)
    except LeaseError:
        w.store.claim(q.name, me.name, kind="adjudication")
        return redirect(f"{queue_path(queue)}/adjudicate", notice="expired")
    except QueueError as exc:
        return adjudication_page(request, w, me, q, error=str(exc), status=400)
    w.store.claim(q.name, me.name, kind="adjudication")  # the next one, shown by the GET
    saved = same_answer(decision, action, label, edit, q.labels)
    return redirect(f"{queue_path(queue)}/adjudicate", notice="saved" if saved else "kept")


# -- dashboard and history -------------------------------------------------------------------


@router.get("/q/{queue}/dashboard")
def dashboard(request: Request, w: WebState, me: Adjudicator, queue: str) -> Response:
    q = queue_for(w, me, queue)
    now = w.now()
    lines = w.store.task_lines(queue)
    decided = w.store.decision_lines(queue)
    # The rule `critic constitution stats` counts by: any review decision whose note flags one.
    gaps = [d for d in decided if d.kind == "review" and is_gap_note(d.note)]
    context = {
        "q": q,
        "stats": w.store.stats(queue),
        "agreement": w.store.agreement(queue),
        "burn": metrics.burn_down(lines, now),
        "overrides": metrics.overrides_by_principle(lines, decided),
        "throughput": {t.reviewer: t for t in metrics.throughput(decided, now)},
        # Scripted reviewers make decisions per hour meaningless: say so beside the figure.
        "too_fast": {
            name: flag
            for name, seconds in timing(read(w.store, queue).judgments).items()
            if (flag := too_fast(seconds)) is not None
        },
        "recent": decided[-30:][::-1],
        # In a blind queue, an accept on an item still open for review names the critic's label
        # to an adjudicator who may review the item next.
        "open_blind": {
            t.item_id for t in lines if t.state == "pending" and blind_for(q.blind, t.blind)
        },
        "gaps": gaps[-20:][::-1],
        "gap_count": len(gaps),
        "min_rate_count": metrics.MIN_RATE_COUNT,
        "min_rate_seconds": metrics.MIN_RATE_SECONDS,
    }
    return w.render(request, "dashboard.html", context)


@router.get("/q/{queue}/items/{item_id:path}")
def item_history(
    request: Request, w: WebState, me: Signed, queue: str, item_id: str, notice: str = ""
) -> Response:
    """One item with its decisions and history, for the queue's members (a precedent opens
    here); reopening is for adjudicators."""
    q = queue_for(w, me, queue)
    task = w.store.task(queue, item_id)
    # An adjudicator or admin may still review an open item of a blind queue: until they have
    # picked, the page shows the item alone, and of its history only who did what when.
    hidden = draft_hidden(w, me, q, task)
    draft: dict[str, Any] = {} if hidden else task.draft
    item = visible(task.item, q.hidden_fields)
    context = {
        "q": q,
        "task": task,
        "hidden": hidden,
        # Reviewers review independently: others' answers on an open item would sway them.
        "answers_hidden": hidden or (me.role == "reviewer" and task.state == "pending"),
        "item": item_view(item, draft, parts=parts_of(item, task.draft.get("fields"))),
        "draft": draft_view(item, draft, task.draft_label),
        "principles": principles(task.principle_ids, draft),
        "precedents": w.store.precedents(queue, item_id, viewer=me.name),
        "exemplar": item_id in w.store.exemplar_candidates(queue),
        "decisions": w.store.decisions(queue, item_id),
        # Gold items must look like any other item to everyone who may review them: their
        # known answer and scores are for admins only.
        "events": [
            e
            for e in w.store.history(queue, item_id)
            if me.role == "admin" or not e.kind.startswith("gold")
        ],
        "gold": (
            [g for g in w.store.gold_results(queue) if g.item_id == item_id]
            if me.role == "admin"
            else []
        ),
        "notice": NOTICES.get(notice),
    }
    return w.render(request, "item.html", context)


@router.post("/q/{queue}/items/{item_id:path}/reopen")
def reopen(
    w: WebState, me: Adjudicator, queue: str, item_id: str, note: Annotated[str, Form()] = ""
) -> Response:
    queue_for(w, me, queue)
    w.store.reopen(queue, item_id, by=me.name, reason=note.strip() or None)
    return redirect(f"{queue_path(queue)}/items/{quote(item_id, safe='')}", notice="reopened")
