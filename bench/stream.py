"""The trust loop on a stream: recalibrating on valid labels after every batch against
calibrating once, on a stream drawn from a judged file.

    python bench/stream.py --judged FILE --target T --delta D [--batch 500] [--batches 20]
        [--calibration-rate 0.05] [--audit-rate 0.05] [--streams 1] [--initial 250] [--seed 0]

FILE is any judged file `critic calibrate --from-file` reads (one critic per row: `label`,
`confidence` or `probs`, `human_label`), e.g. ../shared/data/llmbar-judges/palm2.jsonl. Its rows
are the population; a stream draws items from it at random, with replacement, and the file's
`human_label` is what the simulated reviewer decides.

Each stream starts like the baseline: `--initial` random items are labelled (calibration
samples) and calibrated on. Then, per batch of `--batch` items:
- loop: `critic.routing.route` under the policy in force (audit rate `--audit-rate`); an item
  whose `critic.valid_labels.calibration_draw` is below `--calibration-rate` is also reviewed,
  as a calibration sample; humans label every reviewed item; then
  `critic.valid_labels.recalibrate` on all labels so far (it uses only the valid ones) gives the
  policy for the next batch;
- baseline: the policy `critic.calibrate.calibrate` chose on the initial items, never changed,
  no audits, no calibration samples.
Printed per batch (means over the streams), for both: coverage (share of the batch
auto-accepted), human reviews per 1,000 items shipped (every item of a batch ships: accepted with
the critic's label, or reviewed with the human's) and the share of streams in violation; and the
loop's median threshold. A batch violates when the policy in force, applied to the whole file,
accepts items whose agreement with the human labels is below the target. That is what the
guarantee bounds by delta (a batch's own few hundred items are too noisy to judge it).

The last line is `stream: reviews/1000 shipped X (baseline Y, ratio X/Y); violations V of B
batches`: X and Y the reviews per 1,000 items of the last batch (means over the streams), V the
loop's violations over all batches of all streams. Seeded; nothing is timed.
"""

from __future__ import annotations

import argparse
import bisect
import random
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from critic.calibrate import calibrate
from critic.errors import CriticError
from critic.judgments import Judgment, load_judgments
from critic.routing import Policy, RouteInput, route
from critic.valid_labels import (
    CALIBRATION_SAMPLE,
    Label,
    calibrate_labels,
    calibration_draw,
    in_draw,
    recalibrate,
)


class Population:
    """The judged file's items, and the agreement of what a threshold accepts among them."""

    def __init__(self, judgments: list[Judgment]) -> None:
        self.items = judgments
        self.conf = [j.confidence for j in judgments]
        self.agrees = [j.correct for j in judgments]
        pairs = sorted(zip(self.conf, self.agrees, strict=True))
        self._ascending = [c for c, _ in pairs]
        self._agree_below = [0]
        for _, ok in pairs:
            self._agree_below.append(self._agree_below[-1] + ok)

    def agreement(self, threshold: float | None) -> float | None:
        """Agreement among the items the threshold accepts; None when it accepts none."""
        if threshold is None:
            return None
        first = bisect.bisect_left(self._ascending, threshold)
        n = len(self._ascending) - first
        return (self._agree_below[-1] - self._agree_below[first]) / n if n else None

    def violates(self, threshold: float | None, target: float) -> bool:
        agreement = self.agreement(threshold)
        return agreement is not None and agreement < target


@dataclass
class Batch:
    """One batch of one stream, for the loop and for the baseline."""

    coverage: float
    reviews: float  # per 1,000 items shipped
    base_coverage: float
    base_reviews: float
    threshold: float | None
    violation: bool
    base_violation: bool


@dataclass
class Stream:
    batches: list[Batch] = field(default_factory=list)
    labels: dict[str, int] = field(default_factory=dict)


