"""The Label Studio labeling config for a constitution, and how its answers map to labels.

One Label Studio project reviews one constitution's labels. `Layout.of` reads what the config
needs from the stored constitution (its canonical JSON) and from which input fields played which
part in the run; `labeling_config` writes the XML. Pure: no network, no store.

What the reviewer sees, by task kind (tags as in Label Studio's docs, labelstud.io/tags):

- categorical: the item's text, and a `Choices` control named `label`, one `Choice` per label
  with the label's description as its hover `hint`.
- rubric: a `Rating` control named `score` when the levels are 1..N (one star per level), else
  `Choices` of the scores; the level descriptions are listed above it.
- pairwise: the prompt, Response A and Response B side by side, and a `Pairwise` control named
  `preference` (click the better response: `left` is A, `right` is B); any other label (`tie`)
  is a `Choices` control named `label`.
- critique and revise: the original response and a `TextArea` named `revision` holding the
  critic's revision, to accept as it is or edit.

The constitution's title and instructions are the header.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from xml.sax.saxutils import quoteattr

from critic.errors import UsageError
from critic.ship import label_set

#: The names of the controls (each result's `from_name`).
LABEL, SCORE, PREFERENCE, REVISION = "label", "score", "preference", "revision"
#: Which Pairwise side each pairwise label is.
SIDES = {"a": "left", "b": "right"}

Kind = Literal["categorical", "rubric", "pairwise", "critique_revise"]


@dataclass(frozen=True)
class Layout:
    """What one project's labeling config shows."""

    kind: Kind
    title: str
    instructions: str | None
    question: str | None
    labels: tuple[str, ...]
    """The constitution's labels (rubric scores as text), in its order and spelling."""
    descriptions: Mapping[str, str]
    shown: tuple[tuple[str, str], ...]
    """(part, input field) for each text shown: `prompt`, `response`, `text`, `a`, `b`."""

    @classmethod
    def of(cls, constitution: str, fields: Mapping[str, Any]) -> Layout:
        """The layout of a stored constitution (canonical JSON) for a run whose input fields
        played the parts in `fields` (a run's stored `params["fields"]`: the prompt may be a
        list of fields)."""
        data = json.loads(constitution)
        task = data.get("task") or {}
        kind = task.get("kind")
        if kind not in ("categorical", "rubric", "pairwise", "critique_revise"):
            raise UsageError(f"constitution {data.get('id')!r} has an unknown task kind {kind!r}")
        labels = label_set(constitution)
        names = labels.labels if labels is not None else ()
        notes = labels.descriptions if labels is not None else {}
        if kind == "pairwise":  # the side words come from the layout, not the description
            notes = {str(x["name"]): str(x.get("description") or "") for x in task["labels"]}
        return cls(
            kind=kind,
            title=str(data.get("title") or data.get("id") or ""),
            instructions=data.get("instructions"),
            question=task.get("question"),
            labels=names,
            descriptions=notes,
            shown=shown_fields(kind, fields),
        )

    @property
    def rating(self) -> bool:
        """A rubric whose scores are 1..N, shown as N stars."""
        want = [str(n) for n in range(1, len(self.labels) + 1)]
        return self.kind == "rubric" and list(self.labels) == want

    def side(self, label: str) -> str | None:
        """`left`/`right` for a pairwise label meaning Response A/B; None for others."""
        return SIDES.get(label.casefold()) if self.kind == "pairwise" else None

    @property
    def choices(self) -> tuple[str, ...]:
        """The labels offered as `Choices` (pairwise: those that are not a side)."""
        if self.kind == "critique_revise" or self.rating:
            return ()
        return tuple(x for x in self.labels if self.side(x) is None)


def shown_fields(kind: str, fields: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """(part, input field) of what the reviewer reads, as `critic.items.Fields.required`
    chooses: `text` alone, or prompt with A and B, or prompt with response. A prompt read from
    several fields shows each (`prompt`, `prompt_2`, ...)."""
    if fields.get("text"):
        return (("text", str(fields["text"])),)
    prompt = fields.get("prompt") or "prompt"
    names = [prompt] if isinstance(prompt, str) else [str(x) for x in prompt]
    prompts = [("prompt" if k == 0 else f"prompt_{k + 1}", name) for k, name in enumerate(names)]
    if kind == "pairwise" or (fields.get("a") and fields.get("b")):
        rest: tuple[str, ...] = ("a", "b")
    else:
        rest = ("response",)
    return (*prompts, *((part, str(fields.get(part) or part)) for part in rest))


def _attrs(**values: object) -> str:
    return " ".join(
        f"{name.rstrip('_')}={quoteattr(str(value))}"
        for name, value in values.items()
        if value is not None and value != ""
    )


def _one_line(text: str) -> str:
    return " ".join(text.split())


def labeling_config(layout: Layout) -> str:
    """The labeling config XML for a layout (see the module's docstring)."""
    lines = ["<View>", f"  <Header {_attrs(value=_one_line(layout.title))}/>"]
    if layout.instructions:
        lines.append(f"  <Header {_attrs(value=_one_line(layout.instructions), size=5)}/>")
    target = layout.shown[-1][0]
    titles = {"a": "Response A", "b": "Response B", "prompt": "Prompt", "response": "Response"}
    titles.update({part: field for part, field in layout.shown if part.startswith("prompt_")})
    if layout.kind == "pairwise":
        prompt = [p for p in layout.shown if p[0] not in ("a", "b")]
        for part, field in prompt:
            lines.append(f"  <Header {_attrs(value=titles.get(part, part), size=6)}/>")
            lines.append(f"  <Text {_attrs(name=part, value='$' + field)}/>")
        lines.append('  <View style="display: flex; gap: 1em;">')
        for part, field in (p for p in layout.shown if p[0] in ("a", "b")):
            lines.append('    <View style="flex: 1;">')
            lines.append(f"      <Header {_attrs(value=titles[part], size=5)}/>")
            lines.append(f"      <Text {_attrs(name=part, value='$' + field)}/>")
            lines.append("    </View>")
        lines.append("  </View>")
        target = prompt[0][0] if prompt else "a"
    else:
        for part, field in layout.shown:
            if len(layout.shown) > 1:
                lines.append(f"  <Header {_attrs(value=titles.get(part, part), size=6)}/>")
            lines.append(f"  <Text {_attrs(name=part, value='$' + field)}/>")
    if layout.question:
        lines.append(f"  <Header {_attrs(value=_one_line(layout.question), size=5)}/>")
    if layout.kind == "pairwise":
        lines.append(f"  <Pairwise {_attrs(name=PREFERENCE, toName='a,b')}/>")
    if layout.kind == "critique_revise":
        area = _attrs(name=REVISION, toName=target, editable="true", rows=8, maxSubmissions=1)
        lines.append(f"  <TextArea {area}/>")
    elif layout.rating:
        for score in layout.labels:
            note = layout.descriptions.get(score)
            if note:
                lines.append(f"  <Header {_attrs(value=f'{score}: {_one_line(note)}', size=6)}/>")
        lines.append(
            f"  <Rating {_attrs(name=SCORE, toName=target, maxRating=len(layout.labels))}/>"
        )
    if layout.choices:
        required = "true" if layout.kind != "pairwise" else None
        group = _attrs(name=LABEL, toName=target, choice="single-radio", required=required)
        lines.append(f"  <Choices {group}>")
        for label in layout.choices:
            hint = _one_line(layout.descriptions.get(label) or "")
            lines.append(f"    <Choice {_attrs(value=label, hint=hint)}/>")
        lines.append("  </Choices>")
    lines.append("</View>")
    return "\n".join(lines) + "\n"
