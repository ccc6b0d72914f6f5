"""`critic queue gold ...`: gold items, whose known answers measure the reviewers
(`adjudication.gold`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from critic.cli.common import actor, dump, err, out, queue_store, reports_errors, shown
from critic.cli.options import DEFAULT_DB, DbOpt, JsonOpt, RunOpt
from critic.errors import InputError, UsageError

app = typer.Typer(help="Gold items: queued items with known answers that score reviewers.",
                  no_args_is_help=True)  # fmt: skip


def read_gold(path: Path) -> dict[str, str]:
    """`{item id: known answer}` from JSONL rows `{"id": ITEM_ID, "gold_label": LABEL}`; errors
    name the file and line."""
    found: dict[str, str] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InputError(f"{path}: cannot read the gold file: {exc.strerror}") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}:{number}: not JSON ({exc.msg})") from None
        if not isinstance(row, dict) or "id" not in row or "gold_label" not in row:
            raise InputError(
                f'{path}:{number}: a gold row is {{"id": ITEM_ID, "gold_label": LABEL}}'
            )
        item, label = str(row["id"]), row["gold_label"]
        if not isinstance(label, str | int) or isinstance(label, bool) or str(label) == "":
            raise InputError(f"{path}:{number}: gold_label must be a label, not {label!r}")
        if item in found and found[item] != str(label):
            raise InputError(f"{path}:{number}: item {item!r} has two gold labels")
        found[item] = str(label)
    if not found:
        raise InputError(
            f"{path}: no gold rows", hint='one JSON object per line: {"id", "gold_label"}'
        )
    return found


@app.command("add")
@reports_errors
def gold_add(
    queue: Annotated[str, typer.Argument(help="The queue.")],
    file: Annotated[Path, typer.Argument(help='JSONL rows {"id": ITEM_ID, "gold_label": LABEL}.')],
    db: DbOpt = DEFAULT_DB,
    run: RunOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Mark items of a run routed into the queue as gold, with their known answers. They keep
    their real critic draft, so reviewers cannot tell them from other items."""
    from critic.review import open_stores
    from critic.ship import origin_of
    from critic.store.selection import describe, select_runs

    answers = read_gold(file)
    with open_stores(db) as (store, queues):
        chosen = select_runs(store, run)[0]
        err.print(shown(f"using {describe(chosen)}", "dim"), highlight=False)
        origins = {origin_of(chosen.id, item): item for item in answers}
        found = queues.outcomes_for(list(origins))
        by_task: dict[str, str] = {}
        missing = []
        for origin, item in origins.items():
            here = [o for o in found.get(origin, []) if o.queue == queue]
            if not here:
                missing.append(item)
                continue
            by_task[here[0].item_id] = answers[item]
        if missing:
            raise UsageError(
                f"{len(missing)} item(s) of run {chosen.id} are not in queue {queue!r}: "
                + ", ".join(repr(m) for m in missing[:5]),
                hint=f"route them into it first: critic route --run {chosen.id} --queue {queue}",
            )
        changed = queues.add_gold(queue, by_task, by=actor())
    if json_out:
        dump({"queue": queue, "run": chosen.id, "gold": len(by_task), "changed": changed})
        return
    out.print(shown(f"{len(by_task)} gold item(s) in queue '{queue}' ({changed} new or changed)"))


@app.command("promote")
@reports_errors
def gold_promote(
    queue: Annotated[str, typer.Argument(help="The queue.")],
    db: DbOpt = DEFAULT_DB,
    items: Annotated[
        list[str] | None,
        typer.Option("--item", help="An adjudicated item to promote (repeatable; default all)."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Turn adjudicated items into gold: the adjudicator's label becomes the known answer."""
    with queue_store(db) as store:
        changed = store.promote_gold(queue, items, by=actor())
    if json_out:
        dump({"queue": queue, "promoted": changed})
        return
    out.print(shown(f"{changed} adjudicated item(s) of queue '{queue}' are gold now"))


@app.command("rate")
@reports_errors
def gold_rate(
    queue: Annotated[str, typer.Argument(help="The queue.")],
    rate: Annotated[float, typer.Argument(help="Share of each reviewer's items (0 to 0.5).")],
    db: DbOpt = DEFAULT_DB,
) -> None:
    """Serve gold items at about this share of each reviewer's items (0: none)."""
    with queue_store(db) as store:
        store.set_gold_rate(queue, rate, by=actor())
    out.print(shown(f"queue '{queue}': gold at about {rate:.0%} of each reviewer's items"))


@app.command("results")
@reports_errors
def gold_results(
    queue: Annotated[str, typer.Argument(help="The queue.")],
    db: DbOpt = DEFAULT_DB,
    json_out: JsonOpt = False,
) -> None:
    """Each reviewer's answers on gold items, scored against the known answers."""
    from rich.table import Table

    with queue_store(db) as store:
        results = store.gold_results(queue)
    if json_out:
        dump([{**r.__dict__, "decided_at": r.decided_at.isoformat()} for r in results])
        return
    table = Table("reviewer", "item", "answer", "gold", "correct", title=f"gold · {queue}")
    for r in results:
        table.add_row(shown(r.reviewer), shown(r.item_id), shown(r.answer or "(rejected)"),
                      shown(r.gold_label), "yes" if r.correct else "no")  # fmt: skip
    out.print(table)
