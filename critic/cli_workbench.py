"""`critic constitution test | diff | stats`: the workbench commands, on `constitution_app`.

Importing this module registers them; `critic.cli` imports it. Everything a model or an item
wrote is printed as plain text (rich `Text`), never as console markup.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.table import Column, Table
from rich.text import Text

from critic.cli import (
    BackendOpt,
    BaseUrlOpt,
    ConcurrencyOpt,
    DbOpt,
    ModelOpt,
    _progress,
    constitution_app,
    err,
    make_backend,
    out,
    reports_errors,
)
from critic.workbench import (
    CaseReport,
    ConstitutionDiff,
    FieldChange,
    ImpactReport,
    Segment,
    StatsReport,
)

STATUS = {"pass": ("PASS", "green"), "fail": ("FAIL", "red"), "error": ("ERROR", "red")}


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"


def _clip(text: str | None, width: int = 80) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


@constitution_app.command("test")
@reports_errors
def constitution_test(
    constitution: str = typer.Argument(..., help="Constitution YAML file or shipped name."),
    cases: Path | None = typer.Option(
        None, "--cases", help="Cases file (default: NAME.cases.yaml next to the constitution)."
    ),
    principle: list[str] = typer.Option(
        [], "--principle", "-p", help="Only the cases of this principle (repeatable)."
    ),
    backend: str = BackendOpt,
    base_url: str = BaseUrlOpt,
    model: str | None = ModelOpt,
    prompts: Path | None = typer.Option(None, help="Directory of prompt templates to use."),
    samples: int = typer.Option(1, min=1, help="Samples per case (majority verdict)."),
    temperature: float | None = typer.Option(
        None, min=0.0, help="Sampling temperature (default 0, or 1.0 with --samples > 1)."
    ),
    max_tokens: int = typer.Option(512, min=16, help="Token limit per answer."),
    max_reasks: int = typer.Option(2, min=0, help="Re-asks after an invalid answer."),
    seed: int = typer.Option(0, help="Sampling seed."),
    concurrency: int = ConcurrencyOpt,
    max_model_len: int = typer.Option(4096, help="Context length (in-process vllm backend)."),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON (for CI)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Run a constitution's regression cases through a backend. Exit 1 if any case fails."""
    from critic.constitution import load_constitution
    from critic.labeling import LabelOptions
    from critic.workbench import cases_path, load_cases, run_cases

    c = load_constitution(constitution)
    suite = load_cases(cases or cases_path(constitution), c)
    if temperature is None:
        temperature = 1.0 if samples > 1 else 0.0
    options = LabelOptions(
        max_tokens=max_tokens, temperature=temperature, samples=samples,
        max_reasks=max_reasks, seed=seed,
    )  # fmt: skip
    engine = make_backend(backend, base_url, model, concurrency, max_model_len=max_model_len)
    with _progress(enabled=not quiet and not json_out) as bar:
        task_id = bar.add_task("cases", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task_id, completed=done, total=total)

        report = run_cases(
            c, suite, engine, options=options, prompts=prompts, principles=principle,
            concurrency=concurrency, progress=progress,
        )  # fmt: skip
    if json_out:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        _print_cases(report)
    raise typer.Exit(0 if report.ok else 1)


