"""Calibration on real LLM judges: coverage and violations of critic's procedure, the textbook
reference and the in-sample oracle, plus panels and cascades of judges.

    python bench/calibration.py [--data ../shared/data/llmbar-judges] [--splits 50] [--delta 0.1]

For every judge file and target agreement, each split calibrates on a random half of the items
and routes the other half. Printed per procedure:
- cov: mean share of the routed half auto-accepted;
- viol: share of splits whose chosen threshold's agreement on the whole file (the population
  both halves are drawn from) is below the target; this is what the guarantee bounds by delta;
- half<t: share of splits whose routed half's accepted items agree below the target (a noisy
  reading of the same thing on a few hundred items; not bounded by delta).
Procedures:
- critic: `critic.calibrate.calibrate`, chosen from the candidate designs of the second table
  (several starts, Learn-then-Test, a fallback procedure, the randomized exact test);
- reference: textbook fixed-sequence testing, implemented here on its own: thresholds 1.0,
  0.995, ..., 0.0, tested from the top once >= 30 calibration items are above, exact
  Clopper–Pearson bound, stop at the first failure;
- old: critic's scheme before issue 11 (first candidate accepting just enough items to pass if
  all agree, each next one 1% more), for comparison;
- oracle: the largest threshold set on the calibration half whose agreement meets the target
  (no guarantee).
Panels (items present in several files) combine judges by `mean` and `vote`. Cascades ask the
judges in order, the strongest judge (PaLM2) last, and are calibrated three ways
(`critic.cascade`): paths (the default: one fixed sequence along each path of
`critic.cascade.PATHS`, hold 0.99 and the last judge alone, each at delta / 2, then the passing
policy asking the last judge least within 0.9 of the most coverage), joint (one fixed sequence
over equal thresholds at delta) and stage-wise (each stage at delta / stages); beside them the
strongest judge alone, and the best cascade policy on the whole file asking it for fewer than
0.7 of the items (in-sample, no test: whether the aim can be reached at all). Per procedure:
coverage, violations (whole-file agreement of what the cascade accepts below target) and
requests to the strongest judge per routed item. The aim (issue 19): coverage at least 0.9 x
the strongest judge alone with fewer than 0.7 requests to it.
A last table shows how the design of `paths` was chosen, among joint designs whose path is
fixed before the labels it is tested on are seen:
- (a) budget hold: one path at the full delta whose earlier judges are held at the highest of
  their confidences at which at most 0.66 of the calibration items reach the last judge, read
  off the calibration scores alone. Valid only approximately: given the scores the labels are
  independent, but the hold is chosen from the same items' score counts, and which level it
  lands on can correlate with how favourable the accepted items' mix is (a bias of order
  1/sqrt(n) times the spread of agreement between levels), which `critic` does not ship;
- (b) split: a seeded share of the calibration items chooses the path by what passes on them,
  the rest tests it at the full delta (exactly valid: the path is independent of the items it
  is tested on; it pays with the labels it sets aside);
- (c) families with the last judge alone, with the 0.9 rule or the most coverage, and the
  family `paths` had before (equal, hold 0.99); hold 0.99 alone at the full delta is shown as
  the reference chosen on this data (not a valid choice).
`--cascade-splits` sets how many splits the cascade tables use (default 200).
The figures are deterministic (seeded splits); nothing is timed.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from critic.calibrate import ThresholdRow, calibrate, grid_table, min_labels_to_pass
from critic.cascade import (
    COVERAGE_SHARE,
    EQUAL,
    HOLD_99,
    LAST_ALONE,
    PATHS,
    CascadeMethod,
    CascadePath,
    accepts,
    calibrate_cascade,
)
from critic.judgments import Verdict, combine
from critic.stats import binomial_sf, passes

TARGETS = (0.70, 0.75, 0.80)
Scores = Sequence[float]
Flags = Sequence[bool]
Pick = Callable[[Scores, Flags, float, float], float | None]


def reference(scores: Scores, correct: Flags, target: float, delta: float) -> float | None:
    """Textbook fixed-sequence testing on the grid 1.0, 0.995, ..., 0.0 (see module doc)."""
    chosen = None
    for i in range(201):
        t = round(1.0 - 0.005 * i, 3)
        above = [ok for s, ok in zip(scores, correct, strict=True) if s >= t]
        if len(above) < 30:
            continue
        if binomial_sf(sum(above), len(above), target) > delta:
            break
        chosen = t
    return chosen


def old_scheme(scores: Scores, correct: Flags, target: float, delta: float) -> float | None:
    """critic before issue 11: candidates from the distinct score accepting min_labels items,
    each next one accepting 1% of the set more; fixed sequence, stop at the first failure."""
    pairs = sorted(zip(scores, correct, strict=True), key=lambda p: -p[0])
    least, step = min_labels_to_pass(target, delta), max(1, len(pairs) // 100)
    last_n, chosen, k = 0, None, 0
    for n, (s, ok) in enumerate(pairs, start=1):
        k += ok
        if n < len(pairs) and pairs[n][0] == s:
            continue
        if n < least or (last_n and n - last_n < step and n != len(pairs)):
            continue
        last_n = n
        if binomial_sf(k, n, target) > delta:
            break
        chosen = s
    return chosen


def oracle(scores: Scores, correct: Flags, target: float, delta: float) -> float | None:
    """The lowest distinct score whose set's in-sample agreement meets the target."""
    pairs = sorted(zip(scores, correct, strict=True), key=lambda p: -p[0])
    chosen, k = None, 0
    for n, (s, ok) in enumerate(pairs, start=1):
        k += ok
        if (n == len(pairs) or pairs[n][0] != s) and k / n >= target:
            chosen = s
    return chosen


