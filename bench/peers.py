"""critic next to distilabel and bespokelabs-curator: the same server, items and JSON schema.

Each client runs as its own process, started the way its users start it, and is measured from
the outside: wall time from start to exit, CPU of the process and all its children
(``RUSAGE_CHILDREN``), peak resident memory of the process tree (sampled every 50 ms), and the
requests the server finished for it (``vllm:request_success_total`` from its ``/metrics``,
before and after).

- **critic**: ``python -m critic label ITEMS -c harmlessness --backend vllm-server ...
  --max-reasks 0`` into a fresh SQLite store (reading, rendering, parsing, validating, storing).
- **distilabel** (``--distilabel-venv``): a ``Pipeline`` of ``LoadDataFromDicts >>
  ChatGeneration(llm=OpenAILLM(...))`` with ``input_batch_size`` = the concurrency, caching off.
- **curator** (``--curator-venv``): a ``curator.LLM`` subclass on the ``openai`` backend with
  ``max_concurrent_requests`` = the concurrency and request/token rate limits raised (its
  defaults throttle a model it does not know); its cache goes to a fresh directory per pass;
  ``TIKTOKEN_CACHE_DIR`` points at the tokenizer files litellm ships, because tiktoken would
  otherwise download them. curator sends one probe request first (it shows in its requests).

Every peer gets critic's own rendered messages (``Labeler.request(item)``) and critic's JSON
schema, sent as vLLM's ``structured_outputs`` with ``disable_any_whitespace`` (the peers pass it
as an extra body field), ``temperature`` 0, ``seed`` 0 and the same ``max_tokens``, so every
client asks the server for the same tokens. The peers live in their own virtualenvs, never in
critic's dependencies::

    python -m venv /work/peers/distilabel && /work/peers/distilabel/bin/pip install \\
        'distilabel[openai]==1.5.3' requests
    python -m venv /work/peers/curator && /work/peers/curator/bin/pip install \\
        'bespokelabs-curator==0.1.31'
    python bench/peers.py --start-server --distilabel-venv /work/peers/distilabel \\
        --curator-venv /work/peers/curator

Passes run interleaved (critic, distilabel, curator, then the next round in rotated order), after
one warm-up pass of critic; the table gives medians over ``--rounds`` (3). A benchmark, not a
test: it asserts nothing about speed.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as `python bench/peers.py`, bench/ is first on sys.path, and its scripts (bench/queue.py)
# would shadow standard modules; the repository root is what should be there.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    del sys.path[0]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import tempfile
import textwrap
import threading
import time
from dataclasses import dataclass

import psutil

from bench.throughput import FIELDS, reachable, server_for, write_items
from critic import get_backend
from critic.backends.vllm_server import request_body
from critic.constitution import load_constitution
from critic.items import Item, load_items
from critic.render import Templates
from critic.tasks.label import Labeler, LabelOptions
from critic.testing.vllm_server import metrics

DONE = "vllm:request_success_total"
ROOT = Path(__file__).resolve().parents[1]

DISTILABEL = """
import json, sys
spec = json.load(open(sys.argv[1]))
from distilabel.models.llms import OpenAILLM
from distilabel.pipeline import Pipeline
from distilabel.steps import LoadDataFromDicts
from distilabel.steps.tasks import ChatGeneration

rows = [{"messages": item["messages"]} for item in spec["items"]]
with Pipeline(name="critic-peers", cache_dir=spec["workdir"]) as pipeline:
    load = LoadDataFromDicts(data=rows, batch_size=len(rows))
    chat = ChatGeneration(
        llm=OpenAILLM(
            model=spec["model"], base_url=spec["base_url"], api_key="EMPTY", max_retries=3,
            timeout=600,
            generation_kwargs={
                "max_new_tokens": spec["max_tokens"], "temperature": 0.0,
                "extra_body": {"seed": 0, "structured_outputs": spec["structured_outputs"]},
            },
        ),
        input_batch_size=spec["concurrency"],
    )
    load >> chat
distiset = pipeline.run(use_cache=False)
out = distiset["default"]["train"]
print("RESULT " + json.dumps({"items": len(out), "ok": sum(1 for r in out if r["generation"])}))
"""

CURATOR = """
import json, sys
spec = json.load(open(sys.argv[1]))
from bespokelabs import curator
from datasets import Dataset

class Label(curator.LLM):
    def prompt(self, row):
        return row["messages"]

    def parse(self, row, response):
        return {"id": row["id"], "text": response}

