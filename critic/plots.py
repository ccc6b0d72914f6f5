"""Calibration plots. matplotlib is imported only when a plot is drawn (the `plot` extra)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from critic.calibrate import CalibrationResult, binomial_lower_bound, grid_table, threshold_table
from critic.cascade import EQUAL, PATHS, CascadeResult, path_table
from critic.errors import CriticError, MissingExtraError


def plot_calibration(
    scores: Sequence[float],
    correct: Sequence[bool],
    result: CalibrationResult,
    path: str | Path,
    *,
    bins: int = 10,
) -> None:
    """Write a PNG: a reliability diagram and the coverage-versus-agreement curve.

    Left: calibration items binned by confidence; mean confidence against the share agreeing
    with humans, with the item count per bin. Right: for every threshold, the share of items
    accepted against their agreement and its one-sided lower bound, with the target and the
    chosen threshold marked.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingExtraError("--plot", "matplotlib", "pip install 'critic[plot]'") from None
    if len(scores) != len(correct) or not scores:
        raise CriticError("plot_calibration needs one correctness flag per score, and some scores")

    # A Figure with its own Agg canvas, not pyplot: no global state, no display needed.
    fig = Figure(figsize=(11, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    reliability, curve = fig.subplots(1, 2)

    sums = [0.0] * bins
    agree = [0] * bins
    counts = [0] * bins
    for s, ok in zip(scores, correct, strict=True):
        b = min(bins - 1, max(0, int(s * bins)))
        sums[b] += s
        agree[b] += int(ok)
        counts[b] += 1
    filled = [b for b in range(bins) if counts[b]]
    xs = [sums[b] / counts[b] for b in filled]
    ys = [agree[b] / counts[b] for b in filled]
    reliability.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfectly calibrated")
    reliability.plot(xs, ys, marker="o", label="calibration items")
    for x, y, b in zip(xs, ys, filled, strict=True):
        reliability.annotate(
            str(counts[b]), (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7
        )
    reliability.set(
        xlim=(0, 1),
        ylim=(0, 1.02),
        xlabel="confidence (bin mean)",
        ylabel="agreement with humans",
        title="Reliability (numbers: items per bin)",
    )
    reliability.legend(loc="upper left", fontsize=8)

    rows = threshold_table(scores, correct)
    if len(rows) > 400:  # enough points for a smooth curve; each bound is a root search
        rows = [rows[i * (len(rows) - 1) // 399] for i in range(400)]
    n = len(scores)
    coverage = [r.n_accepted / n for r in rows]
    curve.plot(coverage, [r.agreement for r in rows], label="agreement of accepted")
    curve.plot(
        coverage,
        [binomial_lower_bound(r.n_agree, r.n_accepted, result.delta) for r in rows],
        ls=":",
        label=f"lower bound ({1 - result.delta:.0%} confidence)",
    )
    curve.axhline(result.target_agreement, color="grey", ls="--", lw=1, label="target")
    if result.threshold is not None and result.agreement is not None:
        curve.plot(
            [result.coverage],
            [result.agreement],
            marker="*",
            markersize=12,
            color="C3",
            ls="none",
            label=f"threshold {result.threshold:.3g}",
        )
    curve.set(
        xlim=(0, 1),
        ylim=(0, 1.02),
        xlabel="coverage (share auto-accepted)",
        ylabel="agreement with humans",
        title=f"Coverage vs agreement (n = {n})",
    )
    curve.legend(loc="lower left", fontsize=8)
    try:
        fig.savefig(Path(path), dpi=120)
    except OSError as exc:
        raise CriticError(f"{path}: cannot write the plot: {exc.strerror}") from None


def plot_cascade(
    scores: Sequence[Sequence[float]],
    correct: Sequence[Sequence[bool]],
    result: CascadeResult,
    path: str | Path,
) -> None:
    """Write a PNG with one coverage-versus-agreement panel per cascade stage, on the
    calibration items that reach it, each with its threshold marked; for a joint calibration,
    one panel: the cascade's coverage and agreement along the path the chosen policy is on."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingExtraError("--plot", "matplotlib", "pip install 'critic[plot]'") from None
    if result.method != "stagewise":
        _plot_joint_path(scores, correct, result, path, Figure, FigureCanvasAgg)
        return
    stages = result.stages
    fig = Figure(figsize=(5 * len(stages), 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(stages), squeeze=False)[0]
    reaching = list(range(len(scores)))
    for s, (stage, ax) in enumerate(zip(stages, axes, strict=True)):
        sc = [scores[i][s] for i in reaching]
        ok = [correct[i][s] for i in reaching]
        if sc:
            rows = [r for r in grid_table(sc, ok) if r.n_accepted]
            ax.plot([r.n_accepted / len(sc) for r in rows], [r.agreement for r in rows],
                    label="agreement of accepted")  # fmt: skip
        ax.axhline(result.target_agreement, color="grey", ls="--", lw=1, label="target")
        cal = stage.calibration
        if stage.threshold is not None and cal is not None and cal.agreement is not None:
            ax.plot([cal.coverage], [cal.agreement], marker="*", markersize=12, color="C3",
                    ls="none", label=f"threshold {stage.threshold:.3g}")  # fmt: skip
            reaching = [i for i in reaching if scores[i][s] < stage.threshold]
        ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="coverage of the items reaching this stage",
               ylabel="agreement with humans",
               title=f"stage {s + 1}: {stage.critic} (n = {stage.reached})")  # fmt: skip
        ax.legend(loc="lower left", fontsize=8)
    try:
        fig.savefig(Path(path), dpi=120)
    except OSError as exc:
        raise CriticError(f"{path}: cannot write the plot: {exc.strerror}") from None


def chosen_mark(result: CascadeResult) -> str | None:
    """The legend of the chosen policy's star on a joint plot (None: nothing is accepted). A
    stage at none never accepts, as on the `last alone` path, and is shown as such."""
    if result.stages[-1].threshold is None or result.agreement is None:
        return None
    thresholds = ["none" if s.threshold is None else f"{s.threshold:.3g}" for s in result.stages]
    return f"stages at {', '.join(thresholds)}"


def _plot_joint_path(
    scores: Sequence[Sequence[float]],
    correct: Sequence[Sequence[bool]],
    result: CascadeResult,
    path: str | Path,
    figure: Any,
    canvas: Any,
) -> None:
    fig = figure(figsize=(6, 4.5), layout="constrained")
    canvas(fig)
    ax = fig.subplots(1, 1)
    n = len(scores)
    chosen = result.paths.chosen if result.paths else None
    scanned = next((p for p in PATHS if p.name == chosen), EQUAL)
    rows = [r.total() for r in path_table(scores, correct, scanned)]
    rows = [r for r in rows if r.n_accepted]
    coverage = [r.n_accepted / n for r in rows]
    ax.plot(coverage, [r.agreement for r in rows], label="agreement of accepted")
    ax.plot(coverage, [binomial_lower_bound(r.n_agree, r.n_accepted, result.level) for r in rows],
            ls=":", label=f"lower bound ({1 - result.level:.4g} confidence)")  # fmt: skip
    ax.axhline(result.target_agreement, color="grey", ls="--", lw=1, label="target")
    marked = chosen_mark(result)
    if marked is not None:
        ax.plot([result.coverage], [result.agreement], marker="*", markersize=12, color="C3",
                ls="none", label=marked)  # fmt: skip
    names = " → ".join(s.critic for s in result.stages)
    ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="coverage (share auto-accepted)",
           ylabel="agreement with humans",
           title=f"joint cascade {names}, path {scanned.name} (n = {n})")  # fmt: skip
    ax.legend(loc="lower left", fontsize=8)
    try:
        fig.savefig(Path(path), dpi=120)
    except OSError as exc:
        raise CriticError(f"{path}: cannot write the plot: {exc.strerror}") from None
