"""Joint cascade calibration (over one path, and over a family of paths): the path tables, the
choice among paths, the guarantee by simulation, policies that record the method and the path
and route with them, and the CLI."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from critic.calibrate import threshold_grid
from critic.cascade import (
    COVERAGE_SHARE,
    EQUAL,
    HOLD_99,
    LAST_ALONE,
    PATHS,
    CascadePath,
    CascadeResult,
    accepts,
    calibrate_cascade,
    forecast_cascade,
    path_table,
)
from critic.cli import app
from critic.errors import CriticError, UsageError
from critic.routing import (
    Policy,
    RouteInput,
    StageVerdict,
    load_policy,
    policy_hash,
    route,
    save_policy,
)

DELTA = 0.1
runner = CliRunner()


# --------------------------------------------------------------------------------------------
# The path of equal thresholds


HOLD_1 = CascadePath("hold 1", 1.0)
HOLD_95 = CascadePath("hold 0.95", 0.95)


@settings(max_examples=40, deadline=None)
@given(
    stages=st.integers(1, 3),
    seed=st.integers(0, 2**31),
    n=st.integers(1, 120),
    path=st.sampled_from([EQUAL, *PATHS, HOLD_1, HOLD_95]),
)
def test_path_table_counts_what_each_policy_of_a_path_does(
    stages: int, seed: int, n: int, path: CascadePath
) -> None:
    """Every row equals a direct walk: each item asks critics in order until one's confidence
    reaches its stage's threshold (all at l on `equal`; earlier stages at the held level, the
    last at l, on a hold path; earlier stages never, on `last alone`), which accepts it with its
    own verdict."""
    rng = random.Random(seed)
    values = [0.0, 0.5, 0.62, 0.95, 0.99, 0.995, 1.0]
    scores = [[rng.choice([rng.random(), rng.choice(values)]) for _ in range(stages)]
              for _ in range(n)]  # fmt: skip
    correct = [[rng.random() < 0.7 for _ in range(stages)] for _ in range(n)]
    rows = path_table(scores, correct, path)
    assert [r.threshold for r in rows] == threshold_grid()
    for row in rows:
        held = None if path.alone else row.threshold if path.hold is None else path.hold
        assert row.thresholds == (held,) * (stages - 1) + (row.threshold,)
        reached, accepted, agree = [0] * stages, [0] * stages, [0] * stages
        for sc, ok in zip(scores, correct, strict=True):
            for s in range(stages):
                reached[s] += 1
                t = row.thresholds[s]
                if t is not None and sc[s] >= t:
                    accepted[s] += 1
                    agree[s] += ok[s]
                    break
        assert (list(row.reached), list(row.accepted), list(row.agree)) == (
            reached, accepted, agree,
        )  # fmt: skip


def _two_judges() -> tuple[list[list[float]], list[list[bool]]]:
    """A cheap judge sure and right on the first 300 of 600 items, a coin toss on the rest; a
    strong judge sure and right on the next 200; both unsure on the last 100."""
    rng = random.Random(11)
    scores, correct = [], []
    for i in range(600):
        cheap_sure, strong_sure = i < 300, i < 500
        scores.append([1.0 if cheap_sure else 0.6, 1.0 if strong_sure else 0.55])
        correct.append([rng.random() < (0.96 if cheap_sure else 0.5),
                        rng.random() < (0.96 if strong_sure else 0.5)])  # fmt: skip
    return scores, correct


def test_joint_puts_every_stage_at_one_threshold_tested_at_the_full_delta() -> None:
    scores, correct = _two_judges()
    result = calibrate_cascade(["cheap", "strong"], scores, correct, 0.85, DELTA, method="joint")
    assert result.method == "joint"
    thresholds = {s.threshold for s in result.stages}
    assert len(thresholds) == 1 and None not in thresholds
    t = thresholds.pop()
    assert t is not None
    # What it records is exactly what the chosen cascade does on these items.
    outcome = [accepts([t, t], row) for row in scores]
    assert result.n_accepted == sum(o is not None for o in outcome)
    assert result.n_agree == sum(correct[i][o] for i, o in enumerate(outcome) if o is not None)
    assert [s.accepted for s in result.stages] == [outcome.count(0), outcome.count(1)]
    assert result.requests_per_item == {
        "cheap": 1.0,
        "strong": sum(row[0] < t for row in scores) / len(scores),
    }
    assert result.lower_bound is not None and result.lower_bound >= 0.85
    assert "one test of the cascade as a whole at delta 0.1" in result.guarantee
    assert all(s.calibration is None for s in result.stages)


def test_joint_stops_at_the_first_failure_of_the_path() -> None:
    """At the strictest policies the cheap judge's sure items are all wrong: the sequence ends
    there, even though looser policies would pass on their own."""
    scores = [[1.0, 0.0]] * 40 + [[0.0, 0.9]] * 400
    correct = [[False, True]] * 40 + [[True, True]] * 400
    result = calibrate_cascade(["cheap", "strong"], scores, correct, 0.8, DELTA, method="joint")
    assert result.n_accepted == 0 and [s.threshold for s in result.stages] == [None, None]
    # Nothing is accepted: a live cascade asks only the last critic, for the reviewer's draft.
    assert result.requests_per_item == {"cheap": 0.0, "strong": 1.0}
    assert "nothing will be auto-accepted" in result.guarantee
    # Stage by stage, the cheap judge is left out and the strong one still passes.
    stagewise = calibrate_cascade(["cheap", "strong"], scores, correct, 0.8, DELTA,
                                  method="stagewise")  # fmt: skip
    assert stagewise.method == "stagewise"
    assert [s.threshold is not None for s in stagewise.stages] == [False, True]
    # The default, paths, falls back on its `last alone` path: the strong judge is right on
    # every item, at whatever confidence.
    default = calibrate_cascade(["cheap", "strong"], scores, correct, 0.8, DELTA)
    assert default.method == "paths" and default.paths is not None
    assert default.paths.chosen == "last alone"
    assert [s.threshold for s in default.stages] == [None, 0.0]
    assert (default.n_accepted, default.n_agree) == (440, 440)
    assert default.requests_per_item == {"cheap": 0.0, "strong": 1.0}  # cheap is never asked


def test_joint_with_too_few_labels_says_how_many_more() -> None:
    scores = [[0.9, 0.9]] * 20
    correct = [[True, True]] * 20
    result = calibrate_cascade(["a", "b"], scores, correct, 0.8, DELTA, method="joint")
    assert result.n_accepted == 0 and result.needed_more == 10
    assert "about 10 more human labels" in result.guarantee


def test_unknown_method_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="--cascade-method must be one of paths, joint, stagewise"):
        calibrate_cascade(["a"], [[0.5]], [[True]], 0.8, DELTA, method="both")  # type: ignore[arg-type]


def _hold_wins() -> tuple[list[list[float]], list[list[bool]]]:
    """The cheap judge is sure and right on 300 items, fairly sure (0.9) and wrong on 200 that
    the strong judge gets right at 0.9; both are coin tosses at 0.5 on the last 100."""
    scores = [[1.0, 1.0]] * 300 + [[0.9, 0.9]] * 200 + [[0.5, 0.5]] * 100
    correct = [[True, True]] * 300 + [[False, True]] * 200
    correct += [[i % 2 == 0, i % 2 == 1] for i in range(100)]
    return scores, correct


def test_paths_chooses_the_passing_policy_that_asks_the_last_critic_least() -> None:
    """Equal thresholds stop above 0.9 (the cheap judge's 0.9 items are wrong): 300 accepted.
    Holding the cheap judge at 0.99 lets the strong one go down to 0.9 (not to 0.5): 500. The
    strong judge alone accepts the same 500, asked for every item: the hold path is chosen."""
    scores, correct = _hold_wins()
    names = ["cheap", "strong"]
    equal = calibrate_cascade(names, scores, correct, 0.9, DELTA, method="joint")
    assert equal.n_accepted == 300 and equal.paths is None
    result = calibrate_cascade(names, scores, correct, 0.9, DELTA, method="paths")
    assert result.method == "paths"
    assert result.paths is not None
    assert result.paths.family == [p.name for p in PATHS] == ["hold 0.99", "last alone"]
    assert result.paths.chosen == "hold 0.99"
    # The loosest grid level with the same set, as `calibrate` chooses.
    assert [s.threshold for s in result.stages] == [0.99, 0.505]
    assert (result.n_accepted, result.n_agree) == (500, 500)
    assert [(s.reached, s.accepted, s.agree) for s in result.stages] == [
        (600, 300, 300), (300, 200, 200),
    ]  # fmt: skip
    assert result.requests_per_item == {"cheap": 1.0, "strong": 0.5}
    # What it records is exactly what the chosen cascade does on these items.
    outcome = [accepts([0.99, 0.505], row) for row in scores]
    assert [outcome.count(0), outcome.count(1)] == [300, 200]
    # Each path is tested at delta / 2, and the bound is stated at that level.
    assert result.level == DELTA / 2
    assert result.lower_bound is not None and 0.9 < result.lower_bound < 1.0
    assert (
        "tested along 2 paths fixed in advance (hold 0.99, last alone), each at delta "
        "0.05; chosen on path 'hold 0.99'" in result.guarantee
    )


def _trade(unsure: int, right: int) -> tuple[list[list[float]], list[list[bool]]]:
    """1,000 items: 600 both judges sure and right; 40 the cheap judge sure and wrong, the
    strong one sure and right; of the other 360 the cheap judge is unsure and wrong, the strong
    one right at 0.9 on 360 - `unsure` of them, at 0.8 on the last `unsure`, right on `right`
    of those."""
    sure = 360 - unsure
    scores = [[1.0, 1.0]] * 640 + [[0.5, 0.9]] * sure + [[0.5, 0.8]] * unsure
    correct = [[True, True]] * 600 + [[False, True]] * (40 + sure)
    correct += [[False, i < right] for i in range(unsure)]
    return scores, correct


@pytest.mark.parametrize(
    ("unsure", "right", "chosen", "accepted", "strong_asked"),
    [(90, 40, "hold 0.99", 910, 0.36), (160, 90, "last alone", 1000, 1.0)],
)
def test_paths_trades_a_tenth_of_coverage_for_fewer_requests_to_the_last_critic(
    unsure: int, right: int, chosen: str, accepted: int, strong_asked: float
) -> None:
    """The strong judge alone accepts all 1,000 (95% and 93% agree). Holding the cheap judge at
    0.99 ships its 40 wrong labels, so that path stops before the strong judge's 0.8 items
    (91% and 89% agree with them): it accepts 910, or 840, with the strong judge asked for the
    36% of the items the cheap judge leaves. 910 is at least 0.9 x 1,000: the hold path is
    chosen; 840 is not: the strong judge alone."""
    scores, correct = _trade(unsure, right)
    result = calibrate_cascade(["cheap", "strong"], scores, correct, 0.9, DELTA)
    assert result.paths is not None and result.paths.chosen == chosen
    assert result.n_accepted == accepted
    assert result.requests_per_item["strong"] == strong_asked
    # With the most coverage as the rule, the strong judge alone wins both.
    most = calibrate_cascade(["cheap", "strong"], scores, correct, 0.9, DELTA, coverage_share=1)
    assert most.paths is not None and most.paths.chosen == "last alone"
    assert most.n_accepted == 1000


@pytest.mark.parametrize("share", [0.0, 1.5])
def test_a_coverage_share_outside_0_1_is_a_usage_error(share: float) -> None:
    assert COVERAGE_SHARE == 0.9  # the aim of issue 19: 0.9 of the strongest judge's coverage
    with pytest.raises(UsageError, match="coverage_share must be in"):
        calibrate_cascade(["a", "b"], [[0.9, 0.9]], [[True, True]], 0.8, DELTA,
                          coverage_share=share)  # fmt: skip


def test_paths_ties_go_to_the_policy_that_asks_the_last_critic_least() -> None:
    """Both paths accept the same 300 items; holding at 0.95 settles them at the cheap stage,
    holding at 1 leaves the cheap judge's 0.96 items to the strong judge."""
    scores = [[0.96, 1.0]] * 300 + [[0.5, 0.5]] * 300
    correct = [[True, True]] * 300 + [[False, False]] * 300
    family = (HOLD_1, HOLD_95)
    result = calibrate_cascade(["cheap", "strong"], scores, correct, 0.9, DELTA,
                               method="paths", paths=family)  # fmt: skip
    assert result.n_accepted == 300
    assert result.paths is not None and result.paths.chosen == "hold 0.95"
    assert result.requests_per_item == {"cheap": 1.0, "strong": 0.5}
    flipped = calibrate_cascade(["cheap", "strong"], scores, correct, 0.9, DELTA,
                                method="paths", paths=family[::-1])  # fmt: skip
    assert flipped.paths is not None and flipped.paths.chosen == "hold 0.95"


def test_paths_splits_delta_over_the_family() -> None:
    """The same data pass at delta on one path and fail at delta / 4 on four: 37 of 40
    agreeing items clear 0.8 at 0.1 (tail 0.028) but not at 0.025."""
    scores = [[0.9, 0.9]] * 40
    correct = [[i >= 3, i >= 3] for i in range(40)]
    one = calibrate_cascade(["a", "b"], scores, correct, 0.8, DELTA, method="paths",
                            paths=(EQUAL,))  # fmt: skip
    assert one.n_accepted == 40 and one.level == DELTA
    family = (EQUAL, HOLD_1, HOLD_95, HOLD_99)
    four = calibrate_cascade(["a", "b"], scores, correct, 0.8, DELTA, method="paths",
                             paths=family)  # fmt: skip
    assert four.n_accepted == 0 and four.level == DELTA / 4
    assert four.paths is not None and four.paths.chosen is None
    assert [s.threshold for s in four.stages] == [None, None]
    assert four.needed_more is not None and four.needed_more > 0
    assert "nothing will be auto-accepted" in four.guarantee
    with pytest.raises(UsageError, match="at least one path"):
        calibrate_cascade(["a", "b"], scores, correct, 0.8, DELTA, method="paths", paths=())


# --------------------------------------------------------------------------------------------
# The guarantee, by simulation (hypothesis chooses the world, many calibrations per world)


def _world(
    rng: random.Random, n: int, skill: float, top_wrong: float, top_right: float = 1 / 3
) -> list[tuple[list[float], list[bool]]]:
    """n items judged by a cheap and a strong critic on a 20-step confidence grid. The chance of
    being right rises with the confidence, except that a share `top_wrong` of the cheap
    critic's items are confidently wrong (confidence 1.0, right with probability `top_right`),
    as LLMBar's judges are on its adversarial sets."""
    items = []
    for _ in range(n):
        hard = rng.random()
        scores, correct = [], []
        for critic, bonus in ((0, 0.0), (1, 0.1)):
            if critic == 0 and rng.random() < top_wrong:
                scores.append(1.0)
                correct.append(rng.random() < top_right)
                continue
            c = min(1.0, round((0.5 + 0.5 * rng.random() ** 0.4) * 20) / 20)
            p = max(0.0, min(1.0, skill + bonus + 0.35 * (c - 0.75) - 0.3 * (hard - 0.5)))
            scores.append(c)
            correct.append(rng.random() < p)
        items.append((scores, correct))
    return items


def _agreement(population: list[tuple[list[float], list[bool]]], ts: list[float | None]
               ) -> float | None:  # fmt: skip
    got = [ok[s] for sc, ok in population if (s := accepts(ts, sc)) is not None]
    return sum(got) / len(got) if got else None


def _violation_rate(method: str, target: float, skill: float, top_wrong: float, seed: int,
                    trials: int, *, top_right: float = 1 / 3,
                    paths: tuple[CascadePath, ...] = PATHS) -> float:  # fmt: skip
    rng = random.Random(seed)
    population = _world(rng, 20_000, skill, top_wrong, top_right)  # stands in for the population
    violations = 0
    for _ in range(trials):
        cal = _world(rng, 400, skill, top_wrong, top_right)
        scores, correct = [s for s, _ in cal], [c for _, c in cal]
        if method == "naive":  # the loosest equal threshold whose observed agreement is enough
            chosen: list[float | None] = [None, None]
            for row in path_table(scores, correct):
                total = row.total()
                if total.n_accepted >= 30 and total.agreement >= target:
                    chosen = [row.threshold, row.threshold]
        elif method == "paths at full delta":  # the best passing policy, no split of delta
            got = [calibrate_cascade(["cheap", "strong"], scores, correct, target, DELTA,
                                     method="paths", paths=(p,)) for p in paths]  # fmt: skip
            best = max(got, key=lambda r: r.n_accepted)
            chosen = [s.threshold for s in best.stages]
        else:
            result = calibrate_cascade(["cheap", "strong"], scores, correct, target, DELTA,
                                       method="joint" if method == "joint" else "paths",
                                       paths=paths)  # fmt: skip
            chosen = [s.threshold for s in result.stages]
        agreement = _agreement(population, chosen)
        violations += agreement is not None and agreement < target
    return violations / trials


@settings(max_examples=6, deadline=None, derandomize=True)
@given(
    target=st.sampled_from([0.7, 0.8, 0.85]),
    skill=st.floats(0.55, 0.85),
    top_wrong=st.sampled_from([0.0, 0.05, 0.15]),
    seed=st.integers(0, 2**31),
)
def test_joint_cascade_meets_the_target_with_probability_1_minus_delta(
    target: float, skill: float, top_wrong: float, seed: int
) -> None:
    """The cascade the joint procedure chooses accepts labels whose agreement on the population
    is below target in at most a delta share of calibrations, up to three standard errors."""
    trials = 60
    rate = _violation_rate("joint", target, skill, top_wrong, seed, trials)
    assert rate <= DELTA + 3 * math.sqrt(DELTA * (1 - DELTA) / trials)


@settings(max_examples=8, deadline=None, derandomize=True)
@given(
    target=st.sampled_from([0.7, 0.8, 0.85]),
    skill=st.floats(0.55, 0.85),
    top_wrong=st.sampled_from([0.0, 0.15, 0.35]),
    near=st.booleans(),
    four=st.booleans(),
    seed=st.integers(0, 2**31),
)
def test_paths_cascade_meets_the_target_with_probability_1_minus_delta(
    target: float, skill: float, top_wrong: float, near: bool, four: bool, seed: int
) -> None:
    """Joint over paths keeps violations at most delta (up to three standard errors), in worlds
    where the cheap critic is confidently wrong: its items at confidence 1.0 are right a third
    of the time, or (`near`) just below the target, so that every hold path starts with
    policies whose agreement is near the target. With `critic`'s family or four paths."""
    trials = 60
    paths = (EQUAL, HOLD_1, HOLD_95, LAST_ALONE) if four else PATHS
    rate = _violation_rate("paths", target, skill, top_wrong, seed, trials,
                           top_right=target - 0.03 if near else 1 / 3, paths=paths)  # fmt: skip
    assert rate <= DELTA + 3 * math.sqrt(DELTA * (1 - DELTA) / trials)


def test_the_trial_harness_catches_a_joint_choice_without_a_test() -> None:
    """Taking the loosest equal threshold whose observed agreement meets the target violates
    it far more often than delta: the property test above would catch such a procedure."""
    assert _violation_rate("naive", 0.8, 0.7, 0.0, 3, 40) > 0.3
    assert _violation_rate("joint", 0.8, 0.7, 0.0, 3, 40) <= DELTA + 0.15


# --------------------------------------------------------------------------------------------
# Policies: the method is recorded, round-trips and routes


def test_a_joint_policy_round_trips_states_its_guarantee_and_routes(tmp_path: Path) -> None:
    scores, correct = _two_judges()
    result = calibrate_cascade(["cheap", "strong"], scores, correct, 0.85, DELTA, method="joint")
    policy = Policy.from_cascade(result)
    assert policy.cascade_method == "joint"
    save_policy(policy, tmp_path / "p.yaml")
    loaded = load_policy(tmp_path / "p.yaml")
    assert loaded == policy.model_copy(update={"content_hash": policy_hash(policy)})
    lines = (tmp_path / "p.yaml").read_text().splitlines()
    header = " ".join(line.removeprefix("# ") for line in lines if line.startswith("#"))
    assert "one test of the cascade as a whole at delta 0.1" in header
    assert loaded.guarantee == result.guarantee

    drafts = [
        RouteInput(str(i), None, None, verdicts=(StageVerdict("cheap", "1", sc[0]),
                                                 StageVerdict("strong", "2", sc[1])))
        for i, sc in enumerate(scores)
    ]  # fmt: skip
    t = [s.threshold for s in result.stages]
    routes = route(drafts, loaded)
    for r, sc in zip(routes, scores, strict=True):
        stage = accepts(t, sc)
        assert r.decision == ("review" if stage is None else "accept")
        assert r.critic == (None if stage is None else ["cheap", "strong"][stage])
    asked_strong = sum("strong" in r.critics_asked for r in routes) / len(routes)
    assert asked_strong == result.requests_per_item["strong"]


def test_a_paths_policy_records_the_family_and_the_path_round_trips_and_routes(
    tmp_path: Path,
) -> None:
    scores, correct = _hold_wins()
    result = calibrate_cascade(["cheap", "strong"], scores, correct, 0.9, DELTA, method="paths")
    policy = Policy.from_cascade(result)
    assert policy.cascade_method == "paths"
    assert policy.cascade_paths == result.paths
    save_policy(policy, tmp_path / "p.yaml")
    text = (tmp_path / "p.yaml").read_text()
    data = yaml.safe_load(text)
    assert data["cascade_paths"] == {"family": ["hold 0.99", "last alone"], "chosen": "hold 0.99"}
    assert [s["threshold"] for s in data["stages"]] == [0.99, 0.505]
    loaded = load_policy(tmp_path / "p.yaml")
    assert loaded == policy.model_copy(update={"content_hash": policy_hash(policy)})
    assert loaded.guarantee == result.guarantee
    header = " ".join(line.removeprefix("# ") for line in text.splitlines()
                      if line.startswith("#"))  # fmt: skip
    assert (
        "tested along 2 paths fixed in advance (hold 0.99, last alone), each at delta "
        "0.05" in header
    )

    drafts = [
        RouteInput(str(i), None, None, verdicts=(StageVerdict("cheap", "1", sc[0]),
                                                 StageVerdict("strong", "2", sc[1])))
        for i, sc in enumerate(scores)
    ]  # fmt: skip
    routes = route(drafts, loaded)
    critics = [r.critic for r in routes]
    assert critics == ["cheap"] * 300 + ["strong"] * 200 + [None] * 100
    asked_strong = sum("strong" in r.critics_asked for r in routes) / len(routes)
    assert asked_strong == result.requests_per_item["strong"] == 0.5


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        ({"cascade_paths": None}, "cascade_paths: recorded exactly when cascade_method is"),
        ({"cascade_method": "joint"}, "cascade_paths: recorded exactly when cascade_method is"),
        ({"cascade_paths": {"family": ["equal"], "chosen": "hold 0.99"}},
         "cascade_paths: chosen: 'hold 0.99' is not one of the family"),
        ({"cascade_paths": {"family": [], "chosen": None}}, "cascade_paths.family"),
    ],
)  # fmt: skip
def test_a_paths_policy_that_misstates_its_paths_is_refused(
    tmp_path: Path, edit: dict[str, object], message: str
) -> None:
    scores, correct = _hold_wins()
    result = calibrate_cascade(["cheap", "strong"], scores, correct, 0.9, DELTA, method="paths")
    data = {**Policy.from_cascade(result).model_dump(mode="json"), **edit}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(CriticError, match=message) as caught:
        load_policy(tmp_path / "p.yaml")
    assert str(tmp_path / "p.yaml") in str(caught.value)


