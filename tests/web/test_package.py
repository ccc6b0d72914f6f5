"""The web app ships as package data, stays apart from critic, and is reachable from the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import adjudication.web


def test_the_web_app_never_imports_critic() -> None:
    probe = (
        "import sys, adjudication.web; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'critic'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_templates_and_static_files_sit_in_the_package() -> None:
    here = Path(adjudication.web.__file__).parent
    assert {p.name for p in (here / "static").iterdir()} == {"app.css", "app.js"}
    assert (here / "templates" / "review.html").is_file()


def test_importing_critic_does_not_import_the_web_stack() -> None:
    probe = "import sys, critic.cli, critic.cli.review; print('fastapi' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "False"


def test_review_serve_is_a_cli_command() -> None:
    import critic.cli

    result = CliRunner().invoke(critic.cli.app, ["review", "serve", "--help"])
    assert result.exit_code == 0
    for option in ("--db", "--host", "--port", "--secret-key", "--undo-seconds"):
        assert option in result.output


def test_review_serve_takes_the_proxy_idle_and_secret_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn

    import critic.cli

    served: list[Any] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.append((app, kw)))
    db = f"sqlite:///{tmp_path / 'q.db'}"
    runner = CliRunner()
    help_text = runner.invoke(critic.cli.app, ["review", "serve", "--help"]).output
    assert "--forwarded-allow-ips" in help_text and "--idle-minutes" in help_text

    weak = runner.invoke(critic.cli.app, ["review", "serve", "--db", db, "--secret-key", "x"])
    assert weak.exit_code == 1 and "too weak" in weak.output and "token_urlsafe" in weak.output
    assert "Traceback" not in weak.output and served == []

    args = ["review", "serve", "--db", db, "--forwarded-allow-ips", "10.0.0.0/8, 127.0.0.1",
            "--idle-minutes", "15"]  # fmt: skip
    assert runner.invoke(critic.cli.app, args).exit_code == 0
    ((app, options),) = served
    web = app.state.web
    assert web.client_address("10.1.2.3", ["198.51.100.7"]) == "198.51.100.7"
    assert web.client_address("192.0.2.1", ["198.51.100.7"]) == "192.0.2.1"
    assert web.idle_seconds == 15 * 60 and options["proxy_headers"] is False
    web.store.close()
