"""The pipeline over state that outlives one router or one event loop: keys rotating
through a shared store, a store that cannot be reached, and CLI providers (loop-bound
semaphores) served from one event loop after another."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fake_cli import install_on_path
from llmroute import Router
from llmroute.errors import ProviderError, StoreError
from llmroute.stores import MemoryStore
from llmroute.stores.sqlite_store import SQLiteStore
from llmroute.testing import FakeClock, FakeScript, FakeTransport, InvalidKey, Reply

KEYS = (
    "fake-gemini-key-zero-00000000000",
    "fake-gemini-key-one-111111111111",
    "fake-gemini-key-two-22222222222",
)


def gemini_config(keys: tuple[str, ...] = KEYS) -> dict[str, Any]:
    return {
        "providers": {
            "g": {
                "type": "google_ai_studio",
                "base_url": "http://gemini.test/v1beta",
                "api_keys": list(keys),
            }
        },
        "models": {"g/flash": {"provider": "g", "model": "gemini-2.5-flash"}},
    }


def gemini_router(
    script: FakeScript, clock: FakeClock, store: Any, cache_dir: Path, keys: tuple[str, ...] = KEYS
) -> Router:
    return Router(
        gemini_config(keys),
        {},
        env_file=None,
        cache_dir=cache_dir,
        clock=clock,
        store=store,
        http_client=httpx.AsyncClient(transport=FakeTransport(script, clock=clock)),
    )


@contextlib.asynccontextmanager
async def two_routers_on_one_store(
    script: FakeScript, clock: FakeClock, tmp_path: Path
) -> AsyncIterator[tuple[Router, Router]]:
    """Two routers, as two processes would run them, sharing one SQLite store."""
    store = SQLiteStore(tmp_path / "state.sqlite3")
    first = gemini_router(script, clock, store, tmp_path / "a")
    second = gemini_router(script, clock, store, tmp_path / "b")
    try:
        yield first, second
    finally:
        await first.aclose()
        await second.aclose()
        await store.aclose()


async def test_two_routers_sharing_a_store_spread_over_the_keys(tmp_path: Path) -> None:
    clock = FakeClock()
    script = FakeScript()
    async with two_routers_on_one_store(script, clock, tmp_path) as (first, second):
        for _ in range(6):
            await first.complete("g/flash", "hi")
            await second.complete("g/flash", "hi")
    received = [KEYS.index(r.key or "") for r in script.requests]
    # One index for both: each key serves every third request, whichever router sent it.
    assert received == [0, 1, 2] * 4
    assert Counter(received) == {0: 4, 1: 4, 2: 4}


async def test_a_disabled_key_stays_disabled_for_the_next_router_and_a_new_key_is_fine(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    script = FakeScript()
    script.set_default("gemini-2.5-flash", InvalidKey(), key=KEYS[0])
    script.set_default("gemini-2.5-flash", Reply())
    store = SQLiteStore(tmp_path / "state.sqlite3")
    try:
        async with gemini_router(script, clock, store, tmp_path) as r:
            await r.complete("g/flash", "hi")
        async with gemini_router(script, clock, store, tmp_path) as r:
            status = await r.key_status()
            assert status["g"]["disabled"] == ["g#0"]
            for _ in range(4):
                await r.complete("g/flash", "hi")
            assert (await r.key_status())["g"]["disabled"] == ["g#0"]
        # Slot 0 replaced by a new key: its fingerprint differs, so it is enabled.
        fresh = ("fake-gemini-key-new-0000000000000", *KEYS[1:])
        async with gemini_router(script, clock, store, tmp_path, keys=fresh) as r:
            c = await r.complete("g/flash", "hi")
            assert (await r.key_status())["g"]["disabled"] == []
    finally:
        await store.aclose()
    assert [r.key for r in script.requests].count(KEYS[0]) == 1
    assert c.attempts[-1].outcome == "ok"


class DownStore(MemoryStore):
    """A store that cannot be reached: every admission fails."""

    def __init__(self) -> None:
        super().__init__()
        self.down = True

    def _fail(self) -> None:
        if self.down:
            raise StoreError("state store unreachable (test)")

    async def acquire(self, buckets: Any, tokens: int, now: float) -> Any:
        self._fail()
        return MemoryStore.acquire_nowait(self, buckets, tokens, now)

    acquire_nowait = None  # type: ignore[assignment]


async def test_an_unreachable_store_fails_the_request_and_sends_nothing(
    tmp_path: Path,
) -> None:
    clock = FakeClock()
    script = FakeScript()
    store = DownStore()
    limits = {"models": {"g/flash": {"rpm": 10}}}
    router = Router(
        gemini_config(KEYS[:1]),
        limits,
        env_file=None,
        cache_dir=tmp_path,
        clock=clock,
        store=store,
        http_client=httpx.AsyncClient(transport=FakeTransport(script, clock=clock)),
    )
    async with router:
        with pytest.raises(StoreError):
            await router.complete("g/flash", "hi")
        assert script.requests == []
        store.down = False  # the store is back: the router serves again
        c = await router.complete("g/flash", "hi")
    assert c.attempts[-1].outcome == "ok"
    assert len(script.requests) == 1


CLAUDE = """
import json, sys
prompt = sys.stdin.read()
print(json.dumps({"type": "result", "subtype": "success", "is_error": False,
                  "result": "echo: " + prompt.splitlines()[-1],
                  "usage": {"input_tokens": 12, "output_tokens": 4}}))
