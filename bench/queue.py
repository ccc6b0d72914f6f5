"""Review queue throughput: claims+decisions per second and claim latency, per store and team size.

    .venv/bin/python bench/queue.py [--items 1000] [--reviewers 1,8,32] [--stores sqlite,postgres]

Reviewers claim and decide (accept) until the queue is empty, in three set-ups (`--modes`):
a process per reviewer (separate clients: measures the database), a thread with its own store
handle per reviewer, and threads sharing one handle (a web server). Threads share the GIL, so on
a small machine the thread figures measure Python as much as the database. PostgreSQL runs as a
throwaway local server with fsync on. Prints figures; asserts nothing about them.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as `python bench/queue.py`, this file's folder comes first on sys.path, where this file
# would shadow the standard library's `queue` (which threading and SQLAlchemy import). Put the
# checkout's root there instead, as `python -m bench.queue` would.
_HERE = Path(__file__).resolve().parent
if sys.path and Path(sys.path[0] or ".").resolve() == _HERE:
    sys.path[0] = str(_HERE.parent)

import argparse  # noqa: E402
import multiprocessing  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from contextlib import AbstractContextManager, ExitStack, contextmanager  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any  # noqa: E402

from adjudication import Store, open_store  # noqa: E402
from adjudication.testing import PostgresUnavailable, temporary_postgres  # noqa: E402


@dataclass
class Result:
    store: str
    reviewers: int
    decisions: int
    seconds: float
    claim_ms: list[float]
    decide_ms: list[float]


def _p(values: list[float], q: float) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def _review(store: Store, name: str) -> tuple[list[float], list[float]]:
    """Claim and accept until the queue is empty; returns claim and decide latencies in ms."""
    claim_ms, decide_ms = [], []
    while True:
        t0 = time.perf_counter()
        claim = store.claim("bench", name)
        t1 = time.perf_counter()
        claim_ms.append((t1 - t0) * 1000)
        if claim is None:
            return claim_ms, decide_ms
        store.decide(claim.token, "accept")
        decide_ms.append((time.perf_counter() - t1) * 1000)


def _process_reviewer(url: str, name: str, start: Any, results: Any) -> None:
    with open_store(url) as store:
        start.wait()
        results.put(_review(store, name))


def run(url: str, label: str, reviewers: int, items: int, overlap: int, mode: str) -> Result:
    with open_store(url) as admin:
        admin.create_queue("bench", overlap=overlap)
        names = [f"r{i:02d}" for i in range(reviewers)]
        for name in names:
            admin.add_user(name, queues=["bench"])
        admin.enqueue(
            "bench",
            [
                {"item_id": f"i{i:06d}", "draft_label": "ok", "confidence": i / items}
                for i in range(items)
            ],
        )
    latencies: list[tuple[list[float], list[float]]] = []
    if mode == "processes":
        ctx = multiprocessing.get_context("spawn")
        start, results = ctx.Barrier(reviewers + 1), ctx.Queue()
        procs = [
            ctx.Process(target=_process_reviewer, args=(url, n, start, results)) for n in names
        ]
        for proc in procs:
            proc.start()
        start.wait()
        began = time.perf_counter()
        latencies = [results.get() for _ in procs]
        seconds = time.perf_counter() - began
        for proc in procs:
            proc.join()
    else:
        lock, barrier = threading.Lock(), threading.Barrier(reviewers + 1)
        with ExitStack() as stack:
            one = stack.enter_context(open_store(url)) if mode == "shared" else None
            handles = [one or stack.enter_context(open_store(url)) for _ in names]

            def review(store: Store, name: str) -> None:
                barrier.wait()
                mine = _review(store, name)
                with lock:
                    latencies.append(mine)

            threads = [
                threading.Thread(target=review, args=(h, n))
                for h, n in zip(handles, names, strict=True)
            ]
            for thread in threads:
                thread.start()
            barrier.wait()
            began = time.perf_counter()
            for thread in threads:
                thread.join()
            seconds = time.perf_counter() - began
    claim_ms = [ms for mine, _ in latencies for ms in mine]
    decide_ms = [ms for _, mine in latencies for ms in mine]
    return Result(label, reviewers, len(decide_ms), seconds, claim_ms, decide_ms)


@contextmanager
def sqlite_urls() -> Iterator[Callable[[], str]]:
    with tempfile.TemporaryDirectory(prefix="critic-bench-") as folder:
        counter = iter(range(1_000_000))
        yield lambda: f"sqlite:///{Path(folder) / f'bench{next(counter)}.db'}"


@contextmanager
def postgres_urls() -> Iterator[Callable[[], str]]:
    with temporary_postgres(durable=True) as server:
        yield server.create_database


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--overlap", type=int, default=1)
    parser.add_argument("--reviewers", default="1,8,32")
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument(
        "--modes",
        default="processes,threads,shared",
        help="processes: a process per reviewer; threads: a thread and a store handle per "
        "reviewer; shared: threads sharing one handle (like a web server)",
    )
    args = parser.parse_args()
    teams = [int(n) for n in args.reviewers.split(",")]
    sources: dict[str, Callable[[], AbstractContextManager[Callable[[], str]]]] = {
        "sqlite": sqlite_urls,
        "postgres": postgres_urls,
    }
    print(f"{args.items} items, overlap {args.overlap}; claim+accept until empty")
    header = f"{'store':<9} {'mode':<10} {'reviewers':>9} {'decisions':>9} {'per s':>8} "
    header += f"{'claim p50':>10} {'claim p95':>10} {'claim max':>10} {'decide p95':>11}"
    print(header)
    for store in args.stores.split(","):
        try:
            with sources[store]() as new_url:
                for mode in args.modes.split(","):
                    for team in teams:
                        r = run(new_url(), store, team, args.items, args.overlap, mode)
                        print(
                            f"{r.store:<9} {mode:<10} {r.reviewers:>9} {r.decisions:>9} "
                            f"{r.decisions / r.seconds:>8.0f} "
                            f"{_p(r.claim_ms, 50):>8.1f}ms {_p(r.claim_ms, 95):>8.1f}ms "
                            f"{max(r.claim_ms):>8.1f}ms "
                            f"{_p(r.decide_ms, 95):>9.1f}ms",
                            flush=True,
                        )
        except PostgresUnavailable as exc:
            print(f"{store:<9} skipped: {exc}")


if __name__ == "__main__":
    main()
