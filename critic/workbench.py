"""The constitution workbench: regression cases, diffs with measured impact, human-decision stats.

Policy writers treat a constitution like code: it has tests (`run_cases` over a `NAME.cases.yaml`
file next to it), a diff (`diff_constitutions`, pure), a measured blast radius before it ships
(`impact`: re-label only what a change can affect, reusing the stored drafts of the old version)
and analytics from the review queues (`decision_stats`: what humans overturn, by principle).
"""

from __future__ import annotations

import asyncio
import html
import json
import random
import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from difflib import SequenceMatcher
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from critic.backends.base import Backend
from critic.calibrate import clopper_pearson
from critic.constitution import (
    ID_PATTERN,
    Constitution,
    Example,
    Problem,
    _field_path,
    _line_index,
    load_constitution,
    parse_constitution,
    resolve,
)
from critic.errors import (
    ConstitutionError,
    CriticError,
    InputError,
    MissingExtraError,
    StoreError,
    UsageError,
)
from critic.items import Fields, Item
from critic.render import LABEL_TEMPLATES, Templates
from critic.runs import Drafter, Progress, open_run, run_items
from critic.store import Outcome, RunInfo, Store
from critic.tasks.label import Labeler, LabelOptions, label_identity

LABEL_KINDS = ("categorical", "rubric")
SNIPPET_CHARS = 240


def _verdict_of(kind: str, label: Any, score: Any) -> str | None:
    """One comparable text for a categorical label or a rubric score."""
    if kind == "rubric":
        return None if score is None else str(int(score))
    return None if label is None else str(label)


def _snippet(row: Mapping[str, Any] | None, fields: Fields | None = None) -> str:
    """A short, plain-text view of an item for reports (still untrusted: escape on output)."""
    if not row:
        return ""
    fields = fields or Fields()
    names = [fields.text] if fields.text else [fields.prompt, fields.response]
    parts = [str(row[n]) for n in names if n and row.get(n) is not None]
    if not parts:
        parts = [v for k in ("text", "prompt", "response") if isinstance(v := row.get(k), str)]
    text = " | ".join(parts) if parts else json.dumps(dict(row), ensure_ascii=False, default=str)
    text = " ".join(text.split())
    return text if len(text) <= SNIPPET_CHARS else text[: SNIPPET_CHARS - 1] + "…"


def load_version(target: str, store: Store | None = None) -> Constitution:
    """A constitution from a file, a shipped name, or (with a store) a stored hash or prefix."""
    path = Path(target)
    if path.exists() or store is None or not re.fullmatch(r"[0-9a-f]{6,64}", target):
        return load_constitution(target)
    content = store.constitution_content(target)
    if content is None:
        raise ConstitutionError(
            f"{target}: not a file, a shipped name, or a constitution hash stored in {store.url}",
            hint="`critic runs --db URL` lists the constitution hashes of stored runs",
        )
    return parse_constitution(content, source=target)


