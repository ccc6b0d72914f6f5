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

    python bench/scale.py                      # 100k, 500k and 2M rows
    python bench/scale.py --rows 100000 --rounds 3 --baseline /tmp/old-critic
    python bench/scale.py --rows 100000 --postgres
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
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# `python bench/scale.py` puts bench/ first on the path, where bench/queue.py would shadow the
# standard library's `queue` (which psycopg imports for --postgres).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != REPO / "bench"]

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
    args = parser.parse_args()
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


if __name__ == "__main__":
    main()
