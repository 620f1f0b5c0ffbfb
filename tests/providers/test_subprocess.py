"""The subprocess runner against small fake executables: no CLI needed, nothing left behind."""

from __future__ import annotations

import asyncio
import hashlib
import json
import signal
import sys
import textwrap
import time
from collections.abc import AsyncGenerator
from pathlib import Path

import pytest
from proc_helpers import is_empty, read_pids, wait_gone

from llmroute.providers._subprocess import RunResult, SubprocessRunner, build_child_env

# Spawns a grandchild in the same group, then records both pids (atomically, the test polls).
SPAWN_GRANDCHILD = """
import os, subprocess, sys
grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
tmp = os.environ["PIDS"] + ".tmp"
with open(tmp, "w") as f:
    f.write(f"{os.getpid()} {grandchild.pid}")
os.replace(tmp, os.environ["PIDS"])
"""


def write_script(directory: Path, name: str, body: str) -> Path:
    path = directory / name
    path.write_text(f"#!{sys.executable}\n{textwrap.dedent(body)}")
    path.chmod(0o755)
    return path


@pytest.fixture
def bin_dir(tmp_path: Path) -> Path:
    path = tmp_path / "bin"
    path.mkdir()
    return path


async def collect(stream: AsyncGenerator[bytes | RunResult, None]) -> list[bytes | RunResult]:
    return [item async for item in stream]


async def test_run_closes_stdin_and_returns_output(
    runner: SubprocessRunner, bin_dir: Path, runs: Path
) -> None:
    # Reads stdin to EOF, as Codex does: it only finishes if stdin is closed.
    fake = write_script(
        bin_dir,
        "reverse",
        """
        import sys
        data = sys.stdin.buffer.read()
        sys.stdout.buffer.write(data[::-1])
        sys.stderr.write("some progress")
        sys.exit(3)
        """,
    )
    result = await runner.run([str(fake)], stdin=b"hello", timeout=10, env={})
    assert result.stdout == b"olleh"
    assert result.stderr_tail == b"some progress"
    assert result.returncode == 3
    assert not result.timed_out and not result.stdout_overflow
    assert is_empty(runs)


async def test_large_stdin_arrives_intact(runner: SubprocessRunner, bin_dir: Path) -> None:
    fake = write_script(
        bin_dir,
        "digest",
        """
        import hashlib, sys
        data = sys.stdin.buffer.read()
        print(len(data), hashlib.sha256(data).hexdigest())
        """,
    )
    prompt = ("Ünïcode and a long line. " * 4000).encode()
    assert len(prompt) > 100_000
    result = await runner.run([str(fake)], stdin=prompt, timeout=10, env={})
    assert result.stdout.decode().split() == [str(len(prompt)), hashlib.sha256(prompt).hexdigest()]


async def test_child_sees_allow_listed_env_and_private_dirs(bin_dir: Path, runs: Path) -> None:
    fake = write_script(
        bin_dir,
        "env",
        """
        import json, os
        print(json.dumps({
            "env": dict(os.environ),
            "cwd": os.getcwd(),
            "cwd_entries": os.listdir("."),
            "tmpdir_exists": os.path.isdir(os.environ["TMPDIR"]),
            "home_exists": os.path.isdir(os.environ["HOME"]),
        }))
        """,
    )
    base = {
        "PATH": "/usr/bin:/bin",
        "HOME": "/home/someone",
        "LANG": "C.UTF-8",
        "ANTHROPIC_BASE_URL": "http://127.0.0.1:9",
        "CLAUDE_CODE_MAX_RETRIES": "1",
        "CODEX_API_KEY": "codex-key",
        "ANTHROPIC_API_KEY": "would-bill-the-api",
        "XDG_CONFIG_HOME": "/home/someone/.config",
        "https_proxy": "http://proxy:3128",
        "CLAUDECODE": "1",
        "GROQ_API_KEY": "not-for-the-cli",
        "UNRELATED": "x",
    }
    runner = SubprocessRunner(temp_dir=runs, base_env=base)
    overrides = {"HOME": "{private_home}", "EXTRA": "yes", "CLAUDECODE": "1"}
    result = await runner.run([str(fake)], stdin=b"", timeout=10, env=overrides)
    seen = json.loads(result.stdout)
    env = seen["env"]
    # Python itself may add LC_CTYPE (PEP 538 locale coercion).
    env.pop("LC_CTYPE", None)
    # Credentials never pass by inheritance, only through the provider's `env:`.
    passed = {"PATH", "LANG", "ANTHROPIC_BASE_URL", "CLAUDE_CODE_MAX_RETRIES"}
    assert set(env) == passed | {"XDG_CONFIG_HOME", "https_proxy", "HOME", "EXTRA", "TMPDIR"}
    assert env["EXTRA"] == "yes"
    run_dir = Path(seen["cwd"]).parent
    assert run_dir.parent == runs
    assert env["HOME"] == str(run_dir / "home")
    assert env["TMPDIR"] == str(run_dir / "tmp")
    assert seen["cwd_entries"] == []
    assert seen["tmpdir_exists"] and seen["home_exists"]
    assert is_empty(runs)


