"""Cascades of critics (Trust or Escalate, arXiv 2407.18370): a cheap critic first, the next one
only for what the previous stage did not accept, humans for what the last cannot settle.

Three ways to calibrate one (`calibrate --cascade-method`). A cascade policy is a threshold per
stage: an item is accepted by the first critic whose confidence reaches its stage's threshold,
and that critic's label ships; stage s is asked only when no earlier stage accepted.

**paths** (the default; the whole cascade tested along a family of paths): `PATHS` fixes, in
the code, before any data are seen, P = 2 paths, each a sequence of cascade policies from strict
to loose over `calibrate`'s grid l = 1.0, 0.995, ..., 0.0:
- `hold 0.99`: every stage but the last at 0.99 (the critics' near-certain items), the last at l;
- `last alone`: every stage but the last at none (never accepting), the last at l: the strongest
  critic alone, so that cheap critics that are confidently wrong cost half of delta, not the
  cascade.
Each path is one fixed-sequence test at level delta / P: its policies are tested in order, a
policy once at least `least` calibration items are accepted by it (a rule on the scores alone,
as in `calibrate`), passing when the exact binomial tail P(X >= k | n, target) is at most
delta / P, k of the n calibration items it accepts agreeing with the human label; the path stops
at its first failure. On each path the last policy passed accepts the most and asks the last
critic no more than those before it. Of these, the one asking the last critic least among those
accepting at least `COVERAGE_SHARE` (0.9) of the most any accepts is chosen (ties: the one
accepting most): up to a tenth of coverage is traded for fewer requests to the strong critic,
the trade issue 19's aim states.

Why what the cascade accepts meets the target with probability >= 1 - delta:
1. For a fixed policy pi, whether pi accepts an item, and whether the label it ships agrees with
   the human, are functions of that item alone. Given that n calibration items are accepted,
   they are an i.i.d. sample of the items pi accepts in the population (the calibration items are
   exchangeable with the items to route), so the number agreeing is Binomial(n, a(pi)), a(pi) the
   agreement of pi on the population. The test of H_pi: "a(pi) < target" at level delta / P
   rejects a true H_pi with probability at most delta / P. A policy whose earlier stages never
   accept is such a fixed policy too.
2. On one path the order is fixed before the labels are seen. Some policy with a(pi) < target is
   passed only if the first true H_pi the path tests is rejected (the path stops at its first
   failure), probability at most delta / P. This needs a fixed order, not nested sets: as l falls
   on `equal` an item can move from the strong critic's label to the weak one's, and the accepted
   labels are not nested, but nothing in the argument uses that.
3. Union bound over the P paths: with probability at least 1 - delta no path passes any policy
   with a(pi) < target. On that event every policy passed is good, so any rule choosing among
   them (here: the fewest requests within 0.9 of the most coverage) chooses a good one; the
   choice may look at the labels.
The family is fixed in the code, not chosen on the calibration data; `calibrate_cascade(paths=)`
takes another family fixed in advance (the level is then delta / its size), and
`coverage_share=` another trade (1.0: the most coverage).
tests/test_cascade_joint.py checks the level by simulation, including cheap critics that are
confidently wrong and families of four paths.

**joint** (one path, issue 19's design): `equal` alone, every stage at l, tested at the full
delta (P = 1; the argument above with no union bound). Kept for policies calibrated that way,
and for critics whose confidences mean what they say.

**stagewise**: stage s is calibrated on the calibration items that reach it (those no earlier
stage accepted), by `calibrate`'s procedure, at level delta / S. Why its union holds:
1. The union's agreement is the average of the stages' agreements weighted by the share each
   accepts, so it is at least the target whenever every stage's accepted set is.
2. Stage s fails (passes a threshold whose agreement, on the items reaching stage s, is below the
   target) with probability at most delta / S, even though which items reach it was decided on
   the same data. Earlier stages looked at the labels of items that reach stage s only through
   the test that failed and ended their sequence, an event that is *decreasing* in those labels
   (more agreement would have made it pass); a false pass at stage s is *increasing* in them.
   Given everything else, labels of different items are independent, so by Harris's inequality
   conditioning on the earlier stages' decisions can only lower the chance of a false pass.
3. A union bound over the S stages gives at most delta in all. delta must be split: two stages
   each tested at delta could fail with probability about 2 delta (for example when the first
   stage accepts nothing and the second is tested on every item).

When each wins (bench/calibration.py --only-cascades on the LLMBar judges, PaLM2 last, 200
random half splits, delta 0.1; README, `critic calibrate`):
- paths keeps the most coverage on 12 of the 15 LLMBar cascades and targets (stagewise on 5, ties
  counted for both, by at most 0.010 where it is ahead), hence the default. It wins where the
  cheap critic's near-certain items agree above the target (ChatGPT -> PaLM2 at 0.65: 0.993 with
  0.67 requests to PaLM2 per item, against 0.862 stage-wise; at 0.70: 0.840 against 0.689) and
  on three-judge cascades (delta / 2 per path against delta / 3 per stage: LLaMA2 -> ChatGPT ->
  PaLM2 at 0.70: 0.827 against 0.689). Where the cheap critic is confidently wrong (LLaMA2's 311
  items at confidence 1.0 agree 66%) it falls back on `last alone`: PaLM2 at delta / 2, as
  stagewise does, and both ask PaLM2 for about every item.
- stagewise is ahead only by a hair (LLaMA2 -> PaLM2 at 0.65: 0.992 against 0.982, where paths
  trades coverage for 0.84 requests); it stays for policies calibrated that way.
- joint asks the last critic least when every critic's confidence means what it says, but on
  these judges it never keeps the most coverage: its path starts with the cheap critic's most
  confident items and stops at the first failure (LLaMA2 -> PaLM2 at 0.70: 0.043).
The aim of issue 19 (coverage >= 0.9 x the strongest judge alone with < 0.7 requests to it) is
met only by paths on ChatGPT -> PaLM2 at 0.65, as before. The designs tried to meet it more
often (the README lists them with their figures) fix the path before the labels are seen in
other ways: from the calibration scores alone (earlier critics held where at most 0.66 of the
items reach the last; valid only approximately, as the hold is read off the same items' score
counts, and measured worse), from a split of the labels (exactly valid, measured worse: the
half left to test cannot certify), or other families; none met it on more rows. On these judges
the cheap critics' confident items agree at or below the targets where the aim would matter
(0.70, 0.75), and half of LLMBar's ~870 items cannot certify a cascade whose agreement is within
a few points of the target.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from critic.calibrate import (
    GRID_STEP,
    MIN_ACCEPTED,
    CalibrationResult,
    Forecast,
    ThresholdRow,
    calibrate,
    check_calibration_input,
    fixed_sequence,
    forecast_coverage,
    grid_table,
    labels_needed_more,
    threshold_grid,
)
from critic.errors import UsageError
from critic.stats import binomial_lower_bound, min_labels_to_pass

CascadeMethod = Literal["paths", "joint", "stagewise"]
CASCADE_METHODS: tuple[CascadeMethod, ...] = ("paths", "joint", "stagewise")


@dataclass(frozen=True)
class CascadePath:
    """A path of cascade policies fixed before any data are seen, tested strictest first.

    `hold` None: every stage at the same threshold l, l = 1.0, 0.995, ..., 0.0. Otherwise every
    stage but the last stays at `hold` while the last stage's threshold l runs down the grid.
    `alone`: the earlier stages never accept (threshold none), the last critic alone scans."""

    name: str
    hold: float | None
    alone: bool = False

    def thresholds(self, stages: int, level: float) -> tuple[float | None, ...]:
        """The stages' thresholds of this path's policy at grid level `level`."""
        earlier = None if self.alone else level if self.hold is None else self.hold
        return (earlier,) * (stages - 1) + (level,)


EQUAL = CascadePath("equal", None)
HOLD_99 = CascadePath("hold 0.99", 0.99)
LAST_ALONE = CascadePath("last alone", None, alone=True)
# The family `paths` tests, fixed before any data (module doc). Each path costs a share of delta;
# the candidates measured on LLMBar's judges are in the README and bench/calibration.py.
PATHS: tuple[CascadePath, ...] = (HOLD_99, LAST_ALONE)
# `paths` chooses, of the policies passed, the one asking the last critic least among those
# accepting at least this share of the most any passed policy accepts (issue 19's aim: 0.9 of
# the strongest critic's coverage for fewer requests to it).
COVERAGE_SHARE = 0.9


class Stage(BaseModel):
    """One stage of a cascade policy: its critic, threshold and what it did on calibration."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    critic: str = Field(min_length=1)
    threshold: float | None = Field(ge=0, le=1)
    reached: int = Field(ge=0, description="calibration items that reached this stage")
    accepted: int = Field(ge=0, description="calibration items this stage accepted")
    agree: int = Field(ge=0, description="of those, how many agree with the human label")
    calibration: CalibrationResult | None = Field(
        default=None,
        description="stagewise: this stage's own test on the items reaching it; joint: none "
        "(one test for the whole cascade)",
    )

    @model_validator(mode="before")
    @classmethod
    def _counts_from_calibration(cls, data: Any) -> Any:
        """Policies written before `accepted` / `agree` existed carry them in `calibration`."""
        if isinstance(data, dict) and "accepted" not in data and data.get("calibration"):
            cal = data["calibration"]
            get = cal.get if isinstance(cal, dict) else lambda k: getattr(cal, k)
            data = {**data, "accepted": get("n_accepted"), "agree": get("n_agree")}
        return data


