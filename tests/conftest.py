"""Shared test set-up. Real-component fixtures live in tests/fixtures_real.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["tests.fixtures_real"]

REAL_MARKERS = ("vllm", "transformers", "postgres", "browser", "trl", "ray", "label_studio")
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """In CI a real-component test may not skip: a skip there means a missing install step.

    Absent shared data is the one allowed reason: a user's checkout has no ../shared/data.
    """
    outcome = yield
    report = outcome.get_result()
    if (
        os.environ.get("CI") == "true"
        and report.skipped
        and not hasattr(report, "wasxfail")
        and "shared data" not in str(report.longrepr)
        and any(item.get_closest_marker(m) for m in REAL_MARKERS)
    ):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where every real component must run: {report.longrepr}"


@pytest.fixture
def shared_data() -> Path:
    """../shared/data, which a user's checkout does not have: skip cleanly without it."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is absent: shared data ships beside the repo, not in it")
    return SHARED_DATA
