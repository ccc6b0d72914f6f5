"""The label task: items in, one validated, provenance-carrying draft (or recorded failure) each.

dataset -> items -> render -> backend -> parse + validate (re-ask on failure) -> confidence -> store
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, is_dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel

from critic import confidence as conf
from critic.backends.base import Backend, Generation, Request
from critic.constitution import Constitution
from critic.errors import UsageError
from critic.items import BadRow, Fields, Item, load_items
from critic.parsing import Parsed, parse
from critic.render import (
    LABEL_TEMPLATES,
    Templates,
    render_label_system,
    render_label_user,
    render_reask,
)
from critic.schemas import json_schema, label_model
from critic.store import Outcome, RunInfo, Store, now

Progress = Callable[[int, int], None]


class Drafter(Protocol):
    """Anything that turns one item into an outcome: the label, revise and compare tasks."""

    async def draft(self, item: Item) -> Outcome: ...


@dataclass(frozen=True)
class LabelOptions:
    """How to sample and how hard to try. Everything here is part of the run's identity."""

    max_tokens: int = 512
    temperature: float = 0.0
    samples: int = 1
    top_logprobs: int | None = None
    max_reasks: int = 2
    seed: int | None = 0

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise UsageError("--samples must be at least 1")
        if self.max_reasks < 0:
            raise UsageError("--max-reasks cannot be negative")
        if self.top_logprobs is not None and not 1 <= self.top_logprobs <= 20:
            raise UsageError("--logprobs takes a number of alternatives from 1 to 20")
        if self.samples > 1 and self.temperature == 0:
            raise UsageError(
                "--samples > 1 needs a temperature above 0 (vLLM rejects n > 1 with greedy "
                "sampling, and greedy samples would all agree anyway)",
                hint="add --temperature 1.0",
            )
        if self.max_tokens < 16:
            raise UsageError("--max-tokens must be at least 16 for a JSON answer")


@dataclass
class RunSummary:
    """What a run did, for the closing table and for `--json`."""

    run_id: str
    db: str
    constitution: str
    constitution_hash: str
    backend: str
    model: str
    items: int
    drafted: int
    failed: int
    pending: int
    already_done: int
    processed: int
    labels: dict[str, int]
    failures: dict[str, int]
    prompt_tokens: int
    completion_tokens: int
    requests: int
    elapsed_s: float
    bad_rows: list[str] = field(default_factory=list)

    @property
    def items_per_s(self) -> float:
        return self.processed / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "items_per_s": round(self.items_per_s, 3)}


def _identity(options: Any) -> dict[str, Any]:
    if is_dataclass(options) and not isinstance(options, type):
        return asdict(options)
    return dict(options)


def label_identity(
    options: LabelOptions, fields: Fields | None = None, critics: Sequence[Backend] = ()
) -> dict[str, Any]:
    """A label run's own part of its identity (see `run_key`), as stored in its `params`.

    The sampling options; the input columns, when they are not the default prompt/response (so
    labelling another column of the same file is another run, and `constitution diff --impact`
    can read the columns back; default-column runs keep the keys they always had); the panel.
    """
    identity = asdict(options)
    if fields is not None and fields != Fields():
        identity["fields"] = asdict(fields)
    if critics:
        identity["critics"] = [f"{b.name}:{b.model}" for b in critics]
    return identity


