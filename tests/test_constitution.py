from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from critic.constitution import check, load_constitution, shipped_dir
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
        version: 1.0
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
