from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from adjudication import versions
from critic import store as st
from critic.errors import StoreError
from critic.store import migrations


def test_a_database_made_by_schema_1_opens_and_keeps_its_data(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    legacy = migrations.LEGACY_VERSION
    with engine.begin() as conn:  # what critic 0.1 with schema 1 created
        legacy.create(conn)
        st.MIGRATIONS[0](conn)
        conn.execute(legacy.insert().values(id=1, version=1))
        conn.execute(
            st.runs.insert().values(
                id="r1", key="k", task="label", constitution_hash=None, template_hash="t",
                backend="fake", model="m", params="{}", input="x", created_at="a",
                updated_at="a",
            )
        )  # fmt: skip
    assert not sa.inspect(engine).has_table("routes")
    store = st.open_store(url)
    assert sa.inspect(store.engine).has_table("routes")
    assert [r.id for r in store.runs()] == ["r1"]
    with store.engine.connect() as conn:
        # The version moved into the one table every component records its versions in.
        assert versions.current(conn, "critic") == st.SCHEMA_VERSION
    assert not sa.inspect(store.engine).has_table(legacy.name)


def test_migrations_build_exactly_the_schema_the_code_queries(store_url: str) -> None:
    store = st.open_store(store_url)

    def shape(nullable: bool, kind: sa.types.TypeEngine[object]) -> tuple[bool, type, object]:
        return nullable, kind.python_type, getattr(kind, "length", None)

    inspector = sa.inspect(store.engine)
    assert set(inspector.get_table_names()) == set(st.metadata.tables)
    for table in st.metadata.sorted_tables:
        on_disk = {
            c["name"]: shape(c["nullable"], c["type"]) for c in inspector.get_columns(table.name)
        }
        in_code = {c.name: shape(c.nullable, c.type) for c in table.columns}
        assert on_disk == in_code, table.name
        # Indexes a migration made that schema.py lacks fail too; PostgreSQL also lists the
        # indexes that back a unique constraint, which are the constraint's, not an index's.
        indexes = {
            i["name"]
            for i in inspector.get_indexes(table.name)
            if not i.get("duplicates_constraint")
        }
        assert {i.name for i in table.indexes} == indexes, table.name
        assert inspector.get_pk_constraint(table.name)["constrained_columns"] == [
            c.name for c in table.primary_key.columns
        ], table.name
    store.close()


def test_a_newer_schema_is_refused_with_a_hint(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    st.open_store(url).close()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        versions.record(conn, "critic", 99, datetime.now(UTC))
    with pytest.raises(StoreError, match="newer critic"):
        st.open_store(url)


def test_bad_url_and_unreachable_database(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="unknown database kind"):
        st.open_store("nonsense://")
    with pytest.raises(StoreError, match="cannot open the database"):
        st.open_store("postgresql+psycopg://nobody@127.0.0.1:9/none")


def test_public_surface_resolves_lazily() -> None:
    import subprocess
    import sys

    code = (
        "import sys, critic\n"
        "assert 'sqlalchemy' not in sys.modules and 'torch' not in sys.modules\n"
        "for name in critic.__all__: getattr(critic, name)\n"
        "assert not any(m in sys.modules for m in ('torch', 'vllm', 'transformers'))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_a_batch_partly_recorded_already_writes_only_the_new_items_once(store_url: str) -> None:
    # A retried batch: i0 was recorded by someone else, i1 is new, and i1 comes twice. The fast
    # path (update first) sees fewer rows change than outcomes and redoes the batch by lookup.
    from critic.store import Outcome, open_store
    from tests.test_leases import a_run

    store = open_store(store_url)
    run = a_run(store, 3)
    gen = {"stage": "label", "attempt": 0, "texts": "[]", "finish_reasons": "[]",
           "logprobs": None, "prompt_tokens": 1, "completion_tokens": 1, "latency_s": 0.0,
           "error": None}  # fmt: skip
    assert store.record(run, [Outcome("i0", "drafted", draft={"n": 1}, label="first",
                                      generations=(gen,))]) == 1  # fmt: skip
    again = [
        Outcome("i0", "drafted", draft={"n": 2}, label="second", generations=(gen,)),
        Outcome("i1", "failed", reason="parse_failure", generations=(gen,)),
        Outcome("i1", "drafted", draft={"n": 3}, label="late", generations=(gen,)),
    ]
    assert store.record(run, again) == 1
    rows = {r["item_id"]: r for r in store.rows(run)}
    assert rows["i0"]["label"] == "first" and rows["i0"]["status"] == "drafted"
    assert rows["i1"]["status"] == "failed" and rows["i1"]["reason"] == "parse_failure"
    assert rows["i2"]["status"] == "pending"
    assert [len(store.generations_for(run, i)) for i in ("i0", "i1", "i2")] == [1, 1, 0]


def test_the_run_store_and_the_queues_record_their_versions_in_one_table(tmp_path: Path) -> None:
    from adjudication import open_store as open_queues
    from adjudication.migrations import LATEST

    url = f"sqlite:///{tmp_path / 'shared.db'}"
    st.open_store(url).close()
    open_queues(url).close()
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(versions.schema_versions.c.component, versions.schema_versions.c.version)
        ).all()
        tables = set(sa.inspect(conn).get_table_names())
    engine.dispose()
    assert sorted(rows) == sorted(
        [("adjudication", v) for v in range(1, LATEST + 1)]
        + [("critic", v) for v in range(1, st.SCHEMA_VERSION + 1)]
    )
    assert {"critic_schema", "schema_version"}.isdisjoint(tables)


def test_rows_come_run_by_run_oldest_first_each_in_input_order(store_url: str) -> None:
    from critic.store import RunInfo, open_store
    from tests.test_leases import HARM

    store = open_store(store_url)
    digest = store.save_constitution(HARM)
    for run_id, created in (
        ("new", "2026-02-01T00:00:00+00:00"),
        ("old", "2026-01-01T00:00:00+00:00"),
    ):
        store.ensure_run(
            RunInfo(id=run_id, key=run_id, task="label", constitution_hash=digest,
                    template_hash="t", backend="fake", model="m", params={}, input="x",
                    created_at=created)
        )  # fmt: skip
        # Input order (seq) is the reverse of the ids' order, and of the insertion order.
        store.add_items(
            run_id,
            [{"item_id": f"{run_id}-{k}", "source": f"x:{3 - k}", "row": {}, "seq": 3 - k}
             for k in range(4)],
        )  # fmt: skip
    order = [(r["run_id"], r["item_id"]) for r in store.rows()]
    assert order == [("old", f"old-{k}") for k in (3, 2, 1, 0)] + [
        ("new", f"new-{k}") for k in (3, 2, 1, 0)
    ]
    assert [r["item_id"] for r in store.rows("new")] == [f"new-{k}" for k in (3, 2, 1, 0)]
    if store.engine.dialect.name == "sqlite":  # rows() reads through the index: no sort
        sent: list[tuple[str, Any]] = []

        def capture(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
            if "ORDER BY" in statement and "FROM items" in statement:
                sent.append((statement, params))

        sa.event.listen(store.engine, "before_cursor_execute", capture)
        list(store.rows("new"))
        sa.event.remove(store.engine, "before_cursor_execute", capture)
        assert len(sent) == 1, sent
        with store.engine.connect() as conn:
            plan = str(conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sent[0][0], sent[0][1]).all())
        assert "ix_items_seq" in plan and "TEMP B-TREE" not in plan, plan
    store.close()
