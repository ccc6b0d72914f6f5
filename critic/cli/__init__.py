"""The `critic` command line: parse options, call one library function, print the result.

Where a command lives:

| module | commands |
|---|---|
| `run.py` | `label`, `revise`, `compare` |
| `data.py` | `export`, `runs`, `calibrate`, `route`, `quality` |
| `constitution.py` | `constitution lint / show / import / test / diff / stats` |
| `exemplars.py` | `constitution examples add / candidates` |
| `precedents.py` | `precedents` |
| `queue.py` | `queue create / assign / unassign / members / list / stats / history` |
| `users.py` | `users add / list` |
| `review.py` | `review next / serve` |
| `ls.py` | `ls push / pull / import` (Label Studio) |
| `webhooks.py` | `webhooks list / replay` |

Shared flags are declared once in `options.py`; error reporting, progress bars and backends are
in `common.py`. Command modules never import this package: it imports them and registers them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import typer

from critic import __version__
from critic.cli import (
    constitution,
    data,
    exemplars,
    ls,
    precedents,
    queue,
    review,
    run,
    users,
    webhooks,
)

app = typer.Typer(
    name="critic",
    help="Model-assisted labeling and constitutional-AI feedback with calibrated human review.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        print(f"critic {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    """Model-assisted labeling and constitutional-AI feedback with calibrated human review."""


COMMANDS: tuple[Callable[..., None], ...] = (
    *(run.label, run.revise, run.compare),
    *(data.export, data.runs, data.calibrate, data.route, data.quality),
    precedents.precedents,
)
for _command in COMMANDS:
    app.command()(_command)
constitution.app.add_typer(exemplars.app, name="examples")
app.add_typer(constitution.app, name="constitution")
app.add_typer(review.app, name="review")
app.add_typer(queue.app, name="queue")
app.add_typer(users.app, name="users")
app.add_typer(ls.app, name="ls")
app.add_typer(webhooks.app, name="webhooks")


def main() -> None:
    """Console entry point."""
    app()
