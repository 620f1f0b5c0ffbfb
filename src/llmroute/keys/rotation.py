"""Which key a request uses next: the rotation policy, pure and in memory.

`round_robin` starts at the persisted index and moves one past every key it hands out, so
concurrent requests spread over the pool; `failover` stays on a key until it fails. Keys
that are cooling down (decided by the caller, who owns the clock and the store) or disabled
(refused by the provider) are passed over.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Literal

__all__ = ["KeyRing"]

logger = logging.getLogger(__name__)


class KeyRing:
    """The keys of one provider and where its rotation stands.

    `on_move(index)` is told the index after every `take` (even an unchanged one) and every
    other move; the persister writes it behind the request and skips unchanged values.
    """

    __slots__ = ("_disabled", "_index", "_on_move", "labels", "provider", "secrets", "strategy")

    def __init__(
        self,
        provider: str,
        secrets: Sequence[str],
        *,
        strategy: Literal["round_robin", "failover"] = "round_robin",
        start: int = 0,
        on_move: Callable[[int], None] | None = None,
    ) -> None:
        self.provider = provider
        self.secrets = tuple(secrets)
        self.labels = tuple(f"{provider}#{i}" for i in range(len(self.secrets)))
        self.strategy = strategy
        self._index = start if 0 <= start < len(self.secrets) else 0
        self._disabled: set[int] = set()
        self._on_move = on_move

    def __len__(self) -> int:
        return len(self.secrets)

    def __repr__(self) -> str:
        return (
            f"KeyRing({self.provider!r}, keys={len(self.secrets)}, index={self._index}, "
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

    def order(self) -> list[int]:
        """Enabled slots in the order to try them, starting at the current index."""
        n = len(self.secrets)
        start = self._index
        return [(start + i) % n for i in range(n) if (start + i) % n not in self._disabled]

    def take(self, slot: int) -> None:
        """Record that a request is using `slot` (before it is sent, so concurrent requests
        see the move at once)."""
        new = (slot + 1) % len(self.secrets) if self.strategy == "round_robin" else slot
        self._index = new
        # Reported even when unchanged (failover on a healthy key): a missing or corrupt
        # persisted file is then repaired by the first request instead of warned about at
        # every start.
        if self._on_move is not None:
            self._on_move(new)

    def failed(self, slot: int) -> None:
        """`slot` failed (rate limit, refusal): failover moves on to the next key."""
        if self.strategy == "failover" and self._index == slot:
            self._move((slot + 1) % len(self.secrets))

    def disable(self, slot: int, reason: str) -> None:
        """Take a refused key out for the router's life, with one warning (slot label only)."""
        if slot in self._disabled:
            return
        self._disabled.add(slot)
        logger.warning(
            "%s disabled for this router's life: %s (%d of %d keys left)",
            self.labels[slot],
            reason,
            len(self.secrets) - len(self._disabled),
            len(self.secrets),
        )
        self.failed(slot)

    def _move(self, new: int) -> None:
        if new != self._index:
            self._index = new
            if self._on_move is not None:
                self._on_move(new)
