"""Accounts: users, their roles and sessions, and who works in which queue."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, RowMapping, delete, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from . import statements as st
from .database import StoreBase, not_a_member
from .errors import NotFoundError, QueueError
from .models import (
    Queue,
    Role,
    User,
)
from .rows import queue_of, user_of
from .rules import (
    check_name,
    check_role,
)
from .schema import app_secrets, queue_members, queues, users


class Accounts(StoreBase):
    """Users and queue membership (reviewers and adjudicators see and claim only their
    queues' items; admins see every queue)."""

    def add_user(
        self,
        name: str,
        role: Role = "reviewer",
        *,
        password_hash: str | None = None,
        queues: Sequence[str] = (),
        by: str | None = None,
    ) -> User:
        """Add a user.

        Args:
            name: unique login name.
            role: reviewer, adjudicator (also adjudicates disagreements) or admin.
            password_hash: an already hashed password for the web app; never a plain password.
            queues: the queues they may work in (see `add_members`); admins work in all.
            by: who is adding them, for the history.
        """
        check_role(role)
        check_name("user", name)
        with self._write() as conn:
            if conn.execute(select(users.c.id).where(users.c.name == name)).first():
                raise QueueError(f"user {name!r} already exists", hint="pick another name")
            now = self._now()
            conn.execute(
                insert(users).values(
                    name=name, role=role, password_hash=password_hash, active=True, created_at=now
                )
            )
            self._event(conn, "user_added", at=now, actor=by, after={"user": name, "role": role})
            for queue in queues:
                self._add_members(conn, self._queue_row(conn, queue), [name], by, now)
            return user_of(self._user_row(conn, name))

    def update_user(
        self,
        name: str,
        *,
        role: Role | None = None,
        password_hash: str | None = None,
        active: bool | None = None,
        by: str | None = None,
    ) -> User:
        """Change a user's role, password hash or active flag (inactive users cannot claim)."""
        if role is not None:
            check_role(role)
        with self._write() as conn:
            row = self._user_row(conn, name, lock=True)
            changes: dict[str, Any] = {}
            if role is not None:
                changes["role"] = role
            if password_hash is not None:
                changes["password_hash"] = password_hash
            if active is not None:
                changes["active"] = active
            if changes:
                # A new password or deactivation ends every web session of the user.
                if (password_hash is not None and password_hash != row["password_hash"]) or (
                    active is False and row["active"]
                ):
                    changes["session_epoch"] = row["session_epoch"] + 1
                conn.execute(update(users).where(users.c.id == row["id"]).values(**changes))
                shown = {
                    k: v for k, v in changes.items() if k not in ("password_hash", "session_epoch")
                }
                if "password_hash" in changes:
                    shown["password"] = "changed"
                self._event(
                    conn,
                    "user_updated",
                    at=self._now(),
                    actor=by,
                    before={"user": name, **{k: row[k] for k in shown if k in row}},
                    after={"user": name, **shown},
                )
            return user_of(self._user_row(conn, name))

    def user(self, name: str) -> User:
        """The user called `name`."""
        with self._read() as conn:
            return user_of(self._user_row(conn, name))

    def find_user(self, name: str) -> User | None:
        """The user called `name`, or None; one statement, naming no other user (the log-in
        form's look-up: a wrong name must cost what a wrong password costs)."""
        with self._read() as conn:
            row = conn.execute(st.USER_BY_NAME, {"name": name}).mappings().first()
            return None if row is None else user_of(row)

    def end_sessions(self, name: str) -> User:
        """End every web session of a user (log-out): bumps their session epoch."""
        with self._write() as conn:
            row = self._user_row(conn, name, lock=True)
            conn.execute(
                update(users)
                .where(users.c.id == row["id"])
                .values(session_epoch=users.c.session_epoch + 1)
            )
            return user_of(self._user_row(conn, name))

    def app_secret(self, name: str, make: Callable[[], str]) -> str:
        """The secret stored under `name`, made with `make()` and stored on first use. Two
        processes starting at once agree: the first insert wins and both read it back."""
        with self._read() as conn:
            found = conn.execute(st.APP_SECRET, {"name": name}).scalar()
        if found is not None:
            return str(found)
        with self._write() as conn:
            dialect_insert = pg_insert if self.dialect == "postgresql" else sqlite_insert
            conn.execute(
                dialect_insert(app_secrets)
                .values(name=name, value=make(), created_at=self._now())
                .on_conflict_do_nothing(index_elements=["name"])
            )
            return str(conn.execute(st.APP_SECRET, {"name": name}).scalar_one())

    def users(self) -> list[User]:
        """Every user, by name."""
        with self._read() as conn:
            return [
                user_of(row)
                for row in conn.execute(select(users).order_by(users.c.name)).mappings()
            ]

    # -- membership -------------------------------------------------------------------------

    def add_members(self, queue: str, names: Iterable[str], *, by: str | None = None) -> list[str]:
        """Let users work in a queue. Reviewers and adjudicators see and claim items only in
        the queues they are members of; admins work in every queue without being members.

        Returns:
            The names added now, in the order given (members already in are left alone).
        """
        with self._write() as conn:
            return self._add_members(conn, self._queue_row(conn, queue), names, by, self._now())

    def _add_members(
        self,
        conn: Connection,
        q: RowMapping,
        names: Iterable[str],
        by: str | None,
        now: datetime,
    ) -> list[str]:
        added = []
        for name in dict.fromkeys(names):
            u = self._user_row(conn, name)
            if conn.execute(st.MEMBER, {"queue_id": q["id"], "user_id": u["id"]}).first():
                continue
            conn.execute(
                insert(queue_members).values(queue_id=q["id"], user_id=u["id"], added_at=now)
            )
            self._event(
                conn,
                "member_added",
                at=now,
                actor=by,
                queue_id=q["id"],
                after={"user": name, "role": u["role"]},
            )
            added.append(name)
        return added

    def remove_members(
        self, queue: str, names: Iterable[str], *, by: str | None = None
    ) -> list[str]:
        """Stop users working in a queue. Items they hold in it go back to the pool at once.

        Returns:
            The names removed now (users who were not members are left alone).
        """
        with self._write() as conn:
            q = self._queue_row(conn, queue)
            now = self._now()
            removed = []
            for name in dict.fromkeys(names):
                u = self._user_row(conn, name, lock=True)
                gone = conn.execute(
                    delete(queue_members).where(
                        queue_members.c.queue_id == q["id"], queue_members.c.user_id == u["id"]
                    )
                ).rowcount
                if not gone:
                    continue
                held = conn.execute(
                    st.LIVE_OF_USER, {"user_id": u["id"], "queue_id": q["id"], "now": now}
                ).all()
                if held:
                    ids = [row.id for row in held]
                    conn.execute(st.END_CLAIMS, {"claim_ids": ids, "now": now, "reason": "removed"})
                self._event(
                    conn,
                    "member_removed",
                    at=now,
                    actor=by,
                    queue_id=q["id"],
                    before={"user": name, "role": u["role"]},
                    after={"user": name, "claims_ended": len(held)},
                )
                removed.append(name)
            return removed

    def members(self, queue: str) -> list[User]:
        """The users who may work in a queue besides the admins, by name."""
        with self._read() as conn:
            q = self._queue_row(conn, queue)
            rows = conn.execute(
                select(users)
                .join(queue_members, queue_members.c.user_id == users.c.id)
                .where(queue_members.c.queue_id == q["id"])
                .order_by(users.c.name)
            ).mappings()
            return [user_of(row) for row in rows]

    def queues_for(self, user: str) -> list[Queue]:
        """The queues a user may work in, by name: every queue for an admin, none if inactive."""
        with self._read() as conn:
            u = self._user_row(conn, user)
            if not u["active"]:
                return []
            query = select(queues).order_by(queues.c.name)
            if u["role"] != "admin":
                query = query.join(queue_members, queue_members.c.queue_id == queues.c.id).where(
                    queue_members.c.user_id == u["id"]
                )
            return [queue_of(row) for row in conn.execute(query).mappings()]

    def memberships(self) -> dict[str, list[str]]:
        """Every user's name -> the names of the queues they may work in (as `queues_for`),
        read in three queries however many users there are."""
        with self._read() as conn:
            everything = list(conn.execute(select(queues.c.name).order_by(queues.c.name)).scalars())
            pairs = conn.execute(
                select(users.c.name, queues.c.name)
                .join(queue_members, queue_members.c.user_id == users.c.id)
                .join(queues, queues.c.id == queue_members.c.queue_id)
                .order_by(queues.c.name)
            ).all()
            people = conn.execute(select(users.c.name, users.c.role, users.c.active)).all()
        listed: defaultdict[str, list[str]] = defaultdict(list)
        for user, queue in pairs:
            listed[user].append(queue)
        return {
            name: [] if not active else list(everything) if role == "admin" else listed[name]
            for name, role, active in people
        }

    def queue_for(self, user: str, queue: str) -> Queue:
        """The queue called `queue`, if `user` may work in it; PermissionDenied otherwise.

        One statement whatever the answer: a queue that does not exist costs what one the user
        is not in costs, and no other queue is named (the web app's path to every queue page;
        `queue` suggests names to those who may see them all)."""
        with self._read() as conn:
            row = conn.execute(st.QUEUE_FOR, {"queue": queue, "user": user}).mappings().first()
            if row is None:
                raise NotFoundError(f"no queue named {queue!r}")
            if row["user_id"] is None:
                raise NotFoundError(f"no user named {user!r}")
            if row["user_role"] != "admin" and row["member"] is None:
                raise not_a_member(user, queue)
            return queue_of(row)
