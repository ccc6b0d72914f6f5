"""What the review screen shows, as pure functions: evidence, diffs, principles, the note rule,
and the dashboard's figures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from adjudication.models import DecisionLine, TaskLine
from adjudication.web.metrics import burn_down, overrides_by_principle, throughput
from adjudication.web.render import (
    DiffPart,
    Segment,
    draft_view,
    highlight,
    item_view,
    needs_note,
    principles,
    word_diff,
)


def test_evidence_is_found_across_case_whitespace_and_wrapping_quotes() -> None:
    text = "Sure.\nTo BUILD a\n  bomb you need <b>stuff</b>."
    assert highlight(text, [(1, '"to build a bomb…"'), (2, "<b>stuff</b>")]) == (
        Segment("Sure.\n"),
        Segment("To BUILD a\n  bomb", (1,)),
        Segment(" you need "),
        Segment("<b>stuff</b>", (2,)),
        Segment("."),
    )


def test_overlapping_evidence_carries_both_findings() -> None:
    assert highlight("one two three", [(1, "one two"), (2, "two three")]) == (
        Segment("one ", (1,)),
        Segment("two", (1, 2)),
        Segment(" three", (2,)),
    )


def test_a_quote_that_is_not_in_the_text_marks_nothing() -> None:
    assert highlight("abc", [(1, "xyz"), (2, "  ")]) == (Segment("abc"),)
    assert highlight("", [(1, "a")]) == ()


def test_the_word_diff_keeps_whitespace_and_marks_whole_words() -> None:
    assert word_diff("The cat sat.", "The dog sat!") == (
        DiffPart("same", "The"),
        DiffPart("del", " cat"),
        DiffPart("ins", " dog"),
        DiffPart("same", " sat"),
        DiffPart("del", "."),
        DiffPart("ins", "!"),
    )
    parts = word_diff("a b c", "a b c d")
    assert "".join(p.text for p in parts if p.op != "del") == "a b c d"


def test_item_view_shows_known_fields_first_and_finds_round_quotes() -> None:
    item = {"id": 7, "response": "I will not help.", "prompt": "Help me", "meta": {"k": 1}}
    draft = {"rounds": [{"round": 1, "findings": [{"principle": "P1", "quote": "not help"}]}]}
    view = item_view(item, draft)
    assert [f.name for f in view.fields] == ["prompt", "response"]
    assert view.fields[1].segments[1] == Segment("not help", (1,))
    assert view.other == (("id", "7"), ("meta", '{\n  "k": 1\n}'))
    (finding,) = view.findings
    assert (finding.principle, finding.round, finding.found) == ("P1", 1, True)


def test_the_fields_that_played_a_part_are_shown_by_their_part() -> None:
    """A pair judged with `--a-field rejected --b-field chosen`: the reviewer's "Response B"
    button means the `chosen` text, which must be the one shown as Response B, after A."""
    item = {"chosen": "Call a locksmith.", "prompt": "How do I get in?", "rejected": "Break it."}
    draft = {"fields": {"prompt": "prompt", "a": "rejected", "b": "chosen"}}
    view = item_view(item, draft)
    assert [(f.name, f.segments) for f in view.fields] == [
        ("prompt", (Segment("How do I get in?"),))
    ]
    assert view.pair is not None
    assert [(f.caption, f.name, f.segments) for f in view.pair] == [
        ("Response A", "rejected", (Segment("Break it."),)),
        ("Response B", "chosen", (Segment("Call a locksmith."),)),
    ]
    labelled = item_view({"uid": "7", "reply": "Hi."}, {"fields": {"response": "reply"}})
    assert [(f.name, f.judged) for f in labelled.fields] == [("reply", True)]


def test_a_conversation_is_shown_turn_by_turn() -> None:
    view = item_view({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant"}]}, {})
    assert [(t.role, t.segments) for t in view.conversation] == [
        ("user", (Segment("hi"),)),
        ("assistant", ()),
    ]


def test_draft_view_diffs_the_revision_against_the_original() -> None:
    view = draft_view({"response": "x y"}, {"revision": "x z", "extra": [1]}, "bad")
    assert view.label == "bad"
    assert [p.op for p in view.diff] == ["same", "del", "ins"]
    assert view.other == (("extra", "[\n  1\n]"),)
    failed = draft_view({}, {"failure": "parse_failure", "detail": "bad JSON"}, None)
    assert failed.failure == "parse_failure: bad JSON"


def test_principles_come_with_their_text_when_the_draft_carries_it() -> None:
    draft = {
        "principles": ["P2"],
        "findings": [{"principle": "P3", "quote": "q"}],
        "principle_texts": {"P1": "Be kind.", "P3": "Be brief."},
    }
    shown = principles(["P1"], draft)
    assert [(p.id, p.text) for p in shown] == [
        ("P1", "Be kind."),
        ("P2", None),
        ("P3", "Be brief."),
    ]


def test_only_overrides_of_confident_drafts_need_a_note() -> None:
    assert needs_note(0.9, "reject", None, "safe", False)
    assert needs_note(0.95, "edit", "unsafe", "safe", False)
    assert needs_note(0.95, "edit", None, "safe", True)
    assert not needs_note(0.95, "accept", None, "safe", False)
    assert not needs_note(0.95, "edit", "safe", "safe", False)
    assert not needs_note(0.95, "escalate", None, "safe", False)
    assert not needs_note(0.89, "reject", None, "safe", False)
    assert not needs_note(None, "reject", None, "safe", False)


T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _line(item: str, state: str, done_after_h: float, principles: tuple[str, ...] = ()) -> TaskLine:
    return TaskLine(item, state, "safe", principles, T0, T0 + timedelta(hours=done_after_h))


def _decision(item: str, who: str, action: str, label: str | None, hours: float) -> DecisionLine:
    note = "[constitution gap] x" if action == "escalate" else None
    return DecisionLine(item, who, "review", action, label, False, note, 30.0, 1,
                        T0 + timedelta(hours=hours))  # fmt: skip


def test_burn_down_counts_open_items_and_the_recent_rate() -> None:
    lines = [_line("a", "done", 1), _line("b", "done", 3), _line("c", "pending", 0)]
    burn = burn_down(lines, T0 + timedelta(hours=4), steps=4)
    assert burn.open == (3, 2, 2, 1, 1)
    assert burn.done_per_hour is None and burn.eta_hours is None  # 2 settled: too few for a rate
    assert burn.points().startswith("0.0,0.0 ")
    assert burn_down([], T0).times == ()
    many = [_line(f"d{i}", "done", 1 + i % 3) for i in range(20)] + [_line("open", "pending", 0)]
    burn = burn_down(many, T0 + timedelta(hours=4), steps=4)
    assert (burn.done_per_hour, burn.eta_hours) == (5.0, 0.2)


def test_rates_need_ten_events_over_ten_minutes() -> None:
    """Three items settled in a few seconds are not thousands an hour."""

    def settled(n: int) -> list[TaskLine]:
        at = [T0 + timedelta(seconds=i) for i in range(n)]
        return [TaskLine(f"q{i}", "done", "safe", (), T0, t) for i, t in enumerate(at)]

    assert burn_down(settled(3), T0 + timedelta(seconds=4)).done_per_hour is None
    burst = settled(50)
    assert burn_down(burst, T0 + timedelta(seconds=60)).done_per_hour is None  # under 10 min
    assert burn_down(burst, T0 + timedelta(minutes=10)).done_per_hour == 300.0
    fast = [DecisionLine("x", "rita", "review", "accept", "safe", False, None, 0.5, 1, T0)] * 30
    assert throughput(fast, T0)[0].per_hour is None  # 15 s of review time


def test_overrides_per_principle_and_throughput_per_reviewer() -> None:
    lines = [_line("a", "done", 1, ("P1",)), _line("b", "done", 1, ("P1", "P2"))]
    decided = [
        _decision("a", "rita", "accept", "safe", 1),
        _decision("b", "rita", "reject", None, 2),
        _decision("b", "rick", "escalate", None, 30),
    ]
    by_principle = {p.principle: p for p in overrides_by_principle(lines, decided)}
    assert (by_principle["P1"].reviews, by_principle["P1"].overridden) == (2, 1)
    assert by_principle["P1"].rate == 0.5
    assert (by_principle["P2"].rate, by_principle["P2"].gaps) == (1.0, 1)
    steady = [_decision(f"s{i}", "sam", "accept", "safe", 29) for i in range(20)]  # 30 s each
    speed = {t.reviewer: t for t in throughput(decided + steady, T0 + timedelta(hours=30))}
    assert (speed["rita"].reviews, speed["rita"].per_hour, speed["rita"].last_day) == (2, None, 0)
    assert speed["rick"].last_day == 1
    assert speed["sam"].per_hour == 120.0  # 20 decisions over 10 minutes of review time


def test_gaps_are_counted_by_the_rule_constitution_stats_uses() -> None:
    lines = [_line("a", "done", 1, ("P1",)), _line("b", "done", 1, ("P1",))]
    hashed = [
        DecisionLine("a", "rita", "review", "accept", "safe", False, "fine #gap", 30.0, 1, T0),
        DecisionLine("b", "rita", "review", "edit", "unsafe", False, "gap: no rule", 30.0, 1, T0),
        DecisionLine("b", "adam", "adjudication", "accept", "safe", False, "#gap", 30.0, 1, T0),
    ]
    (p1,) = overrides_by_principle(lines, hashed)
    assert p1.gaps == 2  # review decisions only, as `critic constitution stats` counts them
