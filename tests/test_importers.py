"""Importing HF CAI recipe and Prometheus rubric files into critic constitutions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from critic.cli import app
from critic.constitution import check, load_constitution
from critic.errors import ConstitutionError, UsageError
from critic.importers import import_constitutions, parse_rubric

runner = CliRunner()


def errors_of(path: Path) -> list[str]:
    _, problems = check(path)
    return [str(p) for p in problems if p.severity == "error"]


def test_hf_cai_recipe_file(shared_data: Path, tmp_path: Path) -> None:
    source = shared_data / "formats" / "llm-swarm" / "constitution_anthropic.json"
    [(path, c)] = import_constitutions("hf-cai", source, tmp_path / "mine.yaml")
    assert errors_of(path) == []
    raw = json.loads(source.read_text())
    assert c.task.kind == "critique_revise" and len(c.principles) == len(raw["constitutions"])
    assert c.principles[0].critique_request == raw["constitutions"][0]["critic"]
    assert c.principles[0].revision_request == raw["constitutions"][0]["revision"]
    assert sum(len(p.examples) for p in c.principles) == len(raw["system_chat"])
    assert load_constitution(path).hash == c.hash


def test_prometheus_rubrics_file(shared_data: Path, tmp_path: Path) -> None:
    source = shared_data / "formats" / "prometheus" / "prometheus_rubrics.json"
    written = import_constitutions("prometheus", source, tmp_path / "rubrics")
    assert len(written) == len(json.loads(source.read_text())["rubrics"]) == 5
    for path, c in written:
        assert errors_of(path) == []
        assert c.task.kind == "rubric" and c.scores == [1, 2, 3, 4, 5]
        assert c.task.question and all(level.description for level in c.task.levels)
    assert {c.id for _, c in written} >= {"prometheus-helpfulness", "prometheus-harmlessness"}


def test_small_hf_cai_file_without_shared_data(tmp_path: Path) -> None:
    source = tmp_path / "cai.json"
    source.write_text(json.dumps({
        "constitutions": [{"critic": "Is it rude?", "revision": "Make it polite."}],
        "system_chat": [[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "go"},
                         {"role": "user", "content": "Is it rude?"},
                         {"role": "assistant", "content": "Yes."},
                         {"role": "user", "content": "Make it polite."},
                         {"role": "assistant", "content": "Hello!"}]],
    }))  # fmt: skip
    result = runner.invoke(app, ["constitution", "import", "--from", "hf-cai", str(source),
                                 "-o", str(tmp_path), "--id", "polite"])  # fmt: skip
    assert result.exit_code == 0, result.output
    c = load_constitution(tmp_path / "polite.yaml")
    assert c.id == "polite" and c.principles[0].examples[0].response == "go"


def test_rubric_text_parsing() -> None:
    criterion, levels = parse_rubric("[Is it kind?]\nScore 1: Rude.\nScore 2: Kind\n and warm.")
    assert criterion == "Is it kind?"
    assert levels == [{"score": 1, "description": "Rude."},
                      {"score": 2, "description": "Kind and warm."}]  # fmt: skip


def test_bad_inputs_are_reported(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"rubrics": {"X": "no levels here"}}')
    with pytest.raises(ConstitutionError, match=r"rubrics\.X"):
        import_constitutions("prometheus", bad, tmp_path / "out")
    with pytest.raises(ConstitutionError, match="constitutions"):
        import_constitutions("hf-cai", bad, tmp_path / "x.yaml")
    with pytest.raises(UsageError, match="hf-cai"):
        import_constitutions("openai", bad, tmp_path / "x.yaml")
    result = runner.invoke(
        app,
        [
            "constitution",
            "import",
            "--from",
            "hf-cai",
            str(tmp_path / "missing.json"),
            "-o",
            str(tmp_path / "x.yaml"),
        ],
    )
    assert result.exit_code == 1 and "no such file" in result.output


def test_prometheus_import_to_a_yaml_name_writes_a_file_or_says_why_not(tmp_path: Path) -> None:
    # Issue 20, finding 13: `-o x.yaml` silently created a directory named x.yaml.
    several = tmp_path / "rubrics.json"
    several.write_text(json.dumps({"rubrics": {
        "kind_rubric": "[Is it kind?]\nScore 1: Rude.\nScore 2: Kind.",
        "brief_rubric": "[Is it brief?]\nScore 1: Long.\nScore 2: Short.",
    }}))  # fmt: skip
    out = tmp_path / "x.yaml"
    result = runner.invoke(app, ["constitution", "import", "--from", "prometheus", str(several),
                                 "-o", str(out)])  # fmt: skip
    assert result.exit_code == 2, result.output
    assert f"{out}: {several} has 2 rubrics, and prometheus import writes one file per rubric" in (
        " ".join(result.stderr.split())
    )
    assert not out.exists()
    one = tmp_path / "one.json"
    one.write_text(json.dumps({"rubrics": {"kind_rubric": "[Is it kind?]\nScore 1: Rude.\n"
                                                          "Score 2: Kind."}}))  # fmt: skip
    [(path, c)] = import_constitutions("prometheus", one, out)
    assert path == out and out.is_file() and c.id == "prometheus-kind"
    assert errors_of(out) == []