def test_build_child_env_keeps_real_home_unless_asked() -> None:
    base = {"HOME": "/home/me", "PATH": "/bin", "CLAUDECODE": "1", "AWS_SECRET_ACCESS_KEY": "s"}
    env = build_child_env(base, {}, private_home="/run/home", tmpdir="/run/tmp")
    assert env == {"HOME": "/home/me", "PATH": "/bin", "TMPDIR": "/run/tmp"}
    env = build_child_env(
        base, {"CODEX_HOME": "{private_home}/"}, private_home="/run/home", tmpdir="/run/tmp"
    )
    assert env["CODEX_HOME"] == "/run/home/"
    assert env["HOME"] == "/home/me"


async def test_timeout_kills_the_whole_group(
    runner: SubprocessRunner, bin_dir: Path, runs: Path, tmp_path: Path
) -> None:
    fake = write_script(bin_dir, "hang", SPAWN_GRANDCHILD + "import time; time.sleep(60)\n")
    pids = tmp_path / "pids"
    started = time.monotonic()
    result = await runner.run([str(fake)], stdin=b"", timeout=0.5, env={"PIDS": str(pids)})
    assert time.monotonic() - started < 2.5
    assert result.timed_out
    assert result.returncode == -signal.SIGTERM
    assert await wait_gone(*await read_pids(pids))
    assert is_empty(runs)


async def test_sigterm_ignored_gets_sigkill_after_grace(
    runner: SubprocessRunner, bin_dir: Path
) -> None:
    fake = write_script(
        bin_dir,
        "stubborn",
        """
        import signal, sys, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ready", flush=True)
        time.sleep(60)
        """,
    )
    result = await runner.run([str(fake)], stdin=b"", timeout=0.5, env={})
    assert result.timed_out
    assert result.returncode == -signal.SIGKILL


async def test_cancelling_the_caller_kills_the_group(
    runner: SubprocessRunner, bin_dir: Path, runs: Path, tmp_path: Path
) -> None:
    fake = write_script(bin_dir, "hang", SPAWN_GRANDCHILD + "import time; time.sleep(60)\n")
    pids_file = tmp_path / "pids"
    task = asyncio.create_task(
        runner.run([str(fake)], stdin=b"", timeout=30, env={"PIDS": str(pids_file)})
    )
    pids = await read_pids(pids_file)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await wait_gone(*pids)
    assert is_empty(runs)


async def test_a_grandchild_holding_the_pipes_does_not_hold_up_the_run(
    runner: SubprocessRunner, bin_dir: Path, tmp_path: Path
) -> None:
    # The leader answers and exits; its grandchild keeps stdout open. The run ends after the
    # grace instead of at the timeout, and the grandchild is killed with the group.
    fake = write_script(bin_dir, "leaky", SPAWN_GRANDCHILD + "print('done')\n")
    pids = tmp_path / "pids"
    started = time.monotonic()
    result = await runner.run([str(fake)], stdin=b"", timeout=10, env={"PIDS": str(pids)})
    assert time.monotonic() - started < 3
    assert result.stdout == b"done\n"
    assert result.returncode == 0 and not result.timed_out
    assert await wait_gone(*await read_pids(pids))


async def test_stdout_is_bounded(bin_dir: Path, runs: Path) -> None:
    fake = write_script(
        bin_dir,
        "flood",
        """
        import sys
        block = b"x" * 65536
        while True:
            sys.stdout.buffer.write(block)
        """,
    )
    runner = SubprocessRunner(max_stdout_bytes=256 * 1024, kill_grace=0.2, temp_dir=runs)
    result = await runner.run([str(fake)], stdin=b"", timeout=10, env={})
    assert result.stdout_overflow and not result.timed_out
    assert len(result.stdout) == 256 * 1024
    assert result.returncode < 0


