"""What humans overturn, by principle: override rates with exact intervals, agreement, gaps."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import yaml

from adjudication.rules import GAP_NOTE
from adjudication.rules import is_gap_note as is_gap_note
from critic.calibrate import clopper_pearson
from critic.constitution import (
    parse_constitution,
)
from critic.errors import (
    ConstitutionError,
    UsageError,
)
from critic.store import Store
from critic.workbench.common import snippet


def _note_key(note: str) -> str:
    return " ".join(GAP_NOTE.sub(" ", note).split()).strip(" :-").lower()


@dataclass(frozen=True)
class DecisionExample:
    queue: str
    item_id: str
    snippet: str
    critic_label: str | None
    action: str
    label: str | None
    reviewer: str
    note: str | None


@dataclass(frozen=True)
class PrincipleStats:
    """Human decisions on items citing one principle."""

    principle: str
    constitution: str | None
    text: str | None
    """The principle's text in the version the decisions were made under."""
    items: int
    decisions: int
    """Review decisions that accept, edit or reject (escalations are counted apart)."""
    overrides: int
    override_rate: float | None
    interval: tuple[float, float]
    actions: dict[str, int]
    escalations: int
    gap_flags: int
    agreement: float | None
    """Mean pairwise agreement among reviewers, over items with two or more reviews."""
    agreement_items: int
    alpha: float | None
    top_notes: tuple[tuple[str, int, bool], ...]
    """(note, count, flags a gap) among notes of overriding or gap-flagging decisions: gap
    flags first, then by frequency."""
    examples: tuple[DecisionExample, ...]
    version: str | None = None
    """The constitution version the items were drafted under (its `version`; with `@HASH`
    when two stored contents share one version string)."""

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["interval"] = list(self.interval)
        out["top_notes"] = [{"note": n, "count": c, "gap": g} for n, c, g in self.top_notes]
        return out


