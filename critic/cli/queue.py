"""`critic queue ...`: create review queues; see their members, items, agreement and history.

The queue library (`adjudication`) does the work. Names, notes and everything an item or a model
wrote are printed as plain text (rich `Text`), never as console markup.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from adjudication.rules import MAX_LEASE_SECONDS, MAX_OVERLAP
from critic.cli.common import actor, dump, err, out, queue_store, reports_errors, shown
from critic.cli.gold import app as gold_app
from critic.cli.options import DEFAULT_DB, DbOpt, JsonOpt
from critic.errors import UsageError

if TYPE_CHECKING:
    from adjudication import Queue, QueueStats, User
    from adjudication.agreement import Agreement, AgreementReport

app = typer.Typer(help="Create review queues; see their items, agreement and history.",
                  no_args_is_help=True)  # fmt: skip
app.add_typer(gold_app, name="gold")


def _num(value: float | None, percent: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:.1%}" if percent else f"{value:.3f}"


def _labels(text: str | None) -> list[str] | None:
    if text is None:
        return None
    labels = [label.strip() for label in text.split(",")]
    if not all(labels):
        raise UsageError(
            f"--labels {text!r} has an empty label", hint="separate labels by commas: --labels a,b"
        )
    return labels


@app.command("create")
@reports_errors
def queue_create(
    name: Annotated[str, typer.Argument(help="The queue's name.")],
    db: DbOpt = DEFAULT_DB,
    overlap: Annotated[
        int,
        typer.Option(
            min=1,
            max=MAX_OVERLAP,
            help="Independent reviews per item; if they disagree, an adjudicator decides.",
        ),
    ] = 1,
    blind: Annotated[
        bool, typer.Option("--blind", help="Reviewers do not see the critic's draft.")
    ] = False,
    lease_seconds: Annotated[
        int,
        typer.Option(
            min=1,
            max=MAX_LEASE_SECONDS,
            help="How long a claim lasts unless the reviewer's screen renews it (at most a day).",
        ),
    ] = 600,
    labels: Annotated[
        str | None, typer.Option(help="The allowed labels, comma-separated (default: any label).")
    ] = None,
    ordinal: Annotated[
        bool,
        typer.Option(
            "--ordinal", help="The labels are a scale given lowest first (adds ordinal alpha)."
        ),
    ] = False,
    members: Annotated[
        list[str] | None,
        typer.Option(
            "--member",
            help="A user who may work in the queue (repeatable); reviewers and adjudicators see "
            "only their queues, admins all.",
        ),
    ] = None,
    gold_rate: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=0.5,
            help="About this share of each reviewer's items are gold items (critic queue gold).",
        ),
    ] = 0.0,
    json_out: JsonOpt = False,
) -> None:
    """Create a review queue; `critic route --queue NAME` fills it."""
    members = members or []
    with queue_store(db) as store:
        queue = store.create_queue(
            name,
            overlap=overlap,
            blind=blind,
            lease_seconds=lease_seconds,
            labels=_labels(labels),
            ordinal=ordinal,
            members=members,
            gold_rate=gold_rate,
            by=actor(),
        )
    if json_out:
        dump({**asdict(queue), "members": members})
        return
    shape = _shape(queue) + ("; members " + ", ".join(members) if members else "")
    out.print(shown(f"created queue '{queue.name}' ({shape})"), soft_wrap=True)
    if not members:
        hint = f"only admins can work in it until you add members: critic queue assign {name} USER"
        out.print(shown(hint, "dim"), soft_wrap=True)
    next_step = f"next: critic route --db {db} --policy policy.yaml --queue {queue.name}"
    out.print(shown(next_step, "dim"), soft_wrap=True)


def _shape(queue: Queue) -> str:
    """A queue's settings on one line: `overlap 2; lease 600 s; blind; labels a, b`."""
    shape = [f"overlap {queue.overlap}", f"lease {queue.lease_seconds} s"]
    if queue.blind:
        shape.append("blind")
    if queue.labels:
        shape.append(("scale " if queue.ordinal else "labels ") + ", ".join(queue.labels))
    if queue.hidden_fields:
        shape.append("hidden fields " + ", ".join(queue.hidden_fields))
    if queue.archived_at is not None:
        shape.append("archived")
    return "; ".join(shape)


