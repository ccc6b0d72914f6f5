"""The queue store's own guards (issue 20, items 3, 4, 7), on a SQLite file and a real
PostgreSQL: text with NUL is refused, a queue's overlap and lease are bounded, and the access
path to a queue names no other queue."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import Engine, event

from adjudication import NotFoundError, PermissionDenied, QueueError, Store


def _item(item_id: str = "i1", **extra: Any) -> dict[str, Any]:
    return {
        "item_id": item_id,
        "item": {"prompt": "p", "response": "r"},
        "draft": {"critique": "c"},
        "draft_label": "safe",
        "confidence": 0.4,
        **extra,
    }


@pytest.fixture
def team(store: Store) -> Store:
    store.create_queue("harm", labels=["safe", "unsafe"])
    store.create_queue("free")  # any label
    store.add_user("ann", "reviewer", queues=["harm", "free"])
    store.add_user("ada", "adjudicator", queues=["harm", "free"])
    store.enqueue("harm", [_item()])
    store.enqueue("free", [_item()])
    return store


def test_text_with_a_nul_character_is_refused_before_it_reaches_the_database(team: Store) -> None:
    store = team
    cases = {
        "item_id": lambda: store.enqueue("harm", [_item("bad\x00id")]),
        "item.prompt": lambda: store.enqueue("harm", [_item("i2", item={"prompt": "a\x00b"})]),
        "draft.findings[0].quote": lambda: store.enqueue(
            "harm", [_item("i3", draft={"findings": [{"quote": "\x00"}]})]
        ),
        "labels[1]": lambda: store.create_queue("other", labels=["safe", "un\x00safe"]),
        "name": lambda: store.user("an\x00n"),
    }
    for where, call in cases.items():
        with pytest.raises(QueueError, match=r"NUL character \(\\x00\)") as refused:
            call()
        assert refused.value.message.startswith(f"{where}: "), refused.value.message
        assert refused.value.hint and "remove the NUL" in refused.value.hint
    assert store.stats("harm").pending == 1 and "other" not in [q.name for q in store.queues()]

    claim = store.claim("harm", "ann")
    assert claim is not None
    with pytest.raises(QueueError, match=r"^note: "):
        store.decide(claim.token, "edit", label="unsafe", note="looks\x00 fine")
    with pytest.raises(QueueError, match=r"^edit\.revision: "):
        store.decide(claim.token, "edit", edit={"revision": "x\x00"})
    free = store.claim("free", "ann")
    assert free is not None
    with pytest.raises(QueueError, match=r"^label: "):
        store.decide(free.token, "edit", label="my\x00label")
    with pytest.raises(QueueError, match=r"^item_id: "):
        store.task("harm", "i1\x00")
    # Nothing was stored, and the claims still stand.
    assert store.decisions("harm") == [] and store.decisions("free") == []
    assert store.decide(claim.token, "edit", label="unsafe", note="fine").label == "unsafe"
    with pytest.raises(QueueError, match=r"^after\.reason: "):
        store.reopen("harm", "i1", by="ada", reason="again\x00")
    assert store.task("harm", "i1").state == "done"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"overlap": 0}, "overlap must be between 1 and 100 reviews per item, not 0"),
        ({"overlap": 101}, "overlap must be between 1 and 100"),
        ({"overlap": 10**20}, f"overlap must be between 1 and 100 reviews per item, not {10**20}"),
        ({"lease_seconds": 0}, "lease_seconds must be between 1 and 86400"),
        ({"lease_seconds": 86401}, "lease_seconds must be between 1 and 86400"),
        (
            {"lease_seconds": 10**12},
            f"lease_seconds must be between 1 and 86400 (a day), not {10**12}",
        ),
    ],
)
def test_a_queues_overlap_and_lease_are_bounded(
    store: Store, settings: dict[str, int], message: str
) -> None:
    with pytest.raises(QueueError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        store.create_queue("wide", **settings)
    assert info.value.hint
    assert store.queues() == []


def test_the_largest_overlap_and_lease_work(store: Store) -> None:
    store.create_queue("wide", overlap=100, lease_seconds=86400)
    store.add_user("ann", "reviewer", queues=["wide"])
    store.enqueue("wide", [_item()])
    claim = store.claim("wide", "ann")
    assert claim is not None
    assert (claim.expires_at - claim.claimed_at).total_seconds() == 86400
    assert store.decide(claim.token, "accept").label == "safe"
    assert store.task("wide", "i1").state == "pending"  # 99 more reviews to go


@contextmanager
def _queries() -> Iterator[list[str]]:
    sent: list[str] = []

    def record(*args: Any) -> None:
        if args[2].split(None, 1)[0] == "SELECT":
            sent.append(args[2])

    event.listen(Engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(Engine, "before_cursor_execute", record)


def test_queue_for_sends_one_statement_and_names_no_other_queue(team: Store) -> None:
    store = team
    store.create_queue("secret")
    with _queries() as member_not, pytest.raises(PermissionDenied):
        store.queue_for("ann", "secret")
    with _queries() as missing, pytest.raises(NotFoundError) as info:
        store.queue_for("ann", "secrte")
    assert member_not == missing and len(missing) == 1
    assert info.value.hint is None and "secret" not in str(info.value).replace("secrte", "")
    # Those who may see every queue still get a suggestion where they look queues up.
    with pytest.raises(NotFoundError) as admin_view:
        store.queue("secrte")
    assert admin_view.value.hint == "did you mean 'secret'?"
    assert store.find_user("anne") is None and store.find_user("ann") == store.user("ann")
