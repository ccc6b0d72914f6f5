"""`critic queue ...`, `critic users ...` and `critic review next`: review queues from the shell.

Importing this module registers the three command groups on `critic.cli.app`; `critic.cli`
imports it. The queue library (`adjudication`) does the work. Names, notes and everything an item
or a model wrote are printed as plain text (rich `Text`), never as console markup.
"""

from __future__ import annotations

import getpass
import json
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, cast

import typer
from rich.table import Table
from rich.text import Text

from critic.cli import DbOpt, app, out, reports_errors, review_app
from critic.errors import CriticError, MissingExtraError, UsageError

if TYPE_CHECKING:
    from adjudication import QueueStats, Role, Store, Task, User
    from adjudication.agreement import Agreement, AgreementReport
    from adjudication.terminal import Session

queue_app = typer.Typer(help="Create review queues; see their items, agreement and history.",
                        no_args_is_help=True)  # fmt: skip
users_app = typer.Typer(help="Reviewers, adjudicators and admins.", no_args_is_help=True)
app.add_typer(queue_app, name="queue")
app.add_typer(users_app, name="users")

JsonOpt = typer.Option(False, "--json", help="Print the result as JSON.")


@contextmanager
def _store(db: str) -> Iterator[Store]:
    from adjudication import open_store

    with open_store(db) as store:
        yield store


def _actor() -> str:
    """Who ran the command, for the history: the OS user (`cli:` sets it apart from reviewers)."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no name for this uid, as in some containers
        return "cli"


def _num(value: float | None, percent: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:.1%}" if percent else f"{value:.3f}"


def _dump(value: Any) -> None:
    print(json.dumps(value, indent=2, default=str))


def _labels(text: str | None) -> list[str] | None:
    if text is None:
        return None
    labels = [label.strip() for label in text.split(",")]
    if not all(labels):
        raise UsageError(
            f"--labels {text!r} has an empty label", hint="separate labels by commas: --labels a,b"
        )
    return labels


# -- critic queue -----------------------------------------------------------------------------


@queue_app.command("create")
@reports_errors
def queue_create(
    name: str = typer.Argument(..., help="The queue's name."),
    db: str = DbOpt,
    overlap: int = typer.Option(
        1, min=1, help="Independent reviews per item; if they disagree, an adjudicator decides."
    ),
    blind: bool = typer.Option(False, "--blind", help="Reviewers do not see the critic's draft."),
    lease_seconds: int = typer.Option(
        600, min=1, help="How long a claim lasts unless the reviewer's screen renews it."
    ),
    labels: str | None = typer.Option(
        None, help="The allowed labels, comma-separated (default: any label)."
    ),
    ordinal: bool = typer.Option(
        False, "--ordinal", help="The labels are a scale given lowest first (adds ordinal alpha)."
    ),
    members: list[str] = typer.Option(
        [],
        "--member",
        help="A user who may work in the queue (repeatable); reviewers and adjudicators see "
        "only their queues, admins all.",
    ),
    json_out: bool = JsonOpt,
) -> None:
    """Create a review queue; `critic route --queue NAME` fills it."""
    with _store(db) as store:
        queue = store.create_queue(
            name,
            overlap=overlap,
            blind=blind,
            lease_seconds=lease_seconds,
            labels=_labels(labels),
            ordinal=ordinal,
            members=members,
            by=_actor(),
        )
    if json_out:
        _dump({**asdict(queue), "members": members})
        return
    shape = [f"overlap {queue.overlap}", f"lease {queue.lease_seconds} s"]
    if queue.blind:
        shape.append("blind")
    if queue.labels:
        shape.append(("scale " if queue.ordinal else "labels ") + ", ".join(queue.labels))
    if members:
        shape.append("members " + ", ".join(members))
    out.print(Text(f"created queue '{queue.name}' ({'; '.join(shape)})"), soft_wrap=True)
    if not members:
        hint = f"only admins can work in it until you add members: critic queue assign {name} USER"
        out.print(Text(hint, "dim"), soft_wrap=True)
    next_step = f"next: critic route --db {db} --policy policy.yaml --queue {queue.name}"
    out.print(Text(next_step, "dim"), soft_wrap=True)


def _print_membership(
    queue: str, verb: str, asked: list[str], changed: list[str], unchanged: str, now: list[User]
) -> None:
    """`queue 'q': added ann (bob already in)` and who the members are now."""
    text = Text(f"queue '{queue}': {verb} {', '.join(changed) or 'nobody'}")
    rest = [u for u in dict.fromkeys(asked) if u not in changed]
    if rest:
        text.append(f" ({', '.join(rest)} {unchanged})")
    out.print(text, soft_wrap=True)
    names = ", ".join(u.name for u in now) or "none"
    out.print(Text(f"members now: {names}", "dim"), soft_wrap=True)


@queue_app.command("assign")
@reports_errors
def queue_assign(
    name: str = typer.Argument(..., help="The queue's name."),
    users: list[str] = typer.Argument(..., help="Users who may work in it from now on."),
    db: str = DbOpt,
) -> None:
    """Let users work in a queue: reviewers and adjudicators see only the queues they are in."""
    with _store(db) as store:
        added = store.add_members(name, users, by=_actor())
        _print_membership(name, "added", users, added, "already in", store.members(name))


@queue_app.command("unassign")
@reports_errors
def queue_unassign(
    name: str = typer.Argument(..., help="The queue's name."),
    users: list[str] = typer.Argument(..., help="Users who no longer work in it."),
    db: str = DbOpt,
) -> None:
    """Stop users working in a queue; items they hold in it go back to the pool at once."""
    with _store(db) as store:
        removed = store.remove_members(name, users, by=_actor())
        _print_membership(name, "removed", users, removed, "were not members", store.members(name))


@queue_app.command("members")
@reports_errors
def queue_members(
    name: str = typer.Argument(..., help="The queue's name."),
    db: str = DbOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Who works in a queue (admins work in every queue and are not listed)."""
    with _store(db) as store:
        members = store.members(name)
    if json_out:
        _dump([{"name": u.name, "role": u.role, "active": u.active} for u in members])
        return
    if not members:
        out.print(
            Text(f"queue '{name}' has no members: add some with critic queue assign {name} USER"),
            soft_wrap=True,
        )
        return
    table = Table("user", "role", "active", title=f"members of {name}")
    for u in members:
        table.add_row(Text(u.name), u.role, "yes" if u.active else "no")
    out.print(table)