def _names(text: str | None, flag: str) -> list[str] | None:
    """A comma-separated list; "" is the empty list (clears the setting)."""
    if text is None:
        return None
    names = [part.strip() for part in text.split(",")]
    if names == [""]:
        return []
    if not all(names):
        raise UsageError(
            f"{flag} {text!r} has an empty name", hint=f"separate by commas: {flag} a,b"
        )
    return names


@app.command("edit")
@reports_errors
def queue_edit(
    name: Annotated[str, typer.Argument(help="The queue's name.")],
    db: DbOpt = DEFAULT_DB,
    labels: Annotated[
        str | None,
        typer.Option(
            help="The new label list, comma-separated. Once decisions use the labels, only "
            "additions are allowed; labels in use are always kept.",
        ),
    ] = None,
    overlap: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=MAX_OVERLAP,
            help="Reviews per item. Open items need the new number; lowering it settles the "
            "open items that already have enough reviews.",
        ),
    ] = None,
    blind: Annotated[
        bool | None,
        typer.Option(
            "--blind/--not-blind",
            help="Reviewers pick a label before they see the critic's draft. Applies to items "
            "nobody has claimed yet; claimed items keep theirs.",
        ),
    ] = None,
    lease_seconds: Annotated[
        int | None,
        typer.Option(min=1, max=MAX_LEASE_SECONDS, help="How long a claim lasts unrenewed."),
    ] = None,
    description: Annotated[
        str | None,
        typer.Option(help='What the queue is for, shown to reviewers ("" clears it).'),
    ] = None,
    hide_fields: Annotated[
        str | None,
        typer.Option(
            "--hide-fields",
            help="Item fields reviewers are not shown, comma-separated, e.g. a dataset's gold "
            'column ("" shows every field). They stay in the items and in exports.',
        ),
    ] = None,
    gold_rate: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=0.5,
            help="About this share of each reviewer's items are gold items (critic queue gold).",
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Change a queue's labels, overlap, blindness, lease, description, hidden fields or gold
    rate.

    Every change is recorded in the queue's history (`queue_edited`, `gold_rate_set`)."""
    with queue_store(db) as store:
        if gold_rate is not None:
            store.set_gold_rate(name, gold_rate, by=actor())
        queue = store.edit_queue(
            name,
            labels=_labels(labels),
            overlap=overlap,
            blind=blind,
            lease_seconds=lease_seconds,
            description=description,
            hidden_fields=_names(hide_fields, "--hide-fields"),
            by=actor(),
        )
    if json_out:
        dump(asdict(queue))
        return
    out.print(shown(f"queue '{queue.name}': {_shape(queue)}"), soft_wrap=True)
    if queue.description:
        out.print(shown(queue.description, "dim"), soft_wrap=True)


@app.command("archive")
@reports_errors
def queue_archive(
    name: Annotated[str, typer.Argument(help="The queue's name.")],
    db: DbOpt = DEFAULT_DB,
) -> None:
    """Hide a queue: no new items or claims; its decisions and history stay (unarchive undoes)."""
    with queue_store(db) as store:
        store.archive_queue(name, by=actor())
    out.print(shown(f"archived queue '{name}' (critic queue unarchive {name} brings it back)"),
              soft_wrap=True)  # fmt: skip


@app.command("unarchive")
@reports_errors
def queue_unarchive(
    name: Annotated[str, typer.Argument(help="The queue's name.")],
    db: DbOpt = DEFAULT_DB,
) -> None:
    """Bring an archived queue back into use."""
    with queue_store(db) as store:
        store.archive_queue(name, archived=False, by=actor())
    out.print(shown(f"queue '{name}' is in use again"), soft_wrap=True)


