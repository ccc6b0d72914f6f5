"""`critic label`, `critic revise` and `critic compare`: run a task over a dataset."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from critic.cli.common import (
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
    ConstitutionOpt,
    DbOpt,
    IdFieldOpt,
    InputArg,
    JsonOpt,
    LimitOpt,
    MaxModelLenOpt,
    MaxReasksOpt,
    MaxTokensOpt,
    ModelOpt,
    PromptFieldOpt,
    PromptsOpt,
    QuietOpt,
    ResponseFieldOpt,
    RetryFailedOpt,
    SamplesOpt,
    SeedOpt,
    SplitOpt,
    TemperatureOpt,
    temperature_or_default,
)

if TYPE_CHECKING:
    from critic.backends.base import Backend
    from critic.items import Fields


def finish_run(
    summary: Any, command: str, db: str, json_out: bool,
    cascade: dict[str, dict[str, int]] | None = None,
) -> None:  # fmt: skip
    """Print a run's summary (a table, or JSON) and exit 0, or 1 when items failed or wait.

    `cascade`: for a cascade run, how many items each stage settled (`settled`) and how many
    each critic was asked about (`asked`)."""
    if json_out:
        print(json.dumps({**summary.to_dict(), **(cascade or {})}, indent=2))
    else:
        out.print(summary_table(summary, command))
        if cascade is not None:
            items = max(1, sum(cascade["settled"].values()))
            for critic, count in cascade["asked"].items():
                out.print(shown(f"asked {critic}: {count} items ({count / items:.2f} per item)"))
            for stage, count in cascade["settled"].items():
                out.print(shown(f"settled by {stage}: {count}"))
        if summary.failed:
            err.print(
                f"{summary.failed} item(s) failed; they are recorded with their reasons "
                f"(`critic export --db {db} ...`). Retry them with --retry-failed.",
                highlight=False,
            )
    raise typer.Exit(1 if summary.failed or summary.pending else 0)


def summary_table(summary: Any, command: str = "label") -> Table:
    """The closing table of a run (also shown by `make demo`)."""
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
        table.add_row(shown(f"  label {name}"), str(count))
    for reason, count in sorted(summary.failures.items(), key=lambda kv: -kv[1]):
        table.add_row(shown(f"  failed: {reason}"), str(count))
    table.add_row(
        "tokens (prompt / completion)", f"{summary.prompt_tokens} / {summary.completion_tokens}"
    )
    table.add_row(
        "requests (this run / stored)", f"{summary.requests_this_run} / {summary.requests}"
    )
    for server in summary.servers:
        down = "" if server["up"] else f", down: {server['last_error']}"
        table.add_row(f"  {server['url']}", f"{server['requests']} sent{down}")
    table.add_row("elapsed", f"{summary.elapsed_s:.1f} s")
    table.add_row("items/s", f"{summary.items_per_s:.2f}")
    table.add_row(
        "constitution", shown(f"{summary.constitution} ({summary.constitution_hash[:12]})")
    )
    table.add_row("model", shown(f"{summary.model} via {summary.backend}"))
    table.add_row("database", shown(summary.db))
    return table


def _run_task(
    task: str,
    doing: str,
    source: str,
    constitution: str,
    options: Any,
    fields: Fields,
    *,
    backend: Backend,
    db: str,
    split: str | None,
    prompts: Path | None,
    limit: int | None,
    retry_failed: bool,
    concurrency: int,
    json_out: bool,
    quiet: bool,
    critics: Sequence[Backend] = (),
) -> None:
    """Run `task` under a progress bar, print its summary and exit with its status."""
    from critic.config import InputSpec, RunControl
    from critic.constitution import load_constitution
    from critic.store import open_store
    from critic.tasks import run

    c = load_constitution(constitution)
    store = open_store(db)
    summary = run_with_progress(
        quiet or json_out, doing,
        lambda **hooks: run(
            task, source, c, backend, store, options=options, critics=critics,
            input=InputSpec(fields=fields, split=split, prompts=prompts, limit=limit),
            control=RunControl(concurrency=concurrency, retry_failed=retry_failed), **hooks,
        ),
    )  # fmt: skip
    finish_run(summary, task, db, json_out)


def _label_cascade(
    source: str,
    constitution: str,
    sampling: Any,
    fields: Fields,
    escalate_to: Sequence[str],
    urls: Sequence[str],
    policy_path: Path | None,
    *,
    backend: Backend,
    make: Any,
    db: str,
    split: str | None,
    prompts: Path | None,
    limit: int | None,
    retry_failed: bool,
    concurrency: int,
    json_out: bool,
    quiet: bool,
    critics: Sequence[str],
) -> None:
    """`label --escalate-to ... --policy P`: the live cascade (critic.tasks.cascade)."""
    from critic.constitution import load_constitution
    from critic.errors import UsageError
    from critic.routing import load_policy
    from critic.store import open_store
    from critic.tasks.cascade import asked_counts, label_cascade, settled_counts

    if policy_path is None or not escalate_to:
        raise UsageError("a live cascade needs both --escalate-to MODEL and --policy cascade.yaml")
    if critics:
        raise UsageError("--critic (a panel) and --escalate-to (a cascade) do not mix")
    if len(urls) > len(escalate_to):
        raise UsageError("give at most one --escalate-base-url per --escalate-to")
    policy = load_policy(policy_path)
    later = [make(name, urls[i] if i < len(urls) else None) for i, name in enumerate(escalate_to)]
    c = load_constitution(constitution)
    store = open_store(db)
    summary = run_with_progress(
        quiet or json_out, "labeling (cascade)",
        lambda **hooks: label_cascade(
            source, c, backend, store, escalate_to=later, policy=policy, options=sampling,
            fields=fields, split=split, prompts=prompts, limit=limit,
            retry_failed=retry_failed, concurrency=concurrency, **hooks,
        ),
    )  # fmt: skip
    counts = {"settled": settled_counts(store, summary.run_id),
              "asked": asked_counts(store, summary.run_id)}  # fmt: skip
    finish_run(summary, "label", db, json_out, counts)


@reports_errors
def label(
    input: InputArg,
    constitution: ConstitutionOpt,
    backend: BackendOpt = DEFAULT_BACKEND,
    base_url: BaseUrlOpt = DEFAULT_BASE_URL,
    model: ModelOpt = None,
    db: DbOpt = DEFAULT_DB,
    id_field: IdFieldOpt = None,
    prompt_field: PromptFieldOpt = "prompt",
    response_field: ResponseFieldOpt = "response",
    text_field: Annotated[
        str | None, typer.Option(help="Judge this field alone (no prompt).")
    ] = None,
    split: SplitOpt = None,
    prompts: PromptsOpt = None,
    samples: SamplesOpt = 1,
    logprobs: Annotated[
        int | None,
        typer.Option(
            "--logprobs",
            min=1,
            max=20,
            help="Ask for top-K logprobs (label probabilities).",
        ),
    ] = None,
    temperature: TemperatureOpt = None,
    max_tokens: MaxTokensOpt = 512,
    max_reasks: MaxReasksOpt = 2,
    seed: SeedOpt = 0,
    concurrency: ConcurrencyOpt = 64,
    max_model_len: MaxModelLenOpt = 4096,
    retry_failed: RetryFailedOpt = False,
    limit: LimitOpt = None,
    critic: Annotated[
        list[str] | None,
        typer.Option(
            "--critic",
            help="A further critic model (same backend and server); repeat for more. Their "
            "agreement becomes part of the confidence.",
        ),
    ] = None,
    escalate_to: Annotated[
        list[str] | None,
        typer.Option(
            "--escalate-to",
            help="A cascade: ask this critic model only for items the one before did not "
            "settle under --policy; repeat for more stages.",
        ),
    ] = None,
    escalate_base_url: Annotated[
        list[str] | None,
        typer.Option(
            "--escalate-base-url",
            help="The server of each --escalate-to model, in order (default: --base-url).",
        ),
    ] = None,
    policy: Annotated[
        Path | None,
        typer.Option(help="The cascade policy (critic calibrate --cascade) for --escalate-to."),
    ] = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Label a dataset against a constitution. Rerun the same command to resume."""
    from critic.config import Sampling
    from critic.items import Fields

    sampling = Sampling(
        max_tokens=max_tokens, temperature=temperature_or_default(temperature, samples),
        samples=samples, top_logprobs=logprobs, max_reasks=max_reasks, seed=seed,
    )  # fmt: skip
    fields = Fields(id=id_field, prompt=prompt_field, response=response_field, text=text_field)
    if escalate_to or policy is not None:
        _label_cascade(
            input, constitution, sampling, fields, escalate_to or [], escalate_base_url or [],
            policy, backend=make_backend(backend, base_url, model, concurrency,
                                         max_model_len=max_model_len),
            make=lambda name, url: make_backend(backend, url or base_url, name, concurrency,
                                                max_model_len=max_model_len),
            db=db, split=split, prompts=prompts, limit=limit, retry_failed=retry_failed,
            concurrency=concurrency, json_out=json_out, quiet=quiet, critics=critic or [],
        )  # fmt: skip
        return
    panel = [
        make_backend(backend, base_url, name, concurrency, max_model_len=max_model_len)
        for name in critic or []
    ]
    _run_task(
        "label", "labeling", input, constitution, sampling, fields, critics=panel,
        backend=make_backend(backend, base_url, model, concurrency, max_model_len=max_model_len),
        db=db, split=split, prompts=prompts, limit=limit, retry_failed=retry_failed,
        concurrency=concurrency, json_out=json_out, quiet=quiet,
    )  # fmt: skip


