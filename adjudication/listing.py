"""The item list of a queue (search, filters, orders, keyset pages) and an item's precedents.

Both read the full-text indexes that `search` keeps current. Who asks matters. Reviewers review
independently, so on an item still open for review the list shows them nothing of other
reviewers' answers: it does not search its notes or filter it by who decided it. In a blind
queue they must also learn nothing from the critic's draft about an open item, so the list
searches only its item text, and does not filter, order or show it by anything the draft decided
(label, reason, confidence, queue order). Adjudicators and admins see everything.

Precedents of an open item of a blind queue appear only once the viewer has picked a label for
it, as the draft does.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import (
    ColumnElement,
    Connection,
    Float,
    Integer,
    RowMapping,
    Select,
    and_,
    bindparam,
    exists,
    false,
    func,
    literal,
    select,
    text,
    true,
    tuple_,
)

from . import search
from . import statements as st
from .database import StoreBase
from .errors import QueueError
from .models import TaskState
from .rules import blind_for
from .schema import UTCDateTime, decisions, events, queue_members, queues, tasks, users
from .text import Segment

Hide = Literal["nothing", "notes", "draft"]
"""What of an open item a viewer may not see: nothing; others' notes (and who decided); the
draft too (which implies the notes)."""
Sort = Literal["queue", "confident", "newest", "oldest", "changed", "item", "relevance"]
SORTS: dict[str, str] = {
    "relevance": "best match (with a search)",
    "queue": "queue order (least confident first)",
    "confident": "most confident first",
    "newest": "newest first",
    "oldest": "oldest first",
    "changed": "last changed first",
    "item": "item id",
}
# Orders that follow the critic's confidence: a reviewer of a blind queue cannot use them.
_DRAFT_SORTS = frozenset({"queue", "confident"})
STATES = ("pending", "adjudication", "done", "rejected")
PAGE = 50
PRECEDENT_TERMS = 8
"""How many of an item's words a precedent search looks for (the rarest among decided items)."""
DF_SECONDS = 600.0
COUNT_CAP = 1_000
"""The list counts matches up to this many ("1,000+" beyond): counting a million rows on every
page would cost more than the page."""