class PathsTested(BaseModel):
    """`paths`: the family of paths tested, each at delta / len(family), and the path of the
    policy chosen (None: nothing passed)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    family: list[str] = Field(min_length=1, description="the paths' names, in the order tested")
    chosen: str | None = Field(description="the path the chosen policy lies on")

    @model_validator(mode="after")
    def _chosen_in_family(self) -> PathsTested:
        if self.chosen is not None and self.chosen not in self.family:
            raise ValueError(f"chosen: {self.chosen!r} is not one of the family {self.family}")
        return self


class CascadeResult(BaseModel):
    """The outcome of `calibrate_cascade`: each stage, and the cascade as a whole."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: CascadeMethod = "stagewise"  # policies written before joint existed were stagewise
    stages: list[Stage]
    target_agreement: float = Field(gt=0, lt=1)
    delta: float = Field(gt=0, lt=1)
    n_calibration: int = Field(ge=0)
    n_accepted: int = Field(ge=0)
    n_agree: int = Field(ge=0)
    requests_per_item: dict[str, float] = Field(
        description="per critic: requests per calibration item (share of items reaching it)"
    )
    needed_more: int | None = Field(
        default=None,
        description="joint, when nothing passes: estimated further human labels needed",
    )
    paths: PathsTested | None = Field(
        default=None, description="`paths`: the family tested and the path chosen"
    )

    @model_validator(mode="after")
    def _paths_for_paths(self) -> CascadeResult:
        if (self.method == "paths") != (self.paths is not None):
            raise ValueError("paths: recorded exactly when the method is `paths`")
        return self

    @classmethod
    def from_stages(
        cls, stages: Sequence[Stage], target_agreement: float, delta: float,
        method: CascadeMethod, paths: PathsTested | None = None,
    ) -> CascadeResult:  # fmt: skip
        """The result as a policy file records it (its stages), for the guarantee in words."""
        n = stages[0].reached if stages else 0
        return cls(
            method=method, stages=list(stages), target_agreement=target_agreement, delta=delta,
            n_calibration=n, n_accepted=sum(s.accepted for s in stages),
            n_agree=sum(s.agree for s in stages),
            requests_per_item=requests_per_item(stages, n),
            paths=paths,
        )  # fmt: skip

    @property
    def coverage(self) -> float:
        return self.n_accepted / self.n_calibration if self.n_calibration else 0.0

    @property
    def agreement(self) -> float | None:
        return self.n_agree / self.n_accepted if self.n_accepted else None

    @property
    def level(self) -> float:
        """The level each test was run at: delta, or its share per path or per stage."""
        if self.paths is not None:
            return self.delta / len(self.paths.family)
        return self.delta if self.method == "joint" else self.delta / max(1, len(self.stages))

    @property
    def lower_bound(self) -> float | None:
        """joint or paths: the one-sided lower bound on the cascade's agreement at the level
        its test was run at (for paths it holds jointly with the others, at 1 - delta)."""
        if self.method == "stagewise" or not self.n_accepted:
            return None
        return binomial_lower_bound(self.n_agree, self.n_accepted, self.level)

    @property
    def guarantee(self) -> str:
        stages = len(self.stages)
        conf = f"{(1 - self.delta) * 100:.4g}%"
        each = f"{self.delta / stages:.4g}"
        if self.paths is not None:
            family = len(self.paths.family)
            chosen = f"; chosen on path '{self.paths.chosen}'" if self.paths.chosen else ""
            how = (
                f"the cascade as a whole tested along {family} paths fixed in advance "
                f"({', '.join(self.paths.family)}), each at delta {self.level:.4g}{chosen}"
            )
        elif self.method == "joint":
            how = (
                f"one test of the cascade as a whole at delta {self.delta:.4g}, every stage at "
                "the same threshold"
            )
        else:
            how = f"each of the {stages} stages calibrated at delta {each} on the items reaching it"
        settled = ", ".join(
            f"{s.critic} ≥ {s.threshold:.4g} ({s.accepted})"
            if s.threshold is not None
            else f"{s.critic}: none"
            for s in self.stages
        )
        if self.n_accepted == 0:
            more = (
                f" If new labels agree as the ones so far do, about {self.needed_more} more "
                "human labels are needed."
                if self.needed_more is not None
                else ""
            )
            return (
                f"No stage of the cascade can be guaranteed at {self.target_agreement:.4g} "
                f"agreement with probability ≥ {conf} ({how}); nothing will be auto-accepted."
                + more
            )
        assert self.agreement is not None
        bound = self.lower_bound
        tail = f", lower bound {bound:.1%}" if bound is not None else ""
        return (
            f"With probability ≥ {conf} over the draw of the {self.n_calibration} calibration "
            f"items, the labels the cascade auto-accepts agree with humans at a rate of at least "
            f"{self.target_agreement:.4g} on items like them ({how}). Stages: {settled}. On the "
            f"calibration set: {self.n_accepted} of {self.n_calibration} accepted "
            f"({self.coverage:.1%}), {self.agreement:.1%} agreement{tail}."
        )


