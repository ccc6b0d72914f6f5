"""`critic queue edit | archive | unarchive | delete` on a real SQLite store."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from adjudication import Store, open_store
from critic.cli import app

runner = CliRunner()


def run(*args: str, input: str | None = None) -> Result:
    return runner.invoke(app, list(args), input=input)


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'critic.db'}"


@pytest.fixture
def store(db: str) -> Iterator[Store]:
    with open_store(db) as opened:
        opened.add_user("ann")
        opened.create_queue("q", labels=["harmless", "harmful"], members=["ann"])
        opened.enqueue("q", [{"item_id": "i1", "draft_label": "harmless",
                              "item": {"prompt": "p", "human_preference": "chosen"}}])  # fmt: skip
        yield opened


def test_edit_hides_fields_and_changes_every_setting(db: str, store: Store) -> None:
    result = run("queue", "edit", "q", "--db", db, "--hide-fields", "human_preference,source",
                 "--overlap", "2", "--blind", "--lease-seconds", "90", "--description",
                 "Harm triage", "--labels", "harmless,harmful,unsure")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "hidden fields human_preference, source" in result.output and "blind" in result.output
    q = store.queue("q")
    assert (q.hidden_fields, q.overlap, q.blind, q.lease_seconds, q.description, q.labels) == (
        ("human_preference", "source"), 2, True, 90, "Harm triage",
        ("harmless", "harmful", "unsure"),
    )  # fmt: skip
    assert store.task("q", "i1").item["human_preference"] == "chosen"  # kept for exports
    cleared = run("queue", "edit", "q", "--db", db, "--hide-fields", "", "--not-blind", "--json")
    assert cleared.exit_code == 0, cleared.output
    shown = json.loads(cleared.output)
    assert shown["hidden_fields"] == [] and shown["blind"] is False
    history = run("queue", "history", "q", "--db", db)
    assert history.exit_code == 0, history.output
    assert history.output.count("queue_edited") == 2 and "hidden_fields" in history.output


def test_edit_refuses_dropping_a_label_in_use_with_one_message(db: str, store: Store) -> None:
    result = run("queue", "edit", "q", "--db", db, "--labels", "harmful,other")
    assert result.exit_code == 1
    assert "uses the labels harmless" in result.output and "Traceback" not in result.output
    assert "hint: keep those labels in the list" in result.output


def test_archive_hides_the_queue_from_the_list_and_unarchive_brings_it_back(
    db: str, store: Store
) -> None:
    assert run("queue", "archive", "q", "--db", db).exit_code == 0
    listed = run("queue", "list", "--db", db, "--json")
    assert json.loads(listed.output) == []
    every = json.loads(run("queue", "list", "--db", db, "--json", "--archived").output)
    assert [q["name"] for q in every] == ["q"] and every[0]["archived_at"] is not None
    refused = run("review", "next", "--queue", "q", "--as", "ann", "--db", db, input="q\n")
    assert refused.exit_code == 1 and "archived: it takes no claims" in refused.output
    assert run("queue", "unarchive", "q", "--db", db).exit_code == 0
    assert [q["name"] for q in json.loads(run("queue", "list", "--db", db, "--json").output)] == [
        "q"
    ]


def test_delete_needs_an_empty_queue_or_force_with_confirmation(db: str, store: Store) -> None:
    refused = run("queue", "delete", "q", "--db", db)
    assert refused.exit_code == 1 and "only an empty queue is deleted without --force" in (
        refused.output
    )
    # No terminal to confirm on (CliRunner's stdin is not one): refused, with the --yes hint.
    unconfirmed = run("queue", "delete", "q", "--db", db, "--force")
    assert unconfirmed.exit_code == 2 and "--force --yes" in unconfirmed.output
    assert [q.name for q in store.queues()] == ["q"]
    gone = run("queue", "delete", "q", "--db", db, "--force", "--yes")
    assert gone.exit_code == 0 and "with 1 item(s) and 0 decision(s)" in gone.output
    assert store.queues() == []
    store.create_queue("empty")
    assert run("queue", "delete", "empty", "--db", db).exit_code == 0


def test_a_hidden_field_is_hidden_from_reviewers_and_still_exported(tmp_path: Path) -> None:
    """hh-rlhf's gold `human_preference` column: off the review screens, in the export."""
    db = f"sqlite:///{tmp_path / 'c.db'}"
    items = tmp_path / "items.jsonl"
    items.write_text("".join(
        json.dumps({"id": f"i{k}", "prompt": "Human: q", "response": f"r{k}",
                    "human_preference": f"GOLD{k}"}) + "\n" for k in range(2)
    ))  # fmt: skip
    labelled = run("label", str(items), "-c", "harmlessness", "--backend", "fake", "--db", db,
                   "-q")  # fmt: skip
    assert labelled.exit_code == 0, labelled.output
    assert run("queue", "create", "harm", "--db", db).exit_code == 0
    assert run("users", "add", "ann", "--queue", "harm", "--db", db).exit_code == 0
    hidden = run("queue", "edit", "harm", "--hide-fields", "human_preference", "--db", db)
    assert hidden.exit_code == 0, hidden.output
    routed = run("route", "--db", db, "--accept-all", "--queue", "harm")
    assert routed.exit_code == 0, routed.output
    with open_store(db) as queues:  # accept-all routes nothing to review: queue the run by hand
        from critic.review import enqueue_review, open_stores

        with open_stores(db) as (runs, opened):
            rows = [{**row, "route_reason": "audit_sample"} for row in runs.rows()]
            enqueue_review(runs, opened, "harm", rows)
        assert len(queues.tasks("harm")) == 2
    shown = run("review", "next", "--queue", "harm", "--as", "ann", "--db", db, input="q\n")
    assert "r0" in shown.output or "r1" in shown.output
    assert "GOLD" not in shown.output and "human_preference" not in shown.output
    out = tmp_path / "out.jsonl"
    exported = run("export", str(out), "--db", db, "--format", "jsonl", "--all")
    assert exported.exit_code == 0, exported.output
    inputs = [json.loads(json.loads(line)["input"]) for line in out.read_text().splitlines()]
    assert sorted(i["human_preference"] for i in inputs) == ["GOLD0", "GOLD1"]
