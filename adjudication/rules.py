"""The queue's rules as pure functions: who may claim what, what a decision means, when a
round of reviews is settled. No database, no clock."""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import PermissionDenied, QueueError
from .models import ACTIONS, REJECTED, ROLES, ClaimKind, Decision, NewTask, Source


def suggest(word: str, choices: Iterable[str]) -> str | None:
    """A hint naming the closest known choice, or None."""
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"did you mean {match[0]!r}?" if match else None


def check_role(role: str) -> None:
    if role not in ROLES:
        raise QueueError(
            f"unknown role {role!r}", hint=suggest(role, ROLES) or f"use one of: {', '.join(ROLES)}"
        )


NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
"""Queue and user names: they appear in URL paths, commands and logs, so only ASCII letters,
digits, `-`, `_` and `.`, starting with a letter or digit, at most 200 characters."""


def check_name(kind: str, name: str) -> None:
    """Refuse a queue or user name that `NAME` does not match, saying why."""
    if NAME.fullmatch(name):
        return
    if not name or len(name) > 200:
        problem = "must be 1 to 200 characters"
    else:
        bad = sorted({c for c in name if not (c.isascii() and (c.isalnum() or c in "._-"))})
        problem = (
            f"may not contain {', '.join(repr(c) for c in bad)}"
            if bad
            else "must start with a letter or a digit"
        )
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-._")[:200] or "team-a"
    raise QueueError(
        f"{kind} name {name!r} {problem}",
        hint=f"use letters, digits, '-', '_' and '.', e.g. {cleaned!r}",
    )


MAX_OVERLAP = 100
"""The most independent reviews one item may need (a larger number is a typo, and would leave
every item waiting for reviewers the team does not have)."""
MAX_LEASE_SECONDS = 24 * 3600
"""The longest lease: a claim nobody renews for a day is abandoned; the web page renews its
lease while it is open, and a reviewer who comes back later claims again."""


def check_queue_settings(overlap: int, lease_seconds: int) -> None:
    """Refuse a queue's overlap or lease outside their bounds, saying which and why."""
    if not 1 <= overlap <= MAX_OVERLAP:
        raise QueueError(
            f"overlap must be between 1 and {MAX_OVERLAP} reviews per item, not {overlap}",
            hint="most teams use 1 to 3; with 2 or more, disagreements go to an adjudicator",
        )
    if not 1 <= lease_seconds <= MAX_LEASE_SECONDS:
        raise QueueError(
            f"lease_seconds must be between 1 and {MAX_LEASE_SECONDS} (a day), not {lease_seconds}",
            hint="the default is 600 (10 minutes); the web page renews the lease while it is open",
        )


def claim_kinds(user: str, role: str, active: bool, kind: str | None) -> list[ClaimKind]:
    """What a user may be handed, in the order it is offered to them."""
    if not active:
        raise PermissionDenied(
            f"user {user!r} is deactivated", hint="ask an admin to reactivate them"
        )
    if kind not in (None, "review", "adjudication"):
        raise QueueError(f"unknown claim kind {kind!r}", hint="use 'review' or 'adjudication'")
    adjudicates = role in ("adjudicator", "admin")
    if kind == "adjudication" and not adjudicates:
        raise PermissionDenied(
            f"{user} is a reviewer; only adjudicators and admins adjudicate",
            hint=f"ask an admin to give {user} the adjudicator role",
        )
    if kind == "review":
        return ["review"]
    if kind == "adjudication":
        return ["adjudication"]
    return ["adjudication", "review"] if adjudicates else ["review"]


def priority(task: NewTask) -> float:
    """Lower comes first: the given priority, else the confidence."""
    if task.priority is not None:
        return task.priority
    # An item without a confidence (e.g. the critic's output did not parse) goes first.
    return task.confidence if task.confidence is not None else 0.0


def match_label(label: str, labels: Sequence[str] | None) -> str | None:
    """`label` as the set spells it: itself, else the one label equal to it ignoring case
    (a pairwise queue's `A` for a draft's `a`); None when the set has no such label. Without a
    set every label matches as it is. Labels are matched this one way everywhere."""
    if labels is None or label in labels:
        return label
    folded = [known for known in labels if known.casefold() == label.casefold()]
    return folded[0] if len(folded) == 1 else None


