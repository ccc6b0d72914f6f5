"""The terminal review loop: inert rendering, keys, the loop on a real SQLite store, raw keys."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from adjudication import Claim, Store, open_store
from adjudication.terminal import (
    LineKeys,
    Position,
    TerminalKeys,
    clean,
    inert,
    label_keys,
    open_keys,
    parse_key,
    render,
    review,
)
from adjudication.testing import FakeClock

HOSTILE = "[red]x[/red] \x1b[31mred\x1b[0m <script>alert(1)</script>"
LABELS = ["safe", "unsafe"]


class Script:
    """Keys and typed lines from a list; `before` runs before each key (to move a fake clock)."""

    def __init__(self, *keys: str, before: Callable[[], None] | None = None) -> None:
        self.keys = list(keys)
        self.before = before
        self.prompts: list[str] = []

    def key(self) -> str | None:
        if self.before is not None:
            self.before()
        return self.keys.pop(0) if self.keys else None

    def line(self, prompt: str) -> str:
        self.prompts.append(prompt)
        return self.keys.pop(0) if self.keys else ""


def task(n: int, **extra: Any) -> dict[str, Any]:
    return {
        "item_id": f"item-{n}",
        "item": {"prompt": f"p{n}", "response": f"r{n}"},
        "draft": {"rationale": f"why {n}", "critique": f"c{n}", "revision": f"v{n}"},
        "draft_label": "safe",
        "confidence": n / 10,
        "route_reason": "low_confidence",
        "principle_ids": ["H1"],
        **extra,
    }


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> Iterator[Store]:
    with open_store(f"sqlite:///{tmp_path / 'queue.db'}", clock=clock) as opened:
        opened.add_user("ann")
        opened.add_user("bob")
        opened.add_user("ada", "adjudicator")
        yield opened


def make_queue(store: Store, name: str, **settings: Any) -> None:
    """A queue that ann, bob and ada work in."""
    store.create_queue(name, members=["ann", "bob", "ada"], **settings)


def plain() -> Console:
    return Console(file=io.StringIO(), width=120, force_terminal=False, color_system=None)


def shown(console: Console) -> str:
    file = console.file
    assert isinstance(file, io.StringIO)
    return file.getvalue()


# -- inert text ------------------------------------------------------------------------------


def test_clean_writes_control_characters_out_and_keeps_tabs_and_newlines() -> None:
    assert clean("a\x1b[31mb\x07\rc\x9b\td\r\ne") == "a\\x1b[31mb\\x07\\x0dc\\x9b\td\ne"
    assert clean("abc\u202edcba") == "abc\\u202edcba"  # a right-to-left override
    assert clean("ok é 中文 😀") == "ok é 中文 😀"


def test_inert_text_is_never_read_as_markup() -> None:
    text = inert(HOSTILE)
    assert text.plain == "[red]x[/red] \\x1b[31mred\\x1b[0m <script>alert(1)</script>"
    assert text.spans == []
    assert inert({"k": [1, "[b]"]}).plain == '{\n  "k": [\n    1,\n    "[b]"\n  ]\n}'


def hostile_claim(store: Store, queue: str = "harm", **extra: Any) -> Claim:
    make_queue(store, queue, labels=[*LABELS, HOSTILE], **extra)
    store.enqueue(
        queue,
        [
            {
                "item_id": f"id {HOSTILE}",
                "item": {"prompt": HOSTILE, HOSTILE: "key too"},
                "draft": {
                    "rationale": HOSTILE,
                    "findings": [{"principle": "H1", "quote": HOSTILE, "problem": HOSTILE}],
                    "critique": HOSTILE,
                    "revision": HOSTILE,
                    "principle_texts": {"H1": HOSTILE},
                },
                "draft_label": HOSTILE,
                "route_reason": HOSTILE,
                "principle_ids": ["H1"],
            }
        ],
    )
    claim = store.claim(queue, "ann")
    assert claim is not None
    return claim


def test_hostile_item_text_is_shown_literally_on_a_colour_terminal(store: Store) -> None:
    claim = hostile_claim(store)
    console = Console(file=io.StringIO(), width=400, force_terminal=True, color_system="truecolor")
    screen = render(claim, store.queue("harm"), position=Position(1, 1),
                    labels=store.queue("harm").labels or (), note=HOSTILE)  # fmt: skip
    console.print(screen)
    output = shown(console)
    literal = "[red]x[/red] \\x1b[31mred\\x1b[0m <script>alert(1)</script>"
    # Every field the item, the model or the reviewer wrote: item id, item key and value,
    # route reason, principle text, draft label, rationale, critique, finding, revision, note.
    assert output.count(literal) >= 12
    assert "\x1b[31mred" not in output and "\x1b[0m <script>" not in output


def test_hostile_item_text_leaves_no_escape_in_plain_output(store: Store) -> None:
    claim = hostile_claim(store)
    console = plain()
    console.print(render(claim, store.queue("harm"), position=Position(1, 1), labels=LABELS))
    output = shown(console)
    assert "\x1b" not in output
    assert "[red]x[/red]" in output and "<script>alert(1)</script>" in output


# -- rendering -------------------------------------------------------------------------------


def test_the_screen_shows_why_the_item_is_here_and_the_whole_draft(store: Store) -> None:
    make_queue(store, "harm", overlap=2, labels=LABELS)
    store.enqueue("harm", [task(3)])
    claim = store.claim("harm", "ann")
    assert claim is not None
    console = plain()
    console.print(render(claim, store.queue("harm"), position=Position(4, 9), labels=LABELS,
                         principles={"H1": "Do no harm."}))  # fmt: skip
    output = shown(console)
    for expected in ["review 1 of 2", "round 1", "item 4 of this session", "9 open in the queue",
                     "why here: low_confidence", "confidence 0.30", "item item-3", "p3", "r3",
                     "H1  Do no harm.", "label: safe", "why 3", "c3", "v3", " 1  safe (critic)",
                     " 2  unsafe", " a  accept", " x  escalate", " q  quit"]:  # fmt: skip
        assert expected in output, expected


def test_the_screen_names_response_a_and_b_by_their_part_in_a_blind_queue_too(
    store: Store,
) -> None:
    make_queue(store, "pairs", blind=True, labels=["A", "B", "tie"])
    store.enqueue("pairs", [{
        "item_id": "p1",
        "item": {"chosen": "Call a locksmith.", "prompt": "How?", "rejected": "Break it."},
        "draft": {"rationale": "SECRET", "fields": {"a": "rejected", "b": "chosen"}},
        "draft_label": "A",
    }])  # fmt: skip
    claim = store.claim("pairs", "ann")
    assert claim is not None
    console = plain()
    console.print(render(claim, store.queue("pairs"), position=Position(1, 1),
                         labels=["A", "B", "tie"]))  # fmt: skip
    output = shown(console)
    assert "SECRET" not in output  # still blind
    # Side by side: Response A (the `rejected` text) on the left, Response B on the right.
    titles = next(line for line in output.splitlines() if "Response B" in line)
    assert titles.index("Response A") < titles.index("Response B")
    texts = next(line for line in output.splitlines() if "Break it." in line)
    assert texts.index("Break it.") < texts.index("Call a locksmith.")


def test_a_blind_review_hides_the_draft_and_an_adjudication_shows_the_answers(
    store: Store,
) -> None:
    make_queue(store, "blind", overlap=2, blind=True, labels=LABELS)
    store.enqueue("blind", [task(1)])
    for name, label in (("ann", "safe"), ("bob", "unsafe")):
        claim = store.claim("blind", name)
        assert claim is not None
        console = plain()
        console.print(render(claim, store.queue("blind"), position=Position(1, 1), labels=LABELS,
                             principles={"H1": "Do no harm."}))  # fmt: skip
        before = shown(console)
        assert "blind queue: the critic's draft is hidden" in before
        assert "critic's draft" not in before.replace("the critic's draft is hidden", "")
        assert "why 1" not in before and "(critic)" not in before
        # Before the pick, nothing derived from the draft: not the route reason, the cited
        # principles, the confidence nor the priority (the confidence by default).
        for derived in ("low_confidence", "H1", "Do no harm", "confidence", "priority", "0.10"):
            assert derived not in before, derived
        assert "why here: hidden until you pick" in before
        picked = store.pick(claim.token, label)
        console = plain()
        console.print(render(picked, store.queue("blind"), position=Position(1, 1), labels=LABELS,
                             principles={"H1": "Do no harm."}))  # fmt: skip
        after = shown(console)  # after the pick: as before this change, the draft still hidden
        assert "why here: low_confidence" in after and "H1  Do no harm." in after
        assert f"your pick: {label} (recorded; a confirms it)" in after and "priority 0.10" in after
        assert "why 1" not in after and "confidence 0." not in after
        store.decide(claim.token, "accept", label=label, note=f"{name} thinks {label}")
    adjudication = store.claim("blind", "ada")
    assert adjudication is not None and adjudication.kind == "adjudication"
    console = plain()
    console.print(render(adjudication, store.queue("blind"), position=Position(1, 1),
                         labels=LABELS))  # fmt: skip
    output = shown(console)
    assert "adjudication" in output and "the reviewers disagree" in output
    assert "ann" in output and "accept → safe" in output and "bob thinks unsafe" in output
    assert "why 1" in output  # adjudicators see the draft
    assert " x  escalate" not in output


def test_number_keys_pick_labels_in_order_or_by_score() -> None:
    assert label_keys(["safe", "unsafe"]) == {"1": "safe", "2": "unsafe"}
    assert label_keys(["0", "1", "2"]) == {"0": "0", "1": "1", "2": "2"}
    assert parse_key("2", LABELS) is not None and parse_key("2", LABELS) == parse_key("2 ", LABELS)
    picked = parse_key("2", LABELS)
    assert picked is not None and (picked.name, picked.label) == ("pick", "unsafe")
    assert parse_key("3", LABELS) is None
    for key, name in [("a", "accept"), ("E", "edit"), ("x", "escalate"), ("escalate", "escalate"),
                      ("skip", "skip"), ("q", "quit"), ("n", "note")]:  # fmt: skip
        command = parse_key(key, LABELS)
        assert command is not None and command.name == name
    assert parse_key("z", LABELS) is None and parse_key("pick", LABELS) is None


# -- the loop on a real store ----------------------------------------------------------------


def test_keys_accept_edit_reject_escalate_skip_and_quit(store: Store) -> None:
    make_queue(store, "harm", labels=LABELS)
    store.enqueue("harm", [task(n) for n in range(1, 9)])
    keys = Script("a", "e", "2", "2", "n", "looks fine", "1", "r", "x", "s", "q")
    console = plain()
    session = review(store, "harm", "ann", keys, console)

    decided = {d.item_id: (d.action, d.label, d.note) for d in store.decisions("harm")}
    assert decided == {
        "item-1": ("accept", "safe", None),
        "item-2": ("edit", "unsafe", None),  # e, then the number of a label
        "item-3": ("edit", "unsafe", None),  # a number key alone
        "item-4": ("accept", "safe", "looks fine"),  # a note, then the critic's label by number
        "item-5": ("reject", None, None),
        "item-6": ("escalate", None, None),
    }
    assert keys.prompts[0].startswith("label: its number, or type it")
    assert [e.kind for e in store.history("harm", "item-7")][-1] == "skipped"
    assert [e.kind for e in store.history("harm", "item-8")][-1] == "released"
    assert session.decided == {"accept": 2, "edit": 2, "reject": 1, "escalate": 1}
    assert (session.skipped, session.released, session.finished) == (1, "item-8", False)
    assert "✓ edited item item-3 as unsafe" in shown(console)


def test_u_undoes_the_last_decision_and_shows_that_item_again(store: Store) -> None:
    make_queue(store, "harm", labels=LABELS)
    store.enqueue("harm", [task(n) for n in range(1, 4)])
    # u with nothing decided yet is refused on the screen; the item stays.
    keys = Script("u", "2", "u", "1", "a", "q")
    console = plain()
    session = review(store, "harm", "ann", keys, console)

    decided = {d.item_id: (d.action, d.label) for d in store.decisions("harm")}
    assert decided == {"item-1": ("accept", "safe"), "item-2": ("accept", "safe")}
    out = shown(console)
    assert "you have no decision in queue 'harm' to undo" in out
    assert "↶ undid your edit of item item-1: decide it again" in out
    withdrawn = [e for e in store.history("harm", "item-1") if e.kind == "withdrawn"]
    assert len(withdrawn) == 1 and withdrawn[0].before is not None
    assert withdrawn[0].before["label"] == "unsafe"
    # item-2 was on screen when u was pressed: it went back to the pool, and came to ann again
    # once she had decided item-1 anew.
    assert [e.kind for e in store.history("harm", "item-2")].count("released") == 1
    assert session.undone == 1 and session.released == "item-3"


def test_the_loop_runs_until_nothing_is_left_for_the_reviewer(store: Store) -> None:
    make_queue(store, "harm", labels=LABELS)
    store.enqueue("harm", [task(n) for n in range(1, 5)])
    console = plain()
    session = review(store, "harm", "ann", Script("r", "x", "s", "a"), console)

    actions = {d.item_id: d.action for d in store.decisions("harm")}
    assert actions == {"item-1": "reject", "item-2": "escalate", "item-4": "accept"}
    assert store.task("harm", "item-1").rejected
    assert store.task("harm", "item-2").state == "adjudication"
    assert [e.kind for e in store.history("harm", "item-3")][-1] == "skipped"
    assert session.finished and session.skipped == 1 and session.released is None
    assert store.claim("harm", "ann") is None  # skipped items stay skipped for ann
    assert store.claim("harm", "bob") is not None  # but not for bob


def test_refused_decisions_are_explained_and_the_item_stays(store: Store) -> None:
    make_queue(store, "blind", overlap=2, blind=True, labels=LABELS)
    store.enqueue("blind", [task(1)])
    console = plain()
    session = review(store, "blind", "ann", Script("a", "z", "e", "", "e", "nope", "2"), console)

    output = shown(console)
    assert "this queue is blind: pick your own label with a number key" in output
    assert "unknown key 'z'" in output and "edit cancelled" in output
    assert "'nope' is not a label of queue 'blind'" in output
    [decision] = store.decisions("blind")
    assert (decision.action, decision.label) == ("accept", "unsafe")  # blind: picks are answers
    assert session.finished


def test_a_blind_number_key_records_the_pick_before_the_decision(store: Store) -> None:
    """Issue 19, item 5: the store takes accept and edit in a blind queue only on a recorded
    pick; the terminal records it first, so one key still decides an item."""
    make_queue(store, "blind", blind=True, labels=LABELS)
    # item-3 is picked elsewhere (say in the web app) and given back; it comes last here.
    store.enqueue("blind", [task(3)])
    third = store.claim("blind", "ann")
    assert third is not None
    store.pick(third.token, "unsafe")
    store.release(third.token)
    store.enqueue("blind", [task(1), task(2)])
    # item-1: a number key; item-2: e and a typed label; item-3: 1 is refused, a confirms.
    console = plain()
    session = review(store, "blind", "ann", Script("2", "e", "safe", "1", "a"), console)

    decided = {d.item_id: (d.action, d.label) for d in store.decisions("blind")}
    assert decided == {
        "item-1": ("accept", "unsafe"),
        "item-2": ("accept", "safe"),
        "item-3": ("accept", "unsafe"),
    }
    for item in ("item-1", "item-2"):
        kinds = [e.kind for e in store.history("blind", item)]
        assert kinds[-3:] == ["claimed", "picked", "decided"], item
    output = shown(console)
    # item-3's held pick: 1 (safe) is refused, a confirms unsafe.
    assert "you picked 'unsafe' before the draft was shown" in output
    assert "your pick: unsafe (recorded; a confirms it)" in output
    assert session.finished and sum(session.decided.values()) == 3


def test_a_key_after_another_window_decided_the_claim_says_the_first_decision_stands(
    store: Store,
) -> None:
    """The same reviewer in two terminals (or a terminal and a browser tab) shares one claim:
    the decision made first stands, and the other window says its key was not saved."""
    make_queue(store, "harm", labels=LABELS)
    store.enqueue("harm", [task(1), task(2)])

    def other_window() -> None:
        held = store.held("harm", "ann", kind="review")
        if held is not None and not store.decisions("harm"):
            store.decide(held.token, "accept")

    console = plain()
    keys = Script("2", "e", "UNSAFE", before=other_window)
    session = review(store, "harm", "ann", keys, console)

    decided = {d.item_id: (d.action, d.label) for d in store.decisions("harm")}
    assert decided == {"item-1": ("accept", "safe"), "item-2": ("edit", "unsafe")}
    output = shown(console)
    assert "not saved: item item-1 was already decided with this claim (accept as safe" in output
    assert "that decision stands" in output and "edited item item-1" not in output
    # A label typed in another case is the set's label (the store's one matching rule): saved.
    assert "✓ edited item item-2 as unsafe" in output
    assert session.decided == {"edit": 1} and session.finished


def test_an_adjudicator_cannot_escalate_and_decides_by_number(store: Store) -> None:
    make_queue(store, "harm", overlap=2, labels=LABELS)
    store.enqueue("harm", [task(1)])
    for name, action in (("ann", "accept"), ("bob", "escalate")):
        claim = store.claim("harm", name)
        assert claim is not None
        store.decide(claim.token, action)  # type: ignore[arg-type]
    console = plain()
    review(store, "harm", "ada", Script("x", "2"), console)

    assert "an adjudicator decides, and cannot escalate" in shown(console)
    assert "escalated by bob" in shown(console)
    done = store.task("harm", "item-1")
    assert (done.state, done.final_label, done.final_source) == ("done", "unsafe", "adjudicated")


def test_the_heartbeat_keeps_the_lease_while_the_reviewer_reads(
    store: Store, clock: FakeClock
) -> None:
    make_queue(store, "harm", labels=LABELS, lease_seconds=10)
    store.enqueue("harm", [task(1)])

    def read_slowly() -> None:
        for _ in range(2):  # 12 s of reading in all: longer than the 10 s lease
            clock.advance(6)
            time.sleep(0.3)  # several heartbeats, 0.02 s apart

    session = review(store, "harm", "ann", Script("a", before=read_slowly), plain(),
                     heartbeat_seconds=0.02)  # fmt: skip
    assert session.decided == {"accept": 1} and session.lost == 0


def test_without_a_heartbeat_the_expired_item_is_lost_then_claimed_again(
    store: Store, clock: FakeClock
) -> None:
    make_queue(store, "harm", labels=LABELS, lease_seconds=10)
    store.enqueue("harm", [task(1)])
    moves = iter([11.0])  # the first item is read for longer than its lease

    def read() -> None:
        clock.advance(next(moves, 0))

    keys = Script("a", "a", before=read)
    console = plain()
    session = review(store, "harm", "ann", keys, console, heartbeat_seconds=3600)

    assert "expired" in shown(console) and "the item went back to the queue" in shown(console)
    assert session.lost == 1 and session.decided == {"accept": 1}
    [decision] = store.decisions("harm")
    assert decision.reviewer == "ann"


def test_quitting_or_ctrl_c_gives_the_item_back(store: Store) -> None:
    make_queue(store, "harm", labels=LABELS)
    store.enqueue("harm", [task(1)])

    class Interrupt(Script):
        def key(self) -> str | None:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        review(store, "harm", "ann", Interrupt(), plain())
    assert [e.kind for e in store.history("harm", "item-1")][-1] == "released"
    session = review(store, "harm", "ann", Script(), plain())  # end of input quits
    assert session.released == "item-1"
    assert store.claim("harm", "bob") is not None  # no lease left to wait out


# -- where keys come from --------------------------------------------------------------------


def test_piped_input_gives_one_command_per_line() -> None:
    keys = LineKeys(io.StringIO("a\n\n  12 \nmy note\n"), plain())
    assert [keys.key(), keys.key(), keys.line("note: "), keys.key()] == ["a", "12", "my note", None]
    assert isinstance(open_keys(io.StringIO(""), plain()), LineKeys)


def test_a_terminal_gives_single_keys_in_raw_mode() -> None:
    master, slave = os.openpty()
    try:
        with os.fdopen(slave, "r", closefd=False) as stream:
            keys = open_keys(stream, plain())
            assert isinstance(keys, TerminalKeys)
            os.write(master, b"a")
            assert keys.key() == "a"
            os.write(master, b"\x1b[A")  # an arrow key is swallowed whole
            assert keys.key() == "\x1b"
            os.write(master, b"3")
            assert keys.key() == "3"
            os.write(master, "é".encode())
            assert keys.key() == "é"
            # Ctrl-C reaches us as a byte only in raw mode (in normal mode it is a signal), so
            # press it while key() waits.
            threading.Timer(0.2, os.write, (master, b"\x03")).start()
            with pytest.raises(KeyboardInterrupt):
                keys.key()
            os.write(master, b"unsafe\r")  # typed text in the terminal's normal (line) mode
            assert keys.line("label: ") == "unsafe"
    finally:
        os.close(master)
        os.close(slave)


def test_the_terminal_loop_never_imports_critic() -> None:
    probe = (
        "import sys, adjudication.terminal; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'critic'))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_a_revision_is_accepted_or_edited_in_the_terminal_without_a_label(store: Store) -> None:
    make_queue(store, "revise")
    store.enqueue("revise", [task(n, draft_label=None, answer="revision") for n in (1, 2, 3)])
    keys = Script("a", "e", "HUMAN REVISED TEXT", "e", "", "q")
    console = plain()
    review(store, "revise", "ann", keys, console)
    decided = {d.item_id: (d.action, d.label, d.edit) for d in store.decisions("revise")}
    assert decided == {
        "item-1": ("accept", None, None),
        "item-2": ("edit", None, {"revision": "HUMAN REVISED TEXT"}),
    }
    assert keys.prompts[0].startswith("the revised reply")
    assert "a revision (A accepts its text, E edits it)" in shown(console)
    assert "edit cancelled" in shown(console)  # an empty line keeps item-3 undecided
    assert store.task("revise", "item-2").final_edit == {"revision": "HUMAN REVISED TEXT"}