@dataclass(frozen=True)
class Filters:
    """What the item list shows: a search and filters, all optional, and an order.

    Args:
        text: words, "phrases", OR and -excluded, over item text, drafts and notes.
        state: pending, adjudication, done or rejected (done and rejected).
        reason: why the critic sent the item (its route reason).
        label: the critic's draft label.
        decided: the label it was decided as.
        confidence_min: confidence at least this.
        confidence_max: confidence at most this.
        reviewer: someone who decided it, in any round.
        assignee: the reviewer it was handed to (bulk reassign).
        date_field: which date `since` and `until` bound: "created" (enqueued) or "changed".
        since: on or after this day (UTC).
        until: on or before this day (UTC).
        exemplar: only items marked as exemplar candidates.
        sort: one of `SORTS`; "relevance" needs a search.
    """

    text: str = ""
    state: str | None = None
    reason: str | None = None
    label: str | None = None
    decided: str | None = None
    confidence_min: float | None = None
    confidence_max: float | None = None
    reviewer: str | None = None
    assignee: str | None = None
    date_field: Literal["created", "changed"] = "changed"
    since: date | None = None
    until: date | None = None
    exemplar: bool = False
    sort: str = "queue"

    def check(self) -> None:
        """Refuse values the list cannot use, naming the field."""
        if self.state is not None and self.state not in STATES:
            raise QueueError(
                f"state: {self.state!r} is not a state", hint=f"use one of: {', '.join(STATES)}"
            )
        if self.sort not in SORTS:
            raise QueueError(
                f"sort: {self.sort!r} is not an order", hint=f"use one of: {', '.join(SORTS)}"
            )
        for name in ("confidence_min", "confidence_max"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise QueueError(f"{name}: {value} is not between 0 and 1")


@dataclass(frozen=True)
class ListedItem:
    """One row of the item list. `hidden`: what came from the draft is withheld from this
    viewer (its fields are None)."""

    item_id: str
    state: TaskState
    rejected: bool
    draft_label: str | None
    confidence: float | None
    route_reason: str | None
    final_label: str | None
    final_source: str | None
    round: int
    reviews: int
    assignee: str | None
    exemplar: bool
    created_at: datetime
    updated_at: datetime
    snippet: tuple[Segment, ...]
    hidden: bool


@dataclass(frozen=True)
class ItemPage:
    items: tuple[ListedItem, ...]
    next: str | None
    """The cursor of the next page (`items(after=...)`), None on the last."""
    matches: int
    """How many items match, counted up to `COUNT_CAP` (more when equal to it)."""
    sort: str
    """The order used (a blind queue's reviewer gets "newest" for orders they cannot use)."""
    restricted: bool
    """The viewer is a reviewer of a blind queue: open items show only their item text."""
    hide: Hide = "nothing"


@dataclass(frozen=True)
class Precedent:
    """A decided item like the one in hand: what was decided, by whom, and why."""

    queue: str
    item_id: str
    label: str | None
    rejected: bool
    source: str | None
    deciders: tuple[str, ...]
    notes: tuple[str, ...]
    decided_at: datetime
    snippet: tuple[Segment, ...]
    edit: dict[str, Any] | None = field(default=None)


def _encode(sort: str, value: Any, task_id: int) -> str:
    shown = value.isoformat() if isinstance(value, datetime) else value
    raw = json.dumps([sort, shown, task_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode(cursor: str, sort: str) -> tuple[Any, int]:
    stale = QueueError(
        "this page link does not fit the list any more",
        hint="start again from the first page",
    )
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        kind, value, task_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, TypeError, binascii.Error) as exc:
        raise stale from exc
    if kind != sort or not isinstance(task_id, int):
        raise stale
    if sort == "changed":
        try:
            return datetime.fromisoformat(str(value)), task_id
        except ValueError as exc:
            raise stale from exc
    if sort == "item" and not isinstance(value, str):
        raise stale
    if sort in ("queue", "confident", "relevance") and not isinstance(value, int | float):
        raise stale
    return value, task_id


def _day(moment: date) -> datetime:
    return datetime(moment.year, moment.month, moment.day, tzinfo=UTC)


class Listing(StoreBase):
    """The item list and precedents."""

    def _viewer(self, conn: Connection, q: RowMapping, viewer: str) -> RowMapping:
        u = self._user_row(conn, viewer)
        self._require_member(conn, q, u)
        return u

    def items(
        self,
        queue: str,
        filters: Filters | None = None,
        *,
        viewer: str,
        after: str | None = None,
        limit: int = PAGE,
    ) -> ItemPage:
        """One page of a queue's items, as `viewer` may see them.

        Args:
            filters: the search, filters and order (default: everything, in queue order).
            viewer: who is looking; a member of the queue or an admin.
            after: the cursor of the page before (`ItemPage.next`); pages never use OFFSET.
            limit: items per page.
        """
        filters = filters or Filters()
        filters.check()
        with self._read() as conn:
            q = self._queue_row(conn, queue)
            u = self._viewer(conn, q, viewer)
            hide: Hide = "nothing"
            if u["role"] == "reviewer":
                # (Open items' notes are not in the index at all: see `search.refresh`.)
                blind = q["blind"] or self._keeps_blindness(conn, q)
                hide = "draft" if blind else "notes"
            terms = search.parse(filters.text)
            sort = filters.sort
            if sort == "relevance" and not terms:
                sort = "queue"
            if hide == "draft" and sort in _DRAFT_SORTS:
                sort = "newest"
            ranked = self._ranked(conn, q, filters, terms, hide, sort, after, limit)
            if ranked is None:
                query, score = self._select(conn, q, filters, terms, hide)
                column, descending = self._order(sort, score)
                page = query.with_only_columns(tasks.c.id, column.label("sort_value"))
                if after:
                    value, last_id = _decode(after, sort)
                    bound = literal(value, UTCDateTime()) if sort == "changed" else literal(value)
                    pair, cut = tuple_(column, tasks.c.id), tuple_(bound, literal(last_id))
                    page = page.where(pair < cut if descending else pair > cut)
                ordered = (column.desc(), tasks.c.id.desc()) if descending else (column, tasks.c.id)
                # The page's ids first, then their rows: sorting many matches with their item
                # and draft on board would cost more than the search itself.
                keys: Sequence[Any] = conn.execute(page.order_by(*ordered).limit(limit + 1)).all()
                matches = self._count_matches(conn, q, filters, terms, hide)
            else:
                keys, matches = ranked
            wanted = [k.id for k in keys]
            found = {
                r["id"]: r
                for r in conn.execute(
                    self._select(conn, q, filters, search.Terms(()), hide)[0].where(
                        tasks.c.id.in_(wanted)
                    )
                ).mappings()
            }
            rows = [{**found[k.id], "sort_value": k.sort_value} for k in keys if k.id in found]
            notes = self._notes(conn, [r["id"] for r in rows[:limit]]) if terms else {}
        hidden_fields = q["hidden_fields"]
        listed = tuple(self._listed(r, terms, hide, notes, hidden_fields) for r in rows[:limit])
        cursor = None
        if len(rows) > limit:
            last = rows[limit - 1]
            cursor = _encode(sort, last["sort_value"], last["id"])
        return ItemPage(listed, cursor, matches, sort, hide == "draft", hide)

    def _ranked(
        self,
        conn: Connection,
        q: RowMapping,
        filters: Filters,
        terms: search.Terms,
        hide: Hide,
        sort: str,
        after: str | None,
        limit: int,
    ) -> tuple[Sequence[Any], int] | None:
        """On PostgreSQL, a search of a queue by best match and nothing else: one page's ids and
        scores, and how many items match, read from the full-text index's rows alone in one
        statement; None for any other list. Ranking reads every match's vector anyway, so
        counting them there costs nothing more, where joining each to its task to rank and
        again to count cost several times as much (at 1M items, a search matching 20,000 of
        them: about 100 ms, now 30)."""
        plain = Filters(text=filters.text, sort=filters.sort, date_field=filters.date_field)
        if (
            self.dialect != "postgresql"
            or not terms
            or sort != "relevance"
            or hide == "draft"
            or filters != plain
        ):
            return None
        tsquery, words = search.pg_query(terms)
        params: dict[str, Any] = {f"w{i}": w for i, w in enumerate(words)}
        params |= {"qid": q["id"], "n": limit + 1}
        cut = ""
        if after:
            value, last_id = _decode(after, sort)
            cut = "WHERE (sort_value, id) > (:after_value, :after_id) "
            params |= {"after_value": float(value), "after_id": last_id}
        # The count is taken over every match, before the page's cut.
        sql = (
            "SELECT id, sort_value, matches FROM (SELECT task_id AS id, "
            f"-ts_rank(everything, {tsquery})::float8 AS sort_value, count(*) OVER () AS matches "
            f"FROM task_search WHERE queue_id = :qid AND everything @@ {tsquery}) hits "
            f"{cut}ORDER BY sort_value, id LIMIT :n"
        )
        keys = conn.execute(text(sql), params).all()
        if not keys:  # nothing matches, or nothing after the cut: count the matches then
            return keys, self._count_matches(conn, q, filters, terms, hide) if after else 0
        return keys, min(int(keys[0].matches), COUNT_CAP)

    def matching_ids(
        self,
        conn: Connection,
        q: RowMapping,
        filters: Filters,
        *,
        cap: int,
    ) -> list[int]:
        """The task ids of every item matching `filters` (for an adjudicator: nothing hidden),
        in id order, read a keyset page at a time; at most `cap`."""
        filters.check()
        terms = search.parse(filters.text)
        query, _ = self._select(conn, q, filters, terms, "nothing")
        found: list[int] = []
        last = 0
        while len(found) < cap:
            page = query.with_only_columns(tasks.c.id).where(tasks.c.id > last)
            ids = list(conn.execute(page.order_by(tasks.c.id).limit(5000)).scalars())
            if not ids:
                break
            found += ids
            last = ids[-1]
        return found[:cap]

    # -- building the query -----------------------------------------------------------------

    @staticmethod
    def _keeps_blindness(conn: Connection, q: RowMapping) -> bool:
        """Whether an item still open for review keeps the blindness it was claimed under
        after the queue's blindness was turned off (`Store.edit_queue` pins it): a reviewer's
        list then hides every open item's draft, as in a blind queue. Queue-level events are
        few (the task index holds them under a null task); the tasks are looked at only in a
        queue whose blindness was turned off with items pinned."""
        edits = conn.execute(
            select(events.c.before, events.c.after).where(
                events.c.task_id.is_(None),
                events.c.queue_id == q["id"],
                events.c.kind == "queue_edited",
            )
        ).all()
        if not any(
            (before or {}).get("blind") is True and (after or {}).get("items_keeping_blindness")
            for before, after in edits
        ):
            return False
        pinned = exists().where(
            tasks.c.queue_id == q["id"], tasks.c.state == "pending", tasks.c.blind.is_(True)
        )
        return bool(conn.execute(select(pinned)).scalar())

    def _hits(self, terms: search.Terms, hide: Hide, *, ranked: bool = True) -> Any:
        """The matching task ids with a score (lower is better; 0 unless `ranked`), as a
        subquery. An open item matches for a viewer who may not see some of it only in the
        parts they may see."""
        if self.dialect == "postgresql":
            tsquery, words = search.pg_query(terms)
            params = {f"w{i}": w for i, w in enumerate(words)}
            if hide == "draft":
                seen = "ts_filter(ts.everything, '{a}')"
                vector = f"CASE WHEN t.state = 'pending' THEN {seen} ELSE ts.everything END"
                score = f"-ts_rank({vector}, {tsquery})::float8" if ranked else "0.0"
                sql = (
                    f"SELECT ts.task_id AS tid, {score} AS score "
                    "FROM task_search ts JOIN tasks t ON t.id = ts.task_id "
                    f"WHERE ts.everything @@ {tsquery} "
                    f"AND (t.state <> 'pending' OR {seen} @@ {tsquery})"
                )
            else:
                score = f"-ts_rank(everything, {tsquery})::float8" if ranked else "0.0"
                sql = (
                    f"SELECT task_id AS tid, {score} AS score "
                    f"FROM task_search WHERE everything @@ {tsquery}"
                )
        else:
            rank = "rank" if ranked else "0.0"
            one = f"SELECT rowid AS tid, {rank} AS score FROM task_search WHERE task_search MATCH"
            params = {"m": search.fts5_query(terms)}
            sql = f"{one} :m"
            if hide == "draft":
                params["mo"] = search.fts5_query(terms, "item")
                sql = (
                    f"SELECT h.tid, h.score FROM ({one} :m) h JOIN tasks t ON t.id = h.tid "
                    f"WHERE t.state <> 'pending' UNION ALL SELECT h.tid, h.score FROM ({one} :mo) "
                    "h JOIN tasks t ON t.id = h.tid WHERE t.state = 'pending'"
                )
            # LIMIT -1 (none) keeps SQLite from flattening the subquery into the join, where
            # it would run the full-text match once per task of the queue instead of once.
            sql += " LIMIT -1"
        return text(sql).bindparams(**params).columns(tid=Integer, score=Float).subquery("hits")

    def _select(
        self,
        conn: Connection,
        q: RowMapping,
        filters: Filters,
        terms: search.Terms,
        hide: Hide,
        *,
        ranked: bool = True,
    ) -> tuple[Select[Any], ColumnElement[Any] | None]:
        assignee = users.alias("assignee")
        score: ColumnElement[Any] | None = None
        source: Any = tasks.outerjoin(assignee, assignee.c.id == tasks.c.assignee)
        if terms:
            hits = self._hits(terms, hide, ranked=ranked)
            source = source.join(hits, hits.c.tid == tasks.c.id)
            score = hits.c.score
        query = (
            select(
                tasks.c.id,
                tasks.c.item_id,
                tasks.c.item,
                tasks.c.draft,
                tasks.c.state,
                tasks.c.rejected,
                tasks.c.draft_label,
                tasks.c.confidence,
                tasks.c.route_reason,
                tasks.c.final_label,
                tasks.c.final_source,
                tasks.c.round,
                tasks.c.reviews,
                tasks.c.exemplar,
                tasks.c.created_at,
                tasks.c.updated_at,
                assignee.c.name.label("assignee"),
            )
            .select_from(source)
            .where(tasks.c.queue_id == q["id"], *self._where(conn, filters, hide))
        )
        return query, score

    @staticmethod
    def _where(conn: Connection, f: Filters, hide: Hide) -> list[ColumnElement[bool]]:
        decided = tasks.c.state != "pending"
        seen = decided if hide == "draft" else true()  # what the draft decided
        others = decided if hide != "nothing" else true()  # who answered
        where: list[ColumnElement[bool]] = []
        if f.state == "rejected":
            where += [tasks.c.state == "done", tasks.c.rejected]
        elif f.state is not None:
            where.append(tasks.c.state == f.state)
        if f.reason:
            where += [tasks.c.route_reason == f.reason, seen]
        if f.label:
            where += [tasks.c.draft_label == f.label, seen]
        if f.confidence_min is not None:
            where += [tasks.c.confidence >= f.confidence_min, seen]
        if f.confidence_max is not None:
            where += [tasks.c.confidence <= f.confidence_max, seen]
        if f.decided:
            where += [tasks.c.final_label == f.decided, tasks.c.state == "done"]
        if f.reviewer:
            uid = conn.execute(select(users.c.id).where(users.c.name == f.reviewer)).scalar()
            where.append(
                and_(
                    exists().where(decisions.c.task_id == tasks.c.id, decisions.c.user_id == uid),
                    others,
                )
                if uid is not None
                else false()
            )
        if f.assignee:
            uid = conn.execute(select(users.c.id).where(users.c.name == f.assignee)).scalar()
            where.append(tasks.c.assignee == uid if uid is not None else false())
        when = tasks.c.created_at if f.date_field == "created" else tasks.c.updated_at
        if f.since is not None:
            where.append(when >= literal(_day(f.since), UTCDateTime()))
        if f.until is not None:
            where.append(when < literal(_day(f.until) + timedelta(days=1), UTCDateTime()))
        if f.exemplar:
            where.append(tasks.c.exemplar)
        return where

    @staticmethod
    def _order(sort: str, score: ColumnElement[Any] | None) -> tuple[ColumnElement[Any], bool]:
        if sort == "relevance" and score is not None:
            return score, False
        column: ColumnElement[Any] = {
            "queue": tasks.c.priority,
            "confident": tasks.c.priority,
            "newest": tasks.c.id,
            "oldest": tasks.c.id,
            "changed": tasks.c.updated_at,
            "item": tasks.c.item_id,
        }[sort]
        return column, sort in ("confident", "newest", "changed")

    def _count_matches(
        self,
        conn: Connection,
        q: RowMapping,
        filters: Filters,
        terms: search.Terms,
        hide: Hide,
    ) -> int:
        query, _ = self._select(conn, q, filters, terms, hide, ranked=False)
        capped = query.with_only_columns(tasks.c.id).limit(COUNT_CAP).subquery()
        count: int = conn.execute(select(func.count()).select_from(capped)).scalar_one()
        return count

    @staticmethod
    def _notes(conn: Connection, ids: Sequence[int]) -> dict[int, list[str]]:
        found: dict[int, list[str]] = {}
        if ids:
            rows = conn.execute(
                select(decisions.c.task_id, decisions.c.note)
                .where(decisions.c.task_id.in_(ids), decisions.c.note.is_not(None))
                .order_by(decisions.c.id)
            )
            for task_id, note in rows:
                found.setdefault(task_id, []).append(note)
        return found

    @staticmethod
    def _listed(
        row: Mapping[str, Any],
        terms: search.Terms,
        hide: Hide,
        notes: Mapping[int, list[str]],
        hidden_fields: Sequence[str] | None,
    ) -> ListedItem:
        pending = row["state"] == "pending"
        hidden = hide == "draft" and pending
        texts = [search.item_text(row["item"], hidden_fields)]
        if not hidden:
            texts.append(search.draft_text(row["draft"]))
        if hide == "nothing" or not pending:
            texts.append("\n".join(notes.get(row["id"], [])))
        return ListedItem(
            item_id=row["item_id"],
            state=row["state"],
            rejected=bool(row["rejected"]),
            draft_label=None if hidden else row["draft_label"],
            confidence=None if hidden else row["confidence"],
            route_reason=None if hidden else row["route_reason"],
            final_label=row["final_label"],
            final_source=row["final_source"],
            round=row["round"],
            reviews=row["reviews"],
            assignee=row["assignee"],
            exemplar=bool(row["exemplar"]),
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            snippet=search.snippet(texts, terms.words),
            hidden=hidden,
        )

    # -- precedents ---------------------------------------------------------------------------

    def precedents(
        self,
        queue: str,
        item_id: str,
        *,
        k: int = 5,
        scope: Literal["queue", "constitution"] = "queue",
        viewer: str | None = None,
    ) -> list[Precedent] | None:
        """The `k` decided items most like this one (by its item text, ranked by the full-text
        engine), most similar first, in the same queue or drafted under the same constitution
        (in the queues `viewer` works in).

        Returns:
            None when `viewer` may not see them yet: the item is open for review in a blind
            queue and they have not picked a label for it in this round.
        """
        if scope not in ("queue", "constitution"):
            raise QueueError(f"scope: {scope!r}", hint="use 'queue' or 'constitution'")
        with self._read() as conn:
            q = self._queue_row(conn, queue)
            task = self._task_row(conn, q, item_id)
            allowed: list[int] | None = None
            if viewer is not None:
                u = self._viewer(conn, q, viewer)
                if blind_for(q["blind"], task["blind"]) and task["state"] == "pending":
                    params = {"task_id": task["id"], "user_id": u["id"], "round": task["round"]}
                    if conn.execute(st.EARLIER_PICK, params).scalar() is None:
                        return None
                if u["role"] != "admin":
                    allowed = list(
                        conn.execute(
                            select(queue_members.c.queue_id).where(
                                queue_members.c.user_id == u["id"]
                            )
                        ).scalars()
                    )
            constitution = search.constitution_of(task["draft"])
            if scope == "constitution" and constitution is None:
                scope = "queue"  # the item names no constitution: its queue is all there is
            words = self._rarest(
                conn, search.key_words(search.item_text(task["item"], q["hidden_fields"]))
            )
            if not words:
                return []
            ranked = self._similar(conn, q, task, words, k, scope, constitution, allowed)
            return self._precedents_of(conn, ranked)

    def _rarest(self, conn: Connection, words: Sequence[str]) -> list[str]:
        """The `PRECEDENT_TERMS` of `words` that the fewest decided items contain (but some do),
        as "more like this" searches choose terms: a rare shared word says more about
        similarity, and its short posting list keeps the ranking cheap however many items
        are decided. Counts are cached for `DF_SECONDS`; they change slowly."""
        cache: dict[str, tuple[float, int]] = self.__dict__.setdefault("_doc_freq", {})
        now = time.monotonic()
        if len(cache) > 100_000:
            cache.clear()
        if self.dialect == "postgresql":
            count = text(
                f"SELECT count(*) FROM precedent_search "
                f"WHERE item @@ phraseto_tsquery('{search.CONFIG}', :w)"
            )
        else:
            count = text("SELECT count(*) FROM precedent_search WHERE precedent_search MATCH :w")
        freq: dict[str, int] = {}
        for word in words:
            hit = cache.get(word)
            if hit is None or now - hit[0] > DF_SECONDS:
                quoted = word if self.dialect == "postgresql" else f'"{word}"'
                hit = (now, int(conn.execute(count, {"w": quoted}).scalar_one()))
                cache[word] = hit
            freq[word] = hit[1]
        found = sorted((w for w in words if freq[w] > 0), key=lambda w: (freq[w], w))
        return found[:PRECEDENT_TERMS]

    def _similar(
        self,
        conn: Connection,
        q: RowMapping,
        task: RowMapping,
        words: Sequence[str],
        k: int,
        scope: str,
        constitution: str | None,
        allowed: Sequence[int] | None,
    ) -> list[int]:
        terms = search.Terms(tuple(((w,),) for w in words))
        if self.dialect == "postgresql":
            tsquery, values = search.pg_query(terms)
            where = "queue_id = :qid" if scope == "queue" else "constitution = :c"
            sql = (
                f"SELECT task_id FROM precedent_search WHERE item @@ {tsquery} AND {where} "
                f"AND task_id <> :me ORDER BY ts_rank(item, {tsquery}) DESC, task_id LIMIT :k"
            )
            params: dict[str, Any] = {f"w{i}": w for i, w in enumerate(values)}
        else:
            where = "t.queue_id = :qid" if scope == "queue" else "h.constitution = :c"
            sql = (
                "SELECT h.tid FROM (SELECT rowid AS tid, rank AS score, constitution FROM "
                "precedent_search WHERE precedent_search MATCH :m LIMIT -1) h "
                f"JOIN tasks t ON t.id = h.tid WHERE {where} AND h.tid <> :me "
                "ORDER BY h.score, h.tid LIMIT :k"
            )
            params = {"m": search.fts5_query(terms)}
        if allowed is not None:
            column = "queue_id" if self.dialect == "postgresql" else "t.queue_id"
            sql = sql.replace(" ORDER BY", f" AND {column} IN :allowed ORDER BY")
        params |= {"me": task["id"], "k": max(1, k)}
        params |= {"qid": q["id"]} if scope == "queue" else {"c": constitution}
        statement = text(sql).bindparams(**params)
        if allowed is not None:
            statement = statement.bindparams(bindparam("allowed", list(allowed), expanding=True))
        if self.dialect == "postgresql":
            # The planner prices a tsquery match per row far below its cost, and would rather
            # test every decided item than read the few the GIN index names for rare words.
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        return list(conn.execute(statement).scalars())

    def _precedents_of(self, conn: Connection, ranked: Sequence[int]) -> list[Precedent]:
        if not ranked:
            return []
        rows = {
            r["id"]: r
            for r in conn.execute(
                select(tasks, queues.c.name.label("queue_name"), queues.c.hidden_fields)
                .join(queues, queues.c.id == tasks.c.queue_id)
                .where(tasks.c.id.in_(ranked))
            ).mappings()
        }
        deciders: dict[int, list[str]] = {}
        notes: dict[int, list[str]] = {}
        for d in conn.execute(
            select(decisions.c.task_id, decisions.c.round, decisions.c.kind, decisions.c.note,
                   users.c.name)
            .join(users, users.c.id == decisions.c.user_id)
            .where(decisions.c.task_id.in_(ranked))
            .order_by(decisions.c.id)
        ).mappings():  # fmt: skip
            row = rows.get(d["task_id"])
            # Who settled it: the adjudicator of an adjudicated item, else the current round's
            # reviewers.
            if row is None or d["round"] != row["round"]:
                continue
            if row["final_source"] == "adjudicated" and d["kind"] != "adjudication":
                continue
            names = deciders.setdefault(d["task_id"], [])
            if d["name"] not in names:
                names.append(d["name"])
            if d["note"]:
                notes.setdefault(d["task_id"], []).append(d["note"])
        found = []
        for task_id in ranked:
            row = rows.get(task_id)
            if row is None:
                continue
            found.append(
                Precedent(
                    queue=row["queue_name"],
                    item_id=row["item_id"],
                    label=None if row["rejected"] else row["final_label"],
                    rejected=bool(row["rejected"]),
                    source=row["final_source"],
                    deciders=tuple(deciders.get(task_id, ())),
                    notes=tuple(notes.get(task_id, ())),
                    decided_at=row["updated_at"],
                    snippet=search.snippet(
                        [search.item_text(row["item"], row["hidden_fields"])], (), width=160
                    ),
                    edit=row["final_edit"],
                )
            )
        return found


__all__ = [
    "COUNT_CAP",
    "PAGE",
    "SORTS",
    "STATES",
    "Filters",
    "ItemPage",
    "ListedItem",
    "Listing",
    "Precedent",
]