def in_label_set(queue: str, label: str, labels: Sequence[str] | None, what: str = "label") -> str:
    """`match_label`, or a QueueError naming the queue's label set."""
    found = match_label(label, labels)
    if found is None:
        assert labels is not None
        raise QueueError(
            f"{what} {label!r} is not one of queue {queue!r}'s labels ({', '.join(labels)})",
            hint=suggest(label, labels) or f"use one of: {', '.join(labels)}",
        )
    return found


@dataclass(frozen=True)
class Rules:
    """What `decide` needs to know about the queue and the item to check a decision."""

    queue: str
    labels: Sequence[str] | None
    blind: bool
    item_id: str
    draft_label: str | None
    answer: str = "label"
    """What the decision settles: a label, or the draft's revision text (see `NewTask.answer`)."""
    has_revision: bool = True
    """For a revision: the draft has one to accept (a failed draft has none to keep)."""


def blind_for(queue_blind: bool, task_blind: bool | None) -> bool:
    """An item's blindness: its own, pinned when the queue's changed after it was first claimed
    (`Store.edit_queue`), else the queue's."""
    return queue_blind if task_blind is None else task_blind


def require_pick(queue: str, item: str, blind: bool, action: str, pick: str | None) -> None:
    """Refuse accept and edit on a blind review claim whose reviewer has not picked yet.

    Accept and edit are told apart by the draft's label, and `answer` checks them against it,
    so either one before the pick would answer against the hidden draft. Reject and escalate
    do not depend on the draft and may come without a pick.

    Args:
        blind: the claim is a review claim in a blind queue.
        pick: the label recorded on the claim by `Store.pick`, or None.
    """
    if blind and pick is None and action in ("accept", "edit"):
        # One message for both: which of the two a guess was sent as can depend on the draft.
        raise QueueError(
            f"queue {queue!r} is blind: pick your own label for item {item!r} first, "
            "then confirm it",
            hint="pick a label (the number keys; Store.pick), then accept with that label",
        )


def answer(
    rules: Rules,
    kind: ClaimKind,
    action: str,
    label: str | None,
    edit: Mapping[str, Any] | None,
) -> str | None:
    """Check a decision; returns the label it stands for (None for reject and escalate)."""
    item = rules.item_id
    if action not in ACTIONS:
        raise QueueError(
            f"unknown action {action!r}",
            hint=suggest(action, ACTIONS) or f"use one of: {', '.join(ACTIONS)}",
        )
    if edit is not None:
        if action != "edit":
            raise QueueError(f"{action} takes no edited fields", hint="use action 'edit'")
        try:
            canonical(dict(edit))
        except (TypeError, ValueError) as exc:
            raise QueueError(f"the edited fields must be a JSON object: {exc}") from exc
    if action in ("reject", "escalate"):
        if action == "escalate" and kind == "adjudication":
            raise QueueError(
                "an adjudicator decides, and cannot escalate",
                hint="accept the critic's label, edit it, or reject the item",
            )
        if label is not None:
            raise QueueError(
                f"{action} takes no label (got {label!r})", hint="put your reasoning in the note"
            )
        return None
    if rules.answer == "revision":
        _check_revision(rules, action, label, edit)
        return None
    blind = rules.blind and kind == "review"
    draft = rules.draft_label
    if blind and label is None:
        raise QueueError(
            f"queue {rules.queue!r} is blind: give your own label for item {item!r}",
            hint="decide with accept or edit and label=...",
        )
    if action == "accept" and not blind:
        if draft is None:
            raise QueueError(
                f"item {item!r} has no critic label to accept",
                hint="use edit with a label, or reject the item",
            )
        if label is not None and label != draft:
            raise QueueError(
                f"accept keeps the critic's label {draft!r}, not {label!r}",
                hint="to change the label, use action 'edit'",
            )
    if action == "edit" and label is None and edit is None:
        raise QueueError(
            f"edit needs a corrected label or edited fields for item {item!r}",
            hint="pass label=... and/or edit={...}, or accept the draft as it is",
        )
    chosen = label if label is not None else draft
    if chosen is None:
        raise QueueError(f"item {item!r} has no critic label; edit needs label=...")
    return in_label_set(rules.queue, chosen, rules.labels)


