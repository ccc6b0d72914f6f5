"""Fixtures: one queue store per test, on a SQLite file and on a real PostgreSQL server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from adjudication import Store, open_store
from adjudication.testing import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(store_url: str, clock: FakeClock) -> Iterator[Store]:
    with open_store(store_url, clock=clock) as opened:
        yield opened
