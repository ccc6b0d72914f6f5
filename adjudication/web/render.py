"""What the review screen shows, as plain values: pure functions, no HTML.

Everything here turns untrusted text (items, model output) into lists of segments. The templates
print each segment through jinja2's autoescaping and wrap it in a tag they choose (`<mark>`,
`<del>`, `<ins>`), so no text from an item or a draft is ever inserted as markup.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from adjudication.pairs import PAIR_KEYS, PairDraft, pair_draft
from adjudication.parts import Parts, parts_of, visible
from adjudication.text import DiffPart, Segment, find_spans, highlight, word_diff

# Item fields shown as the item itself, in this order; any other field is listed after them.
TEXT_FIELDS = (
    "prompt",
    "question",
    "instruction",
    "text",
    "response",
    "response_a",
    "response_b",
    "a",
    "b",
    "chosen",
    "rejected",
)
CONVERSATION_FIELDS = ("conversation", "messages")

HIGH_CONFIDENCE = 0.9
"""Overriding a draft at or above this confidence needs a note."""


@dataclass(frozen=True)
class Finding:
    number: int
    principle: str | None
    quote: str
    problem: str | None
    round: int | None
    found: bool
    """The quote occurs in the item text shown (and is highlighted there)."""


@dataclass(frozen=True)
class Field:
    name: str
    segments: tuple[Segment, ...]
    caption: str | None = None
    """What the field is to the reviewer ("Response A"), shown instead of its name."""
    judged: bool = False
    """The field the critic judged (marked on the page)."""


@dataclass(frozen=True)
class Turn:
    role: str
    segments: tuple[Segment, ...]


@dataclass(frozen=True)
class Principle:
    id: str
    text: str | None


@dataclass(frozen=True)
class ItemView:
    fields: tuple[Field, ...]
    """The item's text, the prompt first (for a pair: only what comes before the pair)."""
    conversation: tuple[Turn, ...]
    other: tuple[tuple[str, str], ...]
    findings: tuple[Finding, ...]
    pair: tuple[Field, Field] | None = None
    """Response A and Response B, shown side by side after `fields`."""
    rest: tuple[Field, ...] = ()
    """For a pair: the item's other text fields, after the pair."""


@dataclass(frozen=True)
class DraftView:
    label: str | None
    rationale: str | None
    critique: str | None
    revision: str | None
    original: str | None
    diff: tuple[DiffPart, ...]
    failure: str | None
    rounds: tuple[Mapping[str, Any], ...]
    other: tuple[tuple[str, str], ...] = field(default=())
    pair: PairDraft | None = None
    """A pairwise draft in words: the preference probability and each order's verdict."""


def decided_word(rejected: bool, label: str | None, edited: bool) -> str:
    """What a decided item's outcome reads as beside it (precedents on every page)."""
    if rejected:
        return "rejected"
    if label is not None:
        return label
    return "revision (edited)" if edited else "revision"


def when(value: datetime | None) -> str:
    """A time as every page prints it."""
    return "–" if value is None else value.strftime("%Y-%m-%d %H:%M:%S UTC")


