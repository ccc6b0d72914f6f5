"""The tasks: how one item becomes a draft. `TASKS` maps each task's name to its registry entry.

    from critic.tasks import run
    summary = run("label", "items.jsonl", constitution, backend, store,
                  options=Sampling(top_logprobs=5), input=InputSpec(limit=100))

Adding a task: a module with its options model, its drafter and a `Task` entry, listed here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from critic.backends.base import Backend
from critic.config import InputSpec, RunControl
from critic.constitution import Constitution
from critic.errors import UsageError, did_you_mean
from critic.runs import OnBadRow, Progress, RunSummary, synchronous
from critic.store import Store
from critic.tasks.base import Task, arun_task
from critic.tasks.compare import COMPARE
from critic.tasks.label import LABEL
from critic.tasks.revise import REVISE

TASKS: dict[str, Task] = {t.name: t for t in (LABEL, REVISE, COMPARE)}

__all__ = ["TASKS", "Task", "arun", "run"]


def task_named(name: str) -> Task:
    """The registry entry of `name`, or a UsageError naming the closest task."""
    if name not in TASKS:
        hint = did_you_mean(name, TASKS) or f"choose one of: {', '.join(TASKS)}"
        raise UsageError(f"unknown task '{name}'", hint=hint)
    return TASKS[name]


async def arun(
    task: str,
    source: str | Path,
    constitution: Constitution,
    backend: Backend,
    store: Store,
    *,
    options: Any = None,
    input: InputSpec | None = None,
    control: RunControl | None = None,
    critics: Sequence[Backend] = (),
    progress: Progress | None = None,
    on_bad_row: OnBadRow | None = None,
) -> RunSummary:
    """Run the task called `task` over `source`; resume what the store already holds.

    `run` is the same for callers without an event loop.

    Args:
        options: the task's options (`Sampling` for label, `ReviseOptions`, `CompareOptions`).
        input: which columns, split and rows to read, and which prompt templates.
        control: concurrency, and whether to retry items that failed before.
        critics: further critic models labelling as a panel (label only).
        progress: called with (done, total) as outcomes are stored.
        on_bad_row: called with each input row that cannot be read (it is recorded as failed).
    """
    return await arun_task(
        task_named(task), source, constitution, backend, store, options=options,
        critics=critics, input=input, control=control, progress=progress, on_bad_row=on_bad_row,
    )  # fmt: skip


run = synchronous(arun, "run")
