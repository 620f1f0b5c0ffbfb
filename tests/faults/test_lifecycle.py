"""The router's lifecycle, each case in a real interpreter: what it prints (nothing, or one
clear error) and what it leaves in the cache directory.

The fault server runs in this test's event loop; each script talks to it from its own
process, so exit-time behaviour (atexit, loop shutdown, garbage collection) is real.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from llmroute.testing import FaultServer

from .helpers import leaked

SRC = Path(__file__).resolve().parents[2] / "src"
KEYS = ["AIzaLifecycleKey0000aaaaaaaa", "AIzaLifecycleKey1111bbbbbbbb", "AIzaLifecycleKey22cc"]

PRELUDE = """
import asyncio, json, sys, threading
from llmroute import Router
from llmroute.errors import LLMRouteError

config, cache, limits = json.loads(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])

def new_router():
    return Router(config, limits, env_file=None, cache_dir=cache)

def report(exc):
    print(f"{type(exc).__name__}|{isinstance(exc, LLMRouteError)}|{exc}")
"""

SCRIPTS = {
    # A module-level router a script never closes: nothing printed, the index on disk.
    "never_closed": """
router = new_router()
for _ in range(4):
    router.complete_sync("gem/m", "hi")
print("served 4")
""",
    "closed_raises": """
router = new_router()
router.complete_sync("gem/m", "hi")
router.close()
for call in ("sync", "async"):
    try:
        if call == "sync":
            router.complete_sync("gem/m", "hi")
        else:
            asyncio.run(router.complete("gem/m", "hi"))
    except Exception as exc:
        report(exc)
""",
    "sync_inside_a_loop": """
router = new_router()

async def main():
    try:
        router.complete_sync("gem/m", "hi")
    except Exception as exc:
        report(exc)
    await router.aclose()

asyncio.run(main())
""",
    # HTTP sessions and the CLI providers' concurrency slots are bound to a loop: each
    # loop gets its own.
    "loop_after_loop": """
router = new_router()
for target in ("gem/m", "cli/m"):
    print(asyncio.run(router.complete(target, "hi")).text)
    print(asyncio.run(router.complete(target, "hi")).text)
    print(router.complete_sync(target, "hi").text)
    print(asyncio.run(router.complete(target, "hi")).text)
router.close()
""",
    "two_threads": """
router = new_router()
started = threading.Event()
results = []

def slow():
    async def run():
        stream = router.stream("slow/m", "hi")
        async for _ in stream:
            started.set()
        return "slow done"
    try:
        results.append(asyncio.run(run()))
    except Exception as exc:
        results.append(exc)

thread = threading.Thread(target=slow)
thread.start()
started.wait(5)
try:
    asyncio.run(router.complete("gem/m", "hi"))
    print("second thread served")
except Exception as exc:
    report(exc)
thread.join(10)
print(results[0])
# the refused call spent none of gem/m's budget (rpm 1)
print(asyncio.run(router.complete("gem/m", "hi")).text)
router.close()
""",
}


LIMITS = {"two_threads": {"strategy": {"on_limit": "fallback"}, "models": {"gem/m": {"rpm": 1}}}}

FAKE_CLAUDE = """
import sys
sys.stdin.read()
print('{"type":"result","subtype":"success","is_error":false,"result":"from the cli",'
      '"usage":{"input_tokens":3,"output_tokens":3}}')
