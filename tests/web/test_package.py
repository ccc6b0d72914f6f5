"""The web app ships as package data, stays apart from critic, and is reachable from the CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
