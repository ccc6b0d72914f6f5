"""`critic review next | serve`: review queued items in the terminal or in the web app.

FastAPI and uvicorn are imported only when `serve` runs: they come with the `web` extra.
Everything an item or a model wrote is printed as plain text, never as console markup.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text

from critic.cli.common import err, out, queue_store, reports_errors, shown
from critic.cli.options import DEFAULT_DB, DbOpt
from critic.errors import CriticError, MissingExtraError

if TYPE_CHECKING:
    from adjudication import Task
    from adjudication.terminal import Session

app = typer.Typer(
    help="Review queued items: in the terminal (next) or the web app (serve).",
    no_args_is_help=True,
)
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


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


@app.command("next")
@reports_errors
def review_next(
    queue: Annotated[str, typer.Option("--queue", help="The queue to review.")],
    user: Annotated[str, typer.Option("--as", help="Your user name (see `critic users list`).")],
    db: DbOpt = DEFAULT_DB,
) -> None:
    """Review items one by one, with single keys, until none is left for you.

    Keys: a accept · e edit · r reject · s skip · x escalate · n note · u undo · q quit.
    Number keys pick a label. From a pipe: one key, word or number per line.
    """
    from adjudication.terminal import open_keys, review

    with queue_store(db) as store:
        session = review(
            store, queue, user, open_keys(sys.stdin, out), out, principles=_principle_texts(db)
        )
    out.print(_session_summary(session, user, queue), soft_wrap=True)


@app.command("serve")
@reports_errors
def serve(
    db: DbOpt = DEFAULT_DB,
    host: Annotated[
        str,
        typer.Option(
            "--host",
            envvar="CRITIC_WEB_HOST",
            help="Address to listen on. Keep loopback unless a TLS proxy sits in front.",
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", envvar="CRITIC_WEB_PORT", min=1, max=65535)] = 8080,
    secret_key: Annotated[
        str | None,
        typer.Option(
            "--secret-key",
            envvar="CRITIC_WEB_SECRET",
            help="Signs session cookies: at least 32 random bytes (python -c 'import secrets; "
            "print(secrets.token_urlsafe(32))'). Without it, one is generated on first start "
            "and kept in the database.",
        ),
    ] = None,
    undo_seconds: Annotated[
        float,
        typer.Option(
            "--undo-seconds",
            envvar="CRITIC_WEB_UNDO_SECONDS",
            min=0.0,
            help="How long after a decision its reviewer may take it back (Z), while nobody has "
            "decided that item since; 0 turns undo off.",
        ),
    ] = 600.0,
    secure_cookies: Annotated[
        bool,
        typer.Option(
            "--secure-cookies",
            envvar="CRITIC_WEB_SECURE_COOKIES",
            help="Mark the session cookie Secure (when served over HTTPS behind a proxy).",
        ),
    ] = False,
    idle_minutes: Annotated[
        float,
        typer.Option(
            "--idle-minutes",
            envvar="CRITIC_WEB_IDLE_MINUTES",
            min=1.0,
            help="A log-in ends after this many minutes without a request (and 12 h after it "
            "began in any case).",
        ),
    ] = 60.0,
    forwarded_allow_ips: Annotated[
        str,
        typer.Option(
            "--forwarded-allow-ips",
            envvar="CRITIC_WEB_FORWARDED_ALLOW_IPS",
            help="Comma-separated addresses or networks of the proxies in front (e.g. "
            "127.0.0.1): only from them is X-Forwarded-For believed, for the log-in limit.",
        ),
    ] = "",
    webhook: Annotated[
        list[str] | None,
        typer.Option(
            "--webhook",
            envvar="CRITIC_WEBHOOK_URL",
            help="Post each decision as JSON to this URL (repeat for several), from a background "
            "thread, retried until delivered (see `critic webhooks list`).",
        ),
    ] = None,
    webhook_secret: Annotated[
        str | None,
        typer.Option(
            "--webhook-secret",
            envvar="CRITIC_WEBHOOK_SECRET",
            help="Signs each post: X-Critic-Signature-256: sha256=HMAC-SHA256 of the body.",
        ),
    ] = None,
    webhook_timeout: Annotated[
        float,
        typer.Option(
            "--webhook-timeout",
            envvar="CRITIC_WEBHOOK_TIMEOUT",
            min=0.1,
            help="Seconds a receiver gets to answer a post before it is retried (1 s later, "
            "then twice as long each time, up to 10 minutes).",
        ),
    ] = 10.0,
) -> None:
    """Serve the review web app: log in, review with the keyboard, adjudicate, see dashboards."""
    try:
        import uvicorn

        from adjudication.web import create_app
    except ModuleNotFoundError as exc:
        raise MissingExtraError(
            "critic review serve", exc.name or "fastapi", "pip install 'critic[web]'"
        ) from exc
    proxies = [part.strip() for part in forwarded_allow_ips.split(",") if part.strip()]
    web = create_app(
        db,
        secret_key=secret_key,
        undo_seconds=undo_seconds,
        secure_cookies=secure_cookies,
        idle_minutes=idle_minutes,
        forwarded_allow_ips=proxies,
    )
    store = web.state.web.store
    if not any(u.role == "admin" and u.active and u.password_hash for u in store.users()):
        err.print(
            "no admin can log in yet; add one with a password:\n"
            f"  printf '%s\\n' \"$PASSWORD\" | critic users add NAME --role admin "
            f"--password-stdin --db {db}",
            highlight=False,
        )
    if host not in _LOOPBACK and not secure_cookies:
        err.print(
            f"warning: listening on {host} over plain HTTP; put a TLS proxy in front and pass "
            "--secure-cookies",
            highlight=False,
        )
    if host not in _LOOPBACK and not proxies:
        err.print(
            "note: no --forwarded-allow-ips: behind a proxy every client has the proxy's "
            "address (the log-in limit counts per user name and address)",
            highlight=False,
        )
    out.print(f"critic review: http://{host}:{port}/ · database {store.url}", highlight=False)
    with webhook_senders(db, webhook or [], webhook_secret, webhook_timeout):
        # The app reads X-Forwarded-For itself, from the trusted proxies only; uvicorn must not.
        uvicorn.run(web, host=host, port=port, log_level="info", proxy_headers=False)


@contextmanager
def webhook_senders(
    db: str, urls: Sequence[str], secret: str | None, timeout: float = 10.0
) -> Iterator[None]:
    """Send decision events to each URL from a background thread while the block runs (each
    with its own database handle, so no reviewer's request waits on a receiver)."""
    from adjudication import open_store
    from adjudication.webhooks import Sender

    with ExitStack() as stack:
        for url in urls:
            store = stack.enter_context(open_store(db))
            sender = Sender(store, url, secret=secret, timeout=timeout)
            stack.enter_context(sender)
            note = "signed" if secret else "unsigned: pass --webhook-secret to sign them"
            out.print(shown(f"decisions are posted to {url} ({note})"), highlight=False)
        yield
