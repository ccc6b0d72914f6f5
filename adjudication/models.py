"""The values the queue store takes in and hands out.

`NewTask` is what callers enqueue (validated, unknown keys rejected); everything the store returns
is a frozen dataclass read from the database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Role = Literal["reviewer", "adjudicator", "admin"]
ROLES: tuple[Role, ...] = ("reviewer", "adjudicator", "admin")

Action = Literal["accept", "edit", "reject", "escalate"]
ACTIONS: tuple[Action, ...] = ("accept", "edit", "reject", "escalate")

ClaimKind = Literal["review", "adjudication"]
TaskState = Literal["pending", "adjudication", "done"]
Source = Literal["critic", "human", "adjudicated"]
Answer = Literal["label", "revision"]
ANSWERS: tuple[Answer, ...] = ("label", "revision")

# How a `reject` decision shows up among labels when agreement is measured: two reviewers who
# both reject agree, a reject against a label disagrees. Angle brackets keep it apart from labels.
REJECTED = "<rejected>"


class NewTask(BaseModel):
    """One routed item to put in a queue: the item, the critic's draft and why it is here."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    item_id: str = Field(min_length=1, max_length=500)
    item: dict[str, Any] = Field(default_factory=dict)
    draft: dict[str, Any] = Field(
        default_factory=dict, description="the critic's draft: critique, revision, findings..."
    )
    draft_label: str | None = None
    confidence: float | None = Field(default=None, ge=0.0, le=1.0)
    route_reason: str | None = None
    principle_ids: list[str] = Field(default_factory=list)
    priority: float | None = Field(
        default=None, description="lower comes first; defaults to the confidence (0 if none)"
    )
    origin: str | None = Field(
        default=None,
        max_length=600,
        description="where the item came from, opaque to the queues (critic: 'RUN/ITEM'); "
        "indexed, so `Store.outcomes_for` finds the decisions of a batch of origins at once",
    )
    answer: Answer = Field(
        default="label",
        description="what a decision settles: a label, or the draft's `revision` text, which a "
        "reviewer accepts as it is or edits (no label needed)",
    )

    @field_validator("draft_label", mode="before")
    @classmethod
    def _label_as_text(cls, value: object) -> object:
        # Scores and pairwise preferences arrive as ints (1, 2); labels are stored as text.
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        return value


@dataclass(frozen=True)
class Queue:
    name: str
    overlap: int
    blind: bool
    lease_seconds: int
    labels: tuple[str, ...] | None
    ordinal: bool
    """The labels are ordered, lowest first (a rubric scale): agreement adds ordinal alpha."""
    created_at: datetime
    label_descriptions: dict[str, str] | None = None
    """What each label means, shown to reviewers (a constitution's label descriptions)."""
    gold_rate: float = 0.0
    """About this share of each reviewer's items are gold items (known answers)."""


@dataclass(frozen=True)
class User:
    name: str
    role: Role
    active: bool
    password_hash: str | None
    created_at: datetime
    session_epoch: int = 0
    """Web sessions carry the epoch they began in; log-out, a new password or deactivation
    bumps it, which ends every session issued before."""


@dataclass(frozen=True)
class Task:
    """A queued item as the store holds it (or as a blind reviewer may see it)."""

    queue: str
    item_id: str
    item: dict[str, Any]
    draft: dict[str, Any]
    draft_label: str | None
    confidence: float | None
    route_reason: str | None
    principle_ids: tuple[str, ...]
    priority: float
    state: TaskState
    round: int
    reviews: int
    final_label: str | None
    final_source: Source | None
    final_edit: dict[str, Any] | None
    rejected: bool
    created_at: datetime
    updated_at: datetime
    origin: str | None = None
    answer: Answer = "label"


@dataclass(frozen=True)
class Decision:
    """One reviewer's (or the adjudicator's) decision; never changed once stored.

    `label` is the label this decision stands for: the critic's label for `accept`, the new label
    for `edit`, None for `reject` and `escalate`.
    """

    id: int
    queue: str
    item_id: str
    reviewer: str
    kind: ClaimKind
    round: int
    action: Action
    label: str | None
    edit: dict[str, Any] | None
    note: str | None
    seconds: float
    decided_at: datetime


@dataclass(frozen=True)
class Claim:
    """A reviewer's lease on one task. The token fences every later call about it."""

    token: str
    queue: str
    reviewer: str
    kind: ClaimKind
    task: Task
    claimed_at: datetime
    expires_at: datetime
    answers: tuple[Decision, ...] = field(default=())
    """For an adjudication claim: every reviewer's decision in this round, side by side."""
    pick: str | None = None
    """In a blind queue: the label the reviewer picked before seeing the draft (`Store.pick`)."""


@dataclass(frozen=True)
class Event:
    """One append-only history row: who did what, when, with the state before and after."""

    id: int
    queue: str | None
    item_id: str | None
    actor: str | None
    at: datetime
    kind: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None


@dataclass(frozen=True)
class EnqueueResult:
    added: int
    existing: int


@dataclass(frozen=True)
class Outcome:
    """What ships for one queued item: the label, where it came from, how much humans agreed."""

    item_id: str
    state: TaskState
    label: str | None
    source: Source
    rejected: bool
    edit: dict[str, Any] | None
    critic_label: str | None
    reviewers: int
    agreement: float | None
    """Share of reviewer pairs in this round that gave the same answer; None under 2 reviews."""


@dataclass(frozen=True)
class OriginOutcome:
    """The state of one task found by its origin (`Store.outcomes_for`), in any queue."""

    origin: str
    queue: str
    item_id: str
    state: TaskState
    answer: Answer
    label: str | None
    """The settled label (None until settled, or for a rejected item or a revision task)."""
    source: Source | None
    """Who settled it: human (the reviewers agreed) or adjudicated; None while not settled."""
    rejected: bool
    edit: dict[str, Any] | None
    """The settled edited fields (for a revision task, the reviewer's `revision`)."""
    critic_label: str | None
    reviewers: tuple[str, ...]
    """Who decided in the task's current round (adjudicator included), in decision order."""
    agreement: float | None
    settled_at: datetime | None
    """When the task was settled (its last change while `done`); None while not settled."""


@dataclass(frozen=True)
class GoldResult:
    """One reviewer's answer on a gold item, scored against its known answer."""

    item_id: str
    reviewer: str
    answer: str | None
    """The label the reviewer gave (their blind pick in a blind queue); None for a reject."""
    gold_label: str
    correct: bool
    decided_at: datetime


@dataclass(frozen=True)
class QueueStats:
    queue: str
    tasks: int
    pending: int
    adjudication: int
    done: int
    rejected: int
    claimed: int
    reviews: int
    adjudications: int
    actions: dict[str, int]
    override_rate: float | None
    """Share of non-escalated review decisions that edit or reject the critic's draft."""
    escalation_rate: float | None
    mean_seconds: float | None


@dataclass(frozen=True)
class Undone:
    """What `Store.undo` did: the decision it took back, and the item handed back to decide."""

    withdrawn: Decision
    claim: Claim


@dataclass(frozen=True)
class TaskLine:
    """One task without its (large) item and draft, for dashboards over many tasks."""

    item_id: str
    state: TaskState
    draft_label: str | None
    principle_ids: tuple[str, ...]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class DecisionLine:
    """One decision without its edited fields (only whether it edited), for dashboards."""

    item_id: str
    reviewer: str
    kind: ClaimKind
    action: Action
    label: str | None
    edited: bool
    note: str | None
    seconds: float
    round: int
    decided_at: datetime