def as_text(value: Any) -> str:
    """Any JSON value as display text: strings as they are, the rest as indented JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


# -- reading drafts and items ----------------------------------------------------------------


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def findings_of(draft: Mapping[str, Any]) -> list[tuple[int | None, Mapping[str, Any]]]:
    """Every finding in a draft, with its round: `findings` at the top, or per `rounds[]`."""
    found: list[tuple[int | None, Mapping[str, Any]]] = []
    top = draft.get("findings")
    if isinstance(top, list):
        found += [(None, f) for f in top if isinstance(f, Mapping)]
    rounds = draft.get("rounds")
    if isinstance(rounds, list):
        for index, entry in enumerate(rounds, start=1):
            if not isinstance(entry, Mapping) or not isinstance(entry.get("findings"), list):
                continue
            number = entry.get("round") if isinstance(entry.get("round"), int) else index
            found += [(number, f) for f in entry["findings"] if isinstance(f, Mapping)]
    return found


def _quote(finding: Mapping[str, Any]) -> str:
    return as_text(finding.get("quote") or finding.get("evidence") or "")


def item_view(
    item: Mapping[str, Any],
    draft: Mapping[str, Any],
    *,
    parts: Parts | None = None,
    hidden: Iterable[str] = (),
) -> ItemView:
    """The item's text fields and conversation, with the draft's evidence highlighted.

    Args:
        parts: which field is the prompt, the judged response, Response A and B (default: from
            the draft's `fields`, else the usual names).
        hidden: fields the queue hides from reviewers; they are left out entirely.
    """
    item = visible(item, hidden)
    parts = parts or parts_of(item, draft.get("fields"))
    raw = findings_of(draft)
    quotes = [(n, _quote(f)) for n, (_, f) in enumerate(raw, start=1) if _quote(f).strip()]
    texts: list[str] = []

    def shown(name: str, caption: str | None = None) -> Field:
        text = as_text(item[name])
        texts.append(text)
        return Field(name, highlight(text, quotes), caption, name == parts.judged)

    paired = {parts.a, parts.b} - {None}
    names = [*parts.prompt, *([parts.judged] if parts.judged else []), *TEXT_FIELDS]
    present = [n for n in dict.fromkeys(names) if n in item and item[n] is not None]
    fields = [shown(n) for n in present if n not in paired]
    pair = None
    rest: list[Field] = []
    if parts.pairwise and parts.a in item and parts.b in item:
        assert parts.a is not None and parts.b is not None
        pair = (shown(parts.a, "Response A"), shown(parts.b, "Response B"))
        rest = [f for f in fields if f.name not in parts.prompt]
        fields = [f for f in fields if f.name in parts.prompt]
    turns: list[Turn] = []
    listed = {*present, *paired}
    for name in CONVERSATION_FIELDS:
        value = item.get(name)
        if isinstance(value, list) and all(isinstance(t, Mapping) for t in value):
            listed.add(name)
            for turn in value:
                text = as_text(turn.get("content", ""))
                texts.append(text)
                turns.append(Turn(as_text(turn.get("role", "?")), highlight(text, quotes)))
            break
    other = tuple((k, as_text(v)) for k, v in item.items() if k not in listed)
    # A quote may come from the draft's original reply rather than a field of the item.
    original = _str(draft.get("original"))
    if original is not None and original not in texts:
        texts.append(original)
        fields.append(Field("response (as critiqued)", highlight(original, quotes)))
    findings = tuple(
        Finding(
            number=n,
            principle=_str(f.get("principle")),
            quote=_quote(f),
            problem=_str(f.get("problem")) or _str(f.get("comment")),
            round=round_number,
            found=any(find_spans(t, _quote(f)) for t in texts),
        )
        for n, (round_number, f) in enumerate(raw, start=1)
    )
    return ItemView(tuple(fields), tuple(turns), other, findings, pair, tuple(rest))


_DRAFT_SHOWN = {
    "label",
    "score",
    "preference",
    "rationale",
    "critique",
    "revision",
    "original",
    "findings",
    "rounds",
    "principles",
    "principle_texts",
    "failure",
    "detail",
    "fields",
}


def draft_view(
    item: Mapping[str, Any], draft: Mapping[str, Any], draft_label: str | None
) -> DraftView:
    """The critic's draft: label, reasoning, critique, and the revision as a diff."""
    rounds = tuple(r for r in draft.get("rounds") or () if isinstance(r, Mapping))
    critique = _str(draft.get("critique"))
    if critique is None and rounds:
        critique = "\n\n".join(
            f"Round {r.get('round', i)}: {as_text(r.get('critique', ''))}"
            for i, r in enumerate(rounds, start=1)
            if r.get("critique")
        )
    revision = _str(draft.get("revision"))
    original = _str(draft.get("original")) or _str(item.get("response"))
    diff = word_diff(original, revision) if revision is not None and original is not None else ()
    failure = _str(draft.get("failure"))
    if failure and _str(draft.get("detail")):
        failure = f"{failure}: {draft['detail']}"
    pair = pair_draft(draft)
    shown = _DRAFT_SHOWN | PAIR_KEYS if pair is not None else _DRAFT_SHOWN
    return DraftView(
        label=draft_label,
        rationale=_str(draft.get("rationale")),
        critique=critique or None,
        revision=revision,
        original=original,
        diff=diff,
        failure=failure,
        rounds=rounds,
        other=tuple((k, as_text(v)) for k, v in draft.items() if k not in shown),
        pair=pair,
    )


def principles(principle_ids: Iterable[str], draft: Mapping[str, Any]) -> tuple[Principle, ...]:
    """The principles the task and its draft cite, with their text when the draft carries it.

    The text comes from `draft["principle_texts"]`, a `{principle id: text}` object that the
    enqueueing program may add; without it only the ids are shown.
    """
    ids: list[str] = []
    for pid in [*principle_ids, *(draft.get("principles") or ())]:
        if isinstance(pid, str) and pid not in ids:
            ids.append(pid)
    for _, finding in findings_of(draft):
        pid = finding.get("principle")
        if isinstance(pid, str) and pid not in ids:
            ids.append(pid)
    texts = draft.get("principle_texts")
    table: Mapping[str, Any] = texts if isinstance(texts, Mapping) else {}
    return tuple(Principle(pid, _str(table.get(pid))) for pid in ids)


def overrides(action: str, label: str | None, draft_label: str | None, edited: bool) -> bool:
    """Whether a decision overrides the critic's draft (a rejection, a new label or an edit)."""
    if action == "reject":
        return True
    if action in ("accept", "edit"):
        return edited or (label is not None and label != draft_label)
    return False


def needs_note(
    confidence: float | None, action: str, label: str | None, draft_label: str | None, edited: bool
) -> bool:
    """An override of a high-confidence draft must say why."""
    high = confidence is not None and confidence >= HIGH_CONFIDENCE
    return high and overrides(action, label, draft_label, edited)
