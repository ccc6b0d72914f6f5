"""Prebuilt SQL for the review hot path: claim, heartbeat, release, skip, decide.

Built once, with named bind parameters, so a call only binds values: building SQLAlchemy Core
statements anew on every call cost more CPU than the database spent running them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Select,
    and_,
    bindparam,
    exists,
    func,
    insert,
    or_,
    select,
    tuple_,
    update,
)

from .models import ClaimKind
from .schema import (
    UTCDateTime,
    app_secrets,
    claims,
    decisions,
    events,
    queue_members,
    queues,
    tasks,
    users,
)

NOW = bindparam("now", type_=UTCDateTime())
# A claim that is neither ended nor expired at :now.
_LIVE = (claims.c.ended_at.is_(None), claims.c.expires_at > NOW)


def _claimable(kind: ClaimKind) -> ColumnElement[bool]:
    """Tasks of :queue_id that :user_id may claim now as `kind`."""
    user_id: BindParameter[int] = bindparam("user_id")
    mine = exists().where(
        decisions.c.task_id == tasks.c.id,
        decisions.c.user_id == user_id,
        decisions.c.round == tasks.c.round,
        decisions.c.kind == kind,
    )
    skipped = exists().where(
        claims.c.task_id == tasks.c.id,
        claims.c.user_id == user_id,
        claims.c.round == tasks.c.round,
        claims.c.kind == kind,
        claims.c.end_reason == "skipped",
    )
    live = (
        select(func.count())
        .select_from(claims)
        .where(claims.c.task_id == tasks.c.id, claims.c.kind == kind, *_LIVE)
        .scalar_subquery()
    )
    if kind == "review":
        state, room = "pending", tasks.c.reviews + live < bindparam("overlap")
        # An item handed to one reviewer (bulk reassign) waits for them until they decide it.
        assignee_decided = exists().where(
            decisions.c.task_id == tasks.c.id,
            decisions.c.user_id == tasks.c.assignee,
            decisions.c.round == tasks.c.round,
            decisions.c.kind == "review",
        )
        room = and_(
            room,
            or_(tasks.c.assignee.is_(None), tasks.c.assignee == user_id, assignee_decided),
        )
    else:
        state, room = "adjudication", live < 1
    return and_(
        tasks.c.queue_id == bindparam("queue_id"),
        tasks.c.state == state,
        ~mine,
        ~skipped,
        room,
        tasks.c.gold_label.is_(None),  # gold items are served by GOLD_PICK, to each reviewer
    )


def _gold_claimable() -> ColumnElement[bool]:
    """Gold items of :queue_id that :user_id has not answered (in any round) nor skipped, and
    does not hold: each reviewer sees each gold item once, whatever the overlap."""
    user_id: BindParameter[int] = bindparam("user_id")
    answered = exists().where(decisions.c.task_id == tasks.c.id, decisions.c.user_id == user_id)
    skipped = exists().where(
        claims.c.task_id == tasks.c.id,
        claims.c.user_id == user_id,
        claims.c.end_reason == "skipped",
    )
    return and_(
        tasks.c.queue_id == bindparam("queue_id"),
        tasks.c.gold_label.is_not(None),
        ~answered,
        ~skipped,
    )


# A gold item :user_id has not answered yet, in a fixed order, not yet :tried.
GOLD_PICK = (
    select(tasks.c.id)
    .where(_gold_claimable(), tasks.c.id.not_in(bindparam("tried", expanding=True)))
    .order_by(tasks.c.id)
    .limit(1)
    .with_for_update(skip_locked=True, key_share=True, of=tasks)
)
GOLD_RECHECK = select(tasks).where(tasks.c.id == bindparam("task_id"), _gold_claimable())
# How many review decisions :user_id has made in :queue_id, and how many on gold items.
REVIEWS_BY_USER = (
    select(func.count(), func.count(tasks.c.gold_label))
    .select_from(decisions.join(tasks, tasks.c.id == decisions.c.task_id))
    .where(
        decisions.c.user_id == bindparam("user_id"),
        tasks.c.queue_id == bindparam("queue_id"),
        decisions.c.kind == "review",
    )
)


# The most urgent claimable task not yet :tried, locked unless another transaction holds it.
PICK = {
    kind: select(tasks.c.id)
    .where(_claimable(kind), tasks.c.id.not_in(bindparam("tried", expanding=True)))
    .order_by(tasks.c.priority, tasks.c.id)
    .limit(1)
    .with_for_update(skip_locked=True, key_share=True, of=tasks)
    for kind in ("review", "adjudication")
}
# The most urgent task handed to :user_id by a bulk reassign: they get those first.
PICK_ASSIGNED = (
    select(tasks.c.id)
    .where(
        tasks.c.assignee == bindparam("user_id"),
        _claimable("review"),
        tasks.c.id.not_in(bindparam("tried", expanding=True)),
    )
    .order_by(tasks.c.priority, tasks.c.id)
    .limit(1)
    .with_for_update(skip_locked=True, key_share=True, of=tasks)
)
# The same test for one :task_id, run again once its lock is held.
RECHECK = {
    kind: select(tasks).where(tasks.c.id == bindparam("task_id"), _claimable(kind))
    for kind in ("review", "adjudication")
}

QUEUE_BY_NAME = select(queues).where(queues.c.name == bindparam("name"))
QUEUE_BY_ID = select(queues).where(queues.c.id == bindparam("queue_id"))
APP_SECRET = select(app_secrets.c.value).where(app_secrets.c.name == bindparam("name"))
USER_BY_NAME = select(users).where(users.c.name == bindparam("name"))
USER_NAME = select(users.c.name).where(users.c.id == bindparam("user_id"))
USER_BY_NAME_LOCKED = USER_BY_NAME.with_for_update(key_share=True)
# FOR NO KEY UPDATE, not FOR UPDATE: it does not block inserts whose foreign keys point here.
TASK_LOCKED = (
    select(tasks).where(tasks.c.id == bindparam("task_id")).with_for_update(key_share=True)
)

# The live claim :user_id already holds in :queue_id, of one of :kinds.
HELD = (
    select(claims)
    .join(tasks, tasks.c.id == claims.c.task_id)
    .where(
        claims.c.user_id == bindparam("user_id"),
        tasks.c.queue_id == bindparam("queue_id"),
        claims.c.kind.in_(bindparam("kinds", expanding=True)),
        *_LIVE,
    )
    .order_by(claims.c.id)
    .limit(1)
)
# The task and queue of the claim holding :token (a queue's settings never change).
TOKEN_QUEUE = (
    select(claims.c.task_id, queues)
    .join(tasks, tasks.c.id == claims.c.task_id)
    .join(queues, queues.c.id == tasks.c.queue_id)
    .where(claims.c.token == bindparam("token"))
)
# The claim itself, with its holder's name and the decision made on it, if any.
CLAIM_BY_TOKEN = (
    select(claims, users.c.name.label("reviewer"), decisions.c.id.label("decision_id"))
    .join(users, users.c.id == claims.c.user_id)
    .outerjoin(decisions, decisions.c.claim_id == claims.c.id)
    .where(claims.c.token == bindparam("token"))
)
EXPIRED = (
    select(claims.c.id, claims.c.kind, claims.c.expires_at, users.c.name)
    .join(users, users.c.id == claims.c.user_id)
    .where(
        claims.c.task_id == bindparam("task_id"),
        claims.c.ended_at.is_(None),
        claims.c.expires_at <= NOW,
    )
)
# A blind pick the user already made on this task in this round, on an earlier claim.
EARLIER_PICK = (
    select(claims.c.pick)
    .where(
        claims.c.task_id == bindparam("task_id"),
        claims.c.user_id == bindparam("user_id"),
        claims.c.round == bindparam("round"),
        claims.c.kind == "review",
        claims.c.pick.is_not(None),
    )
    .order_by(claims.c.id.desc())
    .limit(1)
)
INSERT_CLAIM = insert(claims).returning(claims.c.id)
RENEW_CLAIM = (
    update(claims)
    .where(claims.c.id == bindparam("claim_id"))
    .values(expires_at=bindparam("new_expiry", type_=UTCDateTime()))
)
END_CLAIMS = (
    update(claims)
    .where(claims.c.id.in_(bindparam("claim_ids", expanding=True)))
    .values(ended_at=NOW, end_reason=bindparam("reason"))
)

INSERT_DECISION = insert(decisions).returning(decisions.c.id)
INSERT_EVENT = insert(events)
SAVE_TASK = (
    update(tasks)
    .where(tasks.c.id == bindparam("task_id"))
    .values(
        state=bindparam("new_state"),
        round=bindparam("new_round"),
        reviews=bindparam("new_reviews"),
        final_label=bindparam("new_final_label"),
        final_source=bindparam("new_final_source"),
        final_edit=bindparam("new_final_edit", type_=tasks.c.final_edit.type),
        rejected=bindparam("new_rejected"),
        updated_at=NOW,
    )
)

# Decisions with the names a reader needs; add a where clause to choose which.
DECISIONS: Select[Any] = (
    select(decisions, queues.c.name.label("queue"), tasks.c.item_id, users.c.name.label("reviewer"))
    .join(tasks, tasks.c.id == decisions.c.task_id)
    .join(queues, queues.c.id == tasks.c.queue_id)
    .join(users, users.c.id == decisions.c.user_id)
    .order_by(decisions.c.id)
)
DECISION_OF_CLAIM = DECISIONS.where(decisions.c.claim_id == bindparam("claim_id"))
ROUND_REVIEWS = DECISIONS.where(
    decisions.c.task_id == bindparam("task_id"),
    decisions.c.round == bindparam("round"),
    decisions.c.kind == "review",
)

# Whether :user_id is a member of :queue_id.
MEMBER = select(queue_members.c.user_id).where(
    queue_members.c.queue_id == bindparam("queue_id"),
    queue_members.c.user_id == bindparam("user_id"),
)


# The newest decision :user_id made in :queue_id (the one "undo last" takes back).
def _newest_decision(*where: ColumnElement[bool]) -> Select[Any]:
    return DECISIONS.where(*where).order_by(None).order_by(decisions.c.id.desc()).limit(1)


LAST_DECISION = _newest_decision(
    decisions.c.user_id == bindparam("user_id"), tasks.c.queue_id == bindparam("queue_id")
)
# The queue named :queue with, on the same row, what decides whether user :user may work in it
# (one round trip for the membership check on every review page and submit).
QUEUE_FOR = (
    select(
        queues,
        users.c.id.label("user_id"),
        users.c.role.label("user_role"),
        queue_members.c.user_id.label("member"),
    )
    .select_from(
        queues.outerjoin(users, users.c.name == bindparam("user")).outerjoin(
            queue_members,
            and_(queue_members.c.queue_id == queues.c.id, queue_members.c.user_id == users.c.id),
        )
    )
    .where(queues.c.name == bindparam("queue"))
)
# LAST_DECISION by the queue's and the user's names, for the page that offers "undo".
LAST_DECISION_BY_NAME = _newest_decision(
    users.c.name == bindparam("user"), queues.c.name == bindparam("queue")
)
# Where item :item_id of queue :queue_id stands in claim order.
ORDER_KEY = select(tasks.c.priority, tasks.c.id).where(
    tasks.c.queue_id == bindparam("queue_id"), tasks.c.item_id == bindparam("item_id")
)
# How many pending tasks of :queue_id come before the order key (:priority, :task_id). The bound
# is a value, not a subquery, so PostgreSQL's planner sees how few rows it keeps and walks the
# (queue, state, priority, id) index only up to the item, in this process (no parallel workers).
POSITION = select(func.count()).where(
    tasks.c.queue_id == bindparam("queue_id"),
    tasks.c.state == "pending",
    tuple_(tasks.c.priority, tasks.c.id) < tuple_(bindparam("priority"), bindparam("task_id")),
)
# The first decision on :task_id made after decision :after (by anyone).
LATER_DECISION = (
    select(decisions.c.id, users.c.name)
    .join(users, users.c.id == decisions.c.user_id)
    .where(decisions.c.task_id == bindparam("task_id"), decisions.c.id > bindparam("after"))
    .order_by(decisions.c.id)
    .limit(1)
)
# Live claims on :task_id of one :kind, with their holders' names.
LIVE_ON_TASK = (
    select(claims.c.id, users.c.name)
    .join(users, users.c.id == claims.c.user_id)
    .where(claims.c.task_id == bindparam("task_id"), claims.c.kind == bindparam("kind"), *_LIVE)
)
# Every live claim :user_id holds in :queue_id.
LIVE_OF_USER = (
    select(claims.c.id, claims.c.task_id)
    .join(tasks, tasks.c.id == claims.c.task_id)
    .where(
        claims.c.user_id == bindparam("user_id"), tasks.c.queue_id == bindparam("queue_id"), *_LIVE
    )
)
