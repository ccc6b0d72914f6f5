"""Final records as Label Studio tasks, and Label Studio's annotations as critic's answers.

Both directions are pure. A task (Label Studio's JSON, labelstud.io/guide/task_format) is:

    {"data": {...the item's input fields..., "critic_origin": "RUN/ITEM",
              "critic_status": "pending", "critic_confidence": 0.41,
              "critic_route_reason": "low_confidence"},
     "predictions": [{"model_version": "MODEL:HASH12", "score": 0.41,
                      "result": [{"id": "critic", "from_name": "label", "to_name": "response",
                                  "type": "choices", "value": {"choices": ["harmful"]}}]}]}

`critic_origin` is how an annotation finds its (run, item) again. A text the config shows that
is not a string in the input (a list of chat messages) is given as JSON text. The prediction is
the critic's verdict (`choices`, or `rating`, `pairwise` with `selected: left|right`, `textarea`
for a revision); `score` is the critic's confidence, by which Label Studio sorts; `model_version`
names the model and the first 12 hex digits of the constitution's hash.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Literal

from critic.labelstudio.config import LABEL, PREFERENCE, REVISION, SCORE, SIDES, Layout
from critic.ship import FinalRecord, origin_of

ORIGIN = "critic_origin"
STATUS = "critic_status"
CONFIDENCE = "critic_confidence"
ROUTE_REASON = "critic_route_reason"


def model_version(record: FinalRecord) -> str:
    return f"{record.model or 'critic'}:{(record.constitution or '')[:12]}"


def prediction_result(layout: Layout, verdict: str, target: str) -> list[dict[str, Any]]:
    """The result of an answer (a label, a score as text, or a revision) in `layout`."""
    if layout.kind == "critique_revise":
        return [{"id": "critic", "from_name": REVISION, "to_name": target, "type": "textarea",
                 "value": {"text": [verdict]}}]  # fmt: skip
    side = layout.side(verdict)
    if side is not None:
        # Label Studio 1.23's prediction check wants an object tag here: the first of the two.
        return [{"id": "critic", "from_name": PREFERENCE, "to_name": "a",
                 "type": "pairwise", "value": {"selected": side}}]  # fmt: skip
    if layout.rating:
        return [{"id": "critic", "from_name": SCORE, "to_name": target, "type": "rating",
                 "value": {"rating": int(verdict)}}]  # fmt: skip
    return [{"id": "critic", "from_name": LABEL, "to_name": target, "type": "choices",
             "value": {"choices": [verdict]}}]  # fmt: skip


def target(layout: Layout) -> str:
    """The object tag the controls label (`toName`), as `labeling_config` writes it."""
    if layout.kind == "pairwise":
        return next((part for part, _ in layout.shown if part not in ("a", "b")), "a")
    return layout.shown[-1][0]


def to_task(record: FinalRecord, layout: Layout) -> dict[str, Any]:
    """The Label Studio task of one final record."""
    data: dict[str, Any] = dict(record.input)
    for _, name in layout.shown:
        value = data.get(name)
        if value is not None and not isinstance(value, str):
            data[name] = json.dumps(value, ensure_ascii=False)
    data[ORIGIN] = origin_of(record.run_id, record.item_id)
    data[STATUS] = record.status
    data[CONFIDENCE] = record.confidence
    data[ROUTE_REASON] = record.route_reason
    task: dict[str, Any] = {"data": data}
    verdict = record.critic_revision if layout.kind == "critique_revise" else record.critic_label
    if verdict is not None and (layout.kind == "critique_revise" or verdict in layout.labels):
        prediction: dict[str, Any] = {
            "model_version": model_version(record),
            "result": prediction_result(layout, verdict, target(layout)),
        }
        if record.confidence is not None:
            prediction["score"] = float(record.confidence)
        task["predictions"] = [prediction]
    return task


# -- annotations back ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Annotation:
    """One Label Studio annotation, read as critic's answer."""

    task: int | None
    """Label Studio's task id."""
    annotation: int | None
    origin: str
    annotator: str
    """The annotator as a critic user name (see `annotator_name`)."""
    cancelled: bool
    """Skipped in Label Studio: not a decision."""
    lead_time: float
    created_at: datetime | None
    label: str | None = None
    revision: str | None = None


