"""Which item field plays which part (the prompt, the judged response, Response A and B), and
which fields reviewers are not shown. Pure: values in, values out.

The enqueueing program says which field played which part in the draft's `fields` object
(critic: the run's `--prompt-field`, `--response-field`, `--a-field`, `--b-field`). That is how
the run read its input, not anything the critic wrote, so it is shown in a blind queue before
the pick too. Without it the usual names are assumed (`prompt`, `response`, `a`/`b`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

_PAIRS = (("a", "b"), ("response_a", "response_b"))


@dataclass(frozen=True)
class Parts:
    """The item fields by part; every name is a field the item has."""

    prompt: tuple[str, ...] = ()
    judged: str | None = None
    """The field the critic judged (a label run's response, or its whole text)."""
    a: str | None = None
    b: str | None = None
    declared: bool = False
    """The enqueueing program named the parts (else they were guessed from field names)."""

    @property
    def pairwise(self) -> bool:
        return self.a is not None and self.b is not None


def _names(value: Any) -> tuple[str, ...]:
    if isinstance(value, str) and value:
        return (value,)
    if isinstance(value, list | tuple):
        return tuple(v for v in value if isinstance(v, str) and v)
    return ()


def parts_of(item: Mapping[str, Any], fields: Any) -> Parts:
    """The parts of `item`, from the draft's `fields` object when it has one.

    A pair is a pair when both its fields are in the item; then nothing single is "judged"
    (both replies are). Otherwise `text` (when given) or `response` is the judged field.
    """
    named: Mapping[str, Any] = fields if isinstance(fields, Mapping) else {}
    prompt = tuple(n for n in _names(named.get("prompt")) if n in item)
    a, b = (_names(named.get("a")) or (None,))[0], (_names(named.get("b")) or (None,))[0]
    if named and a in item and b in item:
        return Parts(prompt, None, a, b, declared=True)
    if named:
        judged = (_names(named.get("text")) or _names(named.get("response")) or (None,))[0]
        return Parts(prompt, judged if judged in item else None, declared=True)
    prompt = ("prompt",) if "prompt" in item else ()
    for first, second in _PAIRS:
        if first in item and second in item:
            return Parts(prompt, None, first, second)
    return Parts(prompt, "response" if "response" in item else None)


def visible(item: Mapping[str, Any], hidden: Iterable[str]) -> dict[str, Any]:
    """The item without the fields its queue hides from reviewers."""
    gone = set(hidden)
    return {key: value for key, value in item.items() if key not in gone}