def _print_cases(report: CaseReport) -> None:
    table = Table(
        "", "case", "principle", "expected", "got", "cited",
        title=f"critic constitution test · {report.constitution} v{report.version} "
        f"({report.constitution_hash[:12]}) · {report.model} via {report.backend}",
    )  # fmt: skip
    for r in report.results:
        word, style = STATUS[r.status]
        table.add_row(
            Text(word, style=style), Text(r.id), Text(r.principle), Text(r.expected),
            Text(r.got or "–"), Text(", ".join(r.cited)),
        )  # fmt: skip
    out.print(table)
    per = Table("principle", "cases", "passed", "failed", title="per principle")
    for p, counts in report.by_principle.items():
        style = "red" if counts["failed"] else ("yellow" if not counts["cases"] else "green")
        per.add_row(Text(p, style=style), *(str(counts[k]) for k in ("cases", "passed", "failed")))
    out.print(per)
    for r in report.results:
        if not r.passed:
            why = r.detail if r.status == "error" else f"rationale: {_clip(r.rationale, 300)}"
            err.print(Text(f"{r.source}: case {r.id} ({r.principle}): expected {r.expected}, "
                           f"got {r.got or 'no verdict'}; {why}"))  # fmt: skip
    if report.untested:
        err.print(Text(f"no case exercises: {', '.join(report.untested)}", style="yellow"))
    passed = len(report.results) - report.failed
    err.print(Text(f"{passed} of {len(report.results)} case(s) passed in {report.elapsed_s:.1f} s",
                   style="green" if report.ok else "red"))  # fmt: skip


