"""The fakes' wire format: how a behaviour is answered on the wire, and nothing else.

`render` turns one behaviour into a `Rendered` answer in the real wire format of the
OpenAI-compatible providers (Groq, Together, OpenRouter) or of Gemini, following the fixtures
of docs/providers.md section 9: bodies, SSE events, error envelopes, headers. This is the one
place the fakes' wire format lives; `FakeScript` picks the behaviour and both fakes
(`FakeTransport`, `FakeProviderServer`) only move the bytes. Nothing in this module does I/O
or reads a clock.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from llmroute.testing._script import (
    Behaviour,
    Blocked,
    Garbage,
    InvalidKey,
    RateLimit,
    Reply,
    ServerError,
    Status,
    Stream,
    Timeout,
    Wire,
    estimate_tokens,
)
from llmroute.testing._wire_tools import (
    call_fragments,
    calls_text,
    finish_with,
    gemini_call_part,
    openai_calls,
)
from llmroute.trace import ToolCall

__all__ = ["Rendered", "render"]

#: fixed `created` stamp: rendering is pure, so it cannot read the clock
_CREATED = 1767225600
_JSON = "application/json"
_GEMINI_JSON = "application/json; charset=UTF-8"
_SSE = "text/event-stream"


@dataclass(frozen=True, slots=True, kw_only=True)
class Rendered:
    """An answer ready to be sent.

    With `pieces` None the answer is `body`; otherwise `pieces` are sent one after the other,
    each after waiting its delay in seconds, and `break_after` says the connection then breaks
    instead of ending the response. `hang` means no answer is ever sent. `latency` is waited
    before anything is sent.
    """

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    pieces: tuple[tuple[float, bytes], ...] | None = None
    break_after: bool = False
    latency: float = 0.0
    hang: bool = False


@dataclass(slots=True)
class _Generation:
    """Reply and Stream brought to one shape."""

    chunks: tuple[str, ...]
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None
    usage: bool
    delay: float
    fail_after: int | None
    latency: float
    tool_calls: tuple[ToolCall, ...] = ()
    #: OpenAI streams: argument characters per fragment (0: each call whole)
    fragment: int = 0


def render(
    behaviour: Behaviour,
    *,
    wire: Wire,
    model: str,
    stream: bool,
    prompt_text: str,
    include_usage: bool = False,
    sse: bool = True,
    response_id: str = "fake000000",
) -> Rendered:
    """Render `behaviour` as the provider `wire` would answer a request for `model`.

    `stream` asks for a streamed answer; `prompt_text` feeds the token estimate;
    `include_usage` mirrors OpenAI's `stream_options.include_usage` (an extra usage chunk);
    `sse=False` renders a Gemini stream as the JSON array Gemini sends without `alt=sse`.
    """
    match behaviour:
        case Reply():
            calls = _calls(behaviour.tool_calls)
            text = behaviour.text if behaviour.text is not None else ("" if calls else "ok")
            gen = _Generation(
                chunks=(text,),
                prompt_tokens=_or(behaviour.prompt_tokens, estimate_tokens(prompt_text)),
                completion_tokens=_or(
                    behaviour.completion_tokens, estimate_tokens(text + calls_text(calls))
                ),
                finish_reason=finish_with(behaviour.finish_reason, calls),
                usage=behaviour.usage,
                delay=0.0,
                fail_after=None,
                latency=behaviour.latency,
                tool_calls=calls,
            )
            return _render_generation(gen, wire, model, stream, include_usage, sse, response_id)
        case Stream():
            calls = _calls(behaviour.tool_calls)
            gen = _Generation(
                chunks=tuple(behaviour.chunks),
                prompt_tokens=_or(behaviour.prompt_tokens, estimate_tokens(prompt_text)),
                completion_tokens=_or(
                    behaviour.completion_tokens,
                    estimate_tokens("".join(behaviour.chunks) + calls_text(calls)),
                ),
                finish_reason=finish_with(behaviour.finish_reason, calls),
                usage=behaviour.usage,
                delay=behaviour.delay,
                fail_after=behaviour.fail_after,
                latency=behaviour.latency,
                tool_calls=calls,
                fragment=behaviour.fragment,
            )
            return _render_generation(gen, wire, model, stream, include_usage, sse, response_id)
        case RateLimit():
            return _rate_limit(behaviour, wire, model)
        case ServerError():
            rendered = _error(behaviour.status, wire, "The server had an error.", "server_error")
            return _with(rendered, behaviour.latency, _retry_after(behaviour.retry_after))
        case InvalidKey():
            return _with(_invalid_key(wire), behaviour.latency, {})
        case Status():
            return _status(behaviour)
        case Timeout():
            return Rendered(status=0, hang=True)
        case Garbage():
            if stream:
                return Rendered(
                    status=200,
                    headers={"content-type": _SSE},
                    pieces=((0.0, b"data: " + behaviour.body + b"\n\n"),),
                    latency=behaviour.latency,
                )
            return Rendered(
                status=200,
                headers={"content-type": "text/html; charset=utf-8"},
                body=behaviour.body,
                latency=behaviour.latency,
            )
        case Blocked():
            return _blocked(wire, model, stream, sse, prompt_text, response_id, behaviour.latency)
    raise TypeError(f"not a fake-provider behaviour: {behaviour!r}")


def _calls(calls: Sequence[object]) -> tuple[ToolCall, ...]:
    # Reply and Stream hold ToolCalls only once built (their __post_init__ converts).
    return tuple(call for call in calls if isinstance(call, ToolCall))


def _or(value: int | None, fallback: int) -> int:
    return fallback if value is None else value


def _dumps(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _gemini_finish(reason: str) -> str:
    return {
        "stop": "STOP",
        "tool_calls": "STOP",
        "length": "MAX_TOKENS",
        "content_filter": "SAFETY",
    }.get(reason, reason.upper())


def _render_generation(
    gen: _Generation,
    wire: Wire,
    model: str,
    stream: bool,
    include_usage: bool,
    sse: bool,
    response_id: str,
) -> Rendered:
    if stream and sse:
        events = (
            _openai_events(gen, model, include_usage, response_id)
            if wire == "openai"
            else _gemini_events(gen, model, response_id)
        )
        return Rendered(
            status=200,
            headers={"content-type": _SSE, "cache-control": "no-cache"},
            pieces=tuple((delay, b"data: " + data + b"\n\n") for delay, data in events),
            break_after=gen.fail_after is not None,
            latency=gen.latency,
        )
    if stream:
        # Gemini's streamGenerateContent without alt=sse: one JSON array of the chunks
        objects = [json.loads(data) for _, data in _gemini_events(gen, model, response_id)]
        body = _dumps(objects)
        content_type = _GEMINI_JSON
    elif wire == "openai":
        body = _dumps(_openai_completion(gen, model, response_id))
        content_type = _JSON
    else:
        body = _dumps(_gemini_completion(gen, model, response_id))
        content_type = _GEMINI_JSON
    latency = gen.latency + gen.delay * max(0, len(gen.chunks) - 1)
    if gen.fail_after is None:
        return Rendered(
            status=200, headers={"content-type": content_type}, body=body, latency=latency
        )
    # a cut body: the announced length never arrives, so the client sees a broken connection
    return Rendered(
        status=200,
        headers={"content-type": content_type, "content-length": str(len(body))},
        pieces=((0.0, body[: len(body) // 2]),),
        break_after=True,
        latency=latency,
    )


def _openai_usage(gen: _Generation) -> dict[str, int]:
    return {
        "prompt_tokens": gen.prompt_tokens,
        "completion_tokens": gen.completion_tokens,
        "total_tokens": gen.prompt_tokens + gen.completion_tokens,
    }


def _openai_completion(gen: _Generation, model: str, response_id: str) -> dict[str, object]:
    answer: dict[str, object] = {
        "id": f"chatcmpl-{response_id}",
        "object": "chat.completion",
        "created": _CREATED,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": _openai_message(gen),
                "logprobs": None,
                "finish_reason": gen.finish_reason,
            }
        ],
    }
    if gen.usage:
        answer["usage"] = _openai_usage(gen)
    answer["system_fingerprint"] = "fp_fake"
    answer["x_groq"] = {"id": f"req_{response_id}"}
    return answer


def _openai_message(gen: _Generation) -> dict[str, object]:
    text = "".join(gen.chunks)
    if not gen.tool_calls:
        return {"role": "assistant", "content": text}
    return {
        "role": "assistant",
        "content": text or None,
        "tool_calls": openai_calls(gen.tool_calls),
    }


def _openai_events(
    gen: _Generation, model: str, include_usage: bool, response_id: str
) -> list[tuple[float, bytes]]:
    """docs/providers.md 9.1: a role chunk, the content chunks, a finish chunk, `[DONE]`."""
    request_id = f"req_{response_id}"

    def chunk(delta: dict[str, object], finish: str | None, **more: object) -> bytes:
        event: dict[str, object] = {
            "id": f"chatcmpl-{response_id}",
            "object": "chat.completion.chunk",
            "created": _CREATED,
            "model": model,
            "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if include_usage:
            event["usage"] = None
        event.update(more)
        return _dumps(event)

    events = [(0.0, chunk({"role": "assistant", "content": ""}, None, x_groq={"id": request_id}))]
    sent = _sent_chunks(gen)
    for index, text in enumerate(sent):
        events.append((gen.delay if index else 0.0, chunk({"content": text}, None)))
    if gen.fail_after is not None:
        return events
    for fragments in call_fragments(gen.tool_calls, gen.fragment):
        events.append((gen.delay, chunk({"tool_calls": fragments}, None)))
    x_groq: dict[str, object] = {"id": request_id}
    if gen.usage:
        x_groq["usage"] = _openai_usage(gen)
    events.append((0.0, chunk({}, gen.finish_reason, x_groq=x_groq)))
    if include_usage and gen.usage:
        usage_chunk: dict[str, object] = {
            "id": f"chatcmpl-{response_id}",
            "object": "chat.completion.chunk",
            "created": _CREATED,
            "model": model,
            "system_fingerprint": "fp_fake",
            "choices": [],
            "usage": _openai_usage(gen),
        }
        events.append((0.0, _dumps(usage_chunk)))
    events.append((0.0, b"[DONE]"))
    return events


def _sent_chunks(gen: _Generation) -> tuple[str, ...]:
    return gen.chunks if gen.fail_after is None else gen.chunks[: gen.fail_after]


def _gemini_usage(prompt_tokens: int, candidates_tokens: int) -> dict[str, int]:
    return {
        "promptTokenCount": prompt_tokens,
        "candidatesTokenCount": candidates_tokens,
        "totalTokenCount": prompt_tokens + candidates_tokens,
    }


def _gemini_candidate(
    text: str, finish: str | None, calls: tuple[ToolCall, ...] = ()
) -> dict[str, object]:
    parts: list[dict[str, object]] = [{"text": text}] if text or not calls else []
    parts += [gemini_call_part(call) for call in calls]
    candidate: dict[str, object] = {"content": {"role": "model", "parts": parts}}
    if finish is not None:
        candidate["finishReason"] = _gemini_finish(finish)
    candidate["index"] = 0
    return candidate


def _gemini_completion(gen: _Generation, model: str, response_id: str) -> dict[str, object]:
    answer: dict[str, object] = {
        "candidates": [_gemini_candidate("".join(gen.chunks), gen.finish_reason, gen.tool_calls)]
    }
    if gen.usage:
        answer["usageMetadata"] = _gemini_usage(gen.prompt_tokens, gen.completion_tokens)
    answer["modelVersion"] = model
    answer["responseId"] = response_id
    return answer


def _gemini_events(gen: _Generation, model: str, response_id: str) -> list[tuple[float, bytes]]:
    """docs/providers.md 9.4: one event per text chunk, then one per tool call (Gemini
    sends calls whole), running usage, finishReason on the last."""
    items: list[tuple[str, tuple[ToolCall, ...]]] = [
        (text, ()) for text in gen.chunks if text or not gen.tool_calls
    ]
    if gen.fail_after is not None:
        items = items[: gen.fail_after]
    else:
        items += [("", (call,)) for call in gen.tool_calls]
    if not items and gen.fail_after is None:
        items = [("", ())]
    events: list[tuple[float, bytes]] = []
    so_far = ""
    for index, (text, calls) in enumerate(items):
        so_far += text
        last = index == len(items) - 1 and gen.fail_after is None
        event: dict[str, object] = {
            "candidates": [_gemini_candidate(text, gen.finish_reason if last else None, calls)]
        }
        if gen.usage:
            running = (
                gen.completion_tokens
                if last
                else min(gen.completion_tokens, estimate_tokens(so_far))
            )
            event["usageMetadata"] = _gemini_usage(gen.prompt_tokens, running)
        event["modelVersion"] = model
        event["responseId"] = response_id
        events.append((gen.delay if index else 0.0, _dumps(event)))
    return events


def _error(status: int, wire: Wire, message: str, code: str) -> Rendered:
    if wire == "openai":
        kind = "server_error" if status >= 500 else "invalid_request_error"
        body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
        return Rendered(status=status, headers={"content-type": _JSON}, body=_dumps(body))
    google = {
        400: "INVALID_ARGUMENT",
        403: "PERMISSION_DENIED",
        404: "NOT_FOUND",
        405: "INVALID_ARGUMENT",
        429: "RESOURCE_EXHAUSTED",
        500: "INTERNAL",
        503: "UNAVAILABLE",
        504: "DEADLINE_EXCEEDED",
    }.get(status, "INTERNAL" if status >= 500 else "UNKNOWN")
    envelope = {"error": {"code": status, "message": message, "status": google}}
    return Rendered(status=status, headers={"content-type": _GEMINI_JSON}, body=_dumps(envelope))


def _with(rendered: Rendered, latency: float, headers: Mapping[str, str]) -> Rendered:
    return Rendered(
        status=rendered.status,
        headers={**rendered.headers, **headers},
        body=rendered.body,
        latency=latency,
    )


def _retry_after(value: float | str | None) -> dict[str, str]:
    if value is None:
        return {}
    return {"retry-after": value if isinstance(value, str) else f"{value:g}"}


def _rate_limit(behaviour: RateLimit, wire: Wire, model: str) -> Rendered:
    headers = _retry_after(behaviour.retry_after)
    if wire == "openai":
        window, short, limit = (
            ("requests per day", "RPD", 14400)
            if behaviour.per_day
            else ("requests per minute", "RPM", 30)
        )
        message = (
            f"Rate limit reached for model `{model}` in organization `org_fake` service tier "
            f"on_demand on {window} ({short}): Limit {limit}, Used {limit}, Requested 1."
        )
        if behaviour.retry_delay is not None:
            message += f" Please try again in {behaviour.retry_delay:g}s."
        body: dict[str, object] = {
            "error": {"message": message, "type": "requests", "code": "rate_limit_exceeded"}
        }
        return Rendered(
            status=429,
            headers={"content-type": _JSON, **headers},
            body=_dumps(body),
            latency=behaviour.latency,
        )
    period, value = ("Day", "250") if behaviour.per_day else ("Minute", "10")
    details: list[object] = [
        {
            "@type": "type.googleapis.com/google.rpc.QuotaFailure",
            "violations": [
                {
                    "quotaMetric": (
                        "generativelanguage.googleapis.com/generate_content_free_tier_requests"
                    ),
                    "quotaId": f"GenerateRequestsPer{period}PerProjectPerModel-FreeTier",
                    "quotaDimensions": {"location": "global", "model": model},
                    "quotaValue": value,
                }
            ],
        },
        {
            "@type": "type.googleapis.com/google.rpc.Help",
            "links": [
                {
                    "description": "Learn more about Gemini API quotas",
                    "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
                }
            ],
        },
    ]
    if behaviour.retry_delay is not None:
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.RetryInfo",
                "retryDelay": f"{behaviour.retry_delay:g}s",
            }
        )
    body = {
        "error": {
            "code": 429,
            "message": (
                "You exceeded your current quota, please check your plan and billing details. "
                "For more information on this error, head to: "
                "https://ai.google.dev/gemini-api/docs/rate-limits."
            ),
            "status": "RESOURCE_EXHAUSTED",
            "details": details,
        }
    }
    return Rendered(
        status=429,
        headers={"content-type": _GEMINI_JSON, **headers},
        body=_dumps(body),
        latency=behaviour.latency,
    )


def _invalid_key(wire: Wire) -> Rendered:
    if wire == "openai":
        body: dict[str, object] = {
            "error": {
                "message": "Invalid API Key",
                "type": "invalid_request_error",
                "code": "invalid_api_key",
            }
        }
        return Rendered(status=401, headers={"content-type": _JSON}, body=_dumps(body))
    body = {
        "error": {
            "code": 400,
            "message": "API key not valid. Please pass a valid API key.",
            "status": "INVALID_ARGUMENT",
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com",
                }
            ],
        }
    }
    return Rendered(status=400, headers={"content-type": _GEMINI_JSON}, body=_dumps(body))


def _status(behaviour: Status) -> Rendered:
    headers = {name.lower(): value for name, value in behaviour.headers.items()}
    raw = behaviour.body
    if isinstance(raw, bytes):
        body = raw
    elif isinstance(raw, str):
        body = raw.encode()
        headers.setdefault("content-type", "text/plain; charset=utf-8")
    else:
        body = _dumps(raw)
        headers.setdefault("content-type", _JSON)
    return Rendered(status=behaviour.status, headers=headers, body=body, latency=behaviour.latency)


def _blocked(
    wire: Wire,
    model: str,
    stream: bool,
    sse: bool,
    prompt_text: str,
    response_id: str,
    latency: float,
) -> Rendered:
    if wire == "openai":
        rendered = _error(
            400,
            wire,
            "Your request was rejected as a result of our safety system.",
            "content_policy_violation",
        )
        return _with(rendered, latency, {})
    prompt_tokens = estimate_tokens(prompt_text)
    answer = {
        "promptFeedback": {
            "blockReason": "SAFETY",
            "safetyRatings": [
                {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH"}
            ],
        },
        "usageMetadata": {"promptTokenCount": prompt_tokens, "totalTokenCount": prompt_tokens},
        "modelVersion": model,
        "responseId": response_id,
    }
    if stream and sse:
        return Rendered(
            status=200,
            headers={"content-type": _SSE, "cache-control": "no-cache"},
            pieces=((0.0, b"data: " + _dumps(answer) + b"\n\n"),),
            latency=latency,
        )
    body = _dumps([answer] if stream else answer)
    return Rendered(status=200, headers={"content-type": _GEMINI_JSON}, body=body, latency=latency)
