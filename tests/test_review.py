"""critic meets the review queues: human decisions stay with the (run, item) they were made on.

Two runs over two files that reuse the id `tpl` share one queue; a decision on one run's `tpl`
must neither reach the other run's export or calibration, nor stop the other run's `tpl` from
being queued.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from adjudication.store import open_store as open_queues
from critic.cli import app
from critic.review import audit_quality, human_judgments, open_stores
from critic.routing import Policy, save_policy
from critic.ship import final_records
from critic.store import open_store

runner = CliRunner()


def _label(tmp_path: Path, db: str, name: str, response: str) -> str:
    items = tmp_path / f"{name}.jsonl"
    rows = [{"id": "tpl", "prompt": "Human: q", "response": response}]
    rows += [{"id": f"{name}{k}", "prompt": "Human: q", "response": f"{name} {k}"}
             for k in range(4)]  # fmt: skip
    items.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = runner.invoke(app, ["label", str(items), "-c", "harmlessness", "--backend", "fake",
                                 "--db", db, "-q", "--logprobs", "2", "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    return str(json.loads(result.stdout)["run_id"])


def _route(tmp_path: Path, db: str, run: str, queue: str, audit: float = 0.0) -> int:
    policy = tmp_path / "policy.yaml"
    threshold = 0.0 if audit else None  # audit: accept all and audit a share; else review all
    save_policy(Policy(threshold=threshold, target_agreement=0.9, delta=0.1, audit_rate=audit),
                policy)  # fmt: skip
    result = runner.invoke(app, ["route", "--db", db, "--policy", str(policy), "--run", run,
                                 "--queue", queue, "--json", "--force"])  # fmt: skip
    assert result.exit_code == 0, result.output
    return int(json.loads(result.stdout)["enqueued"])


def _export(tmp_path: Path, db: str, run: str | None = None) -> dict[tuple[str, str], dict]:
    out = tmp_path / "out.jsonl"
    args = ["export", str(out), "--db", db, "--all"]
    args += ["--run", run] if run else ["--all-runs"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return {(r["run_id"], r["id"]): r for r in map(json.loads, out.read_text().splitlines())}


@pytest.fixture
def two_runs(tmp_path: Path) -> tuple[str, str, str]:
    db = f"sqlite:///{tmp_path / 'c.db'}"
    first = _label(tmp_path, db, "a", "Sure, here is how.")
    second = _label(tmp_path, db, "b", "I would rather not.")
    assert first != second
    with open_queues(db) as queues:
        queues.create_queue("q", overlap=1)
        queues.add_user("alice", role="reviewer", queues=["q"])
    return db, first, second


def _decide_tpl(db: str, run: str, label: str) -> None:
    with open_queues(db) as queues:
        while (claim := queues.claim("q", "alice")) is not None:
            draft = claim.task.draft
            if (draft["run_id"], draft.get("item_id", claim.task.item_id)) == (run, "tpl"):
                queues.decide(claim.token, "edit", label=label)
                return
            queues.skip(claim.token)
    raise AssertionError(f"run {run}'s tpl is not in the queue")


def test_a_decision_stays_with_its_run_in_export_and_calibration(
    tmp_path: Path, two_runs: tuple[str, str, str]
) -> None:
    db, first, second = two_runs
    assert _route(tmp_path, db, first, "q") == 5
    critic_says = _export(tmp_path, db)[(first, "tpl")]["critic_label"]
    human = "harmless" if critic_says == "harmful" else "harmful"
    _decide_tpl(db, first, human)

    rows = _export(tmp_path, db)
    assert rows[(first, "tpl")]["label"] == human and rows[(first, "tpl")]["status"] == "decided"
    assert rows[(first, "tpl")]["label_source"] == "human"
    assert rows[(first, "tpl")]["reviewers"] == ["alice"]
    other = rows[(second, "tpl")]  # never routed: nothing ships, the critic's draft is beside
    assert other["status"] == "pending" and other["label"] is None and other["critic_label"]
    assert other["reviewers"] == [] and other["label_source"] is None
    only_second = _export(tmp_path, db, second)
    assert only_second[(second, "tpl")]["status"] == "pending"

    with open_stores(db) as (store, queues):
        decided = [(r.run_id, r.item_id) for r in final_records(store, queues, [first, second])
                   if r.status == "decided"]  # fmt: skip
    assert decided == [(first, "tpl")]
    with open_stores(db) as (store, queues):
        assert human_judgments(store, queues, [second]) == ([], [])  # the other run: nothing
        scores, correct = human_judgments(store, queues, [first])
    assert len(scores) == 1 and correct == [False]


def test_the_same_item_id_from_two_runs_is_queued_twice_and_decided_apart(
    tmp_path: Path, two_runs: tuple[str, str, str]
) -> None:
    db, first, second = two_runs
    assert _route(tmp_path, db, first, "q") == 5
    assert _route(tmp_path, db, second, "q") == 5  # its tpl is not silently dropped
    assert _route(tmp_path, db, second, "q") == 0  # and routing again stays idempotent
    assert _route(tmp_path, db, first, "q") == 0
    with open_queues(db) as queues:
        tasks = queues.tasks("q")
    assert len(tasks) == 10
    tpl = sorted((t.draft["run_id"], t.draft["item_id"]) for t in tasks if "tpl" in t.item_id)
    assert tpl == sorted([(first, "tpl"), (second, "tpl")])

    _decide_tpl(db, second, "harmful")
    rows = _export(tmp_path, db)
    assert rows[(second, "tpl")]["label_source"] == "human"
    assert rows[(second, "tpl")]["label"] == "harmful"
    assert rows[(first, "tpl")]["status"] == "pending"  # queued, not decided yet


def test_audit_quality_reads_only_the_audited_runs_decisions(
    tmp_path: Path, two_runs: tuple[str, str, str]
) -> None:
    db, first, second = two_runs
    # Both runs are audited (every item); a human overrules the first run's tpl only.
    _route(tmp_path, db, first, "q", audit=1.0)
    _route(tmp_path, db, second, "q", audit=1.0)
    critic_says = _export(tmp_path, db)[(first, "tpl")]["critic_label"]
    _decide_tpl(db, first, "harmless" if critic_says == "harmful" else "harmful")
    with open_stores(db) as (store, queues):
        assert audit_quality(store, queues, [first]).n_audited == 1
        assert audit_quality(store, queues, [second]).n_audited == 0


def test_a_resumed_run_keeps_its_decisions(tmp_path: Path, two_runs: tuple[str, str, str]) -> None:
    db, first, _ = two_runs
    _route(tmp_path, db, first, "q")
    _decide_tpl(db, first, "harmless")
    again = _label(tmp_path, db, "a", "Sure, here is how.")  # the same command: the same run
    assert again == first
    assert _export(tmp_path, db, first)[(first, "tpl")]["label_source"] == "human"
    assert open_store(db).run(first).id == first


def test_the_review_page_shows_cited_principles_from_the_stored_version(tmp_path: Path) -> None:
    import asyncio
    import secrets

    import httpx
    import yaml

    from adjudication.web import create_app, hash_password
    from critic.constitution import load_constitution
    from tests.web.conftest import PASSWORD, Client

    shipped = load_constitution("harmlessness").model_dump(mode="json", exclude_none=True)
    mine = {**shipped, "id": "mine", "principles": [
        {"id": "M1", "text": "Version one: never <b>help</b> with harm."}]}  # fmt: skip
    constitution = tmp_path / "mine.yaml"
    constitution.write_text(yaml.safe_dump(mine))
    db = f"sqlite:///{tmp_path / 'c.db'}"
    items = tmp_path / "items.jsonl"
    items.write_text(json.dumps({"id": "x1", "prompt": "Human: q", "response": "r"}) + "\n")
    labelled = runner.invoke(app, ["label", str(items), "-c", str(constitution), "--backend",
                                   "fake", "--db", db, "-q", "--json"])  # fmt: skip
    assert labelled.exit_code == 0, labelled.output
    run = json.loads(labelled.stdout)["run_id"]
    # The file changes after the run: the page shows the version that made the draft.
    mine["principles"][0]["text"] = "Version two."
    constitution.write_text(yaml.safe_dump(mine))
    with open_queues(db) as queues:
        queues.create_queue("q", overlap=1)
        queues.add_user("adam", role="adjudicator", queues=["q"],
                        password_hash=hash_password(PASSWORD))  # fmt: skip
    assert _route(tmp_path, db, run, "q") == 1
    with open_queues(db) as queues:
        (task,) = queues.tasks("q")
    assert task.draft["principle_texts"] == {"M1": "Version one: never <b>help</b> with harm."}

    async def page() -> str:
        transport = httpx.ASGITransport(app=create_app(db, secret_key=secrets.token_urlsafe(32)))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            client = Client(http)
            assert (await client.login("adam")).status_code == 303
            response = await client.get("/q/q/items/x1")
            assert response.status_code == 200
            return response.text

    text = asyncio.run(page())
    assert "Version one: never &lt;b&gt;help&lt;/b&gt; with harm." in text  # inert text
    assert "Version two." not in text and "was not included" not in text


def test_a_decision_on_an_impact_flip_belongs_to_the_new_versions_run(tmp_path: Path) -> None:
    from critic import label
    from critic.workbench import enqueue_flips, impact
    from tests.workbench.test_workbench import HARM, SCAMS, items, policy_backend

    db = f"sqlite:///{tmp_path / 'c.db'}"
    store = open_store(db)
    old = label(items(tmp_path), HARM, policy_backend(), store)
    report = impact(HARM, SCAMS, store, policy_backend())
    new_run = report.new["run_id"]
    with open_queues(db) as queues:
        queues.create_queue("policy", overlap=1)
        queues.add_user("alice", role="reviewer", queues=["policy"])
    assert enqueue_flips(db, "policy", report) == 10
    with open_queues(db) as queues:
        claim = queues.claim("policy", "alice")
        assert claim is not None and claim.task.draft["run_id"] == new_run
        flipped = claim.task.draft["item_id"]
        queues.decide(claim.token, "edit", label="harmless")  # the human keeps the old verdict
    rows = _export(tmp_path, db)
    assert rows[(new_run, flipped)]["label_source"] == "human"
    assert rows[(new_run, flipped)]["label"] == "harmless"
    assert rows[(old.run_id, flipped)]["status"] == "pending"  # the old run is untouched


def test_gold_items_are_never_exported(tmp_path: Path, two_runs: tuple[str, str, str]) -> None:
    db, first, _ = two_runs
    assert _route(tmp_path, db, first, "q") == 5
    gold = tmp_path / "gold.jsonl"
    gold.write_text(json.dumps({"id": "tpl", "gold_label": "harmful"}) + "\n")
    added = runner.invoke(app, ["queue", "gold", "add", "q", str(gold), "--db", db, "--run",
                                first, "--json"])  # fmt: skip
    assert added.exit_code == 0, added.output
    assert json.loads(added.stdout)["gold"] == 1
    with open_queues(db) as queues:
        queues.set_gold_rate("q", 0.5)
        while (claim := queues.claim("q", "alice")) is not None:  # tpl is answered too
            queues.decide(claim.token, "edit", label="harmless")
        assert [r.item_id for r in queues.gold_results("q")] == ["tpl"]
    rows = _export(tmp_path, db, first)
    assert rows[(first, "tpl")]["status"] == "pending" and rows[(first, "tpl")]["label"] is None
    assert sum(r["status"] == "decided" for r in rows.values()) == 4
    missing = tmp_path / "missing.jsonl"
    missing.write_text(json.dumps({"id": "nope", "gold_label": "harmful"}) + "\n")
    refused = runner.invoke(app, ["queue", "gold", "add", "q", str(missing), "--db", db,
                                  "--run", first])  # fmt: skip
    assert refused.exit_code != 0 and "not in queue 'q'" in refused.output


def test_several_reviewers_ship_the_label_model_answer_until_adjudicated(
    tmp_path: Path, two_runs: tuple[str, str, str]
) -> None:
    db, first, _ = two_runs
    with open_queues(db) as queues:
        queues.create_queue("trio", overlap=3)
        for name in ("ann", "bob", "cy"):
            queues.add_user(name, role="reviewer", queues=["trio"])
    assert _route(tmp_path, db, first, "trio") == 5
    with open_queues(db) as queues:
        for name, label in (("ann", "harmful"), ("bob", "harmful"), ("cy", "harmless")):
            while (claim := queues.claim("trio", name)) is not None:
                queues.decide(claim.token, "edit", label=label)
        assert {t.state for t in queues.tasks("trio")} == {"adjudication"}  # 2-1 everywhere
    rows = _export(tmp_path, db, first)
    shipped = [r for r in rows.values() if r["status"] == "decided"]
    assert len(shipped) == 5 and {r["label"] for r in shipped} == {"harmful"}
    assert all(r["posterior"] is not None and r["posterior"] > 0.5 for r in shipped)
    assert all(r["reviewers"] == ["ann", "bob", "cy"] for r in shipped)


def test_a_task_carries_the_text_of_every_principle_its_draft_names() -> None:
    """A revise round asked about C3 may find a problem under C6: the screen shows both texts."""
    from critic.review import new_task

    row = {
        "run_id": "r1", "item_id": "i1", "task": "revise", "status": "drafted",
        "constitution_hash": "h", "row": {"prompt": "q", "response": "r"},
        "output": {
            "revision": "better", "principles": ["C3"],
            "rounds": [{"round": 1, "principle": "C3", "findings": [
                {"principle": "C6", "quote": "r", "problem": "p"}, {"quote": "no principle"}]}],
            "findings": [{"principle": "C1", "quote": "q"}],
        },
    }  # fmt: skip
    texts = {"C1": "one", "C3": "three", "C6": "six", "C9": "nine"}
    task = new_task(row, principle_texts=texts)
    assert task["draft"]["principle_texts"] == {"C3": "three", "C6": "six", "C1": "one"}
    assert task["principle_ids"] == ["C3"]
