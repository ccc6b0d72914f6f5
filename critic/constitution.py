"""Constitutions: written principles and the task they drive, loaded from YAML into pydantic.

A constitution is user-written, so unknown keys are errors (a typo must not become a silent
default) and every problem is reported with the file, the line, the field path and a hint.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from critic.errors import ConstitutionError

TaskKind = Literal["categorical", "rubric", "pairwise", "critique_revise"]
ID_PATTERN = r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class Example(_Strict):
    """A worked example shown to the critic (few-shot), optionally a regression case."""

    prompt: str | None = None
    response: str | None = None
    text: str | None = None
    label: str | None = None
    score: int | None = None
    explanation: str | None = None


class Principle(_Strict):
    """One principle. Its id is stable across versions: drafts, analytics and diffs cite it."""

    id: str = Field(pattern=ID_PATTERN)
    text: str = Field(min_length=1)
    critique_request: str | None = None
    revision_request: str | None = None
    examples: tuple[Example, ...] = ()


class LabelDef(_Strict):
    """One categorical label with what it means."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_ -]{0,39}$")
    description: str = Field(min_length=1)


class ScoreLevel(_Strict):
    """One rubric level: a score and its descriptor."""

    score: int = Field(ge=0, le=100)
    description: str = Field(min_length=1)


class Task(_Strict):
    """What the constitution asks the critic to produce."""

    kind: TaskKind
    labels: tuple[LabelDef, ...] = ()
    levels: tuple[ScoreLevel, ...] = ()
    question: str | None = None


class Constitution(_Strict):
    """A versioned set of principles and the task they drive."""

    id: str = Field(pattern=ID_PATTERN)
    version: str = Field(min_length=1)
    title: str = Field(min_length=1)
    description: str | None = None
    instructions: str | None = None
    task: Task
    principles: tuple[Principle, ...] = Field(min_length=1)

    @field_validator("version", mode="before")
    @classmethod
    def _version_is_text(cls, value: Any) -> Any:
        # YAML reads `version: 1.10` as the float 1.1, which would collide with the real 1.1.
        if isinstance(value, int | float):
            raise ValueError(
                f"YAML reads this version as the number {value!r}, not as text, so 1.10 would "
                'become 1.1; put it in quotes as you mean it, e.g. version: "1.10"'
            )
        return value

    @property
    def label_names(self) -> list[str]:
        return [label.name for label in self.task.labels]

    @property
    def scores(self) -> list[int]:
        return [level.score for level in self.task.levels]

    @property
    def principle_ids(self) -> list[str]:
        return [p.id for p in self.principles]

    def principle(self, principle_id: str) -> Principle:
        for p in self.principles:
            if p.id == principle_id:
                return p
        raise KeyError(principle_id)

    @property
    def hash(self) -> str:
        return content_hash(self)

    def canonical_json(self) -> str:
        """The content as canonical JSON: sorted keys, no insignificant whitespace."""
        return json.dumps(
            self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        )


def content_hash(constitution: Constitution) -> str:
    """sha256 of the canonical JSON content; stable under YAML key order and whitespace."""
    return hashlib.sha256(constitution.canonical_json().encode()).hexdigest()


@dataclass(frozen=True)
class Problem:
    """One lint finding."""

    path: str
    field: str
    message: str
    hint: str | None = None
    line: int | None = None
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        text = (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )
        return f"{text} (hint: {self.hint})" if self.hint else text


_HINTS = {
    "extra_forbidden": "remove the key, or check its spelling against constitutions/README.md",
    "missing": "add this key; constitutions/README.md shows a complete example",
    "string_pattern_mismatch": "ids start with a letter and use letters, digits, '_', '.', '-'",
    "literal_error": "task.kind is one of categorical, rubric, pairwise, critique_revise",
    "too_short": "add at least one entry",
}


def shipped_dir() -> Path:
    """The directory of constitutions that ship with critic."""
    return Path(str(resources.files("critic.constitutions")))