def critic_pick(scores: Scores, correct: Flags, target: float, delta: float) -> float | None:
    return calibrate(scores, correct, target, delta).threshold


def _fst(rows: Sequence[ThresholdRow], target: float, delta: float, start: int) -> float | None:
    chosen = None
    for r in rows:
        if r.n_accepted < start:
            continue
        if not passes(r.n_agree, r.n_accepted, target, delta):
            break
        chosen = r.threshold
    return chosen


def multi_start(scores: Scores, correct: Flags, target: float, delta: float) -> float | None:
    """Fixed sequence from two starts (>= 30 items, >= a quarter of the items), each at
    delta / 2; the lowest threshold either passes."""
    rows = grid_table(scores, correct)
    found = [_fst(rows, target, delta / 2, m) for m in (30, len(scores) // 4)]
    passed = [t for t in found if t is not None]
    return min(passed) if passed else None


def learn_then_test(scores: Scores, correct: Flags, target: float, delta: float) -> float | None:
    """Bonferroni over 8 grid thresholds spread evenly by accepted count (>= 30 items)."""
    rows = [r for r in grid_table(scores, correct) if r.n_accepted >= 30]
    if not rows:
        return None
    picks = {rows[i * (len(rows) - 1) // 7].threshold: rows[i * (len(rows) - 1) // 7]
             for i in range(8)}  # fmt: skip
    passed = [t for t, r in picks.items()
              if passes(r.n_agree, r.n_accepted, target, delta / len(picks))]  # fmt: skip
    return min(passed) if passed else None


def fallback(scores: Scores, correct: Flags, target: float, delta: float) -> float | None:
    """Fixed sequence at 0.8 delta; after its first failure it goes on at 0.2 delta until a
    second failure (Wiens' fallback procedure with two weights)."""
    chosen, level, failed = None, 0.8 * delta, False
    for r in (r for r in grid_table(scores, correct) if r.n_accepted >= 30):
        if passes(r.n_agree, r.n_accepted, target, level):
            chosen = r.threshold
        elif failed:
            break
        else:
            failed, level = True, 0.2 * delta
    return chosen


def randomized(scores: Scores, correct: Flags, target: float, delta: float) -> float | None:
    """critic's sequence with the randomized exact test (size exactly delta): a set one
    agreeing item short passes with the probability that spends the rest of delta; one
    uniform draw per calibration, seeded by the data's size."""
    u = random.Random(len(scores)).random()
    chosen = None
    for r in (r for r in grid_table(scores, correct) if r.n_accepted >= 30):
        tail = binomial_sf(r.n_agree, r.n_accepted, target)
        above = binomial_sf(r.n_agree + 1, r.n_accepted, target)
        if not (tail <= delta or (above <= delta and u < (delta - above) / (tail - above))):
            break
        chosen = r.threshold
    return chosen


CANDIDATES: dict[str, Pick] = {
    "fixed sequence (critic)": critic_pick, "two starts": multi_start,
    "learn-then-test": learn_then_test, "fallback": fallback, "randomized test": randomized,
}  # fmt: skip

PROCEDURES: dict[str, Pick] = {
    "critic": critic_pick, "reference": reference, "old": old_scheme, "oracle": oracle,
}  # fmt: skip


def load(path: Path) -> dict[str, tuple[Verdict, str]]:
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        verdict = Verdict.model_validate({"model": row["judge"], "label": row["label"],
                                          "probs": row["probs"]})  # fmt: skip
        out[row["id"]] = (verdict, str(row["human_label"]))
    return out


def splits(n: int, count: int) -> list[tuple[list[int], list[int]]]:
    out = []
    for seed in range(count):
        idx = list(range(n))
        random.Random(seed).shuffle(idx)
        out.append((idx[: n // 2], idx[n // 2 :]))
    return out


def measure(
    scores: Sequence[float], correct: Sequence[bool], pick: Pick, target: float, delta: float,
    count: int,
) -> tuple[float, float, float]:  # fmt: skip
    cov = viol = half = 0.0
    for cal, test in splits(len(scores), count):
        t = pick([scores[i] for i in cal], [correct[i] for i in cal], target, delta)
        if t is None:
            continue
        routed = [correct[i] for i in test if scores[i] >= t]
        cov += len(routed) / len(test)
        population = [ok for s, ok in zip(scores, correct, strict=True) if s >= t]
        viol += sum(population) / len(population) < target
        half += bool(routed) and sum(routed) / len(routed) < target
    return cov / count, viol / count, half / count


CascadePick = Callable[[list[list[float]], list[list[bool]], float, float],
                       list[float | None]]  # fmt: skip
METHODS = ("paths", "joint", "stagewise", "alone")


def cascade_pick(names: Sequence[str], method: str,
                 family: Sequence[CascadePath] = PATHS) -> CascadePick:  # fmt: skip
    """Thresholds per stage from critic's `calibrate_cascade` (`paths` over `family`); `alone`:
    the last judge only, by `calibrate`."""

    def pick(sc: list[list[float]], ok: list[list[bool]], target: float, delta: float
             ) -> list[float | None]:  # fmt: skip
        if method == "alone":
            t = calibrate([r[-1] for r in sc], [r[-1] for r in ok], target, delta).threshold
            return [None] * (len(names) - 1) + [t]
        how: CascadeMethod = "paths" if method == "paths" else (
            "joint" if method == "joint" else "stagewise")  # fmt: skip
        result = calibrate_cascade(names, sc, ok, target, delta, method=how, paths=family)
        return [s.threshold for s in result.stages]

    return pick


def cascade_measure(
    scores: Sequence[Sequence[float]], correct: Sequence[Sequence[bool]], pick: CascadePick,
    target: float, delta: float, count: int, *, alone: bool = False,
) -> tuple[float, float, list[float]]:  # fmt: skip
    """Coverage of the routed half, violations (whole-file agreement of what the cascade
    accepts below target) and requests per routed item to each judge (the last judge alone
    asks only the last)."""
    stages = len(scores[0])
    cov = viol = 0.0
    requests = [0.0] * stages
    for cal, test in splits(len(scores), count):
        ts = pick([list(scores[i]) for i in cal], [list(correct[i]) for i in cal], target,
                  delta)  # fmt: skip
        for i in test:
            stage = accepts(ts, scores[i])
            asked = range(stages - 1, stages) if alone else range(
                stages if stage is None else stage + 1)  # fmt: skip
            for s in asked:
                requests[s] += 1 / len(test)
            cov += (stage is not None) / len(test)
        population = [correct[i][st] for i in range(len(scores))
                      if (st := accepts(ts, scores[i])) is not None]  # fmt: skip
        viol += bool(population) and sum(population) / len(population) < target
    return cov / count, viol / count, [r / count for r in requests]


def best_in_sample(scores: Sequence[Sequence[float]], correct: Sequence[Sequence[bool]],
                   target: float, most: float = 0.7) -> tuple[float, float]:  # fmt: skip
    """Whether the aim is reachable at all: the cascade policy (any threshold per stage, from
    the judges' distinct confidences or none) with the most coverage on the whole file whose
    agreement meets the target and that asks the last judge for fewer than `most` of the
    items. No test, no guarantee: an upper reference. Returns (coverage, requests)."""
    stages = len(scores[0])
    levels: list[list[float | None]] = [[*sorted({r[s] for r in scores}), None]
                                        for s in range(stages)]  # fmt: skip
    best = (0.0, 1.0)
    for ts in itertools.product(*levels):
        got = [(s, correct[i][s]) for i, r in enumerate(scores)
               if (s := accepts(ts, r)) is not None]  # fmt: skip
        last = (len(scores) - sum(s < stages - 1 for s, _ in got)) / len(scores)
        if got and last < most and sum(ok for _, ok in got) / len(got) >= target:
            best = max(best, (len(got) / len(scores), last), key=lambda b: (b[0], -b[1]))
    return best


def calibrated_world(n: int, seed: int) -> tuple[list[list[float]], list[list[bool]]]:
    """A synthetic panel whose confidences mean what they say (as Trust or Escalate's judges
    roughly do, unlike LLMBar's): per item a difficulty d; the weak judge is right with
    probability 0.95 - 0.5 d, the strong one 1.0 - 0.3 d, each reporting a noisy estimate of
    its own chance of being right, rounded to 0.05."""
    rng = random.Random(seed)
    scores, correct = [], []
    for _ in range(n):
        d = rng.random()
        row_s, row_c = [], []
        for p in (0.95 - 0.5 * d, 1.0 - 0.3 * d):
            c = min(1.0, max(0.5, round((p + rng.gauss(0, 0.05)) * 20) / 20))
            row_s.append(c)
            row_c.append(rng.random() < p)
        scores.append(row_s)
        correct.append(row_c)
    return scores, correct


CASCADES = (["chatgpt", "palm2"], ["llama2", "palm2"], ["falcon", "palm2"],
            ["llama2", "chatgpt", "palm2"], ["falcon", "llama2", "palm2"])  # fmt: skip
CASCADE_TARGETS = (0.65, 0.70, 0.75)
BUDGET = 0.66  # the candidates below that aim at a share of requests to the last judge


def family(*paths: CascadePath, share: float = COVERAGE_SHARE) -> CascadePick:
    """`paths` over this family (each at delta / its size), choosing with `share`."""

    def pick(sc: list[list[float]], ok: list[list[bool]], target: float, delta: float
             ) -> list[float | None]:  # fmt: skip
        result = calibrate_cascade([str(s) for s in range(len(sc[0]))], sc, ok, target, delta,
                                   method="paths", paths=paths, coverage_share=share)  # fmt: skip
        return [st.threshold for st in result.stages]

    return pick


def budget_hold(sc: Sequence[Sequence[float]], most: float = BUDGET) -> CascadePath:
    """(a) label-free: the earlier judges held at the highest level (of their confidences on
    the calibration items) at which at most `most` of the items reach the last judge."""
    stages = len(sc[0])
    levels = sorted({r[s] for r in sc for s in range(stages - 1)}, reverse=True)
    for h in levels:
        if sum(accepts([h] * (stages - 1) + [None], r) is None for r in sc) <= most * len(sc):
            return CascadePath(f"hold {h:.4g}", h)
    return CascadePath(f"hold {levels[-1]:.4g}", levels[-1])


def budget(sc: list[list[float]], ok: list[list[bool]], target: float, delta: float
           ) -> list[float | None]:  # fmt: skip
    """(a) one path at the full delta, its hold level read off the calibration scores alone."""
    return family(budget_hold(sc))(sc, ok, target, delta)


def split(share: float) -> CascadePick:
    """(b) a seeded `share` of the calibration items chooses the path (the hold level, equal
    thresholds or the last judge alone) by the coverage it passes at delta there, asking the
    last judge for at most BUDGET of the items if any does; the rest tests it at the full
    delta."""

    def pick(sc: list[list[float]], ok: list[list[bool]], target: float, delta: float
             ) -> list[float | None]:  # fmt: skip
        idx = list(range(len(sc)))
        random.Random(len(sc)).shuffle(idx)
        cut = int(share * len(sc))
        learn, test = idx[:cut], idx[cut:]
        levels = sorted({r[s] for r in sc for s in range(len(sc[0]) - 1)}, reverse=True)
        candidates = [EQUAL, LAST_ALONE, *(CascadePath(f"hold {h:.4g}", h) for h in levels)]
        scored = []
        for path in candidates:
            got = calibrate_cascade([str(s) for s in range(len(sc[0]))], [sc[i] for i in learn],
                                    [ok[i] for i in learn], target, delta, method="paths",
                                    paths=(path,))  # fmt: skip
            last = list(got.requests_per_item.values())[-1]
            scored.append((got.n_accepted > 0 and last <= BUDGET, got.n_accepted, -last, path))
        chosen = max(scored, key=lambda c: c[:3])[3]
        return family(chosen)([sc[i] for i in test], [ok[i] for i in test], target, delta)

    return pick


# How the design of `paths` was chosen (the last table): candidates that fix the path before
# the labels are seen (a: from the scores alone; b: from a split of the labels; c: a family
# with the last judge alone added), each scored on the aim.
DESIGNS: dict[str, CascadePick] = {
    "critic: paths (hold 0.99, last alone), 0.9 rule": family(*PATHS),
    "same, most coverage": family(*PATHS, share=1.0),
    "before: (equal, hold 0.99), most coverage": family(EQUAL, HOLD_99, share=1.0),
    "(equal, hold 0.99, last alone), 0.9 rule": family(EQUAL, HOLD_99, LAST_ALONE),
    "(a) budget hold at delta": budget,
    "(b) split 0.3": split(0.3),
    "(b) split 0.5": split(0.5),
    "hold 0.99 at delta (chosen on this data)": family(HOLD_99),
}


Panel = tuple[str, list[str], list[list[float]], list[list[bool]], tuple[float, ...]]


def _panels(judges: dict[str, dict[str, tuple[Verdict, str]]]) -> list[Panel]:
    """The cascades of LLMBar judges (items judged by all of a cascade's judges) with their
    targets, then the synthetic calibrated panel."""
    out: list[Panel] = []
    for names in CASCADES:
        if not set(names) <= set(judges):
            continue
        ids = sorted(set.intersection(*(set(judges[m]) for m in names)))
        humans = [judges[names[-1]][i][1] for i in ids]
        scores = [[judges[m][i][0].confidence for m in names] for i in ids]
        correct = [[judges[m][i][0].label == h for m in names]
                   for i, h in zip(ids, humans, strict=True)]  # fmt: skip
        out.append((" → ".join(names), list(names), scores, correct, CASCADE_TARGETS))
    scores, correct = calibrated_world(800, 0)
    out.append(("synthetic calibrated weak → strong", ["weak", "strong"], scores, correct,
                (0.80, 0.85, 0.90)))  # fmt: skip
    return out


def cascade_table(judges: dict[str, dict[str, tuple[Verdict, str]]], delta: float,
                  count: int) -> None:  # fmt: skip
    print(f"\n## Cascades: joint over paths, joint over one path, stage-wise and the strongest "
          f"judge alone ({count} splits)\n")  # fmt: skip
    print("cov / viol / req = coverage of the routed half / share of splits below target on "
          "the whole file / requests to the strongest (last) judge per item. paths (the "
          f"default): {', '.join(p.name for p in PATHS)}, each at delta / {len(PATHS)}, the "
          f"policy asking the last judge least within {COVERAGE_SHARE} of the most coverage "
          "passed; joint: equal thresholds at delta. aim: cov ≥ 0.9 × alone and req < 0.7. best "
          "in-sample: the best policy on the whole file with req < 0.7 (no test: can the aim "
          "be reached at all)\n")  # fmt: skip
    print("| cascade | n | target | paths cov / viol / req | joint cov / viol / req | "
          "stage-wise cov / viol / req | alone cov / viol | best in-sample cov / req | "
          "aim: paths / joint / stage-wise |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    tally = {m: 0 for m in METHODS[:3]}
    cases = 0
    for label, names, scores, correct, targets in _panels(judges):
        for target in targets:
            got = {m: cascade_measure(scores, correct, cascade_pick(names, m), target, delta,
                                      count, alone=m == "alone")
                   for m in METHODS}  # fmt: skip
            alone_cov, alone_viol, _ = got["alone"]
            best_cov, best_req = best_in_sample(scores, correct, target)
            aims = ["yes" if got[m][0] >= 0.9 * alone_cov and got[m][2][-1] < 0.7 else "no"
                    for m in METHODS[:3]]  # fmt: skip
            cells = " | ".join(f"{got[m][0]:.3f} / {got[m][1]:.3f} / {got[m][2][-1]:.2f}"
                               for m in METHODS[:3])  # fmt: skip
            if not label.startswith("synthetic"):
                cases += 1
                top = max(got[m][0] for m in METHODS[:3])
                for m in METHODS[:3]:
                    tally[m] += top > 0 and got[m][0] == top
            print(f"| {label} | {len(scores)} | {target:.2f} | {cells} | "
                  f"{alone_cov:.3f} / {alone_viol:.3f} | {best_cov:.3f} / {best_req:.2f} | "
                  f"{' / '.join(aims)} |")  # fmt: skip
    print(f"\nmost coverage, ties counted for each (LLMBar cascades and targets, of {cases}): "
          + ", ".join(f"{m} {n}" for m, n in tally.items()))  # fmt: skip


def design_table(judges: dict[str, dict[str, tuple[Verdict, str]]], delta: float,
                 count: int) -> None:  # fmt: skip
    """How the design of `paths` was chosen: cov / req of each candidate, aim met or not."""
    print(f"\n## Candidate joint designs (how `paths` was chosen; {count} splits): cov / req, "
          "* where the aim is met\n")  # fmt: skip
    print("| cascade | target | " + " | ".join(DESIGNS) + " |")
    print("|" + "---|" * (len(DESIGNS) + 2))
    met = dict.fromkeys(DESIGNS, 0)
    for label, names, scores, correct, targets in _panels(judges):
        for target in targets:
            alone = cascade_measure(scores, correct, cascade_pick(names, "alone"), target, delta,
                                    count, alone=True)[0]  # fmt: skip
            cells = []
            for name, pick in DESIGNS.items():
                c, _, r = cascade_measure(scores, correct, pick, target, delta, count)
                aim = c >= 0.9 * alone and r[-1] < 0.7
                met[name] += aim and not label.startswith("synthetic")
                cells.append(f"{c:.3f} / {r[-1]:.2f}{' *' if aim else ''}")
            print(f"| {label} | {target:.2f} | {' | '.join(cells)} |")
    print("\naim met on LLMBar rows: " + ", ".join(f"{k} {v}" for k, v in met.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default = Path(__file__).resolve().parents[2] / "shared" / "data" / "llmbar-judges"
    parser.add_argument("--data", type=Path, default=default)
    parser.add_argument("--splits", type=int, default=50)
    parser.add_argument("--delta", type=float, default=0.1)
    parser.add_argument("--cascade-splits", type=int, default=200)
    parser.add_argument("--only-cascades", action="store_true", help="print the cascade tables")
    args = parser.parse_args()
    files = sorted(args.data.glob("*.jsonl"))
    if not files:
        sys.exit(f"no judge files in {args.data}")
    judges = {f.stem: load(f) for f in files}
    delta, count = args.delta, args.splits
    if args.only_cascades:
        cascade_table(judges, delta, args.cascade_splits)
        design_table(judges, delta, args.cascade_splits)
        return
    print(f"# Calibration on {args.data.name}: {count} random half splits, delta {delta}\n")
    print("cov = mean coverage of the routed half; viol = share of splits below target on the "
          "whole file (bounded by delta); half<t = routed half below target (noisy)\n")  # fmt: skip
    head = "| judge | n | target | " + " | ".join(f"{p} cov / viol" for p in PROCEDURES)
    print(head + " | critic half<t | critic ≥ reference |")
    print("|" + "---|" * (len(PROCEDURES) + 5))
    for name, rows in judges.items():
        ids = sorted(rows)
        scores = [rows[i][0].confidence for i in ids]
        correct = [rows[i][0].label == rows[i][1] for i in ids]
        for target in TARGETS:
            got = {
                p: measure(scores, correct, f, target, delta, count) for p, f in PROCEDURES.items()
            }
            cells = " | ".join(f"{c:.3f} / {v:.2f}" for c, v, _ in got.values())
            ok = got["critic"][0] >= got["reference"][0] and got["critic"][1] <= delta
            print(f"| {name} | {len(ids)} | {target:.2f} | {cells} | {got['critic'][2]:.2f} | "
                  f"{'yes' if ok else 'NO'} |")  # fmt: skip

    print("\n## Candidate designs (how critic's procedure was chosen): cov / viol\n")
    print("| judge | target | " + " | ".join(CANDIDATES) + " |")
    print("|" + "---|" * (len(CANDIDATES) + 2))
    for name, rows in judges.items():
        ids = sorted(rows)
        scores = [rows[i][0].confidence for i in ids]
        correct = [rows[i][0].label == rows[i][1] for i in ids]
        for target in TARGETS:
            cells = []
            for pick in CANDIDATES.values():
                c, v, _ = measure(scores, correct, pick, target, delta, count)
                cells.append(f"{c:.3f} / {v:.2f}")
            print(f"| {name} | {target:.2f} | {' | '.join(cells)} |")

    panels = [sorted(judges), sorted(set(judges) - {"falcon"})]
    print("\n## Panels (items judged by every judge of the panel)\n")
    print("| panel | n | target | best single cov | mean cov / viol | vote cov / viol | "
          "requests/item |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for members in panels:
        ids = sorted(set.intersection(*(set(judges[m]) for m in members)))
        humans = [judges[members[0]][i][1] for i in ids]
        for target in TARGETS:
            best = 0.0
            for m in members:
                sc = [judges[m][i][0].confidence for i in ids]
                ok = [judges[m][i][0].label == h for i, h in zip(ids, humans, strict=True)]
                best = max(best, measure(sc, ok, critic_pick, target, delta, count)[0])
            cells = []
            for how in ("mean", "vote"):
                comb = [combine([judges[m][i][0] for m in members], how) for i in ids]  # type: ignore[arg-type]
                sc = [v.confidence for v in comb]
                ok = [v.label == h for v, h in zip(comb, humans, strict=True)]
                c, v, _ = measure(sc, ok, critic_pick, target, delta, count)
                cells.append(f"{c:.3f} / {v:.2f}")
            print(f"| {'+'.join(members)} | {len(ids)} | {target:.2f} | {best:.3f} | "
                  f"{' | '.join(cells)} | {len(members)} |")  # fmt: skip

    cascade_table(judges, delta, args.cascade_splits)
    design_table(judges, delta, args.cascade_splits)


if __name__ == "__main__":
    main()
