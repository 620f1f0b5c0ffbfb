"""What every provider adapter offers the router, and what it raises.

An adapter turns one `ProviderRequest` into one wire request (HTTP or a subprocess) and
its answer into a `ProviderResponse`, or raises `AttemptFailed` saying how the attempt
ended. It never retries, rotates keys or waits: that is the router's job, so that one
budget governs the whole call.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from llmroute.trace import Usage

__all__ = [
    "AttemptFailed",
    "FailureKind",
    "Message",
    "Provider",
    "ProviderRequest",
    "ProviderResponse",
    "StreamEvent",
]

#: `{"role": "system" | "user" | "assistant", "content": str}`
Message = Mapping[str, str]

FailureKind = Literal[
    "rate_limited_remote", "timeout", "server_error", "client_error", "transport_error"
]


# Requests, responses and events are built on every call, so they are plain slotted
# dataclasses: a frozen one costs over twice as much to construct. Treat them as immutable.


@dataclass(slots=True, kw_only=True)
class ProviderRequest:
    #: the provider's own model name (`model:` in models.yaml)
    model: str
    messages: Sequence[Message]
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: Sequence[str] | None = None
    #: seconds for this attempt, already cut to what remains of the deadline
    timeout: float = 60.0
    #: passed through to the wire request body unchanged
    extra: Mapping[str, object] = field(default_factory=dict)


@dataclass(slots=True, kw_only=True)
class ProviderResponse:
    text: str
    finish_reason: str | None
    #: None when the provider reported no usage (the router then keeps its estimate)
    usage: Usage | None
    #: the model the provider says served the request, if it says
    served_model: str | None = None
    raw: object = field(default=None, repr=False)


@dataclass(slots=True, kw_only=True)
class StreamEvent:
    """One upstream event of a stream: a text delta and/or the closing facts."""

    text: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None
    served_model: str | None = None


class AttemptFailed(Exception):
    """One attempt ended without an answer.

    `kind` is the trace outcome. `retry_after` is the provider's hint in seconds (Retry-After,
    Gemini RetryInfo); `quota_reset_at` a Unix time when a daily quota resets; `key_invalid`
    says the key was refused (401/403, Gemini API_KEY_INVALID) and should be disabled;
    `reached` is False when nothing got to the provider (connection refused).
    The message must already be free of secrets.
    """

    def __init__(
        self,
        kind: FailureKind,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        quota_reset_at: float | None = None,
        key_invalid: bool = False,
        retryable: bool | None = None,
        reached: bool = True,
    ) -> None:
        super().__init__(message)
        self.kind: FailureKind = kind
        self.message = message
        self.status = status
        self.retry_after = retry_after
        self.quota_reset_at = quota_reset_at
        self.key_invalid = key_invalid
        #: False when the request never got to the provider (connection refused): the
        #: limiter then gives the charge back
        self.reached = reached
        # Transport errors, timeouts and 5xx are worth another try on the same candidate.
        self.retryable = (
            retryable
            if retryable is not None
            else kind in ("timeout", "server_error", "transport_error")
        )


class Provider(Protocol):
    """A provider adapter. `key` is the secret for this attempt, or None (CLIs)."""

    name: str
    #: why the provider cannot be used at all (e.g. its executable is missing), or None
    unavailable_reason: str | None

    async def complete(self, request: ProviderRequest, key: str | None) -> ProviderResponse: ...

    def stream(self, request: ProviderRequest, key: str | None) -> AsyncIterator[StreamEvent]:
        """Yield events as they arrive. Raise `AttemptFailed` on failure; closing the
        iterator early (aclose) releases the connection or kills the process at once."""
        ...

    async def aclose(self) -> None: ...
