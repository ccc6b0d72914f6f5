"""Label Studio without a server: `critic export --format label-studio` writes what a project
imports, and `critic ls import` brings a saved Label Studio export back as decisions that
calibration, quality and every export read like the web app's.

`data/label-studio-1.23.2-export.json` is a real export (`GET /api/projects/ID/export?exportType=
JSON&download_all_tasks=true`) of a project critic pushed to Label Studio 1.23.2, annotated by two
users (ids 2 and 3): task 14 both `harmful`; task 15 `harmless` and `harmful`; task 16 `maybe` (a
label the constitution does not have) and a skip. Its origins name the run it was pushed from;
the tests put their own run's id in their place.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from adjudication.store import open_store as open_queues
from critic.cli import app
from critic.errors import UsageError
from critic.exports import export_db
from critic.labelstudio.config import Layout, labeling_config
from critic.labelstudio.sync import import_export
from critic.review import audit_quality, human_judgments, open_stores
from critic.store import open_store
from tests.labelstudio.helpers import routed_run

runner = CliRunner()
SAVED = Path(__file__).parent / "data" / "label-studio-1.23.2-export.json"
SAVED_RUN = "c5696e839859"


def saved_export(tmp_path: Path, run: str) -> Path:
    """The saved export, its origins pointing at `run`."""
    path = tmp_path / "export.json"
    path.write_text(SAVED.read_text().replace(f'"{SAVED_RUN}/', f'"{run}/'))
    return path


def ls_export(db: str, out: Path, *extra: str) -> Any:
    result = runner.invoke(app, ["export", "--format", "label-studio", str(out), "--db", db,
                                 "-q", *extra])  # fmt: skip
    return result


# -- out ------------------------------------------------------------------------------------------


def test_the_export_is_a_folder_of_tasks_awaiting_review_and_their_labeling_config(
    tmp_path: Path,
) -> None:
    db = f"sqlite:///{tmp_path / 'c.db'}"
    run = routed_run(tmp_path, db)
    out = tmp_path / "ls"
    result = ls_export(db, out)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["config.xml", "tasks.json"]
    tasks = json.loads((out / "tasks.json").read_text())
    assert [t["data"]["critic_origin"] for t in tasks] == [f"{run}/i{k}" for k in range(5)]
    assert {t["data"]["critic_status"] for t in tasks} == {"pending"}
    store = open_store(db)
    stored = store.run(run)
    content = store.constitution_content(stored.constitution_hash)
    store.close()
    assert content is not None
    layout = Layout.of(content, {k: v for k, v in (stored.params.get("fields") or {}).items() if v})
    assert (out / "config.xml").read_text() == labeling_config(layout)
    for task in tasks:
        (prediction,) = task["predictions"]
        assert prediction["model_version"] == f"fake-model:{stored.constitution_hash[:12]}"
        assert prediction["score"] == task["data"]["critic_confidence"]
        (result_,) = prediction["result"]
        assert result_["type"] == "choices"
        assert result_["value"]["choices"][0] in layout.labels


def test_decided_items_leave_the_default_export_and_all_keeps_them_with_their_status(
    tmp_path: Path,
) -> None:
    db = f"sqlite:///{tmp_path / 'c.db'}"
    run = routed_run(tmp_path, db)
    # i0: both annotators agree; i2: they disagree, and two reviews ship the label model's
    # answer until an adjudicator decides; i4: one label outside the constitution and a skip.
    import_export(db, saved_export(tmp_path, run), overlap=2)
    assert ls_export(db, tmp_path / "ls").exit_code == 0
    pending = json.loads((tmp_path / "ls" / "tasks.json").read_text())
    assert [t["data"]["id"] for t in pending] == ["i1", "i3", "i4"]
    assert ls_export(db, tmp_path / "all", "--all").exit_code == 0
    every = json.loads((tmp_path / "all" / "tasks.json").read_text())
    assert [(t["data"]["id"], t["data"]["critic_status"]) for t in every] == [
        ("i0", "decided"), ("i1", "pending"), ("i2", "decided"), ("i3", "pending"),
        ("i4", "pending")]  # fmt: skip


def test_an_export_replaces_its_earlier_one_and_never_a_folder_of_other_files(
    tmp_path: Path,
) -> None:
    db = f"sqlite:///{tmp_path / 'c.db'}"
    routed_run(tmp_path, db)
    out = tmp_path / "ls"
    assert export_db(db, out, "label-studio").count == 5
    assert export_db(db, out, "label-studio").count == 5
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith((".ls", "ls"))) == [
        "ls"
    ]
    home = tmp_path / "home"
    home.mkdir()
    (home / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="something other than a label-studio export"):
        export_db(db, home, "label-studio")
    assert (home / "notes.txt").read_text() == "mine"


def test_an_interrupted_export_keeps_the_previous_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import critic.exports.label_studio as module

    db = f"sqlite:///{tmp_path / 'c.db'}"
    routed_run(tmp_path, db)
    out = tmp_path / "ls"
    export_db(db, out, "label-studio")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    calls: list[Any] = []

    def task_then_crash(record: Any, layout: Any) -> Any:
        calls.append(record)
        if len(calls) > 2:
            raise KeyboardInterrupt
        return {"data": {}}

    monkeypatch.setattr(module, "to_task", task_then_crash)
    with pytest.raises(KeyboardInterrupt):
        export_db(db, out, "label-studio")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".ls")] == []


def test_runs_that_need_different_projects_are_refused(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'c.db'}"
    routed_run(tmp_path, db)
    routed_run(tmp_path, db, "helpfulness", name="rubric")
    result = ls_export(db, tmp_path / "ls", "--all-runs")
    assert result.exit_code == 2
    assert "need different Label Studio projects" in result.output


# -- in -------------------------------------------------------------------------------------------


def test_a_saved_export_comes_in_as_decisions_with_overlap_skips_and_problems(
    tmp_path: Path,
) -> None:
    db = f"sqlite:///{tmp_path / 'c.db'}"
    run = routed_run(tmp_path, db)
    result = runner.invoke(app, ["ls", "import", str(saved_export(tmp_path, run)), "--db", db,
                                 "--queue", "ls-harm", "--overlap", "2", "--annotator",
                                 "2=ann@lab.org", "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert (summary["tasks"], summary["annotations"], summary["enqueued"]) == (3, 5, 3)
    assert (summary["decisions"], summary["skips"]) == (4, 1)
    assert (summary["settled"], summary["to_adjudicate"]) == (1, 1)
    assert summary["users_added"] == ["ann-lab.org", "label-studio-user-3"]
    assert summary["problems"] == [
        "task 16, annotation 15: label 'maybe' is not in the constitution (harmless, harmful)"
    ]
    with open_queues(db) as queues:
        queue = queues.queue("ls-harm")
        assert (queue.overlap, queue.labels) == (2, ("harmless", "harmful"))
        assert queues.task("ls-harm", "i0").final_label == "harmful"
        assert queues.task("ls-harm", "i2").state == "adjudication"
        skipped = queues.task("ls-harm", "i4")
        assert (skipped.state, skipped.reviews) == ("pending", 0)
        lines = {(d.item_id, d.reviewer): d for d in queues.decision_lines("ls-harm")}
        assert lines[("i0", "ann-lab.org")].seconds == 4.5
        assert lines[("i0", "ann-lab.org")].decided_at.isoformat().startswith("20")
        pair = queues.agreement("ls-harm").pairs[("ann-lab.org", "label-studio-user-3")]
        assert (pair.items, pair.percent) == (2, 0.5)


def test_importing_the_same_export_again_changes_nothing(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'c.db'}"
    run = routed_run(tmp_path, db)
    saved = saved_export(tmp_path, run)
    first = import_export(db, saved, overlap=2)
    out = tmp_path / "a.jsonl"
    export_db(db, out, "jsonl", include_all=True)
    with open_queues(db) as queues:
        history = [len(queues.history("label-studio", f"i{k}")) for k in (0, 2, 4)]
    again = import_export(db, saved, overlap=2)
    assert (again.enqueued, again.decisions, again.skips, again.users_added) == (0, 0, 0, ())
    assert again.existing == first.decisions + first.skips
    export_db(db, tmp_path / "b.jsonl", "jsonl", include_all=True)
    assert (tmp_path / "b.jsonl").read_text() == out.read_text()
    with open_queues(db) as queues:
        assert [len(queues.history("label-studio", f"i{k}")) for k in (0, 2, 4)] == history


def test_label_studio_decisions_reach_exports_calibration_and_quality(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'c.db'}"
    run = routed_run(tmp_path, db, audit=1.0)  # every item accepted and audited
    import_export(db, saved_export(tmp_path, run), overlap=2)
    out = tmp_path / "out.jsonl"
    assert export_db(db, out, "jsonl", run=run).count >= 1
    rows = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert rows["i0"]["status"] == "decided" and rows["i0"]["label"] == "harmful"
    assert rows["i0"]["label_source"] == "human"
    assert rows["i0"]["reviewers"] == ["label-studio-user-2", "label-studio-user-3"]
    # i0 settled by agreement; i2 by the label model over its two reviews
    decided = [rows[i] for i in ("i0", "i2")]
    assert all(r["status"] == "decided" for r in decided)
    with open_stores(db) as (store, queues):
        scores, agree = human_judgments(store, queues, [run])
        quality = audit_quality(store, queues, [run])
    assert scores == [r["confidence"] for r in decided]
    assert agree == [r["critic_label"] == r["label"] for r in decided]
    assert quality.n_audited == 2
    assert quality.n_agree == sum(agree)


def test_a_file_that_is_not_a_label_studio_export_says_so(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'c.db'}"
    routed_run(tmp_path, db)
    bad = tmp_path / "tasks.csv"
    bad.write_text("id,text\n1,hi\n")
    result = runner.invoke(app, ["ls", "import", str(bad), "--db", db])
    assert result.exit_code == 2
    assert "not JSON" in result.output and "export the project from Label Studio as JSON" in (
        result.output
    )
    listed = tmp_path / "min.json"
    listed.write_text(json.dumps({"tasks": []}))
    result = runner.invoke(app, ["ls", "import", str(listed), "--db", db])
    assert "not a Label Studio JSON export" in result.output
    wrong = runner.invoke(app, ["ls", "import", str(listed), "--db", db, "--annotator", "ann"])
    assert wrong.exit_code == 2 and "is not ID=EMAIL" in wrong.output


def test_label_studio_decisions_are_posted_to_webhooks_with_their_own_time(
    tmp_path: Path,
) -> None:
    from adjudication.webhooks import Sender

    db = f"sqlite:///{tmp_path / 'c.db'}"
    run = routed_run(tmp_path, db)
    posted: list[dict[str, Any]] = []

    def post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
        posted.append(json.loads(body))
        return 200

    with open_queues(db) as queues:
        sender = Sender(queues, "http://127.0.0.1:9/hook", post=post)
        import_export(db, saved_export(tmp_path, run), overlap=2)
        assert sender.send_due() == 4
    saved = {a["id"]: a for t in json.loads(SAVED.read_text()) for a in t["annotations"]}
    first = posted[0]
    assert (first["queue"], first["origin"], first["reviewer"], first["label"]) == (
        "label-studio", f"{run}/i0", "label-studio-user-2", "harmful")  # fmt: skip
    assert first["time"].startswith(saved[min(saved)]["updated_at"][:19])
    assert [p["state"] for p in posted] == ["pending", "done", "pending", "adjudication"]


def test_an_edited_revision_comes_back_as_an_edit_and_an_unchanged_one_as_accepted(
    tmp_path: Path,
) -> None:
    db = f"sqlite:///{tmp_path / 'c.db'}"
    run = routed_run(tmp_path, db, "cai-principles", items=2)
    out = tmp_path / "ls"
    export_db(db, out, "label-studio")
    tasks = json.loads((out / "tasks.json").read_text())
    critic_revisions = [t["predictions"][0]["result"][0]["value"]["text"][0] for t in tasks]

    def annotated(k: int, text: str) -> dict[str, Any]:
        result = [{"from_name": "revision", "to_name": "response", "type": "textarea",
                   "value": {"text": [text]}}]  # fmt: skip
        return {"id": 100 + k, "data": tasks[k]["data"], "annotations": [
            {"id": 200 + k, "completed_by": 2, "result": result, "was_cancelled": False,
             "lead_time": 12.0, "created_at": "2025-06-01T12:00:00Z"}]}  # fmt: skip

    saved = tmp_path / "export.json"
    saved.write_text(json.dumps([annotated(0, critic_revisions[0]),
                                 annotated(1, "A kinder, shorter reply.")]))  # fmt: skip
    result = import_export(db, saved)
    assert (result.decisions, result.settled, result.problems) == (2, 2, ())
    shipped = tmp_path / "shipped.jsonl"
    export_db(db, shipped, "jsonl", run=run)
    rows = {r["id"]: r for r in map(json.loads, shipped.read_text().splitlines())}
    assert rows["i0"]["revision"] == critic_revisions[0] and rows["i0"]["human_edited"] is False
    assert rows["i1"]["revision"] == "A kinder, shorter reply." and rows["i1"]["human_edited"]
