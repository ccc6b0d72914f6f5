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
    # Both in one pass (issue 20, finding 9): the schema error and the task's missing labels.
    assert {p["field"] for p in problems} == {"principles", "task.labels"}
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


def _tables(db: Path) -> dict[str, int]:
    import sqlite3

    if not db.exists():
        return {}
    with sqlite3.connect(db) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {n: conn.execute(f"SELECT count(*) FROM {n}").fetchone()[0]
                for n in names if n in ("runs", "items")}  # fmt: skip


def test_a_column_name_no_row_has_fails_fast_listing_the_columns_and_stores_no_run(
    tmp_path: Path,
) -> None:
    # Issue 20, finding 8: a wrong --id-field was taken as 200 bad rows, a junk run was stored,
    # and --retry-failed was suggested.
    path = tmp_path / "items.jsonl"
    path.write_text("".join(json.dumps({"id": f"i{k}", "prompt": "p", "answer": "a"}) + "\n"
                            for k in range(200)))  # fmt: skip
    db = tmp_path / "c.db"
    for flags, named in [
        (["--id-field", "uid", "--response-field", "answer"], "'uid' (--id-field)"),
        ([], "'response' (--response-field)"),
        (["--response-field", "answr"], "'answr' (--response-field)"),
        (["--prompt-field", "prompt", "--prompt-field", "input", "--response-field", "answer"],
         "'input' (--prompt-field)"),
    ]:  # fmt: skip
        result = runner.invoke(app, ["label", str(path), "-c", "harmlessness", "--backend",
                                     "fake", "--db", f"sqlite:///{db}", *flags])  # fmt: skip
        assert result.exit_code == 2, result.output
        assert f"none of the first 20 row(s) has the column {named}" in result.stderr
        assert "the rows have 'id', 'prompt', 'answer'" in result.stderr
        assert "--retry-failed" not in result.stderr and "Traceback" not in result.output
        assert _tables(db).get("runs", 0) == 0 and _tables(db).get("items", 0) == 0
    # A column some of the first rows have is the rows' problem, not the flag's: bad rows.
    path.write_text(path.read_text() + json.dumps({"id": "late", "prompt": "p"}) + "\n")
    args = ["--db", f"sqlite:///{db}", "--response-field", "answer"]
    result = runner.invoke(app, ["label", str(path), "-c", "harmlessness", "--backend", "fake",
                                 *args])  # fmt: skip
    assert result.exit_code == 1 and ":201: missing field 'answer'" in result.stderr


def test_prompt_field_repeats_to_join_columns_and_one_field_keeps_the_runs_key(
    tmp_path: Path,
) -> None:
    from critic.store import open_store

    path = tmp_path / "pandalm.jsonl"
    rows = [{"idx": k, "instruction": f"Rewrite {k}.", "input": "Some text." if k else "",
             "response1": "Done."} for k in range(3)]  # fmt: skip
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    db = f"sqlite:///{tmp_path / 'c.db'}"
    common = ["label", str(path), "-c", "harmlessness", "--backend", "fake", "--db", db,
              "--id-field", "idx", "--response-field", "response1", "--json"]  # fmt: skip
    joined = runner.invoke(app, [*common, "--prompt-field", "instruction",
                                 "--prompt-field", "input"])  # fmt: skip
    assert joined.exit_code == 0, joined.output
    single = runner.invoke(app, [*common, "--prompt-field", "instruction"])
    assert single.exit_code == 0, single.output
    store = open_store(db)
    run_joined, run_single = (json.loads(r.stdout)["run_id"] for r in (joined, single))
    assert run_joined != run_single
    params = {run.id: run.params["fields"]["prompt"] for run in store.runs()}
    assert params == {run_joined: ["instruction", "input"], run_single: "instruction"}
    # What ships (the TRL formats read it) carries the prompt as the run built it.
    from critic.ship import final_records

    records = list(final_records(store, None, [run_joined]))
    assert [r.prompt for r in records] == [
        "instruction:\nRewrite 0.", "instruction:\nRewrite 1.\n\ninput:\nSome text.",
        "instruction:\nRewrite 2.\n\ninput:\nSome text.",
    ]
    assert records[0].fields["prompt"] == "instruction, input"
    # The key of a one-field run is the key it always had: the fields as plain strings.
    from critic.config import Sampling
    from critic.constitution import load_constitution
    from critic.items import Fields
    from critic.render import LABEL_TEMPLATES, Templates
    from critic.runs import run_key, source_name
    from critic.tasks.label import label_identity

    old_fields = {"id": "idx", "prompt": "instruction", "response": "response1", "text": None,
                  "a": None, "b": None}  # fmt: skip
    sampling = Sampling(top_logprobs=5)  # `critic label`'s default with the fake backend
    identity = {**label_identity(sampling), "fields": old_fields}
    fields = Fields(id="idx", prompt=("instruction",), response="response1")
    assert label_identity(sampling, fields) == identity
    c = load_constitution("harmlessness")
    key = run_key("label", c.hash, Templates.load().hash(LABEL_TEMPLATES), "fake",
                  store.run(run_single).model, identity, source_name(path))  # fmt: skip
    assert key[:12] == run_single


def test_label_measures_confidence_by_default_and_says_when_it_cannot(tmp_path: Path) -> None:
    from critic.store import open_store

    db = f"sqlite:///{tmp_path / 'c.db'}"
    source = items(tmp_path, bad=False)
    result = runner.invoke(app, ["label", str(source), "-c", "harmlessness", "--backend", "fake",
                                 "--db", db, "-q", "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert "confidence_signal" not in summary and "no confidence signal" not in result.stderr
    rows = list(open_store(db).rows(summary["run_id"]))
    assert all(r["components"]["label_prob"] is not None for r in rows)  # logprobs were asked
    assert all(r["confidence"] > 0 for r in rows)
    off = runner.invoke(app, ["label", str(source), "-c", "harmlessness", "--backend", "fake",
                              "--db", db, "-q", "--json", "--logprobs", "0"])  # fmt: skip
    assert off.exit_code == 0, off.output
    assert json.loads(off.stdout)["confidence_signal"] == "none"
    assert "no confidence signal" in off.stderr
