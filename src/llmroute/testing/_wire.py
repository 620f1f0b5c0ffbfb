"""The fakes' wire format: how a behaviour is answered on the wire, and nothing else.

`render` turns one behaviour into a `Rendered` answer in the real wire format of the
OpenAI-compatible providers (Groq, Together, OpenRouter) or of Gemini, following the fixtures
of docs/providers.md section 9: bodies, SSE events, error envelopes, headers. This is the one
place the fakes' wire format lives (each wire's bodies in `_wire_openai` and `_wire_gemini`);
`FakeScript` picks the behaviour and both fakes (`FakeTransport`, `FakeProviderServer`) only
move the bytes. Nothing in this module does I/O or reads a clock.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from llmroute.testing._rendered import GEMINI_JSON, JSON, SSE, Generation, Rendered, dumps
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
from llmroute.testing._wire_gemini import (
    gemini_blocked,
    gemini_completion,
    gemini_error,
    gemini_events,
    gemini_invalid_key,
    gemini_rate_limit,
)
from llmroute.testing._wire_openai import (
    openai_completion,
    openai_error,
    openai_events,
    openai_invalid_key,
    openai_rate_limit,
)
from llmroute.testing._wire_tools import calls_text, finish_with
from llmroute.trace import ToolCall

__all__ = ["Rendered", "render"]


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
            gen = Generation(
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
            gen = Generation(
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
                    headers={"content-type": SSE},
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


def _render_generation(
    gen: Generation,
    wire: Wire,
    model: str,
    stream: bool,
    include_usage: bool,
    sse: bool,
    response_id: str,
) -> Rendered:
    if stream and sse:
        events = (
            openai_events(gen, model, include_usage, response_id)
            if wire == "openai"
            else gemini_events(gen, model, response_id)
        )
        return Rendered(
            status=200,
            headers={"content-type": SSE, "cache-control": "no-cache"},
            pieces=tuple((delay, b"data: " + data + b"\n\n") for delay, data in events),
            break_after=gen.fail_after is not None,
            latency=gen.latency,
        )
    if stream:
        # Gemini's streamGenerateContent without alt=sse: one JSON array of the chunks
        objects = [json.loads(data) for _, data in gemini_events(gen, model, response_id)]
        body = dumps(objects)
        content_type = GEMINI_JSON
    elif wire == "openai":
        body = dumps(openai_completion(gen, model, response_id))
        content_type = JSON
    else:
        body = dumps(gemini_completion(gen, model, response_id))
        content_type = GEMINI_JSON
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


def _error(status: int, wire: Wire, message: str, code: str) -> Rendered:
    if wire == "openai":
        return openai_error(status, message, code)
    return gemini_error(status, message)


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
        return openai_rate_limit(behaviour, model, headers)
    return gemini_rate_limit(behaviour, model, headers)


def _invalid_key(wire: Wire) -> Rendered:
    return openai_invalid_key() if wire == "openai" else gemini_invalid_key()


def _status(behaviour: Status) -> Rendered:
    headers = {name.lower(): value for name, value in behaviour.headers.items()}
    raw = behaviour.body
    if isinstance(raw, bytes):
        body = raw
    elif isinstance(raw, str):
        body = raw.encode()
        headers.setdefault("content-type", "text/plain; charset=utf-8")
    else:
        body = dumps(raw)
        headers.setdefault("content-type", JSON)
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
        rendered = openai_error(
            400,
            "Your request was rejected as a result of our safety system.",
            "content_policy_violation",
        )
        return _with(rendered, latency, {})
    return gemini_blocked(model, stream, sse, prompt_text, response_id, latency)
