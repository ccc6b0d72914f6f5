"""Opening stores: URLs, migrations applied on open, and refusing what cannot work."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, insert, inspect, select, text

from adjudication import StoreError, open_store
from adjudication.migrations import LATEST
from adjudication.schema import metadata
from adjudication.testing import FakeClock
from adjudication.versions import LEGACY_QUEUE_VERSIONS as schema_version
from adjudication.versions import schema_versions


def test_opening_migrates_once_and_reopening_keeps_the_data(store_url: str) -> None:
    with open_store(store_url) as store:
        store.create_queue("harm")
        store.add_user("ann")
    with open_store(store_url) as again:
        assert [q.name for q in again.queues()] == ["harm"]
    engine = create_engine(store_url)
    try:
        with engine.connect() as conn:
            versions = (
                conn.execute(
                    select(schema_versions.c.version).where(
                        schema_versions.c.component == "adjudication"
                    )
                )
                .scalars()
                .all()
            )
    finally:
        engine.dispose()
    assert versions == list(range(1, LATEST + 1))


def test_migrations_build_exactly_the_schema_the_code_queries(store_url: str) -> None:
    open_store(store_url).close()
    engine = create_engine(store_url)
    try:
        inspector = inspect(engine)
        for table in metadata.sorted_tables:
            on_disk = {c["name"]: c["nullable"] for c in inspector.get_columns(table.name)}
            in_code = {c.name: c.nullable for c in table.columns}
            assert on_disk == in_code, table.name
            indexes = {i["name"] for i in inspector.get_indexes(table.name)}
            assert {i.name for i in table.indexes} <= indexes, table.name
    finally:
        engine.dispose()


def test_a_database_from_a_newer_version_is_refused(store_url: str) -> None:
    open_store(store_url).close()
    engine = create_engine(store_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                insert(schema_versions).values(
                    component="adjudication", version=LATEST + 1, applied_at=FakeClock()()
                )
            )
    finally:
        engine.dispose()
    with pytest.raises(StoreError, match=f"schema version {LATEST + 1}, newer") as err:
        open_store(store_url)
    assert err.value.hint and "upgrade critic" in err.value.hint


def test_sqlite_store_uses_wal(tmp_path: Path) -> None:
    open_store(f"sqlite:///{tmp_path / 'q.db'}").close()
    assert (tmp_path / "q.db").exists()
    engine = create_engine(f"sqlite:///{tmp_path / 'q.db'}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "not a database URL"),
        ("mysql://localhost/q", "unsupported database"),
        ("sqlite://", "in-memory"),
        ("sqlite:///:memory:", "in-memory"),
        ("sqlite:////no/such/folder/q.db", "the folder /no/such/folder does not exist"),
        ("postgresql+asyncpg://localhost/q", "asyncpg driver is not supported"),
    ],
)
def test_unusable_urls_are_refused_with_a_hint(url: str, message: str) -> None:
    with pytest.raises(StoreError, match=message) as err:
        open_store(url)
    assert err.value.hint


def test_an_unreachable_postgres_server_is_a_store_error() -> None:
    with pytest.raises(StoreError, match="failed") as err:
        open_store("postgresql://nobody@127.0.0.1:1/none")
    assert err.value.hint and "reachable" in err.value.hint


def test_a_naive_clock_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="naive"):
        open_store(f"sqlite:///{tmp_path / 'q.db'}", clock=datetime.now)


def test_migration_2_keeps_everyone_working_where_they_worked(store_url: str) -> None:
    """Before version 2 every user worked in every queue: upgrading must not lock anyone out."""
    from adjudication.migrations import MIGRATIONS
    from adjudication.schema import queues, users

    now = FakeClock()()
    engine = create_engine(store_url)
    try:
        with engine.begin() as conn:
            schema_version.create(conn)
            MIGRATIONS[0](conn, now)
            conn.execute(insert(schema_version).values(version=1, applied_at=now))
            conn.execute(
                insert(queues),
                [
                    {"name": name, "overlap": 1, "blind": False, "lease_seconds": 600,
                     "labels": None, "ordinal": False, "created_at": now}
                    for name in ("harm", "help")
                ],
            )  # fmt: skip
            conn.execute(
                insert(users),
                [
                    {"name": name, "role": role, "password_hash": None, "active": True,
                     "created_at": now}
                    for name, role in (("ann", "reviewer"), ("ada", "adjudicator"),
                                       ("root", "admin"))
                ],
            )  # fmt: skip
    finally:
        engine.dispose()
    with open_store(store_url) as store:
        assert [u.name for u in store.members("harm")] == ["ada", "ann"]
        assert [u.name for u in store.members("help")] == ["ada", "ann"]
        assert [q.name for q in store.queues_for("ann")] == ["harm", "help"]
        store.create_queue("new")  # queues made after the upgrade start with no members
        assert store.members("new") == []
        assert [q.name for q in store.queues_for("root")] == ["harm", "help", "new"]


def test_migration_3_adds_session_epochs_picks_and_secrets_to_a_version_2_database(
    store_url: str,
) -> None:
    """A database made before the web app kept sessions, picks and secrets opens, and its
    users start at epoch 0."""
    from adjudication.migrations import MIGRATIONS

    now = FakeClock()()
    engine = create_engine(store_url)
    try:
        with engine.begin() as conn:
            schema_version.create(conn)
            for version in (1, 2):
                MIGRATIONS[version - 1](conn, now)
                conn.execute(insert(schema_version).values(version=version, applied_at=now))
            conn.execute(
                text(
                    "INSERT INTO users (name, role, password_hash, active, created_at) "
                    "VALUES ('ann', 'reviewer', NULL, :yes, :now)"
                ),
                {"yes": True, "now": now.replace(tzinfo=None)},
            )
    finally:
        engine.dispose()
    with open_store(store_url) as store:
        assert store.user("ann").session_epoch == 0
        assert store.end_sessions("ann").session_epoch == 1
        assert store.app_secret("k", lambda: "made") == "made"
        assert store.app_secret("k", lambda: "other") == "made"
        store.create_queue("b", labels=["x", "y"], blind=True, members=["ann"])
        store.enqueue("b", [{"item_id": "i"}])
        claim = store.claim("b", "ann")
        assert claim is not None and store.pick(claim.token, "x").pick == "x"
