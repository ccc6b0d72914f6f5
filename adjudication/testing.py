"""Test helpers that ship with the package: a settable clock and a throwaway PostgreSQL server.

`temporary_postgres` runs a real server from the PostgreSQL binaries (`initdb`, `pg_ctl`) in a
temporary directory, listening on a free loopback port, and removes it all on exit. PostgreSQL
refuses to run as root, so when run as root it runs the server as the `postgres` OS user, or
creates an unprivileged system user for the purpose.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path

from .errors import StoreError


class FakeClock:
    """A thread-safe clock that moves only when told to; pass it as `open_store(clock=...)`."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> datetime:
        """Move the clock forward; returns the new time."""
        with self._lock:
            self._now += timedelta(seconds=seconds)
            return self._now


class PostgresUnavailable(StoreError):
    """The PostgreSQL server binaries are not installed, so no test server can start."""


_SERVICE_USER = "critic-pg"


def find_postgres_bin() -> Path | None:
    """The directory holding `initdb` and `pg_ctl`: $PG_BIN, the PATH, or Debian's layout."""
    candidates = [os.environ.get("PG_BIN", "")]
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(str(Path(on_path).resolve().parent))
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += sorted(versions, key=lambda p: int(Path(p).parent.name), reverse=True)
    for folder in candidates:
        if folder and all((Path(folder) / tool).is_file() for tool in ("initdb", "pg_ctl")):
            return Path(folder)
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _service_user() -> str | None:
    """The OS user to run the server as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", _SERVICE_USER):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", _SERVICE_USER],
        check=True,
        capture_output=True,
    )
    return _SERVICE_USER


@dataclass
class PostgresServer:
    """A running throwaway server; `create_database` gives each test a clean database."""

    host: str
    port: int
    superuser: str
    _names: Iterator[int] = field(default_factory=count)

    def url(self, database: str = "postgres") -> str:
        """A psycopg 3 SQLAlchemy URL for one database on this server."""
        return f"postgresql+psycopg://{self.superuser}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database and return its URL."""
        import psycopg
        from psycopg import sql

        name = name or f"test_{next(self._names)}"
        dsn = f"host={self.host} port={self.port} user={self.superuser} dbname=postgres"
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)


@contextmanager
def temporary_postgres(*, durable: bool = False) -> Iterator[PostgresServer]:
    """Start a throwaway PostgreSQL server on a free loopback port; stop and delete it on exit.

    Args:
        durable: keep fsync and synchronous commit on (for benchmarks); tests turn them off.

    Raises:
        PostgresUnavailable: when the server binaries are not installed.
    """
    bin_dir = find_postgres_bin()
    if bin_dir is None:
        raise PostgresUnavailable(
            "PostgreSQL server binaries (initdb, pg_ctl) are not installed",
            hint="apt-get install postgresql, or set PG_BIN to the folder holding initdb",
        )
    run_as = _service_user()
    prefix = ["runuser", "-u", run_as, "--"] if run_as else []
    home = Path(tempfile.mkdtemp(prefix="critic-pg-"))
    data, log = home / "data", home / "server.log"
    if run_as:
        entry = pwd.getpwnam(run_as)
        os.chown(home, entry.pw_uid, entry.pw_gid)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        # cwd: the server user may not be allowed into the caller's working directory.
        return subprocess.run(
            [*prefix, *args], cwd=home, capture_output=True, text=True, check=False
        )

    superuser = "critic"
    started = False
    try:
        init = run(
            str(bin_dir / "initdb"), "-D", str(data), "-U", superuser, "--auth=trust",
            "-E", "UTF8", "--no-locale",
        )  # fmt: skip
        if init.returncode != 0:
            raise StoreError(f"initdb failed: {init.stderr.strip() or init.stdout.strip()}")
        settings = ["-c", "listen_addresses=127.0.0.1", "-c", "max_connections=300"]
        if not durable:
            settings += ["-c", "fsync=off", "-c", "synchronous_commit=off"]
            settings += ["-c", "full_page_writes=off"]
        for _attempt in range(5):
            port = _free_port()
            options = " ".join([*settings, "-p", str(port), "-k", str(home)])
            start = run(
                str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", options,
                "-w", "-t", "60", "start",
            )  # fmt: skip
            if start.returncode == 0:
                started = True
                break
        if not started:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else start.stderr
            raise StoreError(f"PostgreSQL did not start:\n{tail}")
        yield PostgresServer(host="127.0.0.1", port=port, superuser=superuser)
    finally:
        if started:
            run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(home, ignore_errors=True)
