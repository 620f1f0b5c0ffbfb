"""Adapter for the OpenAI-compatible chat API (Groq, Together, OpenRouter and the like)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any

import httpx

from llmroute._records import usage as reported_usage
from llmroute._registry import ProviderKind
from llmroute.clock import Clock
from llmroute.limiter.learn import read_headers
from llmroute.providers._http import (
    HttpClient,
    error_message,
    failure_from_status,
    iter_sse_data,
    map_transport_errors,
    parse_json_body,
    transport_failure,
)
from llmroute.providers.base import (
    AttemptFailed,
    ProviderRequest,
    ProviderResponse,
    ProviderSettings,
    StreamEvent,
    new_call_id,
)
from llmroute.trace import ToolCall, Usage

__all__ = ["KINDS", "OpenAICompatibleProvider", "parse_answer"]

_FINISH_REASONS = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "content_filter": "content_filter",
    "function_call": "tool_calls",
    # Together and a few others use their engines' words.
    "eos": "stop",
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_length": "length",
    "tool_use": "tool_calls",
}
# One encoder for every body: json.dumps() builds a new one per call when given options.
_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_DECODE = json.JSONDecoder().decode


def _not_json(value: object) -> object:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# `_ENCODE` still builds json's C encoder on every call (about half its cost): built once
# here, with the same options. Without circular-reference markers it is stateless (safe
# across threads); a circular body fails with RecursionError and is then handed to
# `_ENCODE`, which says what is wrong.
_C_ENCODE = (
    c_make_encoder(None, _not_json, encode_basestring, None, ":", ",", False, False, True)
    if c_make_encoder is not None
    else None
)


def encode_body(body: dict[str, Any]) -> bytes:
    """`body` as compact UTF-8 JSON."""
    if _C_ENCODE is not None:
        try:
            return "".join(_C_ENCODE(body, 0)).encode()
        except RecursionError:
            pass
    return _ENCODE(body).encode()


class OpenAICompatibleProvider:
    """`POST {base_url}/chat/completions`, plain or streamed, key as a Bearer token."""

    unavailable_reason: str | None = None

    def __init__(
        self, config: ProviderSettings, *, get_client: Callable[[], HttpClient], clock: Clock
    ) -> None:
        self.name = config.name
        self._url = f"{config.base_url}/chat/completions"
        self._get_client = get_client
        self._clock = clock
        self._base_headers = {"content-type": "application/json", **config.headers}
        # Groq deprecates max_tokens in favour of max_completion_tokens (its catalogue entry
        # says so with `max_tokens_field`); send one, never both.
        field = config.options.get("max_tokens_field", "max_tokens")
        self._max_tokens_field = field if isinstance(field, str) else "max_tokens"
        self._headers_by_key: dict[str | None, dict[str, str]] = {}

    def __repr__(self) -> str:
        return f"OpenAICompatibleProvider({self.name!r}, url={self._url!r})"

    def _headers(self, key: str | None) -> dict[str, str]:
        headers = self._headers_by_key.get(key)
        if headers is None:
            headers = dict(self._base_headers)
            if key:
                headers["authorization"] = f"Bearer {key}"
            self._headers_by_key[key] = headers
        return headers

    def _body(self, request: ProviderRequest, stream: bool) -> bytes:
        body: dict[str, Any] = {"model": request.model, "messages": list(request.messages)}
        if request.max_tokens is not None:
            body[self._max_tokens_field] = request.max_tokens
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.stop:
            body["stop"] = list(request.stop)
        if request.tools is not None:
            body["tools"] = list(request.tools)
        if request.tool_choice is not None:
            body["tool_choice"] = request.tool_choice
        if request.response_format is not None:
            body["response_format"] = request.response_format
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        if request.extra:
            body.update(request.extra)
            if request.tools is None:
                # OpenAI refuses parallel_tool_calls without tools (400).
                body.pop("parallel_tool_calls", None)
        return encode_body(body)

    async def complete(self, request: ProviderRequest, key: str | None) -> ProviderResponse:
        try:
            response = await self._get_client().post(
                self._url,
                content=self._body(request, stream=False),
                headers=self._headers(key),
                timeout=request.timeout,
            )
        except httpx.TransportError as exc:
            raise transport_failure(exc) from exc
        content = response.content
        status = response.status_code
        if status != 200:
            failure = failure_from_status(
                status,
                parse_json_body(content),
                response.headers,
                wall_now=self._clock.time(),
                raw_text=content[:300].decode("utf-8", "replace"),
            )
            failure.ratelimit = read_headers(response.headers)
            raise failure
        data = parse_json_body(content)
        if not isinstance(data, dict):
            raise AttemptFailed("server_error", "answer is not a JSON object", status=status)
        if "error" in data:
            # OpenRouter reports errors found during generation with HTTP 200.
            raise _in_band_failure(data)
        answer = parse_answer(data, status)
        answer.ratelimit = read_headers(response.headers)
        return answer

    async def stream(self, request: ProviderRequest, key: str | None) -> AsyncIterator[StreamEvent]:
        client = self._get_client()
        state = _StreamState()
        with map_transport_errors():
            async with client.stream(
                "POST",
                self._url,
                content=self._body(request, stream=True),
                headers=self._headers(key),
                timeout=request.timeout,
            ) as response:
                report = read_headers(response.headers)
                if response.status_code != 200:
                    content = await response.aread()
                    failure = failure_from_status(
                        response.status_code,
                        parse_json_body(content),
                        response.headers,
                        wall_now=self._clock.time(),
                        raw_text=content[:300].decode("utf-8", "replace"),
                    )
                    failure.ratelimit = report
                    raise failure
                # Closed here, not by the garbage collector, when [DONE] or a bad chunk
                # ends the loop early: no reader task outlives the answer.
                async with contextlib.aclosing(iter_sse_data(response)) as events:
                    async for data in events:
                        if data == "[DONE]":
                            state.done = True
                            break
                        piece = state.feed(data)
                        if piece:
                            # the first event carries the answer's rate-limit report
                            yield StreamEvent(text=piece, ratelimit=report)
                            report = None
        closing = state.close()
        if report is not None:
            closing.ratelimit = report
        yield closing

    async def aclose(self) -> None:
        return None


def _finish(value: object, has_calls: bool) -> str | None:
    """The finish reason in the router's four words (None when the provider gave none)."""
    if not isinstance(value, str):
        return "tool_calls" if has_calls else None
    if value == "error":
        # OpenRouter's mark of an upstream that failed mid-answer.
        raise AttemptFailed("server_error", "the provider ended the answer with an error")
    reason = _FINISH_REASONS.get(value, "stop")
    # Some servers say `stop` on a turn that only called tools.
    return "tool_calls" if has_calls and reason == "stop" else reason