"""


def config(server: FaultServer, cache: Path) -> dict[str, Any]:
    slow = server.base_url("slow_chunks", "openai")
    bin_dir = cache.with_name(cache.name + "-bin")  # beside the cache, which tests list
    bin_dir.mkdir(exist_ok=True)
    fake_claude = bin_dir / "fake_claude.py"
    fake_claude.write_text(FAKE_CLAUDE)
    return {
        "providers": {
            "gem": {
                "type": "google_ai_studio",
                "base_url": server.base_url("ok", "gemini"),
                "api_keys": KEYS,
            },
            "slow": {"type": "openai_compatible", "base_url": slow, "api_key": KEYS[0] + "x"},
            "cli": {
                "type": "claude_code",
                "command": [sys.executable, str(fake_claude)],
                "max_concurrency": 1,
            },
        },
        "models": {
            "gem/m": {"provider": "gem", "model": "gemini-2.5-flash"},
            "slow/m": {"provider": "slow", "model": "m"},
            "cli/m": {"provider": "cli", "model": "sonnet"},
        },
    }


async def run_script(name: str, server: FaultServer, cache: Path) -> tuple[int, str, str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")])),
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        PRELUDE + SCRIPTS[name],
        json.dumps(config(server, cache)),
        str(cache),
        json.dumps(LIMITS.get(name, {})),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(30):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.fixture
async def server() -> Any:
    async with FaultServer(gap=0.3) as server:
        yield server


def assert_quiet(err: str, out: str) -> None:
    assert err == ""
    assert leaked(out) == []
    for key in KEYS:
        assert key[:12] not in out


async def test_a_router_never_closed_prints_nothing_and_keeps_its_index(
    server: FaultServer, tmp_path: Path
) -> None:
    code, out, err = await run_script("never_closed", server, tmp_path)
    assert (code, out) == (0, "served 4\n")
    assert_quiet(err, out)
    # four requests over three keys, round robin from 0: the next key is #1
    assert (tmp_path / "gem.keyidx").read_text() == "1"
    assert sorted(os.listdir(tmp_path)) == ["gem.keyidx", "gem.keyidx.lock"]


async def test_a_closed_router_raises(server: FaultServer, tmp_path: Path) -> None:
    code, out, err = await run_script("closed_raises", server, tmp_path)
    assert code == 0
    assert_quiet(err, out)
    lines = out.splitlines()
    assert len(lines) == 2
    for line in lines:
        name, typed, message = line.split("|", 2)
        assert (name, typed) == ("LLMRouteError", "True")
        assert "closed" in message
    assert len(server.requests_for("ok")) == 1


async def test_complete_sync_inside_a_running_loop_says_to_await(
    server: FaultServer, tmp_path: Path
) -> None:
    code, out, err = await run_script("sync_inside_a_loop", server, tmp_path)
    assert code == 0
    assert_quiet(err, out)
    name, typed, message = out.strip().split("|", 2)
    assert typed == "True", name
    assert "await router.complete" in message


async def test_one_loop_after_another(server: FaultServer, tmp_path: Path) -> None:
    code, out, err = await run_script("loop_after_loop", server, tmp_path)
    assert code == 0, err
    assert_quiet(err, out)
    assert (
        out.splitlines()
        == ["The quick brown fox jumps over the lazy dog."] * 4 + ["from the cli"] * 4
    )


async def test_two_threads_at_once_get_a_clear_error(server: FaultServer, tmp_path: Path) -> None:
    code, out, err = await run_script("two_threads", server, tmp_path)
    assert code == 0, err
    assert_quiet(err, out)
    refused, first, after = out.splitlines()
    _, typed, message = refused.split("|", 2)
    assert typed == "True", refused
    assert "thread" in message or "loop" in message
    assert first == "slow done"
    assert after == "The quick brown fox jumps over the lazy dog."
    # the refused call was never sent, nor charged
    assert len(server.requests_for("ok")) == 1


async def test_stale_temp_files_of_killed_processes_are_removed(
    server: FaultServer, tmp_path: Path
) -> None:
    stale = [tmp_path / ".gem.keyidx.k1ll3d_x.tmp", tmp_path / ".gem.keyidx.abcd1234.tmp"]
    for path in stale:
        path.write_text("2")
    (tmp_path / "gem.keyidx").write_text("2")
    code, out, err = await run_script("never_closed", server, tmp_path)
    assert code == 0
    assert_quiet(err, out)
    assert not any(path.exists() for path in stale)
    # from 2, four requests: 2, 0, 1, 2 -> next is 0
    assert (tmp_path / "gem.keyidx").read_text() == "0"