def _check(
    critics: Sequence[str],
    scores: Sequence[Sequence[float]],
    correct: Sequence[Sequence[bool]],
    target_agreement: float,
    delta: float,
) -> None:
    if not critics:
        raise UsageError("a cascade needs at least one critic", hint="--cascade small,big")
    if len(set(critics)) != len(critics):
        raise UsageError(f"--cascade names a critic twice: {','.join(critics)}")
    if len(scores) != len(correct):
        raise UsageError(f"{len(scores)} items' scores but {len(correct)} items' verdicts")
    for row_s, row_c in zip(scores, correct, strict=True):
        if len(row_s) != len(critics) or len(row_c) != len(critics):
            raise UsageError(f"every item needs one score and one verdict per critic ({critics})")
    for s in range(len(critics)):
        check_calibration_input([r[s] for r in scores], [r[s] for r in correct], target_agreement,
                                delta)  # fmt: skip


def calibrate_cascade(
    critics: Sequence[str],
    scores: Sequence[Sequence[float]],
    correct: Sequence[Sequence[bool]],
    target_agreement: float,
    delta: float,
    *,
    method: CascadeMethod = "paths",
    min_accepted: int = MIN_ACCEPTED,
    paths: Sequence[CascadePath] = PATHS,
    coverage_share: float = COVERAGE_SHARE,
) -> CascadeResult:
    """Calibrate a cascade, jointly over paths, over one path, or stage by stage (module doc).

    Args:
        critics: the critics' names, cheapest (first asked) first.
        scores: per item, each critic's confidence, in the order of `critics`.
        correct: per item, whether each critic's label agreed with the human label.
        target_agreement, delta: as for `calibrate`.
        method: `paths` (one test along each path of `paths`, each at delta / len(paths), the
            best policy passed), `joint` (one test along the path of equal thresholds, at delta)
            or `stagewise` (each stage on the items reaching it, at delta / S).
        paths: `paths`: the family of paths, fixed before the data are seen (`PATHS`).
        coverage_share: `paths`: of the passing policies, the one asking the last critic least
            among those accepting at least this share of the most any accepts (1.0: the most
            coverage). Any rule is valid here (module doc); this one states the trade.
    """
    _check(critics, scores, correct, target_agreement, delta)
    if not 0 < coverage_share <= 1:
        raise UsageError(f"coverage_share must be in (0, 1], got {coverage_share}")
    if method == "paths":
        if not paths:
            raise UsageError("a joint calibration over paths needs at least one path")
        return _joint(critics, scores, correct, target_agreement, delta, min_accepted, paths,
                      "paths", coverage_share)  # fmt: skip
    if method == "joint":
        return _joint(critics, scores, correct, target_agreement, delta, min_accepted, (EQUAL,),
                      "joint", 1.0)  # fmt: skip
    if method != "stagewise":
        raise UsageError(f"--cascade-method must be one of {', '.join(CASCADE_METHODS)}, "
                         f"got {method!r}")  # fmt: skip
    return _stagewise(critics, scores, correct, target_agreement, delta, min_accepted)


