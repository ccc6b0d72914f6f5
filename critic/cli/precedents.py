"""`critic precedents QUEUE ITEM`: the decided items most like one item, and how they were decided.

Item text and notes are printed as plain text (rich `Text`), never as console markup.
"""

from __future__ import annotations

from typing import Annotated, Literal

import typer
from rich.table import Table

from critic.cli.common import clip, dump, out, queue_store, reports_errors, shown
from critic.cli.options import DEFAULT_DB, DbOpt, JsonOpt


@reports_errors
def precedents(
    queue: Annotated[str, typer.Argument(help="The review queue.")],
    item: Annotated[str, typer.Argument(help="The item's id in that queue.")],
    k: Annotated[int, typer.Option("-k", min=1, max=50, help="How many.")] = 5,
    scope: Annotated[
        str,
        typer.Option(
            help="queue: decided items of this queue; constitution: of every queue "
            "drafted under the same constitution."
        ),
    ] = "queue",
    db: DbOpt = DEFAULT_DB,
    json_out: JsonOpt = False,
) -> None:
    """The decided items most similar to ITEM (ranked by the full-text engine), with their
    decision, who decided and the note: what the review app shows beside the item."""
    from critic.errors import UsageError

    if scope not in ("queue", "constitution"):
        raise UsageError(f"--scope {scope!r}", hint="use queue or constitution")
    chosen: Literal["queue", "constitution"] = "queue" if scope == "queue" else "constitution"
    with queue_store(db) as store:
        found = store.precedents(queue, item, k=k, scope=chosen) or []
    if json_out:
        dump([{"queue": p.queue, "item_id": p.item_id, "label": p.label, "rejected": p.rejected,
               "source": p.source, "decided_by": list(p.deciders), "notes": list(p.notes),
               "decided_at": p.decided_at.isoformat(),
               "text": "".join(s.text for s in p.snippet)} for p in found])  # fmt: skip
        return
    table = Table("#", "item", "decided", "by", "note", "text",
                  title=shown(f"precedents of {item} in {queue} ({scope})"))  # fmt: skip
    for n, p in enumerate(found, start=1):
        decided = "rejected" if p.rejected else (p.label if p.label is not None else "revision")
        where = p.item_id if p.queue == queue else f"{p.queue}/{p.item_id}"
        table.add_row(str(n), shown(where), shown(decided), shown(", ".join(p.deciders)),
                      shown(clip(" / ".join(p.notes), 50)),
                      shown(clip("".join(s.text for s in p.snippet), 70)))  # fmt: skip
    out.print(table)
    if not found:
        out.print(shown("no similar item has been decided yet"))
