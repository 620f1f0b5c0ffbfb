"""Work run in other OS processes (multiprocessing, spawn): importable by name."""

from __future__ import annotations

import asyncio
import time

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
