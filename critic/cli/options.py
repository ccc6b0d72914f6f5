"""Every flag that more than one command takes, declared once (typer with `Annotated`).

A command writes `backend: BackendOpt = DEFAULT_BACKEND`; the flag's name, short form, env var,
bounds and help live here. Defaults stay in the signatures, where a command can differ
(revise allows longer answers than label).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

DEFAULT_BACKEND = "vllm-server"
DEFAULT_BASE_URL = ["http://127.0.0.1:8000/v1"]  # typer wants a list for a repeatable flag
DEFAULT_DB = "sqlite:///critic.db"

# -- where the model is ------------------------------------------------------------------------
BackendOpt = Annotated[str, typer.Option(
    "--backend", "-b", envvar="CRITIC_BACKEND",
    help="vllm-server, vllm (in-process), transformers, or fake.",
)]  # fmt: skip
BaseUrlOpt = Annotated[list[str], typer.Option(
    "--base-url", envvar="CRITIC_BASE_URL",
    help="OpenAI-compatible base URL of a vLLM server (vllm-server backend). Repeat it (or give "
    "CRITIC_BASE_URL a comma-separated list) to spread one run over several servers.",
)]  # fmt: skip
ModelOpt = Annotated[str | None, typer.Option(
    "--model", "-m", envvar="CRITIC_MODEL",
    help="Model name the server serves, or a local directory / Hub name for in-process backends.",
)]  # fmt: skip
ConcurrencyOpt = Annotated[int, typer.Option(
    "--concurrency", envvar="CRITIC_CONCURRENCY", min=1,
    help="Requests in flight per server (keep vLLM's continuous batching full).",
)]  # fmt: skip
MaxModelLenOpt = Annotated[int, typer.Option(help="Context length (in-process vllm backend).")]

# -- where the drafting runs --------------------------------------------------------------------
RayOpt = Annotated[bool, typer.Option(
    "--ray", help="Draft on a Ray cluster: the input is cut into parts that --ray-workers actors "
    "draft, each writing straight to --db (pip install 'critic[ray]').",
)]  # fmt: skip
RayAddressOpt = Annotated[str | None, typer.Option(
    "--ray-address", envvar="CRITIC_RAY_ADDRESS",
    help="A running Ray cluster (`auto`, or ray://host:10001); default: start a local one.",
)]  # fmt: skip
RayWorkersOpt = Annotated[int, typer.Option(
    "--ray-workers", min=1, help="Ray actors drafting at once (with --backend vllm, one GPU each).",
)]  # fmt: skip

# -- where results go --------------------------------------------------------------------------
DbOpt = Annotated[str, typer.Option(
    "--db", envvar="CRITIC_DB", help="Database URL (sqlite:///file.db or postgresql+psycopg://...).",
)]  # fmt: skip
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]

# -- what is read ------------------------------------------------------------------------------
InputArg = Annotated[str, typer.Argument(
    help="JSONL, CSV, Parquet, save_to_disk dir, or Hub name.",
)]  # fmt: skip
ConstitutionOpt = Annotated[str, typer.Option(
    "--constitution", "-c", help="Constitution YAML file or shipped name.",
)]  # fmt: skip
IdFieldOpt = Annotated[str | None, typer.Option(
    help="Input field holding the id (default: id).",
)]  # fmt: skip
PromptFieldOpt = Annotated[list[str], typer.Option(
    help="Input field holding the prompt. Repeat it to join several fields in order, each under "
    "its name (--prompt-field instruction --prompt-field input).",
)]  # fmt: skip
ResponseFieldOpt = Annotated[str, typer.Option(help="Input field holding the response.")]
SplitOpt = Annotated[str | None, typer.Option(help="Split of a Hub or saved DatasetDict.")]
PromptsOpt = Annotated[Path | None, typer.Option(help="Directory of prompt templates to use.")]
LimitOpt = Annotated[int | None, typer.Option(min=1, help="Only the first N rows.")]
MaxLineBytesOpt = Annotated[int, typer.Option(
    min=1, help="The longest JSONL line read, in bytes; a longer line is a bad row.",
)]  # fmt: skip

# -- how to sample -----------------------------------------------------------------------------
SamplesOpt = Annotated[int, typer.Option(
    min=1, help="Samples per item (sent as n in one request; majority verdict).",
)]  # fmt: skip
TemperatureOpt = Annotated[float | None, typer.Option(
    min=0.0, help="Sampling temperature (default 0, or 1.0 with --samples > 1).",
)]  # fmt: skip
MaxTokensOpt = Annotated[int, typer.Option(min=16, help="Token limit per answer.")]
MaxReasksOpt = Annotated[int, typer.Option(min=0, help="Re-asks after an invalid answer.")]
SeedOpt = Annotated[int, typer.Option(
    help="Sampling seed (revise and compare: also of the principles sampled per item).",
)]  # fmt: skip

# -- runs --------------------------------------------------------------------------------------
RetryFailedOpt = Annotated[bool, typer.Option(
    help="Retry items that failed in earlier runs.",
)]  # fmt: skip
RunOpt = Annotated[str | None, typer.Option(
    help="Run id or prefix (default: the latest run).",
)]  # fmt: skip
RunsOpt = Annotated[list[str] | None, typer.Option(
    "--run", help="Run id or prefix; repeat for several (default: the latest run).",
)]  # fmt: skip
AllRunsOpt = Annotated[bool, typer.Option(
    "--all-runs", help="Every run in the database, oldest first.",
)]  # fmt: skip
IntervalOpt = Annotated[float, typer.Option(
    min=0.5, max=0.999, help="Interval confidence.",
)]  # fmt: skip

# The flag of each setting the library names by its field (see `critic.errors.ConfigError`).
FLAGS = {
    "samples": "--samples",
    "temperature": "--temperature",
    "top_logprobs": "--logprobs",
    "max_tokens": "--max-tokens",
    "max_reasks": "--max-reasks",
    "seed": "--seed",
    "rounds": "--rounds",
    "max_revision_chars": "--max-revision-chars",
    "principles_per_item": "--principles-per-item",
    "tie_margin": "--tie-margin",
    "limit": "--limit",
    "max_line_bytes": "--max-line-bytes",
    "id_field": "--id-field",
    "prompt_field": "--prompt-field",
    "response_field": "--response-field",
    "text_field": "--text-field",
    "a_field": "--a-field",
    "b_field": "--b-field",
    "concurrency": "--concurrency",
    "backend": "--backend",
    "model": "--model",
}


def temperature_or_default(temperature: float | None, samples: int = 1) -> float:
    """`--temperature`, or its default: 0 (greedy), 1.0 when several samples are drawn."""
    if temperature is not None:
        return temperature
    return 1.0 if samples > 1 else 0.0
