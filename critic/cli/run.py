"""`critic label`, `critic revise` and `critic compare`: run a task over a dataset."""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable, Sequence
from dataclasses import MISSING, Field, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, get_type_hints

import typer
from rich.table import Table

from critic.cli.common import (
    backend_spec,
    err,
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
    MaxLineBytesOpt,
    MaxModelLenOpt,
    MaxReasksOpt,
    MaxTokensOpt,
    ModelOpt,
    PromptFieldOpt,
    PromptsOpt,
    QuietOpt,
    RayAddressOpt,
    RayOpt,
    RayWorkersOpt,
    ResponseFieldOpt,
    RetryFailedOpt,
    SamplesOpt,
    SeedOpt,
    SplitOpt,
    TemperatureOpt,
    temperature_or_default,
)
from critic.items import MAX_LINE_BYTES

if TYPE_CHECKING:
    from critic.backends.base import Backend
    from critic.config import BackendSpec
    from critic.items import Fields


NO_SIGNAL = (
    "warning: this run measures no confidence signal (no logprobs, one sample, one critic): "
    "every confidence is 0, so a calibrated policy reviews every item. Ask for --logprobs K, "
    "--samples N or another --critic."
)


def finish_run(
    summary: Any, command: str, db: str, json_out: bool,
    cascade: dict[str, dict[str, int]] | None = None, extra: dict[str, Any] | None = None,
) -> None:  # fmt: skip
    """Print a run's summary (a table, or JSON) and exit 0, or 1 when items failed or wait.

    `cascade`: for a cascade run, how many items each stage settled (`settled`) and how many
    each critic was asked about (`asked`)."""
    if json_out:
        print(json.dumps({**summary.to_dict(), **(cascade or {}), **(extra or {})}, indent=2))
    else:
        out.print(summary_table(summary, command))
        if (extra or {}).get("confidence_signal") == "none":
            err.print(NO_SIGNAL, style="yellow", highlight=False)
        if cascade is not None:
            items = max(1, sum(cascade["settled"].values()))
            for critic, count in cascade["asked"].items():
                out.print(shown(f"asked {critic}: {count} items ({count / items:.2f} per item)"))
            for stage, count in cascade["settled"].items():
                out.print(shown(f"settled by {stage}: {count}"))
        if summary.failed:
            # Bad input rows fail again on every retry: only the others are worth one.
            retryable = summary.failed - summary.failures.get("invalid_input", 0)
            err.print(
                f"{summary.failed} item(s) failed; they are recorded with their reasons "
                f"(`critic export --db {db} ...`). "
                + ("Retry them with --retry-failed." if retryable else
                   "They are bad input rows: fix them in the input; --retry-failed cannot help."),
                highlight=False,
            )  # fmt: skip
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


@dataclass(frozen=True)
class RunFlags:
    """The flags label, revise and compare all take, listed once (`takes_run_flags`)."""

    input: InputArg
    constitution: ConstitutionOpt
    backend: BackendOpt = DEFAULT_BACKEND
    base_url: BaseUrlOpt = field(default_factory=lambda: list(DEFAULT_BASE_URL))
    model: ModelOpt = None
    db: DbOpt = DEFAULT_DB
    id_field: IdFieldOpt = None
    prompt_field: PromptFieldOpt = field(default_factory=lambda: ["prompt"])
    split: SplitOpt = None
    prompts: PromptsOpt = None
    temperature: TemperatureOpt = None
    max_reasks: MaxReasksOpt = 2
    seed: SeedOpt = 0
    concurrency: ConcurrencyOpt = 64
    max_model_len: MaxModelLenOpt = 4096
    retry_failed: RetryFailedOpt = False
    limit: LimitOpt = None
    max_line_bytes: MaxLineBytesOpt = MAX_LINE_BYTES
    ray: RayOpt = False
    ray_address: RayAddressOpt = None
    ray_workers: RayWorkersOpt = 2
    json_out: JsonOpt = False
    quiet: QuietOpt = False

    @property
    def prompt_fields(self) -> tuple[str, ...]:
        """`--prompt-field`, as `Fields.prompt` takes it (one or several columns)."""
        return tuple(self.prompt_field)

    def backend_spec(self, model: str | None, base_url: str | None = None) -> BackendSpec:
        """The backend these flags name, serving `model` (at `base_url`, default `--base-url`)."""
        return backend_spec(
            self.backend, base_url or self.base_url, model, self.concurrency,
            max_model_len=self.max_model_len,
        )  # fmt: skip

    def make_backend(self, model: str | None, base_url: str | None = None) -> Backend:
        """`backend_spec(...)`, built."""
        return self.backend_spec(model, base_url).build()


