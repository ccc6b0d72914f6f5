"""From decisions to exemplars: a new constitution version whose principles carry decided queue
items as worked examples (the human's label, and the note as the reason).

Policy writers close the loop from the review queue: an adjudicator marks items as exemplar
candidates in the review app, `candidates` lists them, and `add_examples` writes the new version,
which must lint clean; `critic constitution diff --impact OLD NEW` then measures what it flips.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from critic.constitution import Constitution, Example, check
from critic.errors import ConstitutionError, UsageError
from critic.items import prompt_of

if TYPE_CHECKING:
    from adjudication.models import Decision, Task
    from adjudication.store import Store as QueueStore


@dataclass(frozen=True)
class Exemplar:
    """One decided item as it becomes an example of the principles it cites."""

    item_id: str
    principles: tuple[str, ...]
    example: Example
    decided_by: tuple[str, ...]


def next_version(version: str) -> str:
    """The version after `version`: its last number plus one (1.0 -> 1.1), else `.1` added."""
    found = re.search(r"(\d+)(?!.*\d)", version)
    if found is None:
        return f"{version}.1"
    start, end = found.span()
    return f"{version[:start]}{int(found.group()) + 1}{version[end:]}"


def candidates(queues: QueueStore, queue: str) -> list[Task]:
    """The items of `queue` an adjudicator marked as exemplar candidates, oldest first."""
    return [queues.task(queue, item_id) for item_id in queues.exemplar_candidates(queue)]


def _settling(decisions: Sequence[Decision], task: Task) -> list[Decision]:
    """The decisions that settled a task: its adjudication, else its final round's reviews."""
    final = [d for d in decisions if d.round == task.round]
    adjudicated = [d for d in final if d.kind == "adjudication"]
    return adjudicated or [d for d in final if d.kind == "review"]


def _text_fields(item: Mapping[str, Any], draft: Mapping[str, Any]) -> dict[str, str]:
    """The prompt and response (or text) of an item, through the columns its run read."""
    read = draft.get("fields") if isinstance(draft.get("fields"), Mapping) else {}
    assert isinstance(read, Mapping)
    if isinstance(read.get("text"), str) and isinstance(item.get(read["text"]), str):
        return {"text": item[read["text"]]}
    prompt = prompt_of(item, read.get("prompt") or "prompt")
    response = item.get(str(read.get("response") or "response"))
    if isinstance(response, str):
        shown = {"response": response}
        if isinstance(prompt, str):
            shown["prompt"] = prompt
        return shown
    if isinstance(item.get("text"), str):
        return {"text": item["text"]}
    return {}


def exemplar_of(
    constitution: Constitution, queues: QueueStore, queue: str, item_id: str
) -> Exemplar:
    """One decided item of a queue as an example; QueueError naming the item if it cannot be."""
    task = queues.task(queue, item_id)
    where = f"queue {queue!r}, item {item_id!r}"
    if task.state != "done":
        raise UsageError(
            f"{where} is not decided yet ({task.state})",
            hint="an example carries a human decision: decide it first",
        )
    if task.rejected or task.final_label is None:
        raise UsageError(
            f"{where} was {'rejected' if task.rejected else 'settled without a label'}",
            hint="only items decided with a label become examples",
        )
    cited = tuple(dict.fromkeys([*task.principle_ids, *(task.draft.get("principles") or ())]))
    known = [p for p in cited if p in constitution.principle_ids]
    if not known:
        raise UsageError(
            f"{where} cites no principle of {constitution.id} "
            f"(it cites: {', '.join(map(str, cited)) or 'none'})",
            hint="an example is attached to the principles the item cites",
        )
    decided = _settling(queues.decisions(queue, item_id), task)
    notes = [d.note.strip() for d in decided if d.note and d.note.strip()]
    label: str | None = task.final_label
    score: int | None = None
    if constitution.task.kind == "rubric":
        try:
            score, label = int(task.final_label), None
        except ValueError as exc:
            raise UsageError(f"{where} was decided as {task.final_label!r}, not a score") from exc
    elif constitution.task.kind == "categorical":
        folded = {name.casefold(): name for name in constitution.label_names}
        label = folded.get(task.final_label.casefold(), task.final_label)
    else:
        raise ConstitutionError(
            f"{constitution.id}: examples from decisions are made for categorical and rubric "
            f"constitutions, not {constitution.task.kind}",
        )
    fields = _text_fields(task.item, task.draft)
    if not fields:
        raise UsageError(f"{where} has no text field to quote as an example")
    example = Example(**fields, label=label, score=score, explanation="\n".join(notes) or None)  # type: ignore[arg-type]
    return Exemplar(
        item_id, tuple(known), example, tuple(dict.fromkeys(d.reviewer for d in decided))
    )


def add_examples(
    constitution: Constitution,
    queues: QueueStore,
    queue: str,
    item_ids: Sequence[str],
    *,
    version: str | None = None,
) -> tuple[Constitution, list[Exemplar]]:
    """The constitution with each item as an example of every principle it cites, as a new
    version (`version`, or the next one). An example already there is not added twice."""
    exemplars = [exemplar_of(constitution, queues, queue, item_id) for item_id in item_ids]
    added: dict[str, list[Example]] = {}
    for ex in exemplars:
        for pid in ex.principles:
            have = [*constitution.principle(pid).examples, *added.get(pid, [])]
            if ex.example not in have:
                added.setdefault(pid, []).append(ex.example)
    principles = tuple(
        p.model_copy(update={"examples": (*p.examples, *added.get(p.id, []))})
        for p in constitution.principles
    )
    new_version = version or next_version(constitution.version)
    if new_version == constitution.version:
        raise ConstitutionError(
            f"the new version must differ from {constitution.version!r}",
            hint="pass another --version, or none for the next one",
        )
    updated = constitution.model_copy(update={"principles": principles, "version": new_version})
    return Constitution.model_validate(updated.model_dump()), exemplars


def write(constitution: Constitution, path: Path, *, source: str) -> Path:
    """Write a constitution as YAML and lint it; ConstitutionError listing what is wrong."""
    header = f"# {constitution.id} v{constitution.version}: {source}\n"
    body = yaml.safe_dump(
        constitution.model_dump(mode="json", exclude_none=True, exclude_defaults=True),
        sort_keys=False,
        allow_unicode=True,
        width=100,
    )
    path.write_text(header + body, encoding="utf-8")
    written, problems = check(path)
    errors = [p for p in problems if p.severity == "error"]
    if written is None or errors:
        listed = "\n  ".join(str(p) for p in errors)
        raise ConstitutionError(
            f"{path}: the new version does not lint clean:\n  {listed}",
            hint="fix the decided items' labels, or leave those items out",
        )
    return path
