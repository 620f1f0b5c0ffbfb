"""State stores: where limiter windows, cooldowns, disabled keys and key indexes live.

`MemoryStore` (the default) is imported with the package; `SQLiteStore` and `RedisStore`
on first use, so a router that needs neither pays for neither (nor for the `redis` extra).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmroute.stores.base import Bucket, Charge, LimitKind, StateStore
from llmroute.stores.memory import MemoryStore

if TYPE_CHECKING:
    from llmroute.stores.redis_store import RedisStore
    from llmroute.stores.sqlite_store import SQLiteStore

__all__ = [
    "Bucket",
    "Charge",
    "LimitKind",
    "MemoryStore",
    "RedisStore",
    "SQLiteStore",
    "StateStore",
]


def __getattr__(name: str) -> Any:
    if name == "SQLiteStore":
        from llmroute.stores.sqlite_store import SQLiteStore

        return SQLiteStore
    if name == "RedisStore":
        from llmroute.stores.redis_store import RedisStore

        return RedisStore
    raise AttributeError(f"module 'llmroute.stores' has no attribute {name!r}")
