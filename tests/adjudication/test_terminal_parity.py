"""The terminal shows what the web app shows: guidelines on g, pairs as pairs with each order's
verdict and rationale in words, the judged field marked, hidden fields left out, and the
revision as a diff."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from adjudication import Store, open_store
from adjudication.guidelines import arrange
from adjudication.terminal import Position, render, review
from adjudication.testing import FakeClock

HOSTILE = "[red]x[/red] \x1b[31mred\x1b[0m <script>alert(1)</script>"
LITERAL = "[red]x[/red] \\x1b[31mred\\x1b[0m <script>alert(1)</script>"

GUIDELINES = {
    "title": "Harmless pairs",
    "version": "1.1",
    "instructions": f"Pick the less harmful reply. {HOSTILE}",
    "labels": [
        {"name": "A", "description": "Response A: the first reply is less harmful"},
        {"name": "B", "description": "Response B: the second reply is less harmful"},
        {"name": "tie", "description": "tie: neither is"},
    ],
    "principles": [
        {"id": "H1", "text": "Refuse violence.",
         "examples": [{"text": "How to hurt?", "label": "B", "explanation": "B refuses"}]},
        {"id": "H2", "text": "Be honest."},
    ],
}  # fmt: skip

PAIR_DRAFT = {
    "preference": "a",
    "prob_a": 0.7,
    "swap_inconsistent": True,
    "principles": ["H1"],
    "judgments": [
        {"principle": "H1", "order": "ab", "preferred": "a", "prob_a": 0.9,
         "rationale": "A refuses politely."},
        {"principle": "H1", "order": "ba", "preferred": "b", "prob_a": 0.4,
         "rationale": "Second shown is kinder."},
    ],
    "fields": {"prompt": "question", "a": "chosen", "b": "rejected"},
}  # fmt: skip


class Script:
    def __init__(self, *keys: str) -> None:
        self.keys = list(keys)

    def key(self) -> str | None:
        return self.keys.pop(0) if self.keys else None

    def line(self, prompt: str) -> str:
        return self.keys.pop(0) if self.keys else ""


class Recording(Console):
    """A plain console that keeps every screen it printed (clear() does not erase them)."""

    def __init__(self) -> None:
        super().__init__(file=io.StringIO(), width=140, force_terminal=False, color_system=None)


def _output(console: Console) -> str:
    file = console.file
    assert isinstance(file, io.StringIO)
    return file.getvalue()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with open_store(f"sqlite:///{tmp_path / 'queue.db'}", clock=FakeClock()) as opened:
        opened.add_user("ann")
        yield opened


def _pair_queue(store: Store, **settings: Any) -> None:
    store.create_queue("pref", members=["ann"], **settings)
    store.adopt_labels("pref", ["A", "B", "tie"], {g["name"]: g["description"]
                                                   for g in GUIDELINES["labels"]})  # type: ignore[index,attr-defined]  # fmt: skip
    store.set_guidelines("pref", "v11", GUIDELINES)
    store.edit_queue("pref", hidden_fields=["human_preference"])
    store.enqueue("pref", [{
        "item_id": "p1",
        "item": {"question": "How do I hurt someone?", "chosen": "I won't help.",
                 "rejected": "Here is how.", "human_preference": "GOLD-chosen"},
        "draft": PAIR_DRAFT, "draft_label": "a", "confidence": 0.4,
        "route_reason": "swap_inconsistent", "principle_ids": ["H1"], "guidelines": "v11",
    }])  # fmt: skip


def test_a_pair_shows_both_responses_each_orders_verdict_and_no_hidden_field(
    store: Store,
) -> None:
    _pair_queue(store)
    claim = store.claim("pref", "ann")
    assert claim is not None
    q = store.queue("pref")
    console = Recording()
    console.print(render(claim, q, position=Position(1, 1), labels=q.labels or ()))
    out = _output(console)
    assert "How do I hurt someone?" in out and "Response A" in out and "Response B" in out
    assert out.index("How do I hurt someone?") < out.index("Response A") < out.index("I won't")
    assert "GOLD-chosen" not in out and "human_preference" not in out
    for expected in [
        "The critic prefers Response A, with probability 0.70 that it is the better one",
        "The two presentation orders disagree under H1",
        "H1, Response A shown first: prefers Response A (P(Response A better) = 0.90)",
        "H1, Response B shown first: prefers Response B (P(Response A better) = 0.40)",
        "A refuses politely.", "Second shown is kinder.",  # the rationale of each order
        "label: A (Response A)", " 1  Response A", " 2  Response B", " 3  tie",
    ]:  # fmt: skip
        assert expected in out, expected
    assert '"judgments"' not in out  # no raw JSON dump of the verdicts


def test_g_shows_the_guidelines_of_the_drafting_version_and_hides_them_again(
    store: Store,
) -> None:
    _pair_queue(store)
    console = Recording()
    session = review(store, "pref", "ann", Script("g", "g", "1"), console)
    assert sum(session.decided.values()) == 1
    screens = _output(console).split("queue pref · ")
    first, shown, hidden = screens[1], screens[2], screens[3]
    assert "Refuse violence" not in first and "Harmless pairs" not in first
    for expected in ["Harmless pairs (version 1.1)", "Pick the less harmful reply.", LITERAL,
                     "Response A: the first reply is less harmful", "tie: neither is",
                     "principles this item cites", "H1  Refuse violence.",
                     "example: How to hurt? → B", "why: B refuses", "other principles",
                     "H2  Be honest."]:  # fmt: skip
        assert expected in shown, expected
    assert "Refuse violence" not in hidden and "<script>alert(1)</script>" not in hidden
    assert "\x1b[31m" not in _output(console)  # the hostile instructions stay inert


def test_a_blind_review_shows_the_guidelines_but_not_which_principles_the_draft_cites(
    store: Store,
) -> None:
    _pair_queue(store, blind=True)
    console = Recording()
    review(store, "pref", "ann", Script("g", "q"), console)
    out = _output(console)
    assert "Pick the less harmful reply." in out and "H1  Refuse violence." in out
    assert "principles this item cites" not in out and "swap_inconsistent" not in out
    assert "Response A" in out and "I won't help." in out  # the pair shows before the pick
    assert "prefers" not in out and "0.70" not in out  # nothing the critic wrote


def test_the_judged_field_is_marked_and_the_revision_is_a_diff(store: Store) -> None:
    store.create_queue("rev", members=["ann"])
    store.enqueue("rev", [{
        "item_id": "r1",
        "item": {"prompt": "Q?", "chosen": "The cat sat on the mat.", "rejected": "Other."},
        "draft": {"revision": "The dog sat on the big mat.", "rationale": "wrong animal",
                  "fields": {"prompt": "prompt", "response": "chosen"}},
        "draft_label": "unsafe",
    }])  # fmt: skip
    claim = store.claim("rev", "ann")
    assert claim is not None
    console = Recording()
    q = store.queue("rev")
    console.print(render(claim, q, position=Position(1, 1), labels=()))
    out = _output(console)
    assert "chosen (judged by the critic)" in out and "rejected (judged" not in out
    assert "[-cat-]{+dog+}" in out.replace(" ", "") and "{+big+}" in out.replace(" ", "")
    assert "wrong animal" in out


def test_arrange_puts_nothing_first_before_a_pick() -> None:
    from adjudication.guidelines import Guidelines

    shown = arrange(Guidelines.model_validate(GUIDELINES), ())
    assert shown.cited == () and [p.id for p in shown.others] == ["H1", "H2"]
