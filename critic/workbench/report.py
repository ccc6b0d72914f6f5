"""`constitution stats --html`: a static page (a jinja2 template, autoescaped) with PNG plots."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2

from critic.errors import (
    CriticError,
    MissingExtraError,
)
from critic.workbench.common import pct
from critic.workbench.stats import StatsReport

TEMPLATES = Path(__file__).parent / "templates"


def render_stats_html(report: StatsReport, plots: Sequence[str] = ()) -> str:
    """A static page: every value escaped (item text and notes are untrusted), no scripts."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    env.filters["pct"] = pct
    return env.get_template("stats.html.j2").render(report=report, plots=list(plots))


def write_stats_html(report: StatsReport, directory: str | Path) -> Path:
    """Write `index.html` and its PNG plots into `directory`; return the page's path."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingExtraError("--html", "matplotlib", "pip install 'critic[plot]'") from None
    out = Path(directory)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CriticError(f"{out}: cannot create the report directory: {exc.strerror}") from None
    shown = [p for p in report.principles if p.decisions]
    names = [f"{p.constitution} {p.version}:{p.principle}" if p.constitution else p.principle
             for p in shown]  # fmt: skip
    plots: list[str] = []
    if shown:
        height = 1.2 + 0.35 * len(shown)
        fig = Figure(figsize=(8, height), layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.subplots()
        rates = [p.override_rate or 0.0 for p in shown]
        errors = [[r - p.interval[0] for r, p in zip(rates, shown, strict=True)],
                  [p.interval[1] - r for r, p in zip(rates, shown, strict=True)]]  # fmt: skip
        ax.barh(range(len(shown)), rates, xerr=errors, color="C3", capsize=3)
        ax.set_yticks(range(len(shown)), names)
        ax.invert_yaxis()
        ax.set(xlim=(0, 1), xlabel=f"override rate ({report.confidence:.0%} interval)",
               title="How often humans overturn the critic")  # fmt: skip
        _save(fig, out / "override_rate.png")
        plots.append("override_rate.png")

        fig = Figure(figsize=(8, height), layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.subplots()
        left = [0.0] * len(shown)
        for i, action in enumerate(("accept", "edit", "reject")):
            counts = [float(p.actions.get(action, 0)) for p in shown]
            ax.barh(range(len(shown)), counts, left=left, label=action, color=f"C{i}")
            left = [a + b for a, b in zip(left, counts, strict=True)]
        esc = [float(p.escalations) for p in shown]
        ax.barh(range(len(shown)), esc, left=left, label="escalate", color="C7")
        ax.set_yticks(range(len(shown)), names)
        ax.invert_yaxis()
        ax.set(xlabel="review decisions", title="Decisions per principle")
        ax.legend(loc="lower right", fontsize=8)
        _save(fig, out / "actions.png")
        plots.append("actions.png")
    page = out / "index.html"
    page.write_text(render_stats_html(report, plots), encoding="utf-8")
    return page


def _save(fig: Any, path: Path) -> None:
    try:
        fig.savefig(path, dpi=110)
    except OSError as exc:
        raise CriticError(f"{path}: cannot write the plot: {exc.strerror}") from None