def _stagewise(
    critics: Sequence[str],
    scores: Sequence[Sequence[float]],
    correct: Sequence[Sequence[bool]],
    target_agreement: float,
    delta: float,
    min_accepted: int,
) -> CascadeResult:
    per_stage = delta / len(critics)
    reaching = list(range(len(scores)))
    stages: list[Stage] = []
    n_accepted = n_agree = 0
    for s, name in enumerate(critics):
        result = calibrate(
            [scores[i][s] for i in reaching],
            [correct[i][s] for i in reaching],
            target_agreement,
            per_stage,
            min_accepted=min_accepted,
        )
        stages.append(Stage(critic=name, threshold=result.threshold, reached=len(reaching),
                            accepted=result.n_accepted, agree=result.n_agree,
                            calibration=result))  # fmt: skip
        if result.threshold is not None:
            t = result.threshold
            n_accepted += result.n_accepted
            n_agree += result.n_agree
            reaching = [i for i in reaching if scores[i][s] < t]
    return CascadeResult(
        method="stagewise",
        stages=stages,
        target_agreement=target_agreement,
        delta=delta,
        n_calibration=len(scores),
        n_accepted=n_accepted,
        n_agree=n_agree,
        requests_per_item=requests_per_item(stages, len(scores)),
    )


@dataclass(frozen=True)
class PathRow:
    """The calibration items under one policy of a path (its stages at `thresholds`)."""

    thresholds: tuple[float | None, ...]  # earlier stages none on `last alone`
    reached: tuple[int, ...]  # per stage: items asked
    accepted: tuple[int, ...]  # per stage: items it accepted
    agree: tuple[int, ...]  # per stage: of those, agreeing with the human label

    @property
    def threshold(self) -> float:
        """The level the path scans: the last stage's threshold."""
        level = self.thresholds[-1]
        assert level is not None  # every path scans the last stage down the grid
        return level

    def total(self) -> ThresholdRow:
        return ThresholdRow(self.threshold, sum(self.accepted), sum(self.agree))


