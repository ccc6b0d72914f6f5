"""The run store: runs, items, generations, drafts and constitution versions, via SQLAlchemy.

SQLite by default (WAL, a busy timeout), any SQLAlchemy URL otherwise. Every item's outcome is
written in a transaction together with its generations, so a killed run loses at most the items in
flight, and a rerun finds exactly the items that have no outcome yet.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from adjudication.database import sqlite_pragmas
from critic.constitution import Constitution
from critic.errors import StoreError
from critic.store.migrations import MIGRATIONS, SCHEMA_VERSION, migrate
from critic.store.rows import Outcome, RunInfo, dumps, now, run_info, verdict
from critic.store.schema import (
    constitutions,
    drafts,
    generations,
    items,
    metadata,
    policies,
    routes,
    runs,
    schema_versions,
)

DEFAULT_DB = "sqlite:///critic.db"

__all__ = [
    "DEFAULT_DB",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "Outcome",
    "RunInfo",
    "Store",
    "metadata",
    "now",
    "open_store",
    "schema_versions",
    "verdict",
]


#: Ids per `IN (...)` list: well under SQLite's bound-parameter limit.
_IN_CHUNK = 500

#: Rows fetched at a time when reading a whole run.
_YIELD_PER = 2000


# The statements of `Store.record`, built once: constructing them per call cost about as much
# CPU as running them (the labeling hot path writes every 64 items).
_PENDING = sa.select(items.c.item_id).where(
    items.c.run_id == sa.bindparam("run"),
    items.c.item_id.in_(sa.bindparam("ids", expanding=True)),
    items.c.status == "pending",
)
_PENDING_FOR_UPDATE = _PENDING.with_for_update()
_DELETE_DRAFTS = drafts.delete().where(
    drafts.c.run_id == sa.bindparam("run"),
    drafts.c.item_id.in_(sa.bindparam("ids", expanding=True)),
)
_UPDATE_PENDING = (
    items.update()
    .where(items.c.run_id == sa.bindparam("b_run"), items.c.item_id == sa.bindparam("b_item"),
           items.c.status == "pending")
    .values(status=sa.bindparam("b_status"), reason=sa.bindparam("b_reason"),
            detail=sa.bindparam("b_detail"), updated_at=sa.bindparam("b_stamp"),
            lease_owner=None, lease_until=None)
)  # fmt: skip
_TOUCH_RUN = (
    runs.update().where(runs.c.id == sa.bindparam("run")).values(updated_at=sa.bindparam("stamp"))
)


class _NotAllPending(Exception):
    """Some outcomes of a batch are for items no longer pending: redo it with a lookup."""


def _insert_ignore(conn: sa.Connection, table: sa.Table) -> Any:
    """`INSERT ... ON CONFLICT DO NOTHING` on SQLite and PostgreSQL."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table).on_conflict_do_nothing()
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table).on_conflict_do_nothing()


