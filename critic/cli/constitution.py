"""`critic constitution lint | show | import | test | diff | stats`.

Everything a model or an item wrote is printed as plain text (rich `Text`), never as console markup.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Column, Table
from rich.text import Text

from critic.cli.common import (
    clip,
    err,
    make_backend,
    out,
    reports_errors,
    run_with_progress,
    shown,
)
from critic.cli.options import (
    DEFAULT_BACKEND,
    DEFAULT_BASE_URL,
    DEFAULT_DB,
    BackendOpt,
    BaseUrlOpt,
    ConcurrencyOpt,
    DbOpt,
    IntervalOpt,
    JsonOpt,
    MaxModelLenOpt,
    MaxReasksOpt,
    MaxTokensOpt,
    ModelOpt,
    PromptsOpt,
    QuietOpt,
    SamplesOpt,
    SeedOpt,
    TemperatureOpt,
    temperature_or_default,
)
from critic.errors import CriticError
from critic.text import printable
from critic.workbench import (
    CaseReport,
    ConstitutionDiff,
    FieldChange,
    ImpactReport,
    Segment,
    StatsReport,
    pct,
)

app = typer.Typer(help="Lint, show and inspect constitutions.", no_args_is_help=True)


@app.command("lint")
@reports_errors
def constitution_lint(
    paths: Annotated[list[str], typer.Argument(help="Constitution files or shipped names.")],
    json_out: JsonOpt = False,
) -> None:
    """Report every problem with file, line, field and a hint. Exit 1 on errors."""
    from critic.constitution import Problem, check, resolve

    problems: list[Problem] = []
    for path in paths:
        try:
            resolved = resolve(path)
        except CriticError as exc:
            problems.append(Problem(path, "", exc.message, exc.hint))
            continue
        constitution, found = check(resolved)
        problems.extend(found)
        if constitution is not None and not [x for x in found if x.severity == "error"]:
            err.print(shown(f"{resolved}: ok ({constitution.id} v{constitution.version}, "
                            f"hash {constitution.hash[:12]})"))  # fmt: skip
    errors = [p for p in problems if p.severity == "error"]
    if json_out:
        print(json.dumps([p.__dict__ for p in problems], indent=2))
    else:
        for p in problems:
            style = "red" if p.severity == "error" else "yellow"
            shown_p = escape(printable(p, lines=True))
            err.print(f"[{style}]{p.severity}[/]: {shown_p}", markup=True, highlight=False)
    raise typer.Exit(1 if errors else 0)


@app.command("show")
@reports_errors
def constitution_show(
    target: Annotated[str, typer.Argument(help="A file, a shipped name, or a hash with --db.")],
    db: Annotated[str | None, typer.Option(help="Read a stored version by hash.")] = None,
) -> None:
    """Print a constitution (a stored version by its hash with --db)."""
    import yaml

    from critic.constitution import load_constitution, parse_constitution
    from critic.errors import ConstitutionError

    if db:
        from critic.store import open_store

        content = open_store(db).constitution_content(target)
        if content is None:
            raise ConstitutionError(f"no constitution with hash '{target}' in {db}")
        c = parse_constitution(content, source=target)
    else:
        c = load_constitution(target)
    print(f"# hash: {c.hash}")
    print(yaml.safe_dump(c.model_dump(mode="json", exclude_none=True), sort_keys=False,
                         allow_unicode=True, width=100))  # fmt: skip


@app.command("import")
@reports_errors
def constitution_import(
    source: Annotated[Path, typer.Argument(help="The file to convert.")],
    fmt: Annotated[str, typer.Option("--from", help="hf-cai or prometheus.")],
    output: Annotated[
        Path,
        typer.Option(
            "-o",
            "--output",
            help="hf-cai: a YAML file (or directory); prometheus: a directory (a .yaml file for "
            "a single rubric).",
        ),
    ],
    constitution_id: Annotated[
        str | None,
        typer.Option(
            "--id",
            help="Id of the new constitution.",
        ),
    ] = None,
) -> None:
    """Convert a constitution or rubric file from another tool into critic YAML (linted)."""
    from critic.importers import import_constitutions

    for path, c in import_constitutions(fmt, source, output, constitution_id):
        err.print(shown(f"wrote {path} ({c.id} v{c.version}, {len(c.principles)} principle(s), "
                        f"hash {c.hash[:12]})"))  # fmt: skip


STATUS = {"pass": ("PASS", "green"), "fail": ("FAIL", "red"), "error": ("ERROR", "red")}


@app.command("test")
@reports_errors
def constitution_test(
    constitution: Annotated[
        str,
        typer.Argument(
            help="Constitution YAML file or shipped name.",
        ),
    ],
    cases: Annotated[
        Path | None,
        typer.Option(
            "--cases",
            help="Cases file (default: NAME.cases.yaml next to the constitution).",
        ),
    ] = None,
    principle: Annotated[
        list[str] | None,
        typer.Option(
            "--principle",
            "-p",
            help="Only the cases of this principle (repeatable).",
        ),
    ] = None,
    backend: BackendOpt = DEFAULT_BACKEND,
    base_url: BaseUrlOpt = DEFAULT_BASE_URL,
    model: ModelOpt = None,
    prompts: PromptsOpt = None,
    samples: SamplesOpt = 1,
    temperature: TemperatureOpt = None,
    max_tokens: MaxTokensOpt = 512,
    max_reasks: MaxReasksOpt = 2,
    seed: SeedOpt = 0,
    concurrency: ConcurrencyOpt = 64,
    max_model_len: MaxModelLenOpt = 4096,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Run a constitution's regression cases through a backend. Exit 1 if any case fails."""
    from critic.config import Sampling
    from critic.constitution import load_constitution
    from critic.workbench import cases_path, load_cases, run_cases

    c = load_constitution(constitution)
    suite = load_cases(cases or cases_path(constitution), c)
    options = Sampling(
        max_tokens=max_tokens, temperature=temperature_or_default(temperature, samples),
        samples=samples, max_reasks=max_reasks, seed=seed,
    )  # fmt: skip
    engine = make_backend(backend, base_url, model, concurrency, max_model_len=max_model_len)
    report = run_with_progress(
        quiet or json_out, "cases",
        lambda progress, on_bad_row: run_cases(
            c, suite, engine, options=options, prompts=prompts, principles=principle or [],
            concurrency=concurrency, progress=progress,
        ),
    )  # fmt: skip
    if json_out:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        _print_cases(report)
    raise typer.Exit(0 if report.ok else 1)


