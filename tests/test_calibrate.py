"""Exact binomial bounds, threshold calibration, judgment files, quality estimates, the plot."""

from __future__ import annotations

import json
import math
import random
import sys
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from critic.calibrate import (
    CalibrationResult,
    betainc,
    binomial_lower_bound,
    binomial_sf,
    binomial_upper_bound,
    calibrate,
    clopper_pearson,
    estimate_accepted_quality,
    load_judgments,
    min_labels_to_pass,
    threshold_grid,
    threshold_table,
)
from critic.errors import CriticError, InputError, UsageError

# --------------------------------------------------------------------------------------------
# Exact binomial tails and Clopper–Pearson bounds


@pytest.mark.parametrize(
    ("k", "n", "alpha", "lo", "hi"),
    [
        # Reference values from R's binom.test(k, n)$conf.int.
        (0, 10, 0.05, 0.0, 0.3084971),
        (1, 10, 0.05, 0.002528579, 0.4450161),
        (5, 10, 0.05, 0.1870860, 0.8129140),
        (9, 10, 0.05, 0.5549839, 0.9974714),
        (10, 10, 0.05, 0.6915029, 1.0),
        (50, 100, 0.05, 0.3983211, 0.6016789),
        (0, 0, 0.05, 0.0, 1.0),
    ],
)
def test_clopper_pearson_matches_reference_values(
    k: int, n: int, alpha: float, lo: float, hi: float
) -> None:
    got_lo, got_hi = clopper_pearson(k, n, alpha)
    assert got_lo == pytest.approx(lo, abs=1e-6)
    assert got_hi == pytest.approx(hi, abs=1e-6)


def _exact_sf(k: int, n: int, p: Fraction) -> Fraction:
    return sum(
        (Fraction(math.comb(n, i)) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1)),
        Fraction(0),
    )


@pytest.mark.parametrize("n", [1, 2, 7, 30, 120])
def test_binomial_tail_matches_the_exact_sum(n: int) -> None:
    for p in (Fraction(1, 100), Fraction(3, 10), Fraction(1, 2), Fraction(9, 10)):
        for k in range(0, n + 2):
            assert binomial_sf(k, n, float(p)) == pytest.approx(
                float(_exact_sf(k, n, p)), rel=1e-9, abs=1e-13
            )


def test_betainc_symmetry_and_known_value() -> None:
    assert betainc(2.0, 3.0, 0.4) == pytest.approx(0.5248, abs=1e-12)
    for a, b, x in [(0.5, 0.5, 0.3), (3.0, 40.0, 0.05), (300.0, 20.0, 0.93)]:
        assert betainc(a, b, x) + betainc(b, a, 1 - x) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize(("k", "n"), [(1, 10), (19, 20), (880, 1000), (99_000, 100_000)])
def test_one_sided_bounds_solve_the_tail_equation(k: int, n: int) -> None:
    lo = binomial_lower_bound(k, n, 0.1)
    assert binomial_sf(k, n, lo) == pytest.approx(0.1, abs=1e-9)
    hi = binomial_upper_bound(k, n, 0.1)
    assert 1 - binomial_sf(k + 1, n, hi) == pytest.approx(0.1, abs=1e-9)
    assert lo < k / n < hi


@pytest.mark.parametrize(
    ("target", "delta", "n"), [(0.9, 0.1, 22), (0.9, 0.05, 29), (0.95, 0.05, 59), (0.5, 0.5, 1)]
)
def test_min_labels_to_pass(target: float, delta: float, n: int) -> None:
    assert min_labels_to_pass(target, delta) == n
    assert target**n <= delta < target ** (n - 1)


# --------------------------------------------------------------------------------------------
# Calibration


def test_threshold_table_groups_ties_highest_first() -> None:
    rows = threshold_table([0.5, 0.9, 0.5, 0.7, 0.9], [True, True, False, False, False])
    assert [(r.threshold, r.n_accepted, r.n_agree) for r in rows] == [
        (0.9, 2, 1),
        (0.7, 3, 1),
        (0.5, 5, 2),
    ]


