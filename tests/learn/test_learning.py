"""Learning in the router: cold start, state in the store (shared across processes), and
where what is learnt shows (trace, explain, `llmroute keys`)."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmroute import Router
from llmroute._learning import learnt_lines
from llmroute.stores import MemoryStore, SQLiteStore
from llmroute.testing import (
    FakeClock,
    FakeScript,
    FakeTransport,
    Quota,
    QuotaEnforcer,
    Reply,
    Timeout,
)

MODEL = "m"
TARGET = "groq/m"
MODELS: dict[str, Any] = {
    "providers": {
        "groq": {"type": "openai_compatible", "base_url": "http://fake.test/v1", "api_key": "k"}
    },
    "models": {TARGET: {"provider": "groq", "model": MODEL}},
}


def limits(entry: dict[str, Any] | None = None, **top: Any) -> dict[str, Any]:
    return {
        "strategy": {"on_limit": "sleep", "max_wait_seconds": 3600, "max_attempts": 20},
        "models": {TARGET: entry} if entry else {},
        **top,
    }


@contextlib.asynccontextmanager
async def fake_router(
    tmp_path: Path,
    transport: FakeTransport,
    limits_config: dict[str, Any],
    *,
    clock: FakeClock,
    store: Any = None,
    models: dict[str, Any] = MODELS,
) -> AsyncIterator[Router]:
    """A router whose provider is `transport`, on the fake clock."""
    async with (
        httpx.AsyncClient(transport=transport) as http,
        Router(
            models,
            limits_config,
            env_file=None,
            cache_dir=tmp_path,
            http_client=http,
            clock=clock,
            store=store,
        ) as router,
    ):
        yield router


async def burst(
    tmp_path: Path,
    quota: Quota,
    limits_config: dict[str, Any],
    n: int,
    *,
    store: Any = None,
    clock: FakeClock | None = None,
) -> tuple[QuotaEnforcer, list[Any], FakeClock]:
    clock = clock or FakeClock()
    enforcer = QuotaEnforcer({MODEL: quota}, clock=clock)
    script = FakeScript(record=False)
    script.set_default(None, Reply(latency=0.5))
    transport = FakeTransport(script, clock=clock, quota=enforcer)
    async with fake_router(tmp_path, transport, limits_config, clock=clock, store=store) as router:
        done = await asyncio.gather(*(router.complete(TARGET, f"r{i}") for i in range(n)))
    return enforcer, list(done), clock


async def test_a_burst_of_40_waits_for_the_first_answer_instead_of_drawing_429s(
    tmp_path: Path,
) -> None:
    quota = Quota(rpm=30, per_key=False)
    learnt, done, clock = await burst(tmp_path, quota, limits(), 40)
    assert learnt.refused == 0
    # the probe alone at t=0, 29 more once its headers said 30 a minute, the rest at t=60
    assert clock.now() == pytest.approx(61.0)
    waits = [c.attempts[-1] for c in done if c.attempts[-1].waited_s > 0]
    assert len(waits) == 10
    assert {a.wait_reason for a in waits} == {"the provider reported its window spent"}
    blind, _, _ = await burst(tmp_path, quota, limits(learn_from_headers=False), 40)
    assert blind.refused == 10


async def test_a_provider_without_headers_costs_one_round_trip_once(tmp_path: Path) -> None:
    quota = Quota(rpm=100, per_key=False, headers=False)
    store = MemoryStore()
    enforcer, _, clock = await burst(tmp_path, quota, limits(), 20, store=store)
    assert enforcer.refused == 0
    assert clock.now() == pytest.approx(1.0)  # the probe, then everyone else at once
    assert (await store.snapshot(0.0))["learned"] == {}


async def test_what_is_learnt_lives_in_the_store_and_shows_in_keys(tmp_path: Path) -> None:
    store = MemoryStore()
    quota = Quota(rpm=3, tpm=5000, per_key=False)
    await burst(tmp_path, quota, limits(), 4, store=store)
    assert await store.learned_limits(TARGET) == {"rpm": 3, "tpm": 5000}
    lines = learnt_lines(await store.snapshot(0.0))
    assert "    learnt      groq/m: rpm 3, tpm 5000" in lines


async def test_a_configured_limit_is_never_loosened_by_what_is_learnt(tmp_path: Path) -> None:
    enforcer, done, clock = await burst(
        tmp_path, Quota(rpm=30, per_key=False), limits({"rpm": 2}), 4
    )
    assert enforcer.refused == 0
    assert clock.now() == pytest.approx(61.0)  # the probe, 1 more, then 2 a minute later
    reasons = {a.wait_reason for c in done for a in c.attempts if a.waited_s}
    assert reasons == {"the configured limit"}


async def test_explain_says_what_the_provider_reported(tmp_path: Path) -> None:
    clock = FakeClock()
    enforcer = QuotaEnforcer({MODEL: Quota(rpm=2, per_key=False)}, clock=clock)
    script = FakeScript(record=False)
    transport = FakeTransport(script, clock=clock, quota=enforcer)
    async with fake_router(tmp_path, transport, limits(), clock=clock) as router:
        await router.complete(TARGET, "one")
        await router.complete(TARGET, "two")
        explained = await router.explain(TARGET, "three")
    row = explained.candidates[0]
    assert row.outcome == "would_send"
    assert row.wait_s == pytest.approx(60.0)
    assert row.reason is not None and "the provider reported its window spent" in row.reason
    assert enforcer.admitted == 2  # explain sent nothing


async def test_the_probe_wait_is_bounded_by_the_request_timeout(tmp_path: Path) -> None:
    # The first request never gets an answer: the others wait for it at most their own
    # timeout, then go ahead.
    clock = FakeClock()
    script = FakeScript()
    script.script(MODEL, Timeout())
    transport = FakeTransport(script, clock=clock)
    async with fake_router(tmp_path, transport, limits(), clock=clock) as router:
        results = await asyncio.gather(
            *(router.complete(TARGET, f"r{i}", timeout=30) for i in range(3)),
            return_exceptions=True,
        )
    assert sum(not isinstance(r, BaseException) for r in results) >= 2


PROCESS_A = textwrap.dedent(
    """
    import asyncio, sys
    import httpx
    from llmroute import Router
    from llmroute.stores import SQLiteStore
    from llmroute.testing import FakeScript, FakeTransport, Quota, QuotaEnforcer

    MODELS = {
        "providers": {"groq": {"type": "openai_compatible",
                               "base_url": "http://fake.test/v1", "api_key": "k"}},
        "models": {"groq/m": {"provider": "groq", "model": "m"}},
    }

    async def main(path, cache):
        quota = QuotaEnforcer({"m": Quota(rpm=2, per_key=False)})
        transport = FakeTransport(FakeScript(), quota=quota)
        async with httpx.AsyncClient(transport=transport) as http, Router(
            MODELS, {}, env_file=None, cache_dir=cache, http_client=http,
            store=SQLiteStore(path),
        ) as router:
            await router.complete("groq/m", "hello")

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


