"""The terminal review loop behind `critic review next`: one claimed item at a time, single keys.

Everything an item, a model or a reviewer wrote is untrusted. It reaches the screen only through
`inert`: a rich `Text` (never parsed as console markup) whose control characters (ANSI escapes,
carriage returns, bidirectional overrides) are replaced by visible escapes such as `\\x1b`, so an
item can neither restyle the screen, move the cursor, nor hide part of itself.

Rendering is pure (values in, rich renderables out). `review` drives a store from a `Keys`
source: a real terminal in raw mode (`TerminalKeys`), lines from a pipe (`LineKeys`), or a
script in tests.
"""

from __future__ import annotations

import json
import os
import select
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TextIO

from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from .errors import LeaseError, QueueError
from .models import Action, Claim, Decision, Queue, Task
from .rules import same_answer
from .store import Store
from .text import field_titles

# C0 and C1 control characters (but tab and newline) and the bidirectional controls that can
# reorder what a reviewer sees ("Trojan Source"), each mapped to a visible escape.
_CONTROLS = [c for c in (*range(0x20), *range(0x7F, 0xA0)) if c not in (0x09, 0x0A)]
_BIDI = (0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A))
_VISIBLE = {c: f"\\x{c:02x}" for c in _CONTROLS} | {c: f"\\u{c:04x}" for c in _BIDI}


def clean(text: str) -> str:
    """`text` with every control character written out as a visible escape (`\\x1b`)."""
    return text.replace("\r\n", "\n").translate(_VISIBLE)


def inert(value: object, style: str = "") -> Text:
    """Untrusted text (or a JSON value) for the screen: never read as markup, no control codes."""
    text = value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False)
    return Text(clean(text), style=style)


# -- keys -----------------------------------------------------------------------------------

CommandName = Literal[
    "accept", "edit", "reject", "skip", "escalate", "note", "undo", "quit", "pick"
]
KEYS: dict[str, CommandName] = {
    "a": "accept",
    "e": "edit",
    "r": "reject",
    "s": "skip",
    "x": "escalate",
    "n": "note",
    "u": "undo",
    "q": "quit",
}


# From a pipe a command may also be typed as a word ("accept", "escalate").
_NAMES: dict[str, CommandName] = {**KEYS, **{name: name for name in KEYS.values()}}


@dataclass(frozen=True)
class Command:
    name: CommandName
    label: str = ""
    """The label a number key picked."""


def label_keys(labels: Sequence[str]) -> dict[str, str]:
    """What each number key picks: 1, 2, 3... in order, or the score itself for numeric labels.

    A rubric queue's labels are scores ("0" to "5"); pressing 3 must mean score 3, not the third
    score on the list.
    """
    if labels and all(label.isascii() and label.isdecimal() for label in labels):
        return {label: label for label in labels}
    return {str(number): label for number, label in enumerate(labels, start=1)}


def parse_key(key: str, labels: Sequence[str]) -> Command | None:
    """The command a key (or, from a pipe, a typed word or number) stands for; None if unknown."""
    typed = key.strip()
    picks = label_keys(labels)
    if typed in picks:
        return Command("pick", picks[typed])
    name = _NAMES.get(typed.lower())
    return None if name is None else Command(name)


def choices(queue: Queue, claim: Claim) -> tuple[str, ...]:
    """The labels number keys pick from: the queue's, or (for a free-label queue) those seen."""
    if queue.labels is not None:
        return queue.labels
    seen = [claim.task.draft_label, *(answer.label for answer in claim.answers)]
    return tuple(dict.fromkeys(label for label in seen if label is not None))


def is_blind(queue: Queue, claim: Claim) -> bool:
    """The reviewer gives their own label without seeing the critic's (adjudicators see all)."""
    return queue.blind and claim.kind == "review"


def unpicked(queue: Queue, claim: Claim) -> bool:
    """A blind review before the reviewer's pick: nothing derived from the draft may show (not
    why the item is here, the principles it cites, nor its priority, which is its confidence)."""
    return is_blind(queue, claim) and claim.pick is None


def pick_action(queue: Queue, claim: Claim, label: str) -> Action:
    """A picked label accepts the critic's draft when it is the draft's label, else edits it."""
    if is_blind(queue, claim) or label == claim.task.draft_label:
        return "accept"
    return "edit"


# -- rendering ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Position:
    number: int
    """This item's number in the session, from 1."""
    open: int
    """Items in the queue still waiting for a review or an adjudication."""


