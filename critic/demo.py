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
from typing import Any

from rich.console import Console
from rich.table import Table

from critic.routing import Policy

console = Console(stderr=True, soft_wrap=True)
ROOT = Path(__file__).resolve().parents[1]
# Uncalibrated: a demo has no human decisions yet. Real policies come from `critic calibrate`.
DEMO_POLICY = Policy(threshold=0.9, target_agreement=0.9, delta=0.1, audit_rate=0.1, seed=0)


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
    Console().print(_summary_table(summary))
    db = f"sqlite:///{out / 'critic.db'}"
    console.print("[bold]3/3[/] routing the drafts and filling the review queue 'demo-review'")
    routed = _route_and_enqueue(db, store, summary.run_id)
    table = Table("reason", "items", title="routes (demo policy, see below)")
    for reason, count in routed.counts.items():
        table.add_row(reason, str(count))
    table.add_row("[bold]auto-accepted[/]", str(routed.accepted))
    table.add_row("[bold]sent to review[/]", str(routed.review))
    Console().print(table)
    console.print(
        f"The demo policy is not calibrated (no human labels yet): it accepts confidence >= "
        f"{DEMO_POLICY.threshold} and audits {DEMO_POLICY.audit_rate:.0%} of accepts. Calibrate "
        "a real one with `critic calibrate` once reviewers have decided some items.\n"
        f"results: {out / 'critic.db'} · queue 'demo-review' holds {routed.enqueued} item(s)\n"
        f"export:  .venv/bin/critic export --db {db} demo-out/labels.jsonl"
    )
    return 0


def _route_and_enqueue(db: str, store: Any, run_id: str) -> Any:
    from adjudication.errors import NotFoundError
    from adjudication.store import open_store as open_queues
    from critic.review import enqueue_review
    from critic.triage import route_run

    queues = open_queues(db)
    try:
        queues.queue("demo-review")
    except NotFoundError:
        queues.create_queue("demo-review", overlap=1, labels=["harmless", "harmful"])
    queues.close()
    routed = route_run(store, DEMO_POLICY, run_id)
    routed.enqueued = enqueue_review(db, "demo-review", routed.review_rows)
    return routed


def _model() -> Path:
    from critic.testing.tiny_model import build_tiny_model, default_model_dir

    console.print("[bold]0/3[/] building the tiny local model (cached after the first run)")
    return build_tiny_model(default_model_dir())


if __name__ == "__main__":
    sys.exit(main())
