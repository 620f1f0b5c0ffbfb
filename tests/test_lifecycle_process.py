"""Router lifecycle as a user's script lives it, each in a real interpreter: stderr must stay
empty, the key index on disk must hold the last value, and misuse must say what to do."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from llmroute.testing import serve_in_thread

PRELUDE = """
import asyncio, sys, threading
from llmroute import Router
from llmroute.errors import LLMRouteError

BASE = sys.argv[1]
CACHE = sys.argv[2]
MODELS = {
    "providers": {
        "g": {
            "type": "google_ai_studio",
            "base_url": BASE + "/v1beta",
            "api_keys": [
                "fake-key-zero-000000000000",
                "fake-key-one-1111111111111",
                "fake-key-two-22222222222",
            ],
        },
    },
    "models": {"g/flash": {"provider": "g", "model": "gemini-2.5-flash"}},
}
router = Router(MODELS, {}, env_file=None, cache_dir=CACHE)
"""


def run(script: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "script.py"
    path.write_text(PRELUDE + textwrap.dedent(script), encoding="utf-8")
    with serve_in_thread() as server:
        return subprocess.run(
            [sys.executable, "-W", "error::ResourceWarning", str(path), server.base_url,
             str(tmp_path / "cache")],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )  # fmt: skip


def test_sync_then_async_never_closed_loses_nothing_and_prints_nothing(tmp_path: Path) -> None:
    done = run(
        """
        print(router.complete_sync("g/flash", "one").attempts[-1].key)
        print(asyncio.run(router.complete("g/flash", "two")).attempts[-1].key)
        print(router.complete_sync("g/flash", "three").attempts[-1].key)
        print(asyncio.run(router.complete("g/flash", "four")).attempts[-1].key)
        """,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["g#0", "g#1", "g#2", "g#0"]
    assert done.stderr == ""
    assert (tmp_path / "cache" / "g.keyidx").read_text() == "1"


def test_misuse_says_what_to_do(tmp_path: Path) -> None:
    done = run(
        """
        async def inside_a_loop():
            try:
                router.complete_sync("g/flash", "x")
            except LLMRouteError as exc:
                print("sync in loop:", exc)

        asyncio.run(inside_a_loop())
        release = threading.Event()
        streaming = threading.Event()

        async def hold():
            # A stream that is being read is a call in flight.
            async for chunk in router.stream("g/flash", "held"):
                streaming.set()
                await asyncio.to_thread(release.wait, 10)

        thread = threading.Thread(target=lambda: asyncio.run(hold()))
        thread.start()
        streaming.wait(10)
        try:
            asyncio.run(router.complete("g/flash", "from another thread"))
        except LLMRouteError as exc:
            print("two loops:", exc)
        release.set()
        thread.join()
        router.close()
        try:
            router.complete_sync("g/flash", "after close")
        except LLMRouteError as exc:
            print("closed:", exc)
        """,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("sync in loop:") and "await router.complete" in lines[0]
    assert lines[1].startswith("two loops:") and "one router per thread" in lines[1]
    assert lines[2] == "closed: router is closed"
    assert done.stderr == ""