def test_all_agreeing_accepts_everything() -> None:
    scores = [i / 100 for i in range(100)]
    result = calibrate(scores, [True] * 100, 0.9, 0.1)
    assert result.threshold == 0.0
    assert result.coverage == 1.0
    assert result.agreement == 1.0
    assert result.lower_bound == pytest.approx(0.1 ** (1 / 100))
    assert result.needed_more is None
    assert "With probability ≥ 90%" in result.guarantee
    assert "at least 90%" in result.guarantee


def test_sequence_stops_at_the_first_failure() -> None:
    # 30 agreeing at the top, 20 disagreeing, then 1000 agreeing: the whole set would pass on
    # its own (1030 of 1050), but fixed-sequence testing must stop where the test first fails.
    # The lowest grid threshold above the disagreeing items is 0.805: it accepts the same 30.
    scores = [0.9] * 30 + [0.8] * 20 + [0.5] * 1000
    correct = [True] * 30 + [False] * 20 + [True] * 1000
    result = calibrate(scores, correct, 0.9, 0.1)
    assert result.threshold == 0.805
    assert (result.n_accepted, result.n_agree) == (30, 30)
    assert result.coverage == pytest.approx(30 / 1050)


def test_thresholds_come_from_a_fixed_grid() -> None:
    assert threshold_grid()[:3] == [1.0, 0.995, 0.99]
    assert threshold_grid()[-1] == 0.0 and len(threshold_grid()) == 201
    result = calibrate([0.7234] * 40 + [0.3] * 40, [True] * 40 + [False] * 40, 0.9, 0.1)
    assert result.threshold == 0.305


def test_a_threshold_is_tested_only_once_enough_items_are_above_it() -> None:
    # The 29 most confident items include 6 errors; alone they would fail and end the sequence.
    # With at least 30 above, the first test is at 0.9 (230 items, 224 agreeing), which passes.
    scores = [0.99] * 29 + [0.9] * 201 + [0.2] * 100
    correct = [True] * 23 + [False] * 6 + [True] * 201 + [False] * 100
    result = calibrate(scores, correct, 0.9, 0.1)
    assert result.threshold == 0.205
    assert result.n_accepted == 230


def test_too_few_labels_says_how_many_more() -> None:
    result = calibrate([0.9] * 10, [True] * 10, 0.9, 0.1)
    assert result.threshold is None
    assert result.n_accepted == 0 and result.coverage == 0.0
    assert result.min_labels == 22 and result.min_accepted == 30
    assert result.needed_more == 20
    assert "20 more" in result.guarantee


def test_needed_more_is_enough_when_new_labels_look_alike() -> None:
    scores, correct = [0.5] * 100, [True] * 93 + [False] * 7
    result = calibrate(scores, correct, 0.9, 0.1)
    assert result.threshold is None
    assert result.needed_more is not None and result.needed_more > 0
    total = 100 + result.needed_more
    agree = math.floor(0.93 * total)
    bigger = calibrate([0.5] * total, [True] * agree + [False] * (total - agree), 0.9, 0.1)
    assert bigger.threshold is not None and bigger.n_accepted == total


def test_needed_more_uses_the_best_confidence_bucket() -> None:
    # The top half agrees 96%, the bottom half 60%: more labels help only through the top half.
    top = [True] * 48 + [False] * 2
    bottom = [True] * 30 + [False] * 20
    correct = [False, *top[1:], *bottom]  # 47 of 50 in the top bucket: not enough yet
    scores = [0.9] * 50 + [0.4] * 50
    result = calibrate(scores, correct, 0.9, 0.1)
    assert result.threshold is None
    assert result.needed_more is not None
    assert 0 < result.needed_more < 2000


def test_agreement_below_target_everywhere_says_labels_will_not_help() -> None:
    result = calibrate([0.2, 0.8] * 50, [True, False] * 50, 0.9, 0.1)
    assert result.threshold is None
    assert result.needed_more is None
    assert "more labels will not help" in result.guarantee


