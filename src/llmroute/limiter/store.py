"""The first state store interface (one bucket per acquire, absolute cooldowns).

Superseded by `llmroute.stores` (multi-bucket atomic acquire, relative cooldowns, key
state); it stays only until the request pipeline has moved over. `MemoryStore` here reads
no clock of its own: the router passes monotonic `now`.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from llmroute.stores._window import Entry, SlidingWindow
from llmroute.stores.base import Bucket

__all__ = ["Bucket", "MemoryStore", "StateStore", "Ticket"]


#: the handle of one admitted charge; opaque outside the store that made it
Ticket = object


@runtime_checkable
class StateStore(Protocol):
    #: True when the store wants Unix time (shared across processes), False for monotonic
    uses_wall_clock: bool

    async def acquire(self, bucket: Bucket, cost: int, now: float) -> Ticket | float:
        """Charge `cost` tokens to `bucket` at `now` and return a ticket, or return the
        seconds until it could fit (`math.inf` if never). Atomic."""
        ...

    async def settle(self, ticket: Ticket, tokens: int) -> None:
        """Correct an admitted charge to the real token total."""
        ...

    async def release(self, ticket: Ticket) -> None:
        """Give a charge back (the request never reached the provider)."""
        ...

    async def set_cooldown(self, name: str, until: float) -> None: ...

    async def cooldown_until(self, name: str) -> float:
        """When the named cooldown ends (0.0 if none)."""
        ...

    async def aclose(self) -> None: ...


class MemoryStore:
    """In-process windows and cooldowns: the default. Exact under any asyncio concurrency.

    Besides the async `StateStore` methods it answers `acquire_nowait` and
    `cooldown_until_nowait` synchronously, which the router uses on its hot path: no
    coroutine object per call for a store that never waits on I/O.
    """

    uses_wall_clock = False

    def __init__(self) -> None:
        self._windows: dict[str, SlidingWindow] = {}
        self._cooldowns: dict[str, float] = {}

    def window(self, bucket: Bucket) -> SlidingWindow:
        window = self._windows.get(bucket.name)
        if window is None:
            window = self._windows[bucket.name] = SlidingWindow(
                rpm=bucket.rpm, tpm=bucket.tpm, rpd=bucket.rpd, tpd=bucket.tpd
            )
        return window

    def acquire_nowait(self, bucket: Bucket, cost: int, now: float) -> Ticket | float:
        return self.window(bucket).try_admit(cost, now)

    async def acquire(self, bucket: Bucket, cost: int, now: float) -> Ticket | float:
        return self.window(bucket).try_admit(cost, now)

    async def settle(self, ticket: Ticket, tokens: int) -> None:
        assert isinstance(ticket, Entry)
        ticket.window.settle(ticket, tokens)

    async def release(self, ticket: Ticket) -> None:
        assert isinstance(ticket, Entry)
        ticket.window.release(ticket)

    async def set_cooldown(self, name: str, until: float) -> None:
        if until > self._cooldowns.get(name, 0.0):
            self._cooldowns[name] = until

    def cooldown_until_nowait(self, name: str) -> float:
        return self._cooldowns.get(name, 0.0)

    async def cooldown_until(self, name: str) -> float:
        return self._cooldowns.get(name, 0.0)

    async def aclose(self) -> None:
        return None

    def __repr__(self) -> str:
        return f"MemoryStore(buckets={len(self._windows)})"
