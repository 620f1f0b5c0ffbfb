"""State stores: where limiter windows, cooldowns, disabled keys and key indexes live."""

from __future__ import annotations

from llmroute.stores.base import Bucket, Charge, LimitKind, StateStore
from llmroute.stores.memory import MemoryStore

__all__ = ["Bucket", "Charge", "LimitKind", "MemoryStore", "StateStore"]
