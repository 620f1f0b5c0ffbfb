"""Key rotation over real HTTP: the Router's own transport against FakeProviderServer on
127.0.0.1, and two OS processes rotating through one cache dir."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from llmroute import Router
from llmroute.testing import FakeProviderServer, InvalidKey, RateLimit, Reply

PROVIDER = "google_ai_studio"
FLASH = "google_ai_studio/gemini-2.5-flash"
WIRE_FLASH = "gemini-2.5-flash"
KEYS = (
    "fake-gemini-server-key-zero-00000000000",
    "fake-gemini-server-key-one-111111111111",
    "fake-gemini-server-key-two-222222222222",
)
IDX = f"{PROVIDER}.keyidx"


def models_config(base_url: str, keys: tuple[str, ...] = KEYS) -> dict[str, Any]:
    return {
        "providers": {
            PROVIDER: {
                "type": "google_ai_studio",
                "base_url": base_url,
                "api_keys": list(keys),
                "timeout": 10,
            }
        },
        "models": {FLASH: {"provider": PROVIDER, "model": WIRE_FLASH}},
    }


@pytest.fixture
async def server() -> AsyncIterator[FakeProviderServer]:
    async with FakeProviderServer() as server:
        yield server


def router_for(server: FakeProviderServer, cache_dir: Path) -> Router:
    # No http_client: the Router's own pooled transport, over real sockets.
    return Router(models_config(server.gemini_base_url), {}, env_file=None, cache_dir=cache_dir)


def slots(server: FakeProviderServer) -> list[int]:
    return [KEYS.index(r.key or "") for r in server.script.requests]


def served_slot(key: str | None) -> int:
    assert key is not None
    return int(key.rsplit("#", 1)[1])


async def test_round_robin_over_http(server: FakeProviderServer, tmp_path: Path) -> None:
    (tmp_path / IDX).write_text("1")
    async with router_for(server, tmp_path) as router:
        served = [await router.complete(FLASH, f"q{i}") for i in range(6)]
    assert [served_slot(c.attempts[0].key) for c in served] == [1, 2, 0, 1, 2, 0]
    assert slots(server) == [1, 2, 0, 1, 2, 0]
    assert all(c.text == f"fake answer from {WIRE_FLASH}" for c in served)
    assert (tmp_path / IDX).read_text() == "1"
    for request in server.script.requests:
        assert request.path == f"/v1beta/models/{WIRE_FLASH}:generateContent"
        assert request.query == ""
        assert request.headers["x-goog-api-key"] == request.key


async def test_429_moves_the_same_request_to_the_next_key_over_http(
    server: FakeProviderServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    (tmp_path / IDX).write_text("0")
    server.script.script(WIRE_FLASH, RateLimit(retry_delay=30), key=KEYS[0])
    server.script.script(WIRE_FLASH, InvalidKey(), key=KEYS[2])
    async with router_for(server, tmp_path) as router:
        first = await router.complete(FLASH, "hi")
        second = await router.complete(FLASH, "hi")
        # key 0 cools for 30 s and key 2 is disabled: key 1 serves everything now.
        rest = [await router.complete(FLASH, "hi") for _ in range(3)]
        status = await router.key_status()
    assert [(a.key, a.outcome, a.status) for a in first.attempts] == [
        (f"{PROVIDER}#0", "rate_limited_remote", 429),
        (f"{PROVIDER}#1", "ok", 200),
    ]
    assert [(a.key, a.outcome, a.status) for a in second.attempts] == [
        (f"{PROVIDER}#2", "client_error", 400),
        (f"{PROVIDER}#1", "ok", 200),
    ]
    assert [served_slot(c.attempts[0].key) for c in rest] == [1, 1, 1]
    assert slots(server) == [0, 1, 2, 1, 1, 1, 1]
    assert status[PROVIDER]["disabled"] == [f"{PROVIDER}#2"]
    assert list(status[PROVIDER]["cooling"]) == [f"{FLASH} {PROVIDER}#0"]
    # Nothing the real transport stack logged at DEBUG carries a key.
    assert caplog.records
    for key in KEYS:
        assert key not in caplog.text
        assert key not in repr([first, second, *rest])


async def test_concurrent_requests_over_http_spread_evenly(
    server: FakeProviderServer, tmp_path: Path
) -> None:
    server.script.set_default(WIRE_FLASH, Reply(latency=0.01))
    async with router_for(server, tmp_path) as router:
        served = await asyncio.gather(*(router.complete(FLASH, "hi") for _ in range(90)))
    assert Counter(served_slot(c.attempts[0].key) for c in served) == {0: 30, 1: 30, 2: 30}
    assert Counter(slots(server)) == {0: 30, 1: 30, 2: 30}
    assert (tmp_path / IDX).read_text() == "0"


WORKER = """
import asyncio, json, sys
from collections import Counter
from llmroute import Router

base_url, cache_dir, n, keys = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
MODELS = {
    "providers": {"google_ai_studio": {
        "type": "google_ai_studio", "base_url": base_url, "api_keys": keys, "timeout": 10}},
    "models": {"google_ai_studio/gemini-2.5-flash": {
        "provider": "google_ai_studio", "model": "gemini-2.5-flash"}},
}

async def main():
    used = Counter()
    async with Router(MODELS, {}, env_file=None, cache_dir=cache_dir) as router:
        start = (await router.key_status())["google_ai_studio"]["index"]
        for i in range(n):
            c = await router.complete("google_ai_studio/gemini-2.5-flash", f"p{i}")
            used[c.attempts[-1].key] += 1
    print(json.dumps({"start": start, "used": used}))

asyncio.run(main())
"""


async def test_two_processes_rotating_through_one_cache_dir_never_corrupt_the_index(
    server: FakeProviderServer, tmp_path: Path
) -> None:
    n = 100
    index_file = tmp_path / IDX
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            WORKER,
            server.gemini_base_url,
            str(tmp_path),
            str(n),
            *KEYS,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(2)
    ]
    outputs = [asyncio.create_task(p.communicate()) for p in procs]
    # Watch the file the whole time the workers rotate (this loop also serves them).
    reads: list[str] = []
    while not all(task.done() for task in outputs):
        with contextlib.suppress(FileNotFoundError):
            reads.append(index_file.read_text())
        await asyncio.sleep(0.001)
    results: list[dict[str, Any]] = []
    for proc, task in zip(procs, outputs, strict=True):
        out, err = task.result()
        assert proc.returncode == 0, err.decode()
        for key in KEYS:
            assert key not in err.decode()
        results.append(json.loads(out))
    reads.append(index_file.read_text())

    bad = [text for text in reads if not re.fullmatch(r"[0-2]", text)]
    assert bad == [], bad[:5]
    assert len(reads) > 10
    assert len(set(reads)) > 1  # the index really moved while it was watched
    # Each process rotated evenly over its own pool, starting where the file said.
    for result in results:
        counts = sorted(result["used"].values())
        assert sum(counts) == n and counts[-1] - counts[0] <= 1
        assert 0 <= result["start"] < len(KEYS)
    assert len(server.script.requests) == 2 * n
    assert set(os.listdir(tmp_path)) == {IDX, f"{IDX}.lock"}  # no temp files left
    # A new Router picks up whatever the last writer left.
    final = int(index_file.read_text())
    async with router_for(server, tmp_path) as router:
        c = await router.complete(FLASH, "hi")
    assert served_slot(c.attempts[0].key) == final