def _print_cases(report: CaseReport) -> None:
    table = Table(
        "", "case", "principle", "expected", "got", "cited",
        title=shown(f"critic constitution test · {report.constitution} v{report.version} "
                    f"({report.constitution_hash[:12]}) · {report.model} via {report.backend}"),
    )  # fmt: skip
    for r in report.results:
        word, style = STATUS[r.status]
        table.add_row(
            Text(word, style=style), shown(r.id), shown(r.principle), shown(r.expected),
            shown(r.got or "–"), shown(", ".join(r.cited)),
        )  # fmt: skip
    out.print(table)
    per = Table("principle", "cases", "passed", "failed", title="per principle")
    for p, counts in report.by_principle.items():
        style = "red" if counts["failed"] else ("yellow" if not counts["cases"] else "green")
        per.add_row(shown(p, style), *(str(counts[k]) for k in ("cases", "passed", "failed")))
    out.print(per)
    for r in report.results:
        if not r.passed:
            why = r.detail if r.status == "error" else f"rationale: {clip(r.rationale, 300)}"
            err.print(shown(f"{r.source}: case {r.id} ({r.principle}): expected {r.expected}, "
                            f"got {r.got or 'no verdict'}; {why}"))  # fmt: skip
    if report.untested:
        err.print(shown(f"no case exercises: {', '.join(report.untested)}", "yellow"))
    passed = len(report.results) - report.failed
    err.print(Text(f"{passed} of {len(report.results)} case(s) passed in {report.elapsed_s:.1f} s",
                   style="green" if report.ok else "red"))  # fmt: skip


