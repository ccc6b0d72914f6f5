"""Which runs a command reads: one rule for export, route, calibrate --db, quality and the
workbench.

- `--run ID` (repeatable; an id or a unique prefix) names runs;
- `--all-runs` takes every run, oldest first;
- otherwise the latest run (the one created last).

Commands print the runs they used (`describe`), so the choice is never silent.
"""

from __future__ import annotations

from collections.abc import Sequence

from critic.errors import UsageError
from critic.store import RunInfo, Store


def select_runs(
    store: Store, runs: Sequence[str] | str | None = None, *, all_runs: bool = False
) -> list[RunInfo]:
    """The runs named, every run (`all_runs`), or the latest one; never an empty list."""
    if isinstance(runs, str):
        runs = [runs]
    if runs and all_runs:
        raise UsageError("give --run or --all-runs, not both")
    if runs:
        return list({r.id: r for r in (store.run(name) for name in runs)}.values())
    stored = store.runs()
    if not stored:
        raise UsageError(f"{store.url} holds no runs yet", hint="run `critic label` first")
    return stored if all_runs else [stored[-1]]


def describe(run: RunInfo) -> str:
    """One line naming a run: `run 3f2a9c1b0d4e (label, 2026-12-06T16:40, model M)`."""
    return f"run {run.id} ({run.task}, {run.created_at[:16]}, model {run.model})"
