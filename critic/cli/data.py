"""`critic export`, `runs`, `calibrate`, `route` and `quality`: what is stored, out and onward."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from critic.cli.common import counting, err, out, reports_errors, shown
from critic.cli.options import (
    DEFAULT_DB,
    AllRunsOpt,
    DbOpt,
    IntervalOpt,
    JsonOpt,
    QuietOpt,
    RunOpt,
    RunsOpt,
)


def _format_help() -> str:
    from critic.exports import formats

    return "; ".join(f"{name}: {fmt.help}" for name, fmt in formats().items())


@reports_errors
def export(
    out_path: Annotated[Path, typer.Argument(metavar="OUT", help="Output file or directory.")],
    db: DbOpt = DEFAULT_DB,
    fmt: Annotated[str, typer.Option("--format", "-f", help=_format_help())] = "jsonl",
    run: RunsOpt = None,
    all_runs: AllRunsOpt = False,
    include_all: Annotated[
        bool,
        typer.Option(
            "--all",
            help="Also pending, rejected and failed items, each with its status (not in TRL "
            "formats).",
        ),
    ] = False,
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Export the final record of every item that ships: accepted by the policy or decided by a
    human (--all: every item, with its status)."""
    from critic.exports import export as do_export
    from critic.exports import get_format, require_routed
    from critic.review import open_stores
    from critic.store.selection import describe, select_runs

    with open_stores(db) as (store, queues):
        chosen = select_runs(store, run, all_runs=all_runs)
        for r in chosen:
            err.print(shown(f"exporting {describe(r)}"), highlight=False)
        if not include_all or get_format(fmt).shipped_only:
            require_routed(store, chosen)
        total = sum(sum(store.status_counts(r.id).values()) for r in chosen)
        with counting(total, "export", quiet=quiet or json_out) as advance:
            result = do_export(store, queues, out_path, fmt, chosen, include_all=include_all,
                               progress=advance)  # fmt: skip
    tally = result.tally
    summary = {
        "format": result.format, "out": str(out_path), "rows": result.count,
        "runs": list(result.runs), "statuses": dict(tally.statuses),
        "left_out": dict(tally.skipped), "conflicts": tally.conflicts,
    }  # fmt: skip
    if json_out:
        print(json.dumps(summary, indent=2))
    else:
        seen = ", ".join(f"{n} {s}" for s, n in sorted(tally.statuses.items())) or "no items"
        err.print(shown(f"wrote {result.count} rows to {out_path} ({fmt}); items: {seen}"),
                  highlight=False)  # fmt: skip
        if tally.conflicts:
            err.print(shown(f"{tally.conflicts} item(s) were settled differently in several "
                            "queues: the adjudicated, else the newest, decision ships"),
                      highlight=False)  # fmt: skip
    if result.empty_reason:
        err.print(shown(result.empty_reason), highlight=False)
        raise typer.Exit(1)


@reports_errors
def runs(db: DbOpt = DEFAULT_DB, json_out: JsonOpt = False) -> None:
    """List the runs stored in a database."""
    from critic.store import open_store

    store = open_store(db)
    listed: list[dict[str, Any]] = []
    for r in store.runs():
        counts = store.counts(r.id)
        listed.append({**r.__dict__, "fields": _input_fields(r.params), **counts["statuses"]})
    if json_out:
        print(json.dumps(listed, indent=2, default=str))
        return
    table = Table(
        "run", "task", "constitution", "model", "backend", "drafted", "failed", "input", "fields"
    )
    for entry in listed:
        table.add_row(
            entry["id"], entry["task"], entry["constitution_hash"][:12], shown(entry["model"]),
            shown(entry["backend"]), str(entry.get("drafted", 0)), str(entry.get("failed", 0)),
            shown(entry["input"]),
            shown(" ".join(f"{k}={_column(v)}" for k, v in entry["fields"].items())),
        )  # fmt: skip
    out.print(table)


def _input_fields(params: dict[str, Any]) -> dict[str, Any]:
    """The input columns a run read (`--id-field`, `--prompt-field`, ...): stored in its params
    when they were not the defaults, so two runs of one file over other columns tell apart."""
    from dataclasses import asdict

    from critic.items import Fields

    stored = params.get("fields") or asdict(Fields())
    return {name: column for name, column in stored.items() if column is not None}


