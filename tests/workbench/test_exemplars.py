"""From decisions to exemplars: decided queue items become a new constitution version's examples,
which lints clean and whose impact `diff --impact` measures; `critic precedents` prints the
decided items most like one item."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from adjudication import open_store as open_queue_store
from critic.cli import app
from critic.constitution import load_constitution
from critic.store import open_store
from critic.tasks.label import label
from critic.workbench import impact
from critic.workbench.exemplars import next_version

from .test_workbench import HARM, items, policy_backend

runner = CliRunner()


def _queue(tmp_path: Path) -> str:
    """A labelled run of HARM in c.db, and a queue there whose scam items cite H2."""
    db = str(tmp_path / "c.db")
    store = open_store(db)
    label(items(tmp_path), HARM, policy_backend(), store)
    store.close()
    url = f"sqlite:///{db}"
    with open_queue_store(url) as queues:
        queues.add_user("adam", "adjudicator")
        queues.create_queue("harm", labels=["harmless", "harmful"], members=["adam"])
        queues.enqueue(
            "harm",
            [
                {
                    "item_id": f"i{k}",
                    "item": {"id": f"i{k}", "prompt": "Human: help", "response": f"a scam {k}"},
                    "draft": {"principles": ["H2"], "constitution": HARM.hash,
                              "fields": {"prompt": "prompt", "response": "response"}},
                    "draft_label": "harmless",
                    "confidence": 0.3,
                    "principle_ids": ["H2"],
                }
                for k in (0, 3, 6)
            ],
        )  # fmt: skip
        for k, note in ((0, "scams are fraud: <b>harmful</b>"), (3, None)):
            claim = queues.claim("harm", "adam", kind="review")
            assert claim is not None and claim.task.item_id == f"i{k}"
            queues.decide(claim.token, "edit", label="harmful", note=note)
        queues.mark_exemplar("harm", "i0", by="adam")
    return url


def test_decided_items_become_examples_of_the_principles_they_cite(tmp_path: Path) -> None:
    db = _queue(tmp_path)
    listed = runner.invoke(
        app, ["constitution", "examples", "candidates", "--queue", "harm", "--db", db, "--json"]
    )
    assert listed.exit_code == 0, listed.output
    assert [c["item_id"] for c in json.loads(listed.stdout)] == ["i0"]
    out = tmp_path / "harm-1.1.yaml"
    made = runner.invoke(
        app,
        ["constitution", "examples", "add", "harmlessness", "--queue", "harm", "--candidates",
         "--item", "i3", "-o", str(out), "--db", db],
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    assert runner.invoke(app, ["constitution", "lint", str(out)]).exit_code == 0
    new = load_constitution(out)
    assert new.version == "1.1" and new.id == HARM.id
    examples = new.principle("H2").examples
    assert [(e.response, e.label, e.explanation) for e in examples] == [
        ("a scam 3", "harmful", None),  # --item first, then the candidates
        ("a scam 0", "harmful", "scams are fraud: <b>harmful</b>"),
    ]
    assert examples[1].prompt == "Human: help"
    assert yaml.safe_load(out.read_text())["version"] == "1.1"  # quoted: stays text
    # What it flips: the fake critic calls scams harmful once the prompt mentions "scams",
    # which the first example's reason now does.
    store = open_store(db.removeprefix("sqlite:///"))
    report = impact(HARM, new, store, policy_backend())
    assert report.mode == "cited" and report.by_principle["H2"]["changed"]
    assert report.transitions == {"harmless -> harmful": 10}


def test_an_undecided_item_is_refused_with_the_item_named(tmp_path: Path) -> None:
    db = _queue(tmp_path)
    out = tmp_path / "x.yaml"
    pending = runner.invoke(
        app,
        ["constitution", "examples", "add", "harmlessness", "--queue", "harm", "--item", "i6",
         "-o", str(out), "--db", db],
    )  # fmt: skip
    assert pending.exit_code == 2  # a usage error
    assert "queue 'harm', item 'i6' is not decided yet (pending)" in pending.output
    assert not out.exists()


def test_next_version() -> None:
    assert [next_version(v) for v in ("1.0", "2", "1.9", "v3-beta", "draft")] == [
        "1.1", "3", "1.10", "v4-beta", "draft.1"
    ]  # fmt: skip


def test_critic_precedents_prints_similar_decided_items(tmp_path: Path) -> None:
    db = _queue(tmp_path)
    shown = runner.invoke(app, ["precedents", "harm", "i6", "--db", db, "--json"])
    assert shown.exit_code == 0, shown.output
    found = json.loads(shown.stdout)
    assert {p["item_id"] for p in found} == {"i0", "i3"}
    assert found[0]["decided_by"] == ["adam"] and found[0]["label"] == "harmful"
    table = runner.invoke(app, ["precedents", "harm", "i6", "--db", db])
    assert table.exit_code == 0 and "<b>harmful</b>" in table.output  # text, not markup
    missing = runner.invoke(app, ["precedents", "harm", "nope", "--db", db])
    assert missing.exit_code == 1 and "has no item 'nope'" in missing.output
