"""What every task shares: the one ask-and-re-ask loop, the registry entry, principle sampling.

A task says how one item becomes an outcome (its `Drafter`) and what part of a run's identity it
adds; the engine (`critic.runs`) does everything around that.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from critic.backends.base import Backend, Generation, Message, Request, Sample
from critic.config import InputSpec, RunControl
from critic.constitution import Constitution, Principle
from critic.errors import UsageError
from critic.items import Fields, check_fields
from critic.parsing import Parsed, parse
from critic.render import Templates, assistant_turn, render_reask
from critic.runs import Drafter, OnBadRow, Progress, RunSummary, execute_run
from critic.store import Store


class Output(BaseModel):
    """Base of the models a critic writes: unknown keys are errors the re-ask names."""

    model_config = ConfigDict(extra="forbid")


def literal(values: Sequence[Any]) -> Any:
    """`Literal[values...]`, for output fields whose values come from the constitution."""
    return Literal[tuple(values)]


def user_turn(content: str) -> Message:
    return {"role": "user", "content": content}


#: One encoder for the hot path (json.dumps with options builds a new one per call).
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def generation_record(gen: Generation, stage: str, attempt: int) -> dict[str, Any]:
    """One generation as the run store keeps it (texts, logprobs, usage, latency, error).

    Logprobs are kept as each sample's generated tokens' log probabilities, in order (the
    tokens' text is the sample's text). The top-k alternatives at every position are not
    stored: writing them cost about 1 ms of CPU per 200 tokens, more than the rest of a
    request's handling, and the label distribution the confidence read from them is stored
    with the draft (its components, a rubric's `score_distribution`, a pair's judgments)."""
    logprobs = None
    if any(s.logprobs for s in gen.samples):
        logprobs = _dumps(
            [[t.logprob for t in s.logprobs] if s.logprobs else None for s in gen.samples]
        )
    return {
        "stage": stage,
        "attempt": attempt,
        "texts": json.dumps([s.text for s in gen.samples], ensure_ascii=False),
        "finish_reasons": json.dumps([s.finish_reason for s in gen.samples]),
        "logprobs": logprobs,
        "prompt_tokens": gen.prompt_tokens,
        "completion_tokens": gen.completion_tokens,
        "latency_s": gen.latency_s,
        "error": gen.error,
    }


@dataclass
class Answer:
    """Validated answers (or why there is none) and the conversation that produced them."""

    value: dict[str, Any] | None  # the first valid sample's answer
    sample: Sample | None
    conversation: tuple[Message, ...]  # the request's messages plus the answer, when there is one
    attempts: int
    records: list[dict[str, Any]]
    reason: str | None = None  # failure reason when value is None
    detail: str | None = None
    unresolved: str | None = None  # a `check` problem still there after the last re-ask
    valid: tuple[tuple[Parsed, Sample], ...] = ()  # every valid sample (n > 1), in order
    backend_failed: bool = False  # the backend returned an error: nothing was parsed


async def ask(
    backend: Backend,
    request: Request,
    model: type[BaseModel],
    templates: Templates,
    *,
    max_reasks: int,
    stage: str,
    check: Callable[[dict[str, Any]], str | None] | None = None,
) -> Answer:
    """Send `request`; re-ask with the error until an answer validates and passes `check`.

    With several samples (`n`), every sample that validates counts; the re-ask quotes the first
    sample. When an answer validates but `check` still objects after the last re-ask, that
    answer is returned with `unresolved` set: the caller records the problem rather than losing
    the item.
    """
    records: list[dict[str, Any]] = []
    fallback: Answer | None = None
    last = Parsed(None, "no answer", "empty")
    for attempt in range(max_reasks + 1):
        generation = (await backend.generate([request]))[0]
        records.append(generation_record(generation, stage, attempt))
        if generation.error is not None:
            return Answer(
                None, None, request.messages, attempt + 1, records,
                generation.error_kind or "backend_error", generation.error, backend_failed=True,
            )  # fmt: skip
        results = [(parse(s.text, model, s.finish_reason), s) for s in generation.samples]
        good = [(p, s) for p, s in results if p.value is not None]
        problems = [check(p.value) if check and p.value is not None else None for p, _ in good]
        passed = tuple(
            (p, s) for (p, s), problem in zip(good, problems, strict=True) if not problem
        )
        sample = results[0][1] if results else None
        said = assistant_turn(sample.text if sample else "")
        if passed:
            first, chosen = passed[0]
            conversation = (*request.messages, assistant_turn(chosen.text))
            assert first.value is not None
            return Answer(first.value, chosen, conversation, attempt + 1, records, valid=passed)
        last = results[0][0] if results else Parsed(None, "no answer", "empty")
        if good:
            (parsed, kept), problem = good[0], problems[0]
            assert parsed.value is not None
            kept_said = assistant_turn(kept.text)
            fallback = Answer(
                parsed.value, kept, (*request.messages, kept_said), attempt + 1, records,
                unresolved=problem, valid=((parsed, kept),),
            )  # fmt: skip
            last = Parsed(None, problem, "schema")
        reask = user_turn(render_reask(templates, last.error or "invalid answer"))
        request = replace(request, messages=(*request.messages, said, reask))
    if fallback is not None:
        return replace(fallback, attempts=max_reasks + 1, records=records)
    reason = "truncated" if last.kind == "truncated" else "parse_failure"
    return Answer(None, None, request.messages, max_reasks + 1, records, reason, last.error)


def sample_principles(
    principles: Sequence[Principle], k: int, seed: int | None, item_id: str
) -> list[Principle]:
    """`k` principles for one item, seeded by the run seed and the item id (reproducible, and
    independent of input order). Without replacement until every principle has been used."""
    rng = random.Random(f"{seed}:{item_id}")
    chosen: list[Principle] = []
    while len(chosen) < k:
        chosen.extend(rng.sample(list(principles), min(len(principles), k - len(chosen))))
    return chosen


def options_and_fields(options: Any, fields: Fields, critics: Sequence[Backend]) -> dict[str, Any]:
    """A task's part of its run's identity: its options and the input columns it reads."""
    return {**asdict(options), "fields": asdict(fields)}


@dataclass(frozen=True)
class Task:
    """One entry of the task registry (`critic.tasks.TASKS`).

    Attributes:
        name: the task's name, stored with each run (`label`, `revise`, `compare`).
        templates: the prompt templates whose content is part of the run's identity.
        options: the task's options model; `options()` gives its defaults.
        prepare: checks the constitution fits the task and returns the input columns to read.
        identity: the task's part of the run's identity, from its options, columns and panel.
        drafter: builds the drafter of one run (renders the shared system prompt once).
    """

    name: str
    templates: tuple[str, ...]
    options: Callable[[], Any]
    prepare: Callable[[Constitution, Fields | None], Fields]
    identity: Callable[[Any, Fields, Sequence[Backend]], dict[str, Any]]
    drafter: Callable[[Backend, Constitution, Templates, Any, Sequence[Backend]], Drafter]


def prepare_run(
    task: Task,
    constitution: Constitution,
    input: InputSpec,
    critics: Sequence[object] = (),
    *,
    source: str | Path | None = None,
) -> tuple[InputSpec, Fields, Templates]:
    """Check that a run's arguments fit `task` (a panel only for label, the constitution's
    fields, columns that `source`'s first rows have: see `check_fields`); return the input with
    its resolved fields, those fields, and a snapshot of the run's templates. Nothing is stored
    yet, so a wrong column name leaves no run behind."""
    if critics and task.name != "label":
        raise UsageError(f"{task.name} runs one critic model; a panel is for label runs")
    fields = task.prepare(constitution, input.fields)
    if source is not None:
        check_fields(source, fields, split=input.split, limit=input.limit,
                     max_line_bytes=input.max_line_bytes)  # fmt: skip
    # Read once, now: the run renders exactly what its template hash covers, even a template
    # (a re-ask's) first used hours in, after an edit on disk.
    return replace(input, fields=fields), fields, Templates.load(input.prompts).snapshot()


async def arun_task(
    task: Task,
    source: str | Path,
    constitution: Constitution,
    backend: Backend,
    store: Store,
    *,
    options: Any = None,
    critics: Sequence[Backend] = (),
    input: InputSpec | None = None,
    control: RunControl | None = None,
    progress: Progress | None = None,
    on_bad_row: OnBadRow | None = None,
) -> RunSummary:
    """Run `task` over `source`: check the constitution fits, build the drafter, run the engine.

    `critics` (the label task's panel) are closed when the run ends, as `backend` is.
    """
    input = input or InputSpec()
    opts = options or task.options()
    try:
        input, fields, templates = prepare_run(task, constitution, input, critics, source=source)
        drafter = task.drafter(backend, constitution, templates, opts, critics)  # renders first
        return await execute_run(
            task.name, task.identity(opts, fields, critics), drafter,
            templates.hash(task.templates), source, constitution, backend, store,
            input=input, control=control, progress=progress, on_bad_row=on_bad_row,
        )  # fmt: skip
    finally:
        for extra in critics:
            await extra.aclose()
