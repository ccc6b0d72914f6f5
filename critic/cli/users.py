"""`critic users add | list`: reviewers, adjudicators and admins of the review queues."""

from __future__ import annotations

import sys
from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated, cast

import typer
from rich.table import Table
from rich.text import Text

from critic.cli.common import actor, dump, out, queue_store, reports_errors, shown
from critic.cli.options import DEFAULT_DB, DbOpt, JsonOpt
from critic.errors import MissingExtraError, UsageError

if TYPE_CHECKING:
    from adjudication import Role

app = typer.Typer(help="Reviewers, adjudicators and admins.", no_args_is_help=True)


def _hash_password(password: str, user: str) -> str:
    try:
        from adjudication.web import hash_password
    except ImportError as exc:
        raise MissingExtraError(
            "a web app password", exc.name or "argon2-cffi", "pip install 'critic[web]'"
        ) from None
    return hash_password(password, user=user)  # the web app checks passwords against this same hash


@app.command("add")
@reports_errors
def users_add(
    name: Annotated[str, typer.Argument(help="Login name.")],
    role: Annotated[str, typer.Option(help="reviewer, adjudicator or admin.")] = "reviewer",
    db: DbOpt = DEFAULT_DB,
    password_stdin: Annotated[
        bool,
        typer.Option(
            "--password-stdin", help="Read a web app password from stdin (stored argon2-hashed)."
        ),
    ] = False,
    queues: Annotated[
        list[str] | None,
        typer.Option(
            "--queue", help="A queue they work in (repeatable); admins work in all queues."
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Add a user who can review (adjudicators also settle disagreements)."""
    queues = queues or []
    password_hash = None
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise UsageError(
                "--password-stdin read an empty password",
                hint=f"pipe it in: printf '%s\\n' \"$PASSWORD\" | critic users add {name} "
                "--password-stdin",
            )
        password_hash = _hash_password(password, name)
    with queue_store(db) as store:
        # The store checks the role and suggests the closest one on a typo.
        user = store.add_user(
            name, cast("Role", role), password_hash=password_hash, queues=queues, by=actor()
        )
    if json_out:
        dump({k: v for k, v in asdict(user).items() if k != "password_hash"}
              | {"password": user.password_hash is not None, "queues": queues})  # fmt: skip
        return
    password_note = " with a web password" if password_hash else ""
    where = f", working in {', '.join(queues)}" if queues else ""
    out.print(shown(f"added {user.role} '{user.name}'{password_note}{where}"), soft_wrap=True)
    if not queues and user.role != "admin":
        hint = f"they see no queue until added to one: critic queue assign QUEUE {user.name}"
        out.print(Text(hint, "dim"), soft_wrap=True)


@app.command("list")
@reports_errors
def users_list(db: DbOpt = DEFAULT_DB, json_out: JsonOpt = False) -> None:
    """Every user with role, status and whether a web password is set (never the hash)."""
    with queue_store(db) as store:
        users = store.users()
        works_in = store.memberships()
    if json_out:
        dump([{"name": u.name, "role": u.role, "active": u.active,
                "password": u.password_hash is not None, "created_at": u.created_at,
                "queues": None if u.role == "admin" else works_in[u.name]}
               for u in users])  # fmt: skip
        return
    table = Table("user", "role", "queues", "active", "password", "added", title="critic users")
    for u in users:
        where = "all" if u.role == "admin" else ", ".join(works_in[u.name]) or "–"
        table.add_row(shown(u.name), u.role, shown(where), "yes" if u.active else "no",
                      "set" if u.password_hash else "–",
                      u.created_at.strftime("%Y-%m-%d %H:%M"))  # fmt: skip
    out.print(table)
