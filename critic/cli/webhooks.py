"""`critic webhooks list | replay`: the decision events sent to webhooks (`adjudication.webhooks`).

`critic review serve --webhook URL` sends them as decisions are made; these commands show the
backlog and send a stretch of history again.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Annotated

import typer
from rich.table import Table

from critic.cli.common import err, out, queue_store, reports_errors, shown
from critic.cli.options import DEFAULT_DB, DbOpt, JsonOpt
from critic.errors import UsageError

app = typer.Typer(help="Decision events posted to webhooks: backlog and replays.",
                  no_args_is_help=True)  # fmt: skip

SecretOpt = Annotated[
    str | None,
    typer.Option(
        "--secret",
        envvar="CRITIC_WEBHOOK_SECRET",
        help="Signs each post (X-Critic-Signature-256: sha256=HMAC of the body).",
    ),
]


def parse_since(text: str) -> datetime:
    """An ISO date or time (`2025-01-31`, `2025-01-31T12:00`); without a zone it is UTC."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"--since {text!r} is not a date or time",
            hint="write it as 2025-01-31 or 2025-01-31T12:00 (UTC unless a zone is given)",
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@app.command("list")
@reports_errors
def list_webhooks(db: DbOpt = DEFAULT_DB, json_out: JsonOpt = False) -> None:
    """Every webhook with what is still to be delivered."""
    from adjudication.webhooks import status

    with queue_store(db) as store:
        found = status(store)
    if json_out:
        print(json.dumps([w.__dict__ for w in found], indent=2, default=str))
        return
    table = Table("url", "pending", "delivered", "oldest pending", "next attempt", "last error")
    for w in found:
        table.add_row(shown(w.url), str(w.pending), str(w.delivered),
                      str(w.oldest_pending_at or "–"), str(w.next_attempt_at or "–"),
                      shown(w.last_error or ""))  # fmt: skip
    out.print(table)


@app.command("replay")
@reports_errors
def replay(
    url: Annotated[str, typer.Option("--url", help="The receiver to send to again.")],
    since: Annotated[
        str, typer.Option("--since", help="Send the decisions made at or after this time.")
    ],
    db: DbOpt = DEFAULT_DB,
    secret: SecretOpt = None,
    wait: Annotated[
        float,
        typer.Option(
            min=0.0,
            help="Seconds to keep sending (with retries) before leaving the rest to a running "
            "`critic review serve --webhook`.",
        ),
    ] = 60.0,
) -> None:
    """Send the decision events since a time again (including ones from before the webhook was
    added), then deliver them, oldest first."""
    from adjudication.webhooks import Sender
    from adjudication.webhooks import replay as do_replay

    moment = parse_since(since)
    with queue_store(db) as store:
        queued = do_replay(store, url, moment)
        sender = Sender(store, url, secret=secret)
        deadline = time.monotonic() + wait
        sent = 0
        while sender.pending() and time.monotonic() < deadline:
            sent += sender.send_due()
            if sender.pending():
                time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
        left = sender.pending()
    out.print(shown(f"{queued} event(s) since {moment.isoformat()} queued for {url}; "
                    f"{sent} delivered now, {left} still pending"))  # fmt: skip
    if left:
        last = sender.errors[-1] if sender.errors else "no answer yet"
        err.print(shown(f"last error: {last}; `critic review serve --webhook {url}` keeps "
                        "trying, or run this again"))  # fmt: skip
        raise typer.Exit(1)