@pytest.mark.parametrize(
    ("scores", "correct", "target", "delta", "error"),
    [
        ([0.5], [True], 1.5, 0.1, UsageError),
        ([0.5], [True], 0.9, 0.0, UsageError),
        ([0.5, 0.6], [True], 0.9, 0.1, CriticError),
        ([1.5], [True], 0.9, 0.1, CriticError),
        ([math.nan], [True], 0.9, 0.1, CriticError),
    ],
)
def test_calibrate_rejects_bad_input(
    scores: list[float], correct: list[bool], target: float, delta: float, error: type
) -> None:
    with pytest.raises(error):
        calibrate(scores, correct, target, delta)


def test_result_round_trips_through_json() -> None:
    result = calibrate([i / 50 for i in range(50)], [True] * 50, 0.9, 0.1)
    assert CalibrationResult.model_validate_json(result.model_dump_json()) == result


def _true_agreement(threshold: float, floor: float, gamma: float, grid: int | None) -> float:
    """P(correct | score >= threshold) when P(correct | s) = floor + (1 - floor) s^gamma and
    the score is uniform on [0, 1], or rounded to a grid of `grid` steps."""
    if grid is None:
        t = threshold
        if t >= 1.0:
            return 1.0
        mean_pow = (1 - t ** (gamma + 1)) / ((gamma + 1) * (1 - t))
        return floor + (1 - floor) * mean_pow
    weights = [(0.5 if j in (0, grid) else 1.0) / grid for j in range(grid + 1)]
    points = [(j / grid, w) for j, w in enumerate(weights) if j / grid >= threshold]
    mass = sum(w for _, w in points)
    return sum(w * (floor + (1 - floor) * s**gamma) for s, w in points) / mass


def _draw(rng: random.Random, n: int, floor: float, gamma: float, grid: int | None) -> tuple:
    scores, correct = [], []
    for _ in range(n):
        s = rng.random()
        if grid is not None:
            s = round(s * grid) / grid
        scores.append(s)
        correct.append(rng.random() < floor + (1 - floor) * s**gamma)
    return scores, correct


def _violation_rate(
    pick: object,
    target: float,
    delta: float,
    floor: float,
    gamma: float,
    grid: int | None,
    seed: int,
    trials: int,
    n: int,
) -> float:
    rng = random.Random(seed)
    violations = 0
    for _ in range(trials):
        scores, correct = _draw(rng, n, floor, gamma, grid)
        threshold = pick(scores, correct, target, delta)  # type: ignore[operator]
        if threshold is not None and _true_agreement(threshold, floor, gamma, grid) < target:
            violations += 1
    return violations / trials


def _calibrated(
    scores: list[float], correct: list[bool], target: float, delta: float
) -> float | None:
    return calibrate(scores, correct, target, delta).threshold


@settings(max_examples=8, deadline=None, derandomize=True)
@given(
    target=st.sampled_from([0.75, 0.8, 0.85, 0.9]),
    delta=st.sampled_from([0.05, 0.1, 0.2]),
    floor=st.floats(0.2, 0.8),
    gamma=st.floats(0.5, 3.0),
    grid=st.sampled_from([None, 20]),
    seed=st.integers(0, 2**32 - 1),
)
def test_guarantee_holds_in_repeated_trials(
    target: float, delta: float, floor: float, gamma: float, grid: int | None, seed: int
) -> None:
    """Calibrate on fresh synthetic data many times; the chosen threshold's true agreement (known
    in closed form, as on an infinite fresh sample) falls below target in at most a delta share
    of trials, up to three standard errors of the trial count."""
    trials = 150
    rate = _violation_rate(_calibrated, target, delta, floor, gamma, grid, seed, trials, 300)
    assert rate <= delta + 3 * math.sqrt(delta * (1 - delta) / trials)


