"""The Gemini wire of the fakes: generateContent answers, SSE events, the JSON array sent
without `alt=sse`, and Google's error envelopes (docs/providers.md section 9)."""

from __future__ import annotations

from collections.abc import Mapping

from llmroute.testing._rendered import GEMINI_JSON, SSE, Generation, Rendered, dumps
from llmroute.testing._script import RateLimit, estimate_tokens
from llmroute.testing._wire_tools import gemini_call_part
from llmroute.trace import ToolCall

__all__ = [
    "gemini_blocked",
    "gemini_completion",
    "gemini_error",
    "gemini_events",
    "gemini_invalid_key",
    "gemini_rate_limit",
]


def gemini_finish(reason: str) -> str:
    return {
        "stop": "STOP",
        "tool_calls": "STOP",
        "length": "MAX_TOKENS",
        "content_filter": "SAFETY",
    }.get(reason, reason.upper())


def gemini_usage(prompt_tokens: int, candidates_tokens: int) -> dict[str, int]:
    return {
        "promptTokenCount": prompt_tokens,
        "candidatesTokenCount": candidates_tokens,
        "totalTokenCount": prompt_tokens + candidates_tokens,
    }


def gemini_candidate(
    text: str, finish: str | None, calls: tuple[ToolCall, ...] = ()
) -> dict[str, object]:
    parts: list[dict[str, object]] = [{"text": text}] if text or not calls else []
    parts += [gemini_call_part(call) for call in calls]
    candidate: dict[str, object] = {"content": {"role": "model", "parts": parts}}
    if finish is not None:
        candidate["finishReason"] = gemini_finish(finish)
    candidate["index"] = 0
    return candidate


def gemini_completion(gen: Generation, model: str, response_id: str) -> dict[str, object]:
    answer: dict[str, object] = {
        "candidates": [gemini_candidate("".join(gen.chunks), gen.finish_reason, gen.tool_calls)]
    }
    if gen.usage:
        answer["usageMetadata"] = gemini_usage(gen.prompt_tokens, gen.completion_tokens)
    answer["modelVersion"] = model
    answer["responseId"] = response_id
    return answer


def gemini_events(gen: Generation, model: str, response_id: str) -> list[tuple[float, bytes]]:
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
            "candidates": [gemini_candidate(text, gen.finish_reason if last else None, calls)]
        }
        if gen.usage:
            running = (
                gen.completion_tokens
                if last
                else min(gen.completion_tokens, estimate_tokens(so_far))
            )
            event["usageMetadata"] = gemini_usage(gen.prompt_tokens, running)
        event["modelVersion"] = model
        event["responseId"] = response_id
        events.append((gen.delay if index else 0.0, dumps(event)))
    return events


def gemini_error(status: int, message: str) -> Rendered:
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
    return Rendered(status=status, headers={"content-type": GEMINI_JSON}, body=dumps(envelope))


def gemini_rate_limit(behaviour: RateLimit, model: str, headers: Mapping[str, str]) -> Rendered:
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
        headers={"content-type": GEMINI_JSON, **headers},
        body=dumps(body),
        latency=behaviour.latency,
    )


def gemini_invalid_key() -> Rendered:
    body: dict[str, object] = {
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
    return Rendered(status=400, headers={"content-type": GEMINI_JSON}, body=dumps(body))


def gemini_blocked(
    model: str, stream: bool, sse: bool, prompt_text: str, response_id: str, latency: float
) -> Rendered:
    """A prompt refused by Gemini's safety filter: a 200 with `promptFeedback`, no candidate."""
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
            headers={"content-type": SSE, "cache-control": "no-cache"},
            pieces=((0.0, b"data: " + dumps(answer) + b"\n\n"),),
            latency=latency,
        )
    body = dumps([answer] if stream else answer)
    return Rendered(status=200, headers={"content-type": GEMINI_JSON}, body=body, latency=latency)