@dataclass(frozen=True)
class Problem:
    """An annotation (or task) left out, and why."""

    task: int | None
    annotation: int | None
    message: str

    def __str__(self) -> str:
        where = f"task {self.task}" + (f", annotation {self.annotation}" if self.annotation else "")
        return f"{where}: {self.message}"


def annotator_name(who: Any, users: Mapping[int, Mapping[str, Any]]) -> str:
    """A critic user name for Label Studio's `completed_by` (an id, or an object with `email`):
    the email with every character a user name cannot hold made `-` (`ann@lab.org` becomes
    `ann-lab.org`); an id with no email known becomes `label-studio-user-ID`."""
    import re

    person: Mapping[str, Any] = who if isinstance(who, Mapping) else {}
    if not person and isinstance(who, int) and not isinstance(who, bool):
        person = users.get(who) or {"id": who}
    email = str(person.get("email") or "")
    if email:
        cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", email).strip("-._")[:200]
        if cleaned:
            return cleaned
    return f"label-studio-user-{person.get('id', 'unknown')}"


def _when(text: Any) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


Answer = tuple[Literal["label", "revision"], str]


def read_result(layout: Layout, result: Any) -> tuple[Answer | None, str | None]:
    """(answer, None) for an annotation's result, or (None, why it is left out)."""
    if not isinstance(result, list):
        return None, "its result is not a list"
    answers: list[Answer] = []
    for region in result:
        if not isinstance(region, Mapping):
            continue
        value = region.get("value") or {}
        kind = region.get("type")
        if kind == "textarea" and layout.kind == "critique_revise":
            texts = value.get("text") or []
            if texts:
                answers.append(("revision", "\n".join(str(t) for t in texts)))
        elif kind == "choices":
            answers.extend(("label", str(c)) for c in value.get("choices") or [])
        elif kind == "rating" and value.get("rating") is not None:
            answers.append(("label", str(value["rating"])))
        elif kind == "pairwise":
            side = value.get("selected")
            found = next((x for x in layout.labels if SIDES.get(x.casefold()) == side), None)
            answers.append(("label", found or f"{side}"))
    if not answers:
        return None, "it gives no answer"
    if len({a for a in answers}) > 1:
        shown = ", ".join(repr(a[1]) for a in answers)
        return None, f"it gives several answers ({shown}); give one"
    kind_, text = answers[0]
    if kind_ == "label" and text not in layout.labels:
        known = ", ".join(layout.labels)
        return None, f"label {text!r} is not in the constitution ({known})"
    return answers[0], None


def read_annotations(
    exported: Iterable[Mapping[str, Any]],
    layout: Layout,
    users: Mapping[int, Mapping[str, Any]] | None = None,
) -> tuple[list[Annotation], list[Problem]]:
    """The annotations of Label Studio's JSON export, as answers; and what was left out."""
    found: list[Annotation] = []
    problems: list[Problem] = []
    for task in exported:
        task_id = task.get("id")
        data = task.get("data") or {}
        origin = data.get(ORIGIN) if isinstance(data, Mapping) else None
        annotations = task.get("annotations") or []
        if not isinstance(origin, str) or "/" not in origin:
            if annotations:
                missing = f"no {ORIGIN} in its data: not a task critic pushed; annotations left out"
                problems.append(Problem(task_id, None, missing))
            continue
        for given in annotations:
            if not isinstance(given, Mapping):
                continue
            annotation_id = given.get("id")
            base = Annotation(
                task=task_id,
                annotation=annotation_id,
                origin=origin,
                annotator=annotator_name(given.get("completed_by"), users or {}),
                cancelled=bool(given.get("was_cancelled")),
                lead_time=max(0.0, float(given.get("lead_time") or 0.0)),
                created_at=_when(given.get("updated_at") or given.get("created_at")),
            )
            if base.cancelled:
                found.append(base)
                continue
            answer, why = read_result(layout, given.get("result"))
            if answer is None:
                problems.append(Problem(task_id, annotation_id, str(why)))
            elif answer[0] == "revision":
                found.append(replace(base, revision=answer[1]))
            else:
                found.append(replace(base, label=answer[1]))
    return found, problems