@dataclass
class StatsReport:
    db: str
    queues: list[str]
    confidence: float
    overall: PrincipleStats
    principles: list[PrincipleStats]
    versions: list[str] = field(default_factory=list)
    """`ID VERSION` of every constitution version the counted decisions were made under."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "db": self.db,
            "queues": self.queues,
            "versions": self.versions,
            "confidence": self.confidence,
            "overall": self.overall.to_dict(),
            "principles": [p.to_dict() for p in self.principles],
        }


def is_override(
    action: str, label: str | None, edit: Mapping[str, Any] | None, critic_label: str | None
) -> bool:
    """A review decision overturns the critic when it rejects the item, gives another label, or
    edits the draft's fields (an edit that only restates the critic's label does not count)."""
    return (
        action == "reject"
        or (label is not None and label != critic_label)
        or (action == "edit" and bool(edit))
    )


@dataclass
class _Tally:
    items: set[tuple[str, str]] = field(default_factory=set)
    decisions: int = 0
    overrides: int = 0
    actions: Counter[str] = field(default_factory=Counter)
    escalations: int = 0
    gaps: int = 0
    notes: Counter[str] = field(default_factory=Counter)
    gap_notes: set[str] = field(default_factory=set)
    examples: list[DecisionExample] = field(default_factory=list)
    ratings: dict[str, Mapping[str, str]] = field(default_factory=dict)


def decision_stats(
    db: str,
    *,
    queues: Sequence[str] = (),
    constitution: str | None = None,
    version: str | None = None,
    examples: int = 3,
    confidence: float = 0.95,
    top_notes: int = 5,
) -> StatsReport:
    """Per principle and constitution version: how often humans overturn the critic (with an
    exact interval), reviewer agreement, the most frequent gap flags and notes, and example
    items. Decisions count under the version that drafted their item, next to that version's
    own principle text.

    Args:
        db: the database holding the review queues (and the runs, for principle texts).
        queues: only these queues (default: all).
        constitution: only items drafted under this constitution id.
        version: only items drafted under this version (`1.1`, `1.1@HASH` or a hash prefix).
        examples: overridden items kept per principle.
        confidence: of the Clopper–Pearson interval on each override rate.
    """
    from adjudication.agreement import summarize
    from adjudication.store import open_store as open_queue_store
    from critic.store import open_store

    runs = open_store(db)
    try:
        versions = _constitution_index(runs)
    finally:
        runs.close()
    if version is not None and not any(_is_version(v, version) for v in versions.values()):
        known = sorted({f"{v.id} {v.label}" for v in versions.values()})
        raise UsageError(
            f"--version {version!r}: no stored constitution has that version",
            hint="stored versions: " + (", ".join(known) or "none (no runs in this database)"),
        )
    qs = open_queue_store(db)
    try:
        names = [q.name for q in qs.queues()]
        for name in queues:
            if name not in names:
                qs.queue(name)  # the queue store's own error, with a did-you-mean hint
        chosen = list(queues) or names
        tallies: dict[tuple[str | None, str], _Tally] = defaultdict(_Tally)
        overall = _Tally()
        seen: set[str] = set()
        for name in chosen:
            tasks = {t.item_id: t for t in qs.tasks(name)}
            ratings = qs.ratings(name)
            for d in qs.decisions(name):
                task = tasks[d.item_id]
                digest = str(task.draft.get("constitution") or "")
                made = versions.get(digest)
                if constitution is not None and (made is None or made.id != constitution):
                    continue
                if version is not None and (made is None or not _is_version(made, version)):
                    continue
                if made is not None:
                    seen.add(digest)
                key = digest if made is not None else None
                groups = [(key, p) for p in task.principle_ids] or [(key, "(none)")]
                for tally in [overall, *(tallies[g] for g in groups)]:
                    _count(tally, name, task, d)
                    if d.item_id in ratings:
                        tally.ratings[f"{name}\x1f{d.item_id}"] = ratings[d.item_id]
    finally:
        qs.close()
    alpha = round(1.0 - confidence, 12)  # 1 - 0.95 is 0.05000000000000004 in floating point

    def build(key: tuple[str | None, str], t: _Tally) -> PrincipleStats:
        digest, pid = key
        made = versions.get(digest or "")
        agreement = summarize(t.ratings)
        return PrincipleStats(
            principle=pid,
            constitution=None if made is None else made.id,
            version=None if made is None else made.label,
            text=None if made is None else made.texts.get(pid),
            items=len(t.items),
            decisions=t.decisions,
            overrides=t.overrides,
            override_rate=t.overrides / t.decisions if t.decisions else None,
            interval=clopper_pearson(t.overrides, t.decisions, alpha),
            actions=dict(t.actions),
            escalations=t.escalations,
            gap_flags=t.gaps,
            agreement=agreement.percent,
            agreement_items=agreement.items,
            alpha=agreement.alpha_nominal,
            top_notes=tuple((n, c, n in t.gap_notes) for n, c in _top_notes(t, top_notes)),
            examples=tuple(t.examples[:examples]),
        )

    principles = [build(k, t) for k, t in tallies.items()]
    # The lower end of the interval first: a principle needs evidence to rank as overturned.
    principles.sort(key=lambda p: (-p.interval[0], -(p.override_rate or 0), p.principle))
    return StatsReport(
        db=db,
        queues=chosen,
        confidence=confidence,
        overall=build((None, "all"), overall),
        principles=principles,
        versions=sorted({f"{versions[d].id} {versions[d].label}" for d in seen}),
    )


def _top_notes(tally: _Tally, n: int) -> list[tuple[str, int]]:
    """Gap-flagging notes first, then the most frequent."""
    ranked = sorted(tally.notes.items(), key=lambda kv: (kv[0] not in tally.gap_notes, -kv[1]))
    return ranked[:n]


def _count(tally: _Tally, queue: str, task: Any, d: Any) -> None:
    if d.kind != "review":
        return
    tally.items.add((queue, d.item_id))
    gap = is_gap_note(d.note)
    tally.gaps += gap
    if d.action == "escalate":
        tally.escalations += 1
        overridden = False
    else:
        tally.decisions += 1
        tally.actions[d.action] += 1
        overridden = is_override(d.action, d.label, d.edit, task.draft_label)
        tally.overrides += overridden
        if overridden:
            example = DecisionExample(
                queue, d.item_id, snippet(task.item), task.draft_label, d.action, d.label,
                d.reviewer, d.note,
            )  # fmt: skip
            if all((e.queue, e.item_id) != (queue, d.item_id) for e in tally.examples):
                tally.examples.append(example)
    if d.note and (overridden or gap):
        key = _note_key(d.note)
        if key:
            tally.notes[key] += 1
            if gap:
                tally.gap_notes.add(key)


@dataclass(frozen=True)
class _Version:
    """One stored constitution content: its id, version and principle texts."""

    id: str
    version: str
    digest: str
    texts: dict[str, str]
    label: str
    """`version`, with `@HASH` when another stored content has the same id and version."""


def _is_version(made: _Version, wanted: str) -> bool:
    """`--version` names `made`: its version, its label, or a prefix of its hash."""
    prefix = len(wanted) >= 6 and made.digest.startswith(wanted)
    return wanted in (made.version, made.label) or prefix


def _constitution_index(store: Store) -> dict[str, _Version]:
    """Every stored constitution version by content hash, each with its own principle texts."""
    found: dict[str, tuple[str, str, dict[str, str]]] = {}
    for run in store.runs():
        digest = run.constitution_hash
        if digest in found:
            continue
        try:
            c = parse_constitution(store.constitution_content(digest) or "", source=digest)
        except (ConstitutionError, yaml.YAMLError):
            continue
        found[digest] = (c.id, c.version, {p.id: p.text for p in c.principles})
    shared = Counter((cid, version) for cid, version, _ in found.values())
    return {
        digest: _Version(cid, version, digest, texts,
                         version if shared[(cid, version)] == 1 else f"{version}@{digest[:8]}")
        for digest, (cid, version, texts) in found.items()
    }  # fmt: skip
