"""The one read behind reviewer quality and the label model, and the calls built on it.

`read` takes everything `raters.assess` and `labelmodel.fit` need from one queue in one read
transaction: every decision (with its item's critic label and whether it was imported), the
adjudicated outcomes, the withdrawals, and for a non-blind queue the blind baseline from blind
queues of the same constitution. The figures are computed from it by the pure modules.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from sqlalchemy import ColumnElement, Connection, and_, case, func, select

from .errors import QueueError
from .labelmodel import ItemPosterior, LabelModel, fit
from .models import REJECTED
from .raters import (
    Baseline,
    FlagRules,
    Judgment,
    QueueEvidence,
    RaterReport,
    assess,
    latest_ratings,
)
from .rules import rating
from .schema import claims, decisions, events, queues, tasks, users

if TYPE_CHECKING:
    from .store import Store

CRITIC = "critic"
"""The rater name the critic's draft label takes with `critics_as_raters`."""
IMPORTED = "imported"
"""The `end_reason` of the claim behind an imported decision (see `importing`)."""


def _constitution() -> ColumnElement[str]:
    # The draft's constitution hash (critic puts it there when it routes an item), as text on
    # both databases: JSON_EXTRACT on SQLite, ->> on PostgreSQL.
    hash_text: ColumnElement[str] = tasks.c.draft["constitution"].as_string()
    return hash_text


def read(store: Store, queue: str) -> QueueEvidence:
    """Everything reviewer quality needs from `queue`, in one read transaction."""
    with store._read() as conn:
        q = store._queue_row(conn, queue)
        rows = conn.execute(
            select(
                tasks.c.item_id,
                users.c.name,
                decisions.c.kind,
                decisions.c.action,
                decisions.c.label,
                decisions.c.seconds,
                tasks.c.draft_label,
                (decisions.c.round == tasks.c.round).label("latest"),
                claims.c.end_reason,
            )
            .join(tasks, tasks.c.id == decisions.c.task_id)
            .join(users, users.c.id == decisions.c.user_id)
            .join(claims, claims.c.id == decisions.c.claim_id)
            .where(tasks.c.queue_id == q["id"])
            .order_by(decisions.c.id)
        ).all()
        settled = conn.execute(
            select(tasks.c.item_id, tasks.c.final_label, tasks.c.rejected).where(
                tasks.c.queue_id == q["id"],
                tasks.c.state == "done",
                tasks.c.final_source == "adjudicated",
            )
        ).all()
        withdrawn = conn.execute(
            select(events.c.actor, func.count())
            .where(events.c.queue_id == q["id"], events.c.kind == "withdrawn")
            .group_by(events.c.actor)
        ).all()
        blind_baseline = None if q["blind"] else _blind_baseline(conn, q["id"])
    judgments = tuple(
        Judgment(
            item_id=r.item_id,
            reviewer=r.name,
            kind=r.kind,
            rating=rating("review", r.action, r.label),
            critic_label=r.draft_label,
            seconds=None if r.end_reason == IMPORTED else r.seconds,
            latest=bool(r.latest),
        )
        for r in rows
    )
    return QueueEvidence(
        queue=q["name"],
        blind=q["blind"],
        labels=None if q["labels"] is None else tuple(q["labels"]),
        judgments=judgments,
        adjudicated={
            r.item_id: REJECTED if r.rejected else r.final_label
            for r in settled
            if r.rejected or r.final_label is not None
        },
        withdrawn={actor: count for actor, count in withdrawn if actor is not None},
        blind_baseline=blind_baseline,
    )


def _blind_baseline(conn: Connection, queue_id: int) -> Baseline | None:
    """How often reviewers of blind queues gave the critic's label, on items drafted under a
    constitution this queue's items were drafted under too."""
    constitution = _constitution()
    ours = (
        select(constitution)
        .where(tasks.c.queue_id == queue_id, constitution.is_not(None))
        .distinct()
        .scalar_subquery()
    )
    hits, n = conn.execute(
        select(
            func.coalesce(
                func.sum(case((decisions.c.label == tasks.c.draft_label, 1), else_=0)), 0
            ),
            func.count(),
        )
        .select_from(decisions)
        .join(tasks, tasks.c.id == decisions.c.task_id)
        .join(queues, queues.c.id == tasks.c.queue_id)
        .where(
            and_(
                queues.c.blind,
                queues.c.id != queue_id,
                decisions.c.kind == "review",
                decisions.c.action != "escalate",
                tasks.c.draft_label.is_not(None),
                constitution.in_(ours),
            )
        )
    ).one()
    return Baseline("blind queues, same constitution", n, hits / n) if n else None


def rater_report(
    store: Store,
    queue: str,
    *,
    gold: Mapping[str, str] | None = None,
    rules: FlagRules = FlagRules(),
) -> RaterReport:
    """Per reviewer of `queue`: decisions, gold accuracy, κ with peers, agreement with
    adjudicated outcomes, timing, critic-match rate, undo rate and flags (see `raters`).
    `gold`: known answers; default the queue's gold items (`Store.gold_labels`)."""
    if gold is None:
        gold = store.gold_labels(queue)
    return assess(read(store, queue), gold=gold, rules=rules)


def model_ratings(
    evidence: QueueEvidence, *, critics_as_raters: bool = False
) -> dict[str, dict[str, str]]:
    """The ratings the label model is fitted on: the latest round's reviews, and with
    `critics_as_raters` the critic's draft label as rater `critic` on each item they cover."""
    ratings = latest_ratings(evidence.judgments)
    if not critics_as_raters:
        return ratings
    if any(CRITIC in unit for unit in ratings.values()):
        raise QueueError(
            f"queue {evidence.queue!r} has a reviewer named {CRITIC!r}, the name the critic takes "
            "as a rater",
            hint="leave out --critics-as-raters, or rename that user",
        )
    critic = {j.item_id: j.critic_label for j in evidence.judgments}
    for item, unit in ratings.items():
        label = critic.get(item)
        if label is not None:
            unit[CRITIC] = label
    return ratings


def label_model(
    store: Store,
    queue: str,
    *,
    gold: Mapping[str, str] | None = None,
    critics_as_raters: bool = False,
) -> LabelModel | None:
    """The Dawid–Skene model of `queue`'s latest-round reviews; None when nothing is rated yet.

    Args:
        gold: known answers, held fixed as anchors; default the queue's gold items.
        critics_as_raters: the critic's draft label joins as one more rater, `critic`.
    """
    if gold is None:
        gold = store.gold_labels(queue)
    evidence = read(store, queue)
    ratings = model_ratings(evidence, critics_as_raters=critics_as_raters)
    if not ratings:
        return None
    return fit(ratings, gold=gold, classes=evidence.labels)


def label_model_outcomes(
    store: Store,
    queue: str,
    *,
    gold: Mapping[str, str] | None = None,
    critics_as_raters: bool = False,
) -> dict[str, ItemPosterior]:
    """`{item_id: the label model's posterior}` for every item of `queue` with a review in its
    latest round: the label, its probability, and whether it departs from the majority vote.
    Gold items are left out: they never ship."""
    model = label_model(store, queue, gold=gold, critics_as_raters=critics_as_raters)
    if model is None:
        return {}
    return {item: fitted for item, fitted in model.items.items() if not fitted.gold}
