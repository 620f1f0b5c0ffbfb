"""What only the Redis store promises: the server's clock, keys that expire, failures as
`StoreError` without secrets, and service again once the server is back."""

from __future__ import annotations

import asyncio
import multiprocessing
import uuid

import pytest
from store_backends import RedisServer
from store_workers import admit_many

from llmroute.errors import StoreError
from llmroute.stores import Bucket, Charge, RedisStore


def fresh_prefix() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


async def test_hosts_with_skewed_clocks_share_one_window(redis_server: RedisServer) -> None:
    prefix = fresh_prefix()
    # Two routers whose clocks differ by 30 s: the server's TIME decides, not theirs.
    here, there = RedisStore(redis_server.url, prefix), RedisStore(redis_server.url, prefix)
    b = [Bucket("m", rpm=2)]
    try:
        assert isinstance(await here.acquire(b, 1, 1_700_000_000.0), Charge)
        assert isinstance(await there.acquire(b, 1, 1_700_000_030.0), Charge)
        wait = await here.acquire(b, 1, 1_700_000_000.0)
        assert isinstance(wait, float)
        assert 55.0 < wait <= 60.0
        await there.set_cooldown("k", 10.0, 1_700_000_030.0)
        left = await here.cooldowns(["k"], 0.0)
        assert 9.0 < left[0] <= 10.0
    finally:
        await here.aclose()
        await there.aclose()


async def test_every_key_expires_by_itself(redis_server: RedisServer) -> None:
    import redis.asyncio as aioredis

    prefix = fresh_prefix()
    store = RedisStore(redis_server.url, prefix)
    try:
        charge = await store.acquire([Bucket("m", rpm=5, rpd=10), Bucket("k", tpm=100)], 5, 0.0)
        assert isinstance(charge, Charge)
        await store.commit(charge, 7)
        await store.set_cooldown("c", 30.0, 0.0)
        await store.disable_key("p", "fp")
        await store.rotate_index("p", 3)
        await store.set_index("q", 1)
        await store.learn_limit("m", "rpm", 5)
    finally:
        await store.aclose()
    client = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    try:
        keys = [k async for k in client.scan_iter(match=f"{prefix}:*")]
        assert len(keys) >= 10
        ttls = {k: await client.ttl(k) for k in keys}
    finally:
        await client.aclose()
    assert all(ttl > 0 for ttl in ttls.values()), ttls
    assert ttls[f"{prefix}:w:m:m"] <= 61
    assert 86_000 < ttls[f"{prefix}:w:m:d"] <= 86_401


async def test_a_stopped_server_is_a_store_error_and_a_restarted_one_serves(
    own_server: RedisServer,
) -> None:
    store = RedisStore(own_server.url, fresh_prefix())
    b = [Bucket("m", rpm=100)]
    try:
        assert isinstance(await store.acquire(b, 1, 0.0), Charge)
        own_server.stop()
        calls = (
            lambda: store.acquire(b, 1, 0.0),
            lambda: store.cooldowns(["x"], 0.0),
            lambda: store.set_cooldown("x", 1.0, 0.0),
            lambda: store.rotate_index("p", 2),
            lambda: store.disabled_keys("p"),
            lambda: store.snapshot(0.0),
        )
        for call in calls:
            with pytest.raises(StoreError, match="connection refused"):
                await call()
        own_server.start()
        # No persistence: the restarted server is empty, and serves at once.
        assert isinstance(await store.acquire(b, 1, 0.0), Charge)
        assert await store.rotate_index("p", 2) == 0
    finally:
        await store.aclose()


async def test_errors_and_repr_never_show_the_password() -> None:
    # Nothing listens on port 9 of loopback: connection refused.
    store = RedisStore("redis://:hunter2-very-secret@127.0.0.1:9/0", "p")
    try:
        with pytest.raises(StoreError) as info:
            await store.acquire([Bucket("m", rpm=1)], 1, 0.0)
    finally:
        await store.aclose()
    assert "hunter2" not in str(info.value)
    assert "hunter2" not in repr(store)
    assert "127.0.0.1:9" in str(info.value)


def test_one_store_serves_one_event_loop_after_another(redis_server: RedisServer) -> None:
    store = RedisStore(redis_server.url, fresh_prefix())

    async def take() -> int:
        return await store.rotate_index("p", 10)

    assert asyncio.run(take()) == 0
    assert asyncio.run(take()) == 1

    async def close() -> None:
        await store.aclose()

    asyncio.run(close())


def test_processes_sharing_the_server_never_overshoot(redis_server: RedisServer) -> None:
    prefix = fresh_prefix()
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        results = pool.starmap(admit_many, [("redis", redis_server.url, prefix, 60, 90)] * 4)
    assert sum(r[0] for r in results) == 50
    assert sum(r[1] for r in results) <= 5_000
    assert [sum(r[2 + i] for r in results) for i in range(4)] == [60, 60, 60, 60]