def _decimal(value: float | None) -> str:
    return "none" if value is None else f"{value:.2f}"


def _header(claim: Claim, queue: Queue, position: Position) -> Text:
    task = claim.task
    header = Text.assemble("queue ", inert(queue.name, "bold"), " · ")
    if claim.kind == "adjudication":
        header.append("adjudication", style="bold magenta")
    else:
        header.append(f"review {task.reviews + 1} of {queue.overlap}", style="bold cyan")
    header.append(f" · round {task.round} · item {position.number} of this session")
    header.append(f" · {position.open} open in the queue")
    return header


def _why(claim: Claim, queue: Queue) -> Text:
    task = claim.task
    why = Text("why here: ", style="bold")
    if claim.kind == "adjudication":
        escalated = [a.reviewer for a in claim.answers if a.action == "escalate"]
        if escalated:
            why.append("escalated by ").append(inert(", ".join(escalated)))
        else:
            why.append("the reviewers disagree")
        why.append(" · ")
    if unpicked(queue, claim):
        why.append("hidden until you pick · blind queue: the critic's draft is hidden")
        return why
    why.append(inert(task.route_reason) if task.route_reason else Text("no route reason"))
    if is_blind(queue, claim):
        why.append(" · blind queue: the critic's draft is hidden · your pick: ")
        why.append_text(inert(claim.pick or "", "bold")).append(" (recorded; a confirms it)")
    else:
        why.append(f" · confidence {_decimal(task.confidence)}")
    why.append(f" · priority {task.priority:.2f}", style="dim")
    return why


def _fields(values: Mapping[str, Any], titles: Mapping[str, str] | None = None) -> Text:
    """The fields, those with a title (`field_titles`: `Response B · rejected`) first."""
    titles = titles or {}
    ordered = [(k, values[k]) for k in titles if k in values]
    ordered += [(k, v) for k, v in values.items() if k not in titles]
    text = Text()
    for index, (key, value) in enumerate(ordered):
        if index:
            text.append("\n\n")
        text.append_text(inert(titles.get(key, key), "bold"))
        text.append("\n" if isinstance(value, str) and "\n" in value else ": ")
        text.append_text(inert(value))
    return text


def _texts_in(values: Mapping[str, Any]) -> dict[str, str]:
    found = values.get("principle_texts")
    if not isinstance(found, Mapping):
        return {}
    return {str(k): str(v) for k, v in found.items()}


def _principles(task: Task, principles: Mapping[str, str]) -> Text | None:
    cited = list(task.principle_ids) or [str(p) for p in task.draft.get("principles") or []]
    if not cited:
        return None
    known = {**_texts_in(task.item), **_texts_in(task.draft), **principles}
    text = Text()
    for index, principle in enumerate(dict.fromkeys(cited)):
        if index:
            text.append("\n")
        text.append_text(inert(principle, "bold yellow")).append("  ")
        if principle in known:
            text.append_text(inert(known[principle]))
        else:
            text.append("(its text is not stored with this item)", style="dim")
    return text


def _findings(findings: Any) -> Text:
    text = Text()
    for finding in findings if isinstance(findings, list) else []:
        if not isinstance(finding, Mapping):
            continue
        text.append("\n  • ")
        text.append_text(inert(str(finding.get("principle", "?")), "yellow")).append(" ")
        text.append_text(inert(f"“{finding.get('quote', '')}”", "italic"))
        if finding.get("problem"):
            text.append(" — ").append_text(inert(str(finding["problem"])))
        if finding.get("found") is False:
            text.append(" (quote not found in the reply)", style="red")
    return text


