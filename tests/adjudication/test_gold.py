"""Gold items: each reviewer answers each once, interleaved, unseen as gold, never settled."""

from __future__ import annotations

import pytest

from adjudication.errors import QueueError
from adjudication.store import Store


def _queue(store: Store, *, overlap: int = 1, blind: bool = False, gold_rate: float = 0.25) -> None:
    store.create_queue("q", labels=["safe", "unsafe"], overlap=overlap, blind=blind,
                       gold_rate=gold_rate)  # fmt: skip
    for name in ("rita", "rick"):
        store.add_user(name, "reviewer", queues=["q"])
    store.enqueue("q", [{"item_id": f"i{k:02d}", "draft_label": "safe", "confidence": 0.5,
                         "origin": f"run/i{k:02d}"} for k in range(40)])  # fmt: skip
    assert store.add_gold("q", {"i00": "safe", "i01": "unsafe", "i02": "safe"}) == 3


def _work(store: Store, user: str, answer: str = "safe", blind: bool = False) -> list[str]:
    seen = []
    while (claim := store.claim("q", user)) is not None:
        seen.append(claim.task.item_id)
        if blind:
            store.pick(claim.token, answer)
            store.decide(claim.token, "accept", label=answer)
        else:
            store.decide(claim.token, "edit", label=answer)
    return seen


def test_each_reviewer_answers_each_gold_item_once_whatever_the_overlap(store: Store) -> None:
    _queue(store)
    rita, rick = _work(store, "rita"), _work(store, "rick")
    gold = {"i00", "i01", "i02"}
    assert sorted(set(rita) & gold) == sorted(gold) == sorted(set(rick) & gold)
    assert len(rita) == len(set(rita)) and len(rick) == len(set(rick))
    # Overlap 1: the 37 real items are split between them; gold comes on top, to both.
    assert len((set(rita) | set(rick)) - gold) == 37 and not (set(rita) & set(rick)) - gold
    # Interleaved: gold is not all at the start or all at the end of rita's items.
    first = min(rita.index(g) for g in gold)
    assert first > 0 or max(rita.index(g) for g in gold) < len(rita) - 1


def test_gold_answers_are_scored_and_never_settle_the_item(store: Store) -> None:
    _queue(store)
    _work(store, "rita", answer="safe")
    results = {(r.reviewer, r.item_id): r.correct for r in store.gold_results("q")}
    assert results == {("rita", "i00"): True, ("rita", "i01"): False, ("rita", "i02"): True}
    for item in ("i00", "i01", "i02"):
        task = store.task("q", item)
        assert task.state == "pending" and task.final_label is None
        (outcome,) = store.outcomes_for([f"run/{item}"])[f"run/{item}"]
        assert outcome.source is None and outcome.label is None  # nothing to ship


def test_a_gold_item_looks_like_any_item_to_its_reviewer(store: Store) -> None:
    _queue(store, gold_rate=0.5)
    claims = []
    while (claim := store.claim("q", "rita")) is not None and len(claims) < 12:
        claims.append(claim)
        store.decide(claim.token, "edit", label="safe")
    gold = [c for c in claims if c.task.item_id in ("i00", "i01", "i02")]
    real = [c for c in claims if c not in gold]
    assert gold and real
    for c in gold:
        assert c.task.state == "pending" and c.task.reviews == 0 and c.task.final_label is None
        assert "gold" not in repr(c).lower()


def test_in_a_blind_queue_the_pick_is_what_is_scored(store: Store) -> None:
    _queue(store, blind=True)
    _work(store, "rita", answer="unsafe", blind=True)
    results = {r.item_id: (r.answer, r.correct) for r in store.gold_results("q")}
    assert results == {"i00": ("unsafe", False), "i01": ("unsafe", True),
                       "i02": ("unsafe", False)}  # fmt: skip


def test_gold_labels_must_be_in_the_label_set_and_rates_bounded(store: Store) -> None:
    _queue(store)
    with pytest.raises(QueueError, match=r"not one of queue 'q'.s labels"):
        store.add_gold("q", {"i03": "maybe"})
    with pytest.raises(QueueError, match=r"gold rate must be between 0 and 0\.5"):
        store.set_gold_rate("q", 0.9)
    with pytest.raises(QueueError, match="not adjudicated"):
        store.promote_gold("q", ["i05"])


def test_adjudicated_items_are_promoted_to_gold(store: Store) -> None:
    store.create_queue("q", labels=["safe", "unsafe"], overlap=2)
    for name, role in (("rita", "reviewer"), ("rick", "reviewer"), ("adam", "adjudicator")):
        store.add_user(name, role, queues=["q"])  # type: ignore[arg-type]
    store.enqueue("q", [{"item_id": "x", "draft_label": "safe"}])
    for user, label in (("rita", "safe"), ("rick", "unsafe")):
        claim = store.claim("q", user)
        assert claim is not None
        store.decide(claim.token, "edit", label=label)
    claim = store.claim("q", "adam", kind="adjudication")
    assert claim is not None
    store.decide(claim.token, "edit", label="unsafe")
    assert store.promote_gold("q") == 1
    assert store.gold_labels("q") == {"x": "unsafe"}


def test_the_gold_rate_is_set_on_create_and_edit_through_the_cli(tmp_path: object) -> None:
    import json
    from pathlib import Path

    from typer.testing import CliRunner

    from critic.cli import app

    db = f"sqlite:///{Path(str(tmp_path)) / 'q.db'}"
    runner = CliRunner()
    made = runner.invoke(app, ["queue", "create", "q", "--db", db, "--gold-rate", "0.1",
                               "--json"])  # fmt: skip
    assert made.exit_code == 0, made.output
    assert json.loads(made.stdout)["gold_rate"] == 0.1
    edited = runner.invoke(app, ["queue", "edit", "q", "--db", db, "--gold-rate", "0.25",
                                 "--json"])  # fmt: skip
    assert edited.exit_code == 0, edited.output
    assert json.loads(edited.stdout)["gold_rate"] == 0.25
    refused = runner.invoke(app, ["queue", "edit", "q", "--db", db, "--gold-rate", "0.9"])
    assert refused.exit_code != 0
