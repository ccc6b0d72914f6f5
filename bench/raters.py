"""Reviewer quality and the label model, measured on a simulated team with known truth and on
PandaLM's three real annotators.

    python bench/raters.py [--sizes 300,1000,3000] [--overlaps 2,3] [--seeds 3]
                           [--pandalm ../shared/data/pandalm/testset.jsonl]

The team (adjudication.simulation): reviewers of accuracy 0.95, 0.85, 0.70 and 0.55 who err
uniformly over the other labels and take about 25 s per decision, and a rubber-stamper who gives
the critic's label in about 2 s; a critic of accuracy 0.8; three labels with priors 0.2, 0.4,
0.4; gold at 5% of the items, each decided by every reviewer; every other item goes to
`overlap` reviewers drawn at random. For each size, overlap and seed it prints:

- the error of the label model's accuracy estimates (Dawid–Skene, gold as anchors) against each
  reviewer's realised accuracy on the items they decided;
- the accuracy of the labels that would ship for the non-gold items, by majority vote (ties
  broken at random) and by the label model;
- after how many of their own decisions the rubber-stamper, the 0.55 and the 0.70 reviewers
  are first flagged (the flags are checked as the decisions come in: after every 5 items up to
  600 items, then every 20), and which reviewers of accuracy >= 0.85 were ever flagged.

Aims (from issue 21): accuracies within +-0.05 at 1,000 items with overlap 3; label model >=
majority vote; the rubber-stamper flagged within 100 of its decisions; no reviewer of accuracy
>= 0.85 ever flagged. Pure CPU; prints figures and asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from adjudication.labelmodel import fit, majority
from adjudication.raters import QueueEvidence, assess, latest_ratings
from adjudication.simulation import SimulatedQueue, SimulatedReviewer, simulate_team

LABELS = ("a", "b", "c")
PRIORS = (0.2, 0.4, 0.4)
TEAM = (
    SimulatedReviewer("r95", 0.95),
    SimulatedReviewer("r85", 0.85),
    SimulatedReviewer("r70", 0.70),
    SimulatedReviewer("r55", 0.55),
    SimulatedReviewer("stamper", None, median_seconds=2.0),
)
CAREFUL = ("r95", "r85")
WATCHED = ("stamper", "r55", "r70")
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "pandalm" / "testset.jsonl"


@dataclass
class Run:
    errors: dict[str, float]
    majority: float
    model: float
    first_flag: dict[str, tuple[int, str] | None] = field(default_factory=dict)
    """Reviewer -> (their decisions when first flagged, the flags then), or None."""
    first_stamp: int | None = None
    careful_flagged: list[str] = field(default_factory=list)


def _evidence(judgments: tuple[object, ...]) -> QueueEvidence:
    return QueueEvidence("bench", False, LABELS, judgments, {}, {})  # type: ignore[arg-type]


def _checkpoints(sim: SimulatedQueue) -> list[int]:
    """Judgment counts at which the flags are checked: item boundaries, every 5 items up to
    600, then every 20."""
    ends, seen = [], set()
    for n, j in enumerate(sim.judgments):
        if j.item_id not in seen:
            seen.add(j.item_id)
            items = len(seen) - 1
            if items and (items % 5 == 0 if items <= 600 else items % 20 == 0):
                ends.append(n)
    return [*ends, len(sim.judgments)]


def run_once(items: int, overlap: int, seed: int) -> Run:
    sim = simulate_team(items, TEAM, labels=LABELS, priors=PRIORS, overlap=overlap, seed=seed)
    ratings = latest_ratings(sim.judgments)
    model = fit(ratings, gold=sim.gold, classes=LABELS)
    realised: dict[str, list[bool]] = {}
    for j in sim.judgments:
        realised.setdefault(j.reviewer, []).append(j.rating == sim.truth[j.item_id])
    errors = {r: model.raters[r].accuracy - sum(hits) / len(hits) for r, hits in realised.items()}
    rng = random.Random(seed)
    shipped = [item for item in ratings if item not in sim.gold]
    votes = 0
    for item in shipped:
        labels = list(ratings[item].values())
        vote = majority(labels)
        if vote is None:  # a tie: pick one of the tied labels at random
            counts = Counter(labels)
            top = max(counts.values())
            vote = rng.choice(sorted(label for label, n in counts.items() if n == top))
        votes += vote == sim.truth[item]
    by_model = sum(model.items[item].label == sim.truth[item] for item in shipped)
    result = Run(errors, votes / len(shipped), by_model / len(shipped))
    result.first_flag = dict.fromkeys(WATCHED)
    careful: set[str] = set()
    for end in _checkpoints(sim):
        prefix = sim.judgments[:end]
        report = assess(_evidence(prefix), gold={i: g for i, g in sim.gold.items()})
        for r in report.reviewers:
            names = [f.name for f in r.flags]
            if r.name in WATCHED and names and result.first_flag[r.name] is None:
                result.first_flag[r.name] = (r.decisions, "+".join(names))
            if r.name == "stamper" and "rubber_stamp" in names and result.first_stamp is None:
                result.first_stamp = r.decisions
            if r.name in CAREFUL and names:
                careful.add(f"{r.name}:{'+'.join(names)}@{r.decisions}")
    result.careful_flagged = sorted(careful)
    return result


def _flag_text(found: list[tuple[int, str] | None]) -> str:
    flagged = [f for f in found if f is not None]
    parts = []
    if flagged:
        counts = [f[0] for f in flagged]
        kinds = ", ".join(sorted({f[1] for f in flagged}))
        parts.append(f"{min(counts)}-{max(counts)} ({kinds})")
    if len(flagged) < len(found):
        parts.append(f"not flagged in {len(found) - len(flagged)} of {len(found)} runs")
    return "; ".join(parts)


def simulated(sizes: list[int], overlaps: list[int], seeds: int) -> None:
    print("Simulated team: accuracies 0.95 / 0.85 / 0.70 / 0.55 + a rubber-stamper (2 s);")
    print("critic 0.8; labels a, b, c (priors 0.2, 0.4, 0.4); gold 5%;", seeds, "seed(s) each\n")
    header = (
        "items | overlap | max |accuracy error| (per reviewer, worst seed) | shipped accuracy "
        "majority -> label model | stamper flagged after (own decisions; first rubber_stamp) "
        "| 0.55 reviewer flagged after | 0.70 reviewer | >= 0.85 ever flagged | seconds"
    )
    print(header)
    for items in sizes:
        for overlap in overlaps:
            start = time.perf_counter()
            runs = [run_once(items, overlap, seed) for seed in range(seeds)]
            worst = {r: max(abs(run.errors[r]) for run in runs) for r in runs[0].errors}
            per = ", ".join(f"{r} {worst[r]:.3f}" for r in sorted(worst))
            stamps = [run.first_stamp for run in runs]
            stamp_text = (
                f"{min(s for s in stamps if s is not None)}-{max(s for s in stamps if s)}"
                if all(s is not None for s in stamps)
                else f"missing in {sum(s is None for s in stamps)}"
            )
            careful = sorted({c for run in runs for c in run.careful_flagged}) or ["none"]
            print(
                f"{items} | {overlap} | {max(worst.values()):.3f} ({per}) | "
                f"{statistics.mean(r.majority for r in runs):.3f} -> "
                f"{statistics.mean(r.model for r in runs):.3f} "
                f"(each seed: {', '.join(f'{r.majority:.3f}->{r.model:.3f}' for r in runs)}) | "
                f"{_flag_text([r.first_flag['stamper'] for r in runs])}; {stamp_text} | "
                f"{_flag_text([r.first_flag['r55'] for r in runs])} | "
                f"{_flag_text([r.first_flag['r70'] for r in runs])} | {', '.join(careful)} | "
                f"{time.perf_counter() - start:.0f}",
                flush=True,
            )


def pandalm(path: Path) -> None:
    """The label model on PandaLM's three annotators, then with its two model judges added."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    names = {"0": "tie", "1": "a", "2": "b"}
    humans = {
        str(r["idx"]): {f"annotator{k + 1}": names[str(v)] for k, v in enumerate(r["human_labels"])}
        for r in rows
    }
    judges = {
        str(r["idx"]): {
            "gpt35": names.get(str(r["gpt35_result"])),
            "pandalm7b": names.get(str(r["pandalm7b_result"])),
        }
        for r in rows
    }
    print(f"\nPandaLM test set: {len(rows)} items, 3 annotators each (labels tie, a, b)")
    for title, ratings in (
        ("annotators only", humans),
        (
            "annotators + GPT-3.5 + PandaLM-7B as raters",
            {
                i: {**unit, **{k: v for k, v in judges[i].items() if v is not None}}
                for i, unit in humans.items()
            },
        ),
    ):
        model = fit(ratings, classes=("tie", "a", "b"))
        human_majority = {i: majority(list(u.values())) for i, u in humans.items()}
        departs = sum(f.disagrees_with_majority for f in model.items.values())
        vs_humans = sum(
            model.items[i].label != human_majority[i]
            for i in ratings
            if human_majority[i] is not None
        )
        ties = sum(f.majority is None for f in model.items.values())
        plural = "item has" if ties == 1 else "items have"
        accuracies = ", ".join(f"{r} {m.accuracy:.3f}" for r, m in model.raters.items())
        priors = ", ".join(f"{c} {p:.2f}" for c, p in model.priors.items())
        print(f"- {title}: estimated accuracies {accuracies}; priors {priors}")
        print(
            f"  the label model departs from the majority of its raters on {departs} items "
            f"({ties} {plural} no majority) and from the annotators' majority on {vs_humans}; "
            f"{model.iterations} EM steps"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="300,1000,3000")
    parser.add_argument("--overlaps", default="2,3")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--pandalm", type=Path, default=SHARED)
    args = parser.parse_args()
    simulated(
        [int(s) for s in args.sizes.split(",")],
        [int(o) for o in args.overlaps.split(",")],
        args.seeds,
    )
    if args.pandalm.is_file():
        pandalm(args.pandalm)
    else:
        print(f"\n{args.pandalm} is absent: PandaLM skipped")


if __name__ == "__main__":
    main()
