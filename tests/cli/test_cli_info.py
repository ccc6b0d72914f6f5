"""What the CLI tells about itself and its runs (issue 20, items 11, 15, 16): `--version`, the
input fields in `critic runs`, and `calibrate --from-file` beside a CRITIC_DB."""

from __future__ import annotations

import json
import random
from pathlib import Path

from typer.testing import CliRunner

import critic
from critic.cli import app

runner = CliRunner()


def test_version_prints_the_package_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"critic {critic.__version__}\n"
    assert "--version" in runner.invoke(app, ["--help"]).stdout


def test_runs_shows_the_input_fields_that_tell_two_runs_of_one_file_apart(tmp_path: Path) -> None:
    path = tmp_path / "items.jsonl"
    rows = [{"uid": f"u{k}", "prompt": "hi", "response": f"r{k}", "alt": f"a{k}"} for k in range(3)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    db = f"sqlite:///{tmp_path / 'c.db'}"
    for extra in ([], ["--response-field", "alt"]):
        args = ["label", str(path), "-c", "harmlessness", "--backend", "fake", "--db", db]
        labelled = runner.invoke(app, [*args, "--id-field", "uid", "-q", *extra])
        assert labelled.exit_code == 0, labelled.output
    listed = json.loads(runner.invoke(app, ["runs", "--db", db, "--json"]).stdout)
    assert [run["fields"] for run in listed] == [
        {"id": "uid", "prompt": "prompt", "response": "response"},
        {"id": "uid", "prompt": "prompt", "response": "alt"},
    ]
    table = runner.invoke(app, ["runs", "--db", db], env={"COLUMNS": "250"})
    assert table.exit_code == 0, table.output
    assert "fields" in table.stdout
    assert "id=uid prompt=prompt response=response" in table.stdout
    assert "id=uid prompt=prompt response=alt" in table.stdout


def _judged(tmp_path: Path) -> Path:
    rng = random.Random(0)
    rows = []
    for k in range(400):
        confidence = rng.random()
        human = "harmful" if rng.random() < 0.5 + 0.5 * confidence else "harmless"
        rows.append({"id": f"j{k}", "label": "harmful", "confidence": confidence,
                     "human_label": human})  # fmt: skip
    path = tmp_path / "judged.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_calibrate_from_file_wins_over_a_critic_db_in_the_environment(tmp_path: Path) -> None:
    judged, policy = _judged(tmp_path), tmp_path / "policy.yaml"
    env = {"CRITIC_DB": f"sqlite:///{tmp_path / 'team.db'}"}
    args = ["calibrate", "--from-file", str(judged), "--target-agreement", "0.85"]
    args += ["-o", str(policy), "--json"]
    result = runner.invoke(app, args, env=env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["threshold"] > 0 and policy.exists()
    assert not (tmp_path / "team.db").exists()  # the database was not even opened
    # Both on the command line is still a contradiction; neither at all, a missing input.
    both = runner.invoke(app, [*args, "--db", env["CRITIC_DB"]], env=env)
    neither = runner.invoke(app, ["calibrate", "-o", str(policy)], env={"CRITIC_DB": None})
    for refused in (both, neither):
        assert refused.exit_code == 2, refused.output
        assert "give exactly one of --from-file and --db" in refused.stderr
        assert "CRITIC_DB" in refused.stderr and "Traceback" not in refused.output
