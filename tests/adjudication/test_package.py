"""The adjudication package stands alone, and its test helpers say what is missing."""

from __future__ import annotations

import subprocess
import sys

import pytest

from adjudication import testing
from adjudication.testing import PostgresUnavailable, temporary_postgres


def test_adjudication_never_imports_critic() -> None:
    probe = (
        "import sys, adjudication, adjudication.store, adjudication.agreement, "
        "adjudication.testing; print(sorted(m for m in sys.modules if m.split('.')[0] == 'critic'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_a_missing_postgres_install_is_reported_with_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(testing, "find_postgres_bin", lambda: None)
    with pytest.raises(PostgresUnavailable, match="initdb, pg_ctl") as err, temporary_postgres():
        pass
    assert err.value.hint and "apt-get install postgresql" in err.value.hint
