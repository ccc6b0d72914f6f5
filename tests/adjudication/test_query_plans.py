"""PostgreSQL's plans for what the review page and the item list ask on every request, on a queue
large enough that the planner's choices matter (`bench/web.py` measures the latency at 1M items).

Each test records the statements a store call sends and asks PostgreSQL how it would run them with
the same parameters: a plan that scans the queue, or starts parallel workers for a lookup of a few
rows, costs tens of milliseconds per request at a million items and more under load.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
from sqlalchemy import event, text

from adjudication import Store, open_store
from adjudication.listing import COUNT_CAP, Filters
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
            # Item text of made-up words: w0..w96 and w0..w88 (a word in about one item in
            # 50), v0..v996 (one in 1,000), the first word twice in every fifth item.
            conn.execute(
                text(
                    "INSERT INTO task_search (task_id, queue_id, everything) "
                    "SELECT t.id, t.queue_id, setweight(to_tsvector('english', "
                    "'w' || (n % 97) || ' v' || (n % 997) || ' w' || (n % 89) || "
                    "CASE WHEN n % 5 = 0 THEN ' w' || (n % 97) ELSE '' END), 'A') "
                    "FROM tasks t, LATERAL (SELECT t.id AS n) x"
                )
            )
        with store._engine.connect() as conn:
            autocommit = conn.execution_options(isolation_level="AUTOCOMMIT")
            autocommit.exec_driver_sql("VACUUM ANALYZE tasks")
            autocommit.exec_driver_sql("VACUUM ANALYZE task_search")
        yield store


def plans(
    store: Store, call: Callable[[], Any], match: str, planner: Sequence[str] = ()
) -> list[str]:
    """The plans PostgreSQL makes for the statements `call` sends that contain `match`, with the
    parameters they were sent with and the settings (SET LOCAL) the store made for them, after
    `planner` settings of the test's own."""
    sent: list[tuple[str, Any]] = []

    settings: list[str] = []

    def capture(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        if statement.startswith("SET LOCAL"):
            settings.append(statement)
        elif match in statement:
            sent.append((statement, params))

    event.listen(store._engine, "before_cursor_execute", capture)
    try:
        call()
    finally:
        event.remove(store._engine, "before_cursor_execute", capture)
    found = []
    with store._engine.connect() as conn:
        for setting in [*planner, *settings]:  # the store's come last, as they did
            conn.exec_driver_sql(setting)
        for statement, params in sent:
            rows = conn.exec_driver_sql("EXPLAIN " + statement, params).scalars()
            found.append("\n".join(rows))
        conn.rollback()
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


def test_a_search_by_best_match_ranks_and_counts_from_the_index_rows_alone(big: Store) -> None:
    search = Filters(text="w7", sort="relevance")
    ranked = plans(big, lambda: big.items("big", search, viewer="rita"), "ts_rank")
    counted = plans(big, lambda: big.items("big", search, viewer="rita"), "count(")
    # One statement ranks and counts; it reads no task, only the full-text index's rows.
    assert len(ranked) == 1 and counted == ranked, (ranked, counted)
    assert "task_search" in ranked[0] and " tasks" not in ranked[0], ranked[0]


@pytest.mark.parametrize("words", ["w7", "v5", "w3 w4", "nothing"])
def test_a_search_by_best_match_lists_what_the_filtered_list_does(big: Store, words: str) -> None:
    # confidence_min=0 keeps every item but takes the general way (joined to the tasks).
    fast = Filters(text=words, sort="relevance")
    general = Filters(text=words, sort="relevance", confidence_min=0.0)
    pages: dict[Filters, list[list[str]]] = {fast: [], general: []}
    counts = {}
    for filters, found in pages.items():
        after = None
        for _ in range(3):
            page = big.items("big", filters, viewer="rita", after=after, limit=40)
            found.append([i.item_id for i in page.items])
            counts[filters] = page.matches
            after = page.next
            if after is None:
                break
    assert pages[fast] == pages[general]
    assert counts[fast] == counts[general]
    expected = {"w7": COUNT_CAP, "v5": ITEMS // 997 + 1, "w3 w4": None, "nothing": 0}[words]
    if expected is not None:
        assert counts[fast] == expected
    if words == "w7":  # best match first: the word three times, then twice, then once
        assert pages[fast][0][:4] == ["i0008639", "i0051804", "i0094969", "i0000006"]


def test_counting_a_queue_takes_one_process(big: Store) -> None:
    # Parallel workers made cheap: the planner would use them here as it does at 1M items.
    cheap = ["SET LOCAL parallel_setup_cost = 0", "SET LOCAL parallel_tuple_cost = 0"]
    cheap += ["SET LOCAL min_parallel_index_scan_size = 0", "SET LOCAL enable_seqscan = off"]
    counted = plans(big, lambda: big.pending_count("big"), "count(", cheap)
    assert len(counted) == 1 and "Gather" not in counted[0], counted
    assert big.pending_count("big") == ITEMS


def test_precedents_index_keeps_no_pending_list(big: Store) -> None:
    """New precedents go straight into the GIN index, which the review page reads many times
    per item, instead of into a list of recent entries that every read scans."""
    with big._engine.connect() as conn:
        options = conn.exec_driver_sql(
            "SELECT reloptions FROM pg_class WHERE relname = 'ix_precedent_search_item'"
        ).scalar_one()
    assert options is not None and "fastupdate=off" in options, options