def resolve(path_or_name: str | Path) -> Path:
    """A constitution path; a bare name such as `harmlessness` finds a shipped one."""
    path = Path(path_or_name)
    if path.exists():
        return path
    for candidate in (shipped_dir() / path.name, shipped_dir() / f"{path.name}.yaml"):
        if candidate.is_file() and not path.parent.parts[1:]:
            return candidate
    shipped = sorted(p.stem for p in shipped_dir().glob("*.yaml") if ".cases" not in p.name)
    raise ConstitutionError(
        f"{path}: no such constitution file",
        hint=f"give a path to a YAML file, or one of the shipped names: {', '.join(shipped)}",
    )


class _AliasFound(yaml.YAMLError):
    def __init__(self, event: yaml.AliasEvent) -> None:
        super().__init__(f"alias *{event.anchor}")
        self.event = event


class _NoAliasLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing aliases (`*name`, `<<: *name`) where it meets them.

    An alias is a reference, so a few kilobytes of nested aliases stand for billions of nodes:
    a 4 KB file with 7 levels of 10 took 21.6 s and 1.48 GB, then crashed, in the walk that
    finds line numbers. No constitution needs one; each text is written out instead.
    """

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            raise _AliasFound(self.peek_event())  # type: ignore[no-untyped-call]
        return super().compose_node(parent, index)  # type: ignore[no-any-return]


def line_index(text: str) -> dict[tuple[str | int, ...], int]:
    """Map each YAML node path to its 1-based line, so errors can name the line."""
    index: dict[tuple[str | int, ...], int] = {}
    try:
        root = yaml.compose(text, Loader=_NoAliasLoader)
    except yaml.YAMLError:
        return index

    def walk(node: yaml.Node, path: tuple[str | int, ...]) -> None:
        index.setdefault(path, node.start_mark.line + 1)  # a key's own line, not its value's
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                index[(*path, key.value)] = key.start_mark.line + 1
                walk(value, (*path, key.value))
        elif isinstance(node, yaml.SequenceNode):
            for i, child in enumerate(node.value):
                walk(child, (*path, i))

    if root is not None:
        walk(root, ())
    return index


def field_path(loc: tuple[str | int, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class _Unreadable(ConstitutionError):
    """The file cannot be read as YAML: `problem` at `line` (1-based, if known)."""

    def __init__(self, path: Path, problem: str, line: int | None, hint: str | None) -> None:
        super().__init__(f"{path}{f':{line}' if line else ''}: {problem}", hint)
        self.problem, self.line = problem, line


def _read(path: Path) -> tuple[str, Any]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise _Unreadable(path, "no such constitution file", None, None) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _Unreadable(path, f"cannot read the constitution: {exc}", None, None) from None
    try:
        data = yaml.load(text, Loader=_NoAliasLoader)  # a SafeLoader
    except _AliasFound as exc:
        mark = exc.event.start_mark
        raise _Unreadable(
            path, f"YAML aliases are not allowed in a constitution ({exc})",
            mark.line + 1 if mark else None,
            "write the text out where the alias stands; a few nested aliases can expand a "
            "small file into gigabytes",
        ) from None  # fmt: skip
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise _Unreadable(
            path, f"not valid YAML: {problem}", mark.line + 1 if mark is not None else None,
            "check indentation and quoting; a ':' inside text needs quotes",
        ) from None  # fmt: skip
    return text, data


def check(path: str | Path) -> tuple[Constitution | None, list[Problem]]:
    """Validate a constitution file and return it with every problem found (none raised)."""
    path = Path(path)
    try:
        text, data = _read(path)
    except _Unreadable as exc:
        return None, [Problem(str(path), "", exc.problem, exc.hint, exc.line)]
    lines = line_index(text)
    if not isinstance(data, dict):
        return None, [
            Problem(str(path), "", "the top level must be a mapping", "start with `id: my-policy`")
        ]
    try:
        constitution = Constitution.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            line = next((lines[loc[:i]] for i in range(len(loc), -1, -1) if loc[:i] in lines), None)
            hint = _HINTS.get(err["type"])
            if err["type"] == "extra_forbidden":
                hint = _meant_hint(data, loc) or hint
            message = err["msg"].removeprefix("Value error, ")
            problems.append(Problem(str(path), field_path(loc), message, hint, line))
        # The other checks still run, on the file as written, so one pass reports everything.
        renamed: list[tuple[tuple[str | int, ...], tuple[str | int, ...]]] = []
        lenient = _lenient(Constitution, data, (), renamed)
        for old, new in renamed:  # a misspelt key's lines, under the name it was meant to have
            lines.update({(*new, *k[len(old) :]): v for k, v in list(lines.items())
                          if k[: len(old)] == old})  # fmt: skip
        # Too broken to check further: the schema errors say what to fix first.
        with contextlib.suppress(AttributeError, TypeError, ValueError):
            problems += _semantic_problems(lenient, str(path), lines)  # type: ignore[arg-type]
        return None, problems
    problems = list(_semantic_problems(constitution, str(path), lines))
    return constitution, problems


_NESTED: dict[tuple[type[BaseModel], str], type[BaseModel]] = {}


def _meant(key: object, model: type[BaseModel], given: dict[Any, Any]) -> str | None:
    """The field of `model` that an unknown `key` most likely misspells (and `given` lacks)."""
    free = [name for name in model.model_fields if name not in given]
    match = difflib.get_close_matches(str(key), free, n=1, cutoff=0.6)
    return match[0] if match else None


def _meant_hint(data: Any, loc: tuple[Any, ...]) -> str | None:
    model: type[BaseModel] = Constitution
    node = data
    for part in loc[:-1]:
        node = node[part] if isinstance(node, dict | list) else None
        if isinstance(part, str):
            model = _NESTED.get((model, part), model)
    if not isinstance(node, dict):
        return None
    meant = _meant(loc[-1], model, node)
    return f"did you mean '{meant}'?" if meant else None


def _lenient(
    model: type[BaseModel],
    value: Any,
    path: tuple[str | int, ...],
    renamed: list[tuple[tuple[str | int, ...], tuple[str | int, ...]]],
) -> Any:
    """`value` as `model`, validated where it can be and built unvalidated where it cannot, with
    unknown keys dropped and misspelt ones read under the name they were meant to have."""
    if not isinstance(value, dict):
        return value
    fields: dict[str, Any] = {}
    for key, item in value.items():
        name = key if key in model.model_fields else _meant(key, model, value)
        if name is None or name in fields:
            continue
        if name != key:
            renamed.append(((*path, key), (*path, name)))
        inner = _NESTED.get((model, name))
        if inner is not None and isinstance(item, list):
            item = tuple(_lenient(inner, x, (*path, key, i), renamed) for i, x in enumerate(item))
        elif inner is not None:
            item = _lenient(inner, item, (*path, key), renamed)
        fields[name] = item
    try:
        return model.model_validate(fields)
    except ValidationError:
        return model.model_construct(**fields)


_NESTED.update({
    (Constitution, "task"): Task, (Constitution, "principles"): Principle,
    (Task, "labels"): LabelDef, (Task, "levels"): ScoreLevel, (Principle, "examples"): Example,
})  # fmt: skip


def _semantic_problems(
    c: Constitution, path: str, lines: dict[tuple[str | int, ...], int]
) -> Iterator[Problem]:
    def at(*loc: str | int) -> int | None:
        return lines.get(loc)

    seen: dict[str, int] = {}
    for i, p in enumerate(c.principles):
        if p.id in seen:
            yield Problem(
                path,
                f"principles[{i}].id",
                f"'{p.id}' is used twice (first at principles[{seen[p.id]}])",
                "principle ids must be unique and stable: give this one a new id",
                at("principles", i, "id"),
            )
        seen.setdefault(p.id, i)
    kind = c.task.kind
    if kind in ("categorical", "pairwise"):
        if kind == "categorical" and len(c.task.labels) < 2:
            yield Problem(
                path,
                "task.labels",
                "a categorical task needs at least two labels",
                "list labels as `- {name: harmless, description: ...}`",
                at("task", "labels") or at("task"),
            )
        names: dict[str, int] = {}
        for i, label in enumerate(c.task.labels):
            if label.name in names:
                yield Problem(
                    path, f"task.labels[{i}].name", f"'{label.name}' is used twice",
                    "label names must be unique", at("task", "labels", i, "name"),
                )  # fmt: skip
            names.setdefault(label.name, i)
        first_tokens = [label.name.split()[0].lower() for label in c.task.labels]
        if len(set(first_tokens)) != len(first_tokens):
            yield Problem(
                path, "task.labels",
                "two labels start with the same word, so their probabilities blur together",
                "start each label with a distinct word", at("task", "labels"), "warning",
            )  # fmt: skip
    if kind == "rubric":
        scores = [level.score for level in c.task.levels]
        if len(scores) < 2:
            yield Problem(
                path, "task.levels", "a rubric task needs at least two score levels",
                "list levels as `- {score: 1, description: ...}`",
                at("task", "levels") or at("task"),
            )  # fmt: skip
        elif sorted(scores) != list(range(min(scores), min(scores) + len(scores))):
            yield Problem(
                path, "task.levels", f"scores {scores} are not consecutive integers in order",
                "use levels 1, 2, 3, ... with one descriptor each", at("task", "levels"),
            )  # fmt: skip
        elif scores != sorted(scores):
            yield Problem(
                path, "task.levels", "levels are not in ascending order of score",
                "list the lowest score first", at("task", "levels"),
            )  # fmt: skip
        if max((len(str(s)) for s in scores), default=1) > 1:
            yield Problem(
                path, "task.levels", "scores above 9 need two tokens, so their probabilities blur",
                "prefer single-digit scores", at("task", "levels"), "warning",
            )  # fmt: skip
    if kind == "rubric" and c.task.labels:
        yield Problem(
            path, "task.labels", "a rubric task scores with levels; labels are ignored",
            "remove task.labels or use kind: categorical", at("task", "labels"),
        )  # fmt: skip
    if kind == "categorical" and c.task.levels:
        yield Problem(
            path, "task.levels", "a categorical task uses labels; levels are ignored",
            "remove task.levels or use kind: rubric", at("task", "levels"),
        )  # fmt: skip
    for i, p in enumerate(c.principles):
        if kind == "critique_revise":
            for field in ("critique_request", "revision_request"):
                if not getattr(p, field):
                    yield Problem(
                        path, f"principles[{i}].{field}",
                        f"principle '{p.id}' has no {field.replace('_', ' ')}",
                        "critique_revise constitutions need both requests on every principle",
                        at("principles", i) ,
                    )  # fmt: skip
        for j, ex in enumerate(p.examples):
            where = f"principles[{i}].examples[{j}]"
            if ex.label is not None and c.task.labels and ex.label not in c.label_names:
                yield Problem(
                    path, f"{where}.label", f"'{ex.label}' is not a label of this constitution",
                    f"use one of: {', '.join(c.label_names)}", at("principles", i, "examples", j),
                )  # fmt: skip
            if ex.score is not None and c.task.levels and ex.score not in c.scores:
                yield Problem(
                    path, f"{where}.score", f"{ex.score} is not a score level",
                    f"use one of: {', '.join(map(str, c.scores))}",
                    at("principles", i, "examples", j),
                )  # fmt: skip
            if not (ex.text or ex.response):
                yield Problem(
                    path, where, "an example needs a `response` (with optional `prompt`) or `text`",
                    None, at("principles", i, "examples", j),
                )  # fmt: skip


def load_constitution(path: str | Path) -> Constitution:
    """Load and validate a constitution, raising ConstitutionError listing every error."""
    resolved = resolve(path)
    constitution, problems = check(resolved)
    errors = [p for p in problems if p.severity == "error"]
    if errors or constitution is None:
        listed = "\n  ".join(str(p) for p in errors)
        raise ConstitutionError(
            f"{resolved}: invalid constitution ({len(errors)} problem(s)):\n  {listed}",
            hint=f"run `critic constitution lint {resolved}` for the full report",
        )
    return constitution


def parse_constitution(content: str, *, source: str = "<text>") -> Constitution:
    """Build a constitution from YAML or JSON text (used for versions stored in a database)."""
    data = yaml.load(content, Loader=_NoAliasLoader)  # a SafeLoader
    try:
        return Constitution.model_validate(data)
    except ValidationError as exc:
        raise ConstitutionError(f"{source}: invalid constitution: {exc}") from None