llm = Label(
    model_name=spec["model"], backend="openai",
    generation_params={
        "max_tokens": spec["max_tokens"], "temperature": 0.0, "seed": 0,
        "structured_outputs": spec["structured_outputs"],
    },
    backend_params={
        "base_url": spec["base_url"], "api_key": "EMPTY", "max_retries": 3,
        "max_concurrent_requests": spec["concurrency"], "require_all_responses": False,
        "max_requests_per_minute": 10_000_000, "max_tokens_per_minute": 10_000_000_000,
    },
)
result = llm(Dataset.from_list(spec["items"]))
rows = getattr(result, "dataset", result)
print("RESULT " + json.dumps({"items": len(rows), "ok": sum(1 for r in rows if r["text"])}))
"""


@dataclass
class Run:
    client: str
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    requests: int
    items: int
    ok: int

    @property
    def items_per_s(self) -> float:
        return self.ok / self.wall_s if self.wall_s else 0.0


def peak_rss(pid: int, stop: threading.Event, out: list[float]) -> None:
    """Sample the resident memory of a process and all its descendants until `stop`."""
    peak = 0.0
    try:
        root = psutil.Process(pid)
    except psutil.NoSuchProcess:
        out.append(0.0)
        return
    while not stop.is_set():
        total = 0
        with contextlib.suppress(psutil.Error):
            for proc in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    total += proc.memory_info().rss
        peak = max(peak, total / 2**20)
        stop.wait(0.05)
    out.append(peak)


def measure(client: str, cmd: list[str], env: dict[str, str], root_url: str, items: int) -> Run:
    before = metrics(root_url).get(DONE, 0.0)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    stop, peak = threading.Event(), []  # type: ignore[var-annotated]
    sampler = threading.Thread(target=peak_rss, args=(proc.pid, stop, peak))
    sampler.start()
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - started
    stop.set()
    sampler.join()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)
    time.sleep(0.5)  # the engine publishes its counters from another process
    requests = int(metrics(root_url).get(DONE, 0.0) - before)
    done, ok = parse_result(client, stdout, stderr, proc.returncode, items)
    return Run(client, wall, cpu, peak[0] if peak else 0.0, requests, done, ok)


def parse_result(client: str, stdout: str, stderr: str, code: int, items: int) -> tuple[int, int]:
    if client == "critic":
        if code not in (0, 1):
            raise RuntimeError(f"critic exited {code}:\n{stderr[-3000:]}")
        summary = json.loads(stdout)
        return int(summary["processed"]), int(summary["drafted"])
    for line in stdout.splitlines():
        if line.startswith("RESULT "):
            data = json.loads(line[len("RESULT ") :])
            return int(data["items"]), int(data["ok"])
    raise RuntimeError(f"{client} exited {code} without a result:\n{stderr[-3000:]}")


def commands(
    args: argparse.Namespace, url: str, model: str, workdir: Path, source: Path, spec: Path
) -> dict[str, tuple[list[str], dict[str, str]]]:
    env = {**os.environ, "OPENAI_API_KEY": "EMPTY", "TOKENIZERS_PARALLELISM": "false"}
    out: dict[str, tuple[list[str], dict[str, str]]] = {}
    db = workdir / "critic.db"
    out["critic"] = (
        [
            sys.executable, "-m", "critic", "label", str(source), "-c", "harmlessness",
            "--backend", "vllm-server", "--base-url", url, "--model", model,
            "--db", f"sqlite:///{db}", "--max-reasks", "0", "--max-tokens", str(args.max_tokens),
            "--concurrency", str(args.concurrency), "--json", "--quiet",
        ],
        {**env, "PYTHONPATH": os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])},
    )  # fmt: skip
    if args.distilabel_venv:
        script = workdir / "distilabel_run.py"
        script.write_text(textwrap.dedent(DISTILABEL))
        python = str(Path(args.distilabel_venv) / "bin" / "python")
        out["distilabel"] = ([python, str(script), str(spec)], env)
    if args.curator_venv:
        script = workdir / "curator_run.py"
        script.write_text(textwrap.dedent(CURATOR))
        python = Path(args.curator_venv) / "bin" / "python"
        tokenizers = tiktoken_dir(python)
        cur_env = {**env, "TIKTOKEN_CACHE_DIR": tokenizers, "CURATOR_DISABLE_CACHE": "true"}
        out["curator"] = ([str(python), str(script), str(spec)], cur_env)
    return out


def tiktoken_dir(python: Path) -> str:
    """The tokenizer files litellm ships, in the curator venv (tiktoken reads them offline)."""
    code = "import litellm, os; print(os.path.join(os.path.dirname(litellm.__file__), "
    code += "'litellm_core_utils', 'tokenizers'))"
    found = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=True)
    return found.stdout.strip().splitlines()[-1]


def write_spec(args: argparse.Namespace, url: str, model: str, source: Path, workdir: Path) -> Path:
    """Critic's exact messages and schema, for the peers."""
    options = LabelOptions(max_tokens=args.max_tokens, temperature=0.0, seed=0, max_reasks=0)
    constitution = load_constitution("harmlessness")
    labeler = Labeler(get_backend("fake", model=model), constitution, Templates.load(), options)
    items = [e for e in load_items(source, FIELDS) if isinstance(e, Item)]
    requests = [labeler.request(item) for item in items]
    body = request_body(model, requests[0])
    pairs = zip(items, requests, strict=True)
    spec = {
        "model": model, "base_url": url, "max_tokens": args.max_tokens,
        "concurrency": args.concurrency, "workdir": str(workdir / "peer-cache"),
        "structured_outputs": body["structured_outputs"],
        "items": [{"id": i.id, "messages": list(r.messages)} for i, r in pairs],
    }  # fmt: skip
    path = workdir / "spec.json"
    path.write_text(json.dumps(spec))
    return path


