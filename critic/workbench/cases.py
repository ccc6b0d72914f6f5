"""Regression cases: a constitution's `NAME.cases.yaml`, checked and run through a backend.

Categorical and rubric cases go through the label task; pairwise cases through the compare task
(both orders), judged under the principle the case is tagged with.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
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
from critic.constitution import (
    ID_PATTERN,
    Constitution,
    Problem,
    field_path,
    line_index,
    resolve,
)
from critic.errors import (
    ConstitutionError,
    UsageError,
)
from critic.items import Fields, Item
from critic.render import Templates
from critic.runs import Drafter, Progress
from critic.store import Outcome, verdict
from critic.tasks.label import Labeler, LabelOptions
from critic.workbench.common import LABEL_KINDS


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
    lines = line_index(text)
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
            problems.append(Problem(str(path), field_path(loc), err["msg"], None, line))
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
    got = verdict(outcome.label, outcome.score)
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
