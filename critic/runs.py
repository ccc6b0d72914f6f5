"""The run engine every task uses: read items, find or create the run, draft what is pending.

A run's identity (`run_key`) is everything that decides its outputs, so the same command finds
the same run and resumes it; outcomes are written in small batches as they finish, so a killed
run loses at most the batch in flight. The tasks (`critic.tasks`) say how one item is drafted;
everything around that is here.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ParamSpec, Protocol, TypedDict, TypeVar

from critic.backends.base import Backend, ServerBacked
from critic.config import InputSpec, RunControl
from critic.constitution import Constitution
from critic.items import BadRow, Fields, Item, load_items
from critic.store import Outcome, RunInfo, Store, now

Progress = Callable[[int, int], None]
OnBadRow = Callable[[BadRow], None]
P = ParamSpec("P")
T = TypeVar("T")


def synchronous(fn: Callable[P, Coroutine[Any, Any, T]], name: str) -> Callable[P, T]:
    """`fn` for callers without an event loop (`label` from `alabel`), same parameters."""

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        return asyncio.run(fn(*args, **kwargs))

    run.__name__ = run.__qualname__ = name
    return run


class Drafter(Protocol):
    """Anything that turns one item into an outcome: the label, revise and compare tasks."""

    async def draft(self, item: Item) -> Outcome: ...


class RunArgs(TypedDict, total=False):
    """The keyword arguments of `critic.label`, `revise` and `compare` besides their options.

    They are `InputSpec` and `RunControl` spelled out, plus the two callbacks (see `configure`).
    """

    fields: Fields | None
    prompts: str | Path | None
    split: str | None
    limit: int | None
    retry_failed: bool
    concurrency: int
    progress: Progress | None
    on_bad_row: OnBadRow | None


class Configured(TypedDict):
    input: InputSpec
    control: RunControl
    progress: Progress | None
    on_bad_row: OnBadRow | None


def configure(args: RunArgs) -> Configured:
    """`RunArgs` as the config objects the engine takes."""
    return Configured(
        input=InputSpec(
            fields=args.get("fields"),
            prompts=args.get("prompts"),
            split=args.get("split"),
            limit=args.get("limit"),
        ),
        control=RunControl(
            concurrency=args.get("concurrency", 64), retry_failed=args.get("retry_failed", False)
        ),
        progress=args.get("progress"),
        on_bad_row=args.get("on_bad_row"),
    )


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
    #: Model requests this invocation made (a resumed run that had nothing left makes 0);
    #: `requests` is the stored total over every invocation of the run.
    requests_this_run: int = 0
    #: Per server of a server backend: HTTP requests sent (retries included), answered,
    #: failures, whether it is up, times it went down, its last error.
    servers: list[dict[str, Any]] = field(default_factory=list)

    @property
    def items_per_s(self) -> float:
        return self.processed / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "items_per_s": round(self.items_per_s, 3)}


def identity_of(options: Any) -> dict[str, Any]:
    """A task's options (a dataclass or a dict) as the plain dict stored."""
    if hasattr(options, "__dataclass_fields__") and not isinstance(options, type):
        return asdict(options)
    return dict(options)


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

    `options` is the task's identity (its options, or a dict): everything that changes outputs.
    """
    blob = json.dumps(
        [task, constitution_hash, template_hash, backend, model, identity_of(options), source],
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def source_name(source: str | Path) -> str:
    """How a run names its input: the resolved path of a file, else the name as given."""
    path = Path(source)
    return str(path.resolve()) if path.exists() else str(source)


@dataclass
class OpenRun:
    """A run found or created in the store, and the items of it still to draft."""

    run: RunInfo
    constitution_hash: str
    todo: list[Item]


async def open_run(
    store: Store,
    backend: Backend,
    constitution: Constitution,
    *,
    task: str,
    identity: Mapping[str, Any],
    template_hash: str,
    input_name: str,
    records: Sequence[dict[str, Any]],
    items: Mapping[str, Item],
    retry_failed: bool = False,
) -> OpenRun:
    """Check the backend, then find or create the run and add `records` (new ones only).

    `records` are the store's item rows (`item_id`, `source`, `row`, and for bad rows their
    failure); `items` the ones that can be drafted. The backend is checked first, so an
    unreachable server or an unknown model fails before anything is stored.
    """
    await backend.check()
    constitution_hash = store.save_constitution(constitution)
    key = run_key(
        task, constitution_hash, template_hash, backend.name, backend.model, identity, input_name
    )
    run, _ = store.ensure_run(
        RunInfo(
            id=key[:12], key=key, task=task, constitution_hash=constitution_hash,
            template_hash=template_hash, backend=backend.name, model=backend.model,
            params=identity_of(identity), input=input_name, created_at=now(),
        )
    )  # fmt: skip
    store.add_items(run.id, records)
    if retry_failed:
        store.reset_failed(run.id)
    todo = [items[i] for i in store.item_ids(run.id, ["pending"]) if i in items]
    return OpenRun(run, constitution_hash, todo)


async def run_items(
    drafter: Drafter,
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
            outcome = await drafter.draft(item)  # not `pending.append(await ...)`: flush rebinds
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


def read_items(
    source: str | Path, input: InputSpec, on_bad_row: OnBadRow | None = None
) -> tuple[list[dict[str, Any]], dict[str, Item], list[str]]:
    """The store's rows for the first `input.limit` rows of `source`, the good items, bad rows."""
    good: dict[str, Item] = {}
    records: list[dict[str, Any]] = []
    bad_rows: list[str] = []
    for entry in load_items(source, input.fields, split=input.split):
        if input.limit is not None and len(records) >= input.limit:
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
    return records, good, bad_rows


async def execute_run(
    task: str,
    identity: Mapping[str, Any],
    drafter: Drafter,
    template_hash: str,
    source: str | Path,
    constitution: Constitution,
    backend: Backend,
    store: Store,
    *,
    input: InputSpec | None = None,
    control: RunControl | None = None,
    progress: Progress | None = None,
    on_bad_row: OnBadRow | None = None,
) -> RunSummary:
    """Run any task over a dataset: read items, find or create its run, draft what is pending.

    Every task (label, revise, compare) goes through here, so they resume, record bad rows and
    summarise alike. `identity` is the task's part of the run's identity (see `run_key`).
    """
    input = input or InputSpec()
    control = control or RunControl()
    started = time.perf_counter()
    records, good, bad_rows = read_items(source, input, on_bad_row)
    try:
        opened = await open_run(
            store, backend, constitution, task=task, identity=identity,
            template_hash=template_hash, input_name=source_name(source), records=records,
            items=good, retry_failed=control.retry_failed,
        )  # fmt: skip
        run, todo = opened.run, opened.todo
        already = len(records) - len(todo) - len(bad_rows)
        stored_before = store.counts(run.id)["requests"] if todo else None
        window = control.concurrency
        if isinstance(backend, ServerBacked):  # --concurrency is per server
            window *= len(backend.base_urls)
        if progress:
            progress(0, len(todo))
        processed = await run_items(
            drafter, store, run.id, todo, concurrency=window, progress=progress
        )
    finally:
        await backend.aclose()
    counts = store.counts(run.id)
    servers = backend.stats()["servers"] if isinstance(backend, ServerBacked) else []
    return RunSummary(
        run_id=run.id,
        db=store.url,
        constitution=constitution.id,
        constitution_hash=opened.constitution_hash,
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
        requests_this_run=0 if stored_before is None else counts["requests"] - stored_before,
        servers=servers,
    )