def parse_answer(data: dict[str, Any], status: int = 200) -> ProviderResponse:
    """A whole (non-streamed) chat completion, as the router reports it."""
    try:
        choice = data["choices"][0]
        message = choice["message"]
        content = message.get("content")
        raw_calls = message.get("tool_calls")
    except (TypeError, KeyError, IndexError, AttributeError):
        raise AttemptFailed(
            "server_error", "answer has no choices[0].message", status=status
        ) from None
    # Plain text, the common answer, without a call.
    text = content if isinstance(content, str) else _content_text(content, status)
    calls = _parse_calls(raw_calls, status) if raw_calls else []
    model = data.get("model")
    return ProviderResponse(
        text=text,
        finish_reason=_finish(choice.get("finish_reason"), bool(calls)),
        usage=_usage(data.get("usage")),
        served_model=model if isinstance(model, str) else None,
        raw=data,
        tool_calls=calls or (),
    )


def _content_text(content: object, status: int) -> str:
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    if isinstance(content, list):
        # Groq's gpt-oss sends [] beside tool calls; some servers send text parts.
        return "".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    raise AttemptFailed("server_error", "message content is not text", status=status)


def _parse_calls(raw: object, status: int) -> list[ToolCall]:
    if not isinstance(raw, list):
        raise AttemptFailed("server_error", "message tool_calls is not a list", status=status)
    calls: list[ToolCall] = []
    for index, call in enumerate(raw):
        if not isinstance(call, dict):
            raise AttemptFailed("server_error", f"tool_calls[{index}] is not an object")
        function = call.get("function")
        name = function.get("name") if isinstance(function, dict) else None
        if not isinstance(name, str) or not name:
            raise AttemptFailed(
                "server_error", f"tool_calls[{index}] has no function name", status=status
            )
        call_id = call.get("id")
        calls.append(
            ToolCall(
                id=call_id if isinstance(call_id, str) and call_id else new_call_id(),
                name=name,
                arguments=_arguments(function.get("arguments")),  # type: ignore[union-attr]
            )
        )
    return calls


def _arguments(value: object) -> str:
    if isinstance(value, str):
        return value
    # A few servers send the arguments as an object; callers always get the JSON text.
    return "{}" if value is None else _ENCODE(value)


