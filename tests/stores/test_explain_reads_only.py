"""`Router.explain` over a shared store reads and never writes: no charge another process
could see, however briefly, and no key index advanced."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmroute import Router
from llmroute.stores import Bucket, Charge, RedisStore
from llmroute.stores.sqlite_store import SQLiteStore
from llmroute.testing import FakeClock, FakeScript, FakeTransport

KEYS = ("fake-gemini-key-zero-00000000000", "fake-gemini-key-one-111111111111")
#: the StateStore methods that only read
READS = {"peek", "cooldowns", "disabled_keys", "get_index", "learned_limits", "snapshot"}


class RecordingStore:
    """A shared store that notes every call it is given."""

    def __init__(self, inner: SQLiteStore) -> None:
        self.inner = inner
        self.uses_wall_clock = inner.uses_wall_clock
        self.shared = inner.shared
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        async def delegate(*args: Any) -> Any:
            self.calls.append(name)
            return await method(*args)

        return delegate


async def test_explain_on_a_shared_store_only_reads(tmp_path: Path) -> None:
    clock = FakeClock()
    store = RecordingStore(SQLiteStore(tmp_path / "state.sqlite3"))
    limits = {"models": {"g/flash": {"rpm": 2, "tpm": 10_000, "per_key": True}}}
    models = {
        "providers": {
            "g": {
                "type": "google_ai_studio",
                "base_url": "http://gemini.test/v1beta",
                "api_keys": list(KEYS),
            }
        },
        "models": {"g/flash": {"provider": "g", "model": "gemini-2.5-flash"}},
    }
    router = Router(
        models,
        limits,
        env_file=None,
        cache_dir=tmp_path,
        clock=clock,
        store=store,
        http_client=httpx.AsyncClient(transport=FakeTransport(FakeScript(), clock=clock)),
    )
    try:
        async with router:
            await router.complete("g/flash", "hi")
            before = await store.inner.snapshot(clock.time())
            store.calls.clear()
            first = await router.explain("g/flash", "hi")
            second = await router.explain("g/flash", "hi")
            assert store.calls, "explain asked the store nothing"
            assert set(store.calls) <= READS, store.calls
            assert "peek" in store.calls
            assert await store.inner.snapshot(clock.time()) == before
            assert first == second
            assert first.candidates[0].outcome == "would_send"
    finally:
        await store.inner.aclose()


async def test_a_redis_dry_run_takes_the_servers_time(request: pytest.FixtureRequest) -> None:
    """Like an admission, a dry run ignores the caller's clock: hosts that disagree by
    hours still see one window."""
    server = request.getfixturevalue("redis_server")
    store = RedisStore(server.url, prefix=f"peek-{uuid.uuid4().hex[:10]}")
    try:
        b = [Bucket("m", rpm=1)]
        assert await store.peek(b, 1, 0.0) == 0.0
        assert isinstance(await store.acquire(b, 1, 0.0), Charge)
        for skewed in (-7_200.0, 0.0, 1e10):
            wait = await store.peek(b, 1, skewed)
            assert 55.0 < wait <= 60.0
    finally:
        await store.aclose()
