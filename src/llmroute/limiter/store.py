"""Old home of the state store; it lives in `llmroute.stores` now."""

from __future__ import annotations

from llmroute.stores import Bucket, Charge, MemoryStore, StateStore

__all__ = ["Bucket", "Charge", "MemoryStore", "StateStore"]
