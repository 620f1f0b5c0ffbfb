"""Shared fixtures: a clean environment, a fake clock, and a guard against real network."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from llmroute.testing import FakeClock

_PROVIDER_VARS = (
    "USE_PAID_MODELS",
    "GROQ_API_KEY",
    "TOGETHER_API_KEY",
    "OPENROUTER_API_KEY",
    "ANTHROPIC_API_KEY",
    "CODEX_API_KEY",
    "REDIS_URL",
    *(f"GOOGLE_AI_STUDIO_KEY_{i}" for i in range(1, 6)),
    # the shipped catalogue's base URL overrides (`llmroute fake-server` prints them)
    "GROQ_BASE_URL",
    "TOGETHER_BASE_URL",
    "OPENROUTER_BASE_URL",
    "GOOGLE_AI_STUDIO_BASE_URL",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _PROVIDER_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Tests talk to fakes on 127.0.0.1 only; anything else is a bug in the test."""
    real_connect = socket.socket.connect

    def guarded(self: socket.socket, address: Any) -> Any:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            host = address[0]
            try:
                loopback = ipaddress.ip_address(host).is_loopback
            except ValueError:
                loopback = host == "localhost"
            if not loopback:
                raise OSError(f"tests may only connect to loopback, not {host!r}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    yield


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
