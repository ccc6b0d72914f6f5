"""PostgreSQL's plans for what the review page and the item list ask on every request, on a queue
large enough that the planner's choices matter (`bench/web.py` measures the latency at 1M items).

Each test records the statements a store call sends and asks PostgreSQL how it would run them with
the same parameters: a plan that scans the queue, or starts parallel workers for a lookup of a few
rows, costs tens of milliseconds per request at a million items and more under load.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import event, text

from adjudication import Store, open_store
from adjudication.testing import PostgresServer

pytestmark = pytest.mark.postgres

ITEMS = 120_000


@pytest.fixture(scope="module")
def big(postgres_server: PostgresServer) -> Iterator[Store]:
    """A queue of `ITEMS` pending tasks, least confident first, analysed."""
    with open_store(postgres_server.create_database()) as store:
        store.create_queue("big", labels=["safe", "unsafe"])
        store.add_user("rita", queues=["big"])
        with store._engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO tasks (queue_id, item_id, item, draft, draft_label, confidence, "
                    "route_reason, principle_ids, priority, state, round, reviews, rejected, "
                    "created_at, updated_at) "
                    "SELECT q.id, 'i' || lpad(n::text, 7, '0'), '{\"prompt\": \"p\"}', '{}', "
                    "'safe', n::float8 / :n, 'low_confidence', '[]', n::float8 / :n, 'pending', "
                    "1, 0, false, now(), now() "
                    "FROM queues q, generate_series(0, :n - 1) n WHERE q.name = 'big'"
                ),
                {"n": ITEMS},
            )
        with store._engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
                "VACUUM ANALYZE tasks"
            )
        yield store


def plans(store: Store, call: Callable[[], Any], match: str) -> list[str]:
    """The plans PostgreSQL makes for the statements `call` sends that contain `match`, with the
    parameters they were sent with."""
    sent: list[tuple[str, Any]] = []

    def capture(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if match in statement:
            sent.append((statement, params))

    event.listen(store._engine, "before_cursor_execute", capture)
    try:
        call()
    finally:
        event.remove(store._engine, "before_cursor_execute", capture)
    found = []
    with store._engine.connect() as conn:
        for statement, params in sent:
            rows = conn.exec_driver_sql("EXPLAIN " + statement, params).scalars()
            found.append("\n".join(rows))
    return found


def words(plan: str) -> list[str]:
    """The plan's node names ("Seq Scan", "Bitmap Heap Scan"...) and their first words."""
    nodes = [line.strip(" ->").split("  (")[0] for line in plan.splitlines() if "(cost=" in line]
    return nodes + [" ".join(n.split()[:2]) for n in nodes] + [n.split()[0] for n in nodes]


def estimates(plan: str) -> list[int]:
    """The row counts the planner expects of each node."""
    return [int(m) for m in re.findall(r"rows=(\d+)", plan)]


def test_queue_position_walks_the_index_up_to_the_item(big: Store) -> None:
    ahead = ITEMS // 1000
    counted = plans(big, lambda: big.position("big", f"i{ahead:07d}"), "count(")
    assert len(counted) == 1, counted
    plan = counted[0]
    # An index walk the planner knows is short: neither a scan of the queue nor a bitmap of a
    # third of it (its guess for a bound it cannot see), nor parallel workers for a few rows.
    assert "Index" in plan and not {"Seq Scan", "Bitmap", "Gather"} & set(words(plan)), plan
    assert max(estimates(plan)) < ITEMS // 100, plan
    assert big.position("big", f"i{ahead:07d}") == ahead


def test_queue_stats_count_rejected_items_among_the_settled_only(big: Store) -> None:
    counted = plans(big, lambda: big.stats("big"), "rejected")
    assert len(counted) == 1, counted
    assert "Seq Scan" not in words(counted[0]), counted[0]
    assert big.stats("big").rejected == 0
