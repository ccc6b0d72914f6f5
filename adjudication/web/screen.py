"""The claimed-item screen shared by the review and adjudication pages: what it shows about one
claim, the claim signature check, and the decision the user may still undo."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..guidelines import Arranged, arrange
from ..models import Claim, ClaimKind, Decision, Queue, Task, User
from ..pairs import Caption, captions
from ..parts import parts_of, visible
from ..rules import blind_for
from .deps import Forbidden, Web
from .render import draft_view, item_view, principles


@dataclass(frozen=True)
class Screen:
    """Everything the review and adjudication pages show about one claimed task."""

    claim: Claim
    task: Task
    """The full task (the claim's view hides the draft in blind queues)."""
    revealed: bool
    """The draft and everything derived from it show (in a blind review queue: once picked)."""
    sig: str
    ahead: int | None
    """Pending items before this one; None before a blind pick (the order is the confidence's)."""
    pending: int
    """Pending items in the queue (a few seconds old: `Web.pending`)."""
    expires_in: float
    item: Any
    draft: Any
    principles: Any
    pick: str | None
    blind: bool = False
    """A review under blindness (the queue's, or the item's own pinned one)."""
    guidelines: Arranged | None = None
    """The guidelines of the version that drafted the item; None when none are stored."""
    captions: dict[str, Caption] | None = None
    """The queue's labels as their buttons read ("Response A" for a pairwise `A`)."""
    precedents: Any = None
    """Similar decided items (`Store.precedents`), when asked for (the adjudication page; the
    review page loads them after it is shown); None until the draft shows."""


def screen(w: Web, me: User, q: Queue, claim: Claim, *, with_precedents: bool = False) -> Screen:
    """The screen for `claim`. In a blind review queue nothing derived from the draft shows
    until the reviewer's own pick is recorded on the claim (`Store.pick`): not the draft, its
    label or confidence, why the item was sent, the principles it cites, nor the item's place
    in the queue's order (which is by confidence). The guidelines and which field plays which
    part are not the critic's and show from the start."""
    blind = claim.blind
    pick = claim.pick if blind else None
    revealed = not blind or pick is not None
    full = w.store.task(q.name, claim.task.item_id) if blind else claim.task
    task = full if revealed else claim.task
    draft = task.draft if revealed else {}
    item = visible(task.item, q.hidden_fields)
    parts = parts_of(item, full.draft.get("fields"))
    found = w.store.guidelines(q.name, full.guidelines)
    cited = task.principle_ids if revealed else ()
    return Screen(
        claim=claim,
        task=task,
        revealed=revealed,
        sig=w.signer.claim(me.name, q.name, claim.token, claim.task.item_id),
        ahead=w.store.position(q.name, claim.task.item_id) if revealed else None,
        pending=w.pending(q.name),
        expires_in=max(0.0, (claim.expires_at - w.now()).total_seconds()),
        item=item_view(item, draft, parts=parts),
        draft=draft_view(item, draft, task.draft_label if revealed else None),
        principles=principles(task.principle_ids, draft) if revealed else (),
        pick=pick,
        blind=blind,
        guidelines=None if found is None else arrange(found, cited),
        captions=captions(q.labels, q.label_descriptions),
        precedents=(
            w.store.precedents(q.name, claim.task.item_id, viewer=me.name)
            if revealed and with_precedents
            else None
        ),
    )


def sees_draft(w: Web, me: User, q: Queue, token: str) -> bool:
    """Whether the holder of claim `token` has been shown the draft: always, but in a blind
    queue only once their pick is recorded on that claim (a claim that is not live counts as
    unpicked; the store answers a retried decision on it by itself)."""
    held = w.store.held(q.name, me.name, kind="review")
    if held is None or held.token != token:
        return not q.blind
    return not held.blind or held.pick is not None


def draft_hidden(w: Web, me: User, q: Queue, task: Task) -> bool:
    """Whether an item's page must hide what comes from the draft from `me`: in a blind queue,
    while the item is open for review and `me` (who may review it, if an adjudicator or admin)
    has not picked a label for it in this round."""
    return (
        blind_for(q.blind, task.blind)
        and task.state == "pending"
        and w.store.picked(q.name, task.item_id, me.name) is None
    )


def require_claim(w: Web, me: User, queue: str, token: str, sig: str, item_id: str) -> None:
    """The posted claim token was handed to this user, for this item of this queue."""
    if not w.signer.check_claim(sig, me.name, queue, token, item_id):
        raise Forbidden(
            f"{me.name} posted a claim signature of someone else in {queue!r}",
            shown="This claim was not handed to you; reload the page to get your own.",
        )


def undoable(w: Web, me: User, q: Queue, kind: ClaimKind) -> Decision | None:
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
