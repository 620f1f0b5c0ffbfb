"""Provider adapters, one module per wire format, built by provider type.

Modules are imported when a provider of their type is configured, so a router that only
talks to OpenAI-compatible endpoints never imports the subprocess machinery.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from llmroute.clock import Clock
from llmroute.config._schema import ProviderConfig
from llmroute.providers.base import (
    AttemptFailed,
    FailureKind,
    Message,
    Provider,
    ProviderRequest,
    ProviderResponse,
    StreamEvent,
)

if TYPE_CHECKING:
    from llmroute.providers._http import HttpClient

__all__ = [
    "AttemptFailed",
    "FailureKind",
    "Message",
    "Provider",
    "ProviderRequest",
    "ProviderResponse",
    "StreamEvent",
    "build_provider",
]


def build_provider(
    config: ProviderConfig, *, get_client: Callable[[], HttpClient], clock: Clock
) -> Provider:
    """The adapter for `config.type`."""
    if config.type == "openai_compatible":
        from llmroute.providers.openai_compatible import OpenAICompatibleProvider

        return OpenAICompatibleProvider(config, get_client=get_client, clock=clock)
    if config.type == "google_ai_studio":
        from llmroute.providers.google_ai_studio import GoogleAIStudioProvider

        return GoogleAIStudioProvider(config, get_client=get_client, clock=clock)
    if config.type == "claude_code":
        from llmroute.providers.cli import ClaudeCodeProvider

        return ClaudeCodeProvider(config)
    if config.type == "codex_cli":
        from llmroute.providers.cli import CodexCliProvider

        return CodexCliProvider(config)
    raise ValueError(f"unknown provider type {config.type!r}")