async def test_stderr_keeps_only_its_tail(runner: SubprocessRunner, bin_dir: Path) -> None:
    fake = write_script(
        bin_dir,
        "noisy",
        """
        import sys
        sys.stderr.write("noise " * 50_000)
        sys.stderr.write("THE END")
        """,
    )
    result = await runner.run([str(fake)], stdin=b"", timeout=10, env={})
    assert len(result.stderr_tail) == 64 * 1024
    assert result.stderr_tail.endswith(b"noise THE END")


async def test_stream_yields_lines_as_they_arrive(
    runner: SubprocessRunner, bin_dir: Path, tmp_path: Path
) -> None:
    # The second line is only printed once the test has seen the first: a runner that
    # buffered the output would time out here.
    fake = write_script(
        bin_dir,
        "chatty",
        """
        import os, sys, time
        print("first", flush=True)
        while not os.path.exists(os.environ["GO"]):
            time.sleep(0.01)
        sys.stdout.write("second\\nthird without newline")
        """,
    )
    go = tmp_path / "go"
    stream = runner.stream([str(fake)], stdin=b"", timeout=10, env={"GO": str(go)})
    assert await anext(stream) == b"first"
    go.touch()
    rest = await collect(stream)
    assert rest[:2] == [b"second", b"third without newline"]
    final = rest[2]
    assert isinstance(final, RunResult)
    assert final.returncode == 0 and not final.timed_out
    assert len(rest) == 3


async def test_stream_reassembles_long_lines(runner: SubprocessRunner, bin_dir: Path) -> None:
    fake = write_script(
        bin_dir,
        "long",
        """
        import sys
        sys.stdout.write("a" * 200_000 + "\\nb\\n\\nc")
        """,
    )
    items = await collect(runner.stream([str(fake)], stdin=b"", timeout=10, env={}))
    assert items[:-1] == [b"a" * 200_000, b"b", b"", b"c"]


async def test_stream_bounds_a_line(bin_dir: Path, runs: Path) -> None:
    fake = write_script(
        bin_dir,
        "endless-line",
        """
        import sys
        print("short", flush=True)
        while True:
            sys.stdout.write("x" * 65536)
        """,
    )
    runner = SubprocessRunner(max_stdout_bytes=100_000, kill_grace=0.2, temp_dir=runs)
    items = await collect(runner.stream([str(fake)], stdin=b"", timeout=10, env={}))
    assert items[0] == b"short"
    final = items[-1]
    assert isinstance(final, RunResult) and final.stdout_overflow and not final.timed_out
    assert len(items) == 2


async def test_closing_a_stream_early_kills_the_group(
    runner: SubprocessRunner, bin_dir: Path, runs: Path, tmp_path: Path
) -> None:
    fake = write_script(
        bin_dir,
        "endless",
        SPAWN_GRANDCHILD + "print('ready', flush=True)\nimport time; time.sleep(60)\n",
    )
    pids_file = tmp_path / "pids"
    stream = runner.stream([str(fake)], stdin=b"", timeout=30, env={"PIDS": str(pids_file)})
    assert await anext(stream) == b"ready"
    pids = await read_pids(pids_file)
    await stream.aclose()
    assert await wait_gone(*pids)
    assert is_empty(runs)


async def test_stream_timeout_ends_with_timed_out_result(
    runner: SubprocessRunner, bin_dir: Path
) -> None:
    fake = write_script(bin_dir, "stall", "print('one', flush=True)\nimport time; time.sleep(60)\n")
    items = await collect(runner.stream([str(fake)], stdin=b"", timeout=0.5, env={}))
    assert items[0] == b"one"
    final = items[-1]
    assert isinstance(final, RunResult) and final.timed_out
    assert len(items) == 2


async def test_missing_executable_raises_and_leaves_nothing(
    runner: SubprocessRunner, runs: Path, tmp_path: Path
) -> None:
    missing = str(tmp_path / "no-such-cli")
    with pytest.raises(FileNotFoundError):
        await runner.run([missing], stdin=b"", timeout=5, env={})
    with pytest.raises(FileNotFoundError):
        await collect(runner.stream([missing], stdin=b"", timeout=5, env={}))
    assert is_empty(runs)