def path_table(
    scores: Sequence[Sequence[float]],
    correct: Sequence[Sequence[bool]],
    path: CascadePath = EQUAL,
    step: float = GRID_STEP,
) -> list[PathRow]:
    """One row per grid level l, strictest first: what the cascade policy of `path` at l does on
    these items."""
    if path.hold is None and not path.alone:
        return _equal_table(scores, correct, step)
    return _hold_table(scores, correct, path, step)


def _hold_table(
    scores: Sequence[Sequence[float]], correct: Sequence[Sequence[bool]], path: CascadePath,
    step: float,
) -> list[PathRow]:  # fmt: skip
    """Earlier stages fixed at `path.hold` (never accepting on `last alone`): who they accept
    does not move, so the last stage's rows are `grid_table` over the items reaching it."""
    hold = path.hold
    stages = len(scores[0]) if scores else 0
    reached, accepted, agree = [0] * stages, [0] * stages, [0] * stages
    last_scores: list[float] = []
    last_correct: list[bool] = []
    for row_s, row_c in zip(scores, correct, strict=True):
        for s in range(stages):
            reached[s] += 1
            if s == stages - 1:
                last_scores.append(row_s[s])
                last_correct.append(row_c[s])
            elif hold is not None and row_s[s] >= hold:
                accepted[s] += 1
                agree[s] += row_c[s]
                break
    return [
        PathRow(path.thresholds(stages, r.threshold), tuple(reached),
                (*accepted[:-1], r.n_accepted), (*agree[:-1], r.n_agree))
        for r in grid_table(last_scores, last_correct, step)
    ]  # fmt: skip


