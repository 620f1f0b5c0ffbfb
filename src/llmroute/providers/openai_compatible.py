"""Adapter for the OpenAI-compatible chat API (Groq, Together, OpenRouter and the like)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

from llmroute.clock import Clock
from llmroute.config._schema import ProviderConfig
from llmroute.providers._http import (
    HttpClient,
    error_message,
    failure_from_status,
    iter_sse_data,
    map_transport_errors,
    parse_json_body,
    transport_failure,
)
from llmroute.providers.base import AttemptFailed, ProviderRequest, ProviderResponse, StreamEvent
from llmroute.trace import Usage

__all__ = ["OpenAICompatibleProvider"]

logger = logging.getLogger(__name__)

_FINISH_ALIASES = {"eos": "stop", "end_turn": "stop"}
# One encoder for every body: json.dumps() builds a new one per call when given options.
_ENCODE = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


class OpenAICompatibleProvider:
    """`POST {base_url}/chat/completions`, plain or streamed, key as a Bearer token."""

    unavailable_reason: str | None = None

    def __init__(
        self, config: ProviderConfig, *, get_client: Callable[[], HttpClient], clock: Clock
    ) -> None:
        self.name = config.name
        self._url = f"{config.base_url}/chat/completions"
        self._get_client = get_client
        self._clock = clock
        self._base_headers = {"content-type": "application/json", **config.headers}
        # Groq deprecates max_tokens in favour of max_completion_tokens; send one, never both.
        host = (config.base_url or "").lower()
        self._max_tokens_field = "max_completion_tokens" if "groq.com" in host else "max_tokens"
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
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        if request.extra:
            body.update(request.extra)
        return _ENCODE(body).encode()

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
            raise failure_from_status(
                status,
                parse_json_body(content),
                response.headers,
                wall_now=self._clock.time(),
                raw_text=content[:300].decode("utf-8", "replace"),
            )
        data = parse_json_body(content)
        if not isinstance(data, dict):
            raise AttemptFailed("server_error", "answer is not a JSON object", status=status)
        if "error" in data:
            # OpenRouter reports errors found during generation with HTTP 200.
            raise _in_band_failure(data)
        choices = data.get("choices")
        try:
            choice = choices[0]  # type: ignore[index]
            message = choice["message"]
            text = message.get("content") or ""
            finish = choice.get("finish_reason")
        except (TypeError, KeyError, IndexError, AttributeError):
            raise AttemptFailed(
                "server_error", "answer has no choices[0].message", status=status
            ) from None
        if not isinstance(text, str):
            raise AttemptFailed("server_error", "message content is not text", status=status)
        model = data.get("model")
        return ProviderResponse(
            text=text,
            finish_reason=_finish(finish),
            usage=_usage(data.get("usage")),
            served_model=model if isinstance(model, str) else None,
            raw=data,
        )

    async def stream(self, request: ProviderRequest, key: str | None) -> AsyncIterator[StreamEvent]:
        client = self._get_client()
        finish: str | None = None
        usage: Usage | None = None
        model: str | None = None
        done = False
        with map_transport_errors():
            async with client.stream(
                "POST",
                self._url,
                content=self._body(request, stream=True),
                headers=self._headers(key),
                timeout=request.timeout,
            ) as response:
                if response.status_code != 200:
                    content = await response.aread()
                    raise failure_from_status(
                        response.status_code,
                        parse_json_body(content),
                        response.headers,
                        wall_now=self._clock.time(),
                        raw_text=content[:300].decode("utf-8", "replace"),
                    )
                async for data in iter_sse_data(response):
                    if data == "[DONE]":
                        done = True
                        break
                    try:
                        event = json.loads(data)
                    except ValueError:
                        logger.debug("%s: skipped an undecodable stream event", self.name)
                        continue
                    if not isinstance(event, dict):
                        continue
                    if "error" in event:
                        raise _in_band_failure(event)
                    x_groq = event.get("x_groq")
                    if isinstance(x_groq, dict):
                        if x_groq.get("error"):
                            raise AttemptFailed(
                                "server_error", f"stream stopped: {x_groq['error']}"[:300]
                            )
                        usage = _usage(x_groq.get("usage")) or usage
                    usage = _usage(event.get("usage")) or usage
                    if isinstance(event.get("model"), str):
                        model = event["model"]
                    for choice in event.get("choices") or ():
                        if not isinstance(choice, dict):
                            continue
                        delta = choice.get("delta")
                        piece = delta.get("content") if isinstance(delta, dict) else None
                        if choice.get("finish_reason"):
                            finish = _finish(choice["finish_reason"])
                        if isinstance(piece, str) and piece:
                            yield StreamEvent(text=piece)
        if not done and finish is None:
            raise AttemptFailed("transport_error", "stream ended before it was complete")
        yield StreamEvent(finish_reason=finish, usage=usage, served_model=model)

    async def aclose(self) -> None:
        return None


def _finish(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    return _FINISH_ALIASES.get(value, value)


def _usage(value: object) -> Usage | None:
    if not isinstance(value, dict):
        return None
    prompt = value.get("prompt_tokens")
    completion = value.get("completion_tokens")
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    total = value.get("total_tokens")
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=total if isinstance(total, int) else prompt + completion,
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