def _draft(task: Task) -> Text:
    draft = task.draft
    text = Text("label: ", style="bold")
    if task.answer == "revision":
        text.append("none: a revision (A accepts its text, E edits it)", style="dim")
    elif task.draft_label is None:
        text.append("none", style="dim")
    else:
        text.append_text(inert(task.draft_label, "bold green"))
    if draft.get("failure"):
        text.append("\nthe critic's output failed: ", style="bold red")
        text.append_text(inert(str(draft["failure"])))
        if draft.get("detail"):
            text.append(": ").append_text(inert(str(draft["detail"])))
    if draft.get("rationale"):
        text.append("\n\nrationale\n", style="bold").append_text(inert(str(draft["rationale"])))
    rounds = [r for r in draft.get("rounds") or [] if isinstance(r, Mapping)]
    for number, step in enumerate(rounds, start=1):
        text.append(f"\n\ncritique (round {number}", style="bold")
        if step.get("principle"):
            text.append(", principle ", style="bold").append_text(inert(str(step["principle"])))
        text.append(")\n", style="bold").append_text(inert(str(step.get("critique", ""))))
        text.append_text(_findings(step.get("findings")))
    if not rounds and (draft.get("critique") or draft.get("findings")):
        text.append("\n\ncritique\n", style="bold").append_text(
            inert(str(draft.get("critique", "")))
        )
        text.append_text(_findings(draft.get("findings")))
    if draft.get("revision"):
        text.append("\n\nrevision\n", style="bold").append_text(inert(str(draft["revision"])))
    return text


def _answers(claim: Claim) -> Table:
    table = Table("reviewer", "answer", "edited fields", "note", title="the reviewers' answers")
    for answer in claim.answers:
        given = answer.action if answer.label is None else f"{answer.action} → {answer.label}"
        table.add_row(
            inert(answer.reviewer),
            inert(given),
            inert(answer.edit) if answer.edit else Text("–"),
            inert(answer.note) if answer.note else Text("–"),
        )
    return table


def _legend(queue: Queue, claim: Claim, labels: Sequence[str]) -> Text:
    legend = Text("labels ", style="bold")
    for key, label in label_keys(labels).items():
        legend.append(f" {key} ", style="reverse").append(" ").append_text(inert(label))
        if label == claim.task.draft_label and not is_blind(queue, claim):
            legend.append(" (critic)", style="dim")
        legend.append("  ")
    if not labels:
        legend.append("none yet: press e and type one", style="dim")
    legend.append("\nkeys   ", style="bold")
    for key, name in KEYS.items():
        if name == "escalate" and claim.kind == "adjudication":
            continue
        legend.append(f" {key} ", style="reverse").append(f" {name}  ")
    return legend


def render(
    claim: Claim,
    queue: Queue,
    *,
    position: Position,
    labels: Sequence[str],
    principles: Mapping[str, str] | None = None,
    note: str | None = None,
    message: Text | None = None,
) -> RenderableType:
    """One review screen: why the item is here, the item, the cited principles, the critic's
    draft (or the reviewers' answers to adjudicate), the labels and the keys.

    Args:
        principles: principle texts by id (texts in the item's or draft's `principle_texts`
            are used too).
        note: the note typed so far, sent with the decision.
        message: the outcome of the last key (trusted text from the loop).
    """
    task = claim.task
    parts: list[RenderableType] = []
    if message is not None:
        parts.append(message)
    parts += [_header(claim, queue, position), _why(claim, queue)]
    item = _fields(task.item, field_titles(task.draft)) or Text("(empty)")
    parts.append(Panel(item, title=inert(f"item {task.item_id}")))
    cited = None if unpicked(queue, claim) else _principles(task, principles or {})
    if cited is not None:
        parts.append(Panel(cited, title="cited principles"))
    if not is_blind(queue, claim):
        parts.append(Panel(_draft(task), title="the critic's draft"))
    if claim.answers:
        parts.append(_answers(claim))
    if note:
        parts.append(Text.assemble(("note: ", "bold"), inert(note)))
    parts.append(_legend(queue, claim, labels))
    return Group(*parts)


# -- input ----------------------------------------------------------------------------------


class Keys(Protocol):
    def key(self) -> str | None:
        """The next command: one key from a terminal, one line from a pipe; None at the end."""

    def line(self, prompt: str) -> str:
        """A line of text (a typed label, a note); empty at the end of input."""


class LineKeys:
    """Commands and text as lines, for stdin that is a pipe or a file."""

    def __init__(self, stream: TextIO, console: Console) -> None:
        self.stream = stream
        self.console = console

    def key(self) -> str | None:
        while line := self.stream.readline():
            if line.strip():
                return line.strip()
        return None

    def line(self, prompt: str) -> str:
        self.console.print(prompt, end="", markup=False, highlight=False)
        return self.stream.readline().strip()