# -- regression cases ------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class Expect(_Strict):
    """What a case expects: a `label` (categorical), a rubric `score` (one level or a band
    `[min, max]`), or a pairwise `preference` (`a`, `b` or `tie`, in the case's own order)."""

    label: str | None = None
    score: int | tuple[int, int] | None = None
    preference: Literal["a", "b", "tie"] | None = None

    @field_validator("preference", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _one_expectation(self) -> Expect:
        if sum(v is not None for v in (self.label, self.score, self.preference)) != 1:
            raise ValueError("give exactly one of `label`, `score` and `preference`")
        if isinstance(self.score, tuple) and self.score[0] > self.score[1]:
            raise ValueError(f"the score band {list(self.score)} has min above max")
        return self

    @property
    def band(self) -> tuple[int, int] | None:
        if self.score is None:
            return None
        return self.score if isinstance(self.score, tuple) else (self.score, self.score)

    def describe(self) -> str:
        band = self.band
        if band is None:
            return str(self.label if self.preference is None else self.preference)
        return str(band[0]) if band[0] == band[1] else f"{band[0]}-{band[1]}"

    def met_by(self, verdict: str | None) -> bool:
        if verdict is None:
            return False
        band = self.band
        if band is None:
            return verdict == (self.label if self.preference is None else self.preference)
        return band[0] <= int(verdict) <= band[1]


class Case(_Strict):
    """One regression case: an item, what the critic must say about it, the principle it tests.

    The item is a `response` (with an optional `prompt`), a `text`, or for a pairwise
    constitution two responses `a` and `b` to one `prompt`.
    """

    id: str = Field(pattern=ID_PATTERN)
    principle: str = Field(pattern=ID_PATTERN)
    prompt: str | None = None
    response: str | None = None
    text: str | None = None
    a: str | None = None
    b: str | None = None
    expect: Expect
    note: str | None = None

    @model_validator(mode="after")
    def _has_an_item(self) -> Case:
        forms = [self.text is not None, self.response is not None, self.a is not None]
        if sum(forms) != 1 or (self.a is None) != (self.b is None):
            raise ValueError(
                "a case needs one item: a `response` (with an optional `prompt`), a `text`, "
                "or two responses `a` and `b` (with a `prompt`)"
            )
        return self

    @property
    def pairwise(self) -> bool:
        return self.a is not None

    def item(self, source: str) -> Item:
        if self.text is not None:
            return Item(self.id, {"text": self.text}, source, Fields(text="text"))
        if self.pairwise:
            row = {"prompt": self.prompt or "", "response_a": self.a, "response_b": self.b}
            return Item(self.id, row, source, Fields(a="response_a", b="response_b"))
        row = {"prompt": self.prompt or "", "response": self.response or ""}
        return Item(self.id, row, source)


class CaseFile(_Strict):
    """A `NAME.cases.yaml` file: the constitution id it tests and its cases."""

    constitution: str = Field(pattern=ID_PATTERN)
    cases: tuple[Case, ...] = Field(min_length=1)


@dataclass(frozen=True)
class CaseSuite:
    path: Path
    cases: tuple[Case, ...]
    lines: Mapping[str, int]

    def source(self, case: Case) -> str:
        line = self.lines.get(case.id)
        return f"{self.path}:{line}" if line else str(self.path)


def cases_path(constitution_path: str | Path) -> Path:
    """Where the cases of a constitution live: `NAME.cases.yaml` next to `NAME.yaml`."""
    path = resolve(constitution_path)
    return path.with_name(f"{path.stem}.cases.yaml")


def check_cases(
    path: str | Path, constitution: Constitution
) -> tuple[CaseSuite | None, list[Problem]]:
    """Validate a cases file against its constitution; return it with every problem found."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        return None, [
            Problem(
                str(path), "", "no such cases file",
                "write one next to the constitution; constitutions/README.md (Regression cases)",
            )
        ]  # fmt: skip
    except (OSError, UnicodeDecodeError) as exc:
        return None, [Problem(str(path), "", f"cannot read the cases file: {exc}")]
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        return None, [Problem(str(path), "", f"not valid YAML: {problem}", None, line)]
    lines = _line_index(text)
    try:
        suite = CaseFile.model_validate(data)
    except ValidationError as exc:
        problems = []
        errors = exc.errors()
        for err in errors:
            loc = tuple(err["loc"])
            if loc == ("cases",) and any(len(e["loc"]) > 1 for e in errors):
                continue  # "no case left after validation" only repeats the cases' own errors
            line = next((lines[loc[:i]] for i in range(len(loc), -1, -1) if loc[:i] in lines), None)
            problems.append(Problem(str(path), _field_path(loc), err["msg"], None, line))
        return None, problems
    problems = list(_case_problems(suite, constitution, str(path), lines))
    case_lines = {c.id: lines.get(("cases", i), 0) for i, c in enumerate(suite.cases)}
    return CaseSuite(path, suite.cases, case_lines), problems


def _case_problems(
    suite: CaseFile, c: Constitution, path: str, lines: Mapping[tuple[str | int, ...], int]
) -> Iterable[Problem]:
    if suite.constitution != c.id:
        yield Problem(
            path, "constitution", f"these cases are for '{suite.constitution}', not '{c.id}'",
            "point --cases at the cases of this constitution", lines.get(("constitution",)),
        )  # fmt: skip
    seen: set[str] = set()
    for i, case in enumerate(suite.cases):
        at = lines.get(("cases", i))
        where = f"cases[{i}]"
        if case.id in seen:
            yield Problem(path, f"{where}.id", f"'{case.id}' is used twice",
                          "case ids must be unique", at)  # fmt: skip
        seen.add(case.id)
        if case.principle not in c.principle_ids:
            yield Problem(
                path, f"{where}.principle", f"'{case.principle}' is not a principle of '{c.id}'",
                f"use one of: {', '.join(c.principle_ids)}", at,
            )  # fmt: skip
        band = case.expect.band
        if c.task.kind == "pairwise":
            if case.expect.preference is None or not case.pairwise:
                yield Problem(
                    path, where, "a pairwise case has two responses `a` and `b` and expects a "
                    "`preference`", "write `a: ...`, `b: ...` and `expect: {preference: a}`", at,
                )  # fmt: skip
            elif case.expect.preference == "tie" and "tie" not in c.label_names:
                yield Problem(path, f"{where}.expect.preference",
                              f"'{c.id}' has no tie verdict", "expect a or b", at)  # fmt: skip
        elif case.pairwise or case.expect.preference is not None:
            yield Problem(path, where, f"a {c.task.kind} constitution judges one response, not a "
                          "preference between two", "give `response` and a `label` or `score`",
                          at)  # fmt: skip
        elif c.task.kind == "rubric":
            if band is None:
                yield Problem(path, f"{where}.expect", "a rubric constitution expects a `score`",
                              "write `expect: {score: 4}` or a band `expect: {score: [3, 5]}`",
                              at)  # fmt: skip
            elif not set(band) <= set(c.scores):
                yield Problem(
                    path, f"{where}.expect.score", f"{list(band)} is outside the score levels",
                    f"use levels among: {', '.join(map(str, c.scores))}", at,
                )  # fmt: skip
        elif band is not None:
            yield Problem(path, f"{where}.expect", f"a {c.task.kind} constitution expects a "
                          "`label`", f"use one of: {', '.join(c.label_names)}", at)  # fmt: skip
        elif case.expect.label not in c.label_names:
            yield Problem(
                path, f"{where}.expect.label",
                f"'{case.expect.label}' is not a label of '{c.id}'",
                f"use one of: {', '.join(c.label_names)}", at,
            )  # fmt: skip


def load_cases(path: str | Path, constitution: Constitution) -> CaseSuite:
    """Load a cases file, raising ConstitutionError that lists every problem."""
    suite, problems = check_cases(path, constitution)
    if suite is None or problems:
        listed = "\n  ".join(str(p) for p in problems)
        raise ConstitutionError(
            f"{path}: invalid cases ({len(problems)} problem(s)):\n  {listed}",
            hint=problems[0].hint if len(problems) == 1 and problems[0].hint else None,
        )
    return suite


@dataclass(frozen=True)
class CaseResult:
    """How one case went: `pass`, `fail` (a wrong verdict) or `error` (no verdict at all)."""

    id: str
    principle: str
    status: Literal["pass", "fail", "error"]
    expected: str
    got: str | None
    cited: tuple[str, ...]
    rationale: str | None
    detail: str | None
    source: str

    @property
    def passed(self) -> bool:
        return self.status == "pass"


@dataclass
class CaseReport:
    """Every case's result, per principle, with provenance; `to_dict` is the `--json` form."""

    constitution: str
    version: str
    constitution_hash: str
    cases_file: str
    backend: str
    model: str
    principles: tuple[str, ...]
    results: list[CaseResult]
    elapsed_s: float

    @property
    def failed(self) -> int:
        return sum(not r.passed for r in self.results)

    @property
    def ok(self) -> bool:
        return self.failed == 0

    @property
    def by_principle(self) -> dict[str, dict[str, int]]:
        out = {p: {"cases": 0, "passed": 0, "failed": 0} for p in self.principles}
        for r in self.results:
            counts = out.setdefault(r.principle, {"cases": 0, "passed": 0, "failed": 0})
            counts["cases"] += 1
            counts["passed" if r.passed else "failed"] += 1
        return out

    @property
    def untested(self) -> list[str]:
        return [p for p, counts in self.by_principle.items() if counts["cases"] == 0]

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "constitution": self.constitution,
            "version": self.version,
            "constitution_hash": self.constitution_hash,
            "cases_file": self.cases_file,
            "backend": self.backend,
            "model": self.model,
            "cases": len(self.results),
            "passed": len(self.results) - self.failed,
            "failed": self.failed,
            "by_principle": self.by_principle,
            "untested_principles": self.untested,
            "results": [{**asdict(r), "cited": list(r.cited)} for r in self.results],
            "elapsed_s": round(self.elapsed_s, 3),
        }


