"""Provider adapters, one module per wire format, built by provider type.

Each module declares its types (`llmroute._registry`); a module is imported when a provider
of one of its types is configured, so a router that only talks to OpenAI-compatible
endpoints never imports the subprocess machinery.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from llmroute._registry import ProviderKind, provider_kind, register_provider
from llmroute.clock import Clock
from llmroute.providers.base import (
    AttemptFailed,
    FailureKind,
    Message,
    Provider,
    ProviderRequest,
    ProviderResponse,
    ProviderSettings,
    StreamEvent,
)

if TYPE_CHECKING:
    from llmroute.providers._http import HttpClient

__all__ = [
    "AttemptFailed",
    "FailureKind",
    "Message",
    "Provider",
    "ProviderKind",
    "ProviderRequest",
    "ProviderResponse",
    "StreamEvent",
    "build_provider",
    "register_provider",
]


def build_provider(
    config: ProviderSettings, *, get_client: Callable[[], HttpClient], clock: Clock
) -> Provider:
    """The adapter for `config.type`, as its module registered it."""
    kind = provider_kind(config.type)
    if kind is None:
        raise ValueError(f"unknown provider type {config.type!r}")
    if kind.transport == "cli":
        provider: Provider = kind.factory(config)
    else:
        provider = kind.factory(config, get_client=get_client, clock=clock)
    return provider
