"""Review web app latency: "next item" and "submit" under concurrent reviewers, over loopback.

    .venv/bin/python bench/web.py [--items 100000] [--reviewers 8] [--decisions 250]
                                  [--stores sqlite,postgres] [--json]

Fills a queue with `--items` tasks (prompt, response, rationale, one finding and a revision
each, like a critique-and-revise draft), starts the app under uvicorn in a subprocess on
127.0.0.1, logs `--reviewers` reviewers in, and has each one loop, all at once: GET the review
page (the "next item": the held claim, queue position, render) then POST an accept (the
"submit": checks, decide, claiming the next item, 303; a GET never claims), `--decisions`
times after a short warm-up. The clients run in this process (httpx, asyncio) on the same
machine, so they share its cores with the server. By default
reviewers do not pause (the server is saturated: latency is mostly queueing behind the other
reviewers); `--think S` adds a mean pause of S seconds per decision, as people take. PostgreSQL
runs as a throwaway local server with fsync on. Prints figures; asserts nothing about them.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as `python bench/web.py`, this file's folder comes first on sys.path, where bench/queue.py
# would shadow the standard library's `queue` (which asyncio's helpers import). Put the
# checkout's root there instead, as `python -m bench.web` would.
_HERE = Path(__file__).resolve().parent
if sys.path and Path(sys.path[0] or ".").resolve() == _HERE:
    sys.path[0] = str(_HERE.parent)

import argparse  # noqa: E402
import asyncio  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from dataclasses import asdict, dataclass  # noqa: E402
from typing import Any  # noqa: E402

import httpx  # noqa: E402

from adjudication import open_store  # noqa: E402
from adjudication.testing import PostgresUnavailable, temporary_postgres  # noqa: E402
from adjudication.web import hash_password  # noqa: E402

PASSWORD = "bench-password"
SECRET = "bench-only-signing-key-Hq7vT2mX9cL4pR8wZ1yB6nF3dK0sJ5"
_FIELD = re.compile(r'name="(csrf|token|sig|item_id)" value="([^"]*)"')


def _task(i: int, items: int) -> dict[str, Any]:
    response = (
        f"Item {i}: here is a long and fairly detailed answer that a reviewer has to read. " * 6
    )
    return {
        "item_id": f"i{i:06d}",
        "item": {"prompt": f"Question number {i}: how should I handle this situation?" * 3,
                 "response": response},
        "draft": {
            "rationale": "The response is mostly fine but one sentence overreaches. " * 3,
            "principles": ["H1", "H2"],
            "findings": [{"principle": "H1", "quote": "fairly detailed answer",
                          "problem": "Claims detail it does not give."}],
            "original": response,
            "revision": response.replace("fairly detailed", "short"),
            "principle_texts": {"H1": "Be honest about what you know.", "H2": "Be helpful."},
        },
        "draft_label": "safe",
        "confidence": i / items,
        "route_reason": "low_confidence",
        "principle_ids": ["H1", "H2"],
    }  # fmt: skip


def seed(url: str, items: int, reviewers: int) -> float:
    """Create the queue, the reviewers and the tasks; returns the seconds enqueueing took."""
    password_hash = hash_password(PASSWORD)
    with open_store(url) as store:
        store.create_queue("bench", labels=["safe", "unsafe"], lease_seconds=600)
        for r in range(reviewers):
            store.add_user(f"r{r:02d}", password_hash=password_hash, queues=["bench"])
        began = time.perf_counter()
        batch = 5000
        for start in range(0, items, batch):
            store.enqueue(
                "bench", [_task(i, items) for i in range(start, min(items, start + batch))]
            )
        return time.perf_counter() - began


@contextmanager
def server(url: str) -> Iterator[tuple[str, int]]:
    """The app under uvicorn in a subprocess; yields its base URL and process id."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", url, str(port)], stdout=log, stderr=log
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(base + "/login", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    tail = log.read().decode(errors="replace")[-3000:]
                    raise RuntimeError(f"the web app did not start:\n{tail}")
                time.sleep(0.2)
            yield base, proc.pid
        finally:
            proc.terminate()
            proc.wait(timeout=20)
            log.seek(0)
            errors = log.read().decode(errors="replace")
            if "Traceback" in errors:
                print(f"the server logged errors:\n{errors[-3000:]}", file=sys.stderr)


def _serve(url: str, port: int) -> None:
    import uvicorn

    from adjudication.web import create_app

    app = create_app(url, secret_key=SECRET)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _fields(html: str) -> dict[str, str]:
    return dict(_FIELD.findall(html))


async def _log_in(base: str, name: str) -> httpx.AsyncClient:
    client = httpx.AsyncClient(base_url=base, timeout=60)
    login = await client.get("/login")
    form = {"username": name, "password": PASSWORD, "csrf": _fields(login.text)["csrf"]}
    assert (await client.post("/login", data=form)).status_code == 303
    return client


async def _review(
    client: httpx.AsyncClient, warmup: int, decisions: int, think: float
) -> tuple[list[float], list[float]]:
    next_ms: list[float] = []
    submit_ms: list[float] = []
    for n in range(warmup + decisions):
        t0 = time.perf_counter()
        page = await client.get("/q/bench/review")
        if 'name="token"' not in page.text:  # nothing held yet: claim with the page's POST
            claim = {"csrf": _fields(page.text)["csrf"], "kind": "review"}
            await client.post("/q/bench/claim", data=claim)
            page = await client.get("/q/bench/review")
        t1 = time.perf_counter()
        fields = _fields(page.text)
        if "token" not in fields:
            break  # the queue is empty
        response = await client.post("/q/bench/decide", data={**fields, "action": "accept"})
        t2 = time.perf_counter()
        assert response.status_code == 303, response.text[:500]
        if n >= warmup:
            next_ms.append((t1 - t0) * 1000)
            submit_ms.append((t2 - t1) * 1000)
        if think:
            await asyncio.sleep(random.expovariate(1 / think))
    await client.aclose()
    return next_ms, submit_ms


@dataclass
class Result:
    store: str
    items: int
    reviewers: int
    decisions: int
    seconds: float
    next_p50_ms: float
    next_p95_ms: float
    next_p99_ms: float
    submit_p50_ms: float
    submit_p95_ms: float
    submit_p99_ms: float
    server_cpu_s: float
    client_cpu_s: float
    enqueue_s: float


def _p(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


async def _run(
    base: str, reviewers: int, warmup: int, decisions: int, think: float
) -> tuple[list[float], list[float]]:
    # Everyone logs in first (argon2 is slow on purpose), then all review at once.
    clients = await asyncio.gather(*(_log_in(base, f"r{r:02d}") for r in range(reviewers)))
    results = await asyncio.gather(*(_review(c, warmup, decisions, think) for c in clients))
    return [ms for n, _ in results for ms in n], [ms for _, s in results for ms in s]


def bench(store: str, url: str, items: int, reviewers: int, decisions: int, think: float) -> Result:
    enqueue_s = seed(url, items, reviewers)
    with server(url) as (base, pid):
        cpu0, client0 = _cpu_seconds(pid), time.process_time()
        began = time.perf_counter()
        next_ms, submit_ms = asyncio.run(_run(base, reviewers, 10, decisions, think))
        seconds = time.perf_counter() - began
        cpu1, client1 = _cpu_seconds(pid), time.process_time()
    return Result(
        store=store,
        items=items,
        reviewers=reviewers,
        decisions=len(submit_ms),
        seconds=seconds,
        next_p50_ms=_p(next_ms, 50),
        next_p95_ms=_p(next_ms, 95),
        next_p99_ms=_p(next_ms, 99),
        submit_p50_ms=_p(submit_ms, 50),
        submit_p95_ms=_p(submit_ms, 95),
        submit_p99_ms=_p(submit_ms, 99),
        server_cpu_s=cpu1 - cpu0,
        client_cpu_s=client1 - client0,
        enqueue_s=enqueue_s,
    )


@contextmanager
def _url(store: str) -> Iterator[str]:
    if store == "sqlite":
        with tempfile.TemporaryDirectory(prefix="critic-bench-web-") as folder:
            yield f"sqlite:///{Path(folder) / 'queue.db'}"
    else:
        with temporary_postgres(durable=True) as pg:
            yield pg.create_database()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--reviewers", type=int, default=8)
    parser.add_argument("--decisions", type=int, default=250, help="per reviewer, after warm-up")
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument(
        "--think",
        type=float,
        default=0.0,
        help="mean seconds a reviewer waits after each decision (exponential); 0: no pause, "
        "so the server is saturated and latency includes queueing behind the other reviewers",
    )
    parser.add_argument("--json", action="store_true", help="print results as JSON lines")
    parser.add_argument("--serve", nargs=2, metavar=("URL", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _serve(args.serve[0], int(args.serve[1]))
        return
    if not args.json:
        print(
            f"{args.items} items, {args.reviewers} reviewers × {args.decisions} decisions, "
            f"think {args.think} s; next = GET review page, submit = POST accept (ms)"
        )
        print(
            f"{'store':<9} {'decisions':>9} {'per s':>6} {'next p50':>9} {'p95':>7} {'p99':>7} "
            f"{'submit p50':>11} {'p95':>7} {'p99':>7} {'server CPU':>11} {'client CPU':>11}"
        )
    for store in args.stores.split(","):
        try:
            with _url(store) as url:
                r = bench(store, url, args.items, args.reviewers, args.decisions, args.think)
        except PostgresUnavailable as exc:
            print(f"{store:<9} skipped: {exc}")
            continue
        if args.json:
            print(json.dumps(asdict(r)))
            continue
        print(
            f"{r.store:<9} {r.decisions:>9} {r.decisions / r.seconds:>6.0f} "
            f"{r.next_p50_ms:>9.1f} {r.next_p95_ms:>7.1f} {r.next_p99_ms:>7.1f} "
            f"{r.submit_p50_ms:>11.1f} {r.submit_p95_ms:>7.1f} {r.submit_p99_ms:>7.1f} "
            f"{r.server_cpu_s / r.seconds:>10.0%} {r.client_cpu_s / r.seconds:>10.0%}",
            flush=True,
        )
        print(f"{'':<9} (enqueueing {r.items} items took {r.enqueue_s:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