class TerminalKeys:
    """Single keys from a terminal in raw mode (no Enter needed); lines in its normal mode."""

    def __init__(self, stream: TextIO, console: Console) -> None:
        self.stream = stream
        self.fd = stream.fileno()
        self.console = console

    def key(self) -> str | None:
        import termios
        import tty

        saved = termios.tcgetattr(self.fd)
        try:
            tty.setraw(self.fd, termios.TCSANOW)  # not TCSAFLUSH: keep keys typed ahead
            data = os.read(self.fd, 1)
            if data == b"\x1b":
                # An arrow or function key sends a sequence; swallow it so none of its bytes
                # reads as a command.
                while select.select([self.fd], [], [], 0.05)[0] and os.read(self.fd, 1):
                    pass
            elif data and data[0] >= 0xC0:
                more = 1 if data[0] < 0xE0 else 2 if data[0] < 0xF0 else 3
                data += os.read(self.fd, more)
        finally:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, saved)
        if data == b"\x03":  # raw mode turns Ctrl-C into a byte
            raise KeyboardInterrupt
        if data in (b"", b"\x04"):
            return None
        return data.decode(errors="replace")

    def line(self, prompt: str) -> str:
        # Read in the terminal's normal mode: typed text echoes and backspace works.
        self.console.print(prompt, end="", markup=False, highlight=False)
        return self.stream.readline().strip()


def open_keys(stream: TextIO, console: Console) -> Keys:
    """Single keys when `stream` is a terminal, else one command per line."""
    return TerminalKeys(stream, console) if stream.isatty() else LineKeys(stream, console)


# -- the loop -------------------------------------------------------------------------------


@dataclass
class Session:
    """What one `review` call did."""

    decided: Counter[str] = field(default_factory=Counter)
    """Decisions made, per action (an undone decision still counts here, and in `undone`)."""
    undone: int = 0
    """Decisions taken back with the undo key."""
    skipped: int = 0
    lost: int = 0
    """Items whose lease ended before a decision (they went back to the pool)."""
    released: str | None = None
    """The item given back when the reviewer quit."""
    finished: bool = False
    """The queue had nothing more for this reviewer."""

    @property
    def seen(self) -> int:
        return sum(self.decided.values()) + self.skipped + self.lost