class Store:
    """A project's state in one database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @property
    def url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    def close(self) -> None:
        self.engine.dispose()

    # -- constitutions -------------------------------------------------------------------------
    def save_constitution(self, constitution: Constitution) -> str:
        """Store this constitution version (once) and return its hash."""
        digest = constitution.hash
        with self.engine.begin() as conn:
            found = conn.execute(
                sa.select(constitutions.c.hash).where(constitutions.c.hash == digest)
            ).first()
            if found is None:  # processes starting together may both get here
                conn.execute(
                    _insert_ignore(conn, constitutions).values(
                        hash=digest,
                        constitution_id=constitution.id,
                        version=constitution.version,
                        title=constitution.title,
                        content=constitution.canonical_json(),
                        first_used=now(),
                    )
                )
        return digest

    def constitution_content(self, digest: str) -> str | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(constitutions.c.content).where(constitutions.c.hash.startswith(digest))
            ).first()
        return None if row is None else str(row[0])

    # -- runs ----------------------------------------------------------------------------------
    def ensure_run(self, run: RunInfo) -> tuple[RunInfo, bool]:
        """The stored run with this key, or this one newly stored; and whether it is new."""
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(runs).where(runs.c.key == run.key)).mappings().first()
            if row is not None:
                return run_info(row), False
            # Processes starting the same run together may both get here: one inserts it.
            inserted = conn.execute(
                _insert_ignore(conn, runs).values(
                    id=run.id,
                    key=run.key,
                    task=run.task,
                    constitution_hash=run.constitution_hash,
                    template_hash=run.template_hash,
                    backend=run.backend,
                    model=run.model,
                    params=dumps(run.params),
                    input=run.input,
                    created_at=run.created_at,
                    updated_at=run.created_at,
                )
            )
            if inserted.rowcount != 1:
                row = conn.execute(sa.select(runs).where(runs.c.key == run.key)).mappings().one()
                return run_info(row), False
        return run, True

    def runs(self) -> list[RunInfo]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(runs).order_by(runs.c.created_at)).mappings().all()
        return [run_info(r) for r in rows]

    def run(self, run_id: str) -> RunInfo:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(runs).where(runs.c.id.startswith(run_id))).mappings().all()
        if len(row) != 1:
            known = ", ".join(r.id for r in self.runs()) or "none yet"
            raise StoreError(
                f"{self.url}: no single run matches '{run_id}'", hint=f"runs stored: {known}"
            )
        return run_info(row[0])

    # -- items ---------------------------------------------------------------------------------
    def add_items(
        self,
        run_id: str,
        records: Iterable[dict[str, Any]],
        *,
        lease_to: tuple[str, float] | None = None,
    ) -> set[str]:
        """Insert items not stored yet (by id); return the ids this call inserted.

        Each record has item_id, source, row (a dict or None) and optionally seq (its position in
        the input) and status/reason/detail (bad input rows arrive already failed). Inserting is
        idempotent (`ON CONFLICT DO NOTHING`), so processes sharing a run may add the same items:
        only one inserts each. `lease_to=(owner, ttl_s)` inserts the pending ones leased (see
        `claim`), in the same transaction.
        """
        records = list(records)
        if not records:
            return set()
        with self.engine.begin() as conn:
            unleased = {"lease_owner": None, "lease_until": None}
            lease: dict[str, Any] = unleased
            if lease_to is not None:
                clock = conn.execute(sa.select(_clock(conn))).scalar_one()
                lease = {"lease_owner": lease_to[0], "lease_until": clock + lease_to[1]}
            # No lookup first: `ON CONFLICT DO NOTHING ... RETURNING` says what was new, and
            # the engine sends only ids its own lookup did not find.
            existing: set[str] = set()
            seq = 0
            if any("seq" not in r for r in records):
                seq = conn.execute(
                    sa.select(sa.func.count()).select_from(items).where(items.c.run_id == run_id)
                ).scalar_one()
            stamp = now()
            fresh: list[dict[str, Any]] = []
            for record in records:
                if record["item_id"] in existing:
                    continue
                existing.add(record["item_id"])
                fresh.append(
                    {
                        "run_id": run_id,
                        "item_id": record["item_id"],
                        "seq": record.get("seq", seq + len(fresh)),
                        "source": record["source"],
                        "row": None if record.get("row") is None else dumps(record["row"]),
                        "status": record.get("status", "pending"),
                        "reason": record.get("reason"),
                        "detail": record.get("detail"),
                        "updated_at": stamp,
                        **(lease if record.get("status", "pending") == "pending" else unleased),
                    }
                )
            inserted: set[str] = set()
            insert = _insert_ignore(conn, items).returning(items.c.item_id)
            for start in range(0, len(fresh), 2000):
                inserted.update(conn.execute(insert, fresh[start : start + 2000]).scalars())
        return inserted

    def item_states(self, run_id: str, item_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        """`{item_id: (source, status)}` for those of `item_ids` stored in the run (via the key)."""
        with self.engine.connect() as conn:
            return self._stored(conn, run_id, item_ids)

    @staticmethod
    def _stored(
        conn: sa.Connection, run_id: str, item_ids: Sequence[str]
    ) -> dict[str, tuple[str, str]]:
        found: dict[str, tuple[str, str]] = {}
        ids = list(dict.fromkeys(item_ids))
        for start in range(0, len(ids), _IN_CHUNK):
            rows = conn.execute(
                sa.select(items.c.item_id, items.c.source, items.c.status).where(
                    items.c.run_id == run_id, items.c.item_id.in_(ids[start : start + _IN_CHUNK])
                )
            )
            found.update({r[0]: (r[1], r[2]) for r in rows})
        return found

    def item_ids(self, run_id: str, statuses: Sequence[str]) -> list[str]:
        with self.engine.connect() as conn:
            return list(
                conn.execute(
                    sa.select(items.c.item_id)
                    .where(items.c.run_id == run_id, items.c.status.in_(list(statuses)))
                    .order_by(items.c.seq)
                ).scalars()
            )

    def reset_failed(self, run_id: str) -> int:
        """Make failed items (other than unreadable input rows) pending again."""
        with self.engine.begin() as conn:
            result = conn.execute(
                items.update()
                .where(
                    items.c.run_id == run_id,
                    items.c.status == "failed",
                    items.c.reason != "invalid_input",
                )
                .values(status="pending", reason=None, detail=None, updated_at=now())
            )
        return int(result.rowcount or 0)

    def record(self, run_id: str, outcomes: Sequence[Outcome]) -> int:
        """Write outcomes with their generations in one transaction; return how many were new.

        Recording an item ends its lease (see `claim`). Only items still pending are written: an
        outcome that another process (a retried Ray task, a second worker on the run) already
        stored is dropped whole, generations included, so retried work never duplicates
        anything. The usual case, every item of the batch still pending, costs no extra query:
        the items are updated first, only where still pending, and when fewer rows changed than
        outcomes were given, that transaction is rolled back and the batch redone after a
        locking lookup of which items are still pending.
        """
        if not outcomes:
            return 0
        if self.engine.dialect.supports_sane_multi_rowcount:
            try:
                with self.engine.begin() as conn:
                    return self._write(conn, run_id, outcomes)
            except _NotAllPending:
                pass
        with self.engine.begin() as conn:
            # On PostgreSQL the rows stay locked until commit, so two writers of one item cannot
            # both see it pending.
            open_ids = self._pending_for_update(conn, run_id, [o.item_id for o in outcomes])
            first = {o.item_id: o for o in reversed(outcomes) if o.item_id in open_ids}
            outcomes = [o for o in outcomes if first.get(o.item_id) is o]
            return self._write(conn, run_id, outcomes, all_pending=False) if outcomes else 0

    @staticmethod
    def _write(
        conn: sa.Connection, run_id: str, outcomes: Sequence[Outcome], *, all_pending: bool = True
    ) -> int:
        """Write outcomes of pending items; with `all_pending`, raise `_NotAllPending` (for the
        caller to roll back) unless every one of them was still pending."""
        stamp = now()
        # One executemany, not one UPDATE per item: this is on the labeling hot path. In id order,
        # so that two writers of overlapping batches lock their rows in the same order.
        updated = conn.execute(
            _UPDATE_PENDING,
            [{"b_run": run_id, "b_item": o.item_id, "b_status": o.status,
              "b_reason": o.reason, "b_detail": o.detail, "b_stamp": stamp}
             for o in sorted(outcomes, key=lambda o: o.item_id)],
        ).rowcount  # fmt: skip
        if all_pending and updated != len(outcomes):
            raise _NotAllPending
        gen_rows = [
            {**g, "run_id": run_id, "item_id": o.item_id, "created_at": stamp}
            for o in outcomes
            for g in o.generations
        ]
        if gen_rows:
            conn.execute(generations.insert(), gen_rows)
        conn.execute(_DELETE_DRAFTS, {"run": run_id, "ids": [o.item_id for o in outcomes]})
        draft_rows = [
            {
                "run_id": run_id,
                "item_id": o.item_id,
                "label": o.label,
                "score": o.score,
                "rationale": o.rationale,
                "output": dumps(o.draft),
                "confidence": o.confidence,
                "components": None if o.components is None else dumps(o.components),
                "parse_attempts": o.parse_attempts,
                "created_at": stamp,
            }
            for o in outcomes
            if o.status == "drafted"
        ]
        if draft_rows:
            conn.execute(drafts.insert(), draft_rows)
        conn.execute(_TOUCH_RUN, {"run": run_id, "stamp": stamp})
        return len(outcomes)

    @staticmethod
    def _pending_for_update(conn: sa.Connection, run_id: str, item_ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        query = _PENDING_FOR_UPDATE if conn.dialect.name == "postgresql" else _PENDING
        for start in range(0, len(item_ids), _IN_CHUNK):
            chunk = list(item_ids[start : start + _IN_CHUNK])
            found.update(conn.execute(query, {"run": run_id, "ids": chunk}).scalars())
        return found

    # -- leases --------------------------------------------------------------------------------
    # Several processes share a run by leasing its pending items (`critic.leases` says when):
    # a lease is an owner and a time, on the database's clock so that the machines' clocks do
    # not matter. Claims skip rows another claim has locked (`FOR UPDATE SKIP LOCKED` on
    # PostgreSQL; SQLite runs one writer at a time), so two processes never lease one item.

    def claim(self, run_id: str, owner: str, item_ids: Sequence[str], ttl_s: float) -> set[str]:
        """Lease those of `item_ids` that are pending and not leased (or whose lease expired)
        to `owner` for `ttl_s` seconds; return the ids leased now."""
        got: set[str] = set()
        with self.engine.begin() as conn:
            clock = _clock(conn)
            for start in range(0, len(item_ids), _IN_CHUNK):
                free = sa.or_(items.c.lease_until.is_(None), items.c.lease_until < clock)
                chunk = list(item_ids[start : start + _IN_CHUNK])
                got.update(self._lease(conn, run_id, owner, ttl_s,
                                       items.c.item_id.in_(chunk), free))  # fmt: skip
        return got

    def claim_lapsed(
        self,
        run_id: str,
        owner: str,
        ttl_s: float,
        *,
        limit: int,
        dead_owners: Sequence[str] = (),
        below_seq: int | None = None,
    ) -> list[dict[str, Any]]:
        """Lease to `owner` up to `limit` pending items whose lease expired, was released or is
        held by one of `dead_owners`; return their stored records (item_id, source, row), in
        input order. Items never leased are not taken: they are some process's input still
        ahead of it. `below_seq` keeps to the first rows of the input (a `--limit`)."""
        with self.engine.begin() as conn:
            clock = _clock(conn)
            lapsed = items.c.lease_until < clock
            if dead_owners:
                lapsed = sa.or_(lapsed, items.c.lease_owner.in_(list(dead_owners)))
            ids = self._lease(
                conn, run_id, owner, ttl_s, lapsed, *_below(below_seq), limit=limit,
                returning=(items.c.seq, items.c.source, items.c.row),
            )  # fmt: skip
        rows = sorted(ids, key=lambda r: r[1])
        return [
            {"item_id": r[0], "source": r[2], "row": None if r[3] is None else json.loads(r[3])}
            for r in rows
        ]

    @staticmethod
    def _lease(
        conn: sa.Connection,
        run_id: str,
        owner: str,
        ttl_s: float,
        *where: sa.ColumnElement[bool],
        limit: int | None = None,
        returning: Sequence[sa.ColumnElement[Any]] = (),
    ) -> list[Any]:
        pick = sa.select(items.c.item_id).where(
            items.c.run_id == run_id, items.c.status == "pending", *where
        )
        if limit is not None:
            pick = pick.order_by(items.c.seq).limit(limit)
        if conn.dialect.name == "postgresql":
            pick = pick.with_for_update(skip_locked=True)
        # A materialized CTE: as a plain `IN (subquery)`, PostgreSQL may run the subquery once
        # per row, and with SKIP LOCKED and LIMIT each run picks other rows (more than `limit`).
        picked = pick.cte("picked").prefix_with("MATERIALIZED", dialect="postgresql")
        update = (
            items.update()
            .where(items.c.run_id == run_id, items.c.item_id.in_(sa.select(picked.c.item_id)))
            .values(lease_owner=owner, lease_until=_clock(conn) + ttl_s)
            .returning(items.c.item_id, *returning)
        )
        rows = conn.execute(update).all()
        return [r[0] for r in rows] if not returning else [tuple(r) for r in rows]

    def renew(self, run_id: str, owner: str, item_ids: Sequence[str], ttl_s: float) -> set[str]:
        """Extend `owner`'s leases on those of `item_ids` still pending by `ttl_s` seconds from
        now; return the ids it still holds (not recorded yet, not taken over)."""
        return self._held(run_id, owner, item_ids, ttl_s)

    def release(self, run_id: str, owner: str, item_ids: Sequence[str]) -> int:
        """End `owner`'s leases on those of `item_ids` still pending, so that another process
        takes them at once; return how many were released."""
        return len(self._held(run_id, owner, item_ids, None))

    def _held(
        self, run_id: str, owner: str, item_ids: Sequence[str], ttl_s: float | None
    ) -> set[str]:
        """Renew `owner`'s leases for `ttl_s` seconds, or release them (None)."""
        held: set[str] = set()
        with self.engine.begin() as conn:
            if ttl_s is not None:
                values: dict[str, Any] = {"lease_until": _clock(conn) + ttl_s}
            else:  # released: expired long ago, so it is taken like a lapsed lease
                values = {"lease_owner": None, "lease_until": 0.0}
            for start in range(0, len(item_ids), _IN_CHUNK):
                chunk = list(item_ids[start : start + _IN_CHUNK])
                update = (
                    items.update()
                    .where(items.c.run_id == run_id, items.c.item_id.in_(chunk),
                           items.c.status == "pending", items.c.lease_owner == owner)
                    .values(**values)
                    .returning(items.c.item_id)
                )  # fmt: skip
                held.update(conn.execute(update).scalars())
        return held

    def lease_holders(self, run_id: str, below_seq: int | None = None) -> dict[str, int]:
        """`{owner: pending items}` of the live leases in a run."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(items.c.lease_owner, sa.func.count())
                .where(items.c.run_id == run_id, items.c.status == "pending",
                       items.c.lease_owner.isnot(None), items.c.lease_until >= _clock(conn),
                       *_below(below_seq))
                .group_by(items.c.lease_owner)
            ).all()  # fmt: skip
        return {str(k): int(v) for k, v in rows}

    # -- reading -------------------------------------------------------------------------------
    def rows(self, run_id: str | None = None) -> Iterator[dict[str, Any]]:
        """One joined row per stored item (with its draft, if any), in input order."""
        query = sa.select(
            items.c.run_id,
            items.c.item_id,
            items.c.source,
            items.c.row,
            items.c.status,
            items.c.reason,
            items.c.detail,
            items.c.updated_at,
            drafts.c.label,
            drafts.c.score,
            drafts.c.rationale,
            drafts.c.output,
            drafts.c.confidence,
            drafts.c.components,
            drafts.c.parse_attempts,
            drafts.c.created_at.label("drafted_at"),
            runs.c.created_at.label("run_created_at"),
            runs.c.task,
            runs.c.constitution_hash,
            runs.c.template_hash,
            runs.c.backend,
            runs.c.model,
            runs.c.params,
            constitutions.c.constitution_id,
            constitutions.c.version.label("constitution_version"),
        ).select_from(
            items.join(runs, runs.c.id == items.c.run_id)
            .outerjoin(
                drafts,
                sa.and_(drafts.c.run_id == items.c.run_id, drafts.c.item_id == items.c.item_id),
            )
            .outerjoin(constitutions, constitutions.c.hash == runs.c.constitution_hash)
        )
        # Run by run (oldest first), each in input order through the (run_id, seq) index: no
        # sort of the whole run (which SQLite spills to temporary files at millions of rows).
        # Streamed: a server-side cursor on PostgreSQL, SQLite's own lazy stepping, fetched
        # `_YIELD_PER` rows at a time, so reading a run of any size holds one batch.
        with self.engine.connect() as conn:
            if run_id is not None:
                run_ids = [run_id]
            else:
                order = sa.select(runs.c.id).order_by(runs.c.created_at, runs.c.id)
                run_ids = list(conn.execute(order).scalars())
            for one in run_ids:
                result = conn.execution_options(stream_results=True, yield_per=_YIELD_PER).execute(
                    query.where(items.c.run_id == one).order_by(items.c.seq)
                )
                for row in result.mappings():
                    out = dict(row)
                    for key in ("row", "output", "components", "params"):
                        out[key] = json.loads(out[key]) if out[key] is not None else None
                    yield out

    def status_counts(self, run_id: str) -> dict[str, int]:
        """`{status: count}` of a run's items (through the status index)."""
        with self.engine.connect() as conn:
            return self._status_counts(conn, run_id)

    @staticmethod
    def _status_counts(conn: sa.Connection, run_id: str) -> dict[str, int]:
        rows = conn.execute(
            sa.select(items.c.status, sa.func.count())
            .where(items.c.run_id == run_id)
            .group_by(items.c.status)
        ).all()
        return {str(k): int(v) for k, v in rows}

    def counts(self, run_id: str) -> dict[str, Any]:
        """Totals for a run summary: statuses, failure reasons, labels, tokens."""
        with self.engine.connect() as conn:
            statuses = self._status_counts(conn, run_id)
            reasons: dict[Any, Any] = dict(
                conn.execute(
                    sa.select(items.c.reason, sa.func.count())
                    .where(items.c.run_id == run_id, items.c.status == "failed")
                    .group_by(items.c.reason)
                ).all()
            )
            # A rubric score is a float column: named as `verdict` names it (`4`, not `4.0`).
            labels: dict[Any, Any] = {}
            for label, score, count in conn.execute(
                sa.select(drafts.c.label, drafts.c.score, sa.func.count())
                .where(drafts.c.run_id == run_id,
                       sa.or_(drafts.c.label.isnot(None), drafts.c.score.isnot(None)))
                .group_by(drafts.c.label, drafts.c.score)
            ).all():  # fmt: skip
                key = verdict(label, score)
                labels[key] = labels.get(key, 0) + count
            tokens = conn.execute(
                sa.select(
                    sa.func.coalesce(sa.func.sum(generations.c.prompt_tokens), 0),
                    sa.func.coalesce(sa.func.sum(generations.c.completion_tokens), 0),
                    sa.func.count(),
                ).where(generations.c.run_id == run_id)
            ).one()
        return {
            "statuses": statuses,
            "failures": {str(k): int(v) for k, v in reasons.items()},
            "labels": {str(k): int(v) for k, v in labels.items()},
            "prompt_tokens": int(tokens[0]),
            "completion_tokens": int(tokens[1]),
            "requests": int(tokens[2]),
        }

    # -- routing -------------------------------------------------------------------------------
    def save_routes(
        self,
        policy_hash: str,
        policy_yaml: str,
        decided: Sequence[tuple[str, str, str, str, float | None]],
        *,
        forced: bool = False,
    ) -> None:
        """Store routes `(run_id, item_id, decision, reason, confidence)` under a policy hash.

        Routing again with the same policy replaces that policy's routes (it is deterministic).
        `forced`: routed with `--force`, outside what the policy was calibrated on.
        """
        stamp = now()
        with self.engine.begin() as conn:
            if (
                conn.execute(
                    sa.select(policies.c.hash).where(policies.c.hash == policy_hash)
                ).first()
                is None
            ):
                conn.execute(
                    policies.insert().values(
                        hash=policy_hash, content=policy_yaml, created_at=stamp
                    )
                )
            for run_id in {d[0] for d in decided}:
                conn.execute(
                    routes.delete().where(
                        routes.c.run_id == run_id, routes.c.policy_hash == policy_hash
                    )
                )
            rows = [
                {"run_id": r, "item_id": i, "policy_hash": policy_hash, "decision": d,
                 "reason": why, "confidence": c, "created_at": stamp, "forced": forced}
                for r, i, d, why, c in decided
            ]  # fmt: skip
            for start in range(0, len(rows), 2000):
                conn.execute(routes.insert(), rows[start : start + 2000])

    def policy_content(self, digest: str) -> str | None:
        """The stored text of a policy routes were made under (by its hash)."""
        with self.engine.connect() as conn:
            found = conn.execute(
                sa.select(policies.c.content).where(policies.c.hash == digest)
            ).first()
        return None if found is None else str(found[0])

    def routed(self, run_id: str) -> bool:
        """Whether any item of the run has a route (through the routes' key)."""
        with self.engine.connect() as conn:
            found = conn.execute(
                sa.select(routes.c.item_id).where(routes.c.run_id == run_id).limit(1)
            ).first()
        return found is not None

    def latest_routes(self, run_id: str | None = None) -> dict[tuple[str, str], dict[str, Any]]:
        """The most recent route of every routed item, keyed by (run_id, item_id)."""
        query = sa.select(routes).order_by(routes.c.created_at)
        if run_id is not None:
            query = query.where(routes.c.run_id == run_id)
        with self.engine.connect() as conn:
            return {(r["run_id"], r["item_id"]): dict(r) for r in conn.execute(query).mappings()}

    def routes_for(self, keys: Sequence[tuple[str, str]]) -> dict[tuple[str, str], dict[str, Any]]:
        """The most recent route of each of these `(run_id, item_id)`s that is routed (via the key):
        `latest_routes` for one batch of items."""
        by_run: dict[str, list[str]] = {}
        for run_id, item_id in keys:
            by_run.setdefault(run_id, []).append(item_id)
        found: dict[tuple[str, str], dict[str, Any]] = {}
        with self.engine.connect() as conn:
            for run_id, ids in by_run.items():
                for start in range(0, len(ids), _IN_CHUNK):
                    rows = conn.execute(
                        sa.select(routes)
                        .where(routes.c.run_id == run_id,
                               routes.c.item_id.in_(ids[start : start + _IN_CHUNK]))
                        .order_by(routes.c.created_at)
                    ).mappings()  # fmt: skip
                    found.update({(r["run_id"], r["item_id"]): dict(r) for r in rows})
        return found

    def generations_for(self, run_id: str, item_id: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(generations)
                .where(generations.c.run_id == run_id, generations.c.item_id == item_id)
                .order_by(generations.c.id)
            ).mappings()
            return [dict(r) for r in rows]


