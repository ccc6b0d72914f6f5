"""Many reviewers at once, each with its own connection pool, until the queue is empty.

Reviewers decide with random labels (so many items need adjudication), sometimes skip, release
or escalate, and some walk away from a claim without a word. The clock only moves between
phases, so a lease runs out exactly when a phase ends and the next one starts: abandoned items
must then come back, and every item must end with exactly `overlap` reviews by distinct people,
plus one adjudication where the reviews disagree.
"""

from __future__ import annotations

import random
import threading
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from adjudication import REJECTED, LeaseError, Store, open_store
from adjudication.testing import FakeClock, PostgresServer

OVERLAP = 2
LEASE = 60


@dataclass
class Log:
    lock: threading.Lock = field(default_factory=threading.Lock)
    abandoned: list[tuple[str, str]] = field(default_factory=list)
    errors: list[BaseException] = field(default_factory=list)
    decided: Counter[str] = field(default_factory=Counter)


def review(store: Store, name: str, seed: int, flaky: bool, log: Log) -> None:
    """Claim and decide until there is nothing left for this reviewer in this phase."""
    rng = random.Random(seed)
    while (claim := store.claim("load", name, kind="review")) is not None:
        roll = rng.random()
        if flaky and roll < 0.15:
            with log.lock:
                log.abandoned.append((claim.task.item_id, claim.token))
            return  # walks away: no release, no heartbeat
        if roll < 0.20:
            store.skip(claim.token)
        elif roll < 0.25:
            store.release(claim.token)
        elif roll < 0.28:
            store.decide(claim.token, "escalate", note="not sure")
        elif roll < 0.33:
            store.decide(claim.token, "reject")
        else:
            label = rng.choice(["safe", "unsafe"])
            store.decide(claim.token, "accept" if label == "safe" else "edit", label=label)
        with log.lock:
            log.decided[name] += 1


def adjudicate(store: Store, name: str, log: Log, reviewers_done: threading.Event) -> None:
    """Take adjudications as they appear until the reviewers of this phase have stopped."""
    while True:
        claim = store.claim("load", name, kind="adjudication")
        if claim is None:
            if reviewers_done.is_set():
                return
            reviewers_done.wait(0.01)
            continue
        labels = {d.label for d in claim.answers if d.label is not None}
        store.decide(claim.token, "edit", label=sorted(labels)[0] if labels else "unsafe")


def guarded(log: Log, target: object, *args: object) -> threading.Thread:
    def run() -> None:
        try:
            target(*args)  # type: ignore[operator]
        except BaseException as exc:  # reported by the test, not lost in a thread
            with log.lock:
                log.errors.append(exc)

    return threading.Thread(target=run)


def run_until_empty(url: str, reviewers: int, items: int) -> None:
    clock = FakeClock()
    with open_store(url, clock=clock) as admin:
        admin.create_queue("load", overlap=OVERLAP, lease_seconds=LEASE, labels=["safe", "unsafe"])
        names = [f"r{i:02d}" for i in range(reviewers)]
        for name in names:
            admin.add_user(name, queues=["load"])
        adjudicators = ["adj0", "adj1"]
        for name in adjudicators:
            admin.add_user(name, "adjudicator", queues=["load"])
        admin.enqueue(
            "load",
            [
                {
                    "item_id": f"i{i:04d}",
                    "draft_label": "safe",
                    "confidence": (i * 7919 % 100) / 100,
                }
                for i in range(items)
            ],
        )
    # One store (own engine and pool) per person, as if each ran their own process.
    stores = {name: open_store(url, clock=clock) for name in names + adjudicators}
    log = Log()
    try:
        for phase in range(30):
            done = threading.Event()
            workers = [
                guarded(log, review, stores[name], name, phase * 1000 + i, i % 2 == 0, log)
                for i, name in enumerate(names)
            ]
            judges = [guarded(log, adjudicate, stores[n], n, log, done) for n in adjudicators]
            for thread in workers + judges:
                thread.start()
            for thread in workers:
                thread.join()
            done.set()
            for thread in judges:
                thread.join()
            assert not log.errors, log.errors
            if stores[names[0]].stats("load").done == items:
                break
            clock.advance(LEASE)  # every claim still held now is abandoned: let it lapse
        check(stores[names[0]], items, log)
    finally:
        for store in stores.values():
            store.close()


def check(store: Store, items: int, log: Log) -> None:
    tasks = store.tasks("load")
    assert len(tasks) == items
    assert {t.state for t in tasks} == {"done"}
    by_item = defaultdict(list)
    for decision in store.decisions("load"):
        by_item[decision.item_id].append(decision)
    for task in tasks:
        reviews = [d for d in by_item[task.item_id] if d.kind == "review"]
        rulings = [d for d in by_item[task.item_id] if d.kind == "adjudication"]
        assert len(reviews) == OVERLAP, task.item_id
        assert len({d.reviewer for d in reviews}) == OVERLAP, task.item_id
        answers = {REJECTED if d.action == "reject" else d.label for d in reviews}
        disputed = len(answers) > 1 or any(d.action == "escalate" for d in reviews)
        assert len(rulings) == (1 if disputed else 0), task.item_id
        assert task.final_source == ("adjudicated" if disputed else "human")
    assert log.abandoned, "the scenario should have abandoned some claims"
    for item_id, token in log.abandoned:
        kinds = [e.kind for e in store.history("load", item_id)]
        assert "lease_expired" in kinds, item_id
        with pytest.raises(LeaseError):
            store.decide(token, "accept")
    outcomes = store.outcomes("load")
    assert all(o.source in ("human", "adjudicated") for o in outcomes)


def test_eight_reviewers_empty_a_sqlite_queue(tmp_path: Path) -> None:
    run_until_empty(f"sqlite:///{tmp_path / 'load.db'}", reviewers=8, items=120)


@pytest.mark.postgres
def test_thirty_two_reviewers_empty_a_postgres_queue(postgres_server: PostgresServer) -> None:
    run_until_empty(postgres_server.create_database(), reviewers=32, items=300)


def test_one_reviewer_in_many_tabs_holds_one_claim(store_url: str) -> None:
    with open_store(store_url) as admin:
        admin.create_queue("load", overlap=2)
        admin.add_user("ann", queues=["load"])
        admin.enqueue("load", [{"item_id": f"i{i}"} for i in range(10)])
    tabs = [open_store(store_url) for _ in range(8)]
    tokens: list[str] = []
    log = Log()
    start = threading.Barrier(len(tabs))

    def open_tab(store: Store) -> None:
        start.wait()
        claim = store.claim("load", "ann")
        assert claim is not None
        with log.lock:
            tokens.append(claim.token)

    threads = [guarded(log, open_tab, tab) for tab in tabs]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not log.errors, log.errors
        assert len(tokens) == 8 and len(set(tokens)) == 1
        assert tabs[0].stats("load").claimed == 1
    finally:
        for tab in tabs:
            tab.close()
