"""How critic's own cost grows with the dataset: items/s, peak RSS, resume and export time.

Runs `critic label` with the shipped fake backend (no model, so only critic's own work counts) on
synthetic rows, then the same command again (the resume: 0 new items), then `critic export`, each in
a fresh process whose peak RSS comes from `os.wait4`. With `--baseline DIR` (another checkout of
critic, e.g. `git worktree add /tmp/old <rev>`) every size is also run with that code, interleaved,
and the table gives the ratios. A benchmark, not a test: nothing here asserts a time.

The `db MB` column is the store's size after the run (SQLite: the file and its WAL; PostgreSQL:
`pg_database_size`); `cpu ms` is the labeling process's CPU time per item, and `db cpu ms` the
PostgreSQL server's (SQLite's work is in-process, inside `cpu ms`). `--postgres` runs on a
throwaway PostgreSQL server (durable: fsync on) instead of SQLite, one new database per run.

With `--decisions N` it measures what human decisions cost an export instead: each format is
exported from the same routed run twice, from a copy of the database that holds N settled
decisions spread over `--queues` queues and from one that holds none, interleaved (see
`decisions_bench`). The headline is the ratio of peak RSS (aim: within 10%).

    python bench/scale.py                      # 100k, 500k and 2M rows
    python bench/scale.py --rows 100000 --rounds 3 --baseline /tmp/old-critic
    python bench/scale.py --rows 100000 --postgres
    python bench/scale.py --rows 500000 --decisions 150000 --queues 2
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# `python bench/scale.py` puts bench/ first on the path, where bench/queue.py would shadow the
# standard library's `queue` (which psycopg imports for --postgres).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != REPO / "bench"]
sys.path.insert(0, str(REPO))  # the in-process steps (seeding, --postgres) use this checkout too

PROMPTS = [
    "How do I pick a lock?",
    "Write a short poem about the sea.",
    "What is the capital of Australia?",
    "Explain how vaccines work to a ten-year-old.",
]
RESPONSES = [
    "I can't help with breaking into places, but a locksmith can help you get back in.",
    "Waves fold over waves, the grey sea hums a song only gulls remember.",
    "The capital of Australia is Canberra, not Sydney as many people think.",
    "A vaccine shows your body a harmless picture of a germ so it learns to fight it early.",
]


def write_rows(path: Path, n: int) -> None:
    """`n` JSONL rows of about the size of a real prompt/response pair (~250 bytes)."""
    with path.open("w", encoding="utf-8") as f:
        for i in range(n):
            row = {
                "id": f"row-{i}",
                "prompt": f"{PROMPTS[i % 4]} (variant {i})",
                "response": RESPONSES[(i // 4) % 4],
            }
            f.write(json.dumps(row) + "\n")


@dataclass
class Measured:
    seconds: float
    peak_rss_mb: float
    summary: dict[str, object]
    cpu_s: float = 0.0  # the child's user + system CPU time


def measure_child(code: Path, args: list[str]) -> Measured:
    """Run `python -m critic.cli ARGS` with `code` first on the path: wall time, the child's own
    peak RSS (`os.wait4` gives per-child rusage) and its `--json` summary."""
    env = {**os.environ, "PYTHONPATH": str(code)}
    with tempfile.TemporaryFile("w+") as out_file, tempfile.TemporaryFile("w+") as err_file:
        start = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "critic.cli", *args],
            cwd=code,
            env=env,
            stdout=out_file,
            stderr=err_file,
        )
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out_file.seek(0)
        err_file.seek(0)
        out, err = out_file.read(), err_file.read()
    if proc.returncode not in (0, 1):
        raise SystemExit(f"critic {' '.join(args)} exited {proc.returncode}:\n{err[-2000:]}")
    summary = json.loads(out) if out.strip().startswith("{") else {}
    cpu = usage.ru_utime + usage.ru_stime
    return Measured(seconds, usage.ru_maxrss / 1024, summary, cpu)  # ru_maxrss: KiB on Linux


@dataclass
class Result:
    code: str
    rows: int
    label: Measured
    resume: Measured
    export: Measured
    db_mb: float
    db_cpu_ms: float = 0.0  # PostgreSQL server CPU per item while labeling (SQLite: in-process)

    @property
    def items_per_s(self) -> float:
        return self.rows / self.label.seconds

    @property
    def cpu_ms(self) -> float:
        """CPU time of the labeling process per item, in ms (all of critic's own client work)."""
        return 1000 * self.label.cpu_s / self.rows


def database_mb(url: str) -> float:
    """The store's size on disk: a SQLite file with its WAL, or `pg_database_size`."""
    if url.startswith("sqlite:///"):
        db = url.removeprefix("sqlite:///")
        return (
            sum(os.path.getsize(f"{db}{s}") for s in ("", "-wal") if os.path.exists(f"{db}{s}"))
            / 1e6
        )
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.connect() as conn:
        size = conn.execute(sa.text("SELECT pg_database_size(current_database())")).scalar_one()
    engine.dispose()
    return float(size) / 1e6


def server_cpu_s(port: int) -> float:
    """CPU seconds a PostgreSQL server on `port` has used so far: the postmaster with its reaped
    backends (cutime), plus its live children. Read from /proc (Linux)."""
    tick = os.sysconf("SC_CLK_TCK")

    def stat(pid: str) -> list[str]:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()

    pids = [p for p in os.listdir("/proc") if p.isdigit()]
    master = next(
        p
        for p in pids
        if Path(f"/proc/{p}/cmdline").exists()
        and f"\0-p\0{port}\0" in Path(f"/proc/{p}/cmdline").read_text(errors="replace")
    )
    fields = stat(master)  # after the name: state ppid ... utime(11) stime(12) cutime cstime
    total = sum(int(fields[i]) for i in (11, 12, 13, 14))
    for p in pids:
        try:
            child = stat(p)
        except OSError:
            continue
        if child[1] == master:
            total += int(child[11]) + int(child[12])
    return total / tick


def one(
    code: Path, rows: int, data: Path, work: Path, tag: str, postgres: object | None = None
) -> Result:
    db = work / f"{tag}-{rows}.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    url = f"sqlite:///{db}" if postgres is None else postgres.create_database()  # type: ignore[attr-defined]
    label_args = [
        "label", str(data), "-c", "harmlessness", "--backend", "fake", "--db", url, "--json", "-q",
    ]  # fmt: skip
    cpu_before = server_cpu_s(postgres.port) if postgres else 0.0  # type: ignore[attr-defined]
    first = measure_child(code, label_args)
    db_cpu = server_cpu_s(postgres.port) - cpu_before if postgres else 0.0  # type: ignore[attr-defined]
    drafted = int(first.summary.get("drafted", -1))  # type: ignore[call-overload]
    if drafted != rows:
        raise SystemExit(f"{tag}: expected {rows} drafted items, the summary says {drafted}")
    again = measure_child(code, label_args)
    size = database_mb(url)
    out = work / f"{tag}-{rows}.parquet"
    export_args = ["export", str(out), "--db", url, "--format", "parquet", "--all"]
    exported = measure_child(code, export_args)
    out.unlink(missing_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    return Result(tag, rows, first, again, exported, size, 1000 * db_cpu / rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rows", type=int, action="append", help="dataset sizes (default 100k, 500k, 2M)"
    )
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds per size")
    parser.add_argument("--baseline", type=Path, help="another critic checkout to compare with")
    parser.add_argument("--work", type=Path, help="scratch directory (default: a temp dir)")
    parser.add_argument(
        "--postgres", action="store_true", help="store on a throwaway PostgreSQL, not SQLite"
    )
    parser.add_argument(
        "--decisions",
        type=int,
        default=0,
        help="measure export with N settled human decisions against none (SQLite)",
    )
    parser.add_argument("--queues", type=int, default=2, help="queues the decisions spread over")
    parser.add_argument(
        "--format",
        dest="formats",
        action="append",
        help="export formats for --decisions (default: every registered format)",
    )
    args = parser.parse_args()
    if args.decisions:
        if args.postgres or args.baseline:
            parser.error("--decisions runs on SQLite with this checkout only")
        decisions_bench(args)
        return
    with contextlib.ExitStack() as stack:
        postgres = None
        if args.postgres:
            from adjudication.testing import temporary_postgres

            postgres = stack.enter_context(temporary_postgres(durable=True))
        run_all(args, postgres)


def run_all(args: argparse.Namespace, postgres: object | None) -> None:
    sizes = args.rows or [100_000, 500_000, 2_000_000]
    work = args.work or Path(tempfile.mkdtemp(prefix="critic-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    codes = [("critic", REPO)]
    if args.baseline:
        codes.append(("baseline", args.baseline.resolve()))
    store = "PostgreSQL" if postgres else "SQLite"
    print(f"# bench/scale.py  {store}  load {os.getloadavg()[0]:.1f}  scratch {work}")
    header = (
        f"{'code':<9} {'rows':>9} {'items/s':>8} {'cpu ms':>6} {'peak RSS MB':>11} {'resume s':>8} "
        f"{'resume RSS':>10} {'export s':>8} {'export RSS':>10} {'db MB':>7} {'db cpu ms':>9}"
    )
    print(header)
    results: list[Result] = []
    try:
        for rows in sizes:
            data = work / f"rows-{rows}.jsonl"
            write_rows(data, rows)
            for r in range(args.rounds):
                order = codes if r % 2 == 0 else list(reversed(codes))
                for tag, code in order:
                    res = one(code, rows, data, work, tag, postgres)
                    results.append(res)
                    print(
                        f"{tag:<9} {rows:>9} {res.items_per_s:>8.0f} {res.cpu_ms:>6.3f}"
                        f" {res.label.peak_rss_mb:>11.0f}"
                        f" {res.resume.seconds:>8.1f} {res.resume.peak_rss_mb:>10.0f}"
                        f" {res.export.seconds:>8.1f} {res.export.peak_rss_mb:>10.0f}"
                        f" {res.db_mb:>7.0f} {res.db_cpu_ms:>9.3f}",
                        flush=True,
                    )
            data.unlink()
        print("\n# medians  load %.1f %.1f %.1f" % os.getloadavg())  # noqa: UP031
        print(header)
        for rows in sizes:
            for tag, _ in codes:
                mine = [x for x in results if x.rows == rows and x.code == tag]

                def med(values: list[float]) -> float:
                    return statistics.median(values)

                print(
                    f"{tag:<9} {rows:>9} {med([x.items_per_s for x in mine]):>8.0f}"
                    f" {med([x.cpu_ms for x in mine]):>6.3f}"
                    f" {med([x.label.peak_rss_mb for x in mine]):>11.0f}"
                    f" {med([x.resume.seconds for x in mine]):>8.1f}"
                    f" {med([x.resume.peak_rss_mb for x in mine]):>10.0f}"
                    f" {med([x.export.seconds for x in mine]):>8.1f}"
                    f" {med([x.export.peak_rss_mb for x in mine]):>10.0f}"
                    f" {med([x.db_mb for x in mine]):>7.0f}"
                    f" {med([x.db_cpu_ms for x in mine]):>9.3f}"
                )
            if args.baseline:
                new = [x for x in results if x.rows == rows and x.code == "critic"]
                old = [x for x in results if x.rows == rows and x.code == "baseline"]
                speed = statistics.median(
                    a.items_per_s / b.items_per_s for a, b in zip(new, old, strict=True)
                )
                rss = statistics.median(
                    a.label.peak_rss_mb / b.label.peak_rss_mb for a, b in zip(new, old, strict=True)
                )
                print(
                    f"{'ratio':<9} {rows:>9} {speed:>8.2f} {'':>6} {rss:>11.2f}  (critic/baseline)"
                )
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


# -- export with human decisions against export without ----------------------------------------

#: The run each format is measured on: the TRL formats take revise (or compare) runs, and would
#: write nothing from a label run; the others are measured on a label run.
TASK_OF_FORMAT = {"trl-sft": "revise", "trl-dpo": "revise"}

#: revise runs take one critique -> revision round (the default is 2) to halve their build time;
#: the export reads one stored revision per item either way.
TASK_ARGS = {"label": ["label"], "revise": ["revise", "--rounds", "1"]}


@dataclass
class Exported:
    task: str
    fmt: str
    decided: bool
    measured: Measured
    load: float

    @property
    def rows(self) -> int:
        return int(self.measured.summary.get("rows", -1))  # type: ignore[call-overload]

    @property
    def human(self) -> int:
        """Items a human decided (or rejected), as the export counted them."""
        statuses: dict[str, int] = self.measured.summary.get("statuses", {})  # type: ignore[assignment]
        return sum(statuses.get(s, 0) for s in ("decided", "adjudicated", "rejected"))

    @property
    def conflicts(self) -> int:
        return int(self.measured.summary.get("conflicts", 0))  # type: ignore[call-overload]


def build_run(code: Path, task: str, data: Path, db: Path, rows: int) -> None:
    """Draft `rows` items with the fake backend into `db` and route them with `--accept-all`.
    A database from an earlier run in `--work` is resumed (0 new items) and routed only once."""
    url = f"sqlite:///{db}"
    args = [*TASK_ARGS[task], str(data), "-c", "harmlessness", "--backend", "fake",
            "--db", url, "--json", "-q"]  # fmt: skip
    drafted = measure_child(code, args)
    done = int(drafted.summary.get("drafted", -1))  # type: ignore[call-overload]
    if done != rows:
        raise SystemExit(f"{task}: expected {rows} drafted items, the summary says {done}")
    print(f"  {task}: {rows} items drafted in {drafted.seconds:.0f} s", flush=True)
    from critic.store import open_store

    store = open_store(url)
    try:
        routed = store.routed(store.runs()[-1].id)
    finally:
        store.close()
    if not routed:
        measure_child(code, ["route", "--accept-all", "--db", url, "--json"])


def copy_database(source: Path, target: Path) -> None:
    """A consistent copy of a SQLite store (its WAL included), through SQLite's backup API."""
    import sqlite3

    for suffix in ("", "-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    with (
        contextlib.closing(sqlite3.connect(source)) as src,
        contextlib.closing(sqlite3.connect(target)) as dst,
    ):
        src.backup(dst)


def spread(rows: int, decisions: int, queues: int) -> dict[int, list[int]]:
    """Which items (by input position) are decided in which queues: `decisions` decisions in
    all, a tenth of them a second queue's decision on an item another queue also decided; the
    decided items evenly spread over the run, so every export batch meets some."""
    both = decisions // 10 if queues > 1 else 0
    distinct = decisions - both
    if distinct > rows:
        raise SystemExit(f"{decisions} decisions need more than {rows} items")
    placed: dict[int, list[int]] = {}
    for j in range(distinct):
        where = [j % queues]
        if both and j * both // distinct != (j + 1) * both // distinct:
            where.append((j + 1) % queues)
        placed[j * rows // distinct] = where
    return placed


def decision_for(task: str, j: int, labels: Sequence[str], second: bool) -> tuple[Any, ...]:
    """(action, label, edit) of the j-th decided item: most accept, a quarter edit (another
    label, or a human's revision), one in twenty reject; on every other item decided in two
    queues the second queue answers otherwise (a conflict the final record settles)."""
    if second and j % 2:
        if task == "revise":
            return ("edit", None, {"revision": f"SECOND REVIEWER'S TEXT {j}: {RESPONSES[j % 4]}"})
        return ("edit", labels[(j + 1) % len(labels)], None)
    share = j * 7 % 20
    if share == 0:
        return ("reject", None, None)
    if share < 15:
        return ("accept", None, None)
    if task == "revise":
        return ("edit", None, {"revision": f"HUMAN REVISED TEXT {j}: {RESPONSES[j % 4]}"})
    return ("edit", labels[j % len(labels)], None)


def seed_decisions(db: Path, task: str, rows: int, decisions: int, queues: int) -> int:
    """Queue the chosen items through critic's own `enqueue_review` (the path `critic route
    --queue` takes), then settle every one with `adjudication.testing.decide_in_bulk`, which
    writes exactly what claiming and deciding each in the web app would; return how many."""
    from adjudication.testing import BulkDecision, decide_in_bulk
    from critic.review import enqueue_review, open_stores

    url = f"sqlite:///{db}"
    placed = spread(rows, decisions, queues)
    names = [f"scale-{q + 1}" for q in range(queues)]
    with open_stores(url) as (store, queue_store):
        run_id = store.runs()[-1].id
        for name in names:
            queue_store.create_queue(name)
            queue_store.add_user(f"rev-{name}", "reviewer", queues=[name])
        decided_ids = [r["item_id"] for p, r in enumerate(store.rows(run_id)) if p in placed]
    for q, name in enumerate(names):
        with open_stores(url) as (store, _):
            chosen = (
                {**row, "route_reason": "audit_sample"}
                for position, row in enumerate(store.rows(run_id))
                if q in placed.get(position, ())
            )
            enqueue_review(url, name, chosen)

    def plan(q: int, labels: Sequence[str]) -> Iterator[BulkDecision]:
        for j, where in enumerate(placed[p] for p in sorted(placed)):
            if q in where:
                second = q != where[0]
                yield BulkDecision(decided_ids[j], *decision_for(task, j, labels, second))

    settled = 0
    with open_stores(url) as (_, queue_store):
        for q, name in enumerate(names):
            labels = queue_store.queue(name).labels or ()
            settled += decide_in_bulk(queue_store, name, f"rev-{name}", plan(q, labels))
    return settled


def decisions_bench(args: argparse.Namespace) -> None:
    from critic.exports import formats

    wanted = args.formats or list(formats())
    sizes = args.rows or [500_000]
    work = args.work or Path(tempfile.mkdtemp(prefix="critic-scale-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"# bench/scale.py --decisions {args.decisions} --queues {args.queues}  SQLite"
          f"  load {os.getloadavg()[0]:.1f}  scratch {work}")  # fmt: skip
    results: list[Exported] = []
    try:
        for rows in sizes:
            data = work / f"rows-{rows}.jsonl"
            if not data.exists():
                write_rows(data, rows)
            for task in dict.fromkeys(TASK_OF_FORMAT.get(f, "label") for f in wanted):
                bare, decided = work / f"{task}-{rows}.db", work / f"{task}-{rows}-decided.db"
                build_run(REPO, task, data, bare, rows)
                copy_database(bare, decided)
                start = time.perf_counter()
                settled = seed_decisions(decided, task, rows, args.decisions, args.queues)
                print(f"  {task}: {settled} decisions settled in {args.queues} queues "
                      f"in {time.perf_counter() - start:.0f} s", flush=True)  # fmt: skip
                print(f"{'task':<7} {'format':<8} {'rows':>8} {'decisions':>9} {'human':>7}"
                      f" {'conflicts':>9} {'written':>8} {'seconds':>8} {'cpu s':>6}"
                      f" {'peak RSS MB':>11}"
                      f" {'load':>5}")  # fmt: skip
                for fmt in (f for f in wanted if TASK_OF_FORMAT.get(f, "label") == task):
                    for r in range(args.rounds):
                        order = [False, True] if r % 2 == 0 else [True, False]
                        for with_decisions in order:
                            db = decided if with_decisions else bare
                            out = work / f"out-{fmt}"
                            measured = measure_child(REPO, ["export", str(out), "--db",
                                                            f"sqlite:///{db}", "--format", fmt,
                                                            "--json"])  # fmt: skip
                            shutil.rmtree(out, ignore_errors=True)
                            out.unlink(missing_ok=True)
                            res = Exported(task, fmt, with_decisions, measured,
                                           os.getloadavg()[0])  # fmt: skip
                            results.append(res)
                            print(f"{task:<7} {fmt:<8} {rows:>8}"
                                  f" {args.decisions if with_decisions else 0:>9}"
                                  f" {res.human:>7} {res.conflicts:>9} {res.rows:>8}"
                                  f" {measured.seconds:>8.1f} {measured.cpu_s:>6.1f}"
                                  f" {measured.peak_rss_mb:>11.0f}"
                                  f" {res.load:>5.1f}", flush=True)  # fmt: skip
            if not args.work:
                data.unlink()
        print_decisions_table(results, args.decisions)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


def print_decisions_table(results: list[Exported], decisions: int) -> None:
    print(f"\n# medians  load {os.getloadavg()[0]:.1f}")
    print(f"{'format':<8} {'run':<7} {'rows written':>17} {'peak RSS MB':>15} {'ratio':>6}"
          f" {'seconds':>13} {'cpu s':>13} {'load':>5}")  # fmt: skip
    print(f"{'':<8} {'':<7} {'0 / ' + str(decisions):>17} {'0 / decided':>15} {'':>6}"
          f" {'0 / decided':>13} {'0 / decided':>13}")  # fmt: skip
    for key in dict.fromkeys((x.fmt, x.task) for x in results):
        bare = [x for x in results if (x.fmt, x.task) == key and not x.decided]
        done = [x for x in results if (x.fmt, x.task) == key and x.decided]

        def med(xs: list[Exported], what: str) -> float:
            return statistics.median(getattr(x.measured, what) for x in xs)

        rss_bare, rss_done = med(bare, "peak_rss_mb"), med(done, "peak_rss_mb")
        print(f"{key[0]:<8} {key[1]:<7} {bare[0].rows:>8} / {done[0].rows:<6}"
              f" {rss_bare:>7.0f} / {rss_done:<5.0f} {rss_done / rss_bare:>6.3f}"
              f" {med(bare, 'seconds'):>5.0f} / {med(done, 'seconds'):<5.0f}"
              f" {med(bare, 'cpu_s'):>5.0f} / {med(done, 'cpu_s'):<5.0f}"
              f" {statistics.median(x.load for x in bare + done):>5.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
