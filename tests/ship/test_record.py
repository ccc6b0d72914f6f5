"""The final record, composed purely: what ships for each task kind and status."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from adjudication.models import OriginOutcome
from critic.constitution import load_constitution
from critic.exports.columns import names, record_row, schema
from critic.exports.files import remove_stale
from critic.ship import compose, label_set, settle_outcomes

PAIRWISE = label_set(load_constitution("harmlessness-pairwise").canonical_json())
HARM = label_set(load_constitution("harmlessness").canonical_json())


def _row(task: str, output: dict[str, Any], label: str | None = None, **extra: Any) -> dict:
    return {
        "run_id": "r1", "item_id": "i1", "task": task, "status": "drafted", "label": label,
        "score": None, "output": output, "confidence": 0.9, "components": {"label_prob": 0.9},
        "row": {"prompt": "Human: q", "a": "first", "b": "second", "response": "orig"},
        "params": {"fields": {"prompt": "prompt", "a": "a", "b": "b"}}, **extra,
    }  # fmt: skip


def _decided(label: str | None, *, edit: dict | None = None, queue: str = "q",
             source: str = "human", rejected: bool = False, at: int = 1,
             answer: str = "label") -> OriginOutcome:  # fmt: skip
    return OriginOutcome(
        origin="r1/i1", queue=queue, item_id="i1", state="done", answer=answer,  # type: ignore[arg-type]
        label=label, source=source, rejected=rejected, edit=edit, critic_label=None,  # type: ignore[arg-type]
        reviewers=("ann",), agreement=None, settled_at=datetime(2026, 1, at, tzinfo=UTC),
    )  # fmt: skip


ROUTE_REVIEW = {"decision": "review", "reason": "low_confidence", "policy_hash": "p"}
ROUTE_ACCEPT = {"decision": "accept", "reason": "confident", "policy_hash": "p"}


def test_an_edited_revision_ships_and_keeps_the_critics_beside_it() -> None:
    row = _row("revise", {"original": "orig", "revision": "critic text", "principles": ["P1"]})
    edit = _decided(None, edit={"revision": "HUMAN REVISED"}, answer="revision")
    record = compose(row, ROUTE_REVIEW, [edit], None)
    assert record.status == "decided" and record.revision == "HUMAN REVISED"
    assert record.human_edited and record.critic_revision == "critic text"
    assert record.label is None and record.label_source == "human"


def test_an_accepted_revision_ships_the_critics_text_unedited() -> None:
    row = _row("revise", {"original": "orig", "revision": "critic text"})
    record = compose(row, ROUTE_REVIEW, [_decided(None, answer="revision")], None)
    assert record.status == "decided" and record.revision == "critic text"
    assert not record.human_edited


def test_a_humans_pairwise_choice_ships_in_the_constitutions_spelling() -> None:
    judged = {"principle": "P1", "order": "ab", "preferred": "a", "prob_a": 0.8}
    row = _row("compare", {"prob_a": 0.8, "judgments": [judged]}, label="a")
    record = compose(row, ROUTE_REVIEW, [_decided("B")], PAIRWISE)
    assert (record.label, record.preferred, record.critic_label) == ("B", "b", "A")
    assert record.human_edited and record.preference_probability is None
    assert record.responses == ("first", "second")
    accepted = compose(row, ROUTE_ACCEPT, [], PAIRWISE)
    assert (accepted.status, accepted.label, accepted.preferred) == ("accepted", "A", "a")
    assert accepted.preference_probability == 0.8 and accepted.guaranteed
    assert accepted.order_verdicts[0].preferred == "a"


def test_pending_rejected_and_failed_ship_nothing() -> None:
    row = _row("label", {}, label="harmful")
    pending = compose(row, ROUTE_REVIEW, [], HARM)
    assert (pending.status, pending.label, pending.critic_label) == ("pending", None, "harmful")
    rejected = compose(row, ROUTE_REVIEW, [_decided(None, rejected=True)], HARM)
    assert (rejected.status, rejected.label) == ("rejected", None)
    failed = compose({**row, "status": "failed", "reason": "parse_failure"}, ROUTE_REVIEW, [], HARM)
    assert (failed.status, failed.failure_reason) == ("failed", "parse_failure")


def test_several_queues_follow_one_rule_adjudicated_then_newest() -> None:
    newest = _decided("harmless", queue="a", at=3)
    older = _decided("harmful", queue="b", at=2)
    assert settle_outcomes([older, newest]) == (newest, True)
    adjudicated = _decided("harmful", queue="c", at=1, source="adjudicated")
    assert settle_outcomes([newest, adjudicated]) == (adjudicated, True)
    assert settle_outcomes([newest, _decided("harmless", queue="z", at=1)])[1] is False


def test_record_columns_and_types_do_not_depend_on_the_data() -> None:
    sparse = record_row(compose(_row("label", {}, label=None), None, [], None))
    full = record_row(compose(_row("compare", {"prob_a": 0.2}, label="b"), ROUTE_ACCEPT, [],
                              PAIRWISE))  # fmt: skip
    assert list(sparse) == list(full) == names() == schema().names
    assert json.loads(sparse["input"])["prompt"] == "Human: q"  # input fields in one namespace


def test_a_killed_exports_leftovers_are_removed_by_the_next(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    dead = tmp_path / ".out.jsonl.999999999-abc.tmp"  # no such process
    dead.write_text("half")
    live = tmp_path / f".out.jsonl.{1}-abc.tmp"  # pid 1 runs: another export in progress
    live.write_text("busy")
    assert remove_stale(out) == [dead]
    assert not dead.exists() and live.exists()


def test_several_reviewers_without_adjudication_ship_the_label_models_answer() -> None:
    from adjudication.labelmodel import ItemPosterior

    row = _row("label", {}, label="harmless")
    waiting = OriginOutcome(
        origin="r1/i1", queue="q", item_id="i1", state="adjudication", answer="label",
        label=None, source=None, rejected=False, edit=None, critic_label="harmless",
        reviewers=("ann", "bob", "cy"), agreement=1 / 3, settled_at=None,
    )  # fmt: skip
    fitted = ItemPosterior("i1", {"harmful": 0.8, "harmless": 0.2}, "harmful", 0.8,
                           "harmless", True, 3, False)  # fmt: skip
    record = compose(row, ROUTE_REVIEW, [waiting], HARM, {("q", "i1"): fitted})
    assert (record.status, record.label, record.label_source) == ("decided", "harmful", "human")
    assert record.posterior == 0.8 and record.majority_disagrees
    assert record.reviewers == ("ann", "bob", "cy")
    alone = compose(row, ROUTE_REVIEW, [waiting], HARM)  # no model: it waits for adjudication
    assert alone.status == "pending" and alone.posterior is None


def test_a_failed_revision_a_reviewer_wrote_ships_against_the_inputs_reply() -> None:
    row = {**_row("revise", {}), "status": "failed", "reason": "parse_failure",
           "params": {"fields": {"prompt": "prompt", "response": "response"}}}  # fmt: skip
    written = _decided(None, edit={"revision": "A safe reply."}, answer="revision")
    record = compose(row, ROUTE_REVIEW, [written], None)
    assert (record.status, record.revision, record.original) == ("decided", "A safe reply.", "orig")
    assert record.human_edited and record.critic_revision is None
