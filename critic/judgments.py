"""Judgments made elsewhere: read judged and predictions files, combine several critics' verdicts.

A row has one of two shapes, and every row of a file has the same one:
- one critic: `{"id", "label", "confidence" | "probs", "human_label"?}`;
- several: `{"id", "human_label"?, "critics": [{"model", "label", "confidence" | "probs"}, ...]}`.
`probs` maps each label to its probability and must sum to about 1; the verdict's confidence is
then the probability of its label. Other keys in a row are ignored.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from critic.errors import CriticError, InputError, UsageError, did_you_mean
from critic.store import verdict

Combine = Literal["mean", "vote"]
COMBINE: tuple[Combine, ...] = ("mean", "vote")
PROBS_TOLERANCE = 0.02  # how far from 1 a row's probabilities may sum (rounding in the writer)


def _label_text(value: Any) -> Any:
    """Labels and ids may be written as numbers (0 / 1 / 2); compare them as text."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return str(value)
    return value


class Verdict(BaseModel):
    """One critic's label for one item and its confidence; `probs` when the row gave them."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    model: str | None = None
    label: str
    confidence: float = Field(ge=0, le=1)
    probs: dict[str, float] | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_row(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ValueError("each verdict must be a JSON object")
        row = dict(data)
        for key in ("label", "model"):
            if key in row:
                row[key] = _label_text(row[key])
        probs = row.get("probs")
        if probs is None:
            if "confidence" not in row:
                raise ValueError("each row needs 'confidence' (a number in [0, 1]) or 'probs'")
            return row
        if "confidence" in row:
            raise ValueError("give either 'confidence' or 'probs', not both")
        if not isinstance(probs, dict) or not probs:
            raise ValueError("'probs' must be an object mapping each label to its probability")
        probs = {str(_label_text(k)): v for k, v in probs.items()}
        for label, p in probs.items():
            if isinstance(p, bool) or not isinstance(p, int | float) or not 0 <= p <= 1:
                raise ValueError(f"probs.{label}: must be a number in [0, 1], got {p!r}")
        total = sum(probs.values())
        if abs(total - 1.0) > PROBS_TOLERANCE:
            raise ValueError(
                f"probs: they sum to {total:.4g}, not about 1: give a probability for every "
                "label (normalised), or give 'confidence' instead"
            )
        if row.get("label") not in probs:
            raise ValueError(f"label: {row.get('label')!r} is not a key of 'probs'")
        row["probs"] = {k: float(v) for k, v in probs.items()}
        row["confidence"] = float(probs[row["label"]])
        return row


@dataclass(frozen=True)
class Judgment:
    """One row: the item id, every critic's verdict, and the human label when there is one."""

    id: str
    verdicts: tuple[Verdict, ...]
    human_label: str | None = None
    line: int = 0  # where it was read, for messages

    @property
    def panel(self) -> bool:
        return len(self.verdicts) > 1 or self.verdicts[0].model is not None

    @property
    def label(self) -> str:
        """The single critic's label (a panel must be combined or cascaded first)."""
        return self._single().label

    @property
    def confidence(self) -> float:
        return self._single().confidence

    @property
    def correct(self) -> bool:
        """Whether the single critic's label agrees with the human label."""
        return agrees(self._single(), self)

    def verdict(self, model: str) -> Verdict:
        for v in self.verdicts:
            if v.model == model:
                return v
        raise CriticError(f"item {self.id!r} has no verdict from critic {model!r}")

    def _single(self) -> Verdict:
        if len(self.verdicts) != 1:
            raise UsageError(
                f"item {self.id!r} carries {len(self.verdicts)} critics' verdicts",
                hint="pass --combine mean|vote, or --cascade with the critics in order",
            )
        return self.verdicts[0]


def agrees(verdict: Verdict, judgment: Judgment) -> bool:
    """Whether a verdict agrees with the item's human label (which must be present)."""
    if judgment.human_label is None:
        raise CriticError(f"item {judgment.id!r} has no human_label")
    return verdict.label == judgment.human_label


def combine(verdicts: Sequence[Verdict], how: Combine) -> Verdict:
    """One verdict from several critics'.

    `mean`: average the label distributions (a verdict without `probs` counts as its confidence
    on its label and the rest spread evenly over the other labels seen); the label is the
    argmax of the mean, its confidence the mean probability of that label. `vote`: the label
    most critics gave, its confidence the share of critics that gave it. Ties go to the higher
    mean probability, then to the label that sorts first.
    """
    if not verdicts:
        raise CriticError("combine needs at least one verdict")
    labels = sorted({lab for v in verdicts for lab in (v.probs or {v.label: 1.0})})
    mean = dict.fromkeys(labels, 0.0)
    for v in verdicts:
        for label, p in _distribution(v, labels).items():
            mean[label] += p / len(verdicts)
    votes = dict.fromkeys(labels, 0)
    for v in verdicts:
        votes[v.label] += 1
    if how == "mean":
        label = min(labels, key=lambda lab: (-mean[lab], -votes[lab], lab))
        confidence = mean[label]
    elif how == "vote":
        label = min(labels, key=lambda lab: (-votes[lab], -mean[lab], lab))
        confidence = votes[label] / len(verdicts)
    else:
        raise UsageError(f"unknown --combine {how!r}", hint=did_you_mean(str(how), COMBINE))
    name = f"{how}({','.join(str(v.model) for v in verdicts)})"
    return Verdict(model=name, label=label, confidence=min(1.0, confidence), probs=None)


