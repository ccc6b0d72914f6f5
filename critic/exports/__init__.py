"""Export final records: every format renders `critic.ship.FinalRecord`s, and the formats are
registered in one place (`registry.formats()`; a new format is one new module here).

By default only what was decided ships: items accepted by the policy, or decided (or adjudicated)
by humans. `include_all` adds pending, rejected and failed items, each with its status; the TRL
formats never hold them. A format for review (`label-studio`) holds by default the items routed
to review and not yet decided instead.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from critic.errors import UsageError
from critic.exports.registry import ExportFormat, Tally, formats, get_format
from critic.ship import SHIPPED, FinalRecord, final_records
from critic.ship.stream import Decisions
from critic.store import RunInfo, Store

__all__ = [
    "ExportFormat",
    "ExportResult",
    "Tally",
    "export",
    "export_db",
    "formats",
    "get_format",
    "records",
]


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote, from which runs, and what it saw."""

    format: str
    out: Path
    count: int
    runs: tuple[str, ...]
    tally: Tally

    @property
    def empty_reason(self) -> str | None:
        """Why nothing was written, in counts; None when something was."""
        if self.count:
            return None
        return self.tally.why_empty(get_format(self.format).noun)


def require_routed(store: Store, runs: Sequence[RunInfo]) -> None:
    """Refuse runs that were never routed: nothing was decided in them, so nothing ships."""
    unrouted = [r.id for r in runs if not store.routed(r.id)]
    if unrouted:
        raise UsageError(
            f"run {', '.join(unrouted)} was never routed, so nothing in it is decided yet",
            hint="route it first: critic route --policy POLICY.yaml --run RUN (or "
            "--accept-all to ship the critic's drafts as they are, without a guarantee), "
            "or export everything with its status with --all",
        )


def records(
    store: Store,
    queues: Decisions | None,
    runs: Sequence[RunInfo],
    fmt: ExportFormat,
    *,
    include_all: bool = False,
    tally: Tally,
    progress: Callable[[int], None] | None = None,
) -> Iterator[FinalRecord]:
    """The final records a format gets: what ships (a format for review: what awaits review), or
    everything with `include_all` (unless the format holds only what ships), counting every
    record read in `tally`."""
    keep_all = include_all and not fmt.shipped_only
    for record in final_records(store, queues, [r.id for r in runs]):
        tally.statuses[record.status] += 1
        tally.conflicts += record.conflict
        if progress is not None:
            progress(1)
        if fmt.review_only:
            wanted = record.status == "pending" and record.route == "review"
        else:
            wanted = record.status in SHIPPED
        if keep_all or wanted:
            yield record
        elif record.status == "pending" and fmt.review_only:
            tally.skip("pending items not routed to review")
        else:
            tally.skip(f"{record.status} items")


def export(
    store: Store,
    queues: Decisions | None,
    out: str | Path,
    fmt: str,
    runs: Sequence[RunInfo],
    *,
    include_all: bool = False,
    progress: Callable[[int], None] | None = None,
) -> ExportResult:
    """Write the final records of `runs` to `out` in format `fmt`.

    Without `include_all` the runs must have been routed (`critic route`); with it, an unrouted
    run exports with every item's status (pending, failed, ...).
    """
    chosen = get_format(fmt)
    if not include_all or chosen.shipped_only:
        require_routed(store, runs)
    tally = Tally()
    path = Path(out)
    stream = records(store, queues, runs, chosen, include_all=include_all, tally=tally,
                     progress=progress)  # fmt: skip
    count = chosen.writer(store, runs)(stream, path, tally)
    tally.written = count
    return ExportResult(chosen.name, path, count, tuple(r.id for r in runs), tally)


def export_db(
    db: str,
    out: str | Path,
    fmt: str = "jsonl",
    *,
    run: Sequence[str] | str | None = None,
    all_runs: bool = False,
    include_all: bool = False,
) -> ExportResult:
    """`export` from a database URL: its runs chosen by `critic.store.selection.select_runs`
    (the named runs, every run, or the latest), both stores opened once and closed after."""
    from critic.review import open_stores
    from critic.store.selection import select_runs

    with open_stores(db) as (store, queues):
        chosen = select_runs(store, run, all_runs=all_runs)
        return export(store, queues, out, fmt, chosen, include_all=include_all)
