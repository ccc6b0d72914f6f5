"""The read side of the queue store: tasks, decisions, history, outcomes, ratings, stats.

Nothing here writes; every method is one read transaction.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence

from sqlalchemy import (
    ColumnElement,
    Connection,
    RowMapping,
    and_,
    bindparam,
    case,
    func,
    or_,
    select,
)

from . import statements as st
from .agreement import AgreementReport, item_agreement, report
from .database import StoreBase
from .models import (
    ACTIONS,
    REJECTED,
    Decision,
    DecisionLine,
    Event,
    OriginOutcome,
    Outcome,
    QueueStats,
    Task,
    TaskLine,
    TaskState,
)
from .rows import decision_of, task_of
from .rules import rating
from .schema import claims, decisions, events, queues, tasks, users

#: Origins per `IN (...)` list: well under SQLite's bound-parameter limit.
_IN_CHUNK = 500

# `outcomes_for`'s two lookups, built once (an export runs them for every batch of items). Only
# the columns an outcome needs: not the item and draft JSON, which would be decoded per task.
_OUTCOME_TASKS = (
    select(tasks.c.id, tasks.c.origin, tasks.c.item_id, tasks.c.state, tasks.c.answer,
           tasks.c.final_label, tasks.c.final_source, tasks.c.final_edit, tasks.c.rejected,
           tasks.c.draft_label, tasks.c.updated_at, queues.c.name.label("queue_name"))
    .join(queues, queues.c.id == tasks.c.queue_id)
    .where(tasks.c.origin.in_(bindparam("origins", expanding=True)))
    .order_by(queues.c.name)
)  # fmt: skip
_OUTCOME_DECISIONS = (
    select(decisions.c.task_id, decisions.c.kind, decisions.c.action, decisions.c.label,
           users.c.name.label("reviewer"))
    .join(tasks, and_(tasks.c.id == decisions.c.task_id, tasks.c.round == decisions.c.round))
    .join(users, users.c.id == decisions.c.user_id)
    .where(decisions.c.task_id.in_(bindparam("task_ids", expanding=True)))
    .order_by(decisions.c.id)
)  # fmt: skip


class Reports(StoreBase):
    """What the queues hold and how the reviewers agree."""

    def task(self, queue: str, item_id: str) -> Task:
        """One queued item, with its state and (once decided) final label."""
        with self._read() as conn:
            return task_of(queue, self._task_row(conn, self._queue_row(conn, queue), item_id))

    def tasks(self, queue: str, *, state: TaskState | None = None) -> list[Task]:
        """A queue's items in priority order, optionally only those in one state."""
        with self._read() as conn:
            q = self._queue_row(conn, queue)
            query = select(tasks).where(tasks.c.queue_id == q["id"])
            if state is not None:
                query = query.where(tasks.c.state == state)
            rows = conn.execute(query.order_by(tasks.c.priority, tasks.c.id)).mappings()
            return [task_of(queue, row) for row in rows]

    def position(self, queue: str, item_id: str) -> int:
        """How many pending items come before this one in priority order (held or waiting).

        0 for an item the queue does not have. Cheap while the item is near the front of the
        queue, as a claimed item is: a row-value comparison walks the (queue, state, priority,
        id) index only up to the item.
        """
        with self._read() as conn:
            q = self._queue_row(conn, queue)
            key = conn.execute(st.ORDER_KEY, {"queue_id": q["id"], "item_id": item_id}).first()
            if key is None:
                return 0
            params = {"queue_id": q["id"], "priority": key.priority, "task_id": key.id}
            count: int = conn.execute(st.POSITION, params).scalar_one()
            return count

    def pending_count(self, queue: str) -> int:
        """Pending items in a queue: one index scan, lighter than `stats`."""
        with self._read() as conn:
            q = self._queue_row(conn, queue)
            if self.dialect == "postgresql":
                # Counting a large queue in parallel takes every core from the requests beside
                # it for a number that may be a few seconds late (the review header's).
                conn.exec_driver_sql("SET LOCAL max_parallel_workers_per_gather = 0")
            count: int = conn.execute(
                select(func.count()).where(tasks.c.queue_id == q["id"], tasks.c.state == "pending")
            ).scalar_one()
            return count

    def task_lines(self, queue: str) -> list[TaskLine]:
        """Every task of a queue without the item and draft columns, for dashboards."""
        with self._read() as conn:
            q = self._queue_row(conn, queue)
            rows = conn.execute(
                select(
                    tasks.c.item_id,
                    tasks.c.state,
                    tasks.c.draft_label,
                    tasks.c.principle_ids,
                    tasks.c.created_at,
                    tasks.c.updated_at,
                    tasks.c.blind,
                ).where(tasks.c.queue_id == q["id"])
            ).all()
        return [TaskLine(r[0], r[1], r[2], tuple(r[3] or ()), r[4], r[5], r[6]) for r in rows]

    def decision_lines(self, queue: str) -> list[DecisionLine]:
        """Every decision of a queue, oldest first, without the edited fields."""
        with self._read() as conn:
            q = self._queue_row(conn, queue)
            rows = conn.execute(
                select(
                    tasks.c.item_id,
                    users.c.name,
                    decisions.c.kind,
                    decisions.c.action,
                    decisions.c.label,
                    decisions.c.edit,
                    decisions.c.note,
                    decisions.c.seconds,
                    decisions.c.round,
                    decisions.c.created_at,
                )
                .join(tasks, tasks.c.id == decisions.c.task_id)
                .join(users, users.c.id == decisions.c.user_id)
                .where(tasks.c.queue_id == q["id"])
                .order_by(decisions.c.id)
            ).all()
        # JSON columns store None as JSON null, so whether a decision edited is read in Python.
        return [
            DecisionLine(r[0], r[1], r[2], r[3], r[4], r[5] is not None, r[6], r[7], r[8], r[9])
            for r in rows
        ]

    def _decisions(self, conn: Connection, *where: ColumnElement[bool]) -> list[Decision]:
        return [decision_of(row) for row in conn.execute(st.DECISIONS.where(*where)).mappings()]

    def decisions(self, queue: str, item_id: str | None = None) -> list[Decision]:
        """Every decision ever made in a queue (or on one item), oldest first, all rounds."""
        with self._read() as conn:
            q = self._queue_row(conn, queue)
            where = [tasks.c.queue_id == q["id"]]
            if item_id is not None:
                where.append(tasks.c.id == self._task_row(conn, q, item_id)["id"])
            return self._decisions(conn, *where)

    def history(self, queue: str, item_id: str) -> list[Event]:
        """The append-only event log of one item, oldest first."""
        with self._read() as conn:
            q = self._queue_row(conn, queue)
            task = self._task_row(conn, q, item_id)
            rows = conn.execute(
                select(events).where(events.c.task_id == task["id"]).order_by(events.c.id)
            ).mappings()
            return [
                Event(
                    id=row["id"],
                    queue=queue,
                    item_id=item_id,
                    actor=row["actor"],
                    at=row["at"],
                    kind=row["kind"],
                    before=row["before"],
                    after=row["after"],
                )
                for row in rows
            ]

    def _round_decisions(self, conn: Connection, q: RowMapping) -> dict[int, list[RowMapping]]:
        rows = conn.execute(
            select(decisions, users.c.name.label("reviewer"))
            .join(
                tasks, and_(tasks.c.id == decisions.c.task_id, tasks.c.round == decisions.c.round)
            )
            .join(users, users.c.id == decisions.c.user_id)
            .where(tasks.c.queue_id == q["id"])
            .order_by(decisions.c.id)
        ).mappings()
        by_task: defaultdict[int, list[RowMapping]] = defaultdict(list)
        for row in rows:
            by_task[row["task_id"]].append(row)
        return by_task

    def outcomes(self, queue: str) -> list[Outcome]:
        """What ships for every item of a queue: decided items carry the human or adjudicated
        label, the others the critic's, with reviewer count and agreement (for export merging)."""
        with self._read() as conn:
            q = self._queue_row(conn, queue)
            by_task = self._round_decisions(conn, q)
            rows = conn.execute(
                select(tasks).where(tasks.c.queue_id == q["id"]).order_by(tasks.c.id)
            ).mappings()
            result = []
            for row in rows:
                round_decisions = by_task.get(row["id"], [])
                done = row["state"] == "done"
                result.append(
                    Outcome(
                        item_id=row["item_id"],
                        state=row["state"],
                        label=row["final_label"] if done else row["draft_label"],
                        source=row["final_source"] if done else "critic",
                        rejected=row["rejected"],
                        edit=row["final_edit"] if done else None,
                        critic_label=row["draft_label"],
                        reviewers=len({d["user_id"] for d in round_decisions}),
                        agreement=item_agreement(
                            [
                                value
                                for d in round_decisions
                                if (value := rating(d["kind"], d["action"], d["label"])) is not None
                            ]
                        ),
                    )
                )
            return result

    def outcomes_for(self, origins: Sequence[str]) -> dict[str, list[OriginOutcome]]:
        """The tasks of these origins in every queue, with their settled answer, reviewers and
        agreement: `{origin: [one per queue holding it]}`, in queue-name order.

        One indexed lookup per chunk of origins (and one for their current rounds' decisions),
        so a caller merging decisions into a stream of items reads only that batch's tasks.
        """
        wanted = list(dict.fromkeys(origins))
        found: dict[str, list[OriginOutcome]] = {}
        with self._read() as conn:
            for start in range(0, len(wanted), _IN_CHUNK):
                chunk = wanted[start : start + _IN_CHUNK]
                rows = conn.execute(_OUTCOME_TASKS, {"origins": chunk}).mappings().all()
                if not rows:
                    continue
                decided: defaultdict[int, list[RowMapping]] = defaultdict(list)
                task_ids = [r["id"] for r in rows]
                for d in conn.execute(_OUTCOME_DECISIONS, {"task_ids": task_ids}).mappings():
                    decided[d["task_id"]].append(d)
                for row in rows:
                    done = row["state"] == "done"
                    ones = decided.get(row["id"], [])
                    found.setdefault(row["origin"], []).append(
                        OriginOutcome(
                            origin=row["origin"],
                            queue=row["queue_name"],
                            item_id=row["item_id"],
                            state=row["state"],
                            answer=row["answer"],
                            label=row["final_label"] if done else None,
                            source=row["final_source"] if done else None,
                            rejected=bool(row["rejected"]) if done else False,
                            edit=row["final_edit"] if done else None,
                            critic_label=row["draft_label"],
                            reviewers=tuple(dict.fromkeys(d["reviewer"] for d in ones)),
                            agreement=item_agreement(
                                [
                                    v
                                    for d in ones
                                    if (v := rating(d["kind"], d["action"], d["label"])) is not None
                                ]
                            ),
                            settled_at=row["updated_at"] if done else None,
                        )
                    )
        return found

    def origins_in(self, queue: str, item_ids: Sequence[str]) -> dict[str, str | None]:
        """`{item_id: origin}` for those of `item_ids` the queue holds (through its unique key)."""
        found: dict[str, str | None] = {}
        wanted = list(dict.fromkeys(item_ids))
        with self._read() as conn:
            q = self._queue_row(conn, queue)
            for start in range(0, len(wanted), _IN_CHUNK):
                rows = conn.execute(
                    select(tasks.c.item_id, tasks.c.origin).where(
                        tasks.c.queue_id == q["id"],
                        tasks.c.item_id.in_(wanted[start : start + _IN_CHUNK]),
                    )
                )
                found.update({r[0]: r[1] for r in rows})
        return found

    def ratings(self, queue: str, *, principle: str | None = None) -> dict[str, dict[str, str]]:
        """Reviewers' labels in the current round, `{item_id: {reviewer: label}}`.

        A rejection counts as the label `REJECTED`; escalations and adjudications are left out.

        Args:
            principle: only items that cite this principle id.
        """
        with self._read() as conn:
            return self._ratings(conn, self._queue_row(conn, queue), principle)

    def _ratings(
        self, conn: Connection, q: RowMapping, principle: str | None
    ) -> dict[str, dict[str, str]]:
        rows = conn.execute(
            select(
                tasks.c.item_id,
                tasks.c.principle_ids,
                users.c.name,
                decisions.c.action,
                decisions.c.label,
                decisions.c.kind,
            )
            .join(
                tasks, and_(tasks.c.id == decisions.c.task_id, tasks.c.round == decisions.c.round)
            )
            .join(users, users.c.id == decisions.c.user_id)
            .where(tasks.c.queue_id == q["id"], decisions.c.kind == "review")
            .order_by(decisions.c.id)
        ).mappings()
        result: defaultdict[str, dict[str, str]] = defaultdict(dict)
        for row in rows:
            value = rating(row["kind"], row["action"], row["label"])
            if value is not None and (principle is None or principle in row["principle_ids"]):
                result[row["item_id"]][row["name"]] = value
        return dict(result)

    def agreement(self, queue: str) -> AgreementReport:
        """Agreement in a queue: overall, per cited principle, per reviewer, critic vs human."""
        with self._read() as conn:
            q = self._queue_row(conn, queue)
            ratings = self._ratings(conn, q, None)
            rows = conn.execute(
                select(
                    tasks.c.item_id,
                    tasks.c.principle_ids,
                    tasks.c.draft_label,
                    tasks.c.state,
                    tasks.c.final_label,
                    tasks.c.rejected,
                ).where(tasks.c.queue_id == q["id"])
            ).all()
        final = {
            row.item_id: REJECTED if row.rejected else row.final_label
            for row in rows
            if row.state == "done"
        }
        return report(
            ratings,
            groups={row.item_id: row.principle_ids for row in rows},
            critic={row.item_id: row.draft_label for row in rows},
            final=final,
            order=q["labels"] if q["ordinal"] else None,
        )

    def stats(self, queue: str) -> QueueStats:
        """Counts per state, live claims, decisions per action, override and escalation rates."""
        with self._read() as conn:
            q = self._queue_row(conn, queue)
            now = self._now()
            states: Counter[str] = Counter(
                dict(
                    conn.execute(
                        select(tasks.c.state, func.count())
                        .where(tasks.c.queue_id == q["id"])
                        .group_by(tasks.c.state)
                    ).all()
                )
            )
            # Only a settled item is rejected: counting among those reads the (queue, state)
            # index, where counting the queue's rejected items would read every row of it.
            rejected = conn.execute(
                select(func.count()).where(
                    tasks.c.queue_id == q["id"], tasks.c.state == "done", tasks.c.rejected
                )
            ).scalar_one()
            claimed = conn.execute(
                select(func.count())
                .select_from(claims)
                .join(tasks, tasks.c.id == claims.c.task_id)
                .where(
                    tasks.c.queue_id == q["id"],
                    claims.c.ended_at.is_(None),
                    claims.c.expires_at > now,
                )
            ).scalar_one()
            overridden = or_(
                decisions.c.action == "reject",
                decisions.c.label.is_distinct_from(tasks.c.draft_label),
            )
            per_action = conn.execute(
                select(
                    decisions.c.kind,
                    decisions.c.action,
                    func.count(),
                    func.sum(case((overridden, 1), else_=0)),
                    func.sum(decisions.c.seconds),
                )
                .join(tasks, tasks.c.id == decisions.c.task_id)
                .where(tasks.c.queue_id == q["id"])
                .group_by(decisions.c.kind, decisions.c.action)
            ).all()
        actions: Counter[str] = Counter()
        adjudications = overrides = 0
        seconds = 0.0
        for kind, action, count, overridden_count, spent in per_action:
            if kind == "adjudication":
                adjudications += count
                continue
            actions[action] += count
            seconds += spent or 0.0
            if action != "escalate":
                overrides += overridden_count or 0
        reviews = sum(actions.values())
        judged = reviews - actions["escalate"]
        return QueueStats(
            queue=queue,
            tasks=sum(states.values()),
            pending=states["pending"],
            adjudication=states["adjudication"],
            done=states["done"],
            rejected=rejected,
            claimed=claimed,
            reviews=reviews,
            adjudications=adjudications,
            actions={a: actions[a] for a in ACTIONS},
            override_rate=overrides / judged if judged else None,
            escalation_rate=actions["escalate"] / reviews if reviews else None,
            mean_seconds=seconds / reviews if reviews else None,
        )