def _case_result(case: Case, outcome: Outcome, kind: str, source: str) -> CaseResult:
    expected = case.expect.describe()
    if outcome.status != "drafted":
        return CaseResult(case.id, case.principle, "error", expected, None, (), None,
                          f"{outcome.reason}: {outcome.detail}", source)  # fmt: skip
    got = _verdict_of(kind, outcome.label, outcome.score)
    cited = tuple(str(p) for p in (outcome.draft or {}).get("principles") or ())
    status: Literal["pass", "fail"] = "pass" if case.expect.met_by(got) else "fail"
    return CaseResult(case.id, case.principle, status, expected, got, cited, outcome.rationale,
                      None, source)  # fmt: skip


async def arun_cases(
    constitution: Constitution,
    suite: CaseSuite,
    backend: Backend,
    *,
    options: LabelOptions | None = None,
    prompts: str | Path | None = None,
    principles: Sequence[str] = (),
    concurrency: int = 16,
    progress: Progress | None = None,
) -> CaseReport:
    """Draft every case (or those of `principles`) and check the verdicts.

    Categorical and rubric cases go through the label task; pairwise cases through the compare
    task (both orders), judged under the principle the case is tagged with.
    """
    kind = constitution.task.kind
    if kind not in (*LABEL_KINDS, "pairwise"):
        raise UsageError(
            f"constitution '{constitution.id}' drives a {kind} task; `critic constitution "
            "test` runs categorical, rubric and pairwise constitutions",
        )
    unknown = [p for p in principles if p not in constitution.principle_ids]
    if unknown:
        raise UsageError(
            f"--principle {unknown[0]} is not a principle of '{constitution.id}'",
            hint=f"use one of: {', '.join(constitution.principle_ids)}",
        )
    cases = [c for c in suite.cases if not principles or c.principle in principles]
    if not cases:
        raise UsageError(f"{suite.path}: no case exercises {', '.join(principles)}")
    drafter_for = _drafters(constitution, backend, Templates.load(prompts), options)
    started = time.perf_counter()
    limit = asyncio.Semaphore(max(1, concurrency))
    done = 0

    async def one(case: Case) -> CaseResult:
        nonlocal done
        async with limit:
            outcome = await drafter_for(case).draft(case.item(suite.source(case)))
        done += 1
        if progress:
            progress(done, len(cases))
        return _case_result(case, outcome, kind, suite.source(case))

    try:
        await backend.check()
        results = list(await asyncio.gather(*(one(c) for c in cases)))
    finally:
        await backend.aclose()
    shown = tuple(p for p in constitution.principle_ids if not principles or p in principles)
    return CaseReport(
        constitution=constitution.id,
        version=constitution.version,
        constitution_hash=constitution.hash,
        cases_file=str(suite.path),
        backend=backend.name,
        model=backend.model,
        principles=shown,
        results=results,
        elapsed_s=time.perf_counter() - started,
    )


def _drafters(
    constitution: Constitution,
    backend: Backend,
    templates: Templates,
    options: LabelOptions | None,
) -> Callable[[Case], Drafter]:
    """The drafter of each case: one labeler, or one comparer per principle."""
    if constitution.task.kind != "pairwise":
        labeler = Labeler(backend, constitution, templates, options or LabelOptions())
        return lambda case: labeler
    from critic.tasks.compare import CompareOptions, Comparer

    compare_options = CompareOptions(sampling=options or LabelOptions(top_logprobs=5))
    comparers: dict[str, Comparer] = {}

    def comparer(case: Case) -> Drafter:
        if case.principle not in comparers:
            judge = Comparer(backend, constitution, templates, compare_options)
            # The system prompt keeps every principle, as in a compare run; only the principle
            # the pair is judged under is fixed to the one the case exercises.
            judge.constitution = constitution.model_copy(
                update={"principles": (constitution.principle(case.principle),)}
            )
            comparers[case.principle] = judge
        return comparers[case.principle]

    return comparer