async def test_learnt_windows_are_shared_through_sqlite_between_processes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.sqlite3"
    proc = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", PROCESS_A, str(path), str(tmp_path / "a")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    # This process's provider sends no headers: only the store can tell it the window.
    store = SQLiteStore(path)
    try:
        assert await store.learned_limits(TARGET) == {"rpm": 2}
        enforcer, _, clock = await burst(
            tmp_path, Quota(rpm=2, per_key=False, headers=False), limits(), 4, store=store
        )
    finally:
        await store.aclose()
    assert enforcer.refused == 0
    assert clock.now() >= 60.0  # 2 now, 2 a minute later: the shared window held
    # ... where a fresh store (nothing learnt) lets the burst overrun
    blind, _, _ = await burst(
        tmp_path, Quota(rpm=2, per_key=False, headers=False), limits(), 4, store=MemoryStore()
    )
    assert blind.refused > 0


GEMINI_MODELS: dict[str, Any] = {
    "providers": {
        "gemini": {
            "type": "google_ai_studio",
            "base_url": "http://fake.test/v1beta",
            "api_keys": ["g0", "g1"],
        }
    },
    "models": {"gemini/flash": {"provider": "gemini", "model": "flash"}},
}


async def test_what_gemini_429s_taught_is_read_back_from_the_store(tmp_path: Path) -> None:
    store = MemoryStore()
    clock = FakeClock()
    limits_config = {
        "strategy": {"on_limit": "sleep", "max_wait_seconds": 3600, "max_attempts": 20},
        "models": {"gemini/flash": {"per_key": True}},
    }

    async def run(n: int) -> QuotaEnforcer:
        quota = QuotaEnforcer({"flash": Quota(rpm=2, per_key=True)}, clock=clock)
        transport = FakeTransport(FakeScript(record=False), clock=clock, quota=quota)
        async with fake_router(
            tmp_path, transport, limits_config, clock=clock, store=store, models=GEMINI_MODELS
        ) as router:
            await asyncio.gather(*(router.complete("gemini/flash", f"r{i}") for i in range(n)))
        return quota

    first = await run(6)
    assert first.refused > 0  # Gemini says nothing before its 429s
    assert await store.learned_limits("gemini/flash#0") == {"rpm": 2}
    clock.advance(3600)
    # A new router on the same store (another process, with a shared one) knows at once.
    second = await run(6)
    assert second.refused == 0


async def test_a_streamed_answer_teaches_too(tmp_path: Path) -> None:
    store = MemoryStore()
    clock = FakeClock()
    quota = QuotaEnforcer({MODEL: Quota(rpm=5, per_key=False)}, clock=clock)
    transport = FakeTransport(FakeScript(record=False), clock=clock, quota=quota)
    async with fake_router(tmp_path, transport, limits(), clock=clock, store=store) as router:
        chunks = [chunk async for chunk in router.stream(TARGET, "hi")]
    assert chunks and chunks[-1].finish_reason == "stop"
    assert await store.learned_limits(TARGET) == {"rpm": 5}


async def test_the_cold_start_wait_ends_at_the_call_deadline(tmp_path: Path) -> None:
    # The probe hangs; the requests waiting behind it end at their deadline too.
    import time

    from llmroute.errors import LLMRouteError
    from llmroute.testing import FakeProviderServer

    script = FakeScript()
    script.set_default(MODEL, Timeout())
    async with FakeProviderServer(script) as server:
        models = {
            "providers": {
                "groq": {
                    "type": "openai_compatible",
                    "base_url": server.openai_base_url,
                    "api_key": "k",
                    "retries": 0,
                }
            },
            "models": {TARGET: {"provider": "groq", "model": MODEL}},
        }
        async with Router(models, limits(), env_file=None, cache_dir=tmp_path) as router:
            started = time.monotonic()
            results = await asyncio.gather(
                *(router.complete(TARGET, f"r{i}", deadline=0.3) for i in range(3)),
                return_exceptions=True,
            )
            elapsed = time.monotonic() - started
    assert all(isinstance(r, LLMRouteError) for r in results), results
    assert elapsed < 0.3 + 0.25 + 0.5  # the contract's deadline slack, plus a loaded machine
