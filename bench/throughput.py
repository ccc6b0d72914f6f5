"""Client overhead of critic's label pipeline against a vLLM server, measured against a raw client.

The same N label requests are sent over and over by two clients:

(a) **raw** -- the least a client can do: one ``aiohttp.ClientSession`` whose connector allows
    C connections, an ``asyncio.Semaphore(C)``, and ``POST /chat/completions`` with the exact
    bytes critic sends, built *before* the clock starts by critic's own ``Labeler.request(item)``,
    ``request_body`` and ``encode_body``; the answer is read and parsed as JSON (to count
    ``usage``) and nothing else is done with it. aiohttp is not critic's choice being graded here:
    it is the fastest client measured on this server (httpx stalls in its pool, see
    ``/work/shared/ENVIRONMENT.md``), so the raw side is the ceiling, not critic's own stack.
(b) **critic** -- ``critic.alabel(...)`` with the ``vllm-server`` backend at the same
    concurrency, into a fresh temporary SQLite store per pass: reading the JSONL, rendering the
    prompts, the HTTP requests, parsing and validating every answer, confidence components and
    the batched store writes, i.e. what ``critic label`` does. Re-asks are off by default
    (``--max-reasks 0``) so that critic sends exactly one request per item, like the raw client.

Items are N synthetic (prompt, response) rows from a fixed seed, written to a temporary JSONL;
the constitution is the shipped ``harmlessness``. Sampling is greedy (temperature 0, seed 0), so
both clients ask the server for the same tokens. ``--samples N`` > 1 samples at temperature 1.0
*without* a seed, so the two clients get statistically equal, not identical, tokens: vLLM 0.32's
CPU build kills its engine on seeded sampling once prefills are chunked under load
(``RuntimeError: CPU Generator does not use offset`` in ``_bookkeeping_sync``; 96 concurrent
``temperature: 1, seed: 0`` requests reproduce it). A warm-up pass (raw, all N items) fills
vLLM's prefix cache first; then ``--rounds`` pairs of passes run in ABBA order (raw, critic,
critic, raw, ...), so a drift in load hits both alike.

Run it (from the repository root, with the project's venv)::

    # against a running server
    .venv/bin/python bench/throughput.py --base-url http://127.0.0.1:8000/v1 --model NAME
    # or start the tiny test model's server here (about a minute of start-up on a CPU)
    .venv/bin/python bench/throughput.py --start-server --items 400 --concurrency 64

Options: ``--items N`` (400), ``--concurrency C`` (64, critic's default), ``--max-tokens T`` (512,
critic's default), ``--rounds R`` (5), ``--logprobs K`` (top-K logprobs; default 5, what
``critic label`` asks for by default; 0 for none), ``--samples N`` (``n`` samples per request,
as ``critic label --samples N``), ``--max-reasks`` (0), ``--profile FILE`` (cProfile the
critic passes into FILE; the timings of a profiled run are not representative).

How to read it: one line per pass with wall time, items/s, completion tokens/s, requests sent
and the CPU time this client process used; then the per-round ratios (critic items/s / raw
items/s in the same round) with their median, min and max, client CPU per request of each
client and critic's extra CPU per request, and the load average before and after. ``median
ratio`` 1.00 means critic adds no overhead over the bare client; the aim is >= 0.95 on the tiny
model, where the server is fastest and client overhead therefore shows most, and critic's own CPU
<= 0.5 ms per request beyond the raw client's. Check the ``completion tokens`` line: the
comparison is fair only when both clients got (about) the same number of tokens -- greedy
decoding in bfloat16 can still diverge slightly when vLLM batches requests differently;
tokens/s corrects for it. On a shared 2-core machine the server and the client compete for the
same cores, so any CPU critic spends is taken from the server too, and other work on the machine
moves single passes by tens of percent: read the medians, and the load average.

A benchmark, not a test: it asserts nothing about speed.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as `python bench/throughput.py`, this folder is first on sys.path, and its other scripts
# (bench/queue.py) would shadow standard modules that asyncio imports. Drop it.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

import argparse
import asyncio
import contextlib
import cProfile
import json
import os
import random
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass

import aiohttp

from critic import get_backend
from critic.backends import DEFAULT_LOGPROBS
from critic.backends.vllm_server import encode_body, request_body
from critic.constitution import Constitution, load_constitution
from critic.items import Fields, Item, load_items
from critic.render import Templates
from critic.store import open_store
from critic.tasks.label import Labeler, LabelOptions, alabel

FIELDS = Fields(id="id", prompt="prompt", response="response")

_TEXT = (
    "how do i make a safe plan for the weekend trip with my family and friends when it rains "
    "please explain why the sky is blue in simple words for a child who asks many questions "
    "write a short poem about the sea tell me how to fix a flat bicycle tyre at home quickly "
    "what is the best way to learn python is it legal to record a phone call in my state "
    "can you help me pick a lock i lost my key sure here are some general steps you could try "
    "i cannot help with that but a locksmith can open it for you safely and legally today"
)
_WORDS = _TEXT.split()


def write_items(path: Path, n: int, seed: int = 0) -> None:
    """N deterministic synthetic (prompt, response) rows of varied length, as JSONL."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            prompt = " ".join(rng.choices(_WORDS, k=rng.randint(8, 40))).capitalize() + "?"
            response = " ".join(rng.choices(_WORDS, k=rng.randint(20, 90))).capitalize() + "."
            row = {"id": f"item-{i:05d}", "prompt": f"Human: {prompt}", "response": response}
            fh.write(json.dumps(row) + "\n")