@queue_app.command("list")
@reports_errors
def queue_list(db: str = DbOpt, json_out: bool = JsonOpt) -> None:
    """Every queue with its settings and how many items are open and done."""
    with _store(db) as store:
        rows = [(q, store.stats(q.name)) for q in store.queues()]
    if json_out:
        _dump([{**asdict(q), "tasks": s.tasks, "open": s.pending + s.adjudication,
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
            Text(q.name),
            str(q.overlap),
            "yes" if q.blind else "no",
            f"{q.lease_seconds} s",
            Text(", ".join(q.labels) if q.labels else "any"),
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
    counts = Table(title=f"critic queue stats · {name}", show_header=False, box=None)
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
        counts.add_row(f"  {action}", str(count))
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
        agreement.add_row(Text(f"principle {principle}"), *_agreement_cells(summary))
    tables = [counts, agreement]

    pairs = Table("a", "b", "items", "agree", "Cohen's κ", title="pairs")
    for pair in [report.critic_vs_human, *report.pairs.values()]:
        pairs.add_row(Text(pair.a), Text(pair.b), str(pair.items), _num(pair.percent, True),
                      _num(pair.kappa))  # fmt: skip
    tables.append(pairs)
    if report.by_reviewer:
        reviewers = Table("reviewer", "items", "agrees with others", "with final label",
                          "with critic", title="per reviewer")  # fmt: skip
        for r in report.by_reviewer.values():
            reviewers.add_row(Text(r.reviewer), str(r.items), _num(r.with_others, True),
                              _num(r.with_final, True), _num(r.with_critic, True))  # fmt: skip
        tables.append(reviewers)
    return tables


@queue_app.command("stats")
@reports_errors
def queue_stats(
    name: str = typer.Argument(..., help="The queue's name."),
    db: str = DbOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Counts, override rates and agreement (Cohen's κ, Fleiss' κ, Krippendorff's α).

    Agreement is given overall, per principle, per reviewer pair and reviewer,
    and for the critic versus the humans.
    """
    with _store(db) as store:
        stats = store.stats(name)
        report = store.agreement(name)
    if json_out:
        _dump({**asdict(stats), "agreement": _agreement_json(report)})
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


@queue_app.command("history")
@reports_errors
def queue_history(
    name: str = typer.Argument(..., help="The queue's name."),
    item_id: str = typer.Argument(..., help="The item's id."),
    db: str = DbOpt,
    json_out: bool = JsonOpt,
) -> None:
    """Every event of one item, oldest first: who did what, when, and what it changed."""
    from adjudication.terminal import inert

    with _store(db) as store:
        events = store.history(name, item_id)
    if json_out:
        _dump([asdict(event) for event in events])
        return
    title = inert(f"history of {item_id} in {name}")
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


# -- critic users -----------------------------------------------------------------------------


def _hash_password(password: str) -> str:
    try:
        from adjudication.web import hash_password
    except ImportError as exc:
        raise MissingExtraError(
            "a web app password", exc.name or "argon2-cffi", "pip install 'critic[web]'"
        ) from None
    return hash_password(password)  # the web app checks passwords against this same hash


@users_app.command("add")
@reports_errors
def users_add(
    name: str = typer.Argument(..., help="Login name."),
    role: str = typer.Option("reviewer", help="reviewer, adjudicator or admin."),
    db: str = DbOpt,
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="Read a web app password from stdin (stored argon2-hashed)."
    ),
    queues: list[str] = typer.Option(
        [], "--queue", help="A queue they work in (repeatable); admins work in all queues."
    ),
    json_out: bool = JsonOpt,
) -> None:
    """Add a user who can review (adjudicators also settle disagreements)."""
    password_hash = None
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise UsageError(
                "--password-stdin read an empty password",
                hint=f"pipe it in: printf '%s\\n' \"$PASSWORD\" | critic users add {name} "
                "--password-stdin",
            )
        password_hash = _hash_password(password)
    with _store(db) as store:
        # The store checks the role and suggests the closest one on a typo.
        user = store.add_user(
            name, cast("Role", role), password_hash=password_hash, queues=queues, by=_actor()
        )
    if json_out:
        _dump({k: v for k, v in asdict(user).items() if k != "password_hash"}
              | {"password": user.password_hash is not None, "queues": queues})  # fmt: skip
        return
    password_note = " with a web password" if password_hash else ""
    where = f", working in {', '.join(queues)}" if queues else ""
    out.print(Text(f"added {user.role} '{user.name}'{password_note}{where}"), soft_wrap=True)
    if not queues and user.role != "admin":
        hint = f"they see no queue until added to one: critic queue assign QUEUE {user.name}"
        out.print(Text(hint, "dim"), soft_wrap=True)


@users_app.command("list")
@reports_errors
def users_list(db: str = DbOpt, json_out: bool = JsonOpt) -> None:
    """Every user with role, status and whether a web password is set (never the hash)."""
    with _store(db) as store:
        users = store.users()
        works_in = store.memberships()
    if json_out:
        _dump([{"name": u.name, "role": u.role, "active": u.active,
                "password": u.password_hash is not None, "created_at": u.created_at,
                "queues": None if u.role == "admin" else works_in[u.name]}
               for u in users])  # fmt: skip
        return
    table = Table("user", "role", "queues", "active", "password", "added", title="critic users")
    for u in users:
        where = "all" if u.role == "admin" else ", ".join(works_in[u.name]) or "–"
        table.add_row(Text(u.name), u.role, Text(where), "yes" if u.active else "no",
                      "set" if u.password_hash else "–",
                      u.created_at.strftime("%Y-%m-%d %H:%M"))  # fmt: skip
    out.print(table)


# -- critic review next -----------------------------------------------------------------------


def _principle_texts(db: str) -> Callable[[Task], Mapping[str, str]]:
    """Principle texts from the constitution each draft was made with (read once per hash)."""
    cache: dict[str, dict[str, str]] = {}

    def texts(task: Task) -> Mapping[str, str]:
        digest = task.draft.get("constitution")
        if not isinstance(digest, str) or not digest:
            return {}
        if digest not in cache:
            from critic.constitution import parse_constitution
            from critic.store import open_store as open_runs

            runs = open_runs(db)
            try:
                content = runs.constitution_content(digest)
                principles = [] if content is None else parse_constitution(content).principles
                cache[digest] = {p.id: p.text for p in principles}
            except CriticError:
                cache[digest] = {}  # the screen then says the text is not stored
            finally:
                runs.close()
        return cache[digest]

    return texts


def _session_summary(session: Session, user: str, queue: str) -> Text:
    from adjudication.terminal import clean

    decided = sum(session.decided.values())
    actions = ", ".join(f"{a} {n}" for a, n in session.decided.items())
    text = Text(f"{user}: {decided} decided" + (f" ({actions})" if actions else ""))
    if session.undone:
        text.append(f", {session.undone} undone")
    if session.skipped:
        text.append(f", {session.skipped} skipped")
    if session.lost:
        text.append(f", {session.lost} lost to an expired lease")
    if session.finished:
        text.append(f"; nothing left for {user} in queue '{queue}'")
    elif session.released is not None:
        text.append(f"; stopped, item '{clean(session.released)}' went back to the queue")
    return text


@review_app.command("next")
@reports_errors
def review_next(
    queue: str = typer.Option(..., "--queue", help="The queue to review."),
    user: str = typer.Option(..., "--as", help="Your user name (see `critic users list`)."),
    db: str = DbOpt,
) -> None:
    """Review items one by one, with single keys, until none is left for you.

    Keys: a accept · e edit · r reject · s skip · x escalate · n note · u undo · q quit.
    Number keys pick a label. From a pipe: one key, word or number per line.
    """
    from adjudication.terminal import open_keys, review

    with _store(db) as store:
        session = review(
            store, queue, user, open_keys(sys.stdin, out), out, principles=_principle_texts(db)
        )
    out.print(_session_summary(session, user, queue), soft_wrap=True)
