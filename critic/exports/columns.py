"""The columns of the record formats (jsonl, parquet, hf): fixed names and types, whatever the
data. A column has the same type in every format; an absent value is a typed null.

The input row is one column, `input`, holding the row as JSON text, so input fields never clash
with critic's columns and the schema does not depend on the dataset: `json.loads(row["input"])`.
"""

from __future__ import annotations

import json
from typing import Any

from critic.ship import FinalRecord

#: The confidence components critic measures (`critic.confidence.ConfidenceComponents`).
COMPONENTS = (
    "label_prob", "sample_share", "n_samples", "order_agreement", "critic_agreement",
    "principle_agreement", "parse_retries",
)  # fmt: skip
#: The parts an input field can play (`critic.items.Fields`).
FIELD_ROLES = ("id", "prompt", "response", "text", "a", "b")


def _types() -> list[tuple[str, Any]]:
    import pyarrow as pa

    text, num, flag, whole = pa.string(), pa.float64(), pa.bool_(), pa.int64()
    order = pa.struct([("principle", text), ("order", text), ("preferred", text), ("prob_a", num)])
    share = pa.struct([("score", text), ("probability", num)])
    return [
        ("id", text), ("run_id", text), ("task", text), ("status", text),
        ("label", text), ("score", num), ("expected_score", num),
        ("score_distribution", pa.list_(share)), ("label_source", text), ("critic_label", text),
        ("human_label", text), ("human_edited", flag),
        ("revision", text), ("critic_revision", text), ("original", text), ("critique", text),
        ("preferred", text), ("preference_probability", num), ("prob_a", num),
        ("order_verdicts", pa.list_(order)),
        ("rationale", text), ("principles", pa.list_(text)), ("confidence", num),
        ("confidence_components", pa.struct([(c, num) for c in COMPONENTS])),
        ("parse_attempts", whole),
        ("route", text), ("route_reason", text), ("policy", text), ("guaranteed", flag),
        ("queue", text), ("reviewers", pa.list_(text)), ("review_agreement", num),
        ("conflict", flag), ("posterior", num), ("majority_disagrees", flag),
        ("failure_reason", text), ("failure_detail", text),
        ("constitution", text), ("constitution_id", text), ("constitution_version", text),
        ("model", text), ("backend", text), ("template", text),
        ("run_created_at", text), ("drafted_at", text), ("updated_at", text),
        ("location", text), ("fields", pa.struct([(r, text) for r in FIELD_ROLES])),
        ("input", text),
    ]  # fmt: skip


def schema() -> Any:
    """The Arrow schema of a record export."""
    import pyarrow as pa

    return pa.schema([pa.field(name, kind) for name, kind in _types()])


def names() -> list[str]:
    return [name for name, _ in _types()]


def record_row(r: FinalRecord) -> dict[str, Any]:
    """One output row of the record formats, every column present, in schema order."""
    components = r.components or {}
    return {
        "id": r.item_id, "run_id": r.run_id, "task": r.task, "status": r.status,
        "label": r.label, "score": r.score, "expected_score": r.expected_score,
        "score_distribution": [
            {"score": k, "probability": v} for k, v in (r.score_distribution or {}).items()
        ],
        "label_source": r.label_source,
        "critic_label": r.critic_label, "human_label": r.human_label,
        "human_edited": r.human_edited, "revision": r.revision,
        "critic_revision": r.critic_revision, "original": r.original, "critique": r.critique,
        "preferred": r.preferred, "preference_probability": r.preference_probability,
        "prob_a": r.prob_a,
        "order_verdicts": [
            {"principle": o.principle, "order": o.order, "preferred": o.preferred,
             "prob_a": None if o.prob_a is None else float(o.prob_a)}
            for o in r.order_verdicts
        ],
        "rationale": r.rationale, "principles": list(r.principles), "confidence": r.confidence,
        "confidence_components": (
            None if r.components is None
            else {c: None if components.get(c) is None else float(components[c])
                  for c in COMPONENTS}
        ),
        "parse_attempts": r.parse_attempts, "route": r.route, "route_reason": r.route_reason,
        "policy": r.policy, "guaranteed": r.guaranteed, "queue": r.queue,
        "reviewers": list(r.reviewers), "review_agreement": r.agreement, "conflict": r.conflict,
        "posterior": r.posterior, "majority_disagrees": r.majority_disagrees,
        "failure_reason": r.failure_reason,
        "failure_detail": r.failure_detail, "constitution": r.constitution,
        "constitution_id": r.constitution_id, "constitution_version": r.constitution_version,
        "model": r.model, "backend": r.backend, "template": r.template,
        "run_created_at": r.run_created_at, "drafted_at": r.drafted_at,
        "updated_at": r.updated_at, "location": r.location,
        "fields": {role: r.fields.get(role) for role in FIELD_ROLES},
        "input": json.dumps(r.input, ensure_ascii=False, sort_keys=False, default=str),
    }  # fmt: skip
