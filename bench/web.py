"""Review web app latency at team scale: "next item", "submit", item-list search, bulk requeue.

    .venv/bin/python bench/web.py [--items 1000000] [--reviewers 16] [--think 1] [--decisions 100]
                                  [--searchers 2] [--decided 20000] [--requeue 10000]
                                  [--stores sqlite,postgres] [--json]

Fills a queue with `--items` tasks by fast bulk inserts (executemany on SQLite, COPY on
PostgreSQL, straight into the tables and the full-text index, without the per-item `enqueued`
events a real enqueue writes; `--seed enqueue` uses `Store.enqueue` instead). Item text is drawn
from a 5,000-word vocabulary with Zipf frequencies, so searches match as many items as real words
would. `--decided` of the most confident items are then settled through `Store.bulk` (the critic's
label accepted by an adjudicator, with a note): they are the precedents the review page shows.

The app runs under uvicorn in a subprocess on 127.0.0.1. `--reviewers` reviewers log in and each
loops, all at once: GET the review page (the "next item": the held claim, queue position,
render), then, as the page's script does once it is shown, GET its precedents panel's JSON
(timed apart: "precedents"), then POST an accept (the "submit": checks, decide, claiming the
next item, 303), `--decisions` times after a short warm-up, pausing `--think` seconds on average
(exponential) after each decision, as people do. Meanwhile `--searchers` reviewers search the
item list (GET /q/bench/items?q=..., one or two words of middling frequency, best match first)
with the same think time. Then an adjudicator requeues `--requeue` decided items in one bulk action
through the web form ("every item matching": decided, critic label `unsafe`), timed from the POST
to its answer. The clients run in this process (httpx, asyncio) on the same machine, so they share
its cores with the server; the load average is printed beside the figures. PostgreSQL runs as a
throwaway local server with fsync on. Prints figures; asserts nothing about them.
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
import html  # noqa: E402
import itertools  # noqa: E402
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
from datetime import UTC, datetime  # noqa: E402
from typing import Any  # noqa: E402

import httpx  # noqa: E402

from adjudication import open_store  # noqa: E402
from adjudication.listing import Filters  # noqa: E402
from adjudication.testing import PostgresUnavailable, temporary_postgres  # noqa: E402
from adjudication.web import hash_password  # noqa: E402

PASSWORD = "bench-password"
SECRET = "bench-only-signing-key-Hq7vT2mX9cL4pR8wZ1yB6nF3dK0sJ5"
_FIELD = re.compile(r'name="(csrf|token|sig|item_id)" value="([^"]*)"')
_PRECEDENTS = re.compile(r'data-src="(/q/[^"]+/precedents/[^"]+)"')


_SYLLABLES = [c + v for c in "bdfgklmnprstvz" for v in ("a", "e", "i", "o", "u", "ai", "ou")]


def vocabulary(size: int = 5000, seed: int = 7) -> list[str]:
    """`size` distinct made-up words (2-3 syllables), in a fixed order: rank 1 is the commonest."""
    rng = random.Random(seed)
    words: dict[str, None] = {}
    while len(words) < size:
        words["".join(rng.choices(_SYLLABLES, k=rng.choice((2, 3))))] = None
    return list(words)


class Words:
    """Text drawn from the vocabulary with Zipf (s = 1) frequencies."""

    def __init__(self, seed: int = 11) -> None:
        self.words = vocabulary()
        self.cum = list(itertools.accumulate(1 / (r + 1) for r in range(len(self.words))))
        self.rng = random.Random(seed)

    def text(self, n: int) -> str:
        return " ".join(self.rng.choices(self.words, cum_weights=self.cum, k=n))

    def query(self) -> str:
        """One word of rank 300-3000, or two of rank 30-600: a search a person might type."""
        if self.rng.random() < 0.5:
            return self.words[self.rng.randrange(300, 3000)]
        return " ".join(self.words[self.rng.randrange(30, 600)] for _ in range(2))


def _task(i: int, items: int, words: Words) -> dict[str, Any]:
    return {
        "item_id": f"i{i:07d}",
        "item": {"prompt": words.text(12).capitalize() + "?",
                 "response": words.text(40).capitalize() + "."},
        "draft": {
            "rationale": words.text(14).capitalize() + ".",
            "principles": ["H1", "H2"],
            "principle_texts": {"H1": "Be honest about what you know.", "H2": "Be helpful."},
        },
        "draft_label": "unsafe" if i % 2 else "safe",
        "confidence": i / items,
        "route_reason": "low_confidence",
        "principle_ids": ["H1", "H2"],
    }  # fmt: skip


def seed(url: str, items: int, reviewers: int, decided: int, how: str) -> tuple[float, float]:
    """Create the queue, the users and the tasks, then settle the `decided` most confident ones;
    returns the seconds seeding and settling took."""
    password_hash = hash_password(PASSWORD)
    with open_store(url) as store:
        store.create_queue("bench", labels=["safe", "unsafe"], lease_seconds=600)
        for r in range(reviewers):
            store.add_user(f"r{r:02d}", password_hash=password_hash, queues=["bench"])
        store.add_user("adj", "adjudicator", password_hash=password_hash, queues=["bench"])
        began = time.perf_counter()
        words = Words()
        if how == "enqueue":
            for start in range(0, items, 5000):
                batch = [_task(i, items, words) for i in range(start, min(items, start + 5000))]
                store.enqueue("bench", batch)
        else:
            bulk_insert(store, items, words)
        seeded = time.perf_counter() - began
        began = time.perf_counter()
        if decided:
            top = Filters(confidence_min=(items - decided) / items)
            store.bulk("bench", "accept", by="adj", filters=top, note="settled for the benchmark")
        if store.dialect == "postgresql":
            # What autovacuum does within a minute of a large load (PostgreSQL 13+ vacuums
            # after inserts too): the visibility map lets counts read the index alone. Done
            # here, it does not land in the middle of the timed run instead.
            with store._engine.connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql(
                    "VACUUM (ANALYZE)"
                )
        return seeded, time.perf_counter() - began


def _rows(items: int, words: Words, chunk: int) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, items, chunk):
        yield [_task(i, items, words) for i in range(start, min(items, start + chunk))]


def bulk_insert(store: Any, items: int, words: Words) -> None:
    """Insert tasks and their full-text index rows straight into the tables: executemany in
    large transactions on SQLite, COPY on PostgreSQL (its GIN index built after the load)."""
    from adjudication import search

    now = datetime.now(UTC).replace(tzinfo=None)
    engine = store._engine
    with engine.connect() as conn:
        qid = conn.exec_driver_sql("SELECT id FROM queues WHERE name = 'bench'").scalar_one()
    columns = ("id, queue_id, item_id, item, draft, draft_label, confidence, route_reason, "
               "principle_ids, priority, state, round, reviews, rejected, created_at, updated_at, "
               "answer, exemplar")  # fmt: skip

    def values(n: int, t: dict[str, Any]) -> tuple[Any, ...]:
        return (n, qid, t["item_id"], json.dumps(t["item"]), json.dumps(t["draft"]),
                t["draft_label"], t["confidence"], t["route_reason"],
                json.dumps(t["principle_ids"]), t["confidence"], "pending", 1, 0, False, now, now,
                "label", False)  # fmt: skip

    n = 0
    if store.dialect == "sqlite":
        raw = engine.raw_connection()
        try:
            cur = raw.cursor()
            marks = ", ".join("?" * 18)
            for batch in _rows(items, words, 50_000):
                cur.execute("BEGIN")
                rows = [values(n + k + 1, t) for k, t in enumerate(batch)]
                cur.executemany(f"INSERT INTO tasks ({columns}) VALUES ({marks})", rows)
                cur.executemany(
                    "INSERT INTO task_search (rowid, item, draft, notes) VALUES (?, ?, ?, '')",
                    [(r[0], search.item_text(t["item"]), search.draft_text(t["draft"]))
                     for r, t in zip(rows, batch, strict=True)],
                )  # fmt: skip
                cur.execute("COMMIT")
                n += len(batch)
        finally:
            raw.close()
        return
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("DROP INDEX ix_task_search_everything")
        cur.execute(
            "CREATE TEMP TABLE staged (task_id INTEGER, queue_id INTEGER, item TEXT, draft TEXT)"
        )
        for batch in _rows(items, words, 50_000):
            rows = [values(n + k + 1, t) for k, t in enumerate(batch)]
            with cur.copy(f"COPY tasks ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
            with cur.copy("COPY staged FROM STDIN") as copy:
                for row, t in zip(rows, batch, strict=True):
                    copy.write_row(
                        (row[0], qid, search.item_text(t["item"]), search.draft_text(t["draft"]))
                    )
            n += len(batch)
        cur.execute(
            "INSERT INTO task_search (task_id, queue_id, everything) SELECT task_id, queue_id, "
            "setweight(to_tsvector('english', item), 'A') || "
            "setweight(to_tsvector('english', draft), 'B') FROM staged"
        )
        cur.execute("CREATE INDEX ix_task_search_everything ON task_search USING gin (everything)")
        cur.execute("SELECT setval(pg_get_serial_sequence('tasks', 'id'), %s)", (n,))
        cur.execute("ANALYZE")
        raw.commit()
    finally:
        raw.close()


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
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.seek(0)
            errors = log.read().decode(errors="replace")
            if "Traceback" in errors:
                print(f"the server logged errors:\n{errors[-3000:]}", file=sys.stderr)


def _serve(url: str, port: int) -> None:
    import uvicorn

    from adjudication.web import create_app

    app = create_app(url, secret_key=SECRET)
    # Browsers keep a connection open longer than uvicorn's 5 s default; a reviewer who thinks
    # for longer would otherwise race the server closing it.
    uvicorn.run(
        app, host="127.0.0.1", port=port, log_level="warning", access_log=False,
        timeout_keep_alive=120,
    )  # fmt: skip


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
    client: httpx.AsyncClient, warmup: int, decisions: int, think: float, stop: asyncio.Event
) -> tuple[list[float], list[float], list[float]]:
    next_ms: list[float] = []
    submit_ms: list[float] = []
    precedents_ms: list[float] = []
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
        # As the browser does once the page is up: the precedents panel's JSON.
        source = _PRECEDENTS.search(page.text)
        if source is not None:
            took = time.perf_counter()
            answer = await client.get(html.unescape(source.group(1)))
            assert answer.status_code == 200, answer.text[:500]
            if n >= warmup:
                precedents_ms.append((time.perf_counter() - took) * 1000)
        sending = time.perf_counter()
        response = await client.post("/q/bench/decide", data={**fields, "action": "accept"})
        t2 = time.perf_counter()
        assert response.status_code == 303, response.text[:500]
        if n >= warmup:
            next_ms.append((t1 - t0) * 1000)  # the page alone: the precedents come after it
            submit_ms.append((t2 - sending) * 1000)
        if think:
            await asyncio.sleep(random.expovariate(1 / think))
    stop.set()
    await client.aclose()
    return next_ms, submit_ms, precedents_ms


async def _search(
    client: httpx.AsyncClient, think: float, words: Words, stop: asyncio.Event
) -> list[float]:
    """Search the item list until the reviewers are done; milliseconds per search."""
    took: list[float] = []
    while not stop.is_set():
        query = words.query()
        t0 = time.perf_counter()
        page = await client.get("/q/bench/items", params={"q": query})
        took.append((time.perf_counter() - t0) * 1000)
        assert page.status_code == 200, page.text[:500]
        await asyncio.sleep(random.expovariate(1 / think) if think else 0.2)
    await client.aclose()
    return took


async def _requeue(base: str) -> tuple[float, str]:
    """Requeue every decided item the critic labelled unsafe, in one bulk action; returns the
    seconds it took and the notice the list shows after."""
    client = await _log_in(base, "adj")
    page = await client.get("/q/bench/items", params={"state": "done", "label": "unsafe"})
    form = {
        "csrf": _fields(page.text)["csrf"],
        "action": "requeue",
        "scope": "matching",
        "state": "done",
        "label": "unsafe",
        "note": "benchmark",
    }
    t0 = time.perf_counter()
    response = await client.post("/q/bench/items/bulk", data=form)
    seconds = time.perf_counter() - t0
    assert response.status_code == 303, response.text[:500]
    shown = await client.get(response.headers["location"])
    notice = re.search(r'<p class="notice" role="status">([^<]*)</p>', shown.text)
    await client.aclose()
    return seconds, notice.group(1) if notice else "?"


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
    precedents_p50_ms: float
    precedents_p95_ms: float
    searches: int
    search_p50_ms: float
    search_p95_ms: float
    requeue_s: float
    requeue_notice: str
    server_cpu_s: float
    client_cpu_s: float
    seed_s: float
    settle_s: float
    load_before: str
    load_after: str


def _p(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


async def _run(
    base: str, reviewers: int, searchers: int, warmup: int, decisions: int, think: float
) -> tuple[list[float], list[float], list[float], list[float]]:
    # Everyone logs in first (argon2 is slow on purpose), then all work at once.
    names = [f"r{r:02d}" for r in range(reviewers)]
    clients = await asyncio.gather(*(_log_in(base, n) for n in names))
    finders = await asyncio.gather(*(_log_in(base, names[i]) for i in range(searchers)))
    stops = [asyncio.Event() for _ in clients]
    all_done = asyncio.Event()

    async def watch() -> None:
        for stop in stops:
            await stop.wait()
        all_done.set()

    words = Words(seed=99)
    results = await asyncio.gather(
        *(_review(c, warmup, decisions, think, s) for c, s in zip(clients, stops, strict=True)),
        *(_search(f, think, words, all_done) for f in finders),
        watch(),
    )  # fmt: skip
    reviews = results[:reviewers]
    found = [ms for r in results[reviewers : reviewers + searchers] for ms in r]
    return (
        [ms for n, _, _ in reviews for ms in n],
        [ms for _, s, _ in reviews for ms in s],
        found,
        [ms for _, _, p in reviews for ms in p],
    )


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def bench(
    store: str,
    url: str,
    args: argparse.Namespace,
) -> Result:
    seed_s, settle_s = seed(url, args.items, args.reviewers, args.decided, args.seed)
    with server(url) as (base, pid):
        load_before = _load()
        cpu0, client0 = _cpu_seconds(pid), time.process_time()
        began = time.perf_counter()
        next_ms, submit_ms, search_ms, precedents_ms = asyncio.run(
            _run(base, args.reviewers, args.searchers, 10, args.decisions, args.think)
        )
        seconds = time.perf_counter() - began
        cpu1, client1 = _cpu_seconds(pid), time.process_time()
        requeue_s, notice = asyncio.run(_requeue(base)) if args.requeue else (0.0, "")
        load_after = _load()
    return Result(
        store=store,
        items=args.items,
        reviewers=args.reviewers,
        decisions=len(submit_ms),
        seconds=seconds,
        next_p50_ms=_p(next_ms, 50),
        next_p95_ms=_p(next_ms, 95),
        next_p99_ms=_p(next_ms, 99),
        submit_p50_ms=_p(submit_ms, 50),
        submit_p95_ms=_p(submit_ms, 95),
        submit_p99_ms=_p(submit_ms, 99),
        precedents_p50_ms=_p(precedents_ms, 50),
        precedents_p95_ms=_p(precedents_ms, 95),
        searches=len(search_ms),
        search_p50_ms=_p(search_ms, 50),
        search_p95_ms=_p(search_ms, 95),
        requeue_s=requeue_s,
        requeue_notice=notice,
        server_cpu_s=cpu1 - cpu0,
        client_cpu_s=client1 - client0,
        seed_s=seed_s,
        settle_s=settle_s,
        load_before=load_before,
        load_after=load_after,
    )


@contextmanager
def _url(store: str, shared_buffers: str | None = None) -> Iterator[str]:
    if store == "sqlite":
        with tempfile.TemporaryDirectory(prefix="critic-bench-web-") as folder:
            yield f"sqlite:///{Path(folder) / 'queue.db'}"
    else:
        with temporary_postgres(durable=True, shared_buffers=shared_buffers) as pg:
            yield pg.create_database()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--reviewers", type=int, default=16)
    parser.add_argument("--decisions", type=int, default=100, help="per reviewer, after warm-up")
    parser.add_argument("--searchers", type=int, default=2, help="reviewers searching the list")
    parser.add_argument("--decided", type=int, default=20_000, help="items settled before the run")
    parser.add_argument(
        "--requeue", type=int, default=1, help="1: time a bulk requeue of the decided unsafe items"
    )
    parser.add_argument("--stores", default="sqlite,postgres")
    parser.add_argument("--seed", choices=("bulk", "enqueue"), default="bulk")
    parser.add_argument(
        "--think",
        type=float,
        default=1.0,
        help="mean seconds a person waits after each decision or search (exponential); 0: no "
        "pause, so the server is saturated and latency includes queueing behind the others",
    )
    parser.add_argument(
        "--pg-shared-buffers",
        default=None,
        help="PostgreSQL's shared_buffers for the throwaway server (e.g. 1GB; default: "
        "PostgreSQL's own, 128MB)",
    )
    parser.add_argument("--json", action="store_true", help="print results as JSON lines")
    parser.add_argument("--serve", nargs=2, metavar=("URL", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        _serve(args.serve[0], int(args.serve[1]))
        return
    if not args.json:
        print(
            f"{args.items:,} items ({args.decided:,} decided), {args.reviewers} reviewers x "
            f"{args.decisions} decisions, {args.searchers} searching, think {args.think} s; "
            "next = GET review page, precedents = GET its panel's JSON after it, submit = POST "
            "accept, search = GET item list (ms)"
        )
        print(
            f"{'store':<9} {'decisions':>9} {'per s':>6} {'next p50':>9} {'p95':>7} {'p99':>7} "
            f"{'precedents p50':>15} {'p95':>7} "
            f"{'submit p50':>11} {'p95':>7} {'search p50':>11} {'p95':>7} {'requeue s':>10}"
        )
    for store in args.stores.split(","):
        try:
            with _url(store, args.pg_shared_buffers) as url:
                r = bench(store, url, args)
        except PostgresUnavailable as exc:
            print(f"{store:<9} skipped: {exc}")
            continue
        if args.json:
            print(json.dumps(asdict(r)))
            continue
        print(
            f"{r.store:<9} {r.decisions:>9} {r.decisions / r.seconds:>6.1f} "
            f"{r.next_p50_ms:>9.1f} {r.next_p95_ms:>7.1f} {r.next_p99_ms:>7.1f} "
            f"{r.precedents_p50_ms:>15.1f} {r.precedents_p95_ms:>7.1f} "
            f"{r.submit_p50_ms:>11.1f} {r.submit_p95_ms:>7.1f} "
            f"{r.search_p50_ms:>11.1f} {r.search_p95_ms:>7.1f} {r.requeue_s:>10.2f}",
            flush=True,
        )
        print(
            f"{'':<9} ({r.searches} searches; requeue: {r.requeue_notice}; server CPU "
            f"{r.server_cpu_s / r.seconds:.0%}, client CPU {r.client_cpu_s / r.seconds:.0%}; "
            f"load average {r.load_before} before, {r.load_after} after; seeding took "
            f"{r.seed_s:.0f} s, settling the decided items {r.settle_s:.0f} s)",
            flush=True,
        )


if __name__ == "__main__":
    main()