def run_stream(pop: Population, args: argparse.Namespace, seed: int) -> Stream:
    """One seeded stream: the loop and the baseline on the same items."""
    rng = random.Random(seed)
    first = [rng.randrange(len(pop.items)) for _ in range(args.initial)]
    labels = [
        Label(pop.conf[i], pop.agrees[i], CALIBRATION_SAMPLE, "initial", None, in_draw=True)
        for i in first
    ]
    base = calibrate([pop.conf[i] for i in first], [pop.agrees[i] for i in first],
                     args.target, args.delta)  # fmt: skip
    base_policy = Policy.from_calibration(base)
    start = calibrate_labels(labels, args.target, args.delta).calibration
    if start.threshold != base.threshold:  # the same labels, the same test
        raise AssertionError(f"stream {seed}: {start.threshold} != {base.threshold}")
    policy = Policy.from_calibration(start, audit_rate=args.audit_rate, seed=seed)
    out = Stream()
    for b in range(args.batches):
        picked = [rng.randrange(len(pop.items)) for _ in range(args.batch)]
        ids = [f"{seed}/{b}/{k}" for k in range(args.batch)]
        drafts = [
            RouteInput(id=id_, label=pop.items[i].label, confidence=pop.conf[i])
            for id_, i in zip(ids, picked, strict=True)
        ]
        reviewed = 0
        for r, i in zip(route(drafts, policy), picked, strict=True):
            sampled = calibration_draw(policy.seed, r.id) < args.calibration_rate
            if not sampled and r.decision == "accept":
                continue
            reviewed += 1
            labels.append(Label(
                pop.conf[i], pop.agrees[i], CALIBRATION_SAMPLE if sampled else r.reason,
                f"batch {b}", policy.threshold,
                in_draw=in_draw(r.id, policy.seed, args.calibration_rate, policy.audit_rate),
            ))  # fmt: skip
        base_reviewed = sum(r.decision == "review" for r in route(drafts, base_policy))
        out.batches.append(Batch(
            coverage=1 - reviewed / args.batch, reviews=1000 * reviewed / args.batch,
            base_coverage=1 - base_reviewed / args.batch,
            base_reviews=1000 * base_reviewed / args.batch,
            threshold=policy.threshold,
            violation=pop.violates(policy.threshold, args.target),
            base_violation=pop.violates(base_policy.threshold, args.target),
        ))  # fmt: skip
        again = recalibrate(labels, policy)
        policy, out.labels = again.policy, again.lineage.labels
    return out


def _fmt(t: float | None) -> str:
    return "none" if t is None else f"{t:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--judged", type=Path, required=True, help="judged JSONL file")
    parser.add_argument("--target", type=float, required=True, help="target agreement")
    parser.add_argument("--delta", type=float, required=True, help="risk level")
    parser.add_argument("--batch", type=int, default=500, help="items per batch")
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--calibration-rate", type=float, default=0.05)
    parser.add_argument("--audit-rate", type=float, default=0.05)
    parser.add_argument("--streams", type=int, default=1, help="seeded streams to average")
    parser.add_argument("--initial", type=int, default=250, help="labels calibrated on first")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first stream")
    args = parser.parse_args()
    try:
        judgments = load_judgments(args.judged)
        pop = Population(judgments)
    except CriticError as exc:
        sys.exit(f"error: {exc}")
    streams = [run_stream(pop, args, args.seed + k) for k in range(args.streams)]

    oracle = [t for t in sorted(set(pop.conf)) if not pop.violates(t, args.target)]
    best = min(oracle) if oracle else None
    best_cov = sum(c >= best for c in pop.conf) / len(pop.conf) if best is not None else 0.0
    print(f"# {args.judged.name}: {len(judgments)} items, target {args.target}, delta "
          f"{args.delta}; {args.streams} streams of {args.batches} batches of {args.batch}; "
          f"calibration rate {args.calibration_rate}, audit rate {args.audit_rate}; "
          f"first {args.initial} labels random")  # fmt: skip
    print(f"# lowest threshold meeting the target on the whole file: {_fmt(best)} "
          f"(coverage {best_cov:.3f})\n")  # fmt: skip
    print("| batch | loop coverage | loop reviews/1000 | loop threshold (median) | loop violations "
          "| baseline coverage | baseline reviews/1000 | baseline violations |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for b in range(args.batches):
        rows = [s.batches[b] for s in streams]
        ts = [r.threshold if r.threshold is not None else 2.0 for r in rows]
        median = statistics.median_low(ts)
        print(f"| {b + 1} | {statistics.fmean(r.coverage for r in rows):.3f} | "
              f"{statistics.fmean(r.reviews for r in rows):.0f} | "
              f"{_fmt(None if median == 2.0 else median)} | "
              f"{statistics.fmean(r.violation for r in rows):.3f} | "
              f"{statistics.fmean(r.base_coverage for r in rows):.3f} | "
              f"{statistics.fmean(r.base_reviews for r in rows):.0f} | "
              f"{statistics.fmean(r.base_violation for r in rows):.3f} |")  # fmt: skip
    kinds: dict[str, list[int]] = {}
    for s in streams:
        for kind, n in s.labels.items():
            kinds.setdefault(kind, []).append(n)
    used = ", ".join(f"{k} {statistics.fmean(v):.0f}" for k, v in kinds.items())
    print(f"\nlabels used by the last recalibration (mean per stream): {used}")
    n = args.streams * args.batches
    violations = sum(r.violation for s in streams for r in s.batches)
    base_violations = sum(r.base_violation for s in streams for r in s.batches)
    print(f"violation rate: loop {violations / n:.4f}, baseline {base_violations / n:.4f} "
          f"(delta {args.delta}) over {n} batches")  # fmt: skip
    x = statistics.fmean(s.batches[-1].reviews for s in streams)
    y = statistics.fmean(s.batches[-1].base_reviews for s in streams)
    ratio = f"{x / y:.2f}" if y else "inf"
    print(f"stream: reviews/1000 shipped {x:.0f} (baseline {y:.0f}, ratio {ratio}); "
          f"violations {violations} of {n} batches")  # fmt: skip


if __name__ == "__main__":
    main()
