"""`make demo`: the whole loop on this machine, through a real vLLM server.

1. builds (once, then cached) a small critic trained on CPU on a synthetic task whose truth is
   known, so its label probabilities mean something (critic/testing/trained_model.py);
2. starts a vLLM server on 127.0.0.1 and labels the demo items against the shipped
   `synthetic-sentiment` constitution, with label-token logprobs;
3. calibrates a routing policy on the half of the items that reviewers have "already decided"
   (an adjudicated gold set: their labels are the truth);
4. routes every draft, fills the review queue `demo-review`, and checks the auto-accepted labels of
   the other half against the known truth.

Everything it writes goes under `demo-out/`. Rerunning resumes: nothing is labelled twice.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console(stderr=True, soft_wrap=True)
ROOT = Path(__file__).resolve().parents[1]
QUEUE = "demo-review"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m critic.demo", description=__doc__)
    parser.add_argument("--out", default=str(ROOT / "demo-out"), help="Where results go.")
    parser.add_argument("--items", type=int, default=300, help="How many demo items.")
    parser.add_argument("--target", type=float, default=0.9, help="Target agreement.")
    parser.add_argument("--delta", type=float, default=0.1, help="Allowed failure probability.")
    args = parser.parse_args(argv)

    from critic.backends import get_backend
    from critic.calibrate import calibrate
    from critic.cli.run import summary_table
    from critic.constitution import load_constitution
    from critic.routing import Policy, save_policy
    from critic.ship import final_records
    from critic.store import open_store
    from critic.tasks.label import LabelOptions, label
    from critic.testing.trained_model import (
        CONSTITUTION,
        build_trained_model,
        default_trained_dir,
        synthetic_items,
    )
    from critic.testing.vllm_server import serve

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    console.print("[bold]1/4[/] building the demo critic (trained on CPU once, then cached)")
    model_dir = build_trained_model(default_trained_dir())
    items = synthetic_items(args.items, split="demo")
    source = out / "items.jsonl"
    source.write_text("".join(json.dumps(i.row()) + "\n" for i in items))
    # The "already decided" half is an adjudicated gold set. (Single annotators are noisier: the
    # trained critic's own training labels flip 10% of the time, and against such labels no
    # critic can show 90% agreement.)
    reviewed = {i.id: i.truth for i in items[: len(items) // 2]}
    truth = {i.id: i.truth for i in items}

    console.print(f"[bold]2/4[/] starting a vLLM server on {model_dir} (about a minute on CPU)")
    db = f"sqlite:///{out / 'critic.db'}"
    store = open_store(db)
    with serve(model_dir, served_model_name="critic-demo", log_path=out / "vllm.log") as server:
        console.print(f"      labeling {len(items)} items through {server.base_url}")
        backend = get_backend("vllm-server", base_url=server.base_url, model=server.model)
        summary = label(
            source,
            load_constitution(CONSTITUTION),
            backend,
            store,
            options=LabelOptions(max_tokens=256, top_logprobs=5),
            concurrency=32,
        )
    Console().print(summary_table(summary))

    console.print(f"[bold]3/4[/] calibrating on the {len(reviewed)} items already reviewed")
    rows = [r for r in store.rows(summary.run_id) if r["status"] == "drafted"]
    calibration = [r for r in rows if r["item_id"] in reviewed]
    result = calibrate(
        [float(r["confidence"]) for r in calibration],
        [r["label"] == reviewed[r["item_id"]] for r in calibration],
        args.target,
        args.delta,
    )
    policy = Policy.from_calibration(result, audit_rate=0.05, seed=0)
    save_policy(policy, out / "policy.yaml")
    console.print(result.guarantee)

    console.print(f"[bold]4/4[/] routing every draft; review items go to the queue '{QUEUE}'")
    routed = _route_and_enqueue(db, store, policy, summary.run_id)
    held_out = [
        r for r in final_records(store, None, [summary.run_id])
        if r.item_id not in reviewed and r.status == "accepted"
    ]  # fmt: skip
    agree = sum(r.label == truth[r.item_id] for r in held_out)
    Console().print(_routes_table(routed, held_out, agree, len(items) - len(reviewed)))
    console.print(
        f"\nresults: {out / 'critic.db'}  ·  policy: {out / 'policy.yaml'}\n"
        f"review:  .venv/bin/critic users add YOU --queue {QUEUE} --db {db}\n"
        f"         .venv/bin/critic review next --queue {QUEUE} --as YOU --db {db}\n"
        f"export:  .venv/bin/critic export --db {db} {out / 'labels.jsonl'}"
    )
    return 0


def _routes_table(routed: Any, held_out: list[Any], agree: int, n_held_out: int) -> Table:
    table = Table("", "items", title="routes", show_header=False)
    for reason, count in routed.counts.items():
        if count:
            table.add_row(reason, str(count))
    table.add_row("[bold]auto-accepted[/]", str(routed.accepted))
    table.add_row("[bold]sent to review[/]", f"{routed.review} (queued: {routed.enqueued})")
    if held_out:
        table.add_row(
            "[bold]held-out check[/]",
            f"{agree}/{len(held_out)} auto-accepted labels agree with the known truth "
            f"({agree / len(held_out):.1%}); coverage {len(held_out) / n_held_out:.0%}",
        )
    return table


def _route_and_enqueue(db: str, store: Any, policy: Any, run_id: str) -> Any:
    from adjudication.errors import NotFoundError
    from adjudication.store import open_store as open_queues
    from critic.review import enqueue_review
    from critic.triage import route_run

    queues = open_queues(db)
    try:
        queues.queue(QUEUE)
    except NotFoundError:
        queues.create_queue(QUEUE, overlap=1)  # takes the constitution's labels when fed
    finally:
        queues.close()
    from critic.triage import run_binding

    # The policy was calibrated on this run's own reviewed half: bound to it.
    policy = policy.model_copy(update={"binding": run_binding(store.run(run_id))})
    routed = route_run(store, policy, run_id)
    from critic.review import open_stores

    with open_stores(db) as (runs, queues):
        routed.enqueued = enqueue_review(runs, queues, QUEUE, routed.review_rows)
    return routed


if __name__ == "__main__":
    sys.exit(main())
