"""Limiter admission cost and memory, on the router's own limiter state store.

Uses what the router calls per request on the default `llmroute.stores.MemoryStore`:
`acquire_nowait([bucket], cost, now)`, then `commit_nowait(charge, tokens)` once the real
usage is known (the synchronous twins the router calls for a store without I/O; the
figures keep their old names, `acquire_settle_us`). Time is passed in (the store reads no
clock), so a simulated clock moves on by a fixed step per admission and old entries leave
the windows as they would.

- Admission cost with 1, 100 and 10,000 configured models (admissions spread at random
  over the models), in microseconds per `acquire` and per `acquire` + `settle`.
- Memory over 1,000,000 admissions on one model whose windows stay full: allocated
  blocks and RSS every 100,000 admissions. Flat after warm-up means no growth per request.

Prints one JSON line; `{"skipped": ...}` if the limiter is not importable.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import resource
import sys
import time
from typing import Any

MINUTE_RPM = 100_000  # the minute window fills after this many admissions: the warm-up
STEP = 60.0 / MINUTE_RPM  # seconds of simulated time per admission, so every one fits
COST = 300
TOKENS = 21


def _rss_mb() -> float:
    try:
        with open(f"/proc/{os.getpid()}/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def admission_cost(models: int, admissions: int) -> dict[str, float]:
    from llmroute.stores import Bucket, MemoryStore

    store = MemoryStore()
    buckets = [
        Bucket(f"provider/model-{i}", rpm=MINUTE_RPM * 10, tpm=10**12) for i in range(models)
    ]
    rng = random.Random(7)
    order = [buckets[rng.randrange(models)] for _ in range(admissions)]
    now = 1_000.0
    # Warm every bucket's window first, so the figures are not first-touch costs.
    for bucket in buckets:
        store.acquire_nowait([bucket], COST, now)
    gc.collect()
    acquire = store.acquire_nowait
    commit = store.commit_nowait
    perf = time.perf_counter
    lists = {bucket.name: [bucket] for bucket in buckets}
    order_lists = [lists[bucket.name] for bucket in order]

    started = perf()
    for one in order_lists:
        now += STEP
        acquire(one, COST, now)
    acquire_s = perf() - started

    started = perf()
    for one in order_lists:
        now += STEP
        charge = acquire(one, COST, now)
        assert not isinstance(charge, float)
        commit(charge, TOKENS)
    both_s = perf() - started
    return {
        "models": models,
        "admissions": admissions,
        "acquire_us": acquire_s / admissions * 1e6,
        "acquire_settle_us": both_s / admissions * 1e6,
    }


async def memory_growth(admissions: int, every: int) -> dict[str, Any]:
    from llmroute.stores import Bucket, MemoryStore

    store = MemoryStore()
    bucket = [Bucket("provider/model", rpm=MINUTE_RPM, tpm=10**12)]
    now = 1_000.0
    points: list[dict[str, float]] = []
    refused = 0
    for n in range(1, admissions + 1):
        now += STEP
        got = await store.acquire(bucket, COST, now)
        if isinstance(got, float):
            refused += 1
        else:
            await store.commit(got, TOKENS)
        if n % every == 0:
            gc.collect()
            points.append(
                {"admissions": n, "blocks": sys.getallocatedblocks(), "rss_mb": _rss_mb()}
            )
    warm = [p for p in points if p["admissions"] >= MINUTE_RPM]
    growth = (
        (warm[-1]["blocks"] - warm[0]["blocks"]) / (warm[-1]["admissions"] - warm[0]["admissions"])
        if len(warm) >= 2
        else None
    )
    return {
        "admissions": admissions,
        "refused": refused,
        "points": points,
        "blocks_per_admission_after_warmup": growth,
        "rss_after_mb": points[-1]["rss_mb"] if points else None,
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    try:
        import llmroute.stores  # noqa: F401
    except ImportError as exc:
        return {"skipped": f"llmroute.stores is not importable: {exc}"}
    costs = [await admission_cost(m, args.admissions) for m in args.models]
    memory = await memory_growth(args.memory_admissions, max(1, args.memory_admissions // 10))
    return {"cost": costs, "memory": memory, "window_step_s": STEP, "minute_rpm": MINUTE_RPM}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, nargs="+", default=[1, 100, 10_000])
    parser.add_argument("--admissions", type=int, default=200_000)
    parser.add_argument("--memory-admissions", type=int, default=1_000_000)
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(main_async(args))), flush=True)


if __name__ == "__main__":
    main()