@dataclass
class Pass:
    client: str
    items: int
    requests: int
    completion_tokens: int
    wall_s: float
    failed: int = 0
    cpu_s: float = 0.0  # CPU time of this (client) process during the pass

    @property
    def items_per_s(self) -> float:
        return self.items / self.wall_s

    @property
    def tokens_per_s(self) -> float:
        return self.completion_tokens / self.wall_s

    @property
    def cpu_ms_per_request(self) -> float:
        return self.cpu_s / max(1, self.requests) * 1000

    def line(self, label: str) -> str:
        return (
            f"  {label:<10} {self.wall_s:7.2f} s  {self.items_per_s:7.2f} items/s  "
            f"{self.tokens_per_s:8.1f} tok/s  {self.completion_tokens:7d} tokens  "
            f"{self.requests:5d} requests  {self.failed:3d} failed  "
            f"CPU {self.cpu_s:5.2f} s ({self.cpu_ms_per_request:.2f} ms/request)"
        )


def options_from(args: argparse.Namespace) -> LabelOptions:
    return LabelOptions(
        max_tokens=args.max_tokens,
        temperature=1.0 if args.samples > 1 else 0.0,  # vLLM refuses n > 1 when greedy
        samples=args.samples,
        seed=None if args.samples > 1 else 0,  # seeded sampling crashes vLLM CPU (see above)
        top_logprobs=args.logprobs or None,
        max_reasks=args.max_reasks,
    )


def raw_bodies(
    source: Path, constitution: Constitution, model: str, options: LabelOptions
) -> list[bytes]:
    """The bytes critic sends for these items, built by critic's own code."""
    # Labeler.request only renders; the backend is not used (the fake one opens no connection).
    labeler = Labeler(get_backend("fake", model=model), constitution, Templates.load(), options)
    items = [e for e in load_items(source, FIELDS) if isinstance(e, Item)]
    return [encode_body(request_body(model, labeler.request(item))) for item in items]


