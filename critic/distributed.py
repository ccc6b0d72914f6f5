"""`--ray`: draft one run on a Ray cluster, with critic's own drafting in every worker.

The driver opens the run (the same run, with the same key, as without `--ray`, so either resumes
the other), cuts the input into parts (`critic.items.plan_parts`: byte ranges of JSONL lines,
Parquet row groups, row ranges of a saved dataset) and hands them to Ray Data as a Dataset of part
descriptions. `map_batches` sends them to K actors (`DraftWorker`). Each actor builds the task's
drafter and its backend once (the vllm-server URLs, or with `--backend vllm` its own in-process
engine on one GPU), reads its parts itself with critic's readers, so a malformed row is a named
bad row (`FILE:LINE`, `FILE:row N`) and never a failed job, registers and drafts them through the
same `Intake` and `run_items` as a local run, and writes outcomes straight to the run store. The
driver holds no rows: it only counts what the actors report.

Why part descriptions rather than `ray.data.read_json`: Ray's readers fail the whole job on one
malformed line (ray-project/ray#59194) and know no line numbers; parsing in critic's readers
keeps one behaviour for bad input everywhere.

Nothing is lost or duplicated when a worker or the driver is killed: `Store.record` writes only
items still pending (with row locks on PostgreSQL), Ray retries a killed actor's part, and a
rerun redrafts whatever is still pending. Use PostgreSQL across machines; SQLite is fine for a
local Ray on one machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from critic.config import BackendSpec, InputSpec, RunControl
from critic.constitution import Constitution
from critic.errors import CriticError, MissingExtraError, UsageError
from critic.items import BadRow, Part, load_part, plan_parts
from critic.render import Templates
from critic.runs import (
    Intake,
    OnBadRow,
    Progress,
    RunSummary,
    run_items,
    source_name,
    start_run,
    summarize,
    synchronous,
    todo_left,
    window,
)
from critic.store import RunInfo, Store, open_store
from critic.tasks import task_named
from critic.tasks.base import prepare_run

#: Rows per part: small enough that a retried part redoes little, big enough to keep a worker's
#: window of requests full.
ROWS_PER_PART = 2000


@dataclass(frozen=True)
class RaySpec:
    """Where and how wide: `address` of a running cluster (None starts a local one), workers."""

    address: str | None = None
    workers: int = 2


@dataclass(frozen=True)
class Job:
    """Everything a worker needs to draft parts of one run (sent to every actor once)."""

    task: str
    run_id: str
    db: str
    constitution: Constitution
    options: Any
    input: InputSpec
    templates: Templates  # a snapshot: the sources the run hashed, not a path to read again
    backend: BackendSpec
    critics: tuple[BackendSpec, ...]
    concurrency: int


class DraftWorker:
    """A Ray Data actor: drafts the parts it is given and writes them to the run store."""

    def __init__(self, job: Job) -> None:
        task = task_named(job.task)
        self.job = job
        self.loop = asyncio.new_event_loop()
        self.store = open_store(job.db)
        self.backend = job.backend.build()
        self.critics = [c.build() for c in job.critics]
        self.drafter = task.drafter(
            self.backend, job.constitution, job.templates, job.options, self.critics
        )

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        report: dict[str, list[Any]] = {"part": [], "processed": [], "already": [], "bad": []}
        for text in batch["part"]:
            part = Part(**json.loads(str(text)))
            read = self.job.input
            entries = load_part(part, read.fields, max_line_bytes=read.max_line_bytes)
            intake = Intake(self.store, self.job.run_id, entries)
            processed = self.loop.run_until_complete(
                run_items(
                    self.drafter, self.store, self.job.run_id, intake.pending(),
                    concurrency=window(self.backend, self.job.concurrency),  # per server
                )
            )  # fmt: skip
            report["part"].append(f"{part.source}@{part.start}")
            report["processed"].append(processed)
            report["already"].append(intake.already_done)
            report["bad"].append(json.dumps(intake.bad_rows))
        return report

    def __del__(self) -> None:
        # Close the backend's connections with the actor (Ray calls no other hook).
        try:
            self.loop.run_until_complete(self.backend.aclose())
            for extra in self.critics:
                self.loop.run_until_complete(extra.aclose())
        except Exception:  # the loop may already be gone at interpreter exit
            pass


def _import_ray() -> Any:
    try:
        import ray
        import ray.data
    except ImportError:
        raise MissingExtraError("--ray", "ray[data]", "pip install 'critic[ray]'") from None
    return ray


def _gpus_per_actor(backend: BackendSpec) -> int:
    """One GPU per actor for an in-process vLLM engine, none for the CPU build of vLLM (whose
    engine runs on the actor's CPUs) or for a backend that talks to servers."""
    from critic.backends import is_cpu_only

    return 1 if backend.backend == "vllm" and not is_cpu_only() else 0


def _quiet_ray() -> None:
    for name in ("ray", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)


class _Named:
    """The name and model of an in-process backend, without loading its engine in the driver
    (each actor loads its own)."""

    def __init__(self, spec: BackendSpec) -> None:
        self.name = spec.backend
        self.model = spec.model or ""

    async def check(self) -> None:
        return None


async def arun_on_ray(
    task_name: str,
    source: str | Path,
    constitution: Constitution,
    backend: BackendSpec,
    db: str,
    *,
    ray_spec: RaySpec,
    options: Any = None,
    critics: Sequence[BackendSpec] = (),
    input: InputSpec | None = None,
    control: RunControl | None = None,
    progress: Progress | None = None,
    on_bad_row: OnBadRow | None = None,
) -> RunSummary:
    """Run `task_name` over `source` on a Ray cluster; resume what the store already holds.

    The run is the one `critic.tasks.run` would make for the same arguments.
    """
    ray = _import_ray()
    if ray_spec.workers < 1:
        raise UsageError("--ray-workers must be at least 1")
    task = task_named(task_name)
    input = input or InputSpec()
    control = control or RunControl()
    opts = options or task.options()
    started = time.perf_counter()
    input, fields, templates = prepare_run(task, constitution, input, critics, source=source)
    store = open_store(db)
    in_process = backend.backend in ("vllm", "transformers")
    probe: Any = _Named(backend) if in_process else backend.build()
    panel: list[Any] = [_Named(c) if in_process else c.build() for c in critics]
    try:
        run, constitution_hash = await start_run(
            store, probe, constitution, task=task.name,
            identity=task.identity(opts, fields, panel),
            template_hash=templates.hash(task.templates), input_name=source_name(source),
        )  # fmt: skip
        for extra in panel:
            await extra.check()
    finally:
        if not in_process:
            for b in (probe, *panel):
                await b.aclose()
    # Workers use what the check resolved (a server's model when --model was not given).
    backend = replace(backend, model=probe.model or backend.model)
    if control.retry_failed:
        store.reset_failed(run.id)
    parts = plan_parts(source, split=input.split, limit=input.limit, rows_per_part=ROWS_PER_PART)
    stored_before = store.counts(run.id)["requests"]
    total = todo_left(store, run.id, sum(p.max_rows or p.rows for p in parts))
    job = Job(
        task.name, run.id, db, constitution, opts, input, templates, backend, tuple(critics),
        control.concurrency,
    )  # fmt: skip
    if progress:
        progress(0, total)
    # Ray's own start-up and execution logs would bury the progress bar and the --json summary.
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a local cluster on loopback
    _quiet_ray()
    with _stdout_to_stderr():
        return await _draft_on_ray(
            ray, parts, job, ray_spec, backend, in_process, store, run, constitution,
            constitution_hash, stored_before, total, started, progress, on_bad_row,
        )  # fmt: skip


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Send whatever Ray prints to stdout (its raylet's notices about a retried task, say) to
    stderr while it runs, so that stdout carries only critic's own output, such as `--json`."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


async def _draft_on_ray(
    ray: Any,
    parts: list[Part],
    job: Job,
    ray_spec: RaySpec,
    backend: BackendSpec,
    in_process: bool,
    store: Store,
    run: RunInfo,
    constitution: Constitution,
    constitution_hash: str,
    stored_before: int,
    total: int,
    started: float,
    progress: Progress | None,
    on_bad_row: OnBadRow | None,
) -> RunSummary:
    processed = already = 0
    bad_rows: list[str] = []
    ray.init(
        address=ray_spec.address, include_dashboard=False, ignore_reinit_error=True,
        log_to_driver=False, logging_level="warning",
    )  # fmt: skip
    _quiet_ray()
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.verbose_progress = False
        dataset = ray.data.from_items(
            [{"part": json.dumps(asdict(p))} for p in parts],
            override_num_blocks=max(1, len(parts)),
        )
        drafted = dataset.map_batches(
            DraftWorker, fn_constructor_kwargs={"job": job}, batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=ray_spec.workers),
            num_gpus=_gpus_per_actor(backend), num_cpus=1 if in_process else 0.25,
        )  # fmt: skip
        for report in drafted.iter_rows():
            processed += int(report["processed"])
            already += int(report["already"])
            for row in json.loads(report["bad"]):
                bad_rows.append(row)
                if on_bad_row:
                    where, _, reason = row.partition(": ")
                    on_bad_row(BadRow("", where, reason))
            if progress:
                progress(processed, max(total, processed))
    except CriticError:
        raise
    except Exception as exc:
        cause = getattr(exc, "cause", None) or exc
        if isinstance(cause, CriticError):
            raise cause from None
        raise
    finally:
        if ray_spec.address is None:
            ray.shutdown()
    return summarize(
        store, run.id, constitution, constitution_hash, backend.backend, backend.model or "",
        started=started, already_done=already, processed=processed, bad_rows=bad_rows,
        stored_requests=stored_before, engine="ray", workers=ray_spec.workers,
    )  # fmt: skip


run_on_ray = synchronous(arun_on_ray, "run_on_ray")