class _StreamState:
    """One stream's progress: closing facts, and tool calls assembled from their deltas.

    Tool-call fragments are keyed by `index`. A call's id and name are set by the first
    fragment that has them and never appended to (some servers repeat them in every
    fragment); argument pieces are appended in arrival order.
    """

    __slots__ = ("calls", "done", "finish", "model", "usage")

    def __init__(self) -> None:
        self.done = False
        self.finish: str | None = None
        self.usage: Usage | None = None
        self.model: str | None = None
        #: index -> [id, name, argument pieces]
        self.calls: dict[int, list[Any]] | None = None

    def feed(self, data: str) -> str:
        """Take one event's payload; return its text delta. Raise on anything unreadable:
        a dropped event would silently shorten the answer."""
        try:
            event = _DECODE(data)
        except ValueError:
            raise AttemptFailed("server_error", "malformed stream event (not JSON)") from None
        if not isinstance(event, dict):
            raise AttemptFailed("server_error", "malformed stream event (not a JSON object)")
        if "error" in event:
            raise _in_band_failure(event)
        x_groq = event.get("x_groq")
        if x_groq is not None:
            self._groq(x_groq)
        usage = event.get("usage")
        if usage is not None:
            self.usage = _usage(usage) or self.usage
        model = event.get("model")
        if isinstance(model, str):
            self.model = model
        choices = event.get("choices")
        if not choices:
            if choices is None or isinstance(choices, list):
                return ""
            raise AttemptFailed("server_error", "malformed stream event (choices)")
        text = ""
        for choice in choices:
            text += self._choice(choice)
        return text

    def _groq(self, x_groq: object) -> None:
        if not isinstance(x_groq, dict):
            return
        if x_groq.get("error"):
            raise AttemptFailed("server_error", f"stream stopped: {x_groq['error']}"[:300])
        self.usage = _usage(x_groq.get("usage")) or self.usage

    def _choice(self, choice: object) -> str:
        if not isinstance(choice, dict):
            raise AttemptFailed("server_error", "malformed stream event (choice)")
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            if delta is not None:
                raise AttemptFailed("server_error", "malformed stream event (delta)")
            delta = {}
        finish = choice.get("finish_reason")
        if finish:
            # Mapped at the end, once it is known whether the answer called tools.
            self.finish = finish if isinstance(finish, str) else "stop"
        fragments = delta.get("tool_calls")
        if fragments:
            self._fragments(fragments)
        piece = delta.get("content")
        if isinstance(piece, str):
            return piece
        if piece is None or piece == []:
            return ""
        raise AttemptFailed("server_error", "malformed stream event (content is not text)")

    def _fragments(self, fragments: object) -> None:
        if not isinstance(fragments, list):
            raise AttemptFailed("server_error", "malformed stream event (tool_calls)")
        if self.calls is None:
            self.calls = {}
        for fragment in fragments:
            if not isinstance(fragment, dict):
                raise AttemptFailed("server_error", "malformed stream event (tool call)")
            index = fragment.get("index", len(self.calls))
            function = fragment.get("function") or {}
            if not isinstance(index, int) or not isinstance(function, dict):
                raise AttemptFailed("server_error", "malformed stream event (tool call)")
            slot = self.calls.get(index)
            if slot is None:
                slot = self.calls[index] = [None, None, []]
            _merge_fragment(slot, fragment.get("id"), function)

    def close(self) -> StreamEvent:
        """The closing event, once the body has ended."""
        if not self.done:
            raise AttemptFailed("transport_error", "stream ended before [DONE]")
        calls = self._assembled()
        if self.finish is None and not calls:
            raise AttemptFailed("server_error", "stream ended without a finish_reason")
        return StreamEvent(
            finish_reason=_finish(self.finish, bool(calls)),
            usage=self.usage,
            served_model=self.model,
            tool_calls=calls or (),
        )

    def _assembled(self) -> list[ToolCall]:
        if not self.calls:
            return []
        calls = []
        for index in sorted(self.calls):
            call_id, name, pieces = self.calls[index]
            if name is None:
                raise AttemptFailed("server_error", f"streamed tool call {index} has no name")
            calls.append(
                ToolCall(id=call_id or new_call_id(), name=name, arguments="".join(pieces))
            )
        return calls


def _merge_fragment(slot: list[Any], call_id: object, function: dict[str, Any]) -> None:
    """Fold one fragment into its call: id and name once, argument pieces appended."""
    if slot[0] is None and isinstance(call_id, str) and call_id:
        slot[0] = call_id
    name = function.get("name")
    if slot[1] is None and isinstance(name, str) and name:
        slot[1] = name
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        slot[2].append(arguments)
    elif arguments is not None:
        slot[2].append(_arguments(arguments))


def _usage(value: object) -> Usage | None:
    if not isinstance(value, dict):
        return None
    prompt = value.get("prompt_tokens")
    completion = value.get("completion_tokens")
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    total = value.get("total_tokens")
    return reported_usage(
        prompt, completion, total if isinstance(total, int) else prompt + completion
    )


def _in_band_failure(data: dict[str, Any]) -> AttemptFailed:
    err = data.get("error")
    code = err.get("code") if isinstance(err, dict) else None
    try:
        status = int(code) if code is not None else None
    except (TypeError, ValueError):
        status = None
    message = "in-band error: " + error_message(data, "provider reported an error")
    if status == 429:
        return AttemptFailed("rate_limited_remote", message, status=status)
    if status is not None and 400 <= status < 500 and status not in (408, 409):
        return AttemptFailed("client_error", message, status=status)
    return AttemptFailed("server_error", message, status=status)


KINDS = (
    ProviderKind(
        name="openai_compatible",
        factory=OpenAICompatibleProvider,
        transport="http",
        capabilities=frozenset({"tools", "vision", "json"}),
        options={"max_tokens_field": "max_tokens"},
        wire="openai",
        reports_limits=True,
    ),
)