def _check_revision(
    rules: Rules, action: str, label: str | None, edit: Mapping[str, Any] | None
) -> None:
    """A revision task settles the draft's revision text, not a label: accept keeps it, edit
    replaces it with `edit["revision"]`."""
    item = rules.item_id
    if label is not None:
        raise QueueError(
            f"item {item!r} is a revision: {action} takes no label (got {label!r})",
            hint="accept the revision as it is, edit it with edit={'revision': ...}, or reject",
        )
    if action == "accept" and not rules.has_revision:
        raise QueueError(
            f"item {item!r} has no revision to accept (drafting it failed)",
            hint="write one with edit={'revision': ...}, or reject the item",
        )
    if action == "edit":
        text = (edit or {}).get("revision")
        if not isinstance(text, str) or not text.strip():
            raise QueueError(
                f"edit of revision item {item!r} needs the edited text",
                hint="pass edit={'revision': 'the corrected reply'}, or accept the revision",
            )
    return None


def same_answer(
    decision: Decision,
    action: str,
    label: str | None,
    edit: Mapping[str, Any] | None,
    labels: Sequence[str] | None,
) -> bool:
    """Whether a decision `Store.decide` returned is the answer just sent (a retry of the same
    submit) rather than an earlier, different one made with the same claim token, which stands:
    the caller must then say that the new answer was not saved.

    Args:
        label: as sent; None means the critic's (accept) or the decision's own (an edit of
            other fields). Matched to the queue's `labels` as the store matches it.
    """
    return (
        decision.action == action
        and (label is None or match_label(label, labels) == decision.label)
        and canonical(decision.edit) == canonical(None if edit is None else dict(edit))
    )


def canonical(value: Any) -> str:
    """JSON text that is equal for equal values, whatever the key order."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def final(
    label: str | None, rejected: bool, edit: Mapping[str, Any] | None, source: Source | None
) -> dict[str, Any]:
    """The task columns of a settled item."""
    return {
        "state": "done",
        "final_label": None if rejected else label,
        "final_source": source,
        "final_edit": None if edit is None else dict(edit),
        "rejected": rejected,
    }


def settle(reviews: Sequence[Mapping[Any, Any]]) -> dict[str, Any]:
    """A complete round of reviews: settled as `human` if all gave the same answer (label,
    rejection and edited fields alike), else sent to adjudication. An escalation always is."""
    answers = {
        (REJECTED if r["action"] == "reject" else r["label"], canonical(r["edit"])) for r in reviews
    }
    if len(answers) > 1 or any(r["action"] == "escalate" for r in reviews):
        return {"state": "adjudication"}
    first = reviews[0]
    return final(first["label"], first["action"] == "reject", first["edit"], "human")


GAP_PREFIX = "[constitution gap] "
"""Note prefix of an escalation that flags a gap in the constitution (the review page's key)."""

GAP_NOTE = re.compile(
    r"^\s*\[constitution gap\]|#(?:constitution[-_]?)?gap\b|^\s*(?:constitution[ -])?gap\s*:",
    re.I,
)
"""A note that flags a constitution gap: the review page's `[constitution gap] ` prefix (its
"flag a gap" key escalates with it), `#gap` or `#constitution-gap` anywhere, or `gap:` first.
One rule for every count of gaps: the queue dashboard and `critic constitution stats`."""


def is_gap_note(note: str | None) -> bool:
    """Whether a reviewer's note flags a gap in the constitution (see `GAP_NOTE`)."""
    return bool(note and GAP_NOTE.search(note))


def rating(kind: str, action: str, label: str | None) -> str | None:
    """A review decision as a rating for agreement statistics; None if it is not one."""
    if kind != "review" or action == "escalate":
        return None
    return REJECTED if action == "reject" else label
