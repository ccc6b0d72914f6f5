"""Routed runs for the Label Studio tests: label (or compare) with the fake backend, then route
every item to review."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from critic.cli import app
from critic.routing import Policy, save_policy

runner = CliRunner()


def routed_run(
    tmp_path: Path,
    db: str,
    constitution: str = "harmlessness",
    *,
    items: int = 5,
    name: str = "items",
    audit: float = 0.0,
) -> str:
    """A run of `items` rows (ids i0..), every item routed to review (or, with `audit`, all
    accepted with that share audited); returns the run id."""
    pairwise = constitution.endswith("pairwise")
    rows = [
        {"id": f"i{k}", "prompt": f"Human: question {k}", "a": f"first {k}", "b": f"second {k}"}
        if pairwise
        else {"id": f"i{k}", "prompt": f"Human: question {k}", "response": f"answer {k}"}
        for k in range(items)
    ]
    source = tmp_path / f"{name}.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in rows))
    command = (
        ["compare", "--a-field", "a", "--b-field", "b"] if pairwise
        else ["revise"] if constitution == "cai-principles"
        else ["label"]
    )  # fmt: skip
    if command[0] != "revise":
        command += ["--logprobs", "2"]
    result = runner.invoke(app, [*command, str(source), "-c", constitution, "--backend", "fake",
                                 "--db", db, "-q", "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    run = str(json.loads(result.stdout)["run_id"])
    policy = tmp_path / "policy.yaml"
    save_policy(Policy(threshold=0.0 if audit else None, target_agreement=0.9, delta=0.1,
                       audit_rate=audit), policy)  # fmt: skip
    # An accepting policy calibrated elsewhere needs --force (its accepts carry no guarantee).
    force = ["--force"] if audit else []
    routed = runner.invoke(app, ["route", "--db", db, "--policy", str(policy), "--run", run,
                                 *force])  # fmt: skip
    assert routed.exit_code == 0, routed.output
    return run
