"""Runs out to Label Studio, and its annotations back in as human decisions.

Out (`push`, and the `label-studio` export format): the final records awaiting review (or all
of them) as tasks with the critic's verdict as a prediction, in a project whose labeling config
is the constitution's.

In (`pull` from a server, `import_export` from an exported file): every annotation of a task
critic pushed becomes a decision in a review queue (by default named after the project): the
task's (run, item) is enqueued there with its origin, each annotator is a reviewer (added with
no password), a skipped annotation (`was_cancelled`) is a skip, and `lead_time` is the time
spent (`adjudication.external`). Several annotations of one task are overlapping reviews, so the
queue's agreement, adjudication and every export see them as they see the web app's. Bringing
the same annotations in again changes nothing.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from critic.errors import UsageError
from critic.labelstudio.client import Client, LabelStudioError
from critic.labelstudio.config import Layout, labeling_config
from critic.labelstudio.tasks import ORIGIN, Annotation, Problem, read_annotations, to_task
from critic.ship import FinalRecord, parse_origin
from critic.store import RunInfo, Store

if TYPE_CHECKING:
    from adjudication.external import ExternalDecision
    from critic.exports.registry import Tally

#: Who the queue's history names as bringing the decisions in.
BY = "label-studio"
_IMPORT_BATCH = 500


def layout_for(store: Store, runs: Sequence[RunInfo]) -> Layout:
    """The one layout of these runs; a UsageError when they need different projects."""
    layouts: dict[str, Layout] = {}
    for run in runs:
        content = store.constitution_content(run.constitution_hash)
        if content is None:
            raise UsageError(
                f"run {run.id}: its constitution {run.constitution_hash[:12]} is not stored",
                hint="the database lacks what the run was labelled with; re-run it",
            )
        layouts[run.id] = Layout.of(content, run.params.get("fields") or {})
    first = next(iter(layouts.values()))
    for run_id, layout in layouts.items():
        if (layout.kind, layout.labels, layout.shown) != (first.kind, first.labels, first.shown):
            raise UsageError(
                f"runs {runs[0].id} and {run_id} need different Label Studio projects (their "
                f"labels or input fields differ: {', '.join(first.labels)} vs "
                f"{', '.join(layout.labels)})",
                hint="push or export one run at a time with --run, each to its own project",
            )
    return first


def review_tasks(
    store: Store,
    queues: Any,
    runs: Sequence[RunInfo],
    *,
    include_all: bool = False,
    tally: Tally,
) -> Iterator[tuple[FinalRecord, dict[str, Any]]]:
    """(record, task) for what the `label-studio` format holds of these runs."""
    from critic.exports import get_format, records

    layout = layout_for(store, runs)
    chosen = get_format("label-studio")
    for record in records(store, queues, runs, chosen, include_all=include_all, tally=tally):
        yield record, to_task(record, layout)


# -- push -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PushResult:
    project: int
    title: str
    url: str
    created: bool
    config_updated: bool
    imported: int
    already: int
    """Tasks already in the project (by origin), not imported again."""


def find_project(client: Client, project: str) -> dict[str, Any] | None:
    """The project with this id (all digits) or title; None when there is no such title."""
    if project.isdigit():
        return client.project(int(project))
    same = [p for p in client.projects() if p.get("title") == project]
    if len(same) > 1:
        ids = ", ".join(str(p["id"]) for p in same)
        raise LabelStudioError(
            f"{len(same)} Label Studio projects are called {project!r} (ids {ids})",
            hint="name the project by its id: --project ID",
        )
    return same[0] if same else None


def existing_origins(exported: Iterable[Mapping[str, Any]]) -> set[str]:
    return {
        str(t["data"][ORIGIN])
        for t in exported
        if isinstance(t.get("data"), Mapping) and t["data"].get(ORIGIN)
    }


def push(
    db: str,
    client: Client,
    project: str,
    *,
    run: Sequence[str] | str | None = None,
    all_runs: bool = False,
    include_all: bool = False,
    overlap: int | None = None,
) -> PushResult:
    """Create or update a Label Studio project for the runs and import their tasks awaiting
    review (all of them with `include_all`); tasks already there (by origin) are not imported
    again.

    Args:
        project: the project's id, or its title (created when no project has it).
        overlap: annotations each task needs (Label Studio's `maximum_annotations`); set on the
            project when given, and on a new project (default 1).
    """
    from critic.exports import Tally, require_routed
    from critic.review import open_stores
    from critic.store.selection import select_runs

    with open_stores(db) as (store, queues):
        chosen = select_runs(store, run, all_runs=all_runs)
        if not include_all:
            require_routed(store, chosen)
        layout = layout_for(store, chosen)
        config = labeling_config(layout)
        found = find_project(client, project)
        settings: dict[str, Any] = {"label_config": config}
        if overlap is not None:
            settings["maximum_annotations"] = overlap
        if found is None:
            if project.isdigit():
                raise UsageError(f"no Label Studio project {project}")
            created = client.create_project({
                "title": project,
                "expert_instruction": layout.instructions or "",
                "show_instruction": bool(layout.instructions),
                "maximum_annotations": overlap or 1,
                **settings,
            })  # fmt: skip
            project_id, title, updated, there = int(created["id"]), project, False, set()
        else:
            project_id, title = int(found["id"]), str(found.get("title") or project)
            # Label Studio stores the config without its final newline.
            updated = str(found.get("label_config") or "").strip() != config.strip() or (
                overlap is not None and found.get("maximum_annotations") != overlap
            )
            if updated:
                client.update_project(project_id, settings)
            there = existing_origins(client.export_tasks(project_id))
        imported = already = 0
        batch: list[dict[str, Any]] = []
        for _, task in review_tasks(store, queues, chosen, include_all=include_all, tally=Tally()):
            if task["data"][ORIGIN] in there:
                already += 1
                continue
            there.add(task["data"][ORIGIN])
            batch.append(task)
            if len(batch) >= _IMPORT_BATCH:
                imported += client.import_tasks(project_id, batch)
                batch = []
        imported += client.import_tasks(project_id, batch)
    return PushResult(
        project=project_id,
        title=title,
        url=f"{client.url}/projects/{project_id}/data",
        created=found is None,
        config_updated=updated,
        imported=imported,
        already=already,
    )


# -- decisions in ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class BroughtIn:
    """What `pull` or `import_export` did."""

    queue: str
    tasks: int
    """Label Studio tasks read that critic pushed."""
    annotations: int
    enqueued: int
    """Items added to the queue now."""
    decisions: int
    skips: int
    existing: int
    changed: tuple[ExternalDecision, ...]
    late: tuple[ExternalDecision, ...]
    users_added: tuple[str, ...]
    settled: int
    to_adjudicate: int
    problems: tuple[Problem, ...] = field(default_factory=tuple)


def queue_name(title: str) -> str:
    """A queue name for a project title (`Harm review` becomes `Harm-review`)."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", title).strip("-._")[:200]
    return cleaned or "label-studio"


