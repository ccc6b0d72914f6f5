"""`critic constitution examples add | candidates`: decided queue items as examples.

Item text, labels and notes are printed as plain text (rich `Text`), never as console markup.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from critic.cli.common import clip, dump, err, out, queue_store, reports_errors, shown
from critic.cli.options import DEFAULT_DB, DbOpt, JsonOpt

app = typer.Typer(help="Turn decided queue items into a constitution's examples.",
                  no_args_is_help=True)  # fmt: skip

QueueOpt = Annotated[str, typer.Option("--queue", "-q", help="The review queue.")]


@app.command("add")
@reports_errors
def examples_add(
    constitution: Annotated[str, typer.Argument(help="The constitution: a file or shipped name.")],
    queue: QueueOpt,
    output: Annotated[Path, typer.Option("-o", "--output", help="Where to write the new version.")],
    item: Annotated[
        list[str] | None, typer.Option("--item", help="A decided item's id (repeatable).")
    ] = None,
    all_candidates: Annotated[
        bool,
        typer.Option("--candidates", help="Every item marked as an exemplar candidate."),
    ] = False,
    version: Annotated[
        str | None, typer.Option(help="The new version (default: the next, 1.0 -> 1.1).")
    ] = None,
    db: DbOpt = DEFAULT_DB,
    json_out: JsonOpt = False,
) -> None:
    """Write a new version with decided items as examples of the principles they cite (the
    human's label, the note as the reason); it must lint clean. Then measure what it flips:
    critic constitution diff OLD NEW --db URL --impact."""
    from critic.constitution import load_constitution
    from critic.errors import UsageError
    from critic.workbench.exemplars import add_examples, write

    old = load_constitution(constitution)
    with queue_store(db) as queues:
        ids = list(item or [])
        if all_candidates:
            ids += [i for i in queues.exemplar_candidates(queue) if i not in ids]
        if not ids:
            raise UsageError(
                "no items given",
                hint=f"pass --item ID, or --candidates (list them: critic constitution examples "
                f"candidates --queue {queue})",
            )
        new, exemplars = add_examples(old, queues, queue, ids, version=version)
    write(new, output, source=f"{old.id} v{old.version} with {len(exemplars)} decided item(s) "
                              f"from queue {queue} as examples")  # fmt: skip
    if json_out:
        dump({"output": str(output), "version": new.version, "hash": new.hash,
              "examples": [{"item_id": e.item_id, "principles": list(e.principles),
                            "label": e.example.label, "score": e.example.score,
                            "reason": e.example.explanation} for e in exemplars]})  # fmt: skip
        return
    table = Table("item", "principles", "label", "reason", "decided by",
                  title=shown(f"{new.id} v{old.version} -> v{new.version}: {output}"))  # fmt: skip
    for e in exemplars:
        label = e.example.label if e.example.label is not None else e.example.score
        table.add_row(shown(e.item_id), shown(", ".join(e.principles)), shown(label),
                      shown(clip(e.example.explanation or "–", 60)),
                      shown(", ".join(e.decided_by)))  # fmt: skip
    out.print(table)
    err.print(shown(f"{output}: lints clean; measure what it flips with: critic constitution "
                    f"diff {constitution} {output} --db {db} --impact"))  # fmt: skip


@app.command("candidates")
@reports_errors
def examples_candidates(queue: QueueOpt, db: DbOpt = DEFAULT_DB, json_out: JsonOpt = False) -> None:
    """The items an adjudicator marked as exemplar candidates in the review app."""
    from critic.workbench.exemplars import candidates

    with queue_store(db) as queues:
        found = candidates(queues, queue)
    if json_out:
        dump([{"item_id": t.item_id, "state": t.state, "label": t.final_label,
               "principles": list(t.principle_ids)} for t in found])  # fmt: skip
        return
    table = Table("item", "state", "decided", "principles", title=shown(f"candidates in {queue}"))
    for t in found:
        decided = "rejected" if t.rejected else (t.final_label or "–")
        table.add_row(shown(t.item_id), shown(t.state), shown(decided),
                      shown(", ".join(t.principle_ids)))  # fmt: skip
    out.print(table)