def table(runs: list[Run], clients: list[str]) -> str:
    lines = [
        "| client | median items/s | min-max | client CPU per item | peak RSS (tree) | requests |",
        "|---|---|---|---|---|---|",
    ]
    for client in clients:
        mine = [r for r in runs if r.client == client]
        rates = [r.items_per_s for r in mine]
        cpu = statistics.median(r.cpu_s / max(1, r.ok) * 1000 for r in mine)
        rss = statistics.median(r.peak_rss_mb for r in mine)
        reqs = statistics.median(r.requests for r in mine)
        lines.append(
            f"| {client} | {statistics.median(rates):.1f} | {min(rates):.1f}-{max(rates):.1f} "
            f"| {cpu:.1f} ms | {rss:.0f} MB | {reqs:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", help="OpenAI base URL of a vLLM server (ends in /v1)")
    parser.add_argument("--model", help="served model name (with --base-url)")
    parser.add_argument("--start-server", action="store_true", help="start a tiny-model server")
    parser.add_argument("--items", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--max-tokens", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--distilabel-venv", help="virtualenv with distilabel[openai] installed")
    parser.add_argument("--curator-venv", help="virtualenv with bespokelabs-curator installed")
    args = parser.parse_args(argv)
    if args.base_url and not args.model:
        parser.error("--base-url needs --model")
    if not args.base_url and not args.start_server:
        parser.error("give --base-url URL --model NAME, or --start-server")
    import asyncio

    with tempfile.TemporaryDirectory(prefix="critic-peers-") as tmp, server_for(args) as (url, m):
        error = asyncio.run(reachable(url))
        if error:
            print(f"error: no vLLM server answers at {url} ({error})", file=sys.stderr)
            return 1
        workdir = Path(tmp)
        source = workdir / "items.jsonl"
        write_items(source, args.items)
        spec = write_spec(args, url, m, source, workdir)
        cmds = commands(args, url, m, workdir, source, spec)
        root = url.rstrip("/").removesuffix("/v1")
        clients = list(cmds)
        print(f"{args.items} items, concurrency {args.concurrency}, max_tokens {args.max_tokens}, "
              f"clients {', '.join(clients)}; load {os.getloadavg()}", flush=True)  # fmt: skip
        runs: list[Run] = []
        for r in range(args.rounds + 1):
            order = clients[r % len(clients) :] + clients[: r % len(clients)]
            for client in order if r else ["critic"]:
                (workdir / "critic.db").unlink(missing_ok=True)
                cmd, env = cmds[client]
                run = measure(client, cmd, env, root, args.items)
                label = f"round {r}" if r else "warm-up"
                print(f"  {label:<8} {client:<10} {run.wall_s:6.2f} s {run.items_per_s:6.1f} "
                      f"items/s  ok {run.ok}/{run.items}  CPU {run.cpu_s:5.2f} s  "
                      f"RSS {run.peak_rss_mb:5.0f} MB  requests {run.requests}",
                      flush=True)  # fmt: skip
                if r:
                    runs.append(run)
        print(f"after: load {os.getloadavg()}")
        print(table(runs, clients))
        peers = [c for c in clients if c != "critic"]
        if peers:
            med = {
                c: statistics.median(r.items_per_s for r in runs if r.client == c) for c in clients
            }
            best = max(peers, key=lambda c: med[c])
            print(f"critic / fastest peer ({best}): {med['critic'] / med[best]:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