def _default(f: Field[Any]) -> Any:
    if f.default is not MISSING:
        return f.default
    return inspect.Parameter.empty if f.default_factory is MISSING else f.default_factory()


def takes_run_flags(command: Callable[..., None]) -> Callable[..., None]:
    """Let `command(flags: RunFlags, **its_own_options)` take the `RunFlags` on the command line.

    typer reads a command's parameters from its signature: this one lists the two arguments,
    the command's own options, then the shared flags, and hands the shared ones over as one
    `RunFlags`.
    """
    hints = get_type_hints(RunFlags, include_extras=True)
    keyword = inspect.Parameter.KEYWORD_ONLY
    shared = [
        inspect.Parameter(
            f.name,
            keyword,
            annotation=hints[f.name],
            default=_default(f),
        )
        for f in fields(RunFlags)
    ]
    own = list(inspect.signature(command, eval_str=True).parameters.values())[1:]

    @functools.wraps(command)
    def with_flags(**options: Any) -> None:
        flags = RunFlags(**{f.name: options.pop(f.name) for f in fields(RunFlags)})
        command(flags, **options)

    signature = [*shared[:2], *(p.replace(kind=keyword) for p in own), *shared[2:]]
    with_flags.__signature__ = inspect.Signature(signature)  # type: ignore[attr-defined]
    return with_flags


def _run_task(
    task: str,
    doing: str,
    flags: RunFlags,
    options: Any,
    fields: Fields,
    critics: Sequence[str] = (),
    no_signal: bool = False,
) -> None:
    """Run `task` under a progress bar (here or on Ray), print its summary, exit with its status.

    `critics`: the models of a label panel (`--critic`), on the same backend. `no_signal`: the
    run measures no confidence signal, which the summary says."""
    from critic.config import InputSpec, RunControl
    from critic.constitution import load_constitution
    from critic.store import open_store

    c = load_constitution(flags.constitution)
    input = InputSpec(fields=fields, split=flags.split, prompts=flags.prompts, limit=flags.limit,
                      max_line_bytes=flags.max_line_bytes)  # fmt: skip
    control = RunControl(concurrency=flags.concurrency, retry_failed=flags.retry_failed)
    if flags.ray:
        from critic.distributed import RaySpec, run_on_ray

        spec = RaySpec(address=flags.ray_address, workers=flags.ray_workers)
        summary = run_with_progress(
            flags.quiet or flags.json_out, f"{doing} (ray)",
            lambda **hooks: run_on_ray(
                task, flags.input, c, flags.backend_spec(flags.model), flags.db, ray_spec=spec,
                options=options, critics=[flags.backend_spec(m) for m in critics],
                input=input, control=control, **hooks,
            ),
        )  # fmt: skip
    else:
        from critic.tasks import run

        backend = flags.make_backend(flags.model)
        panel = [flags.make_backend(name) for name in critics]
        store = open_store(flags.db)
        summary = run_with_progress(
            flags.quiet or flags.json_out, doing,
            lambda **hooks: run(
                task, flags.input, c, backend, store, options=options, critics=panel,
                input=input, control=control, **hooks,
            ),
        )  # fmt: skip
    finish_run(summary, task, flags.db, flags.json_out,
               extra={"confidence_signal": "none"} if no_signal else None)  # fmt: skip