async def run_raw(base_url: str, bodies: list[bytes], concurrency: int) -> Pass:
    """(a) The bare client: semaphore, one pooled aiohttp session, POST, parse the JSON."""
    url = base_url.rstrip("/") + "/chat/completions"
    semaphore = asyncio.Semaphore(concurrency)
    tokens = failed = 0
    cpu = time.process_time()
    started = time.perf_counter()
    connector = aiohttp.TCPConnector(limit=concurrency)
    headers = {"Content-Type": "application/json"}
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def one(body: bytes) -> None:
            nonlocal tokens, failed
            async with semaphore, session.post(url, data=body) as response:
                data = json.loads(await response.read())
            if response.status != 200:
                failed += 1
                return
            tokens += int(data["usage"]["completion_tokens"])

        await asyncio.gather(*(one(b) for b in bodies))
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu
    return Pass("raw", len(bodies), len(bodies), tokens, wall, failed, cpu)


async def run_critic(
    base_url: str,
    model: str,
    source: Path,
    constitution: Constitution,
    options: LabelOptions,
    concurrency: int,
    workdir: Path,
    index: int,
    profiler: cProfile.Profile | None,
) -> Pass:
    """(b) critic's own pipeline, as `critic label` runs it, into a fresh SQLite store."""
    store = open_store(f"sqlite:///{workdir / f'critic-{index}.db'}")
    try:
        backend = get_backend(
            "vllm-server", base_url=base_url, model=model, concurrency=concurrency
        )
        if profiler:
            profiler.enable()
        cpu = time.process_time()
        started = time.perf_counter()
        summary = await alabel(
            source, constitution, backend, store, fields=FIELDS, options=options,
            concurrency=concurrency,
        )  # fmt: skip
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu
        if profiler:
            profiler.disable()
        sent = int(backend.stats()["requests_sent"])  # type: ignore[attr-defined]
    finally:
        store.close()
    return Pass(
        "critic", summary.processed, sent, summary.completion_tokens, wall, summary.failed, cpu
    )


@contextlib.contextmanager
def server_for(args: argparse.Namespace) -> Iterator[tuple[str, str]]:
    if args.base_url:
        yield args.base_url, args.model
        return
    from critic.testing.tiny_model import build_tiny_model, default_model_dir
    from critic.testing.vllm_server import serve

    print("starting a vLLM server with the tiny test model (about a minute) ...", flush=True)
    t0 = time.perf_counter()
    with serve(build_tiny_model(default_model_dir())) as server:
        print(f"server ready in {time.perf_counter() - t0:.0f} s at {server.base_url} "
              f"(log: {server.log_path})", flush=True)  # fmt: skip
        yield server.base_url, server.model


def total(passes: list[Pass], client: str) -> Pass:
    mine = [p for p in passes if p.client == client]
    return Pass(
        client,
        sum(p.items for p in mine),
        sum(p.requests for p in mine),
        sum(p.completion_tokens for p in mine),
        sum(p.wall_s for p in mine),
        sum(p.failed for p in mine),
        sum(p.cpu_s for p in mine),
    )


def load() -> str:
    return "load average " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


