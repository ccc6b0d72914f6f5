from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from critic.cli import app

runner = CliRunner()


def items(tmp_path: Path, bad: bool = False) -> Path:
    path = tmp_path / "items.jsonl"
    rows = [
        json.dumps({"uid": f"u{k}", "prompt": "Human: hi", "response": f"r{k}"}) for k in range(5)
    ]
    if bad:
        rows.append('{"uid": "x", "prompt": "no response field"}')
    path.write_text("\n".join(rows) + "\n")
    return path


def test_label_then_export(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'c.db'}"
    result = runner.invoke(
        app,
        ["label", str(items(tmp_path)), "-c", "harmlessness", "--backend", "fake",
         "--db", db, "--id-field", "uid", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["drafted"] == 5 and summary["failed"] == 0 and summary["items_per_s"] > 0
    out = tmp_path / "out.jsonl"
    result = runner.invoke(app, ["export", str(out), "--db", db, "--format", "jsonl"])
    assert result.exit_code == 2 and "was never routed" in result.output  # nothing decided
    routed = runner.invoke(app, ["route", "--accept-all", "--db", db])
    assert routed.exit_code == 0, routed.output
    result = runner.invoke(app, ["export", str(out), "--db", db, "--format", "jsonl"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == [f"u{k}" for k in range(5)]
    assert all(json.loads(r["input"])["uid"] == r["id"] for r in rows)
    assert {(r["status"], r["route_reason"], r["guaranteed"]) for r in rows} == {
        ("accepted", "accept_all", False)
    }


def test_label_exit_1_when_some_rows_fail(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["label", str(items(tmp_path, bad=True)), "-c", "harmlessness", "--backend", "fake",
         "--db", f"sqlite:///{tmp_path / 'c.db'}", "--id-field", "uid"],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "items.jsonl:6: missing field 'response'" in result.stderr
    assert "--retry-failed" in result.stderr
    assert "label harmless" in result.stdout or "label harmful" in result.stdout


def test_user_errors_are_one_message_without_traceback(tmp_path: Path) -> None:
    cases = [
        (["label", str(tmp_path / "nope.jsonl"), "-c", "harmlessness", "--backend", "fake"], 1,
         "no such file"),
        (["label", str(items(tmp_path)), "-c", "harmlesness", "--backend", "fake"], 1,
         "no such constitution file"),
        (["label", str(items(tmp_path)), "-c", "harmlessness", "--backend", "vllm-sever"], 2,
         "did you mean 'vllm-server'"),
        (["label", str(items(tmp_path)), "-c", "cai-principles", "--backend", "fake"], 2,
         "critique_revise task"),
        (["label", str(items(tmp_path)), "-c", "harmlessness", "--backend", "vllm-server",
          "--base-url", "http://127.0.0.1:9/v1"], 1, "cannot reach the vLLM server"),
    ]  # fmt: skip
    for args, code, needle in cases:
        result = runner.invoke(app, [*args, "--db", f"sqlite:///{tmp_path / 'c.db'}"])
        assert result.exit_code == code, (args, result.output)
        assert needle in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.output


def test_constitution_lint(tmp_path: Path) -> None:
    result = runner.invoke(app, ["constitution", "lint", "harmlessness", "helpfulness"])
    assert result.exit_code == 0 and "ok (harmlessness v1.0" in result.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("id: x\nversion: '1'\ntitle: t\ntask: {kind: categorical}\nprinciples: []\n")
    result = runner.invoke(app, ["constitution", "lint", str(bad), "--json"])
    assert result.exit_code == 1
    problems = json.loads(result.stdout)
    assert {p["field"] for p in problems} == {"principles"}
    assert problems[0]["line"] == 5


def test_constitution_show_from_db(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'c.db'}"
    runner.invoke(app, ["label", str(items(tmp_path)), "-c", "harmlessness", "--backend", "fake",
                        "--db", db, "--id-field", "uid", "-q"])  # fmt: skip
    from critic.constitution import load_constitution

    digest = load_constitution("harmlessness").hash
    result = runner.invoke(app, ["constitution", "show", digest[:10], "--db", db])
    assert result.exit_code == 0 and f"# hash: {digest}" in result.stdout
    assert "Do not give instructions" in result.stdout


def test_a_bad_setting_names_the_flag_on_the_command_line(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'c.db'}"
    result = runner.invoke(
        app,
        ["label", str(items(tmp_path)), "-c", "harmlessness", "--backend", "fake",
         "--db", db, "--samples", "2", "--temperature", "0"],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "--samples > 1 needs a --temperature above 0" in result.output
    assert "hint: set --temperature to 1.0" in result.output
