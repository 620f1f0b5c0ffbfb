"""The in-process store: the default, exact under any asyncio concurrency, no I/O.

Every check-and-charge runs with no await inside, so it is atomic among the tasks of one
event loop; a lock makes it atomic among threads too (one router per thread, all sharing
this store). Besides the async `StateStore` methods it answers the hot-path calls
synchronously (`acquire_nowait`, `cooldowns_nowait`, ...): a store that never waits on
I/O should not cost a coroutine per call.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from llmroute.stores.base import Bucket, Charge, LimitKind
from llmroute.stores.window import Entry, SlidingWindow

__all__ = ["MemoryStore"]


class _MemoryCharge(Charge):
    __slots__ = ("entries",)

    def __init__(self, tokens: int, entries: tuple[Entry, ...]) -> None:
        super().__init__(tokens)
        self.entries = entries


class MemoryStore:
    """Limiter windows, cooldowns and key state of one process; forgotten at exit.

    `now` is the router's monotonic clock (`uses_wall_clock` is False).
    """

    uses_wall_clock = False
    shared = False

    def __init__(self) -> None:
        self._windows: dict[str, SlidingWindow] = {}
        self._cooldowns: dict[str, float] = {}
        self._disabled: dict[str, set[str]] = {}
        self._indexes: dict[str, int] = {}
        self._learned: dict[str, dict[str, int]] = {}
        # Uncontended (one event loop) it costs a tenth of a microsecond.
        self._lock = threading.Lock()

    def window(self, name: str) -> SlidingWindow:
        """The history of one bucket (created empty on first use)."""
        window = self._windows.get(name)
        if window is None:
            window = self._windows[name] = SlidingWindow()
        return window

    # -- limiter windows ---------------------------------------------------------------------

    def acquire_nowait(self, buckets: Sequence[Bucket], tokens: int, now: float) -> Charge | float:
        """`acquire` without a coroutine: the hot path of the default store."""
        with self._lock:
            if len(buckets) == 1:
                b = buckets[0]
                window = self._windows.get(b.name) or self.window(b.name)
                wait = window.wait(tokens, now, b.rpm, b.tpm, b.rpd, b.tpd)
                if wait:
                    return wait
                day = b.rpd is not None or b.tpd is not None
                return _MemoryCharge(tokens, (window.charge(tokens, now, day=day),))
            return self._acquire_all(buckets, tokens, now)

    def _acquire_all(self, buckets: Sequence[Bucket], tokens: int, now: float) -> Charge | float:
        windows = [self.window(b.name) for b in buckets]
        wait = 0.0
        for b, window in zip(buckets, windows, strict=True):
            wait = max(wait, window.wait(tokens, now, b.rpm, b.tpm, b.rpd, b.tpd))
        if wait:
            return wait
        return _MemoryCharge(
            tokens,
            tuple(
                window.charge(tokens, now, day=b.rpd is not None or b.tpd is not None)
                for b, window in zip(buckets, windows, strict=True)
            ),
        )

    async def acquire(self, buckets: Sequence[Bucket], tokens: int, now: float) -> Charge | float:
        return self.acquire_nowait(buckets, tokens, now)

    def peek_nowait(self, buckets: Sequence[Bucket], tokens: int, now: float) -> float:
        """`peek` without a coroutine. A bucket never charged is looked at through an empty
        window, so a dry run leaves no trace."""
        with self._lock:
            wait = 0.0
            for b in buckets:
                window = self._windows.get(b.name) or SlidingWindow()
                wait = max(wait, window.wait(tokens, now, b.rpm, b.tpm, b.rpd, b.tpd))
            return wait

    async def peek(self, buckets: Sequence[Bucket], tokens: int, now: float) -> float:
        return self.peek_nowait(buckets, tokens, now)

    def commit_nowait(self, charge: Charge, tokens: int) -> None:
        assert isinstance(charge, _MemoryCharge)
        with self._lock:
            charge.tokens = tokens
            for entry in charge.entries:
                entry.window.settle(entry, tokens)

    async def commit(self, charge: Charge, tokens: int) -> None:
        self.commit_nowait(charge, tokens)

    def cancel_nowait(self, charge: Charge) -> None:
        assert isinstance(charge, _MemoryCharge)
        with self._lock:
            charge.tokens = 0
            for entry in charge.entries:
                entry.window.release(entry)

    async def cancel(self, charge: Charge) -> None:
        self.cancel_nowait(charge)

    # -- cooldowns ---------------------------------------------------------------------------

    def set_cooldown_nowait(self, name: str, seconds: float, now: float) -> None:
        until = now + seconds
        with self._lock:
            if until > self._cooldowns.get(name, 0.0):
                self._cooldowns[name] = until

    async def set_cooldown(self, name: str, seconds: float, now: float) -> None:
        self.set_cooldown_nowait(name, seconds, now)

    def cooldowns_nowait(self, names: Sequence[str], now: float) -> list[float]:
        get = self._cooldowns.get
        return [max(get(name, 0.0) - now, 0.0) for name in names]

    async def cooldowns(self, names: Sequence[str], now: float) -> list[float]:
        return self.cooldowns_nowait(names, now)

    # -- keys --------------------------------------------------------------------------------

    def disable_key_nowait(self, provider: str, fingerprint: str) -> None:
        with self._lock:
            self._disabled.setdefault(provider, set()).add(fingerprint)

    async def disable_key(self, provider: str, fingerprint: str) -> None:
        self.disable_key_nowait(provider, fingerprint)

    def disabled_keys_nowait(self, provider: str) -> frozenset[str]:
        with self._lock:
            return frozenset(self._disabled.get(provider, ()))

    async def disabled_keys(self, provider: str) -> frozenset[str]:
        return self.disabled_keys_nowait(provider)

    def rotate_index_nowait(self, provider: str, n_keys: int) -> int:
        with self._lock:
            index = self._indexes.get(provider, 0) % n_keys if n_keys > 0 else 0
            self._indexes[provider] = index + 1
        return index

    async def rotate_index(self, provider: str, n_keys: int) -> int:
        return self.rotate_index_nowait(provider, n_keys)

    def get_index_nowait(self, provider: str) -> int | None:
        return self._indexes.get(provider)

    async def get_index(self, provider: str) -> int | None:
        return self._indexes.get(provider)

    def set_index_nowait(self, provider: str, index: int) -> None:
        self._indexes[provider] = index

    async def set_index(self, provider: str, index: int) -> None:
        self._indexes[provider] = index

    async def set_index_if_absent(self, provider: str, index: int) -> int:
        with self._lock:
            return self._indexes.setdefault(provider, index)

    # -- learnt limits -----------------------------------------------------------------------

    async def learn_limit(self, bucket: str, kind: LimitKind, value: int) -> None:
        with self._lock:
            self._learned.setdefault(bucket, {})[kind] = value

    def learned_limits_nowait(self, bucket: str) -> dict[str, int]:
        with self._lock:
            return dict(self._learned.get(bucket, {}))

    async def learned_limits(self, bucket: str) -> dict[str, int]:
        return self.learned_limits_nowait(bucket)

    # -- inspection and lifetime -------------------------------------------------------------

    async def snapshot(self, now: float) -> dict[str, Any]:
        with self._lock:
            return self._snapshot(now)

    def _snapshot(self, now: float) -> dict[str, Any]:
        return {
            "cooldowns": {
                name: until - now for name, until in sorted(self._cooldowns.items()) if until > now
            },
            "disabled": {p: sorted(fps) for p, fps in sorted(self._disabled.items()) if fps},
            "indexes": dict(sorted(self._indexes.items())),
            "learned": {b: dict(kinds) for b, kinds in sorted(self._learned.items()) if kinds},
        }

    async def aclose(self) -> None:
        return None

    def __repr__(self) -> str:
        return f"MemoryStore(buckets={len(self._windows)})"
