"""The OpenAI-compatible wire of the fakes (Groq, Together, OpenRouter): completions, SSE
chunks and error envelopes, following the fixtures of docs/providers.md section 9."""

from __future__ import annotations

from collections.abc import Mapping

from llmroute.testing._rendered import CREATED, JSON, Generation, Rendered, dumps, sent_chunks
from llmroute.testing._script import RateLimit
from llmroute.testing._wire_tools import call_fragments, openai_calls

__all__ = [
    "openai_completion",
    "openai_error",
    "openai_events",
    "openai_invalid_key",
    "openai_rate_limit",
]


def openai_usage(gen: Generation) -> dict[str, int]:
    return {
        "prompt_tokens": gen.prompt_tokens,
        "completion_tokens": gen.completion_tokens,
        "total_tokens": gen.prompt_tokens + gen.completion_tokens,
    }


def openai_completion(gen: Generation, model: str, response_id: str) -> dict[str, object]:
    answer: dict[str, object] = {
        "id": f"chatcmpl-{response_id}",
        "object": "chat.completion",
        "created": CREATED,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": openai_message(gen),
                "logprobs": None,
                "finish_reason": gen.finish_reason,
            }
        ],
    }
    if gen.usage:
        answer["usage"] = openai_usage(gen)
    answer["system_fingerprint"] = "fp_fake"
    answer["x_groq"] = {"id": f"req_{response_id}"}
    return answer


def openai_message(gen: Generation) -> dict[str, object]:
    text = "".join(gen.chunks)
    if not gen.tool_calls:
        return {"role": "assistant", "content": text}
    return {
        "role": "assistant",
        "content": text or None,
        "tool_calls": openai_calls(gen.tool_calls),
    }


def openai_events(
    gen: Generation, model: str, include_usage: bool, response_id: str
) -> list[tuple[float, bytes]]:
    """docs/providers.md 9.1: a role chunk, the content chunks, a finish chunk, `[DONE]`."""
    request_id = f"req_{response_id}"

    def chunk(delta: dict[str, object], finish: str | None, **more: object) -> bytes:
        event: dict[str, object] = {
            "id": f"chatcmpl-{response_id}",
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": model,
            "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if include_usage:
            event["usage"] = None
        event.update(more)
        return dumps(event)

    events = [(0.0, chunk({"role": "assistant", "content": ""}, None, x_groq={"id": request_id}))]
    sent = sent_chunks(gen)
    for index, text in enumerate(sent):
        events.append((gen.delay if index else 0.0, chunk({"content": text}, None)))
    if gen.fail_after is not None:
        return events
    for fragments in call_fragments(gen.tool_calls, gen.fragment):
        events.append((gen.delay, chunk({"tool_calls": fragments}, None)))
    x_groq: dict[str, object] = {"id": request_id}
    if gen.usage:
        x_groq["usage"] = openai_usage(gen)
    events.append((0.0, chunk({}, gen.finish_reason, x_groq=x_groq)))
    if include_usage and gen.usage:
        usage_chunk: dict[str, object] = {
            "id": f"chatcmpl-{response_id}",
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": model,
            "system_fingerprint": "fp_fake",
            "choices": [],
            "usage": openai_usage(gen),
        }
        events.append((0.0, dumps(usage_chunk)))
    events.append((0.0, b"[DONE]"))
    return events


def openai_error(status: int, message: str, code: str) -> Rendered:
    kind = "server_error" if status >= 500 else "invalid_request_error"
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return Rendered(status=status, headers={"content-type": JSON}, body=dumps(body))


def openai_rate_limit(behaviour: RateLimit, model: str, headers: Mapping[str, str]) -> Rendered:
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
        headers={"content-type": JSON, **headers},
        body=dumps(body),
        latency=behaviour.latency,
    )


def openai_invalid_key() -> Rendered:
    body: dict[str, object] = {
        "error": {
            "message": "Invalid API Key",
            "type": "invalid_request_error",
            "code": "invalid_api_key",
        }
    }
    return Rendered(status=401, headers={"content-type": JSON}, body=dumps(body))