def _rows(store: Store, origins: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The stored row (with its route's reason) of each origin, read run by run."""
    wanted: defaultdict[str, set[str]] = defaultdict(set)
    for origin in origins:
        run_id, item_id = parse_origin(origin)
        wanted[run_id].add(item_id)
    found: dict[str, dict[str, Any]] = {}
    for run_id, items in wanted.items():
        rows = [r for r in store.rows(run_id) if r["item_id"] in items]
        routes = store.routes_for([(run_id, r["item_id"]) for r in rows])
        for row in rows:
            route = routes.get((run_id, row["item_id"])) or {}
            found[f"{run_id}/{row['item_id']}"] = {**row, "route_reason": route.get("reason")}
    return found


def _decision(
    annotation: Annotation, item_id: str, row: Mapping[str, Any], draft_label: str | None,
    project: str,
) -> ExternalDecision:  # fmt: skip
    from adjudication.external import ExternalDecision

    source = {"tool": "label-studio", "project": project, "task": annotation.task,
              "annotation": annotation.annotation}  # fmt: skip
    common: dict[str, Any] = {
        "item_id": item_id,
        "reviewer": annotation.annotator,
        "seconds": annotation.lead_time,
        "decided_at": annotation.created_at,
        "source": source,
    }
    if annotation.cancelled:
        return ExternalDecision(action="skip", **common)
    if annotation.revision is not None:
        critic = (row.get("output") or {}).get("revision")
        if isinstance(critic, str) and critic.strip() == annotation.revision.strip():
            return ExternalDecision(action="accept", **common)
        return ExternalDecision(action="edit", edit={"revision": annotation.revision}, **common)
    same = annotation.label == draft_label
    return ExternalDecision(action="accept" if same else "edit", label=annotation.label, **common)


def bring_in(
    db: str,
    exported: Sequence[Mapping[str, Any]],
    *,
    queue: str,
    overlap: int = 1,
    users: Mapping[int, Mapping[str, Any]] | None = None,
    project: str = "",
) -> BroughtIn:
    """Record the annotations of Label Studio's JSON export as decisions in `queue` (created
    with `overlap` when it does not exist)."""
    from adjudication.errors import NotFoundError
    from adjudication.external import record_external
    from critic.review import enqueue_review, open_stores

    origins = sorted(existing_origins(exported))
    with open_stores(db) as (store, queues):
        rows = _rows(store, origins)
        runs = sorted({row["run_id"] for row in rows.values()})
        unknown = [o for o in origins if o not in rows]
        problems = [
            Problem(
                t.get("id"),
                None,
                f"{ORIGIN} {t['data'][ORIGIN]!r} is not an item of a run in {store.url}: its "
                "annotations are left out",
            )
            for t in exported
            if isinstance(t.get("data"), Mapping)
            and t["data"].get(ORIGIN) in unknown
            and t.get("annotations")
        ]
        if not rows:
            return BroughtIn(queue, 0, 0, 0, 0, 0, 0, (), (), (), 0, 0, tuple(problems))
        layout = layout_for(store, [store.run(r) for r in runs])
        known = [t for t in exported if isinstance(t.get("data"), Mapping)
                 and t["data"].get(ORIGIN) in rows]  # fmt: skip
        annotations, unread = read_annotations(known, layout, users)
        problems.extend(unread)
        try:
            queues.queue(queue)
        except NotFoundError:
            queues.create_queue(queue, overlap=max(1, overlap), by=BY)
        enqueued = enqueue_review(store, queues, queue, [rows[o] for o in origins if o in rows])
    with open_stores(db) as (store, queues):
        outcomes = queues.outcomes_for(list(rows))
        mine = {o: next(x for x in found if x.queue == queue) for o, found in outcomes.items()}
        decisions = [
            _decision(a, mine[a.origin].item_id, rows[a.origin], mine[a.origin].critic_label,
                      project)
            for a in annotations
        ]  # fmt: skip
        result = record_external(queues, queue, decisions, by=BY)
    return BroughtIn(
        queue=queue,
        tasks=len(known),
        annotations=len(annotations),
        enqueued=enqueued,
        decisions=result.decisions,
        skips=result.skips,
        existing=result.existing,
        changed=result.changed,
        late=result.late,
        users_added=result.users_added,
        settled=result.settled,
        to_adjudicate=result.to_adjudicate,
        problems=tuple(problems),
    )


def pull(db: str, client: Client, project: str, *, queue: str | None = None) -> BroughtIn:
    """Bring a Label Studio project's annotations in (see `bring_in`); the queue is named after
    the project unless given, and is created with the project's overlap."""
    found = find_project(client, project)
    if found is None:
        raise UsageError(
            f"no Label Studio project called {project!r}",
            hint="push it first (critic ls push), or name it by its id",
        )
    project_id = int(found["id"])
    exported = client.export_tasks(project_id)
    try:
        users = client.users()
    except LabelStudioError:  # a token that may not list the organization's users
        users = {}
    return bring_in(
        db,
        exported,
        queue=queue or queue_name(str(found.get("title") or project_id)),
        overlap=int(found.get("maximum_annotations") or 1),
        users=users,
        project=str(found.get("title") or project_id),
    )


def import_export(
    db: str,
    path: str | Path,
    *,
    queue: str = "label-studio",
    overlap: int = 1,
    annotators: Mapping[int, str] | None = None,
) -> BroughtIn:
    """Bring in the annotations of a Label Studio JSON export file (see `bring_in`).

    Args:
        annotators: Label Studio user id -> email, for exports that name annotators by id only
            (the JSON export does); others are named `label-studio-user-ID`.
    """
    source = Path(path)
    try:
        exported = json.loads(source.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"{source}: cannot read it: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise UsageError(
            f"{source}: not JSON ({exc})",
            hint="export the project from Label Studio as JSON (not JSON-MIN or CSV)",
        ) from None
    if not isinstance(exported, list) or not all(isinstance(t, dict) for t in exported):
        raise UsageError(
            f"{source}: not a Label Studio JSON export (a list of tasks)",
            hint="export the project from Label Studio as JSON (not JSON-MIN or CSV)",
        )
    users = {k: {"id": k, "email": v} for k, v in (annotators or {}).items()}
    return bring_in(db, exported, queue=queue, overlap=overlap, users=users, project=source.name)
