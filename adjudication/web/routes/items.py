"""The item list of a queue: search, filters, orders and keyset pages for every member; bulk
actions (reassign, requeue, accept the critic's answers) and the exemplar-candidate mark for
adjudicators and admins; an item's precedents as JSON for the review page."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from ...bulk import BULK_ACTIONS
from ...errors import QueueError
from ...listing import SORTS, STATES, Filters, Precedent
from ...models import Queue, User
from ..deps import (
    Adjudicator,
    Signed,
    Web,
    WebState,
    check_csrf,
    local,
    queue_for,
    queue_path,
    redirect,
)
from ..render import decided_word, when

router = APIRouter(dependencies=[Depends(check_csrf)])

# The list's query parameters, in the order the filter form shows them.
FIELDS = (
    "q",
    "state",
    "reason",
    "label",
    "decided",
    "cmin",
    "cmax",
    "reviewer",
    "assignee",
    "date",
    "since",
    "until",
    "exemplar",
    "sort",
)
DONE = {
    "reassign": "Reassigned",
    "requeue": "Requeued",
    "accept": "Accepted the critic's answer for",
}


def _number(field: str, value: str) -> float | None:
    if not value.strip():
        return None
    try:
        return float(value)
    except ValueError as exc:
        raise QueueError(f"{field}: {value!r} is not a number", hint="use e.g. 0.25") from exc


def _date(field: str, value: str) -> date | None:
    if not value.strip():
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError as exc:
        raise QueueError(f"{field}: {value!r} is not a date", hint="use YYYY-MM-DD") from exc


def filters_of(params: dict[str, str]) -> Filters:
    """The list's filters from its query parameters (or the bulk form's copy of them)."""
    get = params.get
    when = get("date") or "changed"
    return Filters(
        text=get("q", "").strip(),
        state=get("state") or None,
        reason=get("reason") or None,
        label=get("label") or None,
        decided=get("decided") or None,
        confidence_min=_number("cmin", get("cmin", "")),
        confidence_max=_number("cmax", get("cmax", "")),
        reviewer=get("reviewer") or None,
        assignee=get("assignee") or None,
        date_field="created" if when == "created" else "changed",
        since=_date("since", get("since", "")),
        until=_date("until", get("until", "")),
        exemplar=bool(get("exemplar")),
        sort=get("sort") or ("relevance" if get("q", "").strip() else "queue"),
    )


def _params(request: Request) -> dict[str, str]:
    return {k: request.query_params.get(k, "") for k in FIELDS}


def _query(params: dict[str, str], **extra: str) -> str:
    kept = {k: v for k, v in {**params, **extra}.items() if v}
    return urlencode(kept)


def list_page(
    request: Request,
    w: Web,
    me: User,
    q: Queue,
    params: dict[str, str],
    *,
    after: str = "",
    notice: str | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response:
    page = None
    try:
        page = w.store.items(q.name, filters_of(params), viewer=me.name, after=after or None)
    except QueueError as exc:
        error, status = str(exc), 400
    curator = me.role in ("adjudicator", "admin")
    context = {
        "q": q,
        "page": page,
        "params": params,
        "sorts": SORTS,
        "states": STATES,
        "actions": BULK_ACTIONS,
        "curator": curator,
        "people": w.store.members(q.name),
        "next_url": (
            f"{queue_path(q.name)}/items?{_query(params, after=page.next)}"
            if page is not None and page.next
            else None
        ),
        "first_url": f"{queue_path(q.name)}/items?{_query(params)}" if after else None,
        "here": f"{queue_path(q.name)}/items?{_query(params, after=after)}",
        "notice": notice,
        "error": error,
    }
    return w.render(request, "items.html", context, status=status)


@router.get("/q/{queue}/items")
def items(
    request: Request,
    w: WebState,
    me: Signed,
    queue: str,
    after: str = "",
    item_id: str = "",
    done: str = "",
    changed: int = 0,
    same: int = 0,
    left: int = 0,
) -> Response:
    """The list; with `item_id` (the dashboard's "item history" box), that item's page."""
    q = queue_for(w, me, queue)
    if item_id.strip():
        return redirect(f"{queue_path(queue)}/items/{quote(item_id.strip(), safe='')}")
    notice = None
    if done in DONE:
        notice = f"{DONE[done]} {changed} item(s); {same} already as asked"
        notice += f"; {left} left alone (see each item's state)." if left else "."
    return list_page(request, w, me, q, _params(request), after=after, notice=notice)


@router.post("/q/{queue}/items/bulk")
async def bulk(request: Request, w: WebState, me: Adjudicator, queue: str) -> Response:
    """Apply a bulk action to the ticked items, or to every item matching the list's filters
    (the form carries the list's filters)."""
    form = await request.form()
    fields = {k: str(form.get(k) or "") for k in (*FIELDS, "action", "scope", "to", "note")}
    chosen = [str(v) for v in form.getlist("item")]
    return await run_in_threadpool(_bulk, request, w, me, queue, fields, chosen)


def _bulk(
    request: Request, w: Web, me: User, queue: str, fields: dict[str, str], chosen: list[str]
) -> Response:
    q = queue_for(w, me, queue)
    params = {k: fields[k] for k in FIELDS}
    action = fields["action"]
    try:
        if action not in BULK_ACTIONS:
            raise QueueError(f"unknown action {action!r}", hint="choose one in the list")
        matching = fields["scope"] == "matching"
        if not matching and not chosen:
            raise QueueError("tick the items to change, or choose every item matching the filters")
        result = w.store.bulk(
            q.name,
            action,  # type: ignore[arg-type]
            by=me.name,
            items=() if matching else chosen,
            filters=filters_of(params) if matching else None,
            assignee=(fields["to"] or None) if action == "reassign" else None,
            note=fields["note"],
        )
    except QueueError as exc:
        return list_page(request, w, me, q, params, error=str(exc), status=400)
    back = {
        **params,
        "done": action,
        "changed": str(result.changed),
        "same": str(result.unchanged),
        "left": str(sum(result.skipped.values())),
    }
    return redirect(f"{queue_path(queue)}/items?{_query(back)}")


@router.post("/q/{queue}/items/{item_id:path}/exemplar")
def exemplar(
    w: WebState,
    me: Adjudicator,
    queue: str,
    item_id: str,
    mark: Annotated[str, Form()] = "1",
    back: Annotated[str, Form()] = "",
) -> Response:
    """Mark (or unmark) an item as an exemplar candidate for the constitution."""
    queue_for(w, me, queue)
    w.store.mark_exemplar(queue, item_id, by=me.name, candidate=mark == "1")
    target = local(back) if back else f"{queue_path(queue)}/items/{quote(item_id, safe='')}"
    return redirect(target)


# -- precedents, for the review page ----------------------------------------------------------


@router.get("/q/{queue}/precedents/{item_id:path}")
def precedents(w: WebState, me: Signed, queue: str, item_id: str) -> Response:
    """The decided items most like one item, as JSON: the review page shows the item at once
    and fills its precedents panel from here (the page never waits for the full-text ranking).
    `after_pick` is true, with no precedents, while the viewer has not picked in a blind
    queue; every text is data for the page to print as text."""
    queue_for(w, me, queue)
    found = w.store.precedents(queue, item_id, viewer=me.name)
    body = {
        "after_pick": found is None,
        "precedents": [precedent_json(queue, p) for p in found or ()],
    }
    return JSONResponse(body, headers={"Cache-Control": "no-store"})


def precedent_json(queue: str, p: Precedent) -> dict[str, Any]:
    """One precedent as the review page prints it (the same words as the item page's panel)."""
    return {
        "queue": p.queue,
        "other_queue": p.queue != queue,
        "item_id": p.item_id,
        "href": f"/q/{quote(p.queue, safe='')}/items/{quote(p.item_id, safe='')}",
        "decided": decided_word(p.rejected, p.label, bool(p.edit)),
        "by": ", ".join(p.deciders) or "–",
        "adjudicated": p.source == "adjudicated",
        "when": when(p.decided_at),
        "notes": list(p.notes),
        "snippet": [{"text": s.text, "hit": bool(s.marks)} for s in p.snippet],
    }
