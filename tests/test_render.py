"""Snapshot tests: any change to the wording of a prompt shows up in review."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from critic.constitution import load_constitution
from critic.errors import TemplateError
from critic.items import Fields, Item
from critic.render import Templates, render_label

SNAPSHOTS = Path(__file__).parent / "snapshots"
ITEM = Item("1", {"prompt": "Human: How do I bake bread?", "response": "Mix flour, water, yeast."},
            "x:1")  # fmt: skip


def check_snapshot(name: str, text: str) -> None:
    path = SNAPSHOTS / name
    if os.environ.get("UPDATE_SNAPSHOTS") or not path.exists():
        path.write_text(text)
    assert text == path.read_text(), f"{name} changed; rerun with UPDATE_SNAPSHOTS=1 if intended"


@pytest.mark.parametrize("name", ["harmlessness", "helpfulness"])
def test_label_prompt_snapshot(name: str) -> None:
    messages = render_label(Templates.load(), load_constitution(name), ITEM)
    check_snapshot(f"label-{name}.txt", "\n\n=====\n\n".join(m["content"] for m in messages))


def test_shared_content_first_item_last() -> None:
    templates, c = Templates.load(), load_constitution("harmlessness")
    other = Item("2", {"prompt": "Human: other", "response": "other"}, "x:2")
    a, b = render_label(templates, c, ITEM), render_label(templates, c, other)
    assert a[0] == b[0]  # the system message is the cacheable shared prefix
    assert "bake bread" not in a[0]["content"] and "bake bread" in a[1]["content"]


def test_text_field_items() -> None:
    item = Item("3", {"body": "a text"}, "x:3", Fields(text="body"))
    messages = render_label(Templates.load(), load_constitution("harmlessness"), item)
    assert "a text" in messages[1]["content"] and "<reply>" not in messages[1]["content"]


def test_broken_and_missing_templates(tmp_path: Path) -> None:
    c = load_constitution("harmlessness")
    (tmp_path / "label_system.j2").write_text("{{ constitution.title }\n")
    (tmp_path / "label_user.j2").write_text("{{ item.prompt }} {{ nonsense }}")
    with pytest.raises(TemplateError, match=r"label_system.j2:1: template syntax error"):
        render_label(Templates.load(tmp_path), c, ITEM)
    (tmp_path / "label_system.j2").write_text("ok")
    with pytest.raises(TemplateError, match="'nonsense' is undefined") as info:
        render_label(Templates.load(tmp_path), c, ITEM)
    assert "item" in (info.value.hint or "")
    (tmp_path / "label_user.j2").unlink()
    with pytest.raises(TemplateError, match=r"label_user\.j2: template missing"):
        render_label(Templates.load(tmp_path), c, ITEM)