def _distribution(v: Verdict, labels: Sequence[str]) -> dict[str, float]:
    if v.probs is not None:
        return {lab: v.probs.get(lab, 0.0) for lab in labels}
    others = [lab for lab in labels if lab != v.label]
    rest = (1.0 - v.confidence) / len(others) if others else 0.0
    return {lab: v.confidence if lab == v.label else rest for lab in labels}


def scored(judgments: Sequence[Judgment], how: Combine | None = None) -> list[Verdict]:
    """The verdict calibration and routing use for each row: the single critic's, or combined."""
    if how is None:
        return [j._single() for j in judgments]
    return [combine(j.verdicts, how) for j in judgments]


def stored_verdicts(row: dict[str, Any]) -> tuple[Verdict, ...]:
    """The verdicts of a draft stored by `critic label`: a panel's (`critics` in its output, as
    `{model, verdict, confidence}`), else the one critic's. A critic that produced no verdict or
    no confidence is left out."""
    found = []
    for c in (row.get("output") or {}).get("critics") or []:
        if c.get("verdict") is not None and c.get("confidence") is not None:
            found.append(Verdict(model=str(c["model"]), label=str(c["verdict"]),
                                 confidence=float(c["confidence"])))  # fmt: skip
    if found:
        return tuple(found)
    label = verdict(row.get("label"), row.get("score"))
    if label is None or row.get("confidence") is None:
        return ()
    return (Verdict(label=str(label), confidence=float(row["confidence"])),)


def critic_names(judgments: Sequence[Judgment]) -> list[str]:
    """The critic models named in a panel file, in the order of their first appearance."""
    names: dict[str, None] = {}
    for j in judgments:
        for v in j.verdicts:
            if v.model is not None:
                names.setdefault(v.model, None)
    return list(names)


class _Row(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str
    human_label: str | None = None
    critics: list[Verdict] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _shape(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ValueError("each line must be a JSON object")
        row = {k: _label_text(v) if k in ("id", "human_label") else v for k, v in data.items()}
        if "critics" not in row:
            verdict = {k: row[k] for k in ("label", "confidence", "probs") if k in row}
            if "label" not in verdict:
                raise ValueError("each row needs 'label' (or 'critics': a list of verdicts)")
            row["critics"] = [verdict]
        elif not isinstance(row["critics"], list):
            raise ValueError("'critics' must be a list of {model, label, probs|confidence}")
        else:
            for i, v in enumerate(row["critics"]):
                if not isinstance(v, dict) or not v.get("model"):
                    raise ValueError(f"critics[{i}]: each verdict needs a 'model' name")
            models = [str(v["model"]) for v in row["critics"]]
            for m in models:
                if models.count(m) > 1:
                    raise ValueError(f"critics: model {m!r} appears twice")
        return row


def load_judgments(path: str | Path, *, require_human_label: bool = True) -> list[Judgment]:
    """Read a JSONL file of judgments made elsewhere (either shape; one shape per file).

    `human_label` is required in calibration files, unless `require_human_label` is False, as
    for a predictions file to route. Errors name FILE:LINE and the field.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read: {exc}") from None
    judgments: list[Judgment] = []
    first_line: dict[str, int] = {}
    shape: tuple[bool, int] | None = None  # (panel?, line it was set on)
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{where}: invalid JSON: {exc.msg} (column {exc.colno})") from None
        panel = isinstance(data, dict) and "critics" in data
        try:
            row = _Row.model_validate(data)
        except ValidationError as exc:
            raise InputError(f"{where}: {_describe(exc, panel)}") from None
        if shape is None:
            shape = (panel, lineno)
        elif shape[0] != panel:
            had = "'critics' (several critics)" if shape[0] else "'label' (one critic)"
            raise InputError(
                f"{where}: critics: this row's shape differs from line {shape[1]}, which has {had}",
                hint="write every row of a file in the same shape",
            )
        if require_human_label and row.human_label is None:
            raise InputError(
                f"{where}: human_label: no 'human_label' in this row",
                hint="calibration needs the human decision for every row",
            )
        if row.id in first_line:
            raise InputError(f"{where}: id {row.id!r} already used on line {first_line[row.id]}")
        first_line[row.id] = lineno
        judgments.append(Judgment(row.id, tuple(row.critics), row.human_label, lineno))
    if not judgments:
        raise InputError(f"{path}: no rows")
    return judgments


def check_critics(judgments: Sequence[Judgment], names: Sequence[str], path: str | Path) -> None:
    """Every named critic must have a verdict on every row; errors name the file and line."""
    known = critic_names(judgments)
    for name in names:
        if name not in known:
            raise UsageError(
                f"{path}: critics[].model: no critic named {name!r} (the file has "
                f"{', '.join(known) or 'no named critics'})",
                hint=did_you_mean(name, known),
            )
    for j in judgments:
        have = {v.model for v in j.verdicts}
        for name in names:
            if name not in have:
                where = f"{path}:{j.line}" if j.line else f"{path}: item {j.id!r}"
                raise InputError(f"{where}: critics: no verdict from {name!r}")


def _describe(exc: ValidationError, panel: bool) -> str:
    parts = []
    for err in exc.errors():
        where = err["loc"]
        if not panel and where[:1] == ("critics",):
            where = where[2:]  # a one-critic row's verdict fields are the row's own
        loc = ".".join(str(p) for p in where)
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)