@constitution_app.command("diff")
@reports_errors
def constitution_diff(
    old: str = typer.Argument(..., help="Old version: file, shipped name, or stored hash (--db)."),
    new: str = typer.Argument(..., help="New version: file, shipped name, or stored hash (--db)."),
    db: str | None = typer.Option(
        None, "--db", envvar="CRITIC_DB", help="Database with stored runs (for --impact, hashes)."
    ),
    impact: bool = typer.Option(
        False, "--impact", help="Re-label what the change can affect; report what flips."
    ),
    sample: int = typer.Option(500, min=1, help="At most this many items are re-labeled."),
    seed: int = typer.Option(0, help="Seed of the sample."),
    run: str | None = typer.Option(None, help="The old version's run (default: its latest)."),
    queue: str | None = typer.Option(None, help="Send flipped items to this review queue."),
    max_flip_rate: float | None = typer.Option(
        None, min=0.0, max=1.0, help="Exit 1 when the flip rate is above this (for CI)."
    ),
    examples: int = typer.Option(3, min=0, help="Example items shown per principle."),
    backend: str = BackendOpt,
    base_url: str = BaseUrlOpt,
    model: str | None = ModelOpt,
    prompt_field: str | None = typer.Option(
        None, help="Input field holding the prompt (default: what the old run read)."
    ),
    response_field: str | None = typer.Option(
        None, help="Input field holding the response (default: what the old run read)."
    ),
    text_field: str | None = typer.Option(None, help="The old run judged this field alone."),
    prompts: Path | None = typer.Option(None, help="Directory of prompt templates to use."),
    concurrency: int = ConcurrencyOpt,
    max_model_len: int = typer.Option(4096, help="Context length (in-process vllm backend)."),
    json_out: bool = typer.Option(False, "--json", help="Print the diff (and impact) as JSON."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """What changed between two versions, by principle; with --impact, what the change flips."""
    from critic.errors import UsageError
    from critic.items import Fields
    from critic.store import open_store
    from critic.workbench import diff_constitutions, enqueue_flips, load_version
    from critic.workbench import impact as measure

    if (impact or queue or max_flip_rate is not None) and not db:
        raise UsageError("--impact needs --db: the old version's drafts are read from it")
    if (queue or max_flip_rate is not None) and not impact:
        raise UsageError("--queue and --max-flip-rate go with --impact")
    store = open_store(db) if db else None
    a, b = load_version(old, store), load_version(new, store)
    diff = diff_constitutions(a, b)
    if not impact:
        if json_out:
            print(json.dumps(diff.to_dict(), indent=2))
        else:
            _print_diff(diff, a, b)
        return
    assert store is not None and db is not None
    engine = make_backend(backend, base_url, model, concurrency, max_model_len=max_model_len)
    fields = None  # the columns stored with the old run, unless any is given here
    if prompt_field or response_field or text_field:
        fields = Fields(
            prompt=prompt_field or "prompt", response=response_field or "response", text=text_field
        )
    with _progress(enabled=not quiet and not json_out) as bar:
        task_id = bar.add_task("re-labeling", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task_id, completed=done, total=total)

        report = measure(
            a, b, store, engine, sample=sample, seed=seed, run_id=run, fields=fields,
            prompts=prompts, concurrency=concurrency, progress=progress,
        )  # fmt: skip
    if queue:
        report.enqueued = enqueue_flips(db, queue, report)
    if json_out:
        print(json.dumps(report.to_dict(examples), indent=2))
    else:
        _print_diff(diff, a, b)
        _print_impact(report, examples)
        if report.enqueued is not None:
            err.print(f"{report.enqueued} flipped item(s) added to queue '{queue}'",
                      highlight=False, markup=False)  # fmt: skip
    too_many = max_flip_rate is not None and (report.flip_rate or 0.0) > max_flip_rate
    raise typer.Exit(1 if too_many else 0)


def _words(segments: tuple[Segment, ...]) -> Text:
    styles = {"equal": "", "delete": "red strike", "insert": "green"}
    marks = {"equal": ("", ""), "delete": ("[-", "-]"), "insert": ("{+", "+}")}
    text = Text()
    for i, (op, words) in enumerate(segments):
        if i:
            text.append(" ")
        text.append(f"{marks[op][0]}{words}{marks[op][1]}", style=styles[op])
    return text


def _change(change: FieldChange, indent: str = "  ") -> None:
    line = Text(f"{indent}{change.field}: ", style="bold")
    line.append_text(_words(change.words))
    out.print(line)


def _print_diff(diff: ConstitutionDiff, old: Any, new: Any) -> None:
    out.print(Text(f"{old.id} v{old.version} ({diff.old_hash[:12]}) → {new.id} v{new.version} "
                   f"({diff.new_hash[:12]})", style="bold"))  # fmt: skip
    if diff.identical:
        out.print("no changes (same content hash)")
        return
    for change in (*diff.meta, *diff.task):
        _change(change)
    for name, added, removed in (
        ("labels", diff.labels_added, diff.labels_removed),
        ("levels", diff.levels_added, diff.levels_removed),
    ):
        if added:
            out.print(Text(f"  {name} added: {', '.join(map(str, added))}", style="green"))
        if removed:
            out.print(Text(f"  {name} removed: {', '.join(map(str, removed))}", style="red"))
    for pid in diff.principles_added:
        out.print(Text(f"+ principle {pid}: {new.principle(pid).text}", style="green"))
    for pid in diff.principles_removed:
        out.print(Text(f"- principle {pid}: {old.principle(pid).text}", style="red"))
    for changed in diff.principles_changed:
        out.print(Text(f"~ principle {changed.id}", style="yellow"))
        for change in changed.changes:
            _change(change, "    ")
    if diff.principles_reordered:
        out.print(Text("  principles reordered: " + ", ".join(new.principle_ids)))
    if diff.global_changes:
        out.print(Text("reaches every item: " + "; ".join(diff.global_changes), style="dim"))
    elif diff.affected_principles:
        out.print(Text("reaches items citing: " + ", ".join(diff.affected_principles), style="dim"))


def _print_impact(report: ImpactReport, examples: int) -> None:
    lo, hi = report.flip_interval
    table = Table(title="impact", show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("old run → new run", f"{report.old['run_id']} → {report.new['run_id']}")
    table.add_row("selected", Text(f"{report.selected} of {report.population} ({report.mode}: "
                                   f"{report.reason})"))  # fmt: skip
    table.add_row("re-labeled now / already stored",
                  f"{report.relabeled} / {report.selected - report.relabeled}")  # fmt: skip
    table.add_row("compared", str(report.compared))
    if report.failed:
        table.add_row("new version failed", str(report.failed))
    table.add_row("flipped", f"{len(report.flips)} ({_pct(report.flip_rate)}, 95% {_pct(lo)}–"
                             f"{_pct(hi)})")  # fmt: skip
    for transition, count in report.transitions.items():
        table.add_row(f"  {transition}", str(count))
    table.add_row("elapsed", f"{report.elapsed_s:.1f} s")
    out.print(table)
    per = Table("principle", "changed", "items", "flipped", "flip rate", title="per principle")
    for p, v in report.by_principle.items():
        per.add_row(Text(p), "yes" if v["changed"] else "", str(v["items"]), str(v["flipped"]),
                    _pct(v["flip_rate"]))  # fmt: skip
    out.print(per)
    shown: set[str] = set()
    ex = Table("item", "old → new", "cites (new)", "text", title="examples of flipped items")
    for v in report.by_principle.values():
        for flip in v["examples"][:examples]:
            if flip.item_id in shown:
                continue
            shown.add(flip.item_id)
            ex.add_row(
                Text(flip.item_id), Text(f"{flip.old} → {flip.new}"),
                Text(", ".join(flip.new_principles)), Text(_clip(flip.snippet, 100)),
            )  # fmt: skip
    if shown:
        out.print(ex)
    for warning in report.warnings:
        err.print(Text(f"warning: {warning}", style="yellow"))


@constitution_app.command("stats")
@reports_errors
def constitution_stats(
    db: str = DbOpt,
    queue: list[str] = typer.Option([], "--queue", help="Only this queue (repeatable)."),
    constitution: str | None = typer.Option(
        None, "--constitution", "-c", help="Only items drafted under this constitution id."
    ),
    html: Path | None = typer.Option(
        None, "--html", help="Write a static HTML report with PNG plots into this directory."
    ),
    examples: int = typer.Option(3, min=0, help="Overturned example items per principle."),
    confidence: float = typer.Option(0.95, min=0.5, max=0.999, help="Interval confidence."),
    json_out: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """What humans overturn, by principle: override rate with an exact interval, agreement,
    constitution-gap flags (notes with #gap) and examples."""
    from critic.workbench import decision_stats, write_stats_html

    report = decision_stats(
        db, queues=queue, constitution=constitution, examples=examples, confidence=confidence
    )
    if html is not None:
        page = write_stats_html(report, html)
        err.print(Text(f"wrote {page}"))
    if json_out:
        print(json.dumps(report.to_dict(), indent=2, default=str))
    else:
        _print_stats(report)


def _print_stats(report: StatsReport) -> None:
    o = report.overall
    constitutions = sorted({p.constitution or "?" for p in report.principles})
    multi = len(constitutions) > 1
    table = Table(
        Column("principle", no_wrap=True), Column("n", no_wrap=True),
        Column(f"overturned ({report.confidence:.0%} CI)", no_wrap=True),
        Column("agreement", no_wrap=True), "esc.", "gaps", "most frequent note",
        title=f"critic constitution stats · {', '.join(constitutions)} · {o.decisions} review "
        f"decision(s) on {o.items} item(s) · queues: {', '.join(report.queues) or 'none'}",
    )  # fmt: skip
    for p in [*report.principles, o]:
        name = f"{p.constitution}:{p.principle}" if multi and p.constitution else p.principle
        note = f"{p.top_notes[0][0]} ×{p.top_notes[0][1]}" if p.top_notes else ""
        rate = "–" if p.override_rate is None else f"{p.override_rate:.0%}"
        table.add_row(
            Text(name, style="bold" if p is o else ""), str(p.decisions),
            f"{rate} ({p.interval[0]:.0%}–{p.interval[1]:.0%})",
            f"{p.agreement:.0%} of {p.agreement_items}" if p.agreement is not None else "–",
            str(p.escalations), str(p.gap_flags), Text(_clip(note, 60)),
        )  # fmt: skip
    out.print(table)
    ex = Table(Column("principle", no_wrap=True), Column("item", no_wrap=True), "critic",
               "human", "note", "text", title="overturned drafts")  # fmt: skip
    for p in report.principles:
        for e in p.examples:
            ex.add_row(Text(p.principle), Text(e.item_id), Text(e.critic_label or "–"),
                       Text(f"{e.action} {e.label or ''}"), Text(_clip(e.note, 40)),
                       Text(_clip(e.snippet, 80)))  # fmt: skip
    if ex.row_count:
        out.print(ex)