@contextmanager
def heartbeat(store: Store, token: str, every: float) -> Iterator[None]:
    """Renew a claim's lease every `every` seconds until the block ends."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(every):
            try:
                store.heartbeat(token)
            except Exception:
                # The claim ended, expired or the database is gone: the next decide says which,
                # on the reviewer's screen rather than as a thread traceback across it.
                return

    thread = threading.Thread(target=beat, name="lease-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


PrincipleTexts = Callable[[Task], Mapping[str, str]]


def review(
    store: Store,
    queue: str,
    user: str,
    keys: Keys,
    console: Console,
    *,
    principles: PrincipleTexts | None = None,
    heartbeat_seconds: float | None = None,
) -> Session:
    """Claim, show and decide items for `user` until the queue has nothing for them or they quit.

    Args:
        keys: where keys and typed text come from.
        console: where screens are drawn (cleared between items on a terminal).
        principles: principle texts by id for a task (e.g. from the constitution of its run).
        heartbeat_seconds: how often to renew the lease while waiting for a key; defaults to a
            third of the queue's lease.

    Returns:
        What was decided, skipped and given back. A quit (or Ctrl-C) releases the item at hand.
    """
    q = store.queue(queue)
    every = heartbeat_seconds or max(1.0, q.lease_seconds / 3)
    session = Session()
    message: Text | None = None
    while (claim := store.claim(queue, user)) is not None:
        settled = False
        try:
            stats = store.stats(queue)
            screen = _Screen(
                claim,
                q,
                Position(session.seen + 1, stats.pending + stats.adjudication),
                choices(q, claim),
                principles(claim.task) if principles else {},
            )
            with heartbeat(store, claim.token, every):
                message, settled = _decide_one(store, screen, keys, console, session, message)
        finally:
            if not settled:
                # Quit, Ctrl-C or a crash: give the item back now rather than at lease expiry.
                store.release(claim.token)
                session.released = claim.task.item_id
        if not settled:
            return session
    session.finished = True
    if message is not None:
        console.print(message)
    return session


@dataclass(frozen=True)
class _Screen:
    claim: Claim
    queue: Queue
    position: Position
    labels: tuple[str, ...]
    principles: Mapping[str, str]


def _warn(message: str, hint: str | None = None) -> Text:
    text = Text("! ", style="bold yellow").append_text(inert(message, "yellow"))
    if hint:
        text.append("\n  hint: ", style="dim").append_text(inert(hint))
    return text


def _decided(action: Action, item: str, label: str | None) -> Text:
    past = {"accept": "accepted", "edit": "edited", "reject": "rejected"}.get(action, "escalated")
    text = Text(f"✓ {past} item ", style="green").append_text(inert(item, "bold"))
    if label is not None:
        text.append(" as ").append_text(inert(label, "bold"))
    return text


def _kept(decision: Decision, item: str) -> Text:
    """The claim had been decided already (in another terminal or browser tab of the same
    reviewer, which shares the claim): that decision stands, and the key just pressed was not
    saved."""
    first = decision.action + ("" if decision.label is None else f" as {decision.label}")
    return _warn(
        f"not saved: item {item} was already decided with this claim ({first}, at "
        f"{decision.decided_at:%H:%M:%S} UTC, in another window), and that decision stands",
        hint="u undoes your newest decision in this queue, to decide that item again",
    )


def _undo(store: Store, claim: Claim, session: Session) -> Text:
    """Take back the reviewer's newest decision in the queue; the store releases the item at
    hand and leases the undone one to them, so the next claim shows it again."""
    last = store.last_decision(claim.queue, claim.reviewer)
    if last is None:
        raise QueueError(
            f"you have no decision in queue {claim.queue!r} to undo",
            hint="u takes back your own newest decision in this queue",
        )
    undone = store.undo(claim.queue, claim.reviewer, decision=last.id)
    session.undone += 1
    text = Text(f"↶ undid your {last.action} of item ", style="cyan")
    text.append_text(inert(undone.claim.task.item_id, "bold"))
    return text.append(": decide it again")


def _decide_one(
    store: Store,
    screen: _Screen,
    keys: Keys,
    console: Console,
    session: Session,
    message: Text | None,
) -> tuple[Text | None, bool]:
    """Show one claimed item until a key settles it.

    Returns:
        The message for the next screen, and whether the claim is settled (decided, skipped or
        lost) rather than to be given back because the reviewer quit.
    """
    claim, q, labels = screen.claim, screen.queue, screen.labels
    item = claim.task.item_id
    note: str | None = None
    while True:
        console.clear()
        console.print(
            render(
                claim,
                q,
                position=screen.position,
                labels=labels,
                principles=screen.principles,
                note=note,
                message=message,
            )
        )
        message = None
        key = keys.key()
        command = Command("quit") if key is None else parse_key(key, labels)
        if command is None:
            message = _warn(f"unknown key {key!r}: use one of the keys listed at the bottom")
            continue
        if command.name == "quit":
            return None, False
        if command.name == "note":
            note = keys.line("note (empty keeps the current one): ") or note
            continue
        label: str | None = None
        try:
            if command.name == "undo":
                return _undo(store, claim, session), True
            if command.name == "skip":
                store.skip(claim.token)
                session.skipped += 1
                return Text("skipped item ", style="dim").append_text(inert(item)), True
            edit: dict[str, str] | None = None
            if command.name == "pick":
                action, label = pick_action(q, claim, command.label), command.label
            elif command.name == "edit" and claim.task.answer == "revision":
                typed = keys.line("the revised reply, on one line (empty cancels): ")
                if not typed:
                    message = Text("edit cancelled", style="dim")
                    continue
                action, edit = "edit", {"revision": typed}
            elif command.name == "edit":
                typed = keys.line("label: its number, or type it (empty cancels): ")
                if not typed:
                    message = Text("edit cancelled", style="dim")
                    continue
                label = label_keys(labels).get(typed, typed)
                action = pick_action(q, claim, label)
            elif command.name == "accept" and is_blind(q, claim):
                if claim.pick is None:
                    message = _warn("this queue is blind: pick your own label with a number key")
                    continue
                action, label = "accept", claim.pick
            elif command.name in ("accept", "reject", "escalate"):
                action = command.name
            if is_blind(q, claim) and label is not None:
                # Recorded first, as on the web: the store takes accept and edit only on a pick.
                store.pick(claim.token, label)
            decision = store.decide(claim.token, action, label=label, edit=edit, note=note)
        except LeaseError as exc:
            session.lost += 1
            return _warn(f"{exc.message}; the item went back to the queue"), True
        except QueueError as exc:
            message = _warn(exc.message, exc.hint)
            continue
        if not same_answer(decision, action, label, edit, q.labels):
            return _kept(decision, item), True
        session.decided[decision.action] += 1
        return _decided(decision.action, item, decision.label), True
