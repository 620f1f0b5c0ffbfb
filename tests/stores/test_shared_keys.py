"""Key state shared through a store: routers starting together on an empty store, and
keys another router disabled."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from key_workers import start_and_route
from store_workers import KEYS

from llmroute import Router
from llmroute.keys.rotation import DISABLED_REFRESH_SECONDS, KeyPool
from llmroute.stores import SQLiteStore, StateStore
from llmroute.testing import FakeClock, FakeScript, FakeTransport, InvalidKey, serve_in_thread

PROCESSES = 4
#: requests per process, sent at once as its first
REQUESTS = 6


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_processes_starting_together_on_an_empty_store_spread_exactly(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if kind == "sqlite":
        location = str(tmp_path / "empty.sqlite3")
    else:
        location = request.getfixturevalue("redis_server").url
    prefix = f"start-{uuid.uuid4().hex[:10]}"
    script = FakeScript()
    ctx = multiprocessing.get_context("spawn")
    with serve_in_thread(script) as server, ctx.Manager() as manager:
        start = manager.Barrier(PROCESSES)
        with ctx.Pool(PROCESSES) as pool:
            args = (kind, location, prefix, server.openai_base_url, str(tmp_path / "cache"))
            served = pool.starmap(start_and_route, [(*args, start, REQUESTS)] * PROCESSES)
    assert served == [REQUESTS] * PROCESSES
    spread = Counter(r.key for r in script.requests)
    # 24 first requests over 4 keys: a start written over another process's advances
    # would send some key a seventh.
    assert spread == dict.fromkeys(KEYS, PROCESSES * REQUESTS // len(KEYS))


class LateAnswers:
    """A shared store whose answers about the key index reach the pool only once `gate`
    opens (a slow link): the calls themselves have already run on the store."""

    def __init__(self, inner: StateStore, gate: asyncio.Event) -> None:
        self.inner = inner
        self.gate = gate
        #: set once a held-back call has run on the store
        self.ran = asyncio.Event()
        self.shared = inner.shared
        self.uses_wall_clock = inner.uses_wall_clock

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)

        async def late(*args: Any) -> Any:
            got = await method(*args)
            if name in ("get_index", "set_index_if_absent"):
                self.ran.set()
                await self.gate.wait()
            return got

        return late


async def test_a_slow_start_never_undoes_another_routers_advances(tmp_path: Path) -> None:
    path = tmp_path / "empty.sqlite3"
    fast_store, slow_inner = SQLiteStore(path), SQLiteStore(path)
    gate = asyncio.Event()
    fast = KeyPool("p", KEYS[:3], fast_store)
    late = LateAnswers(slow_inner, gate)
    slow = KeyPool("p", KEYS[:3], late)
    try:
        # The slow pool starts first; its look at the empty index is answered late.
        slow_first = asyncio.create_task(slow.order())
        await late.ran.wait()
        picks = [(await fast.order())[0] for _ in range(2)]
        gate.set()
        picks.append((await slow_first)[0])
        assert picks == [0, 1, 2]
    finally:
        await fast_store.aclose()
        await slow_inner.aclose()


# -- disabled keys ---------------------------------------------------------------------------

GEMINI_KEYS = (
    "fake-gemini-shared-key-zero-000000",
    "fake-gemini-shared-key-one-1111111",
    "fake-gemini-shared-key-two-2222222",
)


def gemini_router(store: StateStore, clock: FakeClock, script: FakeScript, cache: Path) -> Router:
    models = {
        "providers": {
            "g": {
                "type": "google_ai_studio",
                "base_url": "http://gemini.test/v1beta",
                "api_keys": list(GEMINI_KEYS),
            }
        },
        "models": {"g/flash": {"provider": "g", "model": "gemini-2.5-flash"}},
    }
    client = httpx.AsyncClient(transport=FakeTransport(script, clock=clock))
    return Router(
        models, {}, env_file=None, cache_dir=cache, clock=clock, store=store, http_client=client
    )


class CountingSQLiteStore(SQLiteStore):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.disabled_reads = 0

    async def disabled_keys(self, provider: str) -> frozenset[str]:
        self.disabled_reads += 1
        return await super().disabled_keys(provider)


async def test_a_key_another_router_disabled_is_passed_over_after_the_refresh(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path, clock = tmp_path / "state.sqlite3", FakeClock()
    script = FakeScript()
    script.script("gemini-2.5-flash", InvalidKey(), key=GEMINI_KEYS[1])
    first_store, second_store = CountingSQLiteStore(path), CountingSQLiteStore(path)
    first = gemini_router(first_store, clock, script, tmp_path / "a")
    second = gemini_router(second_store, clock, script, tmp_path / "b")
    try:
        async with first, second:
            # The second router reads the (still empty) disabled set on its first request.
            await second.complete("g/flash", "hi")
            # The first router meets key one's refusal and disables it in the store.
            for _ in range(3):
                await first.complete("g/flash", "hi")
            assert (await first.key_status())["g"]["disabled"] == ["g#1"]
            refusals = _sent_with(script, GEMINI_KEYS[1])
            assert refusals == 1
            # Within the refresh interval the second router still trusts what it read: it
            # learns of the refusal only by drawing one itself, or ...
            clock.advance(DISABLED_REFRESH_SECONDS)
            reads = second_store.disabled_reads
            with caplog.at_level(logging.INFO, logger="llmroute"):
                served = [await second.complete("g/flash", "hi") for _ in range(6)]
            # ... after it, by one read of the store: key one is never sent again.
            assert _sent_with(script, GEMINI_KEYS[1]) == refusals
            assert second_store.disabled_reads == reads + 1
            assert all(c.attempts[-1].outcome == "ok" for c in served)
            assert {c.attempts[-1].key for c in served} == {"g#0", "g#2"}
            assert "g#1 disabled in the shared store by another router" in caplog.text
            assert GEMINI_KEYS[1] not in caplog.text

    finally:
        await first_store.aclose()
        await second_store.aclose()


async def test_explain_sees_a_key_another_router_disabled(tmp_path: Path) -> None:
    path, clock = tmp_path / "state.sqlite3", FakeClock()
    script = FakeScript()
    script.script("gemini-2.5-flash", InvalidKey(), key=GEMINI_KEYS[0])
    first_store, second_store = SQLiteStore(path), SQLiteStore(path)
    first = gemini_router(first_store, clock, script, tmp_path / "a")
    second = gemini_router(second_store, clock, script, tmp_path / "b")
    try:
        async with first, second:
            assert (await second.explain("g/flash", "hi")).candidates[0].key == "g#0"
            await first.complete("g/flash", "hi")  # key zero refused: disabled in the store
            await second_store.set_index("g", 0)  # the rotation stands at key zero again
            # Within the refresh interval, this router's view is the one it last read ...
            assert (await second.explain("g/flash", "hi")).candidates[0].key == "g#0"
            clock.advance(DISABLED_REFRESH_SECONDS)
            # ... then it reads the store again, and passes key zero over.
            assert (await second.explain("g/flash", "hi")).candidates[0].key == "g#1"
            assert _sent_with(script, GEMINI_KEYS[0]) == 1
    finally:
        await first_store.aclose()
        await second_store.aclose()


async def test_the_disabled_set_is_read_at_most_once_per_interval(tmp_path: Path) -> None:
    clock, script = FakeClock(), FakeScript()
    store = CountingSQLiteStore(tmp_path / "state.sqlite3")
    router = gemini_router(store, clock, script, tmp_path)
    try:
        async with router:
            for _ in range(20):
                await router.complete("g/flash", "hi")
                clock.advance(DISABLED_REFRESH_SECONDS / 4)
    finally:
        await store.aclose()
    # 20 requests over five intervals: the load, then one read per interval passed.
    assert store.disabled_reads == 5


def _sent_with(script: FakeScript, key: str) -> int:
    return sum(r.key == key for r in script.requests)
