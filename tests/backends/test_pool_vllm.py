"""One label run over two real vLLM servers (CPU, tiny model): spread, failover, start check.

The second server is the session's spare (`vllm_spare_slot`), which also answers to a second
model name: the kill test (last here, so the session need not start it again) SIGKILLs it, and
the next test that asks for it gets a new one.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from critic import LabelOptions, alabel, get_backend, load_constitution, open_store
from critic.backends.vllm_server import VLLMServerBackend
from critic.errors import BackendError
from critic.testing.vllm_server import ServerSlot, VLLMServer, metrics
from tests.fixtures_real import SPARE_ONLY_NAME

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

DONE = "vllm:request_success_total"
OPTIONS = LabelOptions(max_tokens=256, max_reasks=0)  # one request per item: counts are exact


def make_items(path: Path, n: int) -> Path:
    rows = [
        {"id": f"item-{k}", "prompt": f"Human: question {k} about bikes?", "response": f"Oil {k}."}
        for k in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def backend_for(servers: tuple[VLLMServer, ...], concurrency: int = 8) -> VLLMServerBackend:
    backend = get_backend(
        "vllm-server", base_url=[s.base_url for s in servers], model=servers[0].model,
        concurrency=concurrency,
    )  # fmt: skip
    assert isinstance(backend, VLLMServerBackend)
    return backend


def generations_per_item(db: Path) -> dict[str, int]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT item_id, COUNT(*) FROM generations GROUP BY item_id")
        return {item: count for item, count in rows}


def test_one_run_spreads_its_requests_over_both_servers(
    vllm_servers: tuple[VLLMServer, VLLMServer], tmp_path: Path
) -> None:
    before = [metrics(s.root_url).get(DONE, 0.0) for s in vllm_servers]
    backend = backend_for(vllm_servers)
    store = open_store(f"sqlite:///{tmp_path / 'c.db'}")
    try:
        summary = asyncio.run(
            alabel(
                make_items(tmp_path / "items.jsonl", 48), load_constitution("harmlessness"),
                backend, store, options=OPTIONS, concurrency=8,  # per server
            )
        )  # fmt: skip
    finally:
        store.close()
    after = [metrics(s.root_url).get(DONE, 0.0) for s in vllm_servers]
    served = [b - a for a, b in zip(before, after, strict=True)]
    stats = backend.stats()
    assert summary.drafted + summary.failed == 48 and summary.failed == 0
    # The idle pool fills both servers (8 in flight each) before either answers; after that each
    # freed slot gets the next item, so a server starved of CPU (two servers share two cores
    # here) rightly gets fewer. The unit tests pin the balancing itself down exactly.
    assert min(served) >= 8, served
    assert sum(served) == 48
    assert [s["answered"] for s in stats["servers"]] == served
    assert stats["requests_sent"] == 48


def test_a_server_that_does_not_serve_the_model_is_named_at_start(
    vllm_servers: tuple[VLLMServer, VLLMServer], tmp_path: Path
) -> None:
    main, spare = vllm_servers
    backend = get_backend(
        "vllm-server", base_url=[spare.base_url, main.base_url], model=SPARE_ONLY_NAME
    )
    store = open_store(f"sqlite:///{tmp_path / 'c.db'}")
    try:
        with pytest.raises(BackendError) as err:
            asyncio.run(
                alabel(
                    make_items(tmp_path / "items.jsonl", 4), load_constitution("harmlessness"),
                    backend, store, options=OPTIONS,
                )
            )  # fmt: skip
    finally:
        store.close()
    message = str(err.value)
    assert f"the server at {main.base_url} does not serve model '{SPARE_ONLY_NAME}'" in message
    assert main.model in message and spare.base_url not in message


def test_a_server_killed_mid_run_leaves_every_item_drafted_once(
    vllm_servers: tuple[VLLMServer, VLLMServer],
    vllm_spare_slot: ServerSlot,
    tmp_path: Path,
) -> None:
    n = 240
    db = tmp_path / "c.db"
    backend = backend_for(vllm_servers)
    killed_after: list[int] = []

    async def kill_mid_run() -> None:
        # Mid-run by the run's progress, not the spare's: vLLM answers a batch in one step, so a
        # CPU-starved spare (two servers share two cores) may answer all it holds at once, at the
        # very end; CI saw a kill keyed on its answers land when nothing was left to send. A
        # quarter of the way through, 180 items are still to be sent and the pool must give the
        # dead spare some of them (least loaded), so it must notice the death.
        while sum(s["answered"] for s in backend.stats()["servers"]) < n // 4:
            await asyncio.sleep(0.01)
        killed_after.append(backend.stats()["servers"][1]["answered"])
        vllm_spare_slot.kill()  # SIGKILL to the whole process group

    async def run() -> Any:
        store = open_store(f"sqlite:///{db}")
        killer = asyncio.create_task(kill_mid_run())
        try:
            return await alabel(
                make_items(tmp_path / "items.jsonl", n), load_constitution("harmlessness"),
                backend, store, options=OPTIONS, concurrency=8,  # per server
            )  # fmt: skip
        finally:
            killer.cancel()
            store.close()

    summary = asyncio.run(run())
    assert killed_after, "the run ended before a quarter of its items were answered"
    assert summary.drafted == n and summary.failed == 0 and summary.pending == 0
    per_item = generations_per_item(db)
    assert len(per_item) == n and set(per_item.values()) == {1}  # no item drafted twice
    first, spare = backend.stats()["servers"]
    assert not spare["up"] and spare["times_down"] == 1 and spare["last_error"]
    assert killed_after[0] <= spare["answered"] < n
    assert first["answered"] + spare["answered"] == n
