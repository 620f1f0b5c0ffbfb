"""HTTP pieces every HTTP adapter shares: status -> failure mapping, Retry-After, SSE.

Failures are classified here and nowhere else: by HTTP status first, then by the body only
to tell cases apart within a status (docs/providers.md 1.4, 8).
"""

from __future__ import annotations

import email.utils
import json
from collections.abc import AsyncGenerator, AsyncIterator, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, contextmanager
from json.scanner import c_make_scanner  # type: ignore[attr-defined]
from typing import Protocol

import httpx

from llmroute._transport_words import describe
from llmroute.providers.base import AttemptFailed

__all__ = [
    "MAX_RETRY_AFTER",
    "HttpClient",
    "HttpResponse",
    "error_message",
    "failure_from_status",
    "iter_sse_data",
    "map_transport_errors",
    "parse_retry_after",
    "transport_failure",
]


class HttpResponse(Protocol):
    """The parts of an answer the adapters read (`httpx.Response` has them all)."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def content(self) -> bytes: ...

    async def aread(self) -> bytes: ...

    def aiter_lines(self) -> AsyncIterator[str]: ...


class HttpClient(Protocol):
    """What the adapters call: an `httpx.AsyncClient`, or the router's own aiohttp-backed
    `AiohttpClient`, which answers the same calls at aiohttp's speed."""

    async def post(
        self,
        url: str,
        *,
        content: bytes,
        headers: Mapping[str, str],
        timeout: float | None = ...,
    ) -> HttpResponse: ...

    def stream(
        self,
        method: str,
        url: str,
        *,
        content: bytes,
        headers: Mapping[str, str],
        timeout: float | None = ...,
    ) -> AbstractAsyncContextManager[HttpResponse]: ...

    async def aclose(self) -> None: ...


#: a provider hint longer than this is the limiter's job, not a blocking sleep
MAX_RETRY_AFTER = 24 * 3600.0
_MAX_MESSAGE = 300
_SERVER_STATUSES = frozenset({408, 409, 498, 500, 502, 503, 504, 520, 522, 524, 529})


def parse_retry_after(headers: Mapping[str, str], wall_now: float) -> float | None:
    """Seconds from `retry-after-ms`, or `retry-after` (seconds or an HTTP date)."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        try:
            return _clamp(float(raw_ms) / 1000.0)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        return _clamp(float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return _clamp(when.timestamp() - wall_now)


def _clamp(seconds: float) -> float | None:
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def error_message(body: object, fallback: str) -> str:
    """The human part of an error body (OpenAI, OpenRouter and Google envelopes), shortened."""
    message: object = None
    if isinstance(body, list) and body:
        body = body[0]
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):
            message = err.get("message")
        elif isinstance(err, str):
            message = err
        if message is None:
            message = body.get("message")
    text = message if isinstance(message, str) and message else fallback
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 3] + "..."


_DECODE = json.JSONDecoder().decode
# What `_DECODE` runs after two regular-expression scans for surrounding whitespace (a
# third of its cost on a short answer). Stateless between calls: safe across threads.
_SCAN = c_make_scanner(json.JSONDecoder()) if c_make_scanner is not None else None


def parse_json_body(content: bytes) -> object:
    """The parsed body, or None when it is not JSON (providers answer in UTF-8)."""
    try:
        # Decoding first skips json.loads' byte-encoding detection on every call.
        text = content.decode("utf-8")
        if _SCAN is not None and text[:1] in ("{", "["):
            try:
                value, end = _SCAN(text, 0)
            except StopIteration:
                return None
            if end == len(text) or not text[end:].strip(" \t\n\r"):
                return value
        return _DECODE(text)  # surrounding whitespace, a bare value, or extra data
    except ValueError:  # UnicodeDecodeError included
        return None


def failure_from_status(
    status: int,
    body: object,
    headers: Mapping[str, str],
    *,
    wall_now: float,
    raw_text: str = "",
) -> AttemptFailed:
    """Map a non-2xx answer of an OpenAI-compatible provider to an `AttemptFailed`."""
    message = f"HTTP {status}: " + error_message(body, raw_text[:_MAX_MESSAGE] or "no body")
    retry_after = parse_retry_after(headers, wall_now)
    if status == 429:
        return AttemptFailed("rate_limited_remote", message, status=status, retry_after=retry_after)
    if status in _SERVER_STATUSES or status >= 500:
        return AttemptFailed("server_error", message, status=status, retry_after=retry_after)
    if status == 401 or (status == 403 and not _mentions_context(message)):
        return AttemptFailed("client_error", message, status=status, key_invalid=True)
    # Groq's 400 for a tool call the model garbled: the request was fine, and the model
    # often writes the call properly on another try.
    return AttemptFailed(
        "client_error", message, status=status, retryable=_error_code(body) == "tool_use_failed"
    )


def _error_code(body: object) -> object:
    err = body.get("error") if isinstance(body, dict) else None
    return err.get("code") if isinstance(err, dict) else None


def _mentions_context(message: str) -> bool:
    # Together answers a context overflow with 403 (docs/providers.md 3.3): not a bad key.
    lowered = message.lower()
    return "context" in lowered or "token" in lowered


def transport_failure(exc: httpx.TransportError) -> AttemptFailed:
    """The `AttemptFailed` for an httpx transport error (timeouts included), in the same
    words whichever client raised it: the router's own, or a user's `httpx.AsyncClient`."""
    if isinstance(exc, httpx.TimeoutException):
        return AttemptFailed(
            "timeout",
            describe(exc),
            reached=not isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout),
        )
    return AttemptFailed(
        "transport_error", describe(exc), reached=not isinstance(exc, httpx.ConnectError)
    )


@contextmanager
def map_transport_errors() -> Iterator[None]:
    """Translate httpx exceptions into `AttemptFailed` at the adapter boundary."""
    try:
        yield
    except httpx.TransportError as exc:
        raise transport_failure(exc) from exc


async def iter_sse_data(response: HttpResponse) -> AsyncGenerator[str, None]:
    """Yield the `data` payload of each server-sent event as soon as the event is complete.

    Handles multi-line `data:` fields, comment and keep-alive lines (`:`), `\\r\\n` line ends
    and other fields (`event:`, `id:`), which are ignored. A final event not followed by a
    blank line is still delivered when the body ends.
    """
    data_lines: list[str] = []
    async for line in response.aiter_lines():
        if not line:
            if data_lines:
                yield "\n".join(data_lines)
                data_lines = []
            continue
        if line[0] == ":":
            continue
        name, _, value = line.partition(":")
        if name == "data":
            data_lines.append(value[1:] if value.startswith(" ") else value)
    if data_lines:
        yield "\n".join(data_lines)
