"""The trust loop through the CLI and the stores: a policy is bound to what it was calibrated
on, calibration samples are drawn whatever the confidence, `calibrate --db` weighs only the labels
that are a fair sample, and recalibration keeps the policy's lineage."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from typer.testing import CliRunner

from adjudication.store import open_store as open_queues
from critic.cli import app
from critic.routing import Policy, load_policy, policy_hash, save_policy

runner = CliRunner()
N = 60


def _label(tmp_path: Path, db: str, constitution: str = "harmlessness") -> str:
    items = tmp_path / "items.jsonl"
    items.write_text("".join(json.dumps({"id": f"i{k}", "prompt": "Human: q", "response": f"r{k}"})
                             + "\n" for k in range(N)))  # fmt: skip
    result = runner.invoke(app, ["label", str(items), "-c", constitution, "--backend", "fake",
                                 "--db", db, "-q", "--logprobs", "2", "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    return str(json.loads(result.stdout)["run_id"])


def _route(db: str, policy: Path, run: str, *extra: str) -> tuple[int, dict]:
    result = runner.invoke(app, ["route", "--db", db, "--policy", str(policy), "--run", run,
                                 "--json", *extra])  # fmt: skip
    return result.exit_code, (json.loads(result.stdout) if result.exit_code == 0 else
                              {"output": result.output})  # fmt: skip


def _decide_all(db: str, queue: str, truth: str | None = "harmless") -> int:
    """Decide every item of a queue with the label `truth` (picking it first if blind); with
    `truth=None` the human agrees with the critic's draft."""
    decided = 0
    with open_queues(db) as queues:
        blind = queues.queue(queue).blind
        while (claim := queues.claim(queue, "rae")) is not None:
            if truth is None:
                with open_queues(db) as peek:  # what the reviewer would answer, for the test
                    truth_here = peek.task(queue, claim.task.item_id).draft_label or "harmless"
            else:
                truth_here = truth
            if blind:
                queues.pick(claim.token, truth_here)
                queues.decide(claim.token, "accept", label=truth_here)
            else:
                queues.decide(claim.token, "edit", label=truth_here)
            decided += 1
    return decided


def _queues(db: str) -> None:
    with open_queues(db) as queues:
        queues.create_queue("blind", blind=True)
        queues.create_queue("open")
        queues.add_user("rae", role="reviewer", queues=["blind", "open"])


def test_calibration_samples_are_drawn_whatever_the_confidence(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'c.db'}"
    run = _label(tmp_path, db)
    review_all = tmp_path / "all.yaml"
    save_policy(Policy(threshold=None, target_agreement=0.8, delta=0.1), review_all)
    code, summary = _route(db, review_all, run, "--calibration-rate", "0.5")
    assert code == 0, summary
    sampled = summary["counts"]["calibration_sample"]
    assert 15 < sampled < 45 and summary["counts"]["low_confidence"] == N - sampled
    again = _route(db, review_all, run, "--calibration-rate", "0.5")[1]
    assert again["counts"] == summary["counts"]  # seeded: the same draw every time