def _clock(conn: sa.Connection) -> sa.ColumnElement[float]:
    """The database's time, in seconds since the epoch: the one clock all leases are read on."""
    if conn.dialect.name == "postgresql":
        return sa.cast(sa.extract("epoch", sa.func.statement_timestamp()), sa.Float)
    return sa.literal_column("((julianday('now') - 2440587.5) * 86400.0)", sa.Float)


def _below(seq: int | None) -> tuple[sa.ColumnElement[bool], ...]:
    return () if seq is None else (items.c.seq < seq,)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # The same settings as the review queues on this file, plus a busy timeout: pysqlite's own
    # transactions wait for another writer instead of failing at once.
    sqlite_pragmas(dbapi_connection)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def open_store(url: str = DEFAULT_DB) -> Store:
    """Open (and create or migrate) the store at a SQLAlchemy URL or a plain file path."""
    if "://" not in url:
        url = f"sqlite:///{url}"
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        raise StoreError(
            f"'{url}' is not a database URL",
            hint="use sqlite:///critic.db or postgresql+psycopg://",
        ) from None
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    try:
        engine = sa.create_engine(parsed, future=True)
    except sa.exc.NoSuchModuleError:
        raise StoreError(
            f"unknown database kind '{parsed.drivername}'",
            hint="use sqlite:///critic.db or postgresql+psycopg://user@host/db",
        ) from None
    except ImportError as exc:
        raise StoreError(
            f"the database driver for {parsed.drivername} is not installed ({exc.name})",
            hint="pip install 'critic[postgres]'",
        ) from None
    if engine.dialect.name == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    try:
        _migrate(engine)
    except sa.exc.OperationalError as exc:
        raise StoreError(
            f"cannot open the database {parsed.render_as_string(hide_password=True)}: {exc.orig}",
            hint="check the URL, that the server runs, and the file permissions",
        ) from None
    return Store(engine)


def _migrate(engine: Engine) -> None:
    with engine.begin() as conn:
        # Processes that open a new database together (workers sharing a run) migrate it one at
        # a time: `migrate` starts with `versions.ensure`, whose lock lasts the transaction.
        migrate(conn)