def test_a_cascade_policy_written_before_joint_existed_loads_as_stagewise(tmp_path: Path) -> None:
    scores, correct = _two_judges()
    result = calibrate_cascade(["cheap", "strong"], scores, correct, 0.85, DELTA,
                               method="stagewise")  # fmt: skip
    old = Policy.from_cascade(result).model_dump(mode="json")
    del old["cascade_method"]
    for stage in old["stages"]:
        del stage["accepted"], stage["agree"]
    (tmp_path / "old.yaml").write_text(yaml.safe_dump(old))
    policy = load_policy(tmp_path / "old.yaml")
    assert policy.cascade_method is None and policy.stages is not None
    assert [s.accepted for s in policy.stages] == [s.accepted for s in result.stages]
    assert policy.guarantee == result.guarantee  # read as stagewise, as it was calibrated


def test_a_one_critic_policy_cannot_name_a_cascade_method(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("threshold: null\ntarget_agreement: 0.8\ndelta: 0.1\ncascade_method: joint\n")
    with pytest.raises(Exception, match="cascade_method: only a cascade policy"):
        load_policy(path)


# --------------------------------------------------------------------------------------------
# The CLI


def _panel_file(tmp_path: Path) -> Path:
    scores, correct = _two_judges()
    rows = []
    for i, (sc, ok) in enumerate(zip(scores, correct, strict=True)):
        critics = [{"model": m, "label": "1" if ok[s] else "2", "confidence": sc[s]}
                   for s, m in enumerate(["cheap", "strong"])]  # fmt: skip
        rows.append({"id": f"i{i}", "human_label": "1", "critics": critics})
    path = tmp_path / "panel.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_calibrate_cascade_method_joint_writes_a_policy_route_follows(tmp_path: Path) -> None:
    panel, policy = _panel_file(tmp_path), tmp_path / "joint.yaml"
    result = runner.invoke(app, ["calibrate", "--from-file", str(panel), "--cascade",
                                 "cheap,strong", "--cascade-method", "joint",
                                 "--target-agreement", "0.85", "-o", str(policy),
                                 "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["method"] == "joint" and summary["lower_bound"] >= 0.85
    assert len({s["threshold"] for s in summary["stages"]}) == 1
    assert [f["more"] for f in summary["forecast"]] == [0, 250, 500]
    assert load_policy(policy).cascade_method == "joint"
    routed = runner.invoke(app, ["route", "--from-file", str(panel), "--policy", str(policy),
                                 "--json"])  # fmt: skip
    assert routed.exit_code == 0, routed.output
    routing = json.loads(routed.stdout)
    assert routing["accepted"] == summary["n_accepted"]
    assert routing["requests_per_item"] == summary["requests_per_item"]

    text = runner.invoke(app, ["calibrate", "--from-file", str(panel), "--cascade",
                               "cheap,strong", "--cascade-method", "joint",
                               "--target-agreement", "0.85", "-o", str(policy)])  # fmt: skip
    assert "critic calibrate --cascade (joint)" in text.stdout
    assert "with 250 more calibration labels: about" in text.stdout
    bad = runner.invoke(app, ["calibrate", "--from-file", str(panel), "--cascade",
                              "cheap,strong", "--cascade-method", "both",
                              "-o", str(policy)])  # fmt: skip
    assert bad.exit_code != 0 and "--cascade-method must be one of" in bad.stderr


def test_calibrate_cascade_method_paths_writes_the_path_route_follows(tmp_path: Path) -> None:
    scores, correct = _hold_wins()
    rows = []
    for i, (sc, ok) in enumerate(zip(scores, correct, strict=True)):
        critics = [{"model": m, "label": "1" if ok[s] else "2", "confidence": sc[s]}
                   for s, m in enumerate(["cheap", "strong"])]  # fmt: skip
        rows.append({"id": f"i{i}", "human_label": "1", "critics": critics})
    panel, policy = tmp_path / "panel.jsonl", tmp_path / "paths.yaml"
    panel.write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ["calibrate", "--from-file", str(panel), "--cascade", "cheap,strong",
            "--cascade-method", "paths", "--target-agreement", "0.9",
            "-o", str(policy)]  # fmt: skip
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["method"] == "paths" and summary["n_accepted"] == 500
    assert summary["paths"] == {"family": ["hold 0.99", "last alone"], "chosen": "hold 0.99"}
    assert [s["threshold"] for s in summary["stages"]] == [0.99, 0.505]
    assert (
        load_policy(policy).cascade_paths
        == CascadeResult.model_validate(
            {k: summary[k] for k in CascadeResult.model_fields if k in summary}
        ).paths
    )
    routed = runner.invoke(app, ["route", "--from-file", str(panel), "--policy", str(policy),
                                 "--json"])  # fmt: skip
    assert routed.exit_code == 0, routed.output
    routing = json.loads(routed.stdout)
    assert routing["accepted"] == 500
    assert routing["requests_per_item"] == {"cheap": 1.0, "strong": 0.5}
    text = runner.invoke(app, args)
    assert "critic calibrate --cascade (paths)" in text.stdout
    assert "chosen on path 'hold 0.99'" in " ".join(text.stdout.split())
    # paths is the default of calibrate --cascade: the same policy without the option.
    default = tmp_path / "default.yaml"
    bare = [a for a in args if a not in ("--cascade-method", "paths")]
    assert runner.invoke(app, [*bare[:-1], str(default)]).exit_code == 0
    assert load_policy(default).cascade_method == "paths"
    assert load_policy(default).stages == load_policy(policy).stages


def test_forecast_cascade_grows_with_more_labels() -> None:
    scores, correct = _two_judges()
    few = list(range(0, 600, 12))  # 50 labels: too few for the strong judge's items to pass
    got = forecast_cascade(["cheap", "strong"], [scores[i] for i in few],
                           [correct[i] for i in few], 0.85, DELTA, method="joint",
                           draws=20)  # fmt: skip
    assert [f.labels for f in got] == [50, 300, 550]
    assert got[0].coverage < got[1].coverage <= got[2].coverage + 0.05


def test_cascade_result_from_stages_matches_the_calibration() -> None:
    scores, correct = _two_judges()
    for method in ("paths", "joint", "stagewise"):
        result = calibrate_cascade(["cheap", "strong"], scores, correct, 0.85, DELTA,
                                   method=method)  # type: ignore[arg-type]  # fmt: skip
        again = CascadeResult.from_stages(result.stages, 0.85, DELTA, result.method,
                                          result.paths)  # fmt: skip
        assert again.guarantee == result.guarantee
        assert (again.n_accepted, again.n_agree, again.requests_per_item) == (
            result.n_accepted, result.n_agree, result.requests_per_item,
        )  # fmt: skip


def test_plot_of_a_paths_calibration_draws_the_chosen_path(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from critic.plots import plot_cascade

    scores, correct = _hold_wins()
    result = calibrate_cascade(["cheap", "strong"], scores, correct, 0.9, DELTA, method="paths")
    plot_cascade(scores, correct, result, tmp_path / "paths.png")
    assert (tmp_path / "paths.png").read_bytes()[:4] == b"\x89PNG"


def test_the_plot_marks_a_last_alone_policy_with_its_stage_at_none() -> None:
    from critic.plots import chosen_mark

    scores = [[1.0, 0.0]] * 40 + [[0.0, 0.9]] * 400
    correct = [[False, True]] * 40 + [[True, True]] * 400
    default = calibrate_cascade(["cheap", "strong"], scores, correct, 0.8, DELTA)
    assert default.paths is not None and default.paths.chosen == "last alone"
    assert chosen_mark(default) == "stages at none, 0"
    nothing = calibrate_cascade(["cheap", "strong"], scores, correct, 0.8, DELTA, method="joint")
    assert chosen_mark(nothing) is None
