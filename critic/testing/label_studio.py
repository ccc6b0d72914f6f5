"""A real Label Studio for tests, in its own virtual environment (so its pins cannot move
critic's).

    python -m critic.testing.label_studio install      # what .ci/run does before the tests

`install()` makes the virtual environment once (`$CRITIC_LABEL_STUDIO_VENV`, else
``~/.cache/critic/label-studio-1.23.2``) with ``pip install label-studio==1.23.2`` (about a
minute), and marks it complete with a `.installed` file; a half-made one is made again.
`serve()` starts ``label-studio start`` on a free loopback port with a fresh data directory and
an admin user, waits for ``/health``, and stops the server's process group on exit.

Facts checked against Label Studio 1.23.2 on Python 3.11 (no GPU, 2 cores):

* Start-up takes one to two minutes (Django migrations of a new data directory). At start it
  asks PyPI for the newest version; without network that fails and it starts anyway.
* Legacy tokens (``Authorization: Token T``, ``--user-token``) are off for new organizations:
  401. A personal access token is made in a logged-in session (``/user/login/`` form with the
  CSRF cookie, then ``POST /api/token/``, one per user: a second gets 409); it is a JWT refresh
  token, exchanged at ``/api/token/refresh/`` for an access token sent as ``Bearer``.
* New users sign up at ``/user/signup/`` (email, password, CSRF) and join the organization.
* Predictions imported with tasks are checked against the labeling config only when the
  feature flag ``fflag_feat_utc_210_prediction_validation_15082025`` is on (an environment
  variable of the same name); `serve` turns it on so that a malformed prediction fails the
  import instead of being stored.
* The quick export (``GET /api/projects/ID/export?exportType=JSON&download_all_tasks=true``)
  names each annotation's annotator by user id (``completed_by``) only.
"""

from __future__ import annotations

import contextlib
import fcntl
import http.cookiejar
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

VERSION = "1.23.2"
ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "critic-admin-password"
#: Environment of the server: predictions checked on import (see the module's docstring).
SERVER_ENV = {"fflag_feat_utc_210_prediction_validation_15082025": "true"}


class LabelStudioUnavailable(RuntimeError):
    """Label Studio could not be installed or started here."""


def default_venv() -> Path:
    """`$CRITIC_LABEL_STUDIO_VENV`, else ``~/.cache/critic/label-studio-VERSION``."""
    chosen = os.environ.get("CRITIC_LABEL_STUDIO_VENV")
    return Path(chosen) if chosen else Path.home() / ".cache" / "critic" / f"label-studio-{VERSION}"


def executable(venv: Path) -> Path:
    return venv / "bin" / "label-studio"


def install(venv: Path | None = None, *, timeout: float = 1800.0) -> Path:
    """The virtual environment with Label Studio installed, made now if it is not complete.

    Two test sessions installing at once take turns (a lock file beside it)."""
    venv = venv or default_venv()
    if (venv / ".installed").is_file():
        return venv
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f".{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (venv / ".installed").is_file():
            return venv
        if venv.exists():  # a half-made one, from an install that was killed
            shutil.rmtree(venv)
        steps = [
            [sys.executable, "-m", "venv", str(venv)],
            [str(venv / "bin" / "pip"), "install", "-q", f"label-studio=={VERSION}"],
        ]
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True, timeout=timeout)
            if done.returncode != 0:
                tail = (done.stderr or done.stdout)[-2000:]
                raise LabelStudioUnavailable(f"{' '.join(step)} failed:\n{tail}")
        (venv / ".installed").write_text(f"label-studio=={VERSION}\n")
    return venv


@dataclass
class Session:
    """A logged-in browser session of one Label Studio user (cookies and CSRF token)."""

    url: str
    opener: urllib.request.OpenerDirector
    jar: http.cookiejar.CookieJar

    def csrf(self) -> str:
        return next((c.value or "" for c in self.jar if c.name == "csrftoken"), "")

    def send(
        self, method: str, path: str, body: Any = None, *, form: bool = False
    ) -> tuple[int, str]:
        headers = {"Referer": self.url + "/", "X-CSRFToken": self.csrf()}
        data = None
        if body is not None and form:
            data = urllib.parse.urlencode(body).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        try:
            with self.opener.open(request, timeout=60) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()


