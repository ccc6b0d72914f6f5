"""calibrate -> route -> queue -> decide -> export, on the fake backend and a real SQLite store."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from typer.testing import CliRunner

from critic.cli import app

runner = CliRunner()


def judged(tmp_path: Path, n: int = 400, seed: int = 0) -> Path:
    rng = random.Random(seed)
    rows = []
    for k in range(n):
        confidence = rng.random()
        correct = rng.random() < 0.5 + 0.5 * confidence  # informative confidence
        rows.append({"id": f"j{k}", "label": "harmful", "confidence": confidence,
                     "human_label": "harmful" if correct else "harmless"})  # fmt: skip
    path = tmp_path / "judged.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_calibrate_from_file_writes_policy_and_plot(tmp_path: Path) -> None:
    policy, plot = tmp_path / "policy.yaml", tmp_path / "calib.png"
    result = runner.invoke(app, ["calibrate", "--from-file", str(judged(tmp_path)),
                                 "--target-agreement", "0.85", "--delta", "0.1",
                                 "-o", str(policy), "--plot", str(plot), "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert 0.4 < summary["threshold"] < 1.0 and 0 < summary["coverage"] < 1
    assert summary["lower_bound"] >= 0.85 and "With probability" in summary["guarantee"]
    assert policy.exists() and plot.read_bytes()[:4] == b"\x89PNG"


def test_calibrate_with_too_few_labels_says_how_many_more(tmp_path: Path) -> None:
    result = runner.invoke(app, ["calibrate", "--from-file", str(judged(tmp_path, n=8)),
                                 "-o", str(tmp_path / "p.yaml")])  # fmt: skip
    assert result.exit_code == 1
    assert "No threshold can be guaranteed" in result.stdout and "more" in result.stdout


def test_route_from_file(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    runner.invoke(app, ["calibrate", "--from-file", str(judged(tmp_path)), "-o", str(policy),
                        "--target-agreement", "0.85"])  # fmt: skip
    routed = tmp_path / "routed.jsonl"
    result = runner.invoke(app, ["route", "--from-file", str(judged(tmp_path, seed=1)),
                                 "--policy", str(policy), "-o", str(routed),
                                 "--audit-rate", "0.1", "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    rows = [json.loads(line) for line in routed.read_text().splitlines()]
    assert len(rows) == 400 == summary["review"] + summary["accepted"]
    reasons = {r["reason"] for r in rows}
    assert {"low_confidence", "audit_sample"} <= reasons
    assert summary["counts"]["audit_sample"] > 0


@pytest.fixture
def labelled_db(tmp_path: Path) -> str:
    items = tmp_path / "items.jsonl"
    items.write_text("".join(json.dumps({"id": f"i{k}", "prompt": "Human: q", "response": f"r{k}"})
                             + "\n" for k in range(30)) + "{bad\n")  # fmt: skip
    db = f"sqlite:///{tmp_path / 'c.db'}"
    result = runner.invoke(app, ["label", str(items), "-c", "harmlessness", "--backend", "fake",
                                 "--db", db, "-q", "--logprobs", "2"])  # fmt: skip
    assert result.exit_code == 1  # the bad row
    return db


def test_route_stored_run_into_queue_and_export_merges_decisions(
    labelled_db: str, tmp_path: Path
) -> None:
    from adjudication.store import open_store as open_queues
    from critic.routing import Policy, save_policy

    policy = tmp_path / "policy.yaml"
    # No guaranteed threshold: nothing is auto-accepted, every draft goes to review.
    save_policy(Policy(threshold=None, target_agreement=0.9, delta=0.1), policy)
    queues = open_queues(labelled_db)
    queues.create_queue("harm-review", overlap=1)
    queues.add_user("alice", role="reviewer", queues=["harm-review"])
    result = runner.invoke(app, ["route", "--db", labelled_db, "--policy", str(policy),
                                 "--queue", "harm-review", "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["review"] == 30 and summary["enqueued"] == 30 and summary["not_routable"] == 1
    again = runner.invoke(app, ["route", "--db", labelled_db, "--policy", str(policy),
                                "--queue", "harm-review", "--json"])  # fmt: skip
    assert json.loads(again.stdout)["enqueued"] == 0  # idempotent

    claim = queues.claim("harm-review", "alice")
    assert claim is not None
    item_id = claim.task.item_id
    critic_label = claim.task.draft_label
    human = "harmless" if critic_label == "harmful" else "harmful"
    queues.decide(claim.token, "edit", label=human, seconds=3.0)

    out = tmp_path / "out.jsonl"
    assert runner.invoke(app, ["export", str(out), "--db", labelled_db]).exit_code == 0
    shipped = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in shipped] == [item_id]  # only what was decided ships
    assert runner.invoke(app, ["export", str(out), "--db", labelled_db, "--all"]).exit_code == 0
    rows = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    assert rows[item_id]["label"] == human and rows[item_id]["critic_label"] == critic_label
    assert rows[item_id]["label_source"] == "human" and rows[item_id]["reviewers"] == ["alice"]
    assert rows[item_id]["human_edited"] is True and rows[item_id]["status"] == "decided"
    others = [r for k, r in rows.items() if k != item_id and r["failure_reason"] is None]
    assert all(r["status"] == "pending" and r["label"] is None and r["route"] == "review"
               for r in others)  # fmt: skip


def test_unknown_queue_is_a_clear_error(labelled_db: str, tmp_path: Path) -> None:
    from critic.routing import Policy, save_policy

    policy = tmp_path / "policy.yaml"
    save_policy(Policy(threshold=0.5, target_agreement=0.9, delta=0.1), policy)
    result = runner.invoke(app, ["route", "--db", labelled_db, "--policy", str(policy),
                                 "--queue", "nope", "--force"])  # fmt: skip
    assert result.exit_code == 1 and "nope" in result.stderr and "Traceback" not in result.output


def test_quality_estimates_what_shipped_from_the_decided_audit_sample(
    labelled_db: str, tmp_path: Path
) -> None:
    from adjudication.store import open_store as open_queues
    from critic.routing import Policy, save_policy

    policy = tmp_path / "policy.yaml"
    # Accept everything, audit half of it: the audit sample is what humans check.
    save_policy(Policy(threshold=0.0, target_agreement=0.9, delta=0.1, audit_rate=0.5), policy)
    queues = open_queues(labelled_db)
    queues.create_queue("audit", overlap=1)
    queues.add_user("bob", role="reviewer", queues=["audit"])
    empty = runner.invoke(app, ["quality", "--db", labelled_db])
    assert "no audited items yet" in empty.stdout
    routed = runner.invoke(app, ["route", "--db", labelled_db, "--policy", str(policy),
                                 "--queue", "audit", "--json", "--force"])  # fmt: skip
    audited = json.loads(routed.stdout)["counts"]["audit_sample"]
    assert 5 < audited < 25
    disagreed = 0
    while (claim := queues.claim("audit", "bob")) is not None:
        if disagreed < 2:  # the human overrules the critic on two audited items
            other = "harmless" if claim.task.draft_label == "harmful" else "harmful"
            queues.decide(claim.token, "edit", label=other)
            disagreed += 1
        else:
            queues.decide(claim.token, "accept")
    result = runner.invoke(app, ["quality", "--db", labelled_db, "--json"])
    assert result.exit_code == 0, result.output
    estimate = json.loads(result.stdout)
    assert (estimate["n_audited"], estimate["n_agree"]) == (audited, audited - 2)
    assert estimate["lower"] < estimate["agreement"] < estimate["upper"] <= 1.0
    ppi = estimate["ppi"]  # the same audits plus every accepted item's confidence
    assert ppi["n_audited"] == audited and ppi["n_unlabeled"] > 0
    assert ppi["half_width"] <= ppi["classical_half_width"] + 1e-12
    assert ppi["effective_labels"] >= audited
    text = runner.invoke(app, ["quality", "--db", labelled_db]).stdout
    assert "exact:" in text and "PPI++" in text and "classical" in text


def test_calibrate_from_human_decisions_in_the_store(labelled_db: str, tmp_path: Path) -> None:
    """Calibration samples (every draft, --calibration-rate 1.0) decided blind: all 30 count.
    (Decisions on low-confidence items seen next to the critic's label are left out by default:
    tests/test_trust_loop.py.)"""
    from adjudication.store import open_store as open_queues
    from critic.routing import Policy, save_policy

    policy = tmp_path / "review-all.yaml"
    save_policy(Policy(threshold=None, target_agreement=0.9, delta=0.1), policy)
    queues = open_queues(labelled_db)
    queues.create_queue("gold", overlap=1, blind=True)
    queues.add_user("carol", role="reviewer", queues=["gold"])
    runner.invoke(app, ["route", "--db", labelled_db, "--policy", str(policy), "--queue", "gold",
                        "--calibration-rate", "1.0"])  # fmt: skip
    decided = 0
    while (claim := queues.claim("gold", "carol")) is not None:
        draft = queues.task("gold", claim.task.item_id).draft_label or "harmless"
        # one human overrule among 30 decisions
        mine = ("harmless" if draft == "harmful" else "harmful") if decided == 0 else draft
        queues.pick(claim.token, mine)
        queues.decide(claim.token, "accept", label=mine)
        decided += 1
    out = tmp_path / "calibrated.yaml"
    result = runner.invoke(app, ["calibrate", "--db", labelled_db, "--target-agreement", "0.8",
                                 "-o", str(out), "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["n_calibration"] == decided == 30
    assert summary["labels_used"]["calibration_sample"] == 30
    assert summary["n_agree"] == 29 and summary["threshold"] is not None


def _panel_file(tmp_path: Path) -> Path:
    """400 items judged by a small and a big critic: the small one is sure and right on the
    first 200, the big one on the next 150; both are coin tosses on the rest."""
    rng = random.Random(5)
    rows = []
    for i in range(400):
        small_sure, big_sure = i < 200, i < 350

        def verdict(model: str, sure: bool) -> dict[str, object]:
            right = rng.random() < (0.97 if sure else 0.5)
            label = "1" if right else "2"
            p = 1.0 if sure else 0.6
            return {
                "model": model,
                "label": label,
                "probs": {label: p, ("2" if right else "1"): round(1 - p, 6)},
            }

        rows.append(
            {
                "id": f"i{i}",
                "human_label": "1",
                "critics": [verdict("small", small_sure), verdict("big", big_sure)],
            }
        )
    path = tmp_path / "panel.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_calibrate_and_route_a_cascade_from_a_panel_file(tmp_path: Path) -> None:
    panel = _panel_file(tmp_path)
    policy = tmp_path / "cascade.yaml"
    result = runner.invoke(app, ["calibrate", "--from-file", str(panel), "--cascade",
                                 "small,big", "--cascade-method", "stagewise",
                                 "--target-agreement", "0.85", "-o", str(policy),
                                 "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    stages = json.loads(result.stdout)["stages"]
    assert [s["critic"] for s in stages] == ["small", "big"]
    assert stages[0]["reached"] == 400 and stages[1]["reached"] == 200
    assert all(s["threshold"] is not None for s in stages)
    routed = tmp_path / "routed.jsonl"
    result = runner.invoke(app, ["route", "--from-file", str(panel), "--policy", str(policy),
                                 "-o", str(routed), "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["requests_per_item"] == {"small": 1.0, "big": 0.5}
    rows = [json.loads(line) for line in routed.read_text().splitlines()]
    assert {r["critic"] for r in rows[:200]} == {"small"}
    assert all(r["critics_asked"] == ["small", "big"] for r in rows[200:])
    assert {r["route"] for r in rows[350:]} == {"review"}
    assert all(r["label"] is None for r in rows[350:])


def test_calibrate_names_unknown_cascade_critics_and_combines_panels(tmp_path: Path) -> None:
    panel = _panel_file(tmp_path)
    policy = tmp_path / "p.yaml"
    bad = runner.invoke(app, ["calibrate", "--from-file", str(panel), "--cascade", "smal,big",
                              "-o", str(policy)])  # fmt: skip
    assert bad.exit_code != 0 and "Traceback" not in bad.output
    assert "no critic named 'smal'" in bad.stderr and "small" in bad.stderr
    mean = runner.invoke(app, ["calibrate", "--from-file", str(panel), "--combine", "mean",
                               "--target-agreement", "0.85", "-o", str(policy)])  # fmt: skip
    assert mean.exit_code == 0, mean.output
    assert "combine: mean" in policy.read_text()
    routed = runner.invoke(app, ["route", "--from-file", str(panel), "--policy", str(policy),
                                 "--json"])  # fmt: skip
    assert routed.exit_code == 0, routed.output


def test_calibrate_db_cascade_and_combine_read_a_stored_panel(tmp_path: Path) -> None:
    from adjudication.store import open_store as open_queues
    from critic.routing import Policy, load_policy, save_policy

    items = tmp_path / "items.jsonl"
    items.write_text("".join(json.dumps({"id": f"i{k}", "prompt": "Human: q", "response": f"r{k}"})
                             + "\n" for k in range(40)))  # fmt: skip
    db = f"sqlite:///{tmp_path / 'c.db'}"
    labelled = runner.invoke(app, ["label", str(items), "-c", "harmlessness", "--backend", "fake",
                                   "--model", "small", "--critic", "big", "--db", db, "-q",
                                   "--logprobs", "2"])  # fmt: skip
    assert labelled.exit_code == 0, labelled.output
    review_all = tmp_path / "review-all.yaml"
    save_policy(Policy(threshold=None, target_agreement=0.8, delta=0.1), review_all)
    queues = open_queues(db)
    queues.create_queue("gold", overlap=1)
    queues.add_user("carol", role="reviewer", queues=["gold"])
    runner.invoke(app, ["route", "--db", db, "--policy", str(review_all), "--queue", "gold"])
    while (claim := queues.claim("gold", "carol")) is not None:
        queues.decide(claim.token, "accept")
    out = tmp_path / "cascade.yaml"
    result = runner.invoke(app, ["calibrate", "--db", db, "--cascade", "small,big", "--json",
                                 "--target-agreement", "0.8", "-o", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert [s["critic"] for s in summary["stages"]] == ["small", "big"]
    assert summary["n_calibration"] == 40 and summary["stages"][0]["reached"] == 40
    assert load_policy(out).critics == ["small", "big"]
    routed = runner.invoke(app, ["route", "--db", db, "--policy", str(out), "--json"])
    assert routed.exit_code == 0, routed.output
    routing = json.loads(routed.stdout)
    assert routing["accepted"] == summary["n_accepted"]
    assert routing["requests_per_item"]["small"] == 1.0  # the stored panel asked both
    assert "cascade auto-accepts" in routing["guarantee"]
    combined = runner.invoke(app, ["calibrate", "--db", db, "--combine", "vote",
                                   "--target-agreement", "0.8", "-o", str(out)])  # fmt: skip
    assert combined.exit_code == 0, combined.output
    assert load_policy(out).combine == "vote"
    unknown = runner.invoke(app, ["calibrate", "--db", db, "--cascade", "small,huge",
                                  "-o", str(out)])  # fmt: skip
    assert unknown.exit_code != 0 and "no critic named 'huge'" in unknown.stderr
