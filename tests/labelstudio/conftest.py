"""A real Label Studio for the session (tests marked `label_studio`)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from critic.testing.label_studio import (
    VERSION,
    LabelStudio,
    LabelStudioUnavailable,
    install,
    serve,
)
from tests.fixtures_real import require


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabelStudio]:
    """Label Studio 1.23 on a loopback port, from its own virtualenv (made once, then reused:
    `critic.testing.label_studio.default_venv()`), with a fresh data directory."""
    try:
        venv = install()
    except (LabelStudioUnavailable, OSError, subprocess.SubprocessError) as exc:
        require(False, f"Label Studio {VERSION} could not be installed in its virtualenv: {exc}")
        raise
    with serve(venv, data_dir=tmp_path_factory.mktemp("label-studio")) as server:
        yield server