def test_the_trial_harness_catches_a_threshold_without_a_guarantee() -> None:
    """Choosing the lowest threshold whose observed agreement meets the target violates the
    target about half the time: the property test above would catch such a procedure."""

    def naive(
        scores: list[float], correct: list[bool], target: float, delta: float
    ) -> float | None:
        rows = [r for r in threshold_table(scores, correct) if r.n_accepted >= 20]
        passing = [r for r in rows if r.agreement >= target]
        return passing[-1].threshold if passing else None

    assert _violation_rate(naive, 0.85, 0.1, 0.5, 1.0, None, 7, 100, 300) > 0.3
    assert _violation_rate(_calibrated, 0.85, 0.1, 0.5, 1.0, None, 7, 100, 300) <= 0.1 + 0.09


# --------------------------------------------------------------------------------------------
# Judgment files


def _write(tmp_path: Path, *rows: object) -> Path:
    path = tmp_path / "judged.jsonl"
    path.write_text(
        "\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n",
        encoding="utf-8",
    )
    return path


def test_load_judgments_reads_confidence_and_probs(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        {"id": "a", "label": "safe", "confidence": 0.9, "human_label": "safe"},
        "",
        {"id": 7, "label": 1, "probs": {"0": 0.1, "1": 0.7, "2": 0.2}, "human_label": 2},
        {"id": "c", "label": "x", "confidence": 1, "human_label": "x", "note": "ignored"},
    )
    judged = load_judgments(path)
    assert [(j.id, j.label, j.confidence, j.human_label) for j in judged] == [
        ("a", "safe", 0.9, "safe"),
        ("7", "1", 0.7, "2"),
        ("c", "x", 1.0, "x"),
    ]
    assert [j.correct for j in judged] == [True, False, True]


def test_predictions_need_no_human_label(tmp_path: Path) -> None:
    path = _write(tmp_path, {"id": "a", "label": "safe", "confidence": 0.4})
    assert load_judgments(path, require_human_label=False)[0].human_label is None


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("{not json", "invalid JSON"),
        ({"id": "b", "label": "x", "human_label": "x"}, "'confidence'"),
        ({"id": "b", "label": "x", "confidence": 1.2, "human_label": "x"}, "confidence"),
        ({"id": "b", "label": "x", "confidence": 0.5}, "no 'human_label'"),
        ({"id": "b", "label": "x", "probs": {"y": 1.0}, "human_label": "x"}, "not a key"),
        ({"id": "b", "label": "x", "probs": {"x": 0.8, "y": 0.8}, "human_label": "x"}, "sum"),
        (
            {"id": "b", "label": "x", "confidence": 0.5, "probs": {"x": 0.5}, "human_label": "x"},
            "not both",
        ),
        (
            {"id": "a", "label": "x", "confidence": 0.5, "human_label": "x"},
            "already used on line 1",
        ),
        ([1, 2], "JSON object"),
    ],
)
def test_load_judgments_errors_name_file_and_line(
    tmp_path: Path, row: object, message: str
) -> None:
    path = _write(tmp_path, {"id": "a", "label": "x", "confidence": 0.5, "human_label": "x"}, row)
    with pytest.raises(InputError) as info:
        load_judgments(path)
    assert str(info.value).startswith(f"{path}:2: ")
    assert message in str(info.value)


def test_load_judgments_missing_or_empty_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        load_judgments(tmp_path / "absent.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(InputError, match="no rows"):
        load_judgments(tmp_path / "empty.jsonl")


# --------------------------------------------------------------------------------------------
# Estimating what shipped


def test_estimate_accepted_quality_from_audit() -> None:
    estimate = estimate_accepted_quality([True] * 45 + [False] * 5, confidence=0.95)
    assert estimate.agreement == 0.9
    assert (estimate.lower, estimate.upper) == clopper_pearson(45, 50, 0.05)
    assert "90.0%" in estimate.summary and "45 of 50" in estimate.summary


def test_estimate_accepted_quality_without_audits() -> None:
    estimate = estimate_accepted_quality([])
    assert estimate.agreement is None
    assert (estimate.lower, estimate.upper) == (0.0, 1.0)
    assert "--audit-rate" in estimate.summary


# --------------------------------------------------------------------------------------------
# The plot


def test_plot_calibration_writes_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from critic.plots import plot_calibration

    rng = random.Random(0)
    scores, correct = _draw(rng, 500, 0.4, 1.5, None)
    result = calibrate(scores, correct, 0.85, 0.1)
    path = tmp_path / "calib.png"
    plot_calibration(scores, correct, result, path)
    assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_plot_without_matplotlib_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from critic.errors import MissingExtraError
    from critic.plots import plot_calibration

    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)
    result = calibrate([0.5] * 30, [True] * 30, 0.9, 0.1)
    with pytest.raises(MissingExtraError) as info:
        plot_calibration([0.5] * 30, [True] * 30, result, tmp_path / "calib.png")
    assert info.value.hint == "pip install 'critic[plot]'"


