"""Every exception llmroute raises.

    LLMRouteError
    ├── ConfigError               config unreadable, malformed or inconsistent (at construction)
    ├── UnknownTargetError        target is neither a model id nor a route
    └── RequestError              a request could not be served; .attempts lists every attempt
        ├── PaidModelBlockedError     a paid model asked for directly while paid models are off
        ├── ProviderUnavailableError  a model asked for directly has no credentials / no binary
        ├── ProviderError             the provider's answer for a one-candidate request
        │   └── StreamInterruptedError  a stream failed after its first chunk
        ├── StoreError                the state store could not be reached: nothing was sent
        └── RoutingError              every candidate was skipped or failed, or the budget ran out
            └── RateLimitedError      ... and every failure was a rate limit (local or remote)

When `max_attempts` or the deadline ends a call, the message names that budget and
`RequestError.not_tried` lists the candidates never reached (empty otherwise).

Messages never contain an API key: the router scrubs every known secret from provider
answers before they reach an exception, a log line or a trace row.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llmroute.trace import Attempt

__all__ = [
    "ConfigError",
    "LLMRouteError",
    "PaidModelBlockedError",
    "ProviderError",
    "ProviderUnavailableError",
    "RateLimitedError",
    "RequestError",
    "RoutingError",
    "StoreError",
    "StreamInterruptedError",
    "UnknownTargetError",
]


class LLMRouteError(Exception):
    """Root of every llmroute exception: `except LLMRouteError` catches them all."""


class ConfigError(LLMRouteError):
    """The configuration is unreadable, malformed or inconsistent.

    `problems` lists each one as `source: key.path: what is wrong`.
    """

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        if len(self.problems) == 1:
            message = self.problems[0]
        else:
            listed = "\n".join(f"  - {p}" for p in self.problems)
            message = f"{len(self.problems)} configuration problems:\n{listed}"
        super().__init__(message)


class UnknownTargetError(LLMRouteError, KeyError):
    """The target is neither a model id nor a route name.

    `suggestions` holds the known targets closest to it (for "did you mean").
    """

    def __init__(self, target: str, known: Iterable[str] = ()) -> None:
        from llmroute._hints import suggest

        self.target = target
        self.suggestions: list[str] = suggest(target, known) if isinstance(target, str) else []
        super().__init__(target)

    def __str__(self) -> str:
        text = f"unknown target {self.target!r}: not a model id nor a route name"
        if self.suggestions:
            listed = " or ".join(repr(s) for s in self.suggestions)
            text += f" (did you mean {listed}?)"
        return text


class RequestError(LLMRouteError):
    """A request could not be served. `attempts` is the routing trace up to the failure;
    `not_tried` the model ids of the chain never reached when a budget ended the call."""

    def __init__(
        self, message: str, attempts: Sequence[Attempt] = (), *, not_tried: Sequence[str] = ()
    ) -> None:
        super().__init__(message)
        self.attempts: list[Attempt] = list(attempts)
        self.not_tried: tuple[str, ...] = tuple(not_tried)


class PaidModelBlockedError(RequestError):
    """A paid model was asked for directly while paid models are off (USE_PAID_MODELS)."""


class ProviderUnavailableError(RequestError):
    """A model asked for directly cannot be used: no credentials, no binary, or no usable key."""


class ProviderError(RequestError):
    """The provider answered with an error (or timed out) for a one-candidate request.

    `status` is the HTTP status, or None for a timeout, a transport error or a CLI failure.
    """

    def __init__(
        self,
        message: str,
        attempts: Sequence[Attempt] = (),
        *,
        status: int | None = None,
        provider: str | None = None,
        model: str | None = None,
        not_tried: Sequence[str] = (),
    ) -> None:
        super().__init__(message, attempts, not_tried=not_tried)
        self.status = status
        self.provider = provider
        self.model = model


class StreamInterruptedError(ProviderError):
    """A stream failed after chunks were yielded; `delivered_chars` says how much text got out."""

    def __init__(
        self,
        message: str,
        attempts: Sequence[Attempt] = (),
        *,
        status: int | None = None,
        provider: str | None = None,
        model: str | None = None,
        delivered_chars: int = 0,
    ) -> None:
        super().__init__(message, attempts, status=status, provider=provider, model=model)
        self.delivered_chars = delivered_chars


class StoreError(RequestError):
    """The state store (SQLite file, Redis server) could not be reached or answered wrongly.

    Raised before anything is sent: without the store there is no limit to keep, and an
    unlimited request is never the fallback. The router works again once the store is back.
    """


class RoutingError(RequestError):
    """Every candidate of the chain was skipped or failed."""


class RateLimitedError(RoutingError):
    """Every candidate that was tried ended on a rate limit, local or remote.

    `retry_after` is the number of seconds from now until the first candidate frees up,
    or None if none ever will (an estimate above a model's tpm, say).
    """

    def __init__(
        self,
        message: str,
        attempts: Sequence[Attempt] = (),
        *,
        retry_after: float | None = None,
        not_tried: Sequence[str] = (),
    ) -> None:
        super().__init__(message, attempts, not_tried=not_tried)
        self.retry_after = retry_after
