"""What every provider adapter offers the router, and what it raises.

An adapter turns one `ProviderRequest` into one wire request (HTTP or a subprocess) and
its answer into a `ProviderResponse`, or raises `AttemptFailed` saying how the attempt
ended. It never retries, rotates keys or waits: that is the router's job, so that one
budget governs the whole call.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from llmroute.limiter.learn import RateLimitInfo, RawHeaders
from llmroute.trace import ToolCall, Usage

__all__ = [
    "SIGNATURES",
    "AttemptFailed",
    "FailureKind",
    "Message",
    "Need",
    "Provider",
    "ProviderRequest",
    "ProviderResponse",
    "ProviderSettings",
    "StreamEvent",
    "message_text",
    "new_call_id",
]

#: One message in the OpenAI Chat Completions shape: `role` (system, user, assistant, tool),
#: `content` (a string, a list of text / image_url parts, or None beside `tool_calls`),
#: `tool_calls` on assistant messages, `tool_call_id` on tool messages.
Message = Mapping[str, Any]

#: What a request asks of a model beyond text (models.yaml `capabilities`).
Need = Literal["tools", "vision", "json"]

_NO_NEEDS: frozenset[Need] = frozenset()

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
    #: OpenAI shapes, validated; None when not asked for
    tools: Sequence[Mapping[str, Any]] | None = None
    tool_choice: str | Mapping[str, Any] | None = None
    response_format: Mapping[str, Any] | None = None
    #: what the request asks of a model beyond text, found while validating it
    needs: frozenset[Need] = _NO_NEEDS
    #: the prompt's token estimate, computed once when the request is built
    prompt_estimate: int = 0
    #: per-request memo shared by every attempt of the request (retries, keys, candidates),
    #: so an adapter translates the request for its wire once, not once per attempt
    memo: dict[str, object] | None = None


@dataclass(slots=True, kw_only=True)
class ProviderResponse:
    text: str
    #: normalised: `stop`, `length`, `tool_calls`, `content_filter` (None if the provider
    #: gave none)
    finish_reason: str | None
    #: None when the provider reported no usage (the router then keeps its estimate)
    usage: Usage | None
    #: the model the provider says served the request, if it says
    served_model: str | None = None
    raw: object = field(default=None, repr=False)
    #: the calls the model asked for, in its order
    tool_calls: Sequence[ToolCall] = ()
    #: what the answer said about the provider's rate-limit windows (limiter.learn)
    ratelimit: RawHeaders | RateLimitInfo | None = field(default=None, repr=False)


@dataclass(slots=True, kw_only=True)
class StreamEvent:
    """One upstream event of a stream: a text delta and/or the closing facts."""

    text: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None
    served_model: str | None = None
    #: on the closing event only: every tool call of the answer, assembled
    tool_calls: Sequence[ToolCall] = ()
    #: on the first event only: the provider's rate-limit report (limiter.learn)
    ratelimit: RawHeaders | RateLimitInfo | None = field(default=None, repr=False)


class AttemptFailed(Exception):
    """One attempt ended without an answer.

    `kind` is the trace outcome. `retry_after` is the provider's hint in seconds (Retry-After,
    Gemini RetryInfo); `quota_reset_at` a Unix time when a daily quota resets; `key_invalid`
    says the key was refused (401/403, Gemini API_KEY_INVALID) and should be disabled;
    `reached` is False when nothing got to the provider (connection refused); `ratelimit`
    is what the answer said about the provider's rate-limit windows (limiter.learn).
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
        ratelimit: RawHeaders | RateLimitInfo | None = None,
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
        self.ratelimit = ratelimit
        # Transport errors, timeouts and 5xx are worth another try on the same candidate.
        self.retryable = (
            retryable
            if retryable is not None
            else kind in ("timeout", "server_error", "transport_error")
        )


#: `ProviderRequest.memo` key: tool-call id -> the Gemini thought signature the caller
#: handed back with the call (taken out of the messages when the request was built)
SIGNATURES = "thought_signatures"

#: the start of every tool-call id the router makes up (for calls a provider sent without
#: one): a Gemini request leaves such ids out rather than pass them off as Gemini's
GENERATED_CALL_ID = "call_lr"


def new_call_id() -> str:
    """A fresh id for a call the provider sent without one."""
    return GENERATED_CALL_ID + os.urandom(12).hex()


def message_text(content: object) -> str:
    """The text of a message's `content`: the string, or its text parts joined (images and
    other parts left out); "" for None."""
    if isinstance(content, str):
        return content
    if not content:
        return ""
    return "".join(
        part["text"]
        for part in content  # type: ignore[attr-defined]
        if isinstance(part, Mapping) and part.get("type") == "text"
    )


class ProviderSettings(Protocol):
    """What an adapter reads from its provider's configuration, and nothing more.

    The providers' own view of a provider entry, so they depend on no other package's
    internals: the configuration's `ProviderConfig` has these fields (a frozen object, so
    they are read-only here too) and is passed as it is, with no copy.
    """

    @property
    def name(self) -> str: ...

    #: the provider type, the name its module registered
    @property
    def type(self) -> str: ...

    @property
    def base_url(self) -> str | None: ...

    #: sent with every request (values may be secrets)
    @property
    def headers(self) -> Mapping[str, str]: ...

    #: CLI providers: the argv template (`{model}` substituted) and the child's environment
    @property
    def command(self) -> Sequence[str]: ...

    @property
    def env(self) -> Mapping[str, str]: ...

    @property
    def max_concurrency(self) -> int: ...

    #: the fields of the provider's own type (its registered options), defaults filled in
    @property
    def options(self) -> Mapping[str, object]: ...


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
