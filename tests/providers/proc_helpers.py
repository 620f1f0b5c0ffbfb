"""Process checks shared by the subprocess and CLI-provider tests."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path


def is_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A killed grandchild is re-parented to PID 1, which may be slow to reap it (or never
    # do so in a container): a zombie is dead all the same.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


async def wait_gone(*pids: int, within: float = 3.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if all(is_gone(pid) for pid in pids):
            return True
        await asyncio.sleep(0.02)
    return False


def pids_written(path: Path) -> tuple[int, int] | None:
    if not path.exists():
        return None
    leader, grandchild = path.read_text().split()
    return int(leader), int(grandchild)


def is_empty(directory: Path) -> bool:
    return not any(directory.iterdir())


async def read_pids(path: Path, within: float = 5.0) -> tuple[int, int]:
    deadline = time.monotonic() + within
    while (pids := pids_written(path)) is None:
        assert time.monotonic() < deadline, "the fake never started"
        await asyncio.sleep(0.02)
    return pids