def _column(value: Any) -> str:
    """A stored input column; several (joined in order) as `a+b`."""
    return "+".join(map(str, value)) if isinstance(value, list | tuple) else str(value)


@reports_errors
def calibrate(
    ctx: typer.Context,
    output: Annotated[
        Path,
        typer.Option(
            "-o",
            "--output",
            help="Where to write the policy YAML.",
        ),
    ],
    from_file: Annotated[
        Path | None,
        typer.Option(
            "--from-file",
            help='JSONL rows {"id","label","confidence"|"probs","human_label"}.',
        ),
    ] = None,
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            envvar="CRITIC_DB",
            help="Use human decisions stored in this database. CRITIC_DB is used only "
            "without --from-file.",
        ),
    ] = None,
    run: Annotated[str | None, typer.Option(help="Only drafts of this run (with --db).")] = None,
    target_agreement: Annotated[float, typer.Option(min=0.5, max=0.999)] = 0.9,
    delta: Annotated[
        float,
        typer.Option(
            min=0.001,
            max=0.5,
            help="Allowed failure probability.",
        ),
    ] = 0.1,
    audit_rate: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Share of accepts to audit.",
        ),
    ] = 0.0,
    budget: Annotated[int | None, typer.Option(min=0, help="At most this many reviews.")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the audit sample.")] = 0,
    plot: Annotated[
        Path | None,
        typer.Option(
            help="Write a reliability / coverage PNG here.",
        ),
    ] = None,
    combine: Annotated[
        str | None,
        typer.Option(help="Rows carry several critics: combine them by 'mean' or 'vote'."),
    ] = None,
    cascade: Annotated[
        str | None,
        typer.Option(help="Rows carry several critics: a cascade, cheapest first ('a,b')."),
    ] = None,
    cascade_method: Annotated[
        str,
        typer.Option(
            help="paths: the whole cascade tested along two paths fixed in advance (earlier "
            "critics held at 0.99; the last critic alone), each at delta / 2, then of the "
            "passing policies the one asking the last critic least within 0.9 of the most "
            "coverage; joint: one path, every stage at the same threshold, at delta; "
            "stagewise: each stage at delta / stages (README: when each wins).",
        ),
    ] = "paths",
    human_field: Annotated[
        str, typer.Option(help="--from-file: the field holding the human label.")
    ] = "human_label",
    label_map: Annotated[
        str | None,
        typer.Option(help='--from-file: raw value to label, e.g. "0=tie,1=a,2=b".'),
    ] = None,
    id_field: Annotated[str, typer.Option(help="--from-file: the item id field.")] = "id",
    label_field: Annotated[
        str, typer.Option(help="--from-file: the critic's label field.")
    ] = "label",
    confidence_field: Annotated[
        str, typer.Option(help="--from-file: the critic's confidence field.")
    ] = "confidence",
    critic_field: Annotated[
        list[str] | None,
        typer.Option(
            help="--from-file: NAME=FIELD, a critic whose bare label a field holds "
            "(repeat: a panel; use with --combine vote or --cascade).",
        ),
    ] = None,
    calibration_rate: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=1.0,
            help="The policy sends this seeded share of all drafts to review as calibration "
            "samples (the labels that keep recalibration valid).",
        ),
    ] = 0.0,
    allow_seen_labels: Annotated[
        bool,
        typer.Option(
            "--allow-seen-labels",
            help="--db: also use decisions made after seeing the critic's label (non-blind "
            "queues); they agree with the critic more often, so the guarantee is optimistic.",
        ),
    ] = False,
    recalibrate_from: Annotated[
        Path | None,
        typer.Option(
            "--recalibrate",
            help="--db: recalibrate this policy on every valid label so far, keeping its "
            "settings and recording its lineage.",
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Pick the confidence threshold that meets a target agreement with a stated guarantee."""
    from critic.calibrate import forecast_calibration
    from critic.cascade import CASCADE_METHODS, CascadeMethod, CascadeResult, forecast_cascade
    from critic.errors import UsageError
    from critic.judgments import (
        COMBINE,
        Combine,
        Fields,
        parse_critic_fields,
        parse_label_map,
        read_judged,
    )
    from critic.policies import calibrate_judgments
    from critic.routing import Policy, save_policy

    source = ctx.get_parameter_source("db")  # typer's own click: compared by name
    if from_file is not None and source is not None and source.name == "ENVIRONMENT":
        db = None  # an explicit --from-file wins over a database set for every command
    if (from_file is None) == (db is None):
        raise UsageError(
            "give exactly one of --from-file and --db",
            hint="--from-file FILE reads judgments from a JSONL file; --db URL (or CRITIC_DB) "
            "reads the human decisions stored in a database",
        )
    if combine is not None and combine not in COMBINE:
        raise UsageError(f"--combine must be one of {', '.join(COMBINE)}, got {combine!r}")
    if from_file is not None and (allow_seen_labels or recalibrate_from is not None):
        raise UsageError("--allow-seen-labels and --recalibrate weigh stored decisions: use "
                         "them with --db")  # fmt: skip
    if cascade_method not in CASCADE_METHODS:
        raise UsageError(f"--cascade-method must be one of {', '.join(CASCADE_METHODS)}, "
                         f"got {cascade_method!r}")  # fmt: skip
    method: CascadeMethod = next(m for m in CASCADE_METHODS if m == cascade_method)
    stages = [c.strip() for c in cascade.split(",") if c.strip()] if cascade else None
    how: Combine | None = "mean" if combine == "mean" else "vote" if combine == "vote" else None
    fields = Fields(id=id_field, label=label_field, confidence=confidence_field,
                    human=human_field, critics=parse_critic_fields(critic_field or []),
                    label_map=parse_label_map(label_map) if label_map else {})  # fmt: skip
    if db is not None and not fields.plain:
        raise UsageError("--human-field, --label-map and the other --*-field options read a "
                         "judged file: use them with --from-file")  # fmt: skip
    read: dict[str, Any] = {}
    if from_file is not None:
        found = read_judged(from_file, fields=fields)
        read = {"normalised_rows": found.normalised, "unmapped_labels": found.unmapped}
        calibrated = calibrate_judgments(found.judgments, from_file, target_agreement, delta,
                                         how=how, cascade=stages,
                                         cascade_method=method)  # fmt: skip
        policy = calibrated.policy(audit_rate=audit_rate, budget=budget, seed=seed, how=how)
        outcome = calibrated.result
        scores = [s[0] for s in calibrated.scores]
        correct = [c[0] for c in calibrated.correct]
    elif how or stages:
        from critic.review import human_panel_judgments, open_stores

        with open_stores(db or "") as (store, queues):
            panel_runs = _runs_printed(store, run)
            judged = human_panel_judgments(store, queues, [r.id for r in panel_runs])
        if not judged:
            raise UsageError(f"{db}: no drafted item has a human decision yet",
                             hint="review some items first (critic review ...)")  # fmt: skip
        calibrated = calibrate_judgments(judged, db or "", target_agreement, delta, how=how,
                                         cascade=stages, cascade_method=method)  # fmt: skip
        policy = calibrated.policy(audit_rate=audit_rate, budget=budget, seed=seed, how=how)
        policy = policy.model_copy(update={"binding": _one_binding(panel_runs)})
        outcome = calibrated.result
        scores = [s[0] for s in calibrated.scores]
        correct = [c[0] for c in calibrated.correct]
    else:
        from critic.review import decided_labels, open_stores
        from critic.routing import load_policy
        from critic.valid_labels import calibrate_labels, recalibrate

        with open_stores(db or "") as (store, queues):
            chosen = _runs_printed(store, run)
            binding = _one_binding(chosen)
            labels = decided_labels(store, queues, [r.id for r in chosen])
        if not labels:
            raise UsageError(f"{db}: no drafted item of the run has a human label yet",
                             hint="route with --calibration-rate into a blind queue and "
                             "review some items first")  # fmt: skip
        if recalibrate_from is not None:
            again = recalibrate(labels, load_policy(recalibrate_from),
                                allow_seen=allow_seen_labels)  # fmt: skip
            valid, policy = again.result, again.policy
        else:
            valid = calibrate_labels(labels, target_agreement, delta,
                                     allow_seen=allow_seen_labels)  # fmt: skip
            policy = Policy.from_calibration(valid.calibration, audit_rate=audit_rate,
                                             budget=budget, seed=seed)  # fmt: skip
            policy = policy.model_copy(update={"calibration_rate": calibration_rate})
        policy = policy.model_copy(update={"binding": binding})
        outcome = valid.calibration
        read["labels"] = valid.summary()
        read["labels_used"] = valid.used
        read["labels_left_out"] = [o.model_dump() for o in valid.left_out]
        usable = [lab for lab in labels if allow_seen_labels or not lab.seen]
        scores = [lab.confidence for lab in usable]
        correct = [lab.agrees for lab in usable]
    save_policy(policy, output)
    if plot is not None:
        from critic.plots import plot_calibration, plot_cascade

        if isinstance(outcome, CascadeResult):
            plot_cascade(calibrated.scores, calibrated.correct, outcome, plot)
        else:
            plot_calibration(scores, correct, outcome, plot)
    if isinstance(outcome, CascadeResult):
        ahead = forecast_cascade(calibrated.critics, calibrated.scores, calibrated.correct,
                                 target_agreement, delta, method=outcome.method)  # fmt: skip
        _print_cascade(outcome, output, json_out, read, ahead)
        raise typer.Exit(0 if outcome.n_accepted else 1)
    result = outcome
    ahead = forecast_calibration(scores, correct, target_agreement, delta)
    if json_out:
        print(json.dumps({**result.model_dump(mode="json"), "guarantee": result.guarantee,
                          "policy": str(output), **read,
                          "forecast": [f.__dict__ for f in ahead]}, indent=2))  # fmt: skip
    else:
        table = Table(title="critic calibrate", show_header=False, box=None)
        table.add_column(style="bold")
        table.add_column()
        table.add_row("human labels", str(result.n_calibration))
        _read_rows(
            table, {k: v for k, v in read.items() if k in ("normalised_rows", "unmapped_labels")}
        )
        table.add_row(
            "threshold", "none" if result.threshold is None else f"{result.threshold:.4g}"
        )
        table.add_row("expected coverage", f"{result.coverage:.1%}")
        if result.agreement is not None and result.lower_bound is not None:
            table.add_row("agreement (lower bound)",
                          f"{result.agreement:.1%} ({result.lower_bound:.1%})")  # fmt: skip
        table.add_row("policy", str(output))
        out.print(table)
        out.print(result.guarantee, soft_wrap=True)
        for line in read.get("labels", []):
            out.print(shown(line), highlight=False, soft_wrap=True)
        _print_forecast(ahead)
    raise typer.Exit(0 if result.threshold is not None else 1)


def _runs_printed(store: Any, run: str | None) -> list[Any]:
    """The runs by the one rule (`critic.store.selection`), each printed."""
    from critic.store.selection import describe, select_runs

    chosen = select_runs(store, run)
    for r in chosen:
        err.print(shown(f"using {describe(r)}"), highlight=False)
    return chosen


def _one_binding(runs: list[Any]) -> Any:
    """The binding of the runs a policy is calibrated on: they must agree on it."""
    from critic.errors import UsageError
    from critic.triage import run_binding

    bindings = {run_binding(r) for r in runs}
    if len(bindings) > 1:
        raise UsageError(
            "the runs differ in constitution, task, model or templates: a policy is calibrated "
            "for one of them",
            hint="give one --run",
        )
    return bindings.pop()


def _read_rows(table: Table, read: dict[str, Any]) -> None:
    """What reading a judged file had to adjust, as rows of the summary table."""
    if read.get("normalised_rows"):
        table.add_row("rows normalised", f"{read['normalised_rows']} (label probabilities "
                      "summed below 1: rescaled over the label set)")  # fmt: skip
    if read.get("unmapped_labels"):
        kept = ", ".join(f"{k!r} ({v})" for k, v in read["unmapped_labels"].items())
        table.add_row("critic labels not in --label-map", f"{kept}: kept, agree with no human")


def _print_forecast(ahead: Any) -> None:
    """'with 250 more calibration labels: about 0.68 (now 0.59)', now by the same bootstrap."""
    now, *more = ahead
    for f in more:
        out.print(f"with {f.more} more calibration labels: about {f.coverage:.2f} coverage "
                  f"(now {now.coverage:.2f}, by the same bootstrap estimate)",
                  highlight=False, soft_wrap=True)  # fmt: skip


def _print_cascade(
    result: Any, output: Path, json_out: bool, read: dict[str, Any], ahead: Any
) -> None:
    if json_out:
        print(json.dumps({**result.model_dump(mode="json"), "coverage": result.coverage,
                          "agreement": result.agreement, "lower_bound": result.lower_bound,
                          "guarantee": result.guarantee, "policy": str(output), **read,
                          "forecast": [f.__dict__ for f in ahead]}, indent=2))  # fmt: skip
        return
    table = Table("stage", "critic", "reached", "threshold", "accepted", "agreement",
                  "requests/item",
                  title=f"critic calibrate --cascade ({result.method})")  # fmt: skip
    for i, s in enumerate(result.stages, start=1):
        table.add_row(
            str(i), shown(s.critic), str(s.reached),
            "none" if s.threshold is None else f"{s.threshold:.4g}", str(s.accepted),
            f"{s.agree / s.accepted:.1%}" if s.accepted else "",
            f"{result.requests_per_item[s.critic]:.2f}",
        )  # fmt: skip
    out.print(table)
    summary = Table(show_header=False, box=None)
    summary.add_column(style="bold")
    summary.add_column()
    _read_rows(summary, read)
    if summary.row_count:
        out.print(summary)
    out.print(f"coverage {result.coverage:.1%}; policy {output}", highlight=False)
    out.print(result.guarantee, soft_wrap=True)
    _print_forecast(ahead)


@reports_errors
def route(
    policy_path: Annotated[
        Path | None,
        typer.Option(
            "--policy",
            help="Policy YAML from `critic calibrate`.",
        ),
    ] = None,
    accept_all: Annotated[
        bool,
        typer.Option(
            "--accept-all",
            help="No policy: accept every parsed draft as the critic made it (no guarantee).",
        ),
    ] = False,
    db: Annotated[str | None, typer.Option("--db", envvar="CRITIC_DB")] = None,
    run: RunOpt = None,
    from_file: Annotated[
        Path | None,
        typer.Option(
            "--from-file",
            help='Route JSONL rows {"id","label","confidence"|"probs"}.',
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--output",
            help="Write review items (or, with --from-file, every route).",
        ),
    ] = None,
    queue: Annotated[
        str | None,
        typer.Option(
            help="Send review items to this review queue.",
        ),
    ] = None,
    audit_rate: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Override the policy.",
        ),
    ] = None,
    budget: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Override the policy's review budget.",
        ),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Override the policy's audit seed.")] = None,
    calibration_rate: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Send this seeded share of all drafts to review as calibration samples "
            "(whatever their confidence; review them in a blind queue).",
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Route a run the policy was not calibrated on (or a hand-edited policy); its "
            "accepts then carry no guarantee, and the routes say so.",
        ),
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Assign every draft accept or review, with the reason; store routes with the policy hash."""
    from critic.calibrate import load_judgments
    from critic.errors import UsageError
    from critic.routing import Policy, load_policy, policy_hash, requests_per_item, route_counts
    from critic.triage import route_judgments, route_run

    if (policy_path is None) == (not accept_all):
        raise UsageError(
            "give --policy POLICY.yaml (from critic calibrate) or --accept-all",
            hint="--accept-all ships every parsed draft as is, with no calibrated guarantee",
        )
    policy: Policy | None = None
    if policy_path is not None:
        policy = load_policy(policy_path)
        overrides = {k: v for k, v in
                     {"audit_rate": audit_rate, "budget": budget, "seed": seed,
                      "calibration_rate": calibration_rate}.items()
                     if v is not None}  # fmt: skip
        if overrides:
            from critic.routing import edited

            # Overrides are not a hand edit; a file edited by hand stays detected as one.
            mark = "edited by hand" if edited(policy) else None
            policy = policy.model_copy(update={**overrides, "content_hash": mark})
    if (from_file is None) == (db is None):
        raise UsageError("give exactly one of --db and --from-file")
    if from_file is not None:
        if policy is None:
            raise UsageError("--accept-all routes stored runs: give --db, not --from-file")
        if queue:
            raise UsageError("--queue needs --db: queues live in the database")
        routed = route_judgments(load_judgments(from_file, require_human_label=False), policy)
        counts = route_counts(routed)
        asked = requests_per_item(routed, policy.critics)
        if output is not None:
            output.write_text("".join(json.dumps(r.to_row()) + "\n" for r in routed))
        review = sum(r.decision == "review" for r in routed)
        summary: dict[str, Any] = {
            "policy_hash": policy_hash(policy),
            "counts": counts,
            "review": review,
            "accepted": len(routed) - review,
        }
        if asked:
            summary["requests_per_item"] = asked
    else:
        from critic.exports.files import json_line, replacing
        from critic.review import enqueue_review, open_stores
        from critic.store.selection import describe, select_runs

        with open_stores(db or "") as (store, queues):
            chosen = select_runs(store, run)[0]
            err.print(shown(f"routing {describe(chosen)}"), highlight=False)
            if queue:
                queues.queue(queue)  # a missing queue is an error before anything is routed
            result = route_run(store, policy, chosen.id, force=force)
            for problem in result.forced:
                err.print(shown(f"warning: --force: {problem}; accepts carry no guarantee"),
                          style="yellow", highlight=False)  # fmt: skip
            summary = result.to_dict()
            if output is not None:
                with replacing(output) as temp, temp.open("w", encoding="utf-8") as handle:
                    for row in result.review_rows:
                        handle.write(json_line(row))
            if queue:
                summary["enqueued"] = enqueue_review(store, queues, queue, result.review_rows)
    if json_out:
        print(json.dumps(summary, indent=2))
        return
    table = Table("reason", "items", title=f"critic route · policy {summary['policy_hash'][:12]}")
    for reason, count in summary["counts"].items():
        table.add_row(reason, str(count))
    table.add_row("[bold]accepted[/]", str(summary["accepted"]))
    table.add_row("[bold]to review[/]", str(summary["review"]))
    out.print(table)
    for critic, per_item in summary.get("requests_per_item", {}).items():
        out.print(f"requests to {shown(critic)}: {per_item:.2f} per item", highlight=False)
    if summary.get("enqueued") is not None:
        err.print(shown(f"{summary['enqueued']} item(s) added to queue '{queue}'"))


@reports_errors
def quality(
    db: DbOpt = DEFAULT_DB,
    run: RunOpt = None,
    confidence: IntervalOpt = 0.95,
    json_out: JsonOpt = False,
) -> None:
    """Estimate the agreement of auto-accepted labels: the exact interval from the decided audit
    sample, and PPI++ (the audits plus the critic's confidence on every accepted item)."""
    from critic.errors import UsageError
    from critic.quality import PPIEstimate
    from critic.review import audit_quality, open_stores, ppi_quality

    with open_stores(db) as (store, queues):
        chosen = [r.id for r in _runs_printed(store, run)]
        estimate = audit_quality(store, queues, chosen, confidence)
        ppi: PPIEstimate | None = None
        why: str | None = None
        try:
            ppi = ppi_quality(store, queues, chosen, confidence)
        except UsageError as exc:  # too few audits or accepted items for PPI++: keep exact
            why = exc.message
    if json_out:
        print(json.dumps({**estimate.__dict__, "summary": estimate.summary,
                          "ppi": None if ppi is None else {**ppi.__dict__,
                                                           "labels_gained": ppi.labels_gained},
                          "ppi_unavailable": why}, indent=2))  # fmt: skip
    else:
        out.print(f"exact: {estimate.summary}", soft_wrap=True)
        out.print(ppi.summary if ppi else f"PPI++: not available ({why})", soft_wrap=True)