def _label_cascade(
    flags: RunFlags,
    sampling: Any,
    fields: Fields,
    escalate_to: Sequence[str],
    urls: Sequence[str],
    policy_path: Path | None,
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
    backend = flags.make_backend(flags.model)
    later = [flags.make_backend(name, urls[i] if i < len(urls) else None)
             for i, name in enumerate(escalate_to)]  # fmt: skip
    c = load_constitution(flags.constitution)
    store = open_store(flags.db)
    summary = run_with_progress(
        flags.quiet or flags.json_out, "labeling (cascade)",
        lambda **hooks: label_cascade(
            flags.input, c, backend, store, escalate_to=later, policy=policy, options=sampling,
            fields=fields, split=flags.split, prompts=flags.prompts, limit=flags.limit,
            max_line_bytes=flags.max_line_bytes, retry_failed=flags.retry_failed,
            concurrency=flags.concurrency, **hooks,
        ),
    )  # fmt: skip
    counts = {"settled": settled_counts(store, summary.run_id),
              "asked": asked_counts(store, summary.run_id)}  # fmt: skip
    finish_run(summary, "label", flags.db, flags.json_out, counts)


@reports_errors
@takes_run_flags
def label(
    flags: RunFlags,
    response_field: ResponseFieldOpt = "response",
    text_field: Annotated[
        str | None, typer.Option(help="Judge this field alone (no prompt).")
    ] = None,
    samples: SamplesOpt = 1,
    logprobs: Annotated[
        int | None,
        typer.Option(
            "--logprobs",
            min=0,
            max=20,
            help="Ask for top-K logprobs (label probabilities); default 5 where the backend "
            "gives them (vllm-server, vllm, fake); 0: none.",
        ),
    ] = None,
    max_tokens: MaxTokensOpt = 512,
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
) -> None:
    """Label a dataset against a constitution. Rerun the same command to resume."""
    from critic.backends import DEFAULT_LOGPROBS, GIVES_LOGPROBS
    from critic.config import Sampling
    from critic.items import Fields

    if logprobs is None:
        logprobs = DEFAULT_LOGPROBS if flags.backend in GIVES_LOGPROBS else None
    top_logprobs = logprobs or None
    no_signal = top_logprobs is None and samples == 1 and not critic
    if no_signal:
        err.print(NO_SIGNAL, style="yellow", highlight=False)
    sampling = Sampling(
        max_tokens=max_tokens, temperature=temperature_or_default(flags.temperature, samples),
        samples=samples, top_logprobs=top_logprobs, max_reasks=flags.max_reasks, seed=flags.seed,
    )  # fmt: skip
    fields = Fields(
        id=flags.id_field, prompt=flags.prompt_fields, response=response_field, text=text_field
    )
    if escalate_to or policy is not None:
        if flags.ray:
            from critic.errors import UsageError

            raise UsageError(
                "a live cascade (--escalate-to) runs in one process, not with --ray",
                hint="label with --ray per critic, then `critic route` the cascade policy",
            )
        _label_cascade(
            flags, sampling, fields, escalate_to or [], escalate_base_url or [], policy,
            critics=critic or [],
        )  # fmt: skip
        return
    _run_task("label", "labeling", flags, sampling, fields, critics=critic or [],
              no_signal=no_signal)  # fmt: skip


@reports_errors
@takes_run_flags
def revise(
    flags: RunFlags,
    response_field: ResponseFieldOpt = "response",
    rounds: Annotated[int, typer.Option(min=1, help="Critique → revision rounds per item.")] = 2,
    max_revision_chars: Annotated[
        int,
        typer.Option(
            min=16,
            help="Length bound of a revision.",
        ),
    ] = 2000,
    max_tokens: MaxTokensOpt = 1024,
) -> None:
    """Critique and revise each (prompt, response) for N rounds. Rerun to resume.

    The constitution needs a critique and a revision request on every principle.
    """
    from critic.config import Sampling
    from critic.items import Fields
    from critic.tasks.revise import ReviseOptions

    options = ReviseOptions(
        rounds=rounds, max_revision_chars=max_revision_chars,
        sampling=Sampling(max_tokens=max_tokens,
                          temperature=temperature_or_default(flags.temperature),
                          max_reasks=flags.max_reasks, seed=flags.seed),
    )  # fmt: skip
    fields = Fields(id=flags.id_field, prompt=flags.prompt_fields, response=response_field)
    _run_task("revise", "revising", flags, options, fields)


@reports_errors
@takes_run_flags
def compare(
    flags: RunFlags,
    a_field: Annotated[str, typer.Option(help="Input field holding the first response.")] = (
        "response_a"
    ),
    b_field: Annotated[str, typer.Option(help="Input field holding the second response.")] = (
        "response_b"
    ),
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
    max_tokens: MaxTokensOpt = 512,
) -> None:
    """Judge which of two responses better follows sampled principles, in both orders.

    The constitution is pairwise, with labels A and B (and optionally tie).
    """
    from critic.config import Sampling
    from critic.items import Fields
    from critic.tasks.compare import CompareOptions

    options = CompareOptions(
        principles_per_item=principles_per_item, tie_margin=tie_margin,
        sampling=Sampling(max_tokens=max_tokens,
                          temperature=temperature_or_default(flags.temperature),
                          top_logprobs=logprobs or None, max_reasks=flags.max_reasks,
                          seed=flags.seed),
    )  # fmt: skip
    fields = Fields(id=flags.id_field, prompt=flags.prompt_fields, a=a_field, b=b_field)
    _run_task("compare", "comparing", flags, options, fields)
