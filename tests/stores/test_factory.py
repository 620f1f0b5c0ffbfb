"""`state:` in limits.yaml -> the store the router uses."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from llmroute.config import load_config
from llmroute.errors import ConfigError
from llmroute.stores import MemoryStore, RedisStore, SQLiteStore
from llmroute.stores.factory import build_store

MODELS: dict[str, Any] = {
    "providers": {"local": {"type": "openai_compatible", "base_url": "http://127.0.0.1:9/v1"}},
    "models": {"local/m": {"provider": "local"}},
}


def state_of(state: dict[str, Any], env: dict[str, str] | None = None) -> Any:
    return load_config(MODELS, {"state": state}, env=env or {}).limits.state


def test_memory_is_the_default(tmp_path: Path) -> None:
    store = build_store(load_config(MODELS, {}, env={}).limits.state, tmp_path)
    assert isinstance(store, MemoryStore)
    assert isinstance(build_store(state_of({"backend": "memory"}), tmp_path), MemoryStore)


def test_sqlite_in_the_cache_dir_unless_a_path_is_given(tmp_path: Path) -> None:
    store = build_store(state_of({"backend": "sqlite"}), tmp_path / "cache")
    assert isinstance(store, SQLiteStore)
    assert store.path == tmp_path / "cache" / "llmroute.sqlite3"
    # Nothing is created until the store is used.
    assert not (tmp_path / "cache").exists()
    given = build_store(state_of({"backend": "sqlite", "path": str(tmp_path / "s.db")}), "x")
    assert isinstance(given, SQLiteStore)
    assert given.path == tmp_path / "s.db"


def test_redis_url_from_the_environment_and_prefix(tmp_path: Path) -> None:
    state = state_of(
        {"backend": "redis", "url": "${REDIS_URL}", "prefix": "team-a"},
        env={"REDIS_URL": "redis://:s3cret-password@127.0.0.1:6390/0"},
    )
    store = build_store(state, tmp_path)
    assert isinstance(store, RedisStore)
    assert store.prefix == "team-a"
    assert "s3cret" not in repr(store)
    assert "s3cret" not in repr(state)
    assert build_store(state_of({"backend": "redis", "url": "redis://127.0.0.1"}), ".").prefix == (
        "llmroute"
    )


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ({"backend": "postgres"}, "state.backend: expected one of memory, sqlite, redis"),
        ({"backend": "redis"}, "state.url"),
        ({"backend": "sqlite", "path": 3}, "state.path: expected a file path"),
        ({"backend": "redis", "url": "redis://x", "prefix": ""}, "state.prefix"),
        ({"backend": "sqlite", "file": "x"}, "state.file: unknown field"),
    ],
)
def test_state_problems(state: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(MODELS, {"state": state}, env={})
    assert expected in str(info.value)


def test_missing_redis_extra_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "redis", None)
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    with pytest.raises(ConfigError, match=r"pip install llmroute\[redis\]") as info:
        build_store(state_of({"backend": "redis", "url": "redis://127.0.0.1"}), ".")
    assert str(info.value).startswith("limits: state.backend: ")
    with pytest.raises(ConfigError, match=r"pip install llmroute\[redis\]"):
        RedisStore("redis://127.0.0.1")


def test_the_router_builds_the_configured_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmroute import Router

    sqlite = {"state": {"backend": "sqlite"}}
    router = Router(MODELS, sqlite, env_file=None, cache_dir=tmp_path)
    assert isinstance(router._store, SQLiteStore)
    assert router._store.path == tmp_path / "llmroute.sqlite3"
    monkeypatch.setitem(sys.modules, "redis", None)
    monkeypatch.setitem(sys.modules, "redis.asyncio", None)
    redis = {"state": {"backend": "redis", "url": "redis://127.0.0.1:6390"}}
    with pytest.raises(ConfigError, match=r"pip install llmroute\[redis\]"):
        Router(MODELS, redis, env_file=None, cache_dir=tmp_path)
