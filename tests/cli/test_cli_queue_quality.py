"""`critic queue import`, `critic queue raters` and `critic queue labels` on a real SQLite
store, with PandaLM's three real annotators as the import case."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from adjudication import open_store
from adjudication.simulation import SimulatedReviewer, play, simulate_team
from critic.cli import app

runner = CliRunner()


def run(*args: str) -> Result:
    return runner.invoke(app, list(args))


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'critic.db'}"


@pytest.fixture
def pandalm_sample(shared_data: Path, tmp_path: Path) -> tuple[Path, list[dict[str, object]]]:
    """The first 120 rows of PandaLM's test set (Apache-2.0), where the annotators disagree on
    some items."""
    lines = (shared_data / "pandalm" / "testset.jsonl").read_text().splitlines()[:120]
    sample = tmp_path / "pandalm.jsonl"
    sample.write_text("\n".join(lines) + "\n")
    return sample, [json.loads(line) for line in lines]


def test_import_pandalm_annotators_then_raters_and_labels(
    db: str, pandalm_sample: tuple[Path, list[dict[str, object]]]
) -> None:
    sample, rows = pandalm_sample
    assert run("queue", "create", "panda", "--db", db, "--labels", "tie,a,b",
               "--overlap", "3").exit_code == 0  # fmt: skip
    args = ["queue", "import", "panda", str(sample), "--db", db, "--id-field", "idx",
            "--label-field", "human_labels", "--label-map", "0=tie,1=a,2=b",
            "--critic-field", "pandalm7b_result"]  # fmt: skip
    first = run(*args, "--json")
    assert first.exit_code == 0, first.output
    disagree = sum(len(set(r["human_labels"])) > 1 for r in rows)  # type: ignore[arg-type]
    assert 0 < disagree < len(rows)
    assert json.loads(first.output) == {
        "items": 120, "items_added": 120, "decisions": 360, "added": 360, "existing": 0,
        "skipped": 0, "users_added": ["human_labels.1", "human_labels.2", "human_labels.3"],
        "settled": 120 - disagree, "to_adjudicate": disagree,
    }  # fmt: skip
    again = run(*args)
    assert again.exit_code == 0, again.output
    assert "0 decision(s) imported on 120 item(s) (0 new); 360 already there" in again.output

    with open_store(db) as store:
        names = {"0": "tie", "1": "a", "2": "b"}
        for row in rows[:20]:
            decided = {d.reviewer: d.label for d in store.decisions("panda", str(row["idx"]))}
            labels = row["human_labels"]
            assert decided == {f"human_labels.{k + 1}": names[str(v)] for k, v in enumerate(labels)}  # type: ignore[arg-type]
        assert store.history("panda", "0")[-1].kind == "imported"
        assert store.task("panda", "0").draft_label == names[str(rows[0]["pandalm7b_result"])]
        assert "human_labels" not in store.task("panda", "0").item

    raters = run("queue", "raters", "panda", "--db", db, "--json")
    assert raters.exit_code == 0, raters.output
    report = json.loads(raters.output)
    assert report["queue"] == "panda"
    for r in report["reviewers"]:
        assert r["decisions"] == r["imported"] == 120
        assert set(r["gold"]) == {"n", "correct", "accuracy", "low", "high"}
        assert r["gold"]["n"] == 0 and r["median_seconds"] is None
        assert 0.8 < r["model_accuracy"] <= 1.0 and 0.5 < r["kappa"] <= 1.0
        assert r["flags"] == []
        assert len(r["peers"]) == 2

    labels = run("queue", "labels", "panda", "--db", db, "--json", "--critics-as-raters")
    assert labels.exit_code == 0, labels.output
    model = json.loads(labels.output)
    assert model["classes"] == ["tie", "a", "b"]
    assert {r["rater"] for r in model["raters"]} == {
        "critic", "human_labels.1", "human_labels.2", "human_labels.3",
    }  # fmt: skip
    assert len(model["items"]) == 120
    majority = {str(r["idx"]): names[str(r["human_majority"])] for r in rows}
    agree = sum(i["label"] == majority[i["item_id"]] for i in model["items"])
    assert agree >= 115  # the annotators outweigh the 7B judge
    text = run("queue", "labels", "panda", "--db", db)
    assert "label model of panda: 120 items" in text.output
    assert "departs from the majority vote" in text.output


def test_import_wide_and_long_csv_forms(db: str, tmp_path: Path) -> None:
    assert run("queue", "create", "q", "--db", db, "--labels", "yes,no").exit_code == 0
    wide = tmp_path / "wide.csv"
    wide.write_text("id,text,ann,bob\n1,hello,yes,no\n2,world,no,\n")
    result = run("queue", "import", "q", str(wide), "--db", db,
                 "--label-field", "ann", "--label-field", "bob")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "3 decision(s) imported on 2 item(s) (2 new)" in result.output
    long = tmp_path / "long.jsonl"
    long.write_text(
        '{"id": "3", "who": "ann", "verdict": "yes"}\n{"id": "3", "who": "cy", "verdict": "yes"}\n'
    )
    result = run("queue", "import", "q", str(long), "--db", db,
                 "--reviewer-field", "who", "--label-field", "verdict")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "new reviewers: cy" in result.output
    with open_store(db) as store:
        assert {(d.item_id, d.reviewer, d.label) for d in store.decisions("q")} == {
            ("1", "ann", "yes"), ("1", "bob", "no"), ("2", "ann", "no"),
            ("3", "ann", "yes"), ("3", "cy", "yes"),
        }  # fmt: skip
        assert store.task("q", "1").item == {"id": "1", "text": "hello"}

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "9", "ann": "yes"}\n{"id": "10", "ann": "perhaps"}\n')
    result = run("queue", "import", "q", str(bad), "--db", db, "--label-field", "ann")
    assert result.exit_code == 1
    assert f"{bad}:2: ann: label 'perhaps' is not one of queue 'q'" in result.output
    with open_store(db) as store:
        assert "9" not in {t.item_id for t in store.tasks("q")}  # nothing was imported
    result = run("queue", "import", "q", str(bad), "--db", db, "--label-field", "ann",
                 "--label-field", "x", "--reviewer-field", "who")  # fmt: skip
    assert result.exit_code == 1 and "give one --label-field with --reviewer-field" in result.output


def test_raters_flags_a_rubber_stamper_and_not_a_careful_reviewer(db: str) -> None:
    team = [SimulatedReviewer("ann", 0.95), SimulatedReviewer("stamp", None, median_seconds=2.0)]
    sim = simulate_team(60, team, labels=("yes", "no"), overlap=2, critic_accuracy=0.75,
                        gold_rate=0.0, seed=3)  # fmt: skip
    with open_store(db) as store:
        store.create_queue("harm", overlap=2, labels=["yes", "no"])
        play(store, "harm", sim)
    result = run("queue", "raters", "harm", "--db", db, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    flags = {r["name"]: Counter(f["name"] for f in r["flags"]) for r in report["reviewers"]}
    assert flags == {"ann": Counter(), "stamp": Counter({"rubber_stamp": 1, "too_fast": 1})}
    stamp = next(r for r in report["reviewers"] if r["name"] == "stamp")
    assert stamp["with_critic"] == {"n": 60, "same": 60, "rate": 1.0}
    assert stamp["baseline"]["source"] == "other reviewers' consensus"
    assert stamp["median_seconds"] < 3.0
    text = run("queue", "raters", "harm", "--db", db)
    assert "stamp: rubber_stamp: gave the critic's label on 60 of 60 decisions" in text.output
    assert "stamp: too_fast: median" in text.output
