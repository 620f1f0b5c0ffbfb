"""Routers sharing one store: several OS processes, restarts, a store that goes away,
and hosts whose clocks disagree (issue 11's end-to-end cases)."""

from __future__ import annotations

import multiprocessing
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from store_backends import RedisServer
from store_workers import KEYS, LIMITED_TPM, route_many

from llmroute import Router
from llmroute.errors import RateLimitedError, StoreError
from llmroute.stores import RedisStore, SQLiteStore, StateStore
from llmroute.testing import FakeClock, FakeScript, FakeTransport, RateLimit, Reply, serve_in_thread

PROCESSES = 4
REQUESTS = 250
#: what the fake reports per request; the router's estimate ("hi" + max_tokens 16) is 21
PROMPT_TOKENS, COMPLETION_TOKENS = 5, 12


def location_of(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if kind == "sqlite":
        return str(tmp_path / "shared.sqlite3")
    server: RedisServer = request.getfixturevalue("redis_server")
    return server.url


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_processes_sharing_a_store_keep_the_limits_together(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    location = location_of(kind, tmp_path, request)
    prefix = f"mp-{uuid.uuid4().hex[:10]}"
    script = FakeScript()
    script.set_default(
        "limited",
        Reply(text="ok", prompt_tokens=PROMPT_TOKENS, completion_tokens=COMPLETION_TOKENS),
    )
    # The store starts empty: the processes' starts agree (set-if-absent) and every
    # request after is the store's atomic fetch-and-advance.
    with serve_in_thread(script) as server:
        ctx = multiprocessing.get_context("spawn")
        with ctx.Pool(PROCESSES) as pool:
            args = (kind, location, prefix, server.openai_base_url, str(tmp_path / "cache"))
            results = pool.starmap(route_many, [(*args, REQUESTS)] * PROCESSES)
    limited = [r for r in script.requests if r.model == "limited"]
    served = sum(r["served"] for r in results)
    # Every request the router did not send was refused locally, nothing else.
    assert all(r["failures"] in ([], ["RateLimitedError"]) for r in results), results
    assert served == len(limited)
    assert 0 < len(limited) <= 50
    assert len(limited) * (PROMPT_TOKENS + COMPLETION_TOKENS) <= LIMITED_TPM
    # The unlimited model's 100 requests: fetch-and-advance on one shared index.
    spread = Counter(r.key for r in script.requests if r.model == "free")
    assert sorted(spread) == sorted(KEYS)
    assert set(spread.values()) == {PROCESSES * 25 // len(KEYS)}


# -- restarts (SQLite) ---------------------------------------------------------------------------

GEMINI_KEYS = ("fake-gemini-restart-key-one-11111111", "fake-gemini-restart-key-two-22222222")


def gemini_models(daily: int | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    models = {
        "providers": {
            "google_ai_studio": {
                "type": "google_ai_studio",
                "base_url": "http://gemini.test/v1beta",
                "api_keys": list(GEMINI_KEYS),
            }
        },
        "models": {"google_ai_studio/gemini-2.5-flash": {"provider": "google_ai_studio"}},
    }
    spec: dict[str, Any] = {} if daily is None else {"rpd": daily}
    limits = {
        "strategy": {"on_limit": "fallback"},
        "models": {"google_ai_studio/gemini-2.5-flash": spec},
    }
    return models, limits


async def one_run(
    store: StateStore, script: FakeScript, clock: FakeClock, cache: Path, n: int, daily: int | None
) -> list[BaseException | None]:
    """One run of a script that uses the router: a fresh router, `n` requests, closed."""
    models, limits = gemini_models(daily)
    client = httpx.AsyncClient(transport=FakeTransport(script, clock=clock))
    outcomes: list[BaseException | None] = []
    async with Router(
        models, limits, env_file=None, cache_dir=cache, store=store, clock=clock, http_client=client
    ) as router:
        for _ in range(n):
            try:
                await router.complete("google_ai_studio/gemini-2.5-flash", "hello")
                outcomes.append(None)
            except RateLimitedError as exc:
                outcomes.append(exc)
            clock.advance(60)
    await client.aclose()
    await store.aclose()
    return outcomes


async def test_a_daily_window_holds_across_runs(tmp_path: Path) -> None:
    path, script, clock = tmp_path / "state.sqlite3", FakeScript(), FakeClock()
    outcomes: list[BaseException | None] = []
    for _ in range(3):
        outcomes += await one_run(SQLiteStore(path), script, clock, tmp_path, 5, daily=8)
    assert outcomes.count(None) == 8
    assert len(script.requests) == 8
    assert all(isinstance(o, RateLimitedError) for o in outcomes[8:])


async def test_a_key_cooled_until_midnight_is_not_tried_by_the_next_run(tmp_path: Path) -> None:
    path, script, clock = tmp_path / "state.sqlite3", FakeScript(), FakeClock()
    script.script("gemini-2.5-flash", RateLimit(per_day=True), key=GEMINI_KEYS[0])
    first = await one_run(SQLiteStore(path), script, clock, tmp_path, 2, daily=None)
    assert first == [None, None]
    assert [r.key for r in script.requests] == [GEMINI_KEYS[0], GEMINI_KEYS[1], GEMINI_KEYS[1]]
    script.requests.clear()
    # The next run starts from where the rotation stands, yet passes over the cooled key.
    await one_run(SQLiteStore(path), script, clock, tmp_path, 4, daily=None)
    assert [r.key for r in script.requests] == [GEMINI_KEYS[1]] * 4


# -- Redis: a store that goes away, and clocks that disagree ----------------------------------


async def test_a_stopped_redis_fails_requests_unsent_and_a_restarted_one_serves(
    own_server: RedisServer, tmp_path: Path
) -> None:
    script, clock = FakeScript(), FakeClock()
    store = RedisStore(own_server.url, f"stop-{uuid.uuid4().hex[:8]}")
    models, limits = gemini_models(daily=100)
    client = httpx.AsyncClient(transport=FakeTransport(script, clock=clock))
    target = "google_ai_studio/gemini-2.5-flash"
    async with Router(
        models, limits, env_file=None, cache_dir=tmp_path, store=store, clock=clock,
        http_client=client,
    ) as router:  # fmt: skip
        await router.complete(target, "before")
        own_server.stop()
        for _ in range(3):
            with pytest.raises(StoreError, match="connection refused"):
                await router.complete(target, "while down")
        assert len(script.requests) == 1
        own_server.start()
        done = await router.complete(target, "after")
        assert done.text
        assert len(script.requests) == 2
    await client.aclose()
    await store.aclose()


async def test_routers_whose_clocks_differ_by_30s_share_one_window(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    prefix = f"skew-{uuid.uuid4().hex[:8]}"
    script = FakeScript()
    models, _ = gemini_models()
    limits = {
        "strategy": {"on_limit": "fallback"},
        "models": {"google_ai_studio/gemini-2.5-flash": {"rpm": 2}},
    }
    routers: list[Router] = []
    stores: list[RedisStore] = []
    clients: list[httpx.AsyncClient] = []
    for skew in (0.0, 30.0):
        clock = FakeClock(start=skew, wall=1_700_000_000.0 + skew)
        store = RedisStore(redis_server.url, prefix)
        client = httpx.AsyncClient(transport=FakeTransport(script, clock=clock))
        stores.append(store)
        clients.append(client)
        routers.append(
            Router(
                models,
                limits,
                env_file=None,
                cache_dir=tmp_path / str(skew),
                store=store,
                clock=clock,
                http_client=client,
            )
        )
    here, there = routers
    try:
        await here.complete("google_ai_studio/gemini-2.5-flash", "one")
        await there.complete("google_ai_studio/gemini-2.5-flash", "two")
        for router in (here, there):
            with pytest.raises(RateLimitedError) as info:
                await router.complete("google_ai_studio/gemini-2.5-flash", "three")
            assert info.value.retry_after is not None
            assert 50.0 < info.value.retry_after <= 60.0
        assert len(script.requests) == 2
    finally:
        for router in routers:
            await router.aclose()
        for client in clients:
            await client.aclose()
        for store in stores:
            await store.aclose()


# -- what another process sees (`llmroute keys`) -----------------------------------------------


async def test_key_state_from_another_run_is_visible(tmp_path: Path) -> None:
    """`llmroute keys` reads `Router.key_status()`: with a shared store it shows the
    cooldowns and disabled keys another process left there."""
    from llmroute.testing import InvalidKey

    keys = (*GEMINI_KEYS, "fake-gemini-restart-key-three-3333333")
    models, limits = gemini_models()
    models["providers"]["google_ai_studio"]["api_keys"] = list(keys)
    limits["state"] = {"backend": "sqlite", "path": str(tmp_path / "state.sqlite3")}
    script, clock = FakeScript(), FakeClock()
    script.script("gemini-2.5-flash", RateLimit(retry_delay=120), key=keys[0])
    script.script("gemini-2.5-flash", InvalidKey(), key=keys[1])
    for run in range(2):
        client = httpx.AsyncClient(transport=FakeTransport(script, clock=clock))
        async with Router(
            models, limits, env_file=None, cache_dir=tmp_path, clock=clock, http_client=client
        ) as router:
            if run == 0:
                await router.complete("google_ai_studio/gemini-2.5-flash", "hello")
            status = (await router.key_status())["google_ai_studio"]
        await client.aclose()
    assert status["disabled"] == ["google_ai_studio#1"]
    assert list(status["cooling"]) == ["google_ai_studio/gemini-2.5-flash google_ai_studio#0"]
    assert 100 < next(iter(status["cooling"].values())) <= 120
