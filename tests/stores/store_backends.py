"""The backends under test, and how to start each fresh (shared by conftest and tests)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from llmroute.stores import MemoryStore, StateStore


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


def make_backend(name: str, tmp_path: Path) -> Backend:
    """A fresh, empty backend of kind `name`."""
    if name == "memory":
        memory = MemoryStore()
        return Backend(name, 1_000.0, lambda: memory)
    raise AssertionError(f"unknown backend {name}")


def wall_t0() -> float:
    """A timeline start near the real wall clock, on a whole second."""
    return float(int(time.time()))
