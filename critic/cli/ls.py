"""`critic ls push | pull | import`: review in Label Studio, decisions back into critic.

The library is `critic.labelstudio` (`sync.push`, `sync.pull`, `sync.import_export`); this
module parses options and prints what happened.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from critic.cli.common import err, out, reports_errors, shown
from critic.cli.options import DEFAULT_DB, AllRunsOpt, DbOpt, JsonOpt, RunsOpt
from critic.errors import UsageError

if TYPE_CHECKING:
    from critic.labelstudio.sync import BroughtIn

app = typer.Typer(
    help="Review in Label Studio: push tasks with the critic's predictions, bring the "
    "annotations back as human decisions.",
    no_args_is_help=True,
)

UrlOpt = Annotated[str, typer.Option(
    "--url", envvar="LABEL_STUDIO_URL", help="Label Studio's address (http://localhost:8080).",
)]  # fmt: skip
TokenOpt = Annotated[str, typer.Option(
    "--token", envvar="LABEL_STUDIO_API_KEY",
    help="Your personal access token (Label Studio: Account & Settings), or a legacy token.",
)]  # fmt: skip
ProjectOpt = Annotated[str, typer.Option(
    "--project", help="The project's title (created on push if new) or its id.",
)]  # fmt: skip


def _client(url: str, token: str) -> Any:
    from critic.labelstudio.client import Client

    return Client(url, token)


@app.command("push")
@reports_errors
def push(
    url: UrlOpt,
    token: TokenOpt,
    project: ProjectOpt,
    db: DbOpt = DEFAULT_DB,
    run: RunsOpt = None,
    all_runs: AllRunsOpt = False,
    include_all: Annotated[
        bool,
        typer.Option("--all", help="Every item, with its status (default: those awaiting review)."),
    ] = False,
    overlap: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Annotators per task (the project's maximum annotations); several give "
            "agreement figures and adjudication back in critic.",
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Create or update a Label Studio project from the run's constitution and import the items
    awaiting review, the critic's label as a prediction. A second push adds nothing."""
    from critic.labelstudio.sync import push as do_push

    result = do_push(db, _client(url, token), project, run=run, all_runs=all_runs,
                     include_all=include_all, overlap=overlap)  # fmt: skip
    if json_out:
        print(json.dumps(asdict(result), indent=2))
        return
    what = "created" if result.created else "updated" if result.config_updated else "unchanged"
    out.print(
        shown(f"project {result.project} '{result.title}' ({what}): {result.imported} task(s) "
              f"imported, {result.already} already there · {result.url}"),
    )  # fmt: skip


def _report(result: BroughtIn, json_out: bool) -> None:
    if json_out:
        summary = asdict(result)
        summary["changed"] = [asdict(d) for d in result.changed]
        summary["late"] = [asdict(d) for d in result.late]
        summary["problems"] = [str(p) for p in result.problems]
        print(json.dumps(summary, indent=2, default=str))
    else:
        out.print(
            shown(
                f"queue '{result.queue}': {result.decisions} decision(s) and {result.skips} "
                f"skip(s) recorded from {result.annotations} annotation(s) on {result.tasks} "
                f"task(s); {result.existing} already there; {result.settled} item(s) settled, "
                f"{result.to_adjudicate} awaiting an adjudicator"
            )
        )
        if result.users_added:
            names = ", ".join(result.users_added)
            err.print(shown(f"reviewers added (no password, they cannot log in): {names}"))
        for d in result.changed:
            task = d.source.get("task")
            err.print(shown(
                f"task {task}: {d.reviewer} changed their answer in Label Studio after it was "
                f"brought in; critic keeps the first (reopen item {d.item_id} in queue "
                f"{result.queue} to review it again)"
            ))  # fmt: skip
        for d in result.late:
            task = d.source.get("task")
            err.print(shown(
                f"task {task}: {d.reviewer}'s annotation came after item {d.item_id} was "
                f"settled in queue {result.queue}: left out"
            ))  # fmt: skip
        for problem in result.problems:
            err.print(shown(f"left out: {problem}"))
    if result.problems and not json_out:
        err.print(shown(f"{len(result.problems)} annotation(s) or task(s) left out (above)"))


QueueOpt = Annotated[
    str | None,
    typer.Option("--queue", help="The critic queue the decisions go to (created if new)."),
]


@app.command("pull")
@reports_errors
def pull(
    url: UrlOpt,
    token: TokenOpt,
    project: ProjectOpt,
    db: DbOpt = DEFAULT_DB,
    queue: QueueOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Bring a project's annotations back as human decisions on their (run, item), in a queue
    named after the project: overlap, agreement and adjudication as in critic's own app."""
    from critic.labelstudio.sync import pull as do_pull

    _report(do_pull(db, _client(url, token), project, queue=queue), json_out)


@app.command("import")
@reports_errors
def import_file(
    path: Annotated[Path, typer.Argument(metavar="FILE", help="A Label Studio JSON export.")],
    db: DbOpt = DEFAULT_DB,
    queue: Annotated[
        str, typer.Option("--queue", help="The critic queue the decisions go to.")
    ] = "label-studio",
    overlap: Annotated[
        int,
        typer.Option(min=1, help="Reviews each item needs when the queue is created here."),
    ] = 1,
    annotator: Annotated[
        list[str] | None,
        typer.Option(
            "--annotator",
            metavar="ID=EMAIL",
            help="Name Label Studio user ID by EMAIL (the export names annotators by id only; "
            "unnamed ones become label-studio-user-ID). Repeat for several.",
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Bring in the annotations of a Label Studio JSON export (no server needed)."""
    from critic.labelstudio.sync import import_export

    names: dict[int, str] = {}
    for given in annotator or []:
        user, sep, email = given.partition("=")
        if not sep or not user.strip().isdigit() or not email.strip():
            raise UsageError(
                f"--annotator {given!r} is not ID=EMAIL", hint="e.g. --annotator 2=ann@lab.org"
            )
        names[int(user)] = email.strip()
    result = import_export(db, path, queue=queue, overlap=overlap, annotators=names)
    _report(result, json_out)