def run_cases(
    constitution: Constitution, suite: CaseSuite, backend: Backend, **kwargs: Any
) -> CaseReport:
    """`arun_cases` for callers without an event loop."""
    return asyncio.run(arun_cases(constitution, suite, backend, **kwargs))


# -- diff ------------------------------------------------------------------------------------

Segment = tuple[Literal["equal", "delete", "insert"], str]


def word_diff(old: str, new: str) -> tuple[Segment, ...]:
    """A word-level diff: runs of equal, deleted and inserted words (joined by single spaces)."""
    a, b = old.split(), new.split()
    out: list[Segment] = []

    def add(op: Literal["equal", "delete", "insert"], words: list[str]) -> None:
        if not words:
            return
        if out and out[-1][0] == op:
            out[-1] = (op, f"{out[-1][1]} {' '.join(words)}")
        else:
            out.append((op, " ".join(words)))

    for op, i1, i2, j1, j2 in SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op == "equal":
            add("equal", a[i1:i2])
        else:
            add("delete", a[i1:i2])
            add("insert", b[j1:j2])
    return tuple(out)


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


# -- impact ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Flip:
    """One item whose verdict differs between the old version's stored draft and the new one."""

    item_id: str
    old: str
    new: str
    old_principles: tuple[str, ...]
    new_principles: tuple[str, ...]
    old_rationale: str | None
    new_rationale: str | None
    snippet: str

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "old_principles": list(self.old_principles),
                "new_principles": list(self.new_principles)}  # fmt: skip


@dataclass
class ImpactReport:
    """What a change flips on stored data: overall, per principle, with example items."""

    old: dict[str, Any]
    new: dict[str, Any]
    diff: ConstitutionDiff
    mode: Literal["cited", "sample"]
    reason: str
    population: int
    selected: int
    seed: int
    compared: int
    failed: int
    relabeled: int
    reused: int
    flips: list[Flip]
    by_principle: dict[str, dict[str, Any]]
    transitions: dict[str, int]
    warnings: list[str]
    elapsed_s: float
    new_rows: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)
    enqueued: int | None = None

    @property
    def flip_rate(self) -> float | None:
        return len(self.flips) / self.compared if self.compared else None

    @property
    def flip_interval(self) -> tuple[float, float]:
        return clopper_pearson(len(self.flips), self.compared)

    def to_dict(self, examples: int = 3) -> dict[str, Any]:
        rate = self.flip_rate
        lo, hi = self.flip_interval
        return {
            "old": self.old,
            "new": self.new,
            "diff": self.diff.to_dict(),
            "selection": {
                "mode": self.mode, "reason": self.reason, "population": self.population,
                "selected": self.selected, "seed": self.seed,
            },
            "compared": self.compared,
            "failed": self.failed,
            "relabeled": self.relabeled,
            "reused": self.reused,
            "flipped": len(self.flips),
            "flip_rate": rate,
            "flip_rate_95": [lo, hi],
            "estimated_flips": None if rate is None else round(rate * self.population),
            "transitions": self.transitions,
            "by_principle": {
                p: {**v, "examples": [f.to_dict() for f in v["examples"][:examples]]}
                for p, v in self.by_principle.items()
            },
            "flips": [f.to_dict() for f in self.flips],
            "warnings": self.warnings,
            "enqueued": self.enqueued,
            "elapsed_s": round(self.elapsed_s, 3),
        }  # fmt: skip


def _old_run(store: Store, old: Constitution, run_id: str | None) -> RunInfo:
    if run_id:
        run = store.run(run_id)
        if run.constitution_hash != old.hash:
            raise UsageError(
                f"run {run.id} used constitution {run.constitution_hash[:12]}, not the old "
                f"version given ({old.id} v{old.version}, {old.hash[:12]})",
                hint=f"give the version it used: critic constitution diff "
                f"{run.constitution_hash[:12]} NEW --db {store.url} --impact",
            )
        return run
    runs = [r for r in store.runs() if r.task == "label" and r.constitution_hash == old.hash]
    if not runs:
        raise StoreError(
            f"{store.url} holds no label run of {old.id} v{old.version} ({old.hash[:12]})",
            hint="label the data with the old version first (critic label INPUT -c OLD --db "
            "URL), or give the old version as a stored hash (critic runs --db URL lists them)",
        )
    return runs[-1]


