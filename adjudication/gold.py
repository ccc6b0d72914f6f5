"""Gold items: queued items whose answer is known, which measure the reviewers.

A gold item is a real queued item (its real critic draft included), marked with its known
answer. Every reviewer of the queue is served each gold item once, whatever the overlap, at about
the queue's `gold_rate` of their items (`Claims._gold_due`), and it looks like any other item:
the review screen shows it as an item waiting for its first review. Reviewers' answers on gold
items are scored, never settle the item, and never ship as labels: a gold item's decisions do not
advance it (`Store.decide`). In a blind queue the blind pick is what is scored.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy import select, update

from .database import StoreBase
from .errors import QueueError
from .models import GoldResult
from .rules import in_label_set, match_label
from .schema import decisions, queues, tasks, users

#: The highest gold rate a queue may have: most of a reviewer's work stays real items.
MAX_GOLD_RATE = 0.5


def check_gold_rate(rate: float) -> None:
    if not 0.0 <= rate <= MAX_GOLD_RATE:
        raise QueueError(
            f"gold rate must be between 0 and {MAX_GOLD_RATE}, not {rate}",
            hint="e.g. --gold-rate 0.05: about one item in twenty is gold",
        )


class Gold(StoreBase):
    """Marking gold items and scoring reviewers on them."""

    def set_gold_rate(self, queue: str, rate: float, *, by: str | None = None) -> None:
        """About this share of each reviewer's items are gold items (0 turns gold off)."""
        check_gold_rate(rate)
        with self._write() as conn:
            q = self._queue_row(conn, queue)
            conn.execute(update(queues).where(queues.c.id == q["id"]).values(gold_rate=rate))
            before, after = {"gold_rate": q["gold_rate"]}, {"gold_rate": rate}
            self._event(conn, "gold_rate_set", at=self._now(), actor=by, queue_id=q["id"],
                        before=before, after=after)  # fmt: skip

    def add_gold(self, queue: str, answers: Mapping[str, str], *, by: str | None = None) -> int:
        """Mark queued items as gold with their known answers (`{item_id: label}`); returns how
        many changed. Every item must be in the queue and every label in its label set."""
        with self._write() as conn:
            q = self._queue_row(conn, queue)
            now = self._now()
            rows = []
            for item_id, label in answers.items():
                task = self._task_row(conn, q, item_id, lock=True)
                spelled = in_label_set(queue, str(label), q["labels"], what=f"gold label of "
                                       f"item {item_id!r}")  # fmt: skip
                rows.append((task, spelled))
            changed = 0
            for task, spelled in rows:
                if task["gold_label"] == spelled:
                    continue
                conn.execute(update(tasks).where(tasks.c.id == task["id"])
                             .values(gold_label=spelled))  # fmt: skip
                self._event(conn, "gold_set", at=now, actor=by, queue_id=q["id"],
                            task_id=task["id"], before={"gold_label": task["gold_label"]},
                            after={"gold_label": spelled})  # fmt: skip
                changed += 1
            return changed

    def promote_gold(
        self, queue: str, item_ids: Sequence[str] | None = None, *, by: str | None = None
    ) -> int:
        """Turn adjudicated items into gold, their adjudicated label the known answer: the
        items named, or every adjudicated (not rejected) item not gold yet. Returns how many."""
        with self._read() as conn:
            q = self._queue_row(conn, queue)
            query = select(tasks.c.item_id, tasks.c.final_label).where(
                tasks.c.queue_id == q["id"], tasks.c.final_source == "adjudicated",
                tasks.c.rejected.is_(False), tasks.c.gold_label.is_(None),
            )  # fmt: skip
            if item_ids is not None:
                query = query.where(tasks.c.item_id.in_(list(item_ids)))
            found = {r[0]: r[1] for r in conn.execute(query) if r[1] is not None}
        missing = sorted(set(item_ids or ()) - set(found))
        if missing:
            raise QueueError(
                f"not adjudicated (or rejected, or gold already) in queue {queue!r}: "
                + ", ".join(repr(m) for m in missing[:10]),
                hint="only items an adjudicator settled with a label can become gold",
            )
        return self.add_gold(queue, found, by=by) if found else 0

    def gold_labels(self, queue: str) -> dict[str, str]:
        """`{item_id: known answer}` of the queue's gold items."""
        with self._read() as conn:
            q = self._queue_row(conn, queue)
            rows = conn.execute(
                select(tasks.c.item_id, tasks.c.gold_label).where(
                    tasks.c.queue_id == q["id"], tasks.c.gold_label.is_not(None)
                )
            )
            return {r[0]: r[1] for r in rows}

    def gold_results(self, queue: str) -> list[GoldResult]:
        """Every review decision on a gold item, scored against its known answer (labels
        matched as everywhere); a reject is a wrong answer. In decision order."""
        with self._read() as conn:
            q = self._queue_row(conn, queue)
            rows = conn.execute(
                select(tasks.c.item_id, tasks.c.gold_label, users.c.name, decisions.c.action,
                       decisions.c.label, decisions.c.created_at)
                .join(tasks, tasks.c.id == decisions.c.task_id)
                .join(users, users.c.id == decisions.c.user_id)
                .where(tasks.c.queue_id == q["id"], tasks.c.gold_label.is_not(None),
                       decisions.c.kind == "review", decisions.c.action != "escalate")
                .order_by(decisions.c.id)
            ).all()  # fmt: skip
        results = []
        for item_id, gold, reviewer, action, label, at in rows:
            answer = None if action == "reject" else label
            spelled = None if answer is None else (match_label(answer, q["labels"]) or answer)
            results.append(GoldResult(item_id, reviewer, answer, gold, spelled == gold, at))
        return results
