"""Text shown to reviewers, as plain values: evidence highlights and word diffs. Pure, no HTML.

The web app, the terminal screen and critic's constitution workbench all show model text this
way. Everything here turns untrusted text into segments; whoever prints them escapes each one and
wraps it in markup of its own choosing, so no text from an item or a draft becomes markup.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, Literal


@dataclass(frozen=True)
class Segment:
    """A run of text; `marks` are the 1-based numbers of the findings whose evidence it is."""

    text: str
    marks: tuple[int, ...] = ()


@dataclass(frozen=True)
class DiffPart:
    op: Literal["same", "del", "ins"]
    text: str


# -- what each field of the item is ---------------------------------------------------------

#: The parts an input field can play, in the order a review screen shows them, and what each is
#: called there. A queued draft may say which field played which part (`"fields": {"a":
#: "chosen", "b": "rejected"}`; critic puts it there), so a reviewer asked for `Response B` sees
#: which text that is, whatever the dataset calls its fields and in whatever order it has them.
PARTS = {
    "prompt": "prompt",
    "text": "text",
    "response": "response",
    "a": "Response A",
    "b": "Response B",
}


def field_titles(draft: Mapping[str, Any]) -> dict[str, str]:
    """{input field: its title on a review screen} for the fields the draft says played a part,
    in the order of `PARTS`: `chosen` as Response A is `Response A · chosen`. Empty when the
    draft names no parts."""
    given = draft.get("fields")
    if not isinstance(given, Mapping):
        return {}
    titles: dict[str, str] = {}
    for part, title in PARTS.items():
        name = given.get(part)
        if isinstance(name, str) and name and name not in titles:
            titles[name] = title if name == title else f"{title} · {name}"
    return titles


# -- evidence highlighting -------------------------------------------------------------------

_WRAPPERS = "\"'“”‘’`«»"
_ELLIPSES = ". …"


def _quote_pattern(quote: str) -> re.Pattern[str] | None:
    """A pattern matching the quote in any case and with any run of whitespace between words.

    Models wrap quotes in quotation marks or ellipses; those are dropped first.
    """
    core = quote.strip().strip(_WRAPPERS).strip(_ELLIPSES).strip().strip(_WRAPPERS).strip()
    words = core.split()
    if not words:
        return None
    return re.compile(r"\s+".join(re.escape(word) for word in words), re.IGNORECASE)


def find_spans(text: str, quote: str) -> list[tuple[int, int]]:
    """Where a quote occurs in a text: (start, end) character offsets, in order."""
    pattern = _quote_pattern(quote)
    if pattern is None:
        return []
    return [m.span() for m in pattern.finditer(text)]


def highlight(text: str, quotes: Sequence[tuple[int, str]]) -> tuple[Segment, ...]:
    """Split `text` into segments, marking where each numbered quote occurs.

    Args:
        text: the untrusted text to show.
        quotes: (number, quote) pairs; overlapping quotes give a segment several marks.
    """
    spans = [(s, e, number) for number, quote in quotes for s, e in find_spans(text, quote)]
    if not spans:
        return (Segment(text),) if text else ()
    cuts = sorted({0, len(text), *(s for s, _, _ in spans), *(e for _, e, _ in spans)})
    segments: list[Segment] = []
    for start, end in pairwise(cuts):
        marks = tuple(sorted({n for s, e, n in spans if s <= start and end <= e}))
        if segments and segments[-1].marks == marks:
            segments[-1] = Segment(segments[-1].text + text[start:end], marks)
        else:
            segments.append(Segment(text[start:end], marks))
    return tuple(segments)


# -- word-level diff -------------------------------------------------------------------------

# A word or a punctuation mark with the whitespace before it: half as many tokens as splitting
# whitespace apart, which keeps the quadratic matcher fast on long revisions.
_TOKEN = re.compile(r"\s*(?:\w+|[^\w\s])|\s+")


def word_diff(before: str, after: str, *, whole_words: bool = False) -> tuple[DiffPart, ...]:
    """A word-level diff: runs of unchanged, deleted and inserted text, in reading order.

    Whitespace is kept and punctuation marks are tokens of their own, unless `whole_words`: then
    the words are what whitespace separates (`fraud,` is one), whitespace is not compared, and
    each run is its words joined by single spaces (show the runs with a space between them).
    """
    if whole_words:
        a, b, sep = before.split(), after.split(), " "
    else:
        a, b, sep = _TOKEN.findall(before), _TOKEN.findall(after), ""
    parts: list[DiffPart] = []

    def add(op: Literal["same", "del", "ins"], tokens: Sequence[str]) -> None:
        text = sep.join(tokens)
        if not text:
            return
        if parts and parts[-1].op == op:
            parts[-1] = DiffPart(op, parts[-1].text + sep + text)
        else:
            parts.append(DiffPart(op, text))

    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            add("same", a[i1:i2])
        else:
            add("del", a[i1:i2])
            add("ins", b[j1:j2])
    return tuple(parts)