@app.command("diff")
@reports_errors
def constitution_diff(
    old: Annotated[
        str,
        typer.Argument(
            help="Old version: file, shipped name, or stored hash (--db).",
        ),
    ],
    new: Annotated[
        str,
        typer.Argument(
            help="New version: file, shipped name, or stored hash (--db).",
        ),
    ],
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            envvar="CRITIC_DB",
            help="Database with stored runs (for --impact, hashes).",
        ),
    ] = None,
    impact: Annotated[
        bool,
        typer.Option(
            "--impact",
            help="Re-label what the change can affect; report what flips.",
        ),
    ] = False,
    sample: Annotated[
        int,
        typer.Option(
            min=1,
            help="At most this many items are re-labeled.",
        ),
    ] = 500,
    seed: Annotated[int, typer.Option(help="Seed of the sample.")] = 0,
    run: Annotated[
        str | None,
        typer.Option(
            help="The old version's run (default: its latest).",
        ),
    ] = None,
    queue: Annotated[
        str | None,
        typer.Option(
            help="Send flipped items to this review queue.",
        ),
    ] = None,
    max_flip_rate: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            max=1.0,
            help="Exit 1 when the flip rate is above this (for CI).",
        ),
    ] = None,
    examples: Annotated[
        int,
        typer.Option(
            min=0,
            help="Example items shown per principle.",
        ),
    ] = 3,
    backend: BackendOpt = DEFAULT_BACKEND,
    base_url: BaseUrlOpt = DEFAULT_BASE_URL,
    model: ModelOpt = None,
    prompt_field: Annotated[
        str | None,
        typer.Option(
            help="Input field holding the prompt (default: what the old run read).",
        ),
    ] = None,
    response_field: Annotated[
        str | None,
        typer.Option(
            help="Input field holding the response (default: what the old run read).",
        ),
    ] = None,
    text_field: Annotated[
        str | None,
        typer.Option(
            help="The old run judged this field alone.",
        ),
    ] = None,
    prompts: PromptsOpt = None,
    concurrency: ConcurrencyOpt = 64,
    max_model_len: MaxModelLenOpt = 4096,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
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
    report = run_with_progress(
        quiet or json_out, "re-labeling",
        lambda progress, on_bad_row: measure(
            a, b, store, engine, sample=sample, seed=seed, run_id=run, fields=fields,
            prompts=prompts, concurrency=concurrency, progress=progress,
        ),
    )  # fmt: skip
    if queue:
        report.enqueued = enqueue_flips(db, queue, report)
    if json_out:
        print(json.dumps(report.to_dict(examples), indent=2))
    else:
        _print_diff(diff, a, b)
        _print_impact(report, examples)
        if report.enqueued is not None:
            err.print(shown(f"{report.enqueued} flipped item(s) added to queue '{queue}'"))
    too_many = max_flip_rate is not None and (report.flip_rate or 0.0) > max_flip_rate
    raise typer.Exit(1 if too_many else 0)


def _words(segments: tuple[Segment, ...]) -> Text:
    styles = {"equal": "", "delete": "red strike", "insert": "green"}
    marks = {"equal": ("", ""), "delete": ("[-", "-]"), "insert": ("{+", "+}")}
    text = Text()
    for i, (op, words) in enumerate(segments):
        if i:
            text.append(" ")
        text.append(f"{marks[op][0]}{printable(words, lines=True)}{marks[op][1]}", style=styles[op])
    return text


def _change(change: FieldChange, indent: str = "  ") -> None:
    line = shown(f"{indent}{change.field}: ", "bold")
    line.append_text(_words(change.words))
    out.print(line)


