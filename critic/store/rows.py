"""The values the run store reads and writes: runs, item outcomes, and their verdicts."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any


def now() -> str:
    """UTC now as ISO 8601 text (sortable, portable across SQLite and PostgreSQL)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


@dataclass(frozen=True)
class RunInfo:
    """One labeling run: everything that decides its outputs."""

    id: str
    key: str
    task: str
    constitution_hash: str
    template_hash: str
    backend: str
    model: str
    params: dict[str, Any]
    input: str
    created_at: str


@dataclass(frozen=True)
class Outcome:
    """What one item came to, written atomically with its generations."""

    item_id: str
    status: str  # drafted | failed
    reason: str | None = None
    detail: str | None = None
    draft: dict[str, Any] | None = None
    label: str | None = None
    score: float | None = None
    rationale: str | None = None
    confidence: float | None = None
    components: dict[str, Any] | None = None
    parse_attempts: int = 0
    generations: tuple[dict[str, Any], ...] = ()


def verdict(label: str | None, score: float | None) -> str | None:
    """A draft's verdict as one comparable text: its label, else its rubric score (`4`)."""
    if label is not None:
        return str(label)
    return None if score is None else str(int(score))


def run_info(row: Any) -> RunInfo:
    return RunInfo(
        id=row["id"],
        key=row["key"],
        task=row["task"],
        constitution_hash=row["constitution_hash"],
        template_hash=row["template_hash"],
        backend=row["backend"],
        model=row["model"],
        params=json.loads(row["params"]),
        input=row["input"],
        created_at=row["created_at"],
    )