@app.command("delete")
@reports_errors
def queue_delete(
    name: Annotated[str, typer.Argument(help="The queue's name.")],
    db: DbOpt = DEFAULT_DB,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Delete a queue that has items, with its items, claims and decisions (exports "
            "then no longer see them). Asks you to type the queue's name.",
        ),
    ] = False,
    yes: Annotated[
        bool, typer.Option("--yes", help="With --force: do not ask (for scripts).")
    ] = False,
) -> None:
    """Delete a queue: an empty one at once, one with items only with --force."""
    with queue_store(db) as store:
        if force and not yes:
            tasks = store.stats(name).tasks
            if tasks:
                _confirm_delete(name, tasks)
        gone = store.delete_queue(name, force=force, by=actor())
    text = f"deleted queue '{gone.queue}'"
    if gone.items:
        text += f" with {gone.items} item(s) and {gone.decisions} decision(s)"
    out.print(shown(text), soft_wrap=True)


def _confirm_delete(name: str, tasks: int) -> None:
    """Ask for the queue's name on a terminal; refuse without one (use --yes in scripts)."""
    if not sys.stdin.isatty():
        raise UsageError(
            f"queue '{name}' has {tasks} item(s); deleting it with --force needs a "
            "confirmation, and there is no terminal to ask on",
            hint=f"add --yes: critic queue delete {name} --force --yes",
        )
    err.print(shown(f"queue '{name}' has {tasks} item(s); their decisions go with them."))
    typed = input(f"type the queue's name ({name}) to delete it: ").strip()
    if typed != name:
        raise UsageError("not deleted: the name typed does not match", hint="nothing changed")


def _print_membership(
    queue: str, verb: str, asked: list[str], changed: list[str], unchanged: str, now: list[User]
) -> None:
    """`queue 'q': added ann (bob already in)` and who the members are now."""
    text = shown(f"queue '{queue}': {verb} {', '.join(changed) or 'nobody'}")
    rest = [u for u in dict.fromkeys(asked) if u not in changed]
    if rest:
        text.append_text(shown(f" ({', '.join(rest)} {unchanged})"))
    out.print(text, soft_wrap=True)
    names = ", ".join(u.name for u in now) or "none"
    out.print(shown(f"members now: {names}", "dim"), soft_wrap=True)


@app.command("assign")
@reports_errors
def queue_assign(
    name: Annotated[str, typer.Argument(help="The queue's name.")],
    users: Annotated[list[str], typer.Argument(help="Users who may work in it from now on.")],
    db: DbOpt = DEFAULT_DB,
) -> None:
    """Let users work in a queue: reviewers and adjudicators see only the queues they are in."""
    with queue_store(db) as store:
        added = store.add_members(name, users, by=actor())
        _print_membership(name, "added", users, added, "already in", store.members(name))


@app.command("unassign")
@reports_errors
def queue_unassign(
    name: Annotated[str, typer.Argument(help="The queue's name.")],
    users: Annotated[list[str], typer.Argument(help="Users who no longer work in it.")],
    db: DbOpt = DEFAULT_DB,
) -> None:
    """Stop users working in a queue; items they hold in it go back to the pool at once."""
    with queue_store(db) as store:
        removed = store.remove_members(name, users, by=actor())
        _print_membership(name, "removed", users, removed, "were not members", store.members(name))


@app.command("members")
@reports_errors
def queue_members(
    name: Annotated[str, typer.Argument(help="The queue's name.")],
    db: DbOpt = DEFAULT_DB,
    json_out: JsonOpt = False,
) -> None:
    """Who works in a queue (admins work in every queue and are not listed)."""
    with queue_store(db) as store:
        members = store.members(name)
    if json_out:
        dump([{"name": u.name, "role": u.role, "active": u.active} for u in members])
        return
    if not members:
        out.print(
            shown(f"queue '{name}' has no members: add some with critic queue assign {name} USER"),
            soft_wrap=True,
        )
        return
    table = Table("user", "role", "active", title=shown(f"members of {name}"))
    for u in members:
        table.add_row(shown(u.name), u.role, "yes" if u.active else "no")
    out.print(table)


