"""Google AI Studio adapter: the native Gemini `generateContent` API (docs/providers.md 5).

The key travels only in the `x-goog-api-key` header. With `?key=` it would land in access
logs, tracing spans and httpx's own exception and log text, all of which show full URLs.

Failure mapping (everything else is the router's business):

    HTTP 200, promptFeedback.blockReason      client_error, not retryable (content filter)
    HTTP 200, SAFETY-family finish, no text   client_error, not retryable (content filter)
    HTTP 200, body not JSON / no candidates   server_error
    429                                       rate_limited_remote; retry_after from
                                              RetryInfo.retryDelay, else Retry-After;
                                              a PerDay quota sets quota_reset_at to the
                                              next midnight in America/Los_Angeles
    400 ErrorInfo API_KEY_INVALID, 401, 403   client_error, key_invalid
    5xx                                       server_error (retry_after from Retry-After)
    other 4xx                                 client_error
    httpx transport errors / timeouts         transport_error / timeout

Error bodies are read in `_gemini_errors`, the request and answer translation lives in
`_gemini_wire`; this module moves the bytes.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from urllib.parse import quote

from llmroute._redact import Redactor
from llmroute._registry import ProviderKind
from llmroute.clock import Clock
from llmroute.providers._gemini_errors import classify_error, next_pacific_midnight
from llmroute.providers._gemini_wire import MAX_STOP_SEQUENCES, CallMemory, build_body, parse_parts
from llmroute.providers._http import (
    HttpClient,
    error_message,
    iter_sse_data,
    map_transport_errors,
    parse_json_body,
)
from llmroute.providers.base import (
    SIGNATURES,
    AttemptFailed,
    ProviderRequest,
    ProviderResponse,
    ProviderSettings,
    StreamEvent,
)
from llmroute.trace import ToolCall, Usage

__all__ = [
    "DEFAULT_BASE_URL",
    "KINDS",
    "MAX_STOP_SEQUENCES",
    "GoogleAIStudioProvider",
    "build_body",
    "classify_error",
    "next_pacific_midnight",
]


logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://generativelanguage.googleapis.com/v1beta"

_FILTER_REASONS = frozenset(
    {
        "SAFETY",
        "RECITATION",
        "BLOCKLIST",
        "PROHIBITED_CONTENT",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
        "IMAGE_RECITATION",
        "LANGUAGE",
    }
)
_FINISH_REASONS = {"STOP": "stop", "MAX_TOKENS": "length"}
# The model wrote a call it should not have, or a broken one: another try may do better.
_GENERATION_ERRORS = frozenset(
    {"MALFORMED_FUNCTION_CALL", "UNEXPECTED_TOOL_CALL", "TOO_MANY_TOOL_CALLS"}
)
_MAX_DETAIL = 120

JSONObject = dict[str, object]


class GoogleAIStudioProvider:
    """Adapter for `type: google_ai_studio` providers.

    `get_client` returns the router's shared pooled client (called per request, never
    closed here); `clock.time()` dates daily-quota resets.
    """

    def __init__(
        self,
        config: ProviderSettings,
        *,
        get_client: Callable[[], HttpClient],
        clock: Clock,
    ) -> None:
        self.name: str = config.name
        self.unavailable_reason: str | None = None
        self._base_url = (config.base_url or DEFAULT_BASE_URL).rstrip("/")
        self._headers: dict[str, str] = {**config.headers, "content-type": "application/json"}
        self._headers_by_key: dict[str, dict[str, str]] = {}
        self._get_client = get_client
        self._clock = clock
        # The translated body depends on this provider's memory of the calls it issued, so
        # each Gemini provider keeps its own in the request's memo.
        self._memo_key = f"gemini_body:{self.name}"
        # model -> (generate URL, stream URL); filled on first use of each model
        self._urls: dict[str, tuple[str, str]] = {}
        #: the tool calls this provider's answers issued, for their ids and signatures
        self.calls = CallMemory()
        # Everything this provider knows to be secret: its keys, and the `${VAR}` values in
        # its headers and base_url. A key handed in that the config never listed (a test's
        # own) gets a redactor of its own, built on its first use.
        known = {*getattr(config, "secrets", ()), *_revealed(getattr(config, "keys", ()))}
        self._redact = Redactor(known)
        self._redactors: dict[str, Redactor] = dict.fromkeys(known, self._redact)

    def __repr__(self) -> str:
        return f"GoogleAIStudioProvider(name={self.name!r}, base_url={self._base_url!r})"

    async def complete(self, request: ProviderRequest, key: str | None) -> ProviderResponse:
        key = _require_key(key)
        url = self._model_urls(request.model)[0]
        client = self._get_client()
        content = self._encoded_body(request)
        with map_transport_errors():
            response = await client.post(
                url,
                content=content,
                headers=self._request_headers(key),
                timeout=request.timeout,
            )
        if not 200 <= response.status_code < 300:
            raise self._http_failure(response.status_code, response.content, response.headers, key)
        data = parse_json_body(response.content)
        if not isinstance(data, dict):
            raise AttemptFailed(
                "server_error",
                f"HTTP {response.status_code}: unparsable response body (not a JSON object)",
                status=response.status_code,
            )
        return _parse_response(data, self._redactor(key), self.calls)

    def _encoded_body(self, request: ProviderRequest) -> bytes:
        """The body, translated once per request: retries and other keys reuse it."""
        memo = request.memo
        body = memo.get(self._memo_key) if memo is not None else None
        if not isinstance(body, bytes):
            signatures = memo.get(SIGNATURES) if memo is not None else None
            translated = build_body(
                request, self.calls, signatures if isinstance(signatures, dict) else None
            )
            body = json.dumps(translated, ensure_ascii=False).encode()
            if memo is not None:
                memo[self._memo_key] = body
        return body

    async def stream(self, request: ProviderRequest, key: str | None) -> AsyncIterator[StreamEvent]:
        key = _require_key(key)
        url = self._model_urls(request.model)[1]
        client = self._get_client()
        state = _StreamState(self._redactor(key), self.calls)
        content = self._encoded_body(request)
        with map_transport_errors():
            # The context manager lives inside the generator, so aclose() on the generator
            # closes the HTTP response at once.
            async with client.stream(
                "POST",
                url,
                content=content,
                headers=self._request_headers(key),
                timeout=request.timeout,
            ) as response:
                if not 200 <= response.status_code < 300:
                    content = await response.aread()
                    raise self._http_failure(response.status_code, content, response.headers, key)
                # Closed here, not by the garbage collector, when a bad event ends the
                # loop early: no reader task outlives the answer.
                async with contextlib.aclosing(iter_sse_data(response)) as events:
                    async for data in events:
                        text = state.feed(data)
                        if text:
                            yield StreamEvent(text=text)
        yield state.close()

    async def aclose(self) -> None:
        """Nothing to release: the router owns the HTTP client."""

    def _model_urls(self, model: str) -> tuple[str, str]:
        urls = self._urls.get(model)
        if urls is None:
            bare = model.removeprefix("models/")
            path = f"{self._base_url}/models/{quote(bare, safe='-._~')}"
            urls = (f"{path}:generateContent", f"{path}:streamGenerateContent?alt=sse")
            self._urls[model] = urls
        return urls

    def _request_headers(self, key: str) -> dict[str, str]:
        headers = self._headers_by_key.get(key)
        if headers is None:
            headers = self._headers_by_key[key] = {**self._headers, "x-goog-api-key": key}
        return headers

    def _http_failure(
        self, status: int, content: bytes, headers: Mapping[str, str], key: str
    ) -> AttemptFailed:
        failure = classify_error(
            status, parse_json_body(content), headers, wall_now=self._clock.time()
        )
        message = self._redactor(key)(failure.message)
        if message != failure.message:
            # Rewritten in place so every other field (present or future) stays as built.
            failure.message = message
            failure.args = (message,)
        return failure

    def _redactor(self, key: str) -> Redactor:
        redact = self._redactors.get(key)
        if redact is None:
            redact = self._redactors[key] = Redactor((*self._redactors, key))
        return redact


class _StreamState:
    """One stream's progress: the closing facts, and the tool calls seen so far.

    Gemini sends each call whole in one event; they go out together, in arrival order, with
    the closing event.
    """

    __slots__ = ("calls", "finish", "first", "got_text", "memory", "redact", "served", "usage")

    def __init__(self, redact: Redactor, memory: CallMemory) -> None:
        self.redact = redact
        self.memory = memory
        self.finish: str | None = None
        self.usage: Usage | None = None
        self.served: str | None = None
        self.calls: list[ToolCall] = []
        self.got_text = False
        self.first = True

    def feed(self, data: str) -> str:
        """Take one event; return its text."""
        event = parse_json_body(data.encode())
        if not isinstance(event, dict):
            raise AttemptFailed("server_error", "unparsable stream event (not JSON)")
        if "error" in event:
            message = error_message(event, "error event in stream")
            raise AttemptFailed("server_error", self.redact(f"stream error: {message}"))
        if self.first:
            self.first = False
            blocked = _blocked_prompt(event)
            if blocked is not None:
                raise blocked
        candidate = _first_candidate(event)
        text, calls = _candidate_parts(candidate, self.memory)
        self.calls += calls
        raw_finish = candidate.get("finishReason") if candidate else None
        if raw_finish is not None:
            self.finish = _map_finish(raw_finish, bool(self.calls), candidate)
            if self.finish == "content_filter" and not self.got_text and not text:
                raise _filtered(raw_finish, candidate)
        self.usage = _usage(event.get("usageMetadata")) or self.usage
        model_version = event.get("modelVersion")
        if isinstance(model_version, str):
            self.served = model_version
        self.got_text = self.got_text or bool(text)
        return text

    def close(self) -> StreamEvent:
        if self.finish is None:
            raise AttemptFailed("transport_error", "stream ended without a finishReason")
        finish = "tool_calls" if self.calls and self.finish == "stop" else self.finish
        return StreamEvent(
            finish_reason=finish,
            usage=self.usage,
            served_model=self.served,
            tool_calls=self.calls or (),
        )


def _parse_response(
    data: JSONObject, redact: Redactor, memory: CallMemory | None = None
) -> ProviderResponse:
    blocked = _blocked_prompt(data)
    if blocked is not None:
        raise blocked
    if "error" in data:
        message = error_message(data, "error object in a 200 answer")
        raise AttemptFailed("server_error", redact(f"HTTP 200: {message}"), status=200)
    candidate = _first_candidate(data)
    if candidate is None:
        raise AttemptFailed("server_error", "HTTP 200: answer has no candidates", status=200)
    text, calls = _candidate_parts(candidate, memory)
    raw_finish = candidate.get("finishReason")
    finish = None if raw_finish is None else _map_finish(raw_finish, bool(calls), candidate)
    if finish == "content_filter" and not text:
        raise _filtered(raw_finish, candidate)
    model_version = data.get("modelVersion")
    return ProviderResponse(
        text=text,
        finish_reason=finish,
        usage=_usage(data.get("usageMetadata")),
        served_model=model_version if isinstance(model_version, str) else None,
        raw=data,
        tool_calls=calls or (),
    )


def _blocked_prompt(data: JSONObject) -> AttemptFailed | None:
    feedback = data.get("promptFeedback")
    reason = feedback.get("blockReason") if isinstance(feedback, dict) else None
    if reason is None:
        return None
    # Another key or a retry gets the same verdict, so this is final for the candidate.
    return AttemptFailed(
        "client_error",
        f"prompt blocked by the provider's content filter (blockReason {_short(reason)})",
        status=200,
        retryable=False,
    )


def _filtered(raw_finish: object, candidate: JSONObject | None) -> AttemptFailed:
    message = (
        f"response blocked by the provider's content filter (finishReason {_short(raw_finish)})"
    )
    explanation = candidate.get("finishMessage") if candidate else None
    if isinstance(explanation, str) and explanation:
        message += f": {explanation[:_MAX_DETAIL]}"
    return AttemptFailed("client_error", message, status=200, retryable=False)


def _first_candidate(data: JSONObject) -> JSONObject | None:
    candidates = data.get("candidates")
    if isinstance(candidates, list) and candidates and isinstance(candidates[0], dict):
        return candidates[0]
    return None


def _candidate_parts(
    candidate: JSONObject | None, memory: CallMemory | None
) -> tuple[str, list[ToolCall]]:
    # A filtered candidate may come without content or with empty parts.
    content = candidate.get("content") if candidate else None
    if not isinstance(content, dict):
        return "", []
    return parse_parts(content.get("parts"), memory)


def _map_finish(raw: object, has_calls: bool, candidate: JSONObject | None = None) -> str:
    """Gemini's finishReason in the router's four words, or the failed attempt it means."""
    mapped = _FINISH_REASONS.get(raw) if isinstance(raw, str) else None
    if mapped is not None:
        # Gemini says STOP on a turn that called tools.
        return "tool_calls" if has_calls and mapped == "stop" else mapped
    if raw in _FILTER_REASONS or (isinstance(raw, str) and raw.startswith("IMAGE_")):
        return "content_filter"
    detail = candidate.get("finishMessage") if candidate else None
    message = f"the model stopped with finishReason {_short(raw)}"
    if isinstance(detail, str) and detail:
        message += f": {detail[:_MAX_DETAIL]}"
    if raw in _GENERATION_ERRORS:
        raise AttemptFailed("server_error", message, status=200)
    # MISSING_THOUGHT_SIGNATURE and the like: the same request would fail the same way.
    raise AttemptFailed("client_error", message, status=200, retryable=False)


def _usage(meta: object) -> Usage | None:
    if not isinstance(meta, dict):
        return None
    prompt = _count(meta.get("promptTokenCount"))
    candidates = _count(meta.get("candidatesTokenCount"))
    thoughts = _count(meta.get("thoughtsTokenCount"))
    total = _count(meta.get("totalTokenCount"))
    if prompt is None and candidates is None and thoughts is None and total is None:
        return None
    prompt_tokens = prompt or 0
    # Thinking tokens are billed as output (docs/providers.md 5.3).
    completion_tokens = (candidates or 0) + (thoughts or 0)
    return Usage(
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        total_tokens=total if total is not None else prompt_tokens + completion_tokens,
    )


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _list(value: object) -> list[object]:
    return value if isinstance(value, list) else []


def _short(value: object) -> str:
    return str(value)[:40]


def _revealed(keys: object) -> list[str]:
    """The values of the config's keys (`Secret` objects, or plain strings)."""
    if not isinstance(keys, tuple | list):
        return []
    return [str(k.reveal()) if hasattr(k, "reveal") else str(k) for k in keys if k]


def _require_key(key: str | None) -> str:
    if not key:
        raise ValueError("google_ai_studio needs an API key for every attempt")
    return key


KINDS = (
    ProviderKind(
        name="google_ai_studio",
        factory=GoogleAIStudioProvider,
        transport="http",
        capabilities=frozenset({"tools", "vision", "json"}),
        default_base_url=DEFAULT_BASE_URL,
        wire="gemini",
    ),
)
