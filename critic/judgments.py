"""Judgments made elsewhere: read judged and predictions files, combine several critics' verdicts.

A row has one of two shapes, and every row of a file has the same one:
- one critic: `{"id", "label", "confidence" | "probs", "human_label"?}`;
- several: `{"id", "human_label"?, "critics": [{"model", "label", "confidence" | "probs"}, ...]}`.
`probs` maps each label to its probability; the verdict's confidence is then the probability of its
label normalised over the label set (`critic.confidence.normalise`, the rule critic's own logprob
path uses), because a real judge leaves some mass on other tokens: rows summing to 0.964–1.0 are
usual. A row is refused when its probabilities sum to more than 1 + `PROBS_TOLERANCE` (not
rounding: not a distribution) or to less than `PROBS_FLOOR` (the judge put most of its mass
elsewhere, so the label set's share says nothing). Other keys in a row are ignored.

Files written by other tools name their fields otherwise (PandaLM: `idx`, `human_majority`,
`gpt35_result`; labels 0 / 1 / 2): `Fields` says where each value is and maps the labels.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from critic.confidence import normalise
from critic.errors import CriticError, InputError, UsageError, did_you_mean
from critic.store import verdict

Combine = Literal["mean", "vote"]
COMBINE: tuple[Combine, ...] = ("mean", "vote")
PROBS_TOLERANCE = 0.02  # how far above 1 a row's probabilities may sum (rounding in the writer)
PROBS_FLOOR = 0.5
"""A row whose label probabilities sum to less than this is refused: the judge put most of its
probability on tokens outside the label set (a refusal, another format), so how it splits the
rest among the labels is no measure of confidence."""
_EXACT = 1e-9  # a sum this close to 1 is not counted as normalised (float noise)


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
    probs_total: float | None = Field(
        default=None, description="what the row's probs summed to before normalising"
    )

    @property
    def normalised(self) -> bool:
        """Whether the row's probabilities were rescaled to sum to 1."""
        return self.probs_total is not None and abs(self.probs_total - 1.0) > _EXACT

    @model_validator(mode="before")
    @classmethod
    def _from_row(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ValueError("each verdict must be a JSON object")
        row = dict(data)
        row.pop("probs_total", None)  # set here only, never read from a file
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
        total = float(sum(probs.values()))
        if total > 1.0 + PROBS_TOLERANCE:
            raise ValueError(
                f"probs: they sum to {total:.4g}, more than 1: these are not probabilities "
                "(give each label's probability, or give 'confidence' instead)"
            )
        if total < PROBS_FLOOR:
            raise ValueError(
                f"probs: they sum to {total:.4g}: less than {PROBS_FLOOR} of the judge's "
                "probability is on these labels, too little to measure confidence (check the "
                "label set, or give 'confidence' instead)"
            )
        if row.get("label") not in probs:
            raise ValueError(f"label: {row.get('label')!r} is not a key of 'probs'")
        shares = normalise({k: float(v) for k, v in probs.items()})
        assert shares is not None  # total >= PROBS_FLOOR > 0
        row["probs"] = shares
        row["confidence"] = min(1.0, shares[row["label"]])
        row["probs_total"] = total
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


@dataclass(frozen=True)
class Fields:
    """Where a judged file keeps each value, and how its labels are spelled.

    Attributes:
        id, label, confidence, human: the fields holding the item id, the one critic's label,
            its confidence and the human label (`calibrate --id-field` etc.).
        critics: (name, field) per critic whose bare label a field holds (`--critic-field
            NAME=FIELD`); the rows are then a panel, and a bare label counts as certain
            (confidence 1.0), so combine them (`--combine vote`: the share of critics agreeing
            is the confidence) or cascade them.
        label_map: raw value -> label (`--label-map "0=tie,1=a,2=b"`), applied to the human
            label, the critics' labels and the keys of `probs`. Every human label must be in
            it; a critic's label that is not (PandaLM's GPT-3.5 wrote "garbage" 25 times) is
            kept as written, so it agrees with no human, and counted.
    """

    id: str = "id"
    label: str = "label"
    confidence: str = "confidence"
    human: str = "human_label"
    critics: tuple[tuple[str, str], ...] = ()
    label_map: Mapping[str, str] = field(default_factory=dict)

    @property
    def renamed(self) -> dict[str, str]:
        """Canonical field -> the file's name for it, where they differ (for messages)."""
        pairs = {"id": self.id, "label": self.label, "confidence": self.confidence,
                 "human_label": self.human}  # fmt: skip
        return {k: v for k, v in pairs.items() if k != v}

    @property
    def plain(self) -> bool:
        return not self.renamed and not self.critics and not self.label_map


def parse_label_map(text: str) -> dict[str, str]:
    """`"0=tie,1=a,2=b"` as {"0": "tie", "1": "a", "2": "b"} (the one parser, shared with
    `critic queue import`); usage errors say what is wrong."""
    from adjudication.errors import QueueError
    from adjudication.importing import parse_label_map as parse

    try:
        return parse(text)
    except QueueError as exc:
        raise UsageError(f"--label-map: {exc.message}", hint=exc.hint) from None


def parse_critic_fields(specs: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """`["gpt35=gpt35_result", ...]` as (("gpt35", "gpt35_result"), ...)."""
    out: list[tuple[str, str]] = []
    for spec in specs:
        name, sep, column = (p.strip() for p in spec.partition("="))
        if not sep or not name or not column:
            raise UsageError(
                f"--critic-field: {spec!r} is not NAME=FIELD", hint="e.g. gpt35=gpt35_result"
            )
        if name in (n for n, _ in out):
            raise UsageError(f"--critic-field: critic {name!r} is named twice")
        out.append((name, column))
    return tuple(out)


def _canonical(data: dict[str, Any], fields: Fields, where: str, unmapped: Counter[str]) -> Any:
    """A row of a file with its own field names and label spellings, in critic's shape."""
    mapping = fields.label_map

    def mapped(value: Any) -> Any:
        text = _label_text(value)
        if not mapping or not isinstance(text, str):
            return text
        if text not in mapping:
            unmapped[text] += 1
            return text
        return mapping[text]

    row: dict[str, Any] = {}
    if fields.id in data:
        row["id"] = data[fields.id]
    if fields.human in data and data[fields.human] is not None:
        human = _label_text(data[fields.human])
        if mapping and human not in mapping:
            raise InputError(
                f"{where}: {fields.human}: {data[fields.human]!r} is not in --label-map "
                f"({', '.join(mapping)})",
                hint="map every value of the human field to a label",
            )
        row["human_label"] = mapping.get(human, human) if mapping else human
    if fields.critics:
        critics = []
        for name, column in fields.critics:
            if data.get(column) is None:
                raise InputError(f"{where}: {column}: no label from critic {name!r} in this row")
            critics.append({"model": name, "label": mapped(data[column]), "confidence": 1.0})
        row["critics"] = critics
        return row
    if "critics" in data and isinstance(data["critics"], list):
        row["critics"] = [
            {**v, "label": mapped(v.get("label")),
             **({"probs": _mapped_probs(v["probs"], mapped)} if "probs" in v else {})}
            if isinstance(v, dict) and "label" in v else v
            for v in data["critics"]
        ]  # fmt: skip
        return row
    if fields.label in data:
        row["label"] = mapped(data[fields.label])
    if fields.confidence in data:
        row["confidence"] = data[fields.confidence]
    if "probs" in data:
        row["probs"] = _mapped_probs(data["probs"], mapped)
    return row


def _mapped_probs(probs: Any, mapped: Any) -> Any:
    if not isinstance(probs, dict):
        return probs
    out: dict[str, Any] = {}
    for k, v in probs.items():
        key = mapped(k)
        out[key] = v if key not in out or not isinstance(v, int | float) else out[key] + v
    return out


@dataclass(frozen=True)
class JudgedFile:
    """What `read_judged` found: the rows, and what it had to adjust to read them."""

    judgments: list[Judgment]
    normalised: int  # rows with a verdict whose probs were rescaled to sum to 1
    unmapped: dict[str, int]  # critic labels not in the label map (kept as written): count


def load_judgments(
    path: str | Path, *, require_human_label: bool = True, fields: Fields | None = None
) -> list[Judgment]:
    """Read a JSONL file of judgments made elsewhere (either shape; one shape per file).

    `human_label` is required in calibration files, unless `require_human_label` is False, as
    for a predictions file to route. Errors name FILE:LINE and the field.
    """
    return read_judged(path, require_human_label=require_human_label, fields=fields).judgments


def read_judged(
    path: str | Path, *, require_human_label: bool = True, fields: Fields | None = None
) -> JudgedFile:
    """`load_judgments`, with how many rows' probabilities were normalised and which critic
    labels the label map did not cover (see `Fields`)."""
    fields = fields or Fields()
    unmapped: Counter[str] = Counter()
    normalised = 0
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
        if isinstance(data, dict) and not fields.plain:
            data = _canonical(data, fields, where, unmapped)
        panel = isinstance(data, dict) and "critics" in data
        try:
            row = _Row.model_validate(data)
        except ValidationError as exc:
            raise InputError(f"{where}: {_describe(exc, panel, fields.renamed)}") from None
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
                f"{where}: {fields.human}: no '{fields.human}' in this row",
                hint="calibration needs the human decision for every row"
                + ("" if fields.renamed.get("human_label") else " (--human-field names it)"),
            )
        if row.id in first_line:
            raise InputError(f"{where}: id {row.id!r} already used on line {first_line[row.id]}")
        first_line[row.id] = lineno
        judgments.append(Judgment(row.id, tuple(row.critics), row.human_label, lineno))
        normalised += any(v.normalised for v in row.critics)
    if not judgments:
        raise InputError(f"{path}: no rows")
    return JudgedFile(judgments, normalised, dict(unmapped))


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


def _describe(exc: ValidationError, panel: bool, renamed: Mapping[str, str]) -> str:
    parts = []
    for err in exc.errors():
        where = err["loc"]
        if not panel and where[:1] == ("critics",):
            where = where[2:]  # a one-critic row's verdict fields are the row's own
        if where and str(where[0]) in renamed:
            where = (renamed[str(where[0])], *where[1:])  # the file's own name for the field
        loc = ".".join(str(p) for p in where)
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)
