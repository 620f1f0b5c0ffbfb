"""The store `limits.yaml`'s `state:` names, built for a router."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from llmroute.stores.base import StateStore
from llmroute.stores.memory import MemoryStore

if TYPE_CHECKING:
    from llmroute.config import StateConfig

__all__ = ["DEFAULT_SQLITE_NAME", "build_store"]

#: the SQLite file in the cache dir when `state.path` is not given
DEFAULT_SQLITE_NAME = "llmroute.sqlite3"


def build_store(state: StateConfig, cache_dir: str | os.PathLike[str]) -> StateStore:
    """The store for `state` ({backend: memory|sqlite|redis, path, url, prefix}).

    Nothing is opened or connected here: a store reaches its file or server on first use,
    and a failure then is a `StoreError` for that request. A missing `redis` extra is a
    `ConfigError` at once.
    """
    if state.backend == "sqlite":
        from llmroute.stores.sqlite_store import SQLiteStore

        path = Path(state.path) if state.path else Path(cache_dir) / DEFAULT_SQLITE_NAME
        return SQLiteStore(path)
    if state.backend == "redis":
        from llmroute.errors import ConfigError
        from llmroute.stores.redis_store import RedisStore

        assert state.url is not None, "the config loader requires a url for redis"
        try:
            return RedisStore(state.url.reveal(), prefix=state.prefix)
        except ConfigError as exc:
            # Said where it comes from, as every other config problem is.
            problems = [f"limits: state.backend: {problem}" for problem in exc.problems]
            raise ConfigError(problems) from exc.__cause__
    return MemoryStore()
