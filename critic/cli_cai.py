"""`critic revise`, `critic compare` and `critic constitution import`.

Importing this module registers the commands on `critic.cli.app` and `critic.cli.constitution_app`.
"""

from __future__ import annotations

from pathlib import Path

import typer

from critic.cli import (
    BackendOpt,
    BaseUrlOpt,
    ConcurrencyOpt,
    DbOpt,
    ModelOpt,
    app,
    constitution_app,
    err,
    finish_run,
    make_backend,
    reports_errors,
    run_with_progress,
)


@app.command()
@reports_errors
def revise(
    input: str = typer.Argument(..., help="JSONL, CSV, Parquet, save_to_disk dir, or Hub name."),
    constitution: str = typer.Option(
        ..., "--constitution", "-c", help="Constitution with critique and revision requests."
    ),
    backend: str = BackendOpt,
    base_url: str = BaseUrlOpt,
    model: str | None = ModelOpt,
    db: str = DbOpt,
    id_field: str | None = typer.Option(None, help="Input field holding the id (default: id)."),
    prompt_field: str = typer.Option("prompt", help="Input field holding the prompt."),
    response_field: str = typer.Option("response", help="Input field holding the response."),
    split: str | None = typer.Option(None, help="Split of a Hub or saved DatasetDict."),
    prompts: Path | None = typer.Option(None, help="Directory of prompt templates to use."),
    rounds: int = typer.Option(2, min=1, help="Critique → revision rounds per item."),
    max_revision_chars: int = typer.Option(2000, min=16, help="Length bound of a revision."),
    temperature: float = typer.Option(0.0, min=0.0, help="Sampling temperature."),
    max_tokens: int = typer.Option(1024, min=16, help="Token limit per answer."),
    max_reasks: int = typer.Option(2, min=0, help="Re-asks after an invalid answer."),
    seed: int = typer.Option(0, help="Seed of the principle sampling and of sampling."),
    concurrency: int = ConcurrencyOpt,
    max_model_len: int = typer.Option(4096, help="Context length (in-process vllm backend)."),
    retry_failed: bool = typer.Option(False, help="Retry items that failed in earlier runs."),
    limit: int | None = typer.Option(None, min=1, help="Only the first N rows."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Critique and revise each (prompt, response) for N rounds. Rerun to resume."""
    from critic.cai import ReviseOptions
    from critic.cai import revise as run_revise
    from critic.constitution import load_constitution
    from critic.items import Fields
    from critic.labeling import LabelOptions
    from critic.store import open_store

    c = load_constitution(constitution)
    options = ReviseOptions(
        rounds=rounds, max_revision_chars=max_revision_chars,
        sampling=LabelOptions(max_tokens=max_tokens, temperature=temperature,
                              max_reasks=max_reasks, seed=seed),
    )  # fmt: skip
    fields = Fields(id=id_field, prompt=prompt_field, response=response_field)
    store = open_store(db)
    engine = make_backend(backend, base_url, model, concurrency, max_model_len=max_model_len)
    summary = run_with_progress(
        quiet or json_out, "revising",
        lambda **kw: run_revise(input, c, engine, store, fields=fields, options=options,
                                prompts=prompts, split=split, retry_failed=retry_failed,
                                concurrency=concurrency, limit=limit, **kw),
    )  # fmt: skip
    finish_run(summary, "revise", db, json_out)


@app.command()
@reports_errors
def compare(
    input: str = typer.Argument(..., help="JSONL, CSV, Parquet, save_to_disk dir, or Hub name."),
    constitution: str = typer.Option(
        ..., "--constitution", "-c", help="Pairwise constitution (labels A, B, optionally tie)."
    ),
    backend: str = BackendOpt,
    base_url: str = BaseUrlOpt,
    model: str | None = ModelOpt,
    db: str = DbOpt,
    id_field: str | None = typer.Option(None, help="Input field holding the id (default: id)."),
    prompt_field: str = typer.Option("prompt", help="Input field holding the prompt."),
    a_field: str = typer.Option("response_a", help="Input field holding the first response."),
    b_field: str = typer.Option("response_b", help="Input field holding the second response."),
    split: str | None = typer.Option(None, help="Split of a Hub or saved DatasetDict."),
    prompts: Path | None = typer.Option(None, help="Directory of prompt templates to use."),
    principles_per_item: int = typer.Option(
        1, min=1, help="Principles sampled per pair (each judged in both orders)."
    ),
    logprobs: int = typer.Option(
        5, min=0, max=20, help="Top-K logprobs for preference probabilities; 0 = votes only."
    ),
    tie_margin: float = typer.Option(
        0.05, min=0.0, max=0.49, help="Call a tie when P(a preferred) is within this of 0.5."
    ),
    temperature: float = typer.Option(0.0, min=0.0, help="Sampling temperature."),
    max_tokens: int = typer.Option(512, min=16, help="Token limit per answer."),
    max_reasks: int = typer.Option(2, min=0, help="Re-asks after an invalid answer."),
    seed: int = typer.Option(0, help="Seed of the principle sampling and of sampling."),
    concurrency: int = ConcurrencyOpt,
    max_model_len: int = typer.Option(4096, help="Context length (in-process vllm backend)."),
    retry_failed: bool = typer.Option(False, help="Retry items that failed in earlier runs."),
    limit: int | None = typer.Option(None, min=1, help="Only the first N rows."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Judge which of two responses better follows sampled principles, in both orders."""
    from critic.cai import CompareOptions
    from critic.cai import compare as run_compare
    from critic.constitution import load_constitution
    from critic.items import Fields
    from critic.labeling import LabelOptions
    from critic.store import open_store

    c = load_constitution(constitution)
    options = CompareOptions(
        principles_per_item=principles_per_item, tie_margin=tie_margin,
        sampling=LabelOptions(max_tokens=max_tokens, temperature=temperature,
                              top_logprobs=logprobs or None, max_reasks=max_reasks, seed=seed),
    )  # fmt: skip
    fields = Fields(id=id_field, prompt=prompt_field, a=a_field, b=b_field)
    store = open_store(db)
    engine = make_backend(backend, base_url, model, concurrency, max_model_len=max_model_len)
    summary = run_with_progress(
        quiet or json_out, "comparing",
        lambda **kw: run_compare(input, c, engine, store, fields=fields, options=options,
                                 prompts=prompts, split=split, retry_failed=retry_failed,
                                 concurrency=concurrency, limit=limit, **kw),
    )  # fmt: skip
    finish_run(summary, "compare", db, json_out)


@constitution_app.command("import")
@reports_errors
def constitution_import(
    source: Path = typer.Argument(..., help="The file to convert."),
    fmt: str = typer.Option(..., "--from", help="hf-cai or prometheus."),
    output: Path = typer.Option(
        ..., "-o", "--output", help="hf-cai: a YAML file (or directory); prometheus: a directory."
    ),
    constitution_id: str | None = typer.Option(None, "--id", help="Id of the new constitution."),
) -> None:
    """Convert a constitution or rubric file from another tool into critic YAML (linted)."""
    from critic.importers import import_constitutions

    for path, c in import_constitutions(fmt, source, output, constitution_id):
        err.print(f"wrote {path} ({c.id} v{c.version}, {len(c.principles)} principle(s), "
                  f"hash {c.hash[:12]})", highlight=False)  # fmt: skip
