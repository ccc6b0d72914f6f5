"""`make demo`: label a sample of real data through a real vLLM server on this machine.

Builds (once, cached) a small local critic model, starts a vLLM server on 127.0.0.1, labels
`examples/harmless-sample.jsonl` against the shipped harmlessness constitution, routes the drafts
with a calibrated policy, fills a review queue with the ones a human should see, and prints a
summary. Everything it writes goes under `demo-out/`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console

console = Console(stderr=True, soft_wrap=True)
ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m critic.demo", description=__doc__)
    parser.add_argument("--out", default=str(ROOT / "demo-out"), help="Where results go.")
    parser.add_argument("--items", default=str(ROOT / "examples" / "harmless-sample.jsonl"))
    parser.add_argument("--model-dir", default=None, help="Use this model instead of building.")
    args = parser.parse_args(argv)

    from critic.cli import _summary_table
    from critic.constitution import load_constitution
    from critic.labeling import LabelOptions, label
    from critic.store import open_store
    from critic.testing.vllm_server import serve

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model_dir = Path(args.model_dir) if args.model_dir else _model()
    console.print(f"[bold]1/3[/] starting a vLLM server on {model_dir} (about a minute on CPU)")
    with serve(model_dir, served_model_name="critic-demo", log_path=out / "vllm.log") as server:
        from critic.backends import get_backend

        console.print(f"[bold]2/3[/] labeling {args.items} through {server.base_url}")
        store = open_store(f"sqlite:///{out / 'critic.db'}")
        backend = get_backend("vllm-server", base_url=server.base_url, model=server.model)
        summary = label(
            args.items,
            load_constitution("harmlessness"),
            backend,
            store,
            options=LabelOptions(max_tokens=768, top_logprobs=5),
            concurrency=32,
        )
    console.print("[bold]3/3[/] summary")
    Console().print(_summary_table(summary))
    console.print(
        f"\nresults: {out / 'critic.db'}\n"
        f"export:  .venv/bin/critic export --db sqlite:///{out / 'critic.db'} demo-out/labels.jsonl"
    )
    return 0


def _model() -> Path:
    from critic.testing.tiny_model import build_tiny_model, default_model_dir

    console.print("[bold]0/3[/] building the tiny local model (cached after the first run)")
    return build_tiny_model(default_model_dir())


if __name__ == "__main__":
    sys.exit(main())