def _equal_table(
    scores: Sequence[Sequence[float]], correct: Sequence[Sequence[bool]], step: float
) -> list[PathRow]:
    """Every stage at l. Stage s accepts an item for l in (max of earlier confidences, its own
    confidence], so each item adds one interval of the grid per stage (difference arrays)."""
    grid = threshold_grid(step)  # descending
    ascending = grid[::-1]
    size = len(grid)
    stages = len(scores[0]) if scores else 0
    reach = [[0] * (size + 1) for _ in range(stages)]
    take = [[0] * (size + 1) for _ in range(stages)]
    good = [[0] * (size + 1) for _ in range(stages)]
    for row_s, row_c in zip(scores, correct, strict=True):
        lo = 0  # ascending index of the smallest l above every earlier confidence
        for s in range(stages):
            reach[s][lo] += 1
            hi = bisect.bisect_right(ascending, row_s[s])  # l <= own confidence below hi
            if hi > lo:
                take[s][lo] += 1
                take[s][hi] -= 1
                if row_c[s]:
                    good[s][lo] += 1
                    good[s][hi] -= 1
            lo = max(lo, hi)
            if lo >= size:
                break

    def running(diff: list[int]) -> list[int]:
        out, acc = [], 0
        for i in range(size):
            acc += diff[i]
            out.append(acc)
        return out

    reached, accepted, agreeing = ([running(d) for d in diffs] for diffs in (reach, take, good))
    rows = []
    for j in range(size):  # descending grid index j is ascending index size - 1 - j
        a = size - 1 - j
        counts = (reached, accepted, agreeing)
        row = PathRow((grid[j],) * stages, *(tuple(c[a] for c in count) for count in counts))
        rows.append(row)
    return rows


@dataclass(frozen=True)
class _Passed:
    path: CascadePath
    row: PathRow