"""


@pytest.fixture
def fake_claude(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return install_on_path("fake-claude", CLAUDE, tmp_path, monkeypatch)


@pytest.mark.usefixtures("fake_claude")
def test_cli_provider_serves_one_event_loop_after_another(tmp_path: Path) -> None:
    config = {
        "providers": {
            "claude": {
                "type": "claude_code",
                "command": ["fake-claude", "-p", "--output-format", "json"],
                "max_concurrency": 1,
                "timeout": 20,
            }
        },
        "models": {"claude/sonnet": {"provider": "claude", "model": "sonnet"}},
    }
    router = Router(config, {}, env_file=None, cache_dir=tmp_path)

    async def burst(tag: str) -> list[str]:
        # Three at once against a concurrency of one: the provider's semaphore is used.
        done = await asyncio.gather(
            *(router.complete("claude/sonnet", f"{tag}{i}") for i in range(3))
        )
        return [c.text for c in done]

    assert asyncio.run(burst("a")) == ["echo: a0", "echo: a1", "echo: a2"]
    assert asyncio.run(burst("b")) == ["echo: b0", "echo: b1", "echo: b2"]
    assert router.complete_sync("claude/sonnet", "c").text == "echo: c"
    router.close()


async def test_explain_reads_a_shared_index_without_moving_it(tmp_path: Path) -> None:
    clock = FakeClock()
    script = FakeScript()
    async with two_routers_on_one_store(script, clock, tmp_path) as (first, second):
        await first.complete("g/flash", "hi")  # key 0; the shared index moves to 1
        for _ in range(3):
            explained = await second.explain("g/flash", "hi")
            assert explained.candidates[0].key == "g#1"
        await second.complete("g/flash", "hi")
    assert [KEYS.index(r.key or "") for r in script.requests] == [0, 1]


async def test_a_single_key_refused_in_an_earlier_run_is_unavailable_at_once(
    tmp_path: Path,
) -> None:
    from llmroute.errors import ProviderUnavailableError

    clock = FakeClock()
    script = FakeScript()
    script.set_default("gemini-2.5-flash", InvalidKey())
    path = tmp_path / "state.sqlite3"
    store = SQLiteStore(path)
    try:
        async with gemini_router(script, clock, store, tmp_path, keys=KEYS[:1]) as r:
            with pytest.raises(ProviderError):
                await r.complete("g/flash", "hi")
    finally:
        await store.aclose()
    store = SQLiteStore(path)  # the next run
    try:
        async with gemini_router(script, clock, store, tmp_path, keys=KEYS[:1]) as r:
            with pytest.raises(ProviderUnavailableError, match="refused"):
                await r.complete("g/flash", "hi")
    finally:
        await store.aclose()
    assert len(script.requests) == 1


def test_explain_is_synchronous_outside_and_inside_an_event_loop(tmp_path: Path) -> None:
    """`router.explain` needs no event loop, and inside one it answers without `await`,
    on the memory store and on a shared one alike."""
    from llmroute import Explanation, Router
    from llmroute.stores import MemoryStore, SQLiteStore

    models = {
        "providers": {"p": {"type": "openai_compatible", "base_url": "http://127.0.0.1:9/v1"}},
        "models": {"p/a": {"provider": "p", "model": "a"}},
    }
    for store in (MemoryStore(), SQLiteStore(tmp_path / "state.sqlite3")):
        router = Router(models, {}, env_file=None, cache_dir=tmp_path, store=store)
        outside = router.explain("p/a", "hi")
        assert isinstance(outside, Explanation) and outside.chain == ("p/a",)

        async def inside(router: Router = router) -> Explanation:
            return router.explain("p/a", "hi")

        assert asyncio.run(inside()) == outside
        router.close()