def test_calibrate_db_binds_the_policy_and_route_refuses_another_run(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'c.db'}"
    _queues(db)
    run = _label(tmp_path, db)
    review_all = tmp_path / "all.yaml"
    save_policy(Policy(threshold=None, target_agreement=0.6, delta=0.2), review_all)
    code, _ = _route(db, review_all, run, "--calibration-rate", "1.0", "--queue", "blind")
    assert code == 0
    assert _decide_all(db, "blind", truth=None) == N
    policy = tmp_path / "policy.yaml"
    calibrated = runner.invoke(app, ["calibrate", "--db", db, "--run", run, "-o", str(policy),
                                     "--target-agreement", "0.6", "--delta", "0.2",
                                     "--json"])  # fmt: skip
    assert calibrated.exit_code in (0, 1), calibrated.output
    report = json.loads(calibrated.stdout)
    assert report["labels_used"]["calibration_sample"] == N and report["labels_left_out"] == []
    bound = load_policy(policy)
    assert bound.binding is not None and bound.content_hash == policy_hash(bound)

    # Another constitution: the binding names both sides, and --force records no guarantee.
    other = yaml.safe_load(Path("constitutions/harmlessness.yaml").read_text())
    other["title"] = "Harmlessness, edited"
    mine = tmp_path / "mine.yaml"
    mine.write_text(yaml.safe_dump(other))
    (tmp_path / "b").mkdir()
    second = _label(tmp_path / "b", db, str(mine))
    assert bound.threshold is not None  # the fake critic agrees with "harmless" often enough
    code, refused = _route(db, policy, second)
    assert code == 2 and "constitution: policy" in refused["output"]
    assert "--force" in refused["output"]
    code, forced = _route(db, policy, second, "--force")
    assert code == 0 and forced["forced"]
    out = tmp_path / "out.jsonl"
    assert runner.invoke(app, ["export", str(out), "--db", db, "--run", second]).exit_code in (0, 1)
    rows = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    assert all(r["guaranteed"] is False for r in rows)


def test_a_hand_edited_policy_is_refused(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'c.db'}"
    run = _label(tmp_path, db)
    from critic.store import open_store
    from critic.triage import run_binding

    store = open_store(db)
    policy = tmp_path / "policy.yaml"
    save_policy(Policy(threshold=0.5, target_agreement=0.9, delta=0.1,
                       binding=run_binding(store.run(run))), policy)  # fmt: skip
    store.close()
    assert _route(db, policy, run)[0] == 0  # bound to this run: routes
    policy.write_text(policy.read_text().replace("threshold: 0.5", "threshold: 0.1"))
    code, refused = _route(db, policy, run)
    assert code == 2 and "edited after critic calibrate wrote it" in refused["output"]


def test_calibrate_db_leaves_out_low_confidence_and_seen_labels(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'c.db'}"
    _queues(db)
    run = _label(tmp_path, db)
    review_all = tmp_path / "all.yaml"
    save_policy(Policy(threshold=None, target_agreement=0.6, delta=0.2), review_all)
    # Everything is reviewed in a non-blind queue: low-confidence reviews, seen labels.
    assert _route(db, review_all, run, "--queue", "open")[0] == 0
    assert _decide_all(db, "open") == N
    policy = tmp_path / "p.yaml"
    args = ["calibrate", "--db", db, "-o", str(policy), "--target-agreement", "0.6", "--delta",
            "0.2", "--json"]  # fmt: skip
    default = json.loads(runner.invoke(app, args).stdout)
    assert sum(default["labels_used"].values()) == 0
    assert sum(o["count"] for o in default["labels_left_out"]) == N
    assert any("saw the critic's label" in o["reason"] for o in default["labels_left_out"])
    seen = json.loads(runner.invoke(app, [*args, "--allow-seen-labels"]).stdout)
    assert any("not picked by the seeded draw" in o["reason"] for o in seen["labels_left_out"])


def test_recalibration_keeps_the_lineage(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'c.db'}"
    _queues(db)
    run = _label(tmp_path, db)
    first = tmp_path / "first.yaml"
    save_policy(Policy(threshold=None, target_agreement=0.6, delta=0.2, calibration_rate=1.0),
                first)  # fmt: skip
    assert _route(db, first, run, "--queue", "blind")[0] == 0
    _decide_all(db, "blind")
    second = tmp_path / "second.yaml"
    result = runner.invoke(app, ["calibrate", "--db", db, "--recalibrate", str(first), "-o",
                                 str(second), "--json"])  # fmt: skip
    assert result.exit_code in (0, 1), result.output
    again = load_policy(second)
    assert again.lineage is not None
    assert again.lineage.previous == policy_hash(load_policy(first))
    assert again.lineage.labels["calibration_sample"] == N
    assert again.calibration_rate == 1.0 and again.binding is not None
