"""What changed between two versions of a constitution, by principle and field (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from adjudication.text import word_diff as text_word_diff
from critic.constitution import Constitution, Example

Segment = tuple[Literal["equal", "delete", "insert"], str]


def word_diff(old: str, new: str) -> tuple[Segment, ...]:
    """A word-level diff: runs of equal, deleted and inserted words (joined by single spaces).

    The review app's diff (`adjudication.text.word_diff`) by whole words, in this module's terms.
    """
    ops: dict[str, Literal["equal", "delete", "insert"]] = {
        "same": "equal", "del": "delete", "ins": "insert",
    }  # fmt: skip
    return tuple((ops[part.op], part.text) for part in text_word_diff(old, new, whole_words=True))


def render_word_diff(segments: Sequence[Segment]) -> str:
    """Plain text in wdiff style: `[-deleted-]{+inserted+}`."""
    marks = {"equal": ("", ""), "delete": ("[-", "-]"), "insert": ("{+", "+}")}
    return " ".join(f"{marks[op][0]}{text}{marks[op][1]}" for op, text in segments)


@dataclass(frozen=True)
class FieldChange:
    """One changed field, old and new text (None when absent) and their word diff."""

    field: str
    old: str | None
    new: str | None

    @property
    def words(self) -> tuple[Segment, ...]:
        return word_diff(self.old or "", self.new or "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "field": self.field,
            "old": self.old,
            "new": self.new,
            "words": [{"op": op, "text": text} for op, text in self.words],
        }


@dataclass(frozen=True)
class PrincipleChange:
    id: str
    changes: tuple[FieldChange, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "changes": [c.to_dict() for c in self.changes]}


@dataclass(frozen=True)
class ConstitutionDiff:
    """What changed between two versions, by principle id."""

    old_hash: str
    new_hash: str
    meta: tuple[FieldChange, ...] = ()
    task: tuple[FieldChange, ...] = ()
    labels_added: tuple[str, ...] = ()
    labels_removed: tuple[str, ...] = ()
    levels_added: tuple[int, ...] = ()
    levels_removed: tuple[int, ...] = ()
    principles_added: tuple[str, ...] = ()
    principles_removed: tuple[str, ...] = ()
    principles_changed: tuple[PrincipleChange, ...] = ()
    principles_reordered: bool = False

    @property
    def identical(self) -> bool:
        return self.old_hash == self.new_hash

    @property
    def affected_principles(self) -> tuple[str, ...]:
        """Principles whose citing drafts the change can flip: changed or removed ones."""
        return tuple(p.id for p in self.principles_changed) + self.principles_removed

    @property
    def global_changes(self) -> tuple[str, ...]:
        """Changes that reach every item, not only those citing a principle.

        The id, version and title are metadata: they are not counted, or no edit would ever be
        narrower than the whole dataset.
        """
        found = [c.field for c in self.meta if c.field not in ("id", "version", "title")]
        found += [c.field for c in self.task]
        if self.labels_added or self.labels_removed:
            found.append("task.labels")
        if self.levels_added or self.levels_removed:
            found.append("task.levels")
        if self.principles_added:
            found.append("principles added: " + ", ".join(self.principles_added))
        if self.principles_reordered:
            found.append("principle order")
        return tuple(found)

    def to_dict(self) -> dict[str, Any]:
        return {
            "identical": self.identical,
            "old_hash": self.old_hash,
            "new_hash": self.new_hash,
            "meta": [c.to_dict() for c in self.meta],
            "task": [c.to_dict() for c in self.task],
            "labels_added": list(self.labels_added),
            "labels_removed": list(self.labels_removed),
            "levels_added": list(self.levels_added),
            "levels_removed": list(self.levels_removed),
            "principles_added": list(self.principles_added),
            "principles_removed": list(self.principles_removed),
            "principles_changed": [p.to_dict() for p in self.principles_changed],
            "principles_reordered": self.principles_reordered,
            "affected_principles": list(self.affected_principles),
            "global_changes": list(self.global_changes),
        }


def _example_text(example: Example) -> str:
    verdict = example.label if example.label is not None else example.score
    parts = [f"{k}: {v}" for k, v in (("prompt", example.prompt), ("response", example.response),
                                        ("text", example.text)) if v is not None]  # fmt: skip
    parts.append(f"verdict: {verdict}")
    if example.explanation:
        parts.append(f"explanation: {example.explanation}")
    return " · ".join(parts)


def _compare(name: str, old: Any, new: Any) -> list[FieldChange]:
    if old == new:
        return []
    return [FieldChange(name, None if old is None else str(old), None if new is None else str(new))]


def diff_constitutions(old: Constitution, new: Constitution) -> ConstitutionDiff:
    """Principles added, removed and changed (with word diffs), label-set and rubric changes."""
    meta: list[FieldChange] = []
    for name in ("id", "version", "title", "description", "instructions"):
        meta += _compare(name, getattr(old, name), getattr(new, name))
    task = _compare("task.kind", old.task.kind, new.task.kind)
    task += _compare("task.question", old.task.question, new.task.question)
    old_labels = {label.name: label.description for label in old.task.labels}
    new_labels = {label.name: label.description for label in new.task.labels}
    for name in old_labels.keys() & new_labels.keys():
        task += _compare(f"task.labels.{name}", old_labels[name], new_labels[name])
    shared = [n for n in old.label_names if n in new_labels]
    if shared != [n for n in new.label_names if n in old_labels]:
        task += _compare("task.labels (order)", ", ".join(old.label_names),
                         ", ".join(new.label_names))  # fmt: skip
    old_levels = {level.score: level.description for level in old.task.levels}
    new_levels = {level.score: level.description for level in new.task.levels}
    for score in sorted(old_levels.keys() & new_levels.keys()):
        task += _compare(f"task.levels.{score}", old_levels[score], new_levels[score])

    changed: list[PrincipleChange] = []
    old_ids, new_ids = old.principle_ids, new.principle_ids
    for pid in (p for p in new_ids if p in old_ids):
        a, b = old.principle(pid), new.principle(pid)
        fields: list[FieldChange] = []
        for name in ("text", "critique_request", "revision_request"):
            fields += _compare(name, getattr(a, name), getattr(b, name))
        for i in range(max(len(a.examples), len(b.examples))):
            fields += _compare(
                f"examples[{i}]",
                _example_text(a.examples[i]) if i < len(a.examples) else None,
                _example_text(b.examples[i]) if i < len(b.examples) else None,
            )
        if fields:
            changed.append(PrincipleChange(pid, tuple(fields)))
    kept_old = [p for p in old_ids if p in new_ids]
    kept_new = [p for p in new_ids if p in old_ids]
    return ConstitutionDiff(
        old_hash=old.hash,
        new_hash=new.hash,
        meta=tuple(meta),
        task=tuple(task),
        labels_added=tuple(n for n in new.label_names if n not in old_labels),
        labels_removed=tuple(n for n in old.label_names if n not in new_labels),
        levels_added=tuple(s for s in new.scores if s not in old_levels),
        levels_removed=tuple(s for s in old.scores if s not in new_levels),
        principles_added=tuple(p for p in new_ids if p not in old_ids),
        principles_removed=tuple(p for p in old_ids if p not in new_ids),
        principles_changed=tuple(changed),
        principles_reordered=kept_old != kept_new,
    )