@dataclass
class LabelStudio:
    """A running Label Studio."""

    url: str
    pid: int
    log_path: Path
    data_dir: Path
    tokens: dict[str, str] = field(default_factory=dict)

    def session(self) -> Session:
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        found = Session(self.url, opener, jar)
        found.send("GET", "/user/login/")  # sets the CSRF cookie
        return found

    def login(self, email: str, password: str) -> Session:
        found = self.session()
        status, _ = found.send(
            "POST",
            "/user/login/",
            {"email": email, "password": password, "csrfmiddlewaretoken": found.csrf()},
            form=True,
        )
        if status != 200 or not any(c.name == "sessionid" for c in found.jar):
            raise LabelStudioUnavailable(f"cannot log in to {self.url} as {email} ({status})")
        return found

    def sign_up(self, email: str, password: str) -> None:
        """Add a user to the organization, as the sign-up page does."""
        found = self.session()
        status, _ = found.send(
            "POST",
            "/user/signup/",
            {"email": email, "password": password, "csrfmiddlewaretoken": found.csrf()},
            form=True,
        )
        if status != 200 or not any(c.name == "sessionid" for c in found.jar):
            raise LabelStudioUnavailable(f"cannot sign up {email} at {self.url} ({status})")

    def token(self, email: str = ADMIN_EMAIL, password: str = ADMIN_PASSWORD) -> str:
        """The user's personal access token (made on first use; Label Studio keeps one)."""
        if email not in self.tokens:
            status, body = self.login(email, password).send("POST", "/api/token/", {})
            if status != 201:
                raise LabelStudioUnavailable(f"POST /api/token/ as {email}: {status} {body[:300]}")
            self.tokens[email] = json.loads(body)["token"]
        return self.tokens[email]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/health", timeout=5) as response:
            return bool(response.status == 200)
    except (OSError, ValueError):
        return False


@contextlib.contextmanager
def serve(
    venv: Path | None = None,
    *,
    data_dir: Path | None = None,
    log_path: Path | None = None,
    startup_timeout: float = 420.0,
) -> Iterator[LabelStudio]:
    """Run Label Studio on a free loopback port until the block ends (see the module's
    docstring); the admin is `ADMIN_EMAIL` / `ADMIN_PASSWORD`."""
    venv = install(venv)
    data = data_dir or Path(tempfile.mkdtemp(prefix="label-studio-"))
    log = log_path or data / "server.log"
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        str(executable(venv)), "start", "--no-browser", "--host", "127.0.0.1",
        "--port", str(port), "--data-dir", str(data), "--username", ADMIN_EMAIL,
        "--password", ADMIN_PASSWORD,
    ]  # fmt: skip
    env = {**os.environ, **SERVER_ENV, "LABEL_STUDIO_BASE_DATA_DIR": str(data)}
    with open(log, "ab") as handle:
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=data,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + startup_timeout
        while not _healthy(url):
            if proc.poll() is not None:
                raise LabelStudioUnavailable(
                    f"label-studio exited with {proc.returncode}; log: {log}\n"
                    + log.read_text(errors="replace")[-3000:]
                )
            if time.monotonic() > deadline:
                waited = f"{startup_timeout:.0f} s"
                raise LabelStudioUnavailable(f"no answer at {url}/health in {waited}; log: {log}")
            time.sleep(1.0)
        yield LabelStudio(url=url, pid=proc.pid, log_path=log, data_dir=data)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)


if __name__ == "__main__":
    if sys.argv[1:] == ["install"]:
        print(install())
    else:
        sys.exit("usage: python -m critic.testing.label_studio install")
