"""The constitution workbench: regression cases, diffs with measured impact, human-decision stats.

Policy writers treat a constitution like code: it has tests (`cases.run_cases` over a
`NAME.cases.yaml` next to it), a diff (`diff.diff_constitutions`, pure), a measured blast radius
before it ships (`impact.impact`: re-label only what a change can affect, reusing the stored drafts
of the old version) and analytics from the review queues (`stats.decision_stats`, with
`report.write_stats_html` for a static page).
"""

from __future__ import annotations

from critic.workbench.cases import (
    Case,
    CaseFile,
    CaseReport,
    CaseResult,
    Expect,
    arun_cases,
    cases_path,
    check_cases,
    load_cases,
    run_cases,
)
from critic.workbench.common import LABEL_KINDS, load_version, pct
from critic.workbench.diff import (
    ConstitutionDiff,
    FieldChange,
    PrincipleChange,
    Segment,
    diff_constitutions,
    render_word_diff,
    word_diff,
)
from critic.workbench.impact import Flip, ImpactReport, aimpact, enqueue_flips, impact
from critic.workbench.report import render_stats_html, write_stats_html
from critic.workbench.stats import (
    PrincipleStats,
    StatsReport,
    decision_stats,
    is_gap_note,
    is_override,
)

__all__ = [
    "LABEL_KINDS",
    "Case",
    "CaseFile",
    "CaseReport",
    "CaseResult",
    "ConstitutionDiff",
    "Expect",
    "FieldChange",
    "Flip",
    "ImpactReport",
    "PrincipleChange",
    "PrincipleStats",
    "Segment",
    "StatsReport",
    "aimpact",
    "arun_cases",
    "cases_path",
    "check_cases",
    "decision_stats",
    "diff_constitutions",
    "enqueue_flips",
    "impact",
    "is_gap_note",
    "is_override",
    "load_cases",
    "load_version",
    "pct",
    "render_stats_html",
    "render_word_diff",
    "run_cases",
    "word_diff",
    "write_stats_html",
]
