"""Routers in other OS processes (multiprocessing, spawn) for tests/stores/test_shared_keys.py:
importable by name."""

from __future__ import annotations

import asyncio
from typing import Any

from store_workers import KEYS, open_store


def spread_config(base_url: str) -> dict[str, Any]:
    return {
        "providers": {
            "spread": {
                "type": "openai_compatible",
                "base_url": base_url,
                "api_keys": list(KEYS),
                "rotation": {"strategy": "round_robin"},
            }
        },
        "models": {"spread/free": {"provider": "spread", "model": "free"}},
    }


def start_and_route(
    kind: str, location: str, prefix: str, base_url: str, cache_dir: str, start: Any, n: int
) -> int:
    """A worker that builds its router, waits at `start` (a barrier every worker shares) and
    then sends `n` concurrent requests as its very first: the router's start-up on an
    empty store races the other workers'. Returns how many were served."""
    from llmroute import Router

    async def run() -> int:
        store = open_store(kind, location, prefix)
        try:
            async with Router(
                spread_config(base_url), {}, env_file=None, cache_dir=cache_dir, store=store
            ) as router:
                await asyncio.get_running_loop().run_in_executor(None, start.wait)
                got = await asyncio.gather(
                    *(router.complete("spread/free", "hi") for _ in range(n))
                )
        finally:
            await store.aclose()
        return len(got)

    return asyncio.run(run())