# --------------------------------------------------------------------------------------------
# Planning: the coverage more labels would buy


def test_forecast_coverage_bootstraps_n_plus_more_items() -> None:
    from critic.calibrate import Forecast, forecast_coverage

    sizes: list[int] = []

    def coverage_of(picks: list[int]) -> float:
        sizes.append(len(picks))
        assert all(0 <= i < 10 for i in picks)
        return len(set(picks)) / 10  # distinct items drawn: grows with the sample

    got = forecast_coverage(10, coverage_of, (5, 90), draws=30, seed=4)  # type: ignore[arg-type]
    assert [(f.more, f.labels) for f in got] == [(0, 10), (5, 15), (90, 100)]
    assert sizes == [10] * 30 + [15] * 30 + [100] * 30
    assert got[0].coverage < got[1].coverage < got[2].coverage == pytest.approx(1.0, abs=0.01)
    assert got[0].coverage == pytest.approx(1 - 0.9**10, abs=0.06)  # the bootstrap's mean
    assert forecast_coverage(10, coverage_of, (5, 90), draws=30, seed=4) == got  # type: ignore[arg-type]
    assert forecast_coverage(0, coverage_of, (5,)) == [Forecast(0, 0, 0.0), Forecast(5, 5, 0.0)]  # type: ignore[arg-type]


def test_forecast_calibration_expects_more_coverage_from_more_labels() -> None:
    """A critic right 96% of the time at confidence 0.9 and 60% at 0.5: 60 labels cannot show
    0.9 agreement on a set of any size worth having, a few hundred can."""
    from critic.calibrate import forecast_calibration

    rng = random.Random(8)
    scores = [0.9 if i % 2 else 0.5 for i in range(60)]
    correct = [rng.random() < (0.96 if s == 0.9 else 0.6) for s in scores]
    got = forecast_calibration(scores, correct, 0.9, 0.1, (250,), draws=40)
    assert got[0].labels == 60 and got[1].labels == 310
    assert got[1].coverage > got[0].coverage + 0.15
    assert got[1].coverage <= 0.5 + 0.05  # never more than the confident half


def test_calibrate_cli_prints_the_forecast(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from critic.cli import app

    rng = random.Random(3)
    rows = [{"id": i, "label": "x", "confidence": c, "human_label": "x" if ok else "y"}
            for i in range(200)
            for c in [rng.choice([0.6, 0.95])]
            for ok in [rng.random() < (0.97 if c == 0.95 else 0.6)]]  # fmt: skip
    path = tmp_path / "j.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    runner = CliRunner()
    args = ["calibrate", "--from-file", str(path), "-o", str(tmp_path / "p.yaml")]
    shown = runner.invoke(app, args)
    assert "with 250 more calibration labels: about 0." in shown.stdout
    assert "with 500 more calibration labels: about 0." in shown.stdout
    summary = json.loads(runner.invoke(app, [*args, "--json"]).stdout)
    assert [(f["more"], f["labels"]) for f in summary["forecast"]] == [
        (0, 200), (250, 450), (500, 700),
    ]  # fmt: skip
    assert all(0.0 <= f["coverage"] <= 1.0 for f in summary["forecast"])