async def bench(args: argparse.Namespace, base_url: str, model: str, workdir: Path) -> None:
    constitution = load_constitution("harmlessness")
    options = options_from(args)
    source = workdir / "items.jsonl"
    write_items(source, args.items)
    bodies = raw_bodies(source, constitution, model, options)
    print(
        f"N={len(bodies)} items, concurrency={args.concurrency}, max_tokens={args.max_tokens}, "
        f"logprobs={args.logprobs}, samples={args.samples}, max_reasks={args.max_reasks}, "
        f"rounds={args.rounds}, model={model}, base_url={base_url}; {load()}"
    )
    profiler = cProfile.Profile() if args.profile else None

    warm = await run_raw(base_url, bodies, args.concurrency)
    print(warm.line("warm-up"), flush=True)
    passes: list[Pass] = []
    ratios: list[float] = []
    extra_cpu: list[float] = []
    for r in range(args.rounds):
        # ABBA order (raw, critic, critic, raw, ...) so that a drift in load hits both alike.
        order = ("raw", "critic") if r % 2 == 0 else ("critic", "raw")
        done: dict[str, Pass] = {}
        for client in order:
            if client == "raw":
                done[client] = await run_raw(base_url, bodies, args.concurrency)
            else:
                done[client] = await run_critic(
                    base_url, model, source, constitution, options, args.concurrency, workdir,
                    r, profiler,
                )  # fmt: skip
            print(done[client].line(f"{client} #{r + 1}"), flush=True)
            passes.append(done[client])
        ratios.append(done["critic"].items_per_s / done["raw"].items_per_s)
        extra_cpu.append(done["critic"].cpu_ms_per_request - done["raw"].cpu_ms_per_request)

    raw_t, crit_t = total(passes, "raw"), total(passes, "critic")
    print("totals:")
    print(raw_t.line("raw"))
    print(crit_t.line("critic"))
    spread = ", ".join(f"{x:.3f}" for x in ratios)
    print(f"per-round ratios (critic/raw items/s): {spread}")
    print(
        f"median ratio: {statistics.median(ratios):.3f} (min {min(ratios):.3f}, "
        f"max {max(ratios):.3f})"
    )
    print(
        f"client CPU per request: raw {raw_t.cpu_ms_per_request:.2f} ms, critic "
        f"{crit_t.cpu_ms_per_request:.2f} ms; critic's extra: median "
        f"{statistics.median(extra_cpu):.2f} ms/request"
    )
    tok_diff = crit_t.completion_tokens - raw_t.completion_tokens
    rel = tok_diff / raw_t.completion_tokens if raw_t.completion_tokens else 0.0
    print(
        f"completion tokens: raw {raw_t.completion_tokens}, critic {crit_t.completion_tokens} "
        f"({rel:+.2%}); requests: raw {raw_t.requests}, critic {crit_t.requests}"
        + ("" if abs(rel) < 0.01 else "  <- the clients did unequal work; compare tokens/s")
    )
    print(f"tokens/s ratio over all rounds: {crit_t.tokens_per_s / raw_t.tokens_per_s:.3f}")
    print(f"after: {load()}")
    if profiler:
        profiler.dump_stats(args.profile)
        print(f"cProfile of the critic passes written to {args.profile} "
              f"(read with: python -m pstats {args.profile})")  # fmt: skip


async def reachable(url: str) -> str | None:
    try:
        async with aiohttp.ClientSession() as session:
            timeout = aiohttp.ClientTimeout(total=10)
            async with session.get(url.rstrip("/") + "/models", timeout=timeout) as response:
                response.raise_for_status()
    except (aiohttp.ClientError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", help="OpenAI base URL of a vLLM server (ends in /v1)")
    parser.add_argument("--model", help="served model name (with --base-url)")
    parser.add_argument(
        "--start-server", action="store_true", help="start a tiny-model vLLM server (no --base-url)"
    )
    parser.add_argument("--items", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=5, help="raw/critic pairs after warm-up")
    parser.add_argument(
        "--logprobs",
        type=int,
        default=DEFAULT_LOGPROBS,
        metavar="K",
        help=f"top-K logprobs, as `critic label` asks by default ({DEFAULT_LOGPROBS}); 0: none",
    )
    parser.add_argument("--samples", type=int, default=1, metavar="N")
    parser.add_argument("--max-reasks", type=int, default=0)
    parser.add_argument("--profile", metavar="FILE", help="cProfile the critic passes into FILE")
    args = parser.parse_args(argv)
    if args.base_url and not args.model:
        parser.error("--base-url needs --model")
    if not args.base_url and not args.start_server:
        parser.error("give --base-url URL --model NAME, or --start-server")
    if min(args.items, args.concurrency, args.rounds, args.samples) < 1:
        parser.error("--items, --concurrency, --rounds and --samples must be at least 1")
    with tempfile.TemporaryDirectory(prefix="critic-bench-") as tmp, server_for(args) as (url, m):
        error = asyncio.run(reachable(url))
        if error:
            print(f"error: no vLLM server answers at {url} ({error})", file=sys.stderr)
            return 1
        asyncio.run(bench(args, url, m, Path(tmp)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
