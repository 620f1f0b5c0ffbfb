"""Every backend behind one fixture, so the conformance cases run unchanged over each.

A `Backend` hands out fresh store objects onto one shared state (`make()`): for the memory
store that is the same object; for SQLite and Redis, a new connection, as another process
would open. `t0` is where the case's timeline starts, in the backend's time base.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from store_backends import Backend, make_backend

from llmroute.stores import StateStore

BACKENDS = ("memory",)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    yield make_backend(request.param, tmp_path)


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[StateStore]:
    yield backend.make()
    await backend.close_all()
