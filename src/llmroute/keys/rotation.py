"""The key pool of one provider: which key slot a request uses, and the keys' state.

`round_robin` starts at the index and moves one past every key it hands out, so concurrent
requests spread over the keys; `failover` stays on a key until it fails. Keys that are
cooling down or disabled are passed over. Every piece of state lives in the store:

- cooldowns, named per model and slot (`cooldown:{model}#{slot}`): Gemini quotas are per
  model and project, so a 429 cools that model on that key only;
- disabled keys, by fingerprint (a short SHA-256 of the key, never the key), so a key that
  is replaced in the config starts enabled; a pool on a shared store reads them again at
  most every `DISABLED_REFRESH_SECONDS`, so a key another process disabled is passed over
  without drawing a refusal of its own (the memory store, this process's own, is never
  re-read);
- the rotation index (a shared store hands it out atomically, so processes spread over the
  keys too); the `.keyidx` file mirrors it for the next run.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final, Literal

from llmroute.stores.base import StateStore

if TYPE_CHECKING:
    from llmroute.config import ProviderConfig
    from llmroute.keys.persist import KeyIndexPersister

__all__ = ["DISABLED_REFRESH_SECONDS", "KeyPool", "fingerprint", "key_pool"]

logger = logging.getLogger("llmroute.keys.rotation")

#: how often (monotonic seconds) a pool on a shared store reads its disabled keys again
DISABLED_REFRESH_SECONDS: Final = 10.0


def key_pool(
    config: ProviderConfig,
    store: StateStore,
    cache_dir: str | os.PathLike[str],
    *,
    clock: Callable[[], float] | None = None,
) -> tuple[KeyPool, KeyIndexPersister | None]:
    """The pool of a provider with keys; with more than one key, its index starts where
    `{cache_dir}/{provider}.keyidx` says and is written back behind every request.
    `clock` is the router's monotonic clock (when to read a shared store's disabled keys
    again)."""
    start = 0
    persister = None
    on_move: Callable[[int], None] | None = None
    if len(config.keys) > 1:
        from llmroute.keys.persist import KeyIndexFile, KeyIndexPersister

        file = KeyIndexFile(cache_dir, config.name)
        start = file.load(len(config.keys))
        persister = KeyIndexPersister(file)
        on_move = persister.mark
    pool = KeyPool(
        config.name,
        [s.reveal() for s in config.keys],
        store,
        strategy=config.rotation,
        start=start,
        on_move=on_move,
        clock=clock,
    )
    return pool, persister


def fingerprint(secret: str) -> str:
    """A short, stable name for a key that does not reveal it."""
    return hashlib.sha256(secret.encode()).hexdigest()[:16]


class KeyPool:
    """The keys of one provider (one slot with no secret for a provider without keys).

    `on_move(index)` is told the index after every `take` and every other move; the
    `.keyidx` persister writes it behind the request and skips unchanged values. `clock`
    (monotonic seconds, default the real one) times the re-reading of a shared store's
    disabled keys.
    """

    __slots__ = (
        "_clock",
        "_disabled",
        "_index",
        "_on_move",
        "_refresh_at",
        "_set_index_nowait",
        "fingerprints",
        "labels",
        "loaded",
        "provider",
        "secrets",
        "store",
        "strategy",
    )

    def __init__(
        self,
        provider: str,
        secrets: Sequence[str | None],
        store: StateStore,
        *,
        strategy: Literal["round_robin", "failover"] = "round_robin",
        start: int = 0,
        on_move: Callable[[int], None] | None = None,
        labels: Sequence[str | None] | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.provider = provider
        self.secrets: tuple[str | None, ...] = tuple(secrets)
        self.labels: tuple[str | None, ...] = (
            tuple(labels)
            if labels is not None
            else tuple(f"{provider}#{i}" for i in range(len(self.secrets)))
        )
        self.fingerprints = tuple(fingerprint(s) if s else "" for s in self.secrets)
        self.strategy = strategy
        self.store = store
        self._index = start if 0 <= start < len(self.secrets) else 0
        self._disabled: set[int] = set()
        self._on_move = on_move
        self._set_index_nowait: Callable[[str, int], None] | None = getattr(
            store, "set_index_nowait", None
        )
        #: True once what the store holds about these keys has been read (a store of this
        #: process only starts empty: nothing to read back)
        self.loaded = not store.shared
        self._clock: Callable[[], float] = clock if clock is not None else time.monotonic
        #: when (on `_clock`) a shared store's disabled keys are next read again
        self._refresh_at = 0.0

    def __len__(self) -> int:
        return len(self.secrets)

    def __repr__(self) -> str:
        return (
            f"KeyPool({self.provider!r}, keys={len(self.secrets)}, index={self._index}, "
            f"disabled={sorted(self._disabled)})"
        )

    @property
    def index(self) -> int:
        return self._index

    @property
    def disabled(self) -> frozenset[int]:
        return frozenset(self._disabled)

    @property
    def usable(self) -> bool:
        return len(self._disabled) < len(self.secrets)

    @property
    def multi(self) -> bool:
        return len(self.secrets) > 1

    def enabled_count(self) -> int:
        return len(self.secrets) - len(self._disabled)

    async def load(self) -> None:
        """Read what a shared store already holds: disabled keys and the live index."""
        if self.loaded:
            return
        self.loaded = True
        await self.refresh_disabled()
        # Set-if-absent, never read-then-write: routers starting together on an empty store
        # would each write their start over the others' first advances.
        stored = await self.store.set_index_if_absent(self.provider, self._index)
        if 0 <= stored < len(self.secrets):
            self._index = stored

    async def refresh_disabled(self) -> list[int]:
        """Read the keys a shared store holds as disabled (another process may have had
        one refused since this pool last looked); return the slots newly disabled."""
        # Set before the read: the requests arriving meanwhile do not read it too.
        self._refresh_at = self._clock() + DISABLED_REFRESH_SECONDS
        refused = await self.store.disabled_keys(self.provider)
        new = [
            i for i, f in enumerate(self.fingerprints) if f in refused and i not in self._disabled
        ]
        self._disabled.update(new)
        return new

    async def order(self) -> list[int]:
        """Enabled slots in the order to try them, starting where the rotation stands."""
        n = len(self.secrets)
        if self.store.shared:
            await self.load()
            if self._clock() >= self._refresh_at and (new := await self.refresh_disabled()):
                logger.info(
                    "%s disabled in the shared store by another router (%d of %d keys left)",
                    ", ".join(str(self.labels[i]) for i in new),
                    self.enabled_count(),
                    n,
                )
            if n == 1:
                return [] if self._disabled else [0]
            if self.strategy == "round_robin":
                # Fetch-and-advance: processes sharing the store spread over the keys.
                self._index = await self.store.rotate_index(self.provider, n)
            else:
                stored = await self.store.get_index(self.provider)
                if stored is not None and 0 <= stored < n:
                    self._index = stored
        return self.order_now()

    async def peek_order(self) -> list[int]:
        """`order` as a request sent now would see it, changing nothing (for `explain`): a
        shared store's index is read, never advanced."""
        start = self._index
        if self.store.shared:
            await self.load()
            if self._clock() >= self._refresh_at:
                await self.refresh_disabled()  # this pool's view only: the store is read
        if self.store.shared and len(self.secrets) > 1:
            stored = await self.store.get_index(self.provider)
            if stored is not None:
                start = stored % len(self.secrets)
        return self.order_now(start)

    def order_now(self, start: int | None = None) -> list[int]:
        """`order` from this process's view, without asking the store."""
        n = len(self.secrets)
        if start is None:
            start = self._index
        disabled = self._disabled
        return [(start + i) % n for i in range(n) if (start + i) % n not in disabled]

    async def take(self, slot: int) -> None:
        """A request is about to use `slot`: move the index now, so concurrent requests see
        the move at once."""
        n = len(self.secrets)
        if n == 1:
            return
        new = (slot + 1) % n if self.strategy == "round_robin" else slot
        # A shared store's fetch-and-advance already moved its index; writing it again here
        # would undo other requests' advances (concurrent ones, or other processes').
        in_store = self.store.shared and self.strategy == "round_robin"
        self._index = new
        await self._publish(new, in_store=in_store)

    async def failed(self, slot: int) -> None:
        """`slot` failed (rate limit, refusal): failover moves on to the next key."""
        if self.strategy == "failover" and self._index == slot and len(self.secrets) > 1:
            new = (slot + 1) % len(self.secrets)
            self._index = new
            await self._publish(new, in_store=False)

    async def disable(self, slot: int, reason: str) -> None:
        """Take a refused key out (one warning, slot label only); the store remembers it."""
        if slot in self._disabled:
            return
        self._disabled.add(slot)
        logger.warning(
            "%s disabled %s: %s (%d of %d keys left)",
            self.labels[slot],
            "in the shared store" if self.store.shared else "for this router's life",
            reason,
            len(self.secrets) - len(self._disabled),
            len(self.secrets),
        )
        if self.fingerprints[slot]:
            await self.store.disable_key(self.provider, self.fingerprints[slot])
        await self.failed(slot)

    async def _publish(self, index: int, *, in_store: bool) -> None:
        # Reported even when unchanged (failover on a healthy key): a missing or corrupt
        # `.keyidx` is then repaired by the first request instead of warned about each start.
        if self._on_move is not None:
            self._on_move(index)
        if self._set_index_nowait is not None:
            self._set_index_nowait(self.provider, index)
        elif not in_store:
            await self.store.set_index(self.provider, index)
