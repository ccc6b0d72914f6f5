"""`decide_in_bulk` writes exactly what claiming and deciding each task one by one writes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from adjudication import QueueError, Store, open_store
from adjudication.schema import claims, decisions, events, tasks
from adjudication.testing import BulkDecision, FakeClock, decide_in_bulk

LABELS = ["safe", "unsafe", "unclear"]

# item -> (action, label, edit, note): every kind of decision one review settles.
PLAN: dict[str, tuple[Any, str | None, dict[str, Any] | None, str | None]] = {
    "item-0": ("accept", None, None, None),
    "item-1": ("edit", "unsafe", None, "not safe at all"),
    "item-2": ("reject", None, None, "garbled"),
    "item-3": ("edit", "unclear", {"critique": "better critique"}, None),
    "item-4": ("accept", None, None, "fine"),
    "rev-0": ("accept", None, None, None),
    "rev-1": ("edit", None, {"revision": "HUMAN REVISED TEXT"}, None),
    "rev-2": ("reject", None, None, None),
}


def tasks_to_queue() -> list[dict[str, Any]]:
    labelled = [
        {"item_id": f"item-{i}", "item": {"prompt": f"p{i}"}, "draft": {"critique": f"c{i}"},
         "draft_label": "safe", "confidence": 0.99 if i == 5 else 0.2 + i / 10,
         "route_reason": "low_confidence",
         "principle_ids": ["H1"], "origin": f"run-1/item-{i}"}
        for i in range(6)
    ]  # fmt: skip
    revisions = [
        {"item_id": f"rev-{i}", "item": {"prompt": f"q{i}"}, "draft": {"revision": f"v{i}"},
         "confidence": 0.9 - i / 10, "route_reason": "low_confidence", "answer": "revision",
         "origin": f"run-2/rev-{i}"}
        for i in range(3)
    ]  # fmt: skip
    return labelled + revisions


@pytest.fixture
def twin_urls(store_url: str, request: pytest.FixtureRequest, tmp_path: Any) -> tuple[str, str]:
    """Two new databases of the same kind."""
    if store_url.startswith("sqlite"):
        return store_url, f"sqlite:///{tmp_path / 'bulk.db'}"
    return store_url, request.getfixturevalue("postgres_server").create_database()


@pytest.fixture
def twins(twin_urls: tuple[str, str]) -> Iterator[tuple[Store, Store]]:
    """The same queue in two databases, on clocks that read the same time."""
    opened = []
    for url in twin_urls:
        store = open_store(url, clock=FakeClock())
        store.create_queue("harm", labels=LABELS)
        store.add_user("ann", "reviewer", queues=["harm"])
        store.enqueue("harm", tasks_to_queue())
        opened.append(store)
    yield opened[0], opened[1]
    for store in opened:
        store.close()


def dump(store: Store) -> dict[str, Any]:
    """Every row the decisions wrote, keyed by task (row ids and claim tokens left out)."""
    with store._engine.connect() as conn:
        task_rows = {r["id"]: dict(r) for r in conn.execute(select(tasks)).mappings()}
        claim_rows = list(conn.execute(select(claims)).mappings())
        decision_rows = list(conn.execute(select(decisions)).mappings())
        event_rows = list(conn.execute(select(events)).mappings())
    task_of_claim = {r["id"]: r["task_id"] for r in claim_rows}
    task_of_decision = {r["id"]: r["task_id"] for r in decision_rows}

    def item(task_id: int) -> str:
        return str(task_rows[task_id]["item_id"])

    def event(r: Any) -> tuple[str, str, str]:
        after = dict(r["after"] or {})
        if "claim" in after:
            after["claim"] = item(task_of_claim[after["claim"]])
        if "decision" in after:
            after["decision"] = item(task_of_decision[after["decision"]])
        row = {**r, "after": after, "task_id": item(r["task_id"])}
        del row["id"]
        return (row["task_id"], row["kind"], repr(sorted(row.items())))

    return {
        "tasks": {r["item_id"]: {k: v for k, v in r.items() if k != "id"}
                  for r in task_rows.values()},
        "claims": {item(r["task_id"]): {k: v for k, v in r.items() if k not in ("id", "token")}
                   | {"task_id": item(r["task_id"])} for r in claim_rows},
        "decisions": {item(r["task_id"]): {k: v for k, v in r.items()
                                           if k not in ("id", "claim_id", "task_id")}
                      for r in decision_rows},
        "events": sorted(event(r) for r in event_rows if r["task_id"] is not None),
    }  # fmt: skip


def test_bulk_decisions_write_what_claim_and_decide_write(twins: tuple[Store, Store]) -> None:
    one_by_one, bulk = twins
    for _ in PLAN:  # item-5 is the most confident: claimed last, so never
        claim = one_by_one.claim("harm", "ann")
        assert claim is not None
        action, label, edit, note = PLAN[claim.task.item_id]
        one_by_one.decide(claim.token, action, label=label, edit=edit, note=note, seconds=7.0)

    plan = [BulkDecision(item_id, *decision) for item_id, decision in PLAN.items()]
    assert decide_in_bulk(bulk, "harm", "ann", plan, seconds=7.0, chunk=3) == len(PLAN)

    expected, written = dump(one_by_one), dump(bulk)
    assert written["tasks"] == expected["tasks"]
    assert written["claims"] == expected["claims"]
    assert written["decisions"] == expected["decisions"]
    assert written["events"] == expected["events"]
    assert written["tasks"]["rev-1"]["final_edit"] == {"revision": "HUMAN REVISED TEXT"}
    assert written["tasks"]["item-1"]["final_label"] == "unsafe"
    assert written["tasks"]["item-5"]["state"] == "pending"  # not in the plan: left alone
    origins = [t["origin"] for t in tasks_to_queue()]
    assert bulk.outcomes_for(origins) == one_by_one.outcomes_for(origins)


def test_bulk_decisions_are_checked_by_the_queue_rules(twins: tuple[Store, Store]) -> None:
    _, bulk = twins
    with pytest.raises(QueueError, match="'maybe' is not one of queue 'harm'"):
        decide_in_bulk(bulk, "harm", "ann", [BulkDecision("item-0", "edit", "maybe")])
    with pytest.raises(QueueError, match="revision: accept takes no label"):
        decide_in_bulk(bulk, "harm", "ann", [BulkDecision("rev-0", "accept", "safe")])
    decide_in_bulk(bulk, "harm", "ann", [BulkDecision("item-0", "accept")])
    with pytest.raises(QueueError, match="'item-0' of queue 'harm' is done"):
        decide_in_bulk(bulk, "harm", "ann", [BulkDecision("item-0", "accept")])
    bulk.create_queue("pairs", overlap=2, labels=LABELS)
    bulk.add_members("pairs", ["ann"])
    with pytest.raises(QueueError, match="takes 2 review"):
        decide_in_bulk(bulk, "pairs", "ann", [BulkDecision("item-0", "accept")])
