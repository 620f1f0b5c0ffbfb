"""State store cost: memory vs SQLite vs Redis, at the store and through the router.

- `admission`: microseconds per admission, one at a time: `acquire` alone, and the store
  work of one request (`cooldowns` + `acquire` + `commit`).
- `store_conc`: that per-request store work from `--concurrency` tasks at once, in
  requests/s (the ceiling the store puts on a router, before any HTTP).
- `router_conc`: `Router.complete` at `--concurrency` against `bench/server.py` (0 ms
  latency), one model with rpm/tpm limits so the limiter runs on every request, with
  `store=` each backend; req/s and client CPU µs per request (the figure least moved by
  other load on the machine). Rounds alternate the order of the backends.

Redis runs on a `redis-server` this script starts on a free loopback port (no persistence)
and is skipped when none is installed; SQLite on a file in a temp dir.

    python bench/stores.py --rounds 3 --seconds 3
Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import FakeServer

BACKENDS = ("memory", "sqlite", "redis")
TOKENS = 300
BIG = 10**9


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Redis:
    """A throwaway redis-server, or None when it is not installed."""

    def __init__(self, workdir: Path) -> None:
        self.url: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        binary = shutil.which("redis-server")
        if binary is None:
            return
        port = _free_port()
        self._proc = subprocess.Popen(
            [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "",
             "--appendonly", "no", "--dir", str(workdir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    self.url = f"redis://127.0.0.1:{port}/0"
                    return
            except OSError:
                time.sleep(0.05)

    def close(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=10)


def factory(kind: str, tmp: Path, redis_url: str | None, run: int) -> Callable[[], Any] | None:
    from llmroute.stores import MemoryStore, RedisStore, SQLiteStore

    if kind == "memory":
        return MemoryStore
    if kind == "sqlite":
        return lambda: SQLiteStore(tmp / f"bench-{run}.sqlite3")
    if redis_url is None:
        return None
    url = redis_url
    return lambda: RedisStore(url, prefix=f"bench-{run}")


async def admission(make: Callable[[], Any], n: int) -> dict[str, float]:
    from llmroute.stores import Bucket

    store = make()
    buckets = [Bucket("bench/model", rpm=BIG, tpm=BIG)]
    names = ["bench/model"]
    now = time.time()
    await store.acquire(buckets, TOKENS, now)  # opens the file / connection
    started = time.perf_counter()
    for _ in range(n):
        await store.acquire(buckets, TOKENS, time.time())
    acquire_us = (time.perf_counter() - started) / n * 1e6
    started = time.perf_counter()
    for _ in range(n):
        now = time.time()
        await store.cooldowns(names, now)
        charge = await store.acquire(buckets, TOKENS, now)
        await store.commit(charge, 21)
    request_us = (time.perf_counter() - started) / n * 1e6
    await store.aclose()
    return {"acquire_us": acquire_us, "request_us": request_us}


async def store_conc(make: Callable[[], Any], concurrency: int, seconds: float) -> float:
    from llmroute.stores import Bucket

    store = make()
    buckets = [Bucket("bench/model", rpm=BIG, tpm=BIG)]
    names = ["bench/model"]
    done = 0
    stop_at = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < stop_at:
            now = time.time()
            await store.cooldowns(names, now)
            charge = await store.acquire(buckets, TOKENS, now)
            await store.commit(charge, 21)
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    rate = done / (time.perf_counter() - started)
    await store.aclose()
    return rate


async def router_conc(
    make: Callable[[], Any], base_url: str, concurrency: int, seconds: float
) -> tuple[float, float]:
    """req/s, and this process's CPU µs per request (the store thread's included)."""
    from llmroute import Router

    models = {
        "providers": {
            "bench": {"type": "openai_compatible", "base_url": base_url, "api_key": "bench-dummy"}
        },
        "models": {"bench/model": {"provider": "bench", "model": "bench-model"}},
    }
    limits = {"models": {"bench/model": {"rpm": BIG, "tpm": BIG}}}
    store = make()
    with tempfile.TemporaryDirectory() as cache:
        router = Router(models, limits, env_file=None, cache_dir=cache, store=store)
        try:
            for _ in range(concurrency):  # warm the connections
                await router.complete("bench/model", "Hello")
            done = 0
            stop_at = time.perf_counter() + seconds

            async def worker() -> None:
                nonlocal done
                while time.perf_counter() < stop_at:
                    await router.complete("bench/model", "Hello")
                    done += 1

            started, cpu = time.perf_counter(), time.process_time()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            rate = done / (time.perf_counter() - started)
            cpu_us = (time.process_time() - cpu) / max(done, 1) * 1e6
        finally:
            await router.aclose()
            await store.aclose()
    return rate, cpu_us


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


#: the figures measured per backend, one value a round
FIGURES = ("acquire_us", "request_us", "store_conc", "router_conc", "router_cpu_us")


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    runs: dict[str, dict[str, list[float]]] = {k: {f: [] for f in FIGURES} for k in BACKENDS}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        redis = Redis(tmp)
        try:
            with FakeServer(0.0) as server:
                for rnd in range(args.rounds):
                    # Alternate the order, so no backend always runs on a warmer machine.
                    order = BACKENDS if rnd % 2 == 0 else tuple(reversed(BACKENDS))
                    for kind in order:
                        await _measure_round(runs[kind], kind, tmp, redis.url, server, args, rnd)
        finally:
            redis.close()
    return {"concurrency": args.concurrency, "backends": _summarise(runs)}


async def _measure_round(
    row: dict[str, list[float]],
    kind: str,
    tmp: Path,
    redis_url: str | None,
    server: FakeServer,
    args: argparse.Namespace,
    rnd: int,
) -> None:
    """One round of every figure for one backend, each on a fresh store."""
    make = factory(kind, tmp, redis_url, rnd)
    if make is None:
        return
    cost = await admission(make, args.admissions)
    row["acquire_us"].append(cost["acquire_us"])
    row["request_us"].append(cost["request_us"])
    make = factory(kind, tmp, redis_url, 100 + rnd)
    assert make is not None
    row["store_conc"].append(await store_conc(make, args.concurrency, args.seconds))
    if args.no_router:
        return
    make = factory(kind, tmp, redis_url, 200 + rnd)
    assert make is not None
    rate, cpu_us = await router_conc(make, server.base_url, args.concurrency, args.seconds)
    row["router_conc"].append(rate)
    row["router_cpu_us"].append(cpu_us)


def _summarise(runs: dict[str, dict[str, list[float]]]) -> dict[str, Any]:
    """Medians per backend, and the shared stores' rates as a share of the memory store's."""
    backends: dict[str, Any] = {}
    for kind, row in runs.items():
        if not row["acquire_us"]:
            backends[kind] = {"skipped": "redis-server is not installed"}
            continue
        backends[kind] = {name: _median(values) for name, values in row.items()}
    memory = backends["memory"]
    for kind in ("sqlite", "redis"):
        row = backends[kind]
        for name in ("store_conc", "router_conc"):
            if row.get(name) and memory.get(name):
                row[f"{name}_vs_memory"] = row[name] / memory[name]
    return backends


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", "-c", type=int, default=50)
    parser.add_argument("--admissions", type=int, default=2_000)
    parser.add_argument("--no-router", action="store_true", help="store-level figures only")
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(main_async(args))), flush=True)


if __name__ == "__main__":
    main()
