"""critic's run store and the review queues share one database, on SQLite and PostgreSQL:
label -> route into a queue -> decide -> resume -> export, through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from adjudication import open_store as open_queues
from critic.cli import app

runner = CliRunner()


def test_label_route_review_export_in_one_database(store_url: str, tmp_path: Path) -> None:
    from critic.routing import Policy, save_policy

    items = tmp_path / "items.jsonl"
    rows = [{"id": f"i{k}", "prompt": "Human: q", "response": f"<b>r{k}</b>'); DROP TABLE items;--"}
            for k in range(12)]  # fmt: skip
    items.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ["label", str(items), "-c", "harmlessness", "--backend", "fake", "--db", store_url]
    first = runner.invoke(app, [*args, "--json"])
    assert first.exit_code == 0, first.output
    again = json.loads(runner.invoke(app, [*args, "--json"]).stdout)
    assert again["processed"] == 0 and again["drafted"] == 12  # resumed, nothing redone

    policy = tmp_path / "policy.yaml"
    save_policy(Policy(threshold=None, target_agreement=0.9, delta=0.1), policy)
    with open_queues(store_url) as queues:
        queues.create_queue("q", overlap=1)
        queues.add_user("dana", role="reviewer", queues=["q"])
    routed = runner.invoke(app, ["route", "--db", store_url, "--policy", str(policy),
                                 "--queue", "q", "--json"])  # fmt: skip
    assert json.loads(routed.stdout)["enqueued"] == 12, routed.output
    with open_queues(store_url) as queues:
        claim = queues.claim("q", "dana")
        assert claim is not None
        queues.decide(claim.token, "reject", note="injection attempt")

    out = tmp_path / "out.jsonl"
    nothing = runner.invoke(app, ["export", str(out), "--db", store_url])
    assert nothing.exit_code == 1  # nothing decided ships: 11 pending, 1 rejected
    assert "0 rows: 11 pending items, 1 rejected items" in nothing.output
    assert runner.invoke(app, ["export", str(out), "--db", store_url, "--all"]).exit_code == 0
    exported = [json.loads(line) for line in out.read_text().splitlines()]
    assert [json.loads(r["input"])["response"] for r in exported] == [
        r["response"] for r in rows
    ]  # stored verbatim
    rejected = [r for r in exported if r["status"] == "rejected"]
    assert len(rejected) == 1 and rejected[0]["label_source"] == "human"
