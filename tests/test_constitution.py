from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from critic.constitution import check, line_index, load_constitution, shipped_dir
from critic.errors import ConstitutionError

SHIPPED = [
    "harmlessness", "helpfulness", "cai-principles", "harmlessness-pairwise", "synthetic-sentiment"
]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(textwrap.dedent(text))
    return path


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_constitutions_are_clean(name: str) -> None:
    constitution, problems = check(shipped_dir() / f"{name}.yaml")
    assert constitution is not None
    assert problems == []


def test_shipped_kinds() -> None:
    assert load_constitution("harmlessness").task.kind == "categorical"
    assert {"harmless", "harmful"} <= set(load_constitution("harmlessness").label_names)
    assert load_constitution("helpfulness").scores == [1, 2, 3, 4, 5]
    cai = load_constitution("cai-principles")
    assert all(p.critique_request and p.revision_request for p in cai.principles)


def test_hash_is_stable_under_key_order_and_whitespace(tmp_path: Path) -> None:
    a = write(
        tmp_path,
        """
        id: x
        version: "1"
        title: T
        task: {kind: categorical, labels: [{name: a, description: A}, {name: b, description: B}]}
        principles: [{id: P1, text: be good}]
        """,
    )
    h1 = load_constitution(a).hash
    a.write_text(
        "principles:\n  - text:   be good\n    id: P1\ntitle: T\nversion: '1'\nid: x\n"
        "task:\n  labels:\n    - description: A\n      name: a\n"
        "    - {name: b, description: B}\n  kind: categorical\n"
    )
    assert load_constitution(a).hash == h1
    a.write_text(a.read_text().replace("be good", "be kind"))
    assert load_constitution(a).hash != h1


def test_unknown_key_is_an_error_with_line_and_hint(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        id: x
        version: "1"
        title: T
        task: {kind: categorical, labels: [{name: a, description: A}, {name: b, description: B}]}
        principles:
          - id: P1
            txet: typo here
        """,
    )
    _, problems = check(path)
    text = "\n".join(map(str, problems))
    assert f"{path}:8: principles[0].txet: Extra inputs are not permitted" in text
    assert "principles[0].text" in text  # the missing real key is reported too
    assert "hint:" in text


def test_semantic_problems_are_all_reported(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        id: x
        version: "1.0"
        title: T
        task:
          kind: rubric
          levels: [{score: 1, description: bad}, {score: 3, description: good}]
        principles:
          - {id: P1, text: one, examples: [{response: r, score: 7}]}
          - {id: P1, text: two}
        """,
    )
    constitution, problems = check(path)
    assert constitution is not None and constitution.version == "1.0"
    messages = [str(p) for p in problems if p.severity == "error"]
    assert any("principles[1].id: 'P1' is used twice" in m for m in messages)
    assert any("not consecutive" in m for m in messages)
    assert any("examples[0].score: 7 is not a score level" in m for m in messages)
    with pytest.raises(ConstitutionError, match="3 problem"):
        load_constitution(path)


def test_bad_yaml_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "id: x\ntitle: [unclosed\n")
    with pytest.raises(ConstitutionError, match=r"c\.yaml:\d+: not valid YAML"):
        load_constitution(path)


def test_missing_file_lists_shipped_names(tmp_path: Path) -> None:
    with pytest.raises(ConstitutionError) as info:
        load_constitution(tmp_path / "nope.yaml")
    assert "no such constitution file" in info.value.message
    assert "harmlessness" in (info.value.hint or "")


def test_critique_revise_needs_both_requests(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        id: x
        version: "1"
        title: T
        task: {kind: critique_revise}
        principles: [{id: P1, text: t, critique_request: c}]
        """,
    )
    _, problems = check(path)
    assert [p.field for p in problems] == ["principles[0].revision_request"]


# -- issue 20 ---------------------------------------------------------------------------------


def _bomb(levels: int = 7, width: int = 10) -> str:
    lines = ['a0: &a0 "lol"']
    for level in range(1, levels + 1):
        refs = ", ".join([f"*a{level - 1}"] * width)
        lines.append(f"a{level}: &a{level} [{refs}]")
    return "\n".join(lines) + "\n"


def test_a_yaml_alias_bomb_is_refused_at_once_naming_the_file_and_line(tmp_path: Path) -> None:
    import time

    from typer.testing import CliRunner

    from critic.cli import app

    # The constitution of VALID (below), with a bomb as its description from line 8 on.
    text = (
        'id: x\nversion: "1"\ntitle: T\n'
        "task: {kind: categorical, labels: [{name: a, description: A}, {name: b, description: B}]}"
        "\nprinciples: [{id: P1, text: t}]\n"
        "description:\n" + "".join(f"  {line}\n" for line in _bomb().splitlines())
    )
    path = tmp_path / "bomb.yaml"
    path.write_text(text)
    started = time.perf_counter()
    constitution, problems = check(path)
    assert time.perf_counter() - started < 0.5
    assert constitution is None
    assert [str(p) for p in problems] == [
        f"{path}:8: YAML aliases are not allowed in a constitution (alias *a0) (hint: write the "
        "text out where the alias stands; a few nested aliases can expand a small file into "
        "gigabytes)"
    ]
    started = time.perf_counter()
    result = CliRunner().invoke(app, ["constitution", "lint", str(path)])
    assert result.exit_code == 1 and "YAML aliases are not allowed" in result.stderr
    result = CliRunner().invoke(app, ["label", str(tmp_path / "x.jsonl"), "-c", str(path),
                                      "--backend", "fake"])  # fmt: skip
    assert result.exit_code == 1 and f"{path}:8: YAML aliases" in result.stderr
    assert time.perf_counter() - started < 5  # two CLI runs, no expansion
    assert line_index(_bomb()) == {}  # the walk never follows an alias


VALID = """
id: x
version: "1.0"
title: T
task: {kind: categorical, labels: [{name: a, description: A}, {name: b, description: B}]}
principles: [{id: P1, text: t}]
"""


@pytest.mark.parametrize("written", ["1.10", "2", "1.0"])
def test_a_version_yaml_reads_as_a_number_is_refused_with_a_hint_to_quote_it(
    tmp_path: Path, written: str
) -> None:
    path = write(tmp_path, VALID.replace('version: "1.0"', f"version: {written}"))
    constitution, problems = check(path)
    assert constitution is None
    (problem,) = problems
    assert problem.field == "version" and problem.line == 3
    assert "YAML reads this version as the number" in problem.message
    assert 'put it in quotes as you mean it, e.g. version: "1.10"' in problem.message
    path = write(tmp_path, VALID.replace('version: "1.0"', 'version: "1.10"'))
    assert load_constitution(path).version == "1.10"


def test_lint_reports_schema_and_semantic_problems_in_one_pass(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        id: x
        version: "1.0"
        title: T
        task:
          kind: categorical
          lables:
            - {name: harmless, description: fine}
            - {name: harmful, description: not fine}
        principles:
          - {id: H1, text: one}
          - id: H3
            text: two
            examples: [{response: r, label: benign}]
          - {id: H3, text: three}
        """,
    )
    constitution, problems = check(path)
    assert constitution is None
    assert [str(p) for p in problems] == [
        f"{path}:7: task.lables: Extra inputs are not permitted (hint: did you mean 'labels'?)",
        f"{path}:15: principles[2].id: 'H3' is used twice (first at principles[1]) (hint: "
        "principle ids must be unique and stable: give this one a new id)",
        f"{path}:14: principles[1].examples[0].label: 'benign' is not a label of this "
        "constitution (hint: use one of: harmless, harmful)",
    ]
