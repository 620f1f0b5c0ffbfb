"""Process plumbing shared by the benchmark scripts: the fake server, child runs, statistics."""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
PYTHON = sys.executable
#: the peers' own venv (`make bench-peers`): LiteLLM runs there, never in the project's venv
PEERS_PYTHON = ROOT / ".venv-peers" / "bin" / "python"


def python_for(client: str) -> str:
    """The interpreter a client runs in: LiteLLM in `.venv-peers` when that exists."""
    if client == "litellm" and PEERS_PYTHON.exists():
        return str(PEERS_PYTHON)
    return PYTHON


def peers_have_litellm() -> bool:
    """LiteLLM is importable by the interpreter `python_for("litellm")` gives."""
    import importlib.util

    return PEERS_PYTHON.exists() or importlib.util.find_spec("litellm") is not None


def child_env() -> dict[str, str]:
    """The environment for child runs: the repo's `src` importable, no stray settings."""
    env = dict(os.environ)
    src = str(ROOT / "src")
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.pop("PYTHONSTARTUP", None)
    env["PYTHONHASHSEED"] = "0"
    # LiteLLM fetches a price list from the internet at import unless told not to.
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    # Nothing in the router may read a real key or reach a real provider from here.
    for name in list(env):
        if name.endswith(("_API_KEY", "_KEY_1", "_KEY_2", "_KEY_3")) or name == "USE_PAID_MODELS":
            env.pop(name)
    return env


class FakeServer:
    """`bench/server.py` in its own process; `with FakeServer(20) as s: s.url`."""

    def __init__(self, latency_ms: float = 0.0, stream_gap_ms: float = 1.0) -> None:
        self.latency_ms = latency_ms
        self.stream_gap_ms = stream_gap_ms
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> FakeServer:
        self._proc = subprocess.Popen(
            [
                PYTHON,
                str(BENCH_DIR / "server.py"),
                "--port",
                "0",
                "--latency-ms",
                str(self.latency_ms),
                "--stream-gap-ms",
                str(self.stream_gap_ms),
                "--max-seconds",
                "3600",
                "--exit-on-stdin-eof",
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=child_env(),
        )
        line = _readline_with_timeout(self._proc, 20.0)
        if not line.startswith("listening on 127.0.0.1:"):
            self.close()
            raise RuntimeError(f"fake server did not start: {line!r}")
        self.port = int(line.split(":", 1)[1].split()[0])
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=3)
        if proc.stdout is not None:
            proc.stdout.close()

    def stats(self) -> dict[str, float]:
        """The server's request count, CPU seconds and monotonic clock, read over loopback."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
            sock.sendall(b"GET /__stats HTTP/1.1\r\nhost: bench\r\nconnection: close\r\n\r\n")
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
        payload: dict[str, float] = json.loads(data.split(b"\r\n\r\n", 1)[1])
        return payload


def _readline_with_timeout(proc: subprocess.Popen[bytes], timeout: float) -> str:
    assert proc.stdout is not None
    out: list[bytes] = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout)
    return out[0].decode().strip() if out else ""


def run_child(argv: list[str], timeout: float, python: str = PYTHON) -> dict[str, Any]:
    """Run one benchmark child in a fresh interpreter; its last stdout line is a JSON object.

    A child that fails, times out or prints no JSON gives `{"error": ...}` instead.
    """
    started = time.perf_counter()
    try:
        proc = subprocess.run(
            [python, *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=child_env(),
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:g} s"}
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"error": f"exit {proc.returncode}: " + " | ".join(tail)}
    result: dict[str, Any] = json.loads(lines[-1])
    result.setdefault("child_wall_s", time.perf_counter() - started)
    return result


def summary(values: list[float]) -> dict[str, float] | None:
    """Median with min and max, or None when nothing was measured."""
    clean = [v for v in values if v is not None]
    if not clean:
        return None
    return {
        "median": statistics.median(clean),
        "min": min(clean),
        "max": max(clean),
        "n": len(clean),
    }