@app.command("list")
@reports_errors
def queue_list(
    db: DbOpt = DEFAULT_DB,
    archived: Annotated[bool, typer.Option("--archived", help="List archived queues too.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Every queue in use with its settings and how many items are open and done."""
    with queue_store(db) as store:
        found = [q for q in store.queues() if archived or q.archived_at is None]
        rows = [(q, store.stats(q.name)) for q in found]
    if json_out:
        dump([{**asdict(q), "tasks": s.tasks, "open": s.pending + s.adjudication,
                "done": s.done} for q, s in rows])  # fmt: skip
        return
    if not rows:
        out.print(
            Text("no queues yet; create one: critic queue create NAME --overlap 2"), soft_wrap=True
        )
        return
    table = Table("queue", "overlap", "blind", "lease", "labels", "items", "open", "done",
                  title="critic queues")  # fmt: skip
    for q, s in rows:
        table.add_row(
            shown(q.name),
            str(q.overlap),
            "yes" if q.blind else "no",
            f"{q.lease_seconds} s" + (" · archived" if q.archived_at else ""),
            shown(", ".join(q.labels) if q.labels else "any"),
            str(s.tasks),
            str(s.pending + s.adjudication),
            str(s.done),
        )
    out.print(table)


def _agreement_json(report: AgreementReport) -> dict[str, Any]:
    return {
        "overall": asdict(report.overall),
        "critic_vs_human": asdict(report.critic_vs_human),
        "pairs": [asdict(pair) for pair in report.pairs.values()],
        "by_principle": {p: asdict(a) for p, a in report.by_principle.items()},
        "by_reviewer": {r: asdict(a) for r, a in report.by_reviewer.items()},
    }


def _agreement_cells(a: Agreement) -> list[str]:
    return [str(a.items), _num(a.percent, True), _num(a.fleiss_kappa), _num(a.alpha_nominal),
            _num(a.alpha_ordinal)]  # fmt: skip


def _stats_tables(name: str, stats: QueueStats, report: AgreementReport) -> list[Table]:
    counts = Table(title=shown(f"critic queue stats · {name}"), show_header=False, box=None)
    counts.add_column(style="bold")
    counts.add_column()
    for label, value in [
        ("items", stats.tasks), ("pending review", stats.pending),
        ("awaiting adjudication", stats.adjudication), ("done", stats.done),
        ("rejected", stats.rejected), ("claimed now", stats.claimed),
        ("reviews", stats.reviews), ("adjudications", stats.adjudications),
    ]:  # fmt: skip
        counts.add_row(label, str(value))
    for action, count in stats.actions.items():
        counts.add_row(shown(f"  {action}"), str(count))
    counts.add_row("override rate (edit or reject)", _num(stats.override_rate, True))
    counts.add_row("escalation rate", _num(stats.escalation_rate, True))
    seconds = "–" if stats.mean_seconds is None else f"{stats.mean_seconds:.1f} s"
    counts.add_row("time per review", seconds)

    agreement = Table(
        "ratings of", "items", "agree", "Fleiss' κ", "Krippendorff's α", "α ordinal",
        title="agreement (this round, items with 2+ reviews)",
    )  # fmt: skip
    agreement.add_row("all reviewers", *_agreement_cells(report.overall))
    for principle, summary in sorted(report.by_principle.items()):
        agreement.add_row(shown(f"principle {principle}"), *_agreement_cells(summary))
    tables = [counts, agreement]

    pairs = Table("a", "b", "items", "agree", "Cohen's κ", title="pairs")
    for pair in [report.critic_vs_human, *report.pairs.values()]:
        pairs.add_row(shown(pair.a), shown(pair.b), str(pair.items), _num(pair.percent, True),
                      _num(pair.kappa))  # fmt: skip
    tables.append(pairs)
    if report.by_reviewer:
        reviewers = Table("reviewer", "items", "agrees with others", "with final label",
                          "with critic", title="per reviewer")  # fmt: skip
        for r in report.by_reviewer.values():
            reviewers.add_row(shown(r.reviewer), str(r.items), _num(r.with_others, True),
                              _num(r.with_final, True), _num(r.with_critic, True))  # fmt: skip
        tables.append(reviewers)
    return tables


@app.command("stats")
@reports_errors
def queue_stats(
    name: Annotated[str, typer.Argument(help="The queue's name.")],
    db: DbOpt = DEFAULT_DB,
    json_out: JsonOpt = False,
) -> None:
    """Counts, override rates and agreement (Cohen's κ, Fleiss' κ, Krippendorff's α).

    Agreement is given overall, per principle, per reviewer pair and reviewer,
    and for the critic versus the humans.
    """
    with queue_store(db) as store:
        stats = store.stats(name)
        report = store.agreement(name)
    if json_out:
        dump({**asdict(stats), "agreement": _agreement_json(report)})
        return
    for table in _stats_tables(name, stats, report):
        out.print(table)


def _shown(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _change(before: Mapping[str, Any] | None, after: Mapping[str, Any] | None) -> str:
    """What an event changed: `key: old → new` for each key that differs."""
    before, after = before or {}, after or {}
    parts = []
    for key in dict.fromkeys([*before, *after]):
        if key not in after:
            parts.append(f"{key}: {_shown(before[key])} → –")
        elif key not in before:
            parts.append(f"{key}: {_shown(after[key])}")
        elif before[key] != after[key]:
            parts.append(f"{key}: {_shown(before[key])} → {_shown(after[key])}")
    return ", ".join(parts)


@app.command("history")
@reports_errors
def queue_history(
    name: Annotated[str, typer.Argument(help="The queue's name.")],
    item_id: Annotated[
        str | None,
        typer.Argument(help="The item's id; without it, the queue's own changes."),
    ] = None,
    db: DbOpt = DEFAULT_DB,
    json_out: JsonOpt = False,
) -> None:
    """Every event of one item (or of the queue itself: created, edited, archived, members),
    oldest first: who did what, when, and what it changed."""
    from adjudication.terminal import inert

    with queue_store(db) as store:
        events = store.history(name, item_id) if item_id else store.queue_events(name)
    if json_out:
        dump([asdict(event) for event in events])
        return
    title = inert(f"history of {item_id} in {name}" if item_id else f"changes of queue {name}")
    table = Table("#", "at", "who", "event", "change", title=title)
    for event in events:
        table.add_row(
            str(event.id),
            event.at.strftime("%Y-%m-%d %H:%M:%S"),
            inert(event.actor or "–"),
            event.kind,
            inert(_change(event.before, event.after)),
        )
    out.print(table)


# -- reviewer quality, the label model, importing decisions -------------------------------------


def _share(share: Any) -> str:
    if share is None or not share.n:
        return "–"
    return f"{share.rate:.0%} of {share.n}"


def _raters_json(report: Any) -> dict[str, Any]:
    reviewers = []
    for r in report.reviewers:
        reviewers.append({
            "name": r.name, "decisions": r.decisions, "adjudications": r.adjudications,
            "imported": r.imported, "gold": asdict(r.gold),
            "kappa": r.kappa, "overlapped": r.overlapped,
            "peers": [asdict(p) for p in r.peers],
            "with_adjudicated": {"n": r.with_adjudicated.n, "agree": r.with_adjudicated.hits,
                                 "rate": r.with_adjudicated.rate},
            "model_accuracy": r.model_accuracy, "model_items": r.model_items,
            "median_seconds": r.median_seconds, "timed": r.timed,
            "with_critic": None if r.with_critic is None else {
                "n": r.with_critic.n, "same": r.with_critic.hits, "rate": r.with_critic.rate},
            "baseline": None if r.baseline is None else asdict(r.baseline),
            "withdrawn": r.withdrawn, "undo_rate": r.undo_rate,
            "flags": [asdict(f) for f in r.flags],
        })  # fmt: skip
    return {"queue": report.queue, "blind": report.blind, "reviewers": reviewers}


@app.command("raters")
@reports_errors
def queue_raters(
    name: Annotated[str, typer.Argument(help="The queue's name.")],
    db: DbOpt = DEFAULT_DB,
    json_out: JsonOpt = False,
) -> None:
    """Reviewer quality: gold accuracy, κ with peers, timing, critic-match rate, undo rate, flags.

    Flags: low_gold_accuracy, low_agreement, rubber_stamp, too_fast (README: "Reviewer quality").
    """
    from adjudication.evidence import rater_report

    with queue_store(db) as store:
        report = rater_report(store, name)
    if json_out:
        dump(_raters_json(report))
        return
    if not report.reviewers:
        out.print(shown(f"queue '{name}' has no decisions yet"), soft_wrap=True)
        return
    title = shown(f"reviewers of {name}")
    table = Table("reviewer", "decisions", "gold (95%)", "κ", "adjudicated", "model acc.",
                  "median", "critic's label", "undo", title=title)  # fmt: skip
    notes = []
    for r in report.reviewers:
        g = r.gold
        gold = "–" if not g.n else f"{g.correct}/{g.n} ({g.low:.0%}–{g.high:.0%})"
        decided = str(r.decisions) + (f" ({r.imported} imp.)" if r.imported else "")
        seconds = "–" if r.median_seconds is None else f"{r.median_seconds:.1f} s"
        critic = "blind" if r.with_critic is None else _share(r.with_critic)
        table.add_row(shown(r.name), decided, gold, _num(r.kappa), _share(r.with_adjudicated),
                      _num(r.model_accuracy), seconds, critic, _num(r.undo_rate, True))  # fmt: skip
        if r.baseline is not None and r.with_critic is not None:
            b = r.baseline
            notes.append(shown(f"{r.name}: critic's label baseline {b.rate:.0%} "
                               f"({b.source}, n={b.n})", "dim"))  # fmt: skip
        notes += [shown(f"{r.name}: {f.name}: {f.evidence}", "bold red") for f in r.flags]
    out.print(table)
    for note in notes:
        out.print(note, soft_wrap=True)
    if not any(r.flags for r in report.reviewers):
        out.print(shown("no flags", "green"))


def _labels_json(queue: str, model: Any) -> dict[str, Any]:
    return {
        "queue": queue, "classes": list(model.classes), "priors": model.priors,
        "iterations": model.iterations, "converged": model.converged,
        "raters": [asdict(r) for r in model.raters.values()],
        "items": [asdict(i) for i in model.items.values()],
    }  # fmt: skip


@app.command("labels")
@reports_errors
def queue_labels(
    name: Annotated[str, typer.Argument(help="The queue's name.")],
    db: DbOpt = DEFAULT_DB,
    critics_as_raters: Annotated[
        bool,
        typer.Option(
            "--critics-as-raters",
            help="The critic's draft label joins as one more rater, named 'critic'.",
        ),
    ] = False,
    show_all: Annotated[
        bool, typer.Option("--all", help="List every item, not only where the model departs.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """The label model (Dawid–Skene): each reviewer's confusion matrix, and each item's label.

    Fitted on the latest round's reviews; a rejection is a class of its own, <rejected>. Lists
    the items where the model's label departs from the majority vote (all with --all).
    """
    from adjudication.evidence import label_model

    with queue_store(db) as store:
        model = label_model(store, name, critics_as_raters=critics_as_raters)
    if model is None:
        if json_out:
            dump({"queue": name, "classes": [], "raters": [], "items": []})
        else:
            out.print(shown(f"queue '{name}' has no reviews yet"), soft_wrap=True)
        return
    if json_out:
        dump(_labels_json(name, model))
        return
    raters = Table("rater", "ratings", "accuracy", *[f"P(· | {c})" for c in model.classes],
                   title=shown(f"label model of {name}: {len(model.items)} items, "
                               f"{model.iterations} EM steps"))  # fmt: skip
    for r in model.raters.values():
        rows = [" ".join(f"{r.confusion[c][g]:.2f}" for g in model.classes) for c in model.classes]
        raters.add_row(shown(r.rater), str(r.ratings), _num(r.accuracy), *rows)
    out.print(raters)
    priors = ", ".join(f"{c} {p:.2f}" for c, p in model.priors.items())
    out.print(shown(f"class priors: {priors}; each row of P(· | true) lists the given labels "
                    f"in the order {', '.join(model.classes)}", "dim"), soft_wrap=True)  # fmt: skip
    departs = [i for i in model.items.values() if i.disagrees_with_majority]
    out.print(shown(f"{len(departs)} of {len(model.items)} items: the model's label departs "
                    "from the majority vote"), soft_wrap=True)  # fmt: skip
    listed = list(model.items.values()) if show_all else departs
    if listed:
        items = Table("item", "ratings", "majority", "model label", "probability")
        for i in listed:
            label = i.label + (" (gold)" if i.gold else "")
            items.add_row(shown(i.item_id), str(i.ratings), shown(i.majority or "tie"),
                          shown(label), f"{i.probability:.3f}")  # fmt: skip
        out.print(items)


@app.command("import")
@reports_errors
def queue_import(
    name: Annotated[str, typer.Argument(help="The queue's name.")],
    source: Annotated[str, typer.Argument(help="A .jsonl, .csv or .parquet file of decisions.")],
    label_fields: Annotated[
        list[str],
        typer.Option(
            "--label-field",
            help="A column holding labels (repeatable). Without --reviewer-field each column is "
            "one reviewer named after it; a column holding a list is one reviewer per position "
            "(FIELD.1, FIELD.2, ...).",
        ),
    ],
    db: DbOpt = DEFAULT_DB,
    id_field: Annotated[str, typer.Option(help="The column holding the item's id.")] = "id",
    reviewer_field: Annotated[
        str | None,
        typer.Option(
            help="A column naming who gave the row's label (one decision per row), or a list of "
            "names beside a list of labels."
        ),
    ] = None,
    label_map: Annotated[
        str | None,
        typer.Option(help='Rename the file\'s labels, e.g. "0=tie,1=a,2=b" (<rejected> rejects).'),
    ] = None,
    critic_field: Annotated[
        str | None,
        typer.Option(help="A column holding a model's label, the critic label of new items."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Load decisions several annotators made elsewhere, so agreement, reviewer quality and the
    label model use them. Items the queue lacks are added with the row's fields. Running it
    again adds nothing; imported decisions are marked (an `imported` event per item)."""
    from adjudication.importing import ImportSpec, import_decisions, parse_label_map, plan
    from critic.errors import InputError
    from critic.items import BadRow, Fields, load_items

    spec = ImportSpec(
        label_fields=tuple(label_fields),
        reviewer_field=reviewer_field,
        label_map=None if label_map is None else parse_label_map(label_map),
        critic_field=critic_field,
    )
    rows = []
    # The id is the one field every row needs; label columns may be empty (no decision).
    for entry in load_items(source, Fields(id=id_field, text=id_field), check_duplicates=False):
        if isinstance(entry, BadRow):
            raise InputError(str(entry), hint="fix the row; nothing was imported")
        rows.append((entry.source, entry.id, entry.row))
    found = plan(rows, spec)
    with queue_store(db) as store:
        result = import_decisions(store, name, found, by=actor())
    if json_out:
        dump(asdict(result))
        return
    summary = (
        f"queue '{name}': {result.added} decision(s) imported on {result.items} item(s) "
        f"({result.items_added} new); {result.existing} already there"
    )
    if result.skipped:
        summary += f"; {result.skipped} left out (their items were already settled)"
    out.print(shown(summary), soft_wrap=True)
    after = f"{result.settled} item(s) settled, {result.to_adjudicate} to adjudicate"
    if result.users_added:
        after += f"; new reviewers: {', '.join(result.users_added)}"
    out.print(shown(after, "dim"), soft_wrap=True)
    out.print(shown(f"next: critic queue raters {name} --db {db}", "dim"), soft_wrap=True)