def _print_diff(diff: ConstitutionDiff, old: Any, new: Any) -> None:
    out.print(shown(f"{old.id} v{old.version} ({diff.old_hash[:12]}) → {new.id} v{new.version} "
                    f"({diff.new_hash[:12]})", "bold"))  # fmt: skip
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
            out.print(shown(f"  {name} added: {', '.join(map(str, added))}", "green"))
        if removed:
            out.print(shown(f"  {name} removed: {', '.join(map(str, removed))}", "red"))
    for pid in diff.principles_added:
        out.print(shown(f"+ principle {pid}: {new.principle(pid).text}", "green", lines=True))
    for pid in diff.principles_removed:
        out.print(shown(f"- principle {pid}: {old.principle(pid).text}", "red", lines=True))
    for changed in diff.principles_changed:
        out.print(shown(f"~ principle {changed.id}", "yellow"))
        for change in changed.changes:
            _change(change, "    ")
    if diff.principles_reordered:
        out.print(shown("  principles reordered: " + ", ".join(new.principle_ids)))
    if diff.global_changes:
        out.print(shown("reaches every item: " + "; ".join(diff.global_changes), "dim"))
    elif diff.affected_principles:
        out.print(shown("reaches items citing: " + ", ".join(diff.affected_principles), "dim"))


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
    table.add_row("flipped", f"{len(report.flips)} ({pct(report.flip_rate)}, 95% {pct(lo)}–"
                             f"{pct(hi)})")  # fmt: skip
    for transition, count in report.transitions.items():
        table.add_row(shown(f"  {transition}"), str(count))
    table.add_row("elapsed", f"{report.elapsed_s:.1f} s")
    out.print(table)
    per = Table("principle", "changed", "items", "flipped", "flip rate", title="per principle")
    for p, v in report.by_principle.items():
        per.add_row(shown(p), "yes" if v["changed"] else "", str(v["items"]), str(v["flipped"]),
                    pct(v["flip_rate"]))  # fmt: skip
    out.print(per)
    listed: set[str] = set()
    ex = Table("item", "old → new", "cites (new)", "text", title="examples of flipped items")
    for v in report.by_principle.values():
        for flip in v["examples"][:examples]:
            if flip.item_id in listed:
                continue
            listed.add(flip.item_id)
            ex.add_row(
                shown(flip.item_id), shown(f"{flip.old} → {flip.new}"),
                shown(", ".join(flip.new_principles)), shown(clip(flip.snippet, 100)),
            )  # fmt: skip
    if listed:
        out.print(ex)
    for warning in report.warnings:
        err.print(shown(f"warning: {warning}", "yellow"))


@app.command("stats")
@reports_errors
def constitution_stats(
    db: DbOpt = DEFAULT_DB,
    queue: Annotated[
        list[str] | None,
        typer.Option(
            "--queue",
            help="Only this queue (repeatable).",
        ),
    ] = None,
    constitution: Annotated[
        str | None,
        typer.Option(
            "--constitution",
            "-c",
            help="Only items drafted under this constitution id.",
        ),
    ] = None,
    html: Annotated[
        Path | None,
        typer.Option(
            "--html",
            help="Write a static HTML report with PNG plots into this directory.",
        ),
    ] = None,
    examples: Annotated[
        int,
        typer.Option(
            min=0,
            help="Overturned example items per principle.",
        ),
    ] = 3,
    confidence: IntervalOpt = 0.95,
    json_out: JsonOpt = False,
) -> None:
    """What humans overturn, by principle: override rate with an exact interval, agreement,
    constitution-gap flags (notes with #gap) and examples."""
    from critic.workbench import decision_stats, write_stats_html

    report = decision_stats(
        db, queues=queue or [], constitution=constitution, examples=examples, confidence=confidence
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
        title=shown(f"critic constitution stats · {', '.join(constitutions)} · {o.decisions} "
                    f"review decision(s) on {o.items} item(s) · queues: "
                    f"{', '.join(report.queues) or 'none'}"),
    )  # fmt: skip
    for p in [*report.principles, o]:
        name = f"{p.constitution}:{p.principle}" if multi and p.constitution else p.principle
        note = f"{p.top_notes[0][0]} ×{p.top_notes[0][1]}" if p.top_notes else ""
        rate = "–" if p.override_rate is None else f"{p.override_rate:.0%}"
        table.add_row(
            shown(name, "bold" if p is o else ""), str(p.decisions),
            f"{rate} ({p.interval[0]:.0%}–{p.interval[1]:.0%})",
            f"{p.agreement:.0%} of {p.agreement_items}" if p.agreement is not None else "–",
            str(p.escalations), str(p.gap_flags), shown(clip(note, 60)),
        )  # fmt: skip
    out.print(table)
    ex = Table(Column("principle", no_wrap=True), Column("item", no_wrap=True), "critic",
               "human", "note", "text", title="overturned drafts")  # fmt: skip
    for p in report.principles:
        for e in p.examples:
            ex.add_row(shown(p.principle), shown(e.item_id), shown(e.critic_label or "–"),
                       shown(f"{e.action} {e.label or ''}"), shown(clip(e.note, 40)),
                       shown(clip(e.snippet, 80)))  # fmt: skip
    if ex.row_count:
        out.print(ex)
