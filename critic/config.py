"""What a run is told: how to sample, what to read, how to run, which backend. Declared once.

Every task (label, revise, compare), the workbench and the CLI take these objects instead of
repeating keyword lists. They are frozen pydantic models with unknown keys rejected, so a typo is
an error. A bad value raises `ConfigError`, which names the field (`samples`); the CLI renames it
to the flag (`--samples`).
"""

from __future__ import annotations

from dataclasses import asdict, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ConfigDict, model_validator
from pydantic.dataclasses import dataclass

from critic.errors import ConfigError
from critic.items import MAX_LINE_BYTES, Fields

if TYPE_CHECKING:
    from critic.backends.base import Backend


# Config models: frozen, validated on construction, unknown keys rejected. Dataclasses (not
# BaseModel), so `dataclasses.asdict` and `replace` work as on the plain dataclasses they replace.
STRICT = ConfigDict(extra="forbid")


@dataclass(frozen=True, config=STRICT)
class Sampling:
    """How to sample and how hard to try. Everything here is part of the run's identity."""

    max_tokens: int = 512
    temperature: float = 0.0
    samples: int = 1
    top_logprobs: int | None = None
    max_reasks: int = 2
    seed: int | None = 0

    @model_validator(mode="after")
    def _check(self) -> Sampling:
        if self.samples < 1:
            raise ConfigError("samples", "{samples} must be at least 1")
        if self.max_reasks < 0:
            raise ConfigError("max_reasks", "{max_reasks} cannot be negative")
        if self.top_logprobs is not None and not 1 <= self.top_logprobs <= 20:
            raise ConfigError(
                "top_logprobs", "{top_logprobs} takes a number of alternatives from 1 to 20"
            )
        if self.samples > 1 and self.temperature == 0:
            raise ConfigError(
                "samples",
                "{samples} > 1 needs a {temperature} above 0 (vLLM rejects n > 1 with greedy "
                "sampling, and greedy samples would all agree anyway)",
                hint="set {temperature} to 1.0",
            )
        if self.max_tokens < 16:
            raise ConfigError("max_tokens", "{max_tokens} must be at least 16 for a JSON answer")
        return self


@dataclass(frozen=True, config=STRICT)
class InputSpec:
    """What a run reads: which columns, which split, how many rows, which prompt templates."""

    fields: Fields | None = None
    split: str | None = None
    limit: int | None = None
    prompts: str | Path | None = None
    #: The longest JSONL line read, in bytes; a longer line is a bad row, skipped without being
    #: held in memory (a parsed line takes about ten times its size). Default 8 MiB.
    max_line_bytes: int = MAX_LINE_BYTES

    @model_validator(mode="after")
    def _check(self) -> InputSpec:
        if self.limit is not None and self.limit < 1:
            raise ConfigError("limit", "{limit} must be at least 1")
        if self.max_line_bytes < 1:
            raise ConfigError("max_line_bytes", "{max_line_bytes} must be at least 1")
        return self


@dataclass(frozen=True, config=STRICT)
class RunControl:
    """How a run goes: how many items in flight, whether failed items are tried again."""

    concurrency: int = 64
    retry_failed: bool = False

    @model_validator(mode="after")
    def _check(self) -> RunControl:
        if self.concurrency < 1:
            raise ConfigError("concurrency", "{concurrency} must be at least 1")
        return self


@dataclass(frozen=True, config=STRICT)
class BackendSpec:
    """Which backend to build and how to reach its model."""

    backend: str = "vllm-server"
    base_url: str | tuple[str, ...] = "http://127.0.0.1:8000/v1"  # several: one run, many servers
    model: str | None = None
    concurrency: int = 64
    max_model_len: int = 4096
    api_key: str | None = field(default=None, repr=False)

    @model_validator(mode="after")
    def _check(self) -> BackendSpec:
        if self.backend in ("vllm", "transformers") and not self.model:
            raise ConfigError("model", f"{{model}} is required with {{backend}} {self.backend}")
        return self

    def build(self, **changes: Any) -> Backend:
        """The backend this names (`changes` override fields, e.g. another `model`)."""
        from critic.backends import get_backend

        spec = replace(self, **changes)
        options = {k: v for k, v in asdict(spec).items() if k != "backend"}
        return get_backend(spec.backend, **options)
