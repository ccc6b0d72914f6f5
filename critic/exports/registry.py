"""The export formats, registered in one place.

A format is one module of this package that defines `FORMAT = ExportFormat(...)`: it is found by
`formats()`, and the CLI help, the README table and the tests read the list from there. Every
format renders final records (`critic.ship.FinalRecord`).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from critic.errors import UsageError
from critic.ship import FinalRecord

if TYPE_CHECKING:
    from critic.store import RunInfo, Store


@dataclass
class Tally:
    """What an export saw and why records were left out, for its summary and for explaining an
    empty result in counts ("0 DPO pairs: 150 ties, 0 decided")."""

    statuses: Counter[str] = field(default_factory=Counter)
    """Every record read, by status."""
    skipped: Counter[str] = field(default_factory=Counter)
    """Records a format left out, by reason (`tie`, `pending`, ...)."""
    written: int = 0
    conflicts: int = 0
    """Records settled differently in more than one queue."""

    def skip(self, reason: str) -> None:
        self.skipped[reason] += 1

    def why_empty(self, noun: str) -> str:
        """`0 DPO pairs: 150 ties, 0 decided` — why nothing was written, in counts."""
        shipped = sum(self.statuses[s] for s in ("accepted", "decided", "adjudicated"))
        parts = [f"{n} {reason}" for reason, n in self.skipped.most_common()]
        parts.append(f"{shipped} decided or accepted of {sum(self.statuses.values())} items")
        return f"0 {noun}: " + ", ".join(parts)


Writer = Callable[[Iterable[FinalRecord], Path, Tally], int]
Prepare = Callable[["Store", "Sequence[RunInfo]"], Writer]


@dataclass(frozen=True)
class ExportFormat:
    """One way to write final records."""

    name: str
    help: str
    """One line for `critic export --help` and the README."""
    write: Writer | None = None
    """Write the records to the path (complete or not at all); return how many rows."""
    prepare: Prepare | None = None
    """Instead of `write`, for a format that reads more of the run store than the records: makes
    the writer for these runs (label-studio reads the constitution behind its labeling
    config)."""
    noun: str = "rows"
    """What one output row is, for summaries (`DPO pairs`)."""
    directory: bool = False
    """Writes a directory (else a file)."""
    shipped_only: bool = False
    """Never holds pending, rejected or failed items, even with `--all` (the TRL formats)."""
    review_only: bool = False
    """Its purpose is review: by default it holds the items routed to review and not yet
    decided instead of what ships (`--all`: every item, with its status)."""

    def __post_init__(self) -> None:
        if (self.write is None) == (self.prepare is None):
            raise TypeError(f"export format {self.name!r}: give either write or prepare")

    def writer(self, store: Store, runs: Sequence[RunInfo]) -> Writer:
        """The function that writes these runs' records in this format."""
        if self.prepare is not None:
            return self.prepare(store, runs)
        assert self.write is not None
        return self.write


@cache
def formats() -> dict[str, ExportFormat]:
    """Every format, by name, from the modules of `critic.exports` that define `FORMAT`."""
    found: dict[str, ExportFormat] = {}
    here = [str(Path(__file__).parent)]
    for module in sorted(pkgutil.iter_modules(here), key=lambda m: m.name):
        fmt = getattr(importlib.import_module(f"critic.exports.{module.name}"), "FORMAT", None)
        if isinstance(fmt, ExportFormat):
            if fmt.name in found:
                raise RuntimeError(f"two export formats are called {fmt.name!r}")
            found[fmt.name] = fmt
    return dict(sorted(found.items()))


def get_format(name: str) -> ExportFormat:
    """The format called `name`; a UsageError naming the formats there are otherwise."""
    known = formats()
    if name not in known:
        from critic.errors import did_you_mean

        raise UsageError(
            f"unknown export format '{name}'",
            hint=" ".join(
                filter(None, [did_you_mean(name, known), f"formats: {', '.join(known)}"])
            ),
        )
    return known[name]