@reports_errors
def revise(
    input: InputArg,
    constitution: ConstitutionOpt,
    backend: BackendOpt = DEFAULT_BACKEND,
    base_url: BaseUrlOpt = DEFAULT_BASE_URL,
    model: ModelOpt = None,
    db: DbOpt = DEFAULT_DB,
    id_field: IdFieldOpt = None,
    prompt_field: PromptFieldOpt = "prompt",
    response_field: ResponseFieldOpt = "response",
    split: SplitOpt = None,
    prompts: PromptsOpt = None,
    rounds: Annotated[int, typer.Option(min=1, help="Critique → revision rounds per item.")] = 2,
    max_revision_chars: Annotated[
        int,
        typer.Option(
            min=16,
            help="Length bound of a revision.",
        ),
    ] = 2000,
    temperature: TemperatureOpt = None,
    max_tokens: MaxTokensOpt = 1024,
    max_reasks: MaxReasksOpt = 2,
    seed: SeedOpt = 0,
    concurrency: ConcurrencyOpt = 64,
    max_model_len: MaxModelLenOpt = 4096,
    retry_failed: RetryFailedOpt = False,
    limit: LimitOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Critique and revise each (prompt, response) for N rounds. Rerun to resume.

    The constitution needs a critique and a revision request on every principle.
    """
    from critic.config import Sampling
    from critic.items import Fields
    from critic.tasks.revise import ReviseOptions

    options = ReviseOptions(
        rounds=rounds, max_revision_chars=max_revision_chars,
        sampling=Sampling(max_tokens=max_tokens, temperature=temperature_or_default(temperature),
                          max_reasks=max_reasks, seed=seed),
    )  # fmt: skip
    _run_task(
        "revise", "revising", input, constitution, options,
        Fields(id=id_field, prompt=prompt_field, response=response_field),
        backend=make_backend(backend, base_url, model, concurrency, max_model_len=max_model_len),
        db=db, split=split, prompts=prompts, limit=limit, retry_failed=retry_failed,
        concurrency=concurrency, json_out=json_out, quiet=quiet,
    )  # fmt: skip


@reports_errors
def compare(
    input: InputArg,
    constitution: ConstitutionOpt,
    backend: BackendOpt = DEFAULT_BACKEND,
    base_url: BaseUrlOpt = DEFAULT_BASE_URL,
    model: ModelOpt = None,
    db: DbOpt = DEFAULT_DB,
    id_field: IdFieldOpt = None,
    prompt_field: PromptFieldOpt = "prompt",
    a_field: Annotated[str, typer.Option(help="Input field holding the first response.")] = (
        "response_a"
    ),
    b_field: Annotated[str, typer.Option(help="Input field holding the second response.")] = (
        "response_b"
    ),
    split: SplitOpt = None,
    prompts: PromptsOpt = None,
    principles_per_item: Annotated[
        int,
        typer.Option(
            min=1,
            help="Principles sampled per pair (each judged in both orders).",
        ),
    ] = 1,
    logprobs: Annotated[
        int,
        typer.Option(
            min=0,
            max=20,
            help="Top-K logprobs for preference probabilities; 0 = votes only.",
        ),
    ] = 5,
    tie_margin: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=0.49,
            help="Call a tie when P(a preferred) is within this of 0.5.",
        ),
    ] = 0.05,
    temperature: TemperatureOpt = None,
    max_tokens: MaxTokensOpt = 512,
    max_reasks: MaxReasksOpt = 2,
    seed: SeedOpt = 0,
    concurrency: ConcurrencyOpt = 64,
    max_model_len: MaxModelLenOpt = 4096,
    retry_failed: RetryFailedOpt = False,
    limit: LimitOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Judge which of two responses better follows sampled principles, in both orders.

    The constitution is pairwise, with labels A and B (and optionally tie).
    """
    from critic.config import Sampling
    from critic.items import Fields
    from critic.tasks.compare import CompareOptions

    options = CompareOptions(
        principles_per_item=principles_per_item, tie_margin=tie_margin,
        sampling=Sampling(max_tokens=max_tokens, temperature=temperature_or_default(temperature),
                          top_logprobs=logprobs or None, max_reasks=max_reasks, seed=seed),
    )  # fmt: skip
    _run_task(
        "compare", "comparing", input, constitution, options,
        Fields(id=id_field, prompt=prompt_field, a=a_field, b=b_field),
        backend=make_backend(backend, base_url, model, concurrency, max_model_len=max_model_len),
        db=db, split=split, prompts=prompts, limit=limit, retry_failed=retry_failed,
        concurrency=concurrency, json_out=json_out, quiet=quiet,
    )  # fmt: skip