def _cited(row: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(str(p) for p in (row.get("output") or {}).get("principles") or ())


def _select(
    rows: Sequence[dict[str, Any]], diff: ConstitutionDiff, sample: int, seed: int
) -> tuple[Literal["cited", "sample"], str, list[dict[str, Any]], list[dict[str, Any]]]:
    """(mode, reason, population, chosen): the drafts a change can affect, at most `sample`."""
    mode: Literal["cited", "sample"] = "sample"
    affected = set(diff.affected_principles)
    if diff.global_changes:
        reason = "the change reaches every item: " + "; ".join(diff.global_changes)
        population = list(rows)
    else:
        population = [r for r in rows if affected & set(_cited(r))]
        if population:
            mode = "cited"
            reason = "stored drafts cite changed principles " + ", ".join(sorted(affected))
        else:
            reason = "no stored draft cites " + ", ".join(sorted(affected)) + "; a sample"
            population = list(rows)
    if len(population) <= sample:
        return mode, reason, population, population
    picked = set(random.Random(seed).sample(range(len(population)), sample))
    return mode, reason, population, [r for i, r in enumerate(population) if i in picked]


def _label_options(run: RunInfo) -> LabelOptions:
    if run.params.get("critics"):
        raise UsageError(
            f"run {run.id} was labelled by a panel of critics ({', '.join(run.params['critics'])})"
            "; impact re-labels with one critic",
            hint="pass --run with a single-critic label run of the old version",
        )
    params = {k: v for k, v in run.params.items() if k not in ("fields", "critics")}
    try:
        return LabelOptions(**params)
    except (
        TypeError,
        ValueError,
        CriticError,
    ) as exc:  # pydantic's ValidationError is a ValueError
        raise StoreError(
            f"run {run.id}: its stored sampling options cannot be reused ({exc})",
            hint="label the data again with the old version in this critic version",
        ) from None


def _run_fields(run: RunInfo) -> Fields:
    """The input columns a label run read: stored with it when they were not the defaults."""
    stored = run.params.get("fields")
    if not stored:
        return Fields()
    try:
        return Fields(**stored)
    except TypeError as exc:
        raise StoreError(
            f"run {run.id}: its stored input fields cannot be read ({exc})",
            hint="pass --prompt-field/--response-field/--text-field as the old run was given",
        ) from None


async def aimpact(
    old: Constitution,
    new: Constitution,
    store: Store,
    backend: Backend,
    *,
    sample: int = 500,
    seed: int = 0,
    run_id: str | None = None,
    fields: Fields | None = None,
    prompts: str | Path | None = None,
    concurrency: int = 64,
    progress: Progress | None = None,
) -> ImpactReport:
    """Re-label with `new` only what the change from `old` can affect; count what flips.

    The old verdicts are the stored drafts of the old version's label run (never re-run). The new
    drafts are stored as a label run of the new version over the same input, so rerunning this
    resumes, and a later full `critic label` of that input with the same options resumes too.

    Args:
        sample: at most this many items are re-labeled (a seeded sample of the candidates).
        seed: the seed of that sample.
        run_id: the old version's run (default: its latest label run in the store).
        fields: the input columns the old run read (as `critic label --prompt-field ...` took);
            by default the ones stored with the old run.
        prompts: the prompt templates (the shipped ones by default; the old run's should match).
    """
    started = time.perf_counter()
    if sample < 1:
        raise UsageError("--sample must be at least 1")
    diff = diff_constitutions(old, new)
    if diff.identical:
        raise UsageError(f"the two versions are identical (hash {old.hash[:12]}): nothing can flip")
    if old.task.kind != new.task.kind:
        raise UsageError(
            f"impact compares label verdicts of one task kind; this change goes from "
            f"{old.task.kind} to {new.task.kind}",
            hint="label the data with the new version instead (critic label INPUT -c NEW)",
        )
    if new.task.kind not in LABEL_KINDS:
        raise UsageError(
            f"impact re-labels stored label runs (categorical or rubric), not {new.task.kind}",
            hint="run `critic constitution test` with cases for this constitution instead",
        )
    run = _old_run(store, old, run_id)
    options = _label_options(run)
    fields = fields or _run_fields(run)
    drafted = [r for r in store.rows(run.id) if r["status"] == "drafted"]
    if not drafted:
        raise StoreError(f"run {run.id} has no drafted items to compare with")
    mode, reason, population, chosen = _select(drafted, diff, sample, seed)
    missing = [r["item_id"] for r in chosen if any(n not in (r["row"] or {})
                                                    for n in fields.required)]  # fmt: skip
    if missing:
        raise InputError(
            f"run {run.id}: item '{missing[0]}' (and {len(missing) - 1} more) lack the input "
            f"field(s) {', '.join(fields.required)}",
            hint="pass the --prompt-field/--response-field/--text-field the old run was given",
        )
    templates = Templates.load(prompts)
    template_hash = templates.hash(LABEL_TEMPLATES)
    warnings = []
    if template_hash != run.template_hash:
        warnings.append("the prompt templates differ from the old run's: flips may come from them")
    if backend.model != run.model:
        warnings.append(f"the old run used model {run.model!r}, this one {backend.model!r}: "
                        "flips may come from the model")  # fmt: skip
    wanted = {r["item_id"] for r in chosen}
    try:
        # The new version's drafts are a label run over the old run's input: the same run as a
        # `critic label` of that input with the same options, so either resumes the other.
        opened = await open_run(
            store, backend, new, task="label", identity=label_identity(options, fields),
            template_hash=template_hash, input_name=run.input,
            records=[{"item_id": r["item_id"], "source": r["source"], "row": r["row"]}
                     for r in chosen],
            items={r["item_id"]: Item(r["item_id"], r["row"], r["source"], fields)
                   for r in chosen},
        )  # fmt: skip
        new_run, todo = opened.run, opened.todo
        labeler = Labeler(backend, new, templates, options)
        if progress:
            progress(0, len(todo))
        await run_items(labeler, store, new_run.id, todo, concurrency=concurrency,
                        progress=progress)  # fmt: skip
    finally:
        await backend.aclose()
    new_rows = {r["item_id"]: r for r in store.rows(new_run.id) if r["item_id"] in wanted}
    report = _compare_runs(old, new, diff, chosen, new_rows, fields)
    return ImpactReport(
        old={"id": old.id, "version": old.version, "hash": old.hash, "run_id": run.id},
        new={"id": new.id, "version": new.version, "hash": new.hash, "run_id": new_run.id},
        diff=diff, mode=mode, reason=reason, population=len(population), selected=len(chosen),
        seed=seed, relabeled=len(todo), reused=len(chosen), warnings=warnings,
        elapsed_s=time.perf_counter() - started, new_rows=new_rows, **report,
    )  # fmt: skip


def _compare_runs(
    old: Constitution,
    new: Constitution,
    diff: ConstitutionDiff,
    chosen: Sequence[dict[str, Any]],
    new_rows: Mapping[str, dict[str, Any]],
    fields: Fields,
) -> dict[str, Any]:
    kind = new.task.kind
    changed = set(diff.affected_principles) | set(diff.principles_added)
    flips: list[Flip] = []
    transitions: Counter[str] = Counter()
    per: dict[str, dict[str, Any]] = defaultdict(lambda: {"items": 0, "flipped": 0, "examples": []})
    compared = failed = 0
    for row in chosen:
        after = new_rows.get(row["item_id"])
        if after is None or after["status"] != "drafted":
            failed += 1
            continue
        compared += 1
        before_v = _verdict_of(kind, row["label"], row["score"])
        after_v = _verdict_of(kind, after["label"], after["score"])
        cited = sorted(set(_cited(row)) | set(_cited(after))) or ["(none)"]
        flip = None
        if before_v != after_v:
            transitions[f"{before_v} -> {after_v}"] += 1
            flip = Flip(
                row["item_id"], str(before_v), str(after_v), _cited(row), _cited(after),
                row.get("rationale"), after.get("rationale"), _snippet(row["row"], fields),
            )  # fmt: skip
            flips.append(flip)
        for p in cited:
            per[p]["items"] += 1
            if flip is not None:
                per[p]["flipped"] += 1
                per[p]["examples"].append(flip)
    order = [*old.principle_ids, *(p for p in new.principle_ids if p not in old.principle_ids)]
    by_principle = {}
    for p in sorted(per, key=lambda x: order.index(x) if x in order else len(order)):
        stats = per[p]
        by_principle[p] = {
            **stats,
            "flip_rate": stats["flipped"] / stats["items"] if stats["items"] else None,
            "changed": p in changed,
        }
    return {
        "compared": compared, "failed": failed, "flips": flips,
        "transitions": dict(transitions.most_common()), "by_principle": by_principle,
    }  # fmt: skip


def impact(
    old: Constitution, new: Constitution, store: Store, backend: Backend, **kwargs: Any
) -> ImpactReport:
    """`aimpact` for callers without an event loop."""
    return asyncio.run(aimpact(old, new, store, backend, **kwargs))


def enqueue_flips(db: str, queue: str, report: ImpactReport) -> int:
    """Send the flipped items (with the new draft and the old verdict) to a review queue."""
    from critic.review import enqueue_review

    rows = []
    for flip in report.flips:
        row = report.new_rows[flip.item_id]
        output = {
            **(row.get("output") or {}),
            "previous_verdict": flip.old,
            "previous_constitution": report.old["hash"],
            "previous_run_id": report.old["run_id"],
        }
        rows.append({**row, "output": output, "route_reason": "constitution_change"})
    return enqueue_review(db, queue, rows)


# -- stats from human decisions --------------------------------------------------------------

GAP_NOTE = re.compile(
    r"^\s*\[constitution gap\]|#(?:constitution[-_]?)?gap\b|^\s*(?:constitution[ -])?gap\s*:",
    re.I,
)
"""A note that flags a constitution gap: the review app's `[constitution gap] ` prefix (its
"flag a gap" key escalates with it), `#gap` or `#constitution-gap` anywhere, or `gap:` first."""


def is_gap_note(note: str | None) -> bool:
    """Whether a reviewer's note flags a gap in the constitution (see `GAP_NOTE`)."""
    return bool(note and GAP_NOTE.search(note))


def _note_key(note: str) -> str:
    return " ".join(GAP_NOTE.sub(" ", note).split()).strip(" :-").lower()


@dataclass(frozen=True)
class DecisionExample:
    queue: str
    item_id: str
    snippet: str
    critic_label: str | None
    action: str
    label: str | None
    reviewer: str
    note: str | None


@dataclass(frozen=True)
class PrincipleStats:
    """Human decisions on items citing one principle."""

    principle: str
    constitution: str | None
    text: str | None
    items: int
    decisions: int
    """Review decisions that accept, edit or reject (escalations are counted apart)."""
    overrides: int
    override_rate: float | None
    interval: tuple[float, float]
    actions: dict[str, int]
    escalations: int
    gap_flags: int
    agreement: float | None
    """Mean pairwise agreement among reviewers, over items with two or more reviews."""
    agreement_items: int
    alpha: float | None
    top_notes: tuple[tuple[str, int, bool], ...]
    """(note, count, flags a gap) among notes of overriding or gap-flagging decisions: gap
    flags first, then by frequency."""
    examples: tuple[DecisionExample, ...]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["interval"] = list(self.interval)
        out["top_notes"] = [{"note": n, "count": c, "gap": g} for n, c, g in self.top_notes]
        return out


@dataclass
class StatsReport:
    db: str
    queues: list[str]
    confidence: float
    overall: PrincipleStats
    principles: list[PrincipleStats]

    def to_dict(self) -> dict[str, Any]:
        return {
            "db": self.db,
            "queues": self.queues,
            "confidence": self.confidence,
            "overall": self.overall.to_dict(),
            "principles": [p.to_dict() for p in self.principles],
        }


def is_override(
    action: str, label: str | None, edit: Mapping[str, Any] | None, critic_label: str | None
) -> bool:
    """A review decision overturns the critic when it rejects the item, gives another label, or
    edits the draft's fields (an edit that only restates the critic's label does not count)."""
    return (
        action == "reject"
        or (label is not None and label != critic_label)
        or (action == "edit" and bool(edit))
    )


@dataclass
class _Tally:
    items: set[tuple[str, str]] = field(default_factory=set)
    decisions: int = 0
    overrides: int = 0
    actions: Counter[str] = field(default_factory=Counter)
    escalations: int = 0
    gaps: int = 0
    notes: Counter[str] = field(default_factory=Counter)
    gap_notes: set[str] = field(default_factory=set)
    examples: list[DecisionExample] = field(default_factory=list)
    ratings: dict[str, Mapping[str, str]] = field(default_factory=dict)


def decision_stats(
    db: str,
    *,
    queues: Sequence[str] = (),
    constitution: str | None = None,
    examples: int = 3,
    confidence: float = 0.95,
    top_notes: int = 5,
) -> StatsReport:
    """Per principle: how often humans overturn the critic (with an exact interval), reviewer
    agreement, the most frequent gap flags and notes, and example items.

    Args:
        db: the database holding the review queues (and the runs, for principle texts).
        queues: only these queues (default: all).
        constitution: only items drafted under this constitution id.
        examples: overridden items kept per principle.
        confidence: of the Clopper–Pearson interval on each override rate.
    """
    from adjudication.agreement import summarize
    from adjudication.store import open_store as open_queue_store
    from critic.store import open_store

    constitution_ids, texts = _constitution_index(open_store(db))
    qs = open_queue_store(db)
    try:
        names = [q.name for q in qs.queues()]
        for name in queues:
            if name not in names:
                qs.queue(name)  # the queue store's own error, with a did-you-mean hint
        chosen = list(queues) or names
        tallies: dict[tuple[str | None, str], _Tally] = defaultdict(_Tally)
        overall = _Tally()
        for name in chosen:
            tasks = {t.item_id: t for t in qs.tasks(name)}
            ratings = qs.ratings(name)
            for d in qs.decisions(name):
                task = tasks[d.item_id]
                cid = constitution_ids.get(str(task.draft.get("constitution") or ""))
                if constitution is not None and cid != constitution:
                    continue
                groups = [(cid, p) for p in task.principle_ids] or [(cid, "(none)")]
                for tally in [overall, *(tallies[g] for g in groups)]:
                    _count(tally, name, task, d)
                    if d.item_id in ratings:
                        tally.ratings[f"{name}\x1f{d.item_id}"] = ratings[d.item_id]
    finally:
        qs.close()
    alpha = round(1.0 - confidence, 12)  # 1 - 0.95 is 0.05000000000000004 in floating point

    def build(key: tuple[str | None, str], t: _Tally) -> PrincipleStats:
        cid, pid = key
        agreement = summarize(t.ratings)
        return PrincipleStats(
            principle=pid,
            constitution=cid,
            text=texts.get(cid or "", {}).get(pid),
            items=len(t.items),
            decisions=t.decisions,
            overrides=t.overrides,
            override_rate=t.overrides / t.decisions if t.decisions else None,
            interval=clopper_pearson(t.overrides, t.decisions, alpha),
            actions=dict(t.actions),
            escalations=t.escalations,
            gap_flags=t.gaps,
            agreement=agreement.percent,
            agreement_items=agreement.items,
            alpha=agreement.alpha_nominal,
            top_notes=tuple((n, c, n in t.gap_notes) for n, c in _top_notes(t, top_notes)),
            examples=tuple(t.examples[:examples]),
        )

    principles = [build(k, t) for k, t in tallies.items()]
    # The lower end of the interval first: a principle needs evidence to rank as overturned.
    principles.sort(key=lambda p: (-p.interval[0], -(p.override_rate or 0), p.principle))
    return StatsReport(
        db=db,
        queues=chosen,
        confidence=confidence,
        overall=build((None, "all"), overall),
        principles=principles,
    )


def _top_notes(tally: _Tally, n: int) -> list[tuple[str, int]]:
    """Gap-flagging notes first, then the most frequent."""
    ranked = sorted(tally.notes.items(), key=lambda kv: (kv[0] not in tally.gap_notes, -kv[1]))
    return ranked[:n]


def _count(tally: _Tally, queue: str, task: Any, d: Any) -> None:
    if d.kind != "review":
        return
    tally.items.add((queue, d.item_id))
    gap = is_gap_note(d.note)
    tally.gaps += gap
    if d.action == "escalate":
        tally.escalations += 1
        overridden = False
    else:
        tally.decisions += 1
        tally.actions[d.action] += 1
        overridden = is_override(d.action, d.label, d.edit, task.draft_label)
        tally.overrides += overridden
        if overridden:
            example = DecisionExample(
                queue, d.item_id, _snippet(task.item), task.draft_label, d.action, d.label,
                d.reviewer, d.note,
            )  # fmt: skip
            if all((e.queue, e.item_id) != (queue, d.item_id) for e in tally.examples):
                tally.examples.append(example)
    if d.note and (overridden or gap):
        key = _note_key(d.note)
        if key:
            tally.notes[key] += 1
            if gap:
                tally.gap_notes.add(key)


def _constitution_index(store: Store) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """Stored versions: constitution id by hash, and each id's principle texts (newest wins)."""
    ids: dict[str, str] = {}
    texts: dict[str, dict[str, str]] = defaultdict(dict)
    for run in store.runs():
        digest = run.constitution_hash
        if digest in ids:
            continue
        try:
            c = parse_constitution(store.constitution_content(digest) or "", source=digest)
        except (ConstitutionError, yaml.YAMLError):
            continue
        ids[digest] = c.id
        texts[c.id].update({p.id: p.text for p in c.principles})
    return ids, dict(texts)


# -- the HTML report -------------------------------------------------------------------------


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def render_stats_html(report: StatsReport, plots: Sequence[str] = ()) -> str:
    """A static page: every value escaped (item text and notes are untrusted), no scripts."""
    level = f"{report.confidence:.0%}"
    rows = []
    for p in report.principles:
        lo, hi = p.interval
        notes = "".join(f"<li>{_e(n)} ×{c}{' <b>gap</b>' if g else ''}</li>"
                        for n, c, g in p.top_notes)  # fmt: skip
        name = f"{_e(p.constitution)}:{_e(p.principle)}" if p.constitution else _e(p.principle)
        rows.append(
            f"<tr><td><b>{name}</b><div class=t>{_e(p.text)}</div></td><td>{p.decisions}</td>"
            f"<td>{_pct(p.override_rate)} <span class=ci>[{_pct(lo)}, {_pct(hi)}]</span></td>"
            f"<td>{_pct(p.agreement)} <span class=ci>({p.agreement_items} items)</span></td>"
            f"<td>{p.escalations}</td><td>{p.gap_flags}</td><td><ul>{notes}</ul></td></tr>"
        )
    examples = []
    for p in report.principles:
        for ex in p.examples:
            examples.append(
                f"<tr><td>{_e(p.principle)}</td><td>{_e(ex.queue)} / {_e(ex.item_id)}</td>"
                f"<td><pre>{_e(ex.snippet)}</pre></td><td>{_e(ex.critic_label)}</td>"
                f"<td>{_e(ex.action)} {_e(ex.label)}</td><td>{_e(ex.reviewer)}</td>"
                f"<td>{_e(ex.note)}</td></tr>"
            )
    images = "".join(f'<p><img src="{_e(name)}" alt="{_e(name)}"></p>' for name in plots)
    o = report.overall
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy"
 content="default-src 'none'; img-src 'self'; style-src 'unsafe-inline'">
<title>critic constitution stats</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; vertical-align: top; text-align: left; }}
.t, .ci {{ color: #666; font-size: 12px; }} pre {{ white-space: pre-wrap; margin: 0; }}
ul {{ margin: 0; padding-left: 1.2em; }}
</style></head><body>
<h1>What humans overturn, by principle</h1>
<p>Database {_e(report.db)}; queues: {_e(", ".join(report.queues) or "none")}.
{o.decisions} review decisions on {o.items} items; the critic was overturned in
{_pct(o.override_rate)} [{_pct(o.interval[0])}, {_pct(o.interval[1])}] of them.
Intervals are exact ({_e(level)}, Clopper–Pearson); principles are sorted by the lower end.</p>
{images}
<table><tr><th>principle</th><th>decisions</th><th>overturned [{_e(level)}]</th>
<th>reviewer agreement</th><th>escalated</th><th>gap flags</th><th>frequent notes</th></tr>
{"".join(rows)}</table>
<h2>Examples of overturned drafts</h2>
<table><tr><th>principle</th><th>item</th><th>text</th><th>critic</th><th>human</th>
<th>reviewer</th><th>note</th></tr>
{"".join(examples)}</table>
</body></html>
"""


def write_stats_html(report: StatsReport, directory: str | Path) -> Path:
    """Write `index.html` and its PNG plots into `directory`; return the page's path."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingExtraError("--html", "matplotlib", "pip install 'critic[plot]'") from None
    out = Path(directory)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CriticError(f"{out}: cannot create the report directory: {exc.strerror}") from None
    shown = [p for p in report.principles if p.decisions]
    names = [f"{p.constitution}:{p.principle}" if p.constitution else p.principle for p in shown]
    plots: list[str] = []
    if shown:
        height = 1.2 + 0.35 * len(shown)
        fig = Figure(figsize=(8, height), layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.subplots()
        rates = [p.override_rate or 0.0 for p in shown]
        errors = [[r - p.interval[0] for r, p in zip(rates, shown, strict=True)],
                  [p.interval[1] - r for r, p in zip(rates, shown, strict=True)]]  # fmt: skip
        ax.barh(range(len(shown)), rates, xerr=errors, color="C3", capsize=3)
        ax.set_yticks(range(len(shown)), names)
        ax.invert_yaxis()
        ax.set(xlim=(0, 1), xlabel=f"override rate ({report.confidence:.0%} interval)",
               title="How often humans overturn the critic")  # fmt: skip
        _save(fig, out / "override_rate.png")
        plots.append("override_rate.png")

        fig = Figure(figsize=(8, height), layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.subplots()
        left = [0.0] * len(shown)
        for i, action in enumerate(("accept", "edit", "reject")):
            counts = [float(p.actions.get(action, 0)) for p in shown]
            ax.barh(range(len(shown)), counts, left=left, label=action, color=f"C{i}")
            left = [a + b for a, b in zip(left, counts, strict=True)]
        esc = [float(p.escalations) for p in shown]
        ax.barh(range(len(shown)), esc, left=left, label="escalate", color="C7")
        ax.set_yticks(range(len(shown)), names)
        ax.invert_yaxis()
        ax.set(xlabel="review decisions", title="Decisions per principle")
        ax.legend(loc="lower right", fontsize=8)
        _save(fig, out / "actions.png")
        plots.append("actions.png")
    page = out / "index.html"
    page.write_text(render_stats_html(report, plots), encoding="utf-8")
    return page


def _save(fig: Any, path: Path) -> None:
    try:
        fig.savefig(path, dpi=110)
    except OSError as exc:
        raise CriticError(f"{path}: cannot write the plot: {exc.strerror}") from None


__all__ = [
    "Case",
    "CaseFile",
    "CaseReport",
    "CaseResult",
    "ConstitutionDiff",
    "Expect",
    "FieldChange",
    "Flip",
    "ImpactReport",
    "PrincipleChange",
    "PrincipleStats",
    "StatsReport",
    "aimpact",
    "arun_cases",
    "cases_path",
    "check_cases",
    "decision_stats",
    "diff_constitutions",
    "enqueue_flips",
    "impact",
    "is_gap_note",
    "is_override",
    "load_cases",
    "load_version",
    "render_stats_html",
    "render_word_diff",
    "run_cases",
    "word_diff",
    "write_stats_html",
]
