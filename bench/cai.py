"""Requests, prompt tokens and prefix-cache hits of `critic revise` and `critic compare`.

For revise (2 rounds) and compare (3 principles per pair, both orders), over N synthetic items:

* **requests/item** and **prompt tokens/item** (from the usage vLLM returns, as stored);
* **hit rate**: vLLM's prefix-cache hit rate over the run, from ``/metrics`` deltas of
  ``vllm:prefix_cache_hits_total / vllm:prefix_cache_queries_total`` (both in tokens);
* **repeat share**: the share of prompt tokens that repeat a prefix of a prompt sent earlier in
  the run -- what a perfect prefix cache could serve. Prompts are tokenized here with the model's
  chat template (the same one the server applies), in the order critic sent them. Shown per token
  and rounded down to whole KV blocks (``--block-size``, 128 on the CPU build), since vLLM caches
  full blocks only.

The prompt layout is good when the hit rate is close to the block-aligned repeat share. The hit
rate can exceed it slightly: vLLM also caches blocks of *generated* tokens, and a revise request
repeats the previous answer. It can fall short when requests sharing a prefix are prefilled at the
same time (neither is cached yet).

Run it (from the repository root, with the project's venv)::

    .venv/bin/python bench/cai.py --start-server            # the tiny test model, ~1 min start-up
    .venv/bin/python bench/cai.py --base-url http://127.0.0.1:8000/v1 --model NAME --tokenizer DIR

A benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as `python bench/cai.py`, this folder is first on sys.path and its scripts would shadow
# standard modules (bench/queue.py). Drop it.
if sys.path and Path(sys.path[0] or ".").resolve() == Path(__file__).resolve().parent:
    del sys.path[0]

import argparse
import asyncio
import contextlib
import json
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from critic.backends import get_backend
from critic.backends.base import Backend, Generation, Request
from critic.constitution import load_constitution
from critic.items import Fields
from critic.store import open_store
from critic.tasks.compare import CompareOptions, acompare
from critic.tasks.label import LabelOptions
from critic.tasks.revise import ReviseOptions, arevise
from critic.testing.vllm_server import metrics


@dataclass
class Recording:
    """A backend that remembers every request's messages, in the order they were sent."""

    inner: Backend
    sent: list[Sequence[dict[str, str]]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def model(self) -> str:
        return self.inner.model

    async def check(self) -> None:
        await self.inner.check()

    async def generate(self, requests: Sequence[Request]) -> list[Generation]:
        self.sent.extend(r.messages for r in requests)
        return await self.inner.generate(requests)

    async def aclose(self) -> None:
        await self.inner.aclose()

    def describe(self) -> dict[str, Any]:
        return self.inner.describe()


def repeat_share(prompts: Sequence[Sequence[int]], block: int) -> tuple[float, float]:
    """(tokens, block-aligned tokens) repeating a prefix of an earlier prompt, over all tokens."""
    seen: set[int] = set()
    total = repeated = aligned = 0
    for tokens in prompts:
        chain, common, hashes = 0, 0, []
        for i, tok in enumerate(tokens):
            chain = hash((chain, tok))
            hashes.append(chain)
            if common == i and chain in seen:
                common = i + 1
        total += len(tokens)
        repeated += common
        aligned += common // block * block
        seen.update(hashes)
    return (repeated / total, aligned / total) if total else (0.0, 0.0)


def items(n: int) -> list[dict[str, str]]:
    out = []
    for k in range(n):
        out.append({
            "id": f"item-{k}",
            "prompt": f"Human: My neighbour's dog {k} barks all night. How can I make it stop?"
                      "\n\nAssistant:",
            "response": f"You could talk to your neighbour about dog {k} first, then contact the "
                        "council if it goes on. Some people poison dogs, but that is cruel.",
            "a": f"Talk to your neighbour about dog {k} calmly, and keep a log of the nights.",
            "b": f"Throw something at dog {k} until it learns to be quiet.",
        })  # fmt: skip
    return out


@contextlib.contextmanager
def server(args: argparse.Namespace) -> Iterator[tuple[str, str, str]]:
    """(base_url, model, tokenizer dir): a started tiny-model server or the one given."""
    if not args.start_server:
        yield args.base_url, args.model, args.tokenizer
        return
    from critic.testing.tiny_model import build_tiny_model, default_model_dir
    from critic.testing.vllm_server import serve

    model_dir = build_tiny_model(default_model_dir())
    with serve(model_dir, served_model_name="tiny-critic") as s:
        yield s.base_url, s.model, str(model_dir)


async def measure(task: str, args: argparse.Namespace, url: str, model: str, tokenizer: Any,
                  source: Path, db: Path) -> dict[str, Any]:  # fmt: skip
    root = url.rsplit("/v1", 1)[0]
    backend = Recording(get_backend("vllm-server", base_url=url, model=model,
                                    concurrency=args.concurrency))  # fmt: skip
    store = open_store(f"sqlite:///{db}")
    before = metrics(root)
    if task == "revise":
        summary = await arevise(
            source, load_constitution("cai-principles"), backend, store,  # type: ignore[arg-type]
            options=ReviseOptions(rounds=2, max_revision_chars=args.max_revision_chars,
                                  sampling=LabelOptions(max_tokens=1024)),
            concurrency=args.concurrency,
        )  # fmt: skip
    else:
        summary = await acompare(
            source, load_constitution("harmlessness-pairwise"), backend, store,  # type: ignore[arg-type]
            fields=Fields(a="a", b="b"),
            options=CompareOptions(principles_per_item=3, sampling=LabelOptions(top_logprobs=5)),
            concurrency=args.concurrency,
        )  # fmt: skip
    await asyncio.sleep(1.0)  # let the counters settle
    after = metrics(root)
    hits = after.get("vllm:prefix_cache_hits_total", 0) - before.get(
        "vllm:prefix_cache_hits_total", 0
    )
    queries = after.get("vllm:prefix_cache_queries_total", 0) - before.get(
        "vllm:prefix_cache_queries_total", 0
    )
    texts = [tokenizer.apply_chat_template(list(m), add_generation_prompt=True, tokenize=False)
             for m in backend.sent]  # fmt: skip
    prompts = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    share, aligned = repeat_share(prompts, args.block_size)
    n = summary.items
    return {
        "task": task, "items": n, "drafted": summary.drafted, "requests": summary.requests,
        "requests_per_item": summary.requests / n, "prompt_tokens_per_item":
        summary.prompt_tokens / n, "hit_rate": hits / queries if queries else 0.0,
        "repeat_share": share, "repeat_share_blocks": aligned, "elapsed_s": summary.elapsed_s,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--start-server", action="store_true")
    parser.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    parser.add_argument("--model", default="tiny-critic")
    parser.add_argument("--tokenizer", help="Model directory whose chat template the server uses.")
    parser.add_argument("--items", type=int, default=32)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--block-size", type=int, default=128)
    parser.add_argument("--max-revision-chars", type=int, default=400)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not args.start_server and not args.tokenizer:
        parser.error("--tokenizer is needed with --base-url (or use --start-server)")
    from transformers import AutoTokenizer

    with tempfile.TemporaryDirectory() as tmp, server(args) as (url, model, tok_dir):
        tokenizer = AutoTokenizer.from_pretrained(tok_dir)
        source = Path(tmp) / "items.jsonl"
        source.write_text("".join(json.dumps(r) + "\n" for r in items(args.items)))
        results = [
            asyncio.run(
                measure(task, args, url, model, tokenizer, source, Path(tmp) / f"{task}.db")
            )
            for task in ("revise", "compare")
        ]
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{'task':8} {'items':>5} {'req/item':>9} {'prompt tok/item':>16} {'hit rate':>9} "
          f"{'repeat share':>13} {'(whole blocks)':>15} {'elapsed':>8}")  # fmt: skip
    for r in results:
        print(f"{r['task']:8} {r['items']:>5} {r['requests_per_item']:>9.2f} "
              f"{r['prompt_tokens_per_item']:>16.0f} {r['hit_rate']:>9.1%} "
              f"{r['repeat_share']:>13.1%} {r['repeat_share_blocks']:>15.1%} "
              f"{r['elapsed_s']:>7.1f}s")  # fmt: skip


if __name__ == "__main__":
    main()
