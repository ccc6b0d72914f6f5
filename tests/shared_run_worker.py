"""One process of a run shared through leases (tests/test_shared_run.py): label a file on the
fake backend with a per-request latency, through the library's engine, and print the summary.

    python -m tests.shared_run_worker DB INPUT HOST TTL_S LATENCY_S CONCURRENCY

HOST is the host part of its lease owner (`-`: this machine's); giving each worker another one
plays processes on different machines, which cannot see each other's pids.
"""

from __future__ import annotations

import asyncio
import json
import sys

from critic import leases
from critic.backends.fake import FakeBackend
from critic.constitution import load_constitution
from critic.store import open_store
from critic.tasks.label import alabel


def main() -> None:
    db, source, host, ttl_s, latency_s, concurrency = sys.argv[1:7]
    if host != "-":
        leases.HOST = host
    leases.TTL_S = float(ttl_s)
    leases.RENEW_S = leases.TTL_S / 3
    backend = FakeBackend(latency_s=float(latency_s))
    summary = asyncio.run(
        alabel(
            source,
            load_constitution("harmlessness"),
            backend,
            open_store(db),
            concurrency=int(concurrency),
        )
    )
    print(json.dumps(summary.to_dict()))


if __name__ == "__main__":
    main()
