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
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Callable,
    Coroutine,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
    Sized,
)
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ParamSpec, Protocol, TypedDict, TypeVar

from critic.backends.base import Backend, ServerBacked
from critic.config import InputSpec, RunControl
from critic.constitution import Constitution
from critic.items import BadRow, Fields, Item, count_rows, load_items
from critic.leases import Leases
from critic.store import Outcome, RunInfo, Store, now
from critic.text import printable

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
    max_line_bytes: int
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
            **({"max_line_bytes": args["max_line_bytes"]} if "max_line_bytes" in args else {}),
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
    #: Where the drafting ran: `local` (this process) or `ray` (`workers` actors).
    engine: str = "local"
    workers: int = 1

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


async def start_run(
    store: Store,
    backend: Backend,
    constitution: Constitution,
    *,
    task: str,
    identity: Mapping[str, Any],
    template_hash: str,
    input_name: str,
) -> tuple[RunInfo, str]:
    """Check the backend, then find or create the run; return it and the constitution's hash.

    The backend is checked first, so an unreachable server or an unknown model fails before
    anything is stored.
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
    return run, constitution_hash


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
    """`start_run`, then add `records` (new ones only) and list the items still to draft.

    For a known, small set of items (the workbench's); a dataset goes through `execute_run`,
    which streams. `records` are the store's item rows (`item_id`, `source`, `row`, and for bad
    rows their failure); `items` the ones that can be drafted.
    """
    run, constitution_hash = await start_run(
        store, backend, constitution, task=task, identity=identity,
        template_hash=template_hash, input_name=input_name,
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
    todo: Iterable[Item] | AsyncIterable[Item],
    *,
    concurrency: int,
    progress: Progress | None = None,
    total: int | None = None,
    flush_every: int = 64,
    flush_seconds: float = 0.5,
) -> int:
    """Draft `todo` with `concurrency` items in flight, writing outcomes in small batches.

    `todo` may be a stream: it is read only as fast as items finish (a window of twice the
    concurrency), so memory does not grow with the dataset. `total` is the progress bar's total
    (default: `len(todo)`). Returns the number of items whose outcome was stored.
    """
    workers_n = concurrency
    if isinstance(todo, Sized):
        total = len(todo) if total is None else total
        workers_n = min(concurrency, len(todo))
    workers_n = max(1, workers_n)
    queue: asyncio.Queue[Item | None] = asyncio.Queue(maxsize=2 * concurrency)
    pending: list[Outcome] = []
    done = 0
    last_flush = time.monotonic()

    def flush() -> None:
        nonlocal done, last_flush, pending
        if pending:
            done += store.record(run_id, pending)  # what another process recorded is not counted
            pending = []
        last_flush = time.monotonic()
        if progress:
            progress(done, max(total or 0, done))

    async def feed() -> None:
        if isinstance(todo, AsyncIterable):
            async for item in todo:
                await queue.put(item)
        else:
            for item in todo:
                await queue.put(item)
        for _ in range(workers_n):
            await queue.put(None)

    async def worker() -> None:
        while (item := await queue.get()) is not None:
            outcome = await drafter.draft(item)  # not `pending.append(await ...)`: flush rebinds
            pending.append(outcome)
            if len(pending) >= flush_every or time.monotonic() - last_flush > flush_seconds:
                flush()

    async def tick() -> None:
        # Outcomes are written within `flush_seconds` even when no item finishes: while the
        # feed waits (for another process's leases to lapse), nothing else would write them,
        # and that process may be waiting for these very items.
        while True:
            await asyncio.sleep(flush_seconds)
            if time.monotonic() - last_flush >= flush_seconds:
                flush()

    tasks = [
        asyncio.create_task(feed()),
        *(asyncio.create_task(worker()) for _ in range(workers_n)),
    ]
    ticker = asyncio.create_task(tick())
    try:
        await asyncio.gather(*tasks)
    finally:
        for t in [*tasks, ticker]:
            t.cancel()
        # Whatever finished is kept, even when the run is interrupted or the backend is lost.
        flush()
    return done


#: Rows read, registered and looked up together: the unit of the engine's memory.
CHUNK_ROWS = 1000


@dataclass
class Intake:
    """Streams a dataset into a run, a chunk of rows at a time, and yields what is left to draft.

    Each chunk is registered in one insert (new items only) after one keyed lookup of the ids
    already stored, so neither the rows nor the stored ids are ever held whole: memory stays
    flat in the number of rows. A duplicate id is found through the store too (the stored row
    came from another line), so no set of seen ids grows either. The counts fill the summary.

    With `leases`, the run may be shared with other processes (`critic.leases`): the pending
    items of a chunk are leased before they are yielded (new ones as they are inserted; those
    another live process holds are skipped), and once the input is exhausted the items of processes
    that died are taken over, rebuilt from their stored rows with `fields`; `limit` keeps that
    to the input's first rows. Without (a Ray worker, which gets its own shard), no leases.
    """

    store: Store
    run_id: str
    entries: Iterable[tuple[int, Item | BadRow]]
    on_bad_row: OnBadRow | None = None
    leases: Leases | None = None
    fields: Fields = field(default_factory=Fields)
    limit: int | None = None
    already_done: int = 0
    bad_rows: list[str] = field(default_factory=list)

    def _bad(self, entry: BadRow, seq: int) -> dict[str, Any]:
        self.bad_rows.append(str(entry))
        if self.on_bad_row:
            self.on_bad_row(entry)
        return {
            "item_id": entry.id, "source": entry.source, "row": entry.row, "seq": seq,
            "status": "failed", "reason": "invalid_input", "detail": entry.reason,
        }  # fmt: skip

    def register(self, chunk: Sequence[tuple[int, Item | BadRow]]) -> list[Item]:
        """Store the new items and bad rows of `chunk` (`(seq, entry)` pairs); return the items
        of it still pending (with leases: those this process leased)."""
        first: dict[str, str] = {}
        goods: list[tuple[int, Item]] = []
        records: list[dict[str, Any]] = []
        for seq, entry in chunk:
            if isinstance(entry, BadRow):
                records.append(self._bad(entry, seq))
            elif entry.id in first:
                records.append(self._bad(duplicate(entry, first[entry.id]), seq))
            else:
                first[entry.id] = entry.source
                goods.append((seq, entry))
        stored = self.store.item_states(self.run_id, [item.id for _, item in goods])
        todo: list[Item] = []
        for seq, item in goods:
            known = stored.get(item.id)
            if known is not None and known[0] != item.source:
                records.append(self._bad(duplicate(item, known[0]), seq))
            elif known is not None and known[1] != "pending":
                self.already_done += 1
            else:
                todo.append(item)
                if known is None:
                    records.append(
                        {"item_id": item.id, "source": item.source, "row": dict(item.row),
                         "seq": seq}
                    )  # fmt: skip
        if self.leases is None:
            self.store.add_items(self.run_id, records)
            return todo
        return self.leases.take(todo, records)

    async def pending(self) -> AsyncIterator[Item]:
        """The items of the input still pending in the run, in input order; with leases, those
        this process leased, then those it took over from processes that died."""
        chunk: list[tuple[int, Item | BadRow]] = []
        for numbered in self.entries:
            chunk.append(numbered)
            if len(chunk) >= CHUNK_ROWS:
                for item in self.register(chunk):
                    yield item
                chunk = []
        if chunk:
            for item in self.register(chunk):
                yield item
        if self.leases is not None:
            async for item in self.leases.lapsed(self.fields, self.limit):
                yield item


def numbered_items(source: str | Path, input: InputSpec) -> Iterator[tuple[int, Item | BadRow]]:
    """`(position, item or bad row)` for the first `input.limit` rows of `source`, streamed."""
    entries = load_items(source, input.fields, split=input.split, check_duplicates=False,
                         max_line_bytes=input.max_line_bytes)  # fmt: skip
    for seq, entry in enumerate(entries):
        if input.limit is not None and seq >= input.limit:
            return
        yield seq, entry


def estimate_todo(store: Store, run_id: str, source: str | Path, input: InputSpec) -> int | None:
    """About how many items of `source` are still to draft (the progress bar's total)."""
    rows = count_rows(source, split=input.split)
    if rows is None:
        return None
    if input.limit is not None:
        rows = min(rows, input.limit)
    return todo_left(store, run_id, rows)


def todo_left(store: Store, run_id: str, rows: int) -> int:
    """How many of a run's `rows` input rows are not yet drafted or failed."""
    statuses = store.status_counts(run_id)
    return max(0, rows - statuses.get("drafted", 0) - statuses.get("failed", 0))


def window(backend: object, concurrency: int) -> int:
    """Items in flight for `concurrency`: it is per server on a backend with several."""
    if isinstance(backend, ServerBacked):
        return concurrency * len(backend.base_urls)
    return concurrency


def duplicate(item: Item, first: str) -> BadRow:
    """The bad row for an item whose id an earlier row (at `first`) already has."""
    digest = hashlib.sha256(f"{item.source}\0{item.id}".encode()).hexdigest()[:16]
    return BadRow(
        f"invalid-{digest}",
        item.source,
        f"duplicate id '{printable(item.id)}' (first at {first})",
        item.row,
    )


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
    try:
        run, constitution_hash = await start_run(
            store, backend, constitution, task=task, identity=identity,
            template_hash=template_hash, input_name=source_name(source),
        )  # fmt: skip
        if control.retry_failed:
            store.reset_failed(run.id)
        total = estimate_todo(store, run.id, source, input)
        stored_before = store.counts(run.id)["requests"]
        in_flight = window(backend, control.concurrency)
        leases = Leases(store, run.id, batch=in_flight)
        intake = Intake(
            store, run.id, numbered_items(source, input), on_bad_row, leases=leases,
            fields=input.fields or Fields(), limit=input.limit,
        )  # fmt: skip
        if progress:
            progress(0, total or 0)
        async with leases.kept():
            processed = await run_items(
                drafter, store, run.id, intake.pending(), concurrency=in_flight,
                progress=progress, total=total,
            )  # fmt: skip
    finally:
        await backend.aclose()
    bad_rows, already = intake.bad_rows, intake.already_done
    servers = backend.stats()["servers"] if isinstance(backend, ServerBacked) else []
    return summarize(
        store, run.id, constitution, constitution_hash, backend.name, backend.model,
        started=started, already_done=already, processed=processed, bad_rows=bad_rows,
        stored_requests=stored_before, servers=servers,
    )  # fmt: skip


def summarize(
    store: Store,
    run_id: str,
    constitution: Constitution,
    constitution_hash: str,
    backend: str,
    model: str,
    *,
    started: float,
    already_done: int,
    processed: int,
    bad_rows: list[str],
    stored_requests: int,
    servers: list[dict[str, Any]] | None = None,
    engine: str = "local",
    workers: int = 1,
) -> RunSummary:
    """A run's summary from the store's counts and what this invocation did.

    `started` is the `time.perf_counter()` at its start; `stored_requests` the stored request
    count before it, so that `requests_this_run` counts only its own."""
    counts = store.counts(run_id)
    statuses = counts["statuses"]
    return RunSummary(
        run_id=run_id, db=store.url, constitution=constitution.id,
        constitution_hash=constitution_hash, backend=backend, model=model,
        items=sum(statuses.values()), drafted=statuses.get("drafted", 0),
        failed=statuses.get("failed", 0), pending=statuses.get("pending", 0),
        already_done=already_done, processed=processed, labels=counts["labels"],
        failures=counts["failures"], prompt_tokens=counts["prompt_tokens"],
        completion_tokens=counts["completion_tokens"], requests=counts["requests"],
        elapsed_s=time.perf_counter() - started, bad_rows=bad_rows,
        requests_this_run=counts["requests"] - stored_requests, servers=servers or [],
        engine=engine, workers=workers,
    )  # fmt: skip