def run_key(
    task: str,
    constitution_hash: str,
    template_hash: str,
    backend: str,
    model: str,
    options: Any,
    source: str,
) -> str:
    """The identity of a run: the same command gives the same key, and so resumes.

    `options` is the task's options dataclass (or a dict): everything that changes outputs.
    """
    blob = json.dumps(
        [task, constitution_hash, template_hash, backend, model, _identity(options), source],
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def source_name(source: str | Path) -> str:
    path = Path(source)
    return str(path.resolve()) if path.exists() else str(source)


def generation_record(gen: Generation, stage: str, attempt: int) -> dict[str, Any]:
    logprobs = None
    if any(s.logprobs for s in gen.samples):
        logprobs = json.dumps(
            [
                [[t.token, round(t.logprob, 5), t.top] for t in s.logprobs] if s.logprobs else None
                for s in gen.samples
            ],
            ensure_ascii=False,
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


def _verdict_key(constitution: Constitution) -> str:
    return "score" if constitution.task.kind == "rubric" else "label"


def build_outcome(
    item_id: str,
    constitution: Constitution,
    samples: Sequence[tuple[Parsed, Any]],
    attempts: int,
    generations: tuple[dict[str, Any], ...],
) -> Outcome:
    """The draft for one item from its valid samples: majority verdict, confidence components."""
    key = _verdict_key(constitution)
    verdicts = [p.value[key] for p, _ in samples if p.value is not None]
    chosen = Counter(verdicts).most_common(1)[0][0]
    parsed = next(p for p, _ in samples if p.value and p.value[key] == chosen)
    assert parsed.value is not None
    options = [
        str(o) for o in (constitution.scores if key == "score" else constitution.label_names)
    ]
    # Label-token probabilities, averaged over the valid samples that returned logprobs.
    per_sample = []
    for _, s in samples:
        offset = conf.value_offset(s.text, key) if s.logprobs else None
        if offset is not None:
            found = conf.label_distribution(s.logprobs, offset, options)
            if found is not None:
                per_sample.append(found)
    distribution = conf.average_distributions(per_sample) if per_sample else None
    components = conf.ConfidenceComponents(
        label_prob=None if distribution is None else distribution.get(str(chosen), 0.0),
        sample_share=verdicts.count(chosen) / len(verdicts),
        n_samples=len(verdicts),
        parse_retries=attempts - 1,
    )
    draft = dict(parsed.value)
    if distribution is not None:
        draft[f"{key}_distribution"] = distribution
        if key == "score":
            draft["expected_score"] = conf.expected_score(distribution)
    return Outcome(
        item_id=item_id,
        status="drafted",
        draft=draft,
        label=str(chosen) if key == "label" else None,
        score=float(chosen) if key == "score" else None,
        rationale=parsed.value.get("rationale"),
        confidence=conf.combine(components),
        components=components.to_dict(),
        parse_attempts=attempts,
        generations=generations,
    )


class Labeler:
    """Drafts one item at a time; many run concurrently against one backend."""

    def __init__(
        self,
        backend: Backend,
        constitution: Constitution,
        templates: Templates,
        options: LabelOptions,
    ) -> None:
        self.backend = backend
        self.constitution = constitution
        self.templates = templates
        self.options = options
        self.model: type[BaseModel] = label_model(constitution)
        self.schema = json_schema(self.model)
        # Rendered once: the shared prefix is the same for every item (and cached by vLLM).
        self.system = render_label_system(templates, constitution)

    def request(self, item: Item) -> Request:
        return Request(
            messages=(self.system, render_label_user(self.templates, item)),
            json_schema=self.schema,
            max_tokens=self.options.max_tokens,
            temperature=self.options.temperature,
            n=self.options.samples,
            top_logprobs=self.options.top_logprobs,
            seed=self.options.seed,
        )

    async def draft(self, item: Item) -> Outcome:
        request = self.request(item)
        records: list[dict[str, Any]] = []
        last: Parsed | None = None
        for attempt in range(self.options.max_reasks + 1):
            generation = (await self.backend.generate([request]))[0]
            records.append(generation_record(generation, "label", attempt))
            if generation.error is not None:
                return Outcome(
                    item.id, "failed", generation.error_kind or "backend_error",
                    generation.error, generations=tuple(records),
                )  # fmt: skip
            results = [(parse(s.text, self.model, s.finish_reason), s) for s in generation.samples]
            good = [(p, s) for p, s in results if p.ok]
            if good:
                return build_outcome(item.id, self.constitution, good, attempt + 1, tuple(records))
            last, sample = results[0] if results else (Parsed(None, "no answer", "empty"), None)
            reask = render_reask(self.templates, last.error or "invalid answer")
            request = replace(
                request,
                messages=(
                    *request.messages,
                    {"role": "assistant", "content": sample.text if sample else ""},
                    {"role": "user", "content": reask},
                ),
            )
        reason = "truncated" if last is not None and last.kind == "truncated" else "parse_failure"
        return Outcome(
            item.id, "failed", reason, last.error if last else None,
            parse_attempts=self.options.max_reasks + 1, generations=tuple(records),
        )  # fmt: skip


class Panel:
    """Several critic models label each item; the draft is the primary critic's.

    Every critic's verdict is kept in the draft (`critics`), and the share of critics that agree
    with the majority becomes the `critic_agreement` component, so disagreement lowers the
    confidence and routing can send the item to review (`critics_disagree`).
    """

    def __init__(self, labelers: Sequence[Labeler]) -> None:
        if len(labelers) < 2:
            raise UsageError("a panel needs at least two critics")
        self.labelers = list(labelers)

    async def draft(self, item: Item) -> Outcome:
        outcomes = await asyncio.gather(*(lab.draft(item) for lab in self.labelers))
        primary = outcomes[0]
        generations = tuple(g for o in outcomes for g in o.generations)
        if primary.status != "drafted" or primary.draft is None:
            return replace(primary, generations=generations)
        verdicts = [
            None if o.draft is None else o.label or (None if o.score is None else str(o.score))
            for o in outcomes
        ]
        _, share = conf.critic_agreement(verdicts)
        components = conf.ConfidenceComponents.from_dict(
            {**(primary.components or {}), "critic_agreement": share}
        )
        critics = [
            {"model": lab.backend.model, "verdict": v, "confidence": o.confidence}
            for lab, o, v in zip(self.labelers, outcomes, verdicts, strict=True)
        ]
        return replace(
            primary,
            draft={**primary.draft, "critics": critics},
            confidence=conf.combine(components),
            components=components.to_dict(),
            generations=generations,
        )


async def run_items(
    labeler: Drafter,
    store: Store,
    run_id: str,
    todo: Sequence[Item],
    *,
    concurrency: int,
    progress: Progress | None = None,
    flush_every: int = 64,
    flush_seconds: float = 0.5,
) -> int:
    """Draft `todo` with `concurrency` items in flight, writing outcomes in small batches.

    Returns the number of items whose outcome was stored.
    """
    queue: asyncio.Queue[Item] = asyncio.Queue()
    for item in todo:
        queue.put_nowait(item)
    pending: list[Outcome] = []
    done = 0
    last_flush = time.monotonic()

    def flush() -> None:
        nonlocal done, last_flush, pending
        if pending:
            store.record(run_id, pending)
            done += len(pending)
            pending = []
        last_flush = time.monotonic()
        if progress:
            progress(done, len(todo))

    async def worker() -> None:
        while True:
            try:
                item = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            outcome = await labeler.draft(item)  # not `pending.append(await ...)`: flush rebinds
            pending.append(outcome)
            if len(pending) >= flush_every or time.monotonic() - last_flush > flush_seconds:
                flush()

    workers = [asyncio.create_task(worker()) for _ in range(max(1, min(concurrency, len(todo))))]
    try:
        await asyncio.gather(*workers)
    finally:
        for w in workers:
            w.cancel()
        # Whatever finished is kept, even when the run is interrupted or the backend is lost.
        flush()
    return done


def label(
    source: str | Path, constitution: Constitution, backend: Backend, store: Store, **kwargs: Any
) -> RunSummary:
    """Label every item of `source` against `constitution`; resume what is already stored.

    Keyword arguments are those of `alabel`.
    """
    return asyncio.run(alabel(source, constitution, backend, store, **kwargs))


async def alabel(
    source: str | Path,
    constitution: Constitution,
    backend: Backend,
    store: Store,
    *,
    fields: Fields | None = None,
    options: LabelOptions | None = None,
    prompts: str | Path | None = None,
    split: str | None = None,
    retry_failed: bool = False,
    concurrency: int = 64,
    limit: int | None = None,
    progress: Progress | None = None,
    on_bad_row: Callable[[BadRow], None] | None = None,
    critics: Sequence[Backend] = (),
) -> RunSummary:
    """The async form of `label`, for callers that already run an event loop.

    `critics` are further critic models: with them, each item is labelled by a panel (see
    `Panel`) and their agreement becomes part of the confidence.
    """
    options = options or LabelOptions()
    if constitution.task.kind not in ("categorical", "rubric"):
        raise UsageError(
            f"constitution '{constitution.id}' drives a {constitution.task.kind} task, "
            "which `critic label` does not run",
            hint="use a categorical or rubric constitution, e.g. harmlessness or helpfulness",
        )
    templates = Templates.load(prompts)
    primary = Labeler(backend, constitution, templates, options)
    drafter: Drafter = primary
    identity = label_identity(options, fields, critics)
    if critics:
        drafter = Panel([primary, *(Labeler(b, constitution, templates, options) for b in critics)])
    try:
        return await execute_run(
            "label", identity, drafter, templates.hash(LABEL_TEMPLATES), source,
            constitution, backend, store, fields=fields, split=split,
            retry_failed=retry_failed, concurrency=concurrency, limit=limit, progress=progress,
            on_bad_row=on_bad_row,
        )  # fmt: skip
    finally:
        for extra in critics:
            await extra.aclose()


async def execute_run(
    task: str,
    options: Any,
    drafter: Drafter,
    template_hash: str,
    source: str | Path,
    constitution: Constitution,
    backend: Backend,
    store: Store,
    *,
    fields: Fields | None = None,
    split: str | None = None,
    retry_failed: bool = False,
    concurrency: int = 64,
    limit: int | None = None,
    progress: Progress | None = None,
    on_bad_row: Callable[[BadRow], None] | None = None,
) -> RunSummary:
    """Run any task over a dataset: read items, find or create its run, draft what is pending.

    Every task (label, revise, compare) goes through here, so they resume, record bad rows and
    summarise alike. `options` (a dataclass or dict) is part of the run's identity.
    """
    started = time.perf_counter()
    good: dict[str, Item] = {}
    records: list[dict[str, Any]] = []
    bad_rows: list[str] = []
    for entry in load_items(source, fields, split=split):
        if limit is not None and len(records) >= limit:
            break
        if isinstance(entry, BadRow):
            bad_rows.append(str(entry))
            if on_bad_row:
                on_bad_row(entry)
            records.append(
                {
                    "item_id": entry.id, "source": entry.source, "row": entry.row,
                    "status": "failed", "reason": "invalid_input", "detail": entry.reason,
                }
            )  # fmt: skip
        else:
            good[entry.id] = entry
            records.append({"item_id": entry.id, "source": entry.source, "row": dict(entry.row)})
    try:
        check = getattr(backend, "check", None)
        if check is not None:
            await check()  # unreachable server or unknown model: fail before anything is stored
        constitution_hash = store.save_constitution(constitution)
        name = source_name(source)
        key = run_key(
            task, constitution_hash, template_hash, backend.name, backend.model, options, name
        )
        run, _ = store.ensure_run(
            RunInfo(
                id=key[:12], key=key, task=task, constitution_hash=constitution_hash,
                template_hash=template_hash, backend=backend.name, model=backend.model,
                params=_identity(options),
                input=name, created_at=now(),
            )
        )  # fmt: skip

        store.add_items(run.id, records)
        if retry_failed:
            store.reset_failed(run.id)
        pending_ids = store.item_ids(run.id, ["pending"])
        todo = [good[i] for i in pending_ids if i in good]
        already = len(records) - len(todo) - len(bad_rows)
        if progress:
            progress(0, len(todo))
        processed = await run_items(
            drafter, store, run.id, todo, concurrency=concurrency, progress=progress
        )
    finally:
        await backend.aclose()
    counts = store.counts(run.id)
    return RunSummary(
        run_id=run.id,
        db=store.url,
        constitution=constitution.id,
        constitution_hash=constitution_hash,
        backend=backend.name,
        model=backend.model,
        items=sum(counts["statuses"].values()),
        drafted=counts["statuses"].get("drafted", 0),
        failed=counts["statuses"].get("failed", 0),
        pending=counts["statuses"].get("pending", 0),
        already_done=max(0, already),
        processed=processed,
        labels=counts["labels"],
        failures=counts["failures"],
        prompt_tokens=counts["prompt_tokens"],
        completion_tokens=counts["completion_tokens"],
        requests=counts["requests"],
        elapsed_s=time.perf_counter() - started,
        bad_rows=bad_rows,
    )
