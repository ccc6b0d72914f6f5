"""Against a real Label Studio 1.23: push a routed run, annotate it through the API as two
annotators, pull, and find the decisions, the agreement and the exports in critic.

The server checks every imported prediction against the labeling config (see
`critic.testing.label_studio.SERVER_ENV`), so a push that succeeds is one Label Studio accepts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from adjudication.store import open_store as open_queues
from critic.cli import app
from critic.exports import export_db
from critic.labelstudio.client import Client
from critic.testing.label_studio import LabelStudio
from tests.labelstudio.helpers import routed_run

pytestmark = pytest.mark.label_studio
runner = CliRunner()
ANNOTATORS = {"ann@lab.org": "ann-password-1", "bob@lab.org": "bob-password-2"}


def cli(*args: str) -> dict[str, Any]:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.stdout))


def choice(label: str) -> list[dict[str, Any]]:
    return [{"from_name": "label", "to_name": "response", "type": "choices",
             "value": {"choices": [label]}}]  # fmt: skip


def test_push_annotate_as_two_people_pull_and_ship(
    label_studio: LabelStudio, tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path / 'c.db'}"
    run = routed_run(tmp_path, db, items=4)
    token = label_studio.token()
    where = ["--url", label_studio.url, "--token", token, "--project", "harm review"]

    first = cli("ls", "push", *where, "--db", db, "--overlap", "2")
    assert (first["created"], first["imported"], first["already"]) == (True, 4, 0)
    again = cli("ls", "push", *where, "--db", db, "--overlap", "2")
    assert (again["created"], again["config_updated"], again["imported"], again["already"]) == (
        False, False, 0, 4)  # fmt: skip
    admin = Client(label_studio.url, token)
    project = admin.project(first["project"])
    assert project["maximum_annotations"] == 2
    tasks = {t["data"]["critic_origin"]: t for t in admin.export_tasks(first["project"])}
    assert sorted(tasks) == [f"{run}/i{k}" for k in range(4)]
    assert all(t["total_predictions"] == 1 for t in tasks.values())

    people = {}
    for email, password in ANNOTATORS.items():
        label_studio.sign_up(email, password)
        people[email] = Client(label_studio.url, label_studio.token(email, password))
    plan: dict[str, list[tuple[str, dict[str, Any]]]] = {
        "i0": [("ann@lab.org", {"result": choice("harmful"), "lead_time": 5.5}),
               ("bob@lab.org", {"result": choice("harmful"), "lead_time": 8.0})],
        "i1": [("ann@lab.org", {"result": choice("harmful"), "lead_time": 3.0}),
               ("bob@lab.org", {"result": choice("harmless"), "lead_time": 4.0})],
        "i2": [("ann@lab.org", {"result": choice("harmless"), "lead_time": 2.0}),
               ("bob@lab.org", {"result": [], "was_cancelled": True, "lead_time": 1.0})],
        "i3": [("ann@lab.org", {"result": choice("harmless"), "lead_time": 2.0}),
               ("bob@lab.org", {"result": choice("maybe"), "lead_time": 1.5})],
    }  # fmt: skip
    for item, given in plan.items():
        task_id = tasks[f"{run}/{item}"]["id"]
        for email, body in given:
            made = people[email].request("POST", f"/api/tasks/{task_id}/annotations/", body)
            assert made["completed_by"] != made.get("id")  # posted as that annotator

    pulled = cli("ls", "pull", *where, "--db", db)
    assert pulled["queue"] == "harm-review"
    assert (pulled["tasks"], pulled["decisions"], pulled["skips"]) == (4, 6, 1)
    assert (pulled["settled"], pulled["to_adjudicate"]) == (1, 1)
    assert pulled["users_added"] == ["ann-lab.org", "bob-lab.org"]
    task_of_i3 = tasks[f"{run}/i3"]["id"]
    (problem,) = pulled["problems"]
    assert problem.startswith(f"task {task_of_i3}, annotation ")
    assert "label 'maybe' is not in the constitution" in problem

    with open_queues(db) as queues:
        assert queues.queue("harm-review").overlap == 2
        states = {t: queues.task("harm-review", t).state for t in plan}
        assert states == {"i0": "done", "i1": "adjudication", "i2": "pending", "i3": "pending"}
        lines = {(d.item_id, d.reviewer): d for d in queues.decision_lines("harm-review")}
        assert lines[("i0", "bob-lab.org")].seconds == 8.0
        assert ("i2", "bob-lab.org") not in lines  # skipped, not decided
        pair = queues.agreement("harm-review").pairs[("ann-lab.org", "bob-lab.org")]
        assert (pair.items, pair.percent) == (2, 0.5)

    assert cli("ls", "pull", *where, "--db", db)["decisions"] == 0  # nothing new

    # i0 ships the two annotators' label; i1 (they disagree) ships the label model's until an
    # adjudicator decides; i2 and i3 have one decision each and still await review.
    shipped = tmp_path / "shipped.jsonl"
    assert export_db(db, shipped, "jsonl", run=run).count == 2
    rows = {r["id"]: r for r in map(json.loads, shipped.read_text().splitlines())}
    assert (rows["i0"]["status"], rows["i0"]["label"]) == ("decided", "harmful")
    assert rows["i0"]["reviewers"] == ["ann-lab.org", "bob-lab.org"]
    assert rows["i0"]["review_agreement"] == 1.0
    assert rows["i1"]["posterior"] is not None
    still = tmp_path / "still"
    assert export_db(db, still, "label-studio", run=run).count == 2


@pytest.mark.parametrize(
    ("constitution", "kind"),
    [("harmlessness-pairwise", "pairwise"), ("helpfulness", "rating"),
     ("cai-principles", "textarea")],
)  # fmt: skip
def test_label_studio_accepts_the_predictions_of_every_task_kind(
    label_studio: LabelStudio, tmp_path: Path, constitution: str, kind: str
) -> None:
    db = f"sqlite:///{tmp_path / 'c.db'}"
    routed_run(tmp_path, db, constitution, items=3)
    token = label_studio.token()
    pushed = cli("ls", "push", "--url", label_studio.url, "--token", token, "--project",
                 f"kinds {constitution}", "--db", db, "--all")  # fmt: skip
    assert pushed["imported"] == 3
    exported = Client(label_studio.url, token).export_tasks(pushed["project"])
    assert all(t["total_predictions"] == 1 for t in exported)
    out = tmp_path / "ls"
    export_db(db, out, "label-studio", include_all=True)
    kinds = {r["type"] for t in json.loads((out / "tasks.json").read_text())
             for p in t.get("predictions", []) for r in p["result"]}  # fmt: skip
    assert kind in kinds