def _joint(
    critics: Sequence[str],
    scores: Sequence[Sequence[float]],
    correct: Sequence[Sequence[bool]],
    target_agreement: float,
    delta: float,
    min_accepted: int,
    family: Sequence[CascadePath],
    method: CascadeMethod,
    coverage_share: float,
) -> CascadeResult:
    """One fixed sequence per path of `family`, each at delta / len(family); of the last
    policies passed (on each path the last passed accepts most and asks the last critic no more
    than those before it), the one asking the last critic least among those accepting at least
    `coverage_share` of the most any accepts, then the one accepting most."""
    n = len(scores)
    level = delta / len(family)
    least = max(min_labels_to_pass(target_agreement, level), min_accepted)
    passed: list[_Passed] = []
    needed: list[int] = []
    for path in family:
        rows = path_table(scores, correct, path)
        totals = [r.total() for r in rows]
        chosen = fixed_sequence(totals, target_agreement, level, least)
        if chosen is not None:
            passed.append(_Passed(path, rows[totals.index(chosen)]))
        elif (more := labels_needed_more(totals, n, target_agreement, level, least)) is not None:
            needed.append(more)
    tested = (
        PathsTested(family=[p.name for p in family], chosen=None) if method == "paths" else None
    )
    if not passed:
        stages = [Stage(critic=c, threshold=None, reached=n, accepted=0, agree=0)
                  for c in critics]  # fmt: skip
        return CascadeResult(
            method=method, stages=stages, target_agreement=target_agreement, delta=delta,
            n_calibration=n, n_accepted=0, n_agree=0,
            requests_per_item=requests_per_item(stages, n),
            needed_more=min(needed) if needed else None, paths=tested,
        )  # fmt: skip
    most = max(sum(p.row.accepted) for p in passed)
    near = [p for p in passed if sum(p.row.accepted) >= coverage_share * most]
    best = min(near, key=lambda p: (p.row.reached[-1], -sum(p.row.accepted)))
    row = best.row
    stages = [
        Stage(critic=c, threshold=row.thresholds[s], reached=row.reached[s],
              accepted=row.accepted[s], agree=row.agree[s])
        for s, c in enumerate(critics)
    ]  # fmt: skip
    if tested is not None:
        tested = tested.model_copy(update={"chosen": best.path.name})
    return CascadeResult(
        method=method, stages=stages, target_agreement=target_agreement, delta=delta,
        n_calibration=n, n_accepted=sum(row.accepted), n_agree=sum(row.agree),
        requests_per_item=requests_per_item(stages, n), paths=tested,
    )  # fmt: skip


def requests_per_item(stages: Sequence[Stage], n: int) -> dict[str, float]:
    """Requests per item to each critic of a live cascade: the share of the `n` items that
    reach its stage, and none for a stage before the last that can settle nothing (threshold
    none: a live cascade does not ask it)."""
    last = len(stages) - 1
    return {
        s.critic: 0.0 if not n or (s.threshold is None and i < last) else s.reached / n
        for i, s in enumerate(stages)
    }


def accepts(thresholds: Sequence[float | None], confidences: Sequence[float]) -> int | None:
    """The stage (0-based) whose critic accepts an item under these thresholds, or None."""
    for s, (t, c) in enumerate(zip(thresholds, confidences, strict=True)):
        if t is not None and c >= t:
            return s
    return None


def forecast_cascade(
    critics: Sequence[str],
    scores: Sequence[Sequence[float]],
    correct: Sequence[Sequence[bool]],
    target_agreement: float,
    delta: float,
    *,
    method: CascadeMethod = "paths",
    draws: int = 50,
    seed: int = 0,
) -> list[Forecast]:
    """`critic.calibrate.forecast_coverage` for `calibrate_cascade` on these items."""

    def coverage_of(picks: Sequence[int]) -> float:
        result = calibrate_cascade(critics, [scores[i] for i in picks],
                                   [correct[i] for i in picks], target_agreement, delta,
                                   method=method)  # fmt: skip
        ts = [s.threshold for s in result.stages]
        return sum(accepts(ts, row) is not None for row in scores) / len(scores)

    return forecast_coverage(len(scores), coverage_of, draws=draws, seed=seed)
