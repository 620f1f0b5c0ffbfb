"""Running a CLI model as a child process: the one place llmroute spawns anything.

Each run gets its own process group, a private temporary directory (its working directory
and `TMPDIR`), an environment built from an allow-list, and the prompt on stdin, which is
closed at once (a pipe left open makes Codex wait forever). A wall-clock timeout, an
oversized output, cancellation of the awaiting task, or a consumer that stops reading a
stream all end the same way: SIGTERM to the whole group, SIGKILL after a short grace, the
leader reaped, the directory removed. Nothing outlives the call.

The `Runner` protocol is the seam: providers take any object with `run` and `stream`, so
tests and users can script a CLI's output without spawning anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import tempfile
from collections.abc import AsyncGenerator, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

__all__ = [
    "DEFAULT_KILL_GRACE",
    "DEFAULT_MAX_STDOUT_BYTES",
    "DEFAULT_STDERR_TAIL_BYTES",
    "PRIVATE_HOME_PLACEHOLDER",
    "RunResult",
    "Runner",
    "SubprocessRunner",
    "build_child_env",
]

logger = logging.getLogger(__name__)

DEFAULT_MAX_STDOUT_BYTES = 8 * 1024 * 1024
DEFAULT_STDERR_TAIL_BYTES = 64 * 1024
#: seconds between SIGTERM and SIGKILL
DEFAULT_KILL_GRACE = 2.0

#: In an `env:` value, replaced by an empty directory private to the run. `HOME:
#: "{private_home}"` (Claude) or `CODEX_HOME: "{private_home}"` (Codex) isolates the CLI's
#: state; it is opt-in because the CLI then has no stored login and needs a key in `env:`.
PRIVATE_HOME_PLACEHOLDER = "{private_home}"

_READ_CHUNK = 64 * 1024
# How often to look for the leader's exit while a grandchild still holds its pipes.
_EXIT_POLL = 0.1

_PASSTHROUGH_NAMES = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "LANG",
        "LANGUAGE",
        "TERM",
        "SHELL",
        "TZ",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "NODE_EXTRA_CA_CERTS",
        "CODEX_HOME",
        "OPENAI_BASE_URL",
        "http_proxy",
        "https_proxy",
        "no_proxy",
        "all_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "ALL_PROXY",
    }
)
_PASSTHROUGH_PREFIXES = ("ANTHROPIC_", "CLAUDE_", "XDG_", "LC_")
# Credentials pass only through the provider's `env:`: an ANTHROPIC_API_KEY inherited by
# accident makes Claude Code bill the API instead of the subscription (docs/providers.md 7.5).
_CREDENTIAL_MARKERS = ("KEY", "TOKEN", "SECRET", "PASSWORD")
# Set inside a Claude Code session; a nested `claude` then refuses or misbehaves.
_ALWAYS_REMOVED = frozenset({"CLAUDECODE"})


@dataclass(frozen=True, slots=True, kw_only=True)
class RunResult:
    """How one child process ended and what it printed."""

    #: exit status; negative when a signal ended it (-15 SIGTERM, -9 SIGKILL)
    returncode: int
    #: everything printed on stdout, at most `max_stdout_bytes`; empty for a stream
    stdout: bytes
    #: the last `stderr_tail_bytes` printed on stderr
    stderr_tail: bytes
    #: the wall-clock timeout ran out and the group was killed
    timed_out: bool = False
    #: stdout (or, streaming, one line) passed `max_stdout_bytes` and the group was killed
    stdout_overflow: bool = False
    #: seconds from spawn until the run was over and cleaned up
    duration: float = 0.0


class Runner(Protocol):
    """Runs one CLI invocation. `SubprocessRunner` is the real one; tests script a fake.

    `env` holds the provider's `env:` entries, added to what the runner passes through.
    Timeouts and oversized output are reported in the `RunResult`, not raised; a missing
    executable raises `OSError`.
    """

    async def run(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes,
        timeout: float,
        env: Mapping[str, str],
    ) -> RunResult: ...

    def stream(
        self, argv: Sequence[str], *, stdin: bytes, timeout: float, env: Mapping[str, str]
    ) -> AsyncGenerator[bytes | RunResult, None]:
        """Yield stdout lines (without the newline) as they arrive, then one `RunResult`.

        Closing the generator early (`aclose`) kills the process group at once.
        """
        ...


def build_child_env(
    base: Mapping[str, str], overrides: Mapping[str, str], *, private_home: str, tmpdir: str
) -> dict[str, str]:
    """The child's environment: what the CLIs need from `base`, then `overrides`.

    Anything else in `base` (other services' keys, the caller's own settings) stays out.
    `TMPDIR` always points at the run's private directory; `{private_home}` in an override
    value becomes `private_home`.
    """
    env = {
        name: value
        for name, value in base.items()
        if (name in _PASSTHROUGH_NAMES or name.startswith(_PASSTHROUGH_PREFIXES))
        and not any(marker in name.upper() for marker in _CREDENTIAL_MARKERS)
    }
    env["TMPDIR"] = tmpdir
    for name, value in overrides.items():
        env[name] = value.replace(PRIVATE_HOME_PLACEHOLDER, private_home)
    for name in _ALWAYS_REMOVED:
        env.pop(name, None)
    return env


class SubprocessRunner:
    """The real `Runner`: `asyncio.create_subprocess_exec`, never a shell.

    Parameters:
        max_stdout_bytes: stdout kept by `run` (and the longest line `stream` accepts);
            past it the group is killed and the result says `stdout_overflow`.
        stderr_tail_bytes: how much of the end of stderr is kept for error messages.
        kill_grace: seconds between SIGTERM and SIGKILL to the process group.
        temp_dir: where the per-run private directories are made (default: the system's).
        base_env: the environment the allow-list picks from (default: `os.environ`, read
            at each run).

        runner = SubprocessRunner(kill_grace=1.0)
        result = await runner.run(["codex", "exec", "--json", "-"], stdin=b"Hi",
                                  timeout=300, env={})
    """

    __slots__ = ("_base_env", "_grace", "_max_stdout", "_stderr_tail", "_temp_dir")

    def __init__(
        self,
        *,
        max_stdout_bytes: int = DEFAULT_MAX_STDOUT_BYTES,
        stderr_tail_bytes: int = DEFAULT_STDERR_TAIL_BYTES,
        kill_grace: float = DEFAULT_KILL_GRACE,
        temp_dir: str | os.PathLike[str] | None = None,
        base_env: Mapping[str, str] | None = None,
    ) -> None:
        if max_stdout_bytes <= 0 or stderr_tail_bytes <= 0:
            raise ValueError("output bounds must be positive")
        if kill_grace < 0:
            raise ValueError("kill_grace must be >= 0")
        self._max_stdout = max_stdout_bytes
        self._stderr_tail = stderr_tail_bytes
        self._grace = kill_grace
        self._temp_dir = None if temp_dir is None else os.fspath(temp_dir)
        self._base_env = base_env

    def __repr__(self) -> str:
        return (
            f"SubprocessRunner(max_stdout_bytes={self._max_stdout}, "
            f"stderr_tail_bytes={self._stderr_tail}, kill_grace={self._grace})"
        )

    async def run(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes,
        timeout: float,
        env: Mapping[str, str],
    ) -> RunResult:
        """Run to completion (or timeout) and return everything it printed."""
        child = await self._spawn(argv, env, stdin)
        stdout = bytearray()
        overflow = False
        timed_out = False

        async def collect_stdout() -> None:
            nonlocal overflow
            assert child.proc.stdout is not None
            while chunk := await child.proc.stdout.read(_READ_CHUNK):
                if overflow:
                    continue  # drained so the pipe reaches EOF and its transport closes
                room = self._max_stdout - len(stdout)
                stdout.extend(chunk[:room])
                if len(chunk) > room:
                    overflow = True
                    child.terminate()

        child.add_reader(collect_stdout())
        try:
            try:
                async with asyncio.timeout(timeout):
                    await child.wait_exit()
                    # A grandchild may still hold the pipes; it gets a moment, then the
                    # group is killed in close().
                    await asyncio.wait(child.readers, timeout=self._grace)
            except TimeoutError:
                timed_out = True
                logger.debug("%s (pid %d) timed out after %.1fs", argv[0], child.pid, timeout)
        finally:
            await child.close()
        return child.result(stdout=bytes(stdout), timed_out=timed_out, stdout_overflow=overflow)

    async def stream(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes,
        timeout: float,
        env: Mapping[str, str],
    ) -> AsyncGenerator[bytes | RunResult, None]:
        """Yield stdout lines as they arrive, then one `RunResult`; see `Runner.stream`."""
        child = await self._spawn(argv, env, stdin)
        timed_out = False
        overflow = False

        def on_deadline() -> None:
            nonlocal timed_out
            if child.proc.returncode is None:
                timed_out = True
                logger.debug("%s (pid %d) timed out after %.1fs", argv[0], child.pid, timeout)
                child.terminate()

        # A timer rather than a timeout around each read: the deadline holds even while the
        # consumer is busy and not pulling.
        deadline = asyncio.get_running_loop().call_later(timeout, on_deadline)
        try:
            assert child.proc.stdout is not None
            # Only each new chunk is split, so a long line costs linear time, not quadratic.
            pending = bytearray()
            while chunk := await child.proc.stdout.read(_READ_CHUNK):
                first, *rest = chunk.split(b"\n")
                pending += first
                if rest:
                    lines = [bytes(pending), *rest[:-1]]
                    pending = bytearray(rest[-1])
                    for line in lines:
                        yield line
                if len(pending) > self._max_stdout:
                    overflow = True
                    child.terminate()
                    break
            if pending and not overflow:
                yield bytes(pending)
            await child.wait_exit()
            await asyncio.wait(child.readers, timeout=self._grace)
        finally:
            deadline.cancel()
            await child.close()
        yield child.result(stdout=b"", timed_out=timed_out, stdout_overflow=overflow)

    async def _spawn(self, argv: Sequence[str], env: Mapping[str, str], stdin: bytes) -> _Child:
        if not argv:
            raise ValueError("empty command")
        root = tempfile.mkdtemp(prefix="llmroute-", dir=self._temp_dir)
        try:
            work, tmp, home = (os.path.join(root, name) for name in ("work", "tmp", "home"))
            for path in (work, tmp, home):
                os.mkdir(path, 0o700)
            child_env = build_child_env(
                os.environ if self._base_env is None else self._base_env,
                env,
                private_home=home,
                tmpdir=tmp,
            )
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                cwd=work,
                env=child_env,
                start_new_session=True,
            )
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        logger.debug("started %s (pid %d)", argv[0], proc.pid)
        child = _Child(proc, root, self._grace, self._stderr_tail)
        child.start_io(stdin)
        return child


class _Child:
    """One spawned process group, its pipes and its private directory."""

    __slots__ = (
        "_closing",
        "_grace",
        "_kill_timer",
        "_root",
        "_started",
        "_stderr",
        "_stderr_limit",
        "_writer",
        "proc",
        "readers",
    )

    def __init__(
        self, proc: asyncio.subprocess.Process, root: str, grace: float, stderr_limit: int
    ) -> None:
        self.proc = proc
        self.readers: set[asyncio.Task[None]] = set()
        self._root = root
        self._grace = grace
        self._stderr = bytearray()
        self._stderr_limit = stderr_limit
        self._kill_timer: asyncio.TimerHandle | None = None
        self._writer: asyncio.Task[None] | None = None
        self._closing: asyncio.Future[None] | None = None
        self._started = asyncio.get_running_loop().time()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def start_io(self, stdin: bytes) -> None:
        self._writer = asyncio.ensure_future(self._feed(stdin))
        self.add_reader(self._collect_stderr())

    def add_reader(self, coro: Coroutine[object, object, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self.readers.add(task)
        return task

    async def _feed(self, data: bytes) -> None:
        pipe = self.proc.stdin
        assert pipe is not None
        # A child that exits (or dies) without reading its input is not our error: its
        # exit status says what happened.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            pipe.write(data)
            await pipe.drain()
        pipe.close()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            await pipe.wait_closed()

    async def _collect_stderr(self) -> None:
        pipe = self.proc.stderr
        assert pipe is not None
        while chunk := await pipe.read(_READ_CHUNK):
            self._stderr.extend(chunk)
            if len(self._stderr) > self._stderr_limit:
                del self._stderr[: -self._stderr_limit]

    async def wait_exit(self) -> None:
        """Return once the leader has exited.

        On Python 3.11 `Process.wait()` also waits for every pipe to close, which a
        grandchild that inherited them can put off for ever; the exit status is known at
        once, so it is polled too.
        """
        waiter = asyncio.ensure_future(self.proc.wait())
        try:
            while self.proc.returncode is None:
                await asyncio.wait({waiter}, timeout=_EXIT_POLL)
        finally:
            waiter.cancel()

    def terminate(self) -> None:
        """SIGTERM the group now and SIGKILL it after the grace; safe to call twice."""
        if self._kill_timer is not None:
            return
        self._signal(signal.SIGTERM)
        self._kill_timer = asyncio.get_running_loop().call_later(
            self._grace, self._signal, signal.SIGKILL
        )

    def _signal(self, sig: signal.Signals) -> None:
        # With start_new_session the group id is the leader's pid, and a pid is not reused
        # while a group of that id still has members.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    async def close(self) -> None:
        """Kill whatever is left of the group, reap it, remove the directory.

        Shielded: a second cancellation of the caller cannot leave a zombie or the
        directory behind, the cleanup then finishes in the background.
        """
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close())
        await asyncio.shield(self._closing)

    async def _close(self) -> None:
        try:
            if self.proc.returncode is None:
                self.terminate()
            await self.wait_exit()
            # The leader is gone; anything it left behind in the group goes too.
            self._signal(signal.SIGKILL)
            if self._writer is not None and not self._writer.done():
                self._writer.cancel()
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            # Readers run to EOF, which comes once the group is dead, so every pipe
            # transport closes; a straggler that left the group cannot hold us up.
            if self.readers:
                _, late = await asyncio.wait(self.readers, timeout=self._grace)
                for task in late:
                    task.cancel()
            tasks = [*self.readers, *([] if self._writer is None else [self._writer])]
            for outcome in await asyncio.gather(*tasks, return_exceptions=True):
                if isinstance(outcome, Exception):
                    logger.debug("pipe error for pid %d: %r", self.proc.pid, outcome)
        finally:
            if self._kill_timer is not None:
                self._kill_timer.cancel()
            shutil.rmtree(self._root, ignore_errors=True)

    def result(self, *, stdout: bytes, timed_out: bool, stdout_overflow: bool) -> RunResult:
        returncode = self.proc.returncode
        assert returncode is not None
        return RunResult(
            returncode=returncode,
            stdout=stdout,
            stderr_tail=bytes(self._stderr),
            timed_out=timed_out,
            stdout_overflow=stdout_overflow,
            duration=asyncio.get_running_loop().time() - self._started,
        )
