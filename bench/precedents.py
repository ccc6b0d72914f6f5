"""Do precedents carry the decision? The top precedent of each decided hh-rlhf item, against a
random decided item.

    .venv/bin/python bench/precedents.py [--data ../shared/data/hh-rlhf] [--limit N]
                                         [--store sqlite|postgres] [--seed 0]

Every pair of Anthropic's HH-RLHF test splits (harmless-base and helpful-base, 4,666 pairs) goes
into a review queue as a pairwise item (the prompt, then the two replies in a seeded random order
as response_a and response_b) and is decided by a reviewer through the queue store, twice over,
with two human labels the files hold:

- `topic`: which kind of conversation the crowdworker was rating (harmless-base: red-teaming, the
  less harmful reply preferred; helpful-base: the more helpful one);
- `preference`: which of the two replies the crowdworker preferred (a or b, as presented).

Then, for every decided item, `Store.precedents(k=1)` (the same full-text ranking the review
page uses, over the other decided items) gives its top precedent. The figure is how often that
precedent carries the item's own label, beside a random other decided item (averaged over the
items, and the rate expected from the label shares). Prints figures; asserts nothing.
"""

from __future__ import annotations

import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
if sys.path and Path(sys.path[0] or ".").resolve() == _HERE:
    sys.path[0] = str(_HERE.parent)  # bench/queue.py would shadow the standard library's queue

import argparse  # noqa: E402
import json  # noqa: E402
import random  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from typing import Any  # noqa: E402

from adjudication import Store, open_store  # noqa: E402
from adjudication.testing import temporary_postgres  # noqa: E402

DATA = _HERE.parent.parent / "shared" / "data" / "hh-rlhf"


def pairs(folder: Path, limit: int | None, seed: int) -> list[dict[str, Any]]:
    """The pairs of both splits, each with its replies in a seeded random order and its two
    labels."""
    rng = random.Random(seed)
    found = []
    for name in ("harmless-base-test.jsonl", "helpful-base-test.jsonl"):
        with (folder / name).open(encoding="utf-8") as lines:
            for line in lines:
                row = json.loads(line)
                if row["chosen"] == row["rejected"]:
                    continue  # two of helpful-base's pairs: nothing to prefer
                chosen_first = rng.random() < 0.5
                a, b = (row["chosen"], row["rejected"]) if chosen_first else (
                    row["rejected"], row["chosen"])  # fmt: skip
                found.append(
                    {
                        "id": row["id"],
                        "item": {"prompt": row["prompt"], "response_a": a, "response_b": b},
                        "topic": "harmless" if row["subset"] == "harmless-base" else "helpful",
                        "preference": "a" if chosen_first else "b",
                    }
                )
    rng.shuffle(found)
    return found[:limit] if limit else found


def decide_all(store: Store, queue: str, rows: list[dict[str, Any]], key: str) -> None:
    """A reviewer decides every item of the queue with its human label."""
    labels = sorted({r[key] for r in rows})
    store.create_queue(queue, labels=labels, members=["human"])
    store.enqueue(queue, [{"item_id": r["id"], "item": r["item"], "confidence": 0.5} for r in rows])
    wanted = {r["id"]: r[key] for r in rows}
    while (claim := store.claim(queue, "human")) is not None:
        store.decide(claim.token, "edit", label=wanted[claim.task.item_id])


def measure(
    store: Store, queue: str, rows: list[dict[str, Any]], key: str, seed: int
) -> dict[str, Any]:
    rng = random.Random(seed)
    label = {r["id"]: r[key] for r in rows}
    ids = list(label)
    same_top = same_random = none = 0
    began = time.perf_counter()
    for item_id in ids:
        found = store.precedents(queue, item_id, k=1) or []
        if not found:
            none += 1
        elif found[0].label == label[item_id]:
            same_top += 1
        other = rng.choice(ids)
        while other == item_id:
            other = rng.choice(ids)
        same_random += label[other] == label[item_id]
    seconds = time.perf_counter() - began
    shares = Counter(label.values())
    expected = sum((n / len(ids)) ** 2 for n in shares.values())
    return {
        "label": key,
        "items": len(ids),
        "top_precedent_same": same_top / len(ids),
        "random_same": same_random / len(ids),
        "expected_random": expected,
        "no_precedent": none,
        "ms_per_query": seconds / len(ids) * 1000,
    }


@contextmanager
def _url(kind: str) -> Iterator[str]:
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="critic-bench-precedents-") as folder:
            yield f"sqlite:///{Path(folder) / 'queue.db'}"
    else:
        with temporary_postgres() as pg:
            yield pg.create_database()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--limit", type=int, default=None, help="use only this many pairs")
    parser.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not args.data.is_dir():
        raise SystemExit(f"{args.data} is absent: the shared data ships beside the repo")
    rows = pairs(args.data, args.limit, args.seed)
    with _url(args.store) as url, open_store(url) as store:
        store.add_user("human")
        results = []
        for key in ("topic", "preference"):
            decide_all(store, key, rows, key)
            results.append(measure(store, key, rows, key, args.seed))
    if args.json:
        for r in results:
            print(json.dumps(r))
        return
    print(f"hh-rlhf test pairs, {len(rows)} decided items, {args.store}: the top precedent's "
          "label against a random decided item's")  # fmt: skip
    print(f"{'label':<11} {'top precedent same':>19} {'random same':>12} {'expected':>9} "
          f"{'no precedent':>13} {'ms/query':>9}")  # fmt: skip
    for r in results:
        print(f"{r['label']:<11} {r['top_precedent_same']:>19.3f} {r['random_same']:>12.3f} "
              f"{r['expected_random']:>9.3f} {r['no_precedent']:>13} "
              f"{r['ms_per_query']:>9.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
