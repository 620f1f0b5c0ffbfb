"""Work run in other OS processes (multiprocessing, spawn): importable by name."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from llmroute.stores import Bucket, Charge, RedisStore, SQLiteStore, StateStore


def open_store(kind: str, location: str, prefix: str) -> StateStore:
    if kind == "sqlite":
        return SQLiteStore(location)
    return RedisStore(location, prefix=prefix)


def admit_many(kind: str, location: str, prefix: str, requests: int, tokens: int) -> list[int]:
    """Try `requests` concurrent admissions (rpm 50, tpm 5000) and rotate the index as
    many times; return [admitted, tokens admitted, *picks per key of 4]."""

    async def run() -> list[int]:
        store = open_store(kind, location, prefix)
        buckets = [Bucket("shared/model", rpm=50, tpm=5_000)]
        try:
            got = await asyncio.gather(
                *(store.acquire(buckets, tokens, time.time()) for _ in range(requests))
            )
            picks = await asyncio.gather(
                *(store.rotate_index("shared", 4) for _ in range(requests))
            )
        finally:
            await store.aclose()
        admitted = [g for g in got if isinstance(g, Charge)]
        return [len(admitted), sum(c.tokens for c in admitted), *(picks.count(i) for i in range(4))]

    return asyncio.run(run())


#: what the multi-process router runs use
LIMITED_TPM = 700
KEYS = ("fake-key-alpha-0000000000", "fake-key-bravo-1111111111",
        "fake-key-charlie-22222222", "fake-key-delta-3333333333")  # fmt: skip


def shared_router_config(base_url: str) -> tuple[dict[str, Any], dict[str, Any]]:
    models = {
        "providers": {
            "fake": {
                "type": "openai_compatible",
                "base_url": base_url,
                "api_keys": list(KEYS),
                "rotation": {"strategy": "round_robin"},
            },
            # A provider of its own for the spread, so no other traffic moves its index.
            "spread": {
                "type": "openai_compatible",
                "base_url": base_url,
                "api_keys": list(KEYS),
                "rotation": {"strategy": "round_robin"},
            },
        },
        "models": {
            "fake/limited": {"provider": "fake", "model": "limited"},
            "spread/free": {"provider": "spread", "model": "free"},
        },
    }
    limits = {
        "strategy": {"on_limit": "fallback"},
        "models": {"fake/limited": {"rpm": 50, "tpm": LIMITED_TPM}},
    }
    return models, limits


def route_many(
    kind: str, location: str, prefix: str, base_url: str, cache_dir: str, requests: int
) -> dict[str, Any]:
    """One worker process: `requests` concurrent calls to the limited model, then 25 to the
    unlimited one (for the key spread). Returns what was served and how the rest failed."""
    from llmroute import Router
    from llmroute.errors import RateLimitedError

    async def run() -> dict[str, Any]:
        store = open_store(kind, location, prefix)
        models, limits = shared_router_config(base_url)
        try:
            async with Router(
                models, limits, env_file=None, cache_dir=cache_dir, store=store
            ) as router:
                got = await asyncio.gather(
                    *(
                        router.complete("fake/limited", "hi", max_tokens=16)
                        for _ in range(requests)
                    ),
                    return_exceptions=True,
                )
                await asyncio.gather(*(router.complete("spread/free", "hi") for _ in range(25)))
        finally:
            await store.aclose()
        failures = [type(g).__name__ for g in got if isinstance(g, BaseException)]
        limited = [g for g in got if isinstance(g, RateLimitedError)]
        return {
            "served": len(got) - len(failures),
            "rate_limited": len(limited),
            "failures": sorted(set(failures)),
        }

    return asyncio.run(run())
