"""The review app on a real server: uvicorn on a free loopback port, in a thread (sharing the
test's clock and store) or in a child process (whose memory the test can read); and headless
Chromium to drive it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from tests.fixtures_real import import_error, require

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _chromium_path() -> str | None:
    path = os.environ.get("CRITIC_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    return path if Path(path).is_file() else None


@contextmanager
def chromium() -> Iterator[Any]:
    """Debian's Chromium, headless, driven by Playwright (its own browser download does not work
    here); skips without them locally and fails in CI."""
    missing = import_error("playwright.sync_api")
    require(missing is None, f"browser tests need playwright: {missing}")
    executable = _chromium_path()
    require(executable is not None, "browser tests need Chromium: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """Run `app` under uvicorn in a thread; yields its base URL."""
    import uvicorn

    port = free_port()
    # As `critic review serve` runs it: uvicorn's own X-Forwarded-For rewriting off (the app
    # reads the header itself, from trusted proxies only).
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", proxy_headers=False
    )
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not running.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        running.should_exit = True
        thread.join(timeout=10)


_CHILD = """
import sys, uvicorn
from adjudication.web import create_app
uvicorn.run(create_app(sys.argv[1], secret_key=sys.argv[2]), host="127.0.0.1",
            port=int(sys.argv[3]), log_level="warning", proxy_headers=False)
"""


class Child:
    """A server process; `peak_mib()` is its peak resident memory so far (VmHWM)."""

    def __init__(self, process: subprocess.Popen[bytes], url: str) -> None:
        self.process = process
        self.url = url

    def peak_mib(self) -> float:
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        line = next(row for row in status.splitlines() if row.startswith("VmHWM:"))
        return int(line.split()[1]) / 1024


@contextmanager
def serve_process(db_url: str, secret: str) -> Iterator[Child]:
    """Run the app in its own uvicorn process (the test's code first on its path)."""
    port = free_port()
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen(
        [sys.executable, "-c", _CHILD, db_url, secret, str(port)], env=env, cwd=root
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert process.poll() is None, "the server process exited"
            try:
                httpx.get(url + "/login", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the server process did not start"
                time.sleep(0.1)
        yield Child(process, url)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
