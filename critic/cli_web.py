"""`critic review serve`: the review web app (`adjudication.web`) under uvicorn.

Importing this module adds `serve` to the `review` command group of `critic.cli`. FastAPI and
uvicorn are imported only when the command runs: they come with the `web` extra.
"""

from __future__ import annotations

import typer

from critic.cli import DbOpt, err, out, reports_errors, review_app
from critic.errors import MissingExtraError

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


@review_app.command("serve")
@reports_errors
def serve(
    db: str = DbOpt,
    host: str = typer.Option(
        "127.0.0.1",
        "--host",
        envvar="CRITIC_WEB_HOST",
        help="Address to listen on. Keep loopback unless a TLS proxy sits in front.",
    ),
    port: int = typer.Option(8080, "--port", envvar="CRITIC_WEB_PORT", min=1, max=65535),
    secret_key: str | None = typer.Option(
        None,
        "--secret-key",
        envvar="CRITIC_WEB_SECRET",
        help="Signs session cookies; without it sessions end when the server restarts.",
    ),
    undo_seconds: float = typer.Option(
        600.0,
        "--undo-seconds",
        envvar="CRITIC_WEB_UNDO_SECONDS",
        min=0.0,
        help="How long after a decision its reviewer may take it back (Z), while nobody has "
        "decided that item since; 0 turns undo off.",
    ),
    secure_cookies: bool = typer.Option(
        False,
        "--secure-cookies",
        envvar="CRITIC_WEB_SECURE_COOKIES",
        help="Mark the session cookie Secure (when served over HTTPS behind a proxy).",
    ),
) -> None:
    """Serve the review web app: log in, review with the keyboard, adjudicate, see dashboards."""
    try:
        import uvicorn

        from adjudication.web import create_app
    except ModuleNotFoundError as exc:
        raise MissingExtraError(
            "critic review serve", exc.name or "fastapi", "pip install 'critic[web]'"
        ) from exc
    web = create_app(
        db, secret_key=secret_key, undo_seconds=undo_seconds, secure_cookies=secure_cookies
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
    if secret_key is None:
        err.print(
            "note: no --secret-key (CRITIC_WEB_SECRET): sessions end when the server stops",
            highlight=False,
        )
    out.print(f"critic review: http://{host}:{port}/ · database {store.url}", highlight=False)
    uvicorn.run(web, host=host, port=port, log_level="info", proxy_headers=False)
