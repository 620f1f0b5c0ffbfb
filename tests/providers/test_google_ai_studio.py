from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
import pytest

from llmroute.config._schema import ProviderConfig, Secret
from llmroute.providers import _gemini_errors as gemini_errors
from llmroute.providers.base import AttemptFailed, ProviderRequest, StreamEvent
from llmroute.providers.google_ai_studio import (
    GoogleAIStudioProvider,
    build_body,
    next_pacific_midnight,
)
from llmroute.trace import Usage

KEY = "fake-gemini-secret-key-0123456789abcdef"
BASE = "https://gemini.test/v1beta"
MODEL = "gemini-2.5-flash"
PACIFIC = ZoneInfo("America/Los_Angeles")

SUCCESS = {
    "candidates": [
        {
            "content": {"role": "model", "parts": [{"text": "Paris."}]},
            "finishReason": "STOP",
            "index": 0,
        }
    ],
    "usageMetadata": {
        "promptTokenCount": 9,
        "candidatesTokenCount": 2,
        "thoughtsTokenCount": 20,
        "totalTokenCount": 31,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 9}],
    },
    "modelVersion": "gemini-2.5-flash",
    "responseId": "fixtureResp0001",
}

BLOCKED = {
    "promptFeedback": {
        "blockReason": "SAFETY",
        "safetyRatings": [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH"}],
    },
    "usageMetadata": {"promptTokenCount": 14, "totalTokenCount": 14},
    "modelVersion": "gemini-2.5-flash",
    "responseId": "fixtureResp0002",
}


def quota_429(quota_id: str, *, retry_delay: str | None = "37s") -> dict[str, object]:
    details: list[object] = [
        {
            "@type": "type.googleapis.com/google.rpc.QuotaFailure",
            "violations": [
                {
                    "quotaMetric": "generativelanguage.googleapis.com/"
                    "generate_content_free_tier_requests",
                    "quotaId": quota_id,
                    "quotaDimensions": {"location": "global", "model": MODEL},
                    "quotaValue": "10",
                }
            ],
        },
        {
            "@type": "type.googleapis.com/google.rpc.Help",
            "links": [{"description": "quotas", "url": "https://ai.google.dev/rate-limits"}],
        },
    ]
    if retry_delay is not None:
        details.append(
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry_delay}
        )
    return {
        "error": {
            "code": 429,
            "message": "You exceeded your current quota, please check your plan.",
            "status": "RESOURCE_EXHAUSTED",
            "details": details,
        }
    }


INVALID_KEY = {
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


class FixedClock:
    def __init__(self, wall: float = 1_700_000_000.0) -> None:
        self.wall = wall

    def now(self) -> float:
        return 0.0

    def time(self) -> float:
        return self.wall

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(0)


Handler = Callable[[httpx.Request], Awaitable[httpx.Response] | httpx.Response]


class Harness:
    """A provider wired to a MockTransport; records every request it sends."""

    def __init__(self, clock: FixedClock | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self.responder: Callable[[httpx.Request], httpx.Response] = lambda r: httpx.Response(
            200, json=SUCCESS
        )
        self.client = httpx.AsyncClient(transport=httpx.MockTransport(self._handle))
        self.clock = clock or FixedClock()
        config = ProviderConfig(
            name="google_ai_studio",
            type="google_ai_studio",
            base_url=BASE,
            keys=(Secret(KEY),),
            headers={"x-app": "tests"},
        )
        self.provider = GoogleAIStudioProvider(
            config, get_client=lambda: self.client, clock=self.clock
        )

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        assert request.headers["x-goog-api-key"] == KEY
        assert "key=" not in str(request.url)
        assert KEY not in str(request.url)
        assert request.headers["x-app"] == "tests"
        assert request.method == "POST"
        return self.responder(request)

    def reply(self, status: int, body: object = None, **kwargs: object) -> None:
        def responder(request: httpx.Request) -> httpx.Response:
            if isinstance(body, bytes):
                return httpx.Response(status, content=body, **kwargs)  # type: ignore[arg-type]
            return httpx.Response(status, json=body, **kwargs)  # type: ignore[arg-type]

        self.responder = responder

    async def fail(self, request: ProviderRequest | None = None) -> AttemptFailed:
        with pytest.raises(AttemptFailed) as info:
            await self.provider.complete(request or simple_request(), KEY)
        return info.value


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    h = Harness()
    yield h
    await h.client.aclose()


def simple_request(**kwargs: object) -> ProviderRequest:
    fields: dict[str, object] = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Capital of France?"}],
    }
    fields.update(kwargs)
    return ProviderRequest(**fields)  # type: ignore[arg-type]


def sse(*events: object) -> bytes:
    return b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)


def chunk(
    text: str, *, finish: str | None = None, usage: dict[str, int] | None = None
) -> dict[str, object]:
    candidate: dict[str, object] = {"content": {"role": "model", "parts": [{"text": text}]}}
    if finish is not None:
        candidate["finishReason"] = finish
    event: dict[str, object] = {"candidates": [candidate], "modelVersion": MODEL}
    if usage is not None:
        event["usageMetadata"] = usage
    return event


# Request mapping


async def test_request_path_header_and_body(harness: Harness) -> None:
    request = simple_request(
        messages=[
            {"role": "system", "content": "Answer in one word."},
            {"role": "user", "content": "Capital of France?"},
            {"role": "assistant", "content": "Paris."},
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": "And of Italy?"},
            {"role": "user", "content": "And Spain?"},
        ],
        max_tokens=64,
        temperature=0.2,
        top_p=0.9,
        stop=["\n\n", "a", "b", "c", "d", "e"],
        timeout=12.5,
        extra={"safetySettings": [{"category": "HARM_CATEGORY_HATE_SPEECH", "threshold": "X"}]},
    )
    await harness.provider.complete(request, KEY)
    sent = harness.requests[0]
    assert sent.url.path == f"/v1beta/models/{MODEL}:generateContent"
    assert sent.url.query == b""
    assert sent.extensions["timeout"]["read"] == 12.5
    assert json.loads(sent.content) == {
        "systemInstruction": {"parts": [{"text": "Answer in one word.\n\nBe terse."}]},
        "contents": [
            {"role": "user", "parts": [{"text": "Capital of France?"}]},
            {"role": "model", "parts": [{"text": "Paris."}]},
            {"role": "user", "parts": [{"text": "And of Italy?"}, {"text": "And Spain?"}]},
        ],
        "generationConfig": {
            "maxOutputTokens": 64,
            "temperature": 0.2,
            "topP": 0.9,
            "stopSequences": ["\n\n", "a", "b", "c", "d"],
        },
        "safetySettings": [{"category": "HARM_CATEGORY_HATE_SPEECH", "threshold": "X"}],
    }


def test_body_without_options_has_no_generation_config() -> None:
    body = build_body(simple_request())
    assert body == {"contents": [{"role": "user", "parts": [{"text": "Capital of France?"}]}]}


def test_body_extra_merges_generation_config_and_single_stop_string() -> None:
    body = build_body(
        simple_request(
            max_tokens=10,
            stop="END",
            extra={"generationConfig": {"thinkingConfig": {"thinkingBudget": 0}}},
        )
    )
    assert body["generationConfig"] == {
        "maxOutputTokens": 10,
        "stopSequences": ["END"],
        "thinkingConfig": {"thinkingBudget": 0},
    }


async def test_urls_are_built_once_per_model(harness: Harness) -> None:
    await harness.provider.complete(simple_request(), KEY)
    await harness.provider.complete(simple_request(model="models/gemini-2.0-flash"), KEY)
    await harness.provider.complete(simple_request(), KEY)
    paths = [r.url.path for r in harness.requests]
    assert paths == [
        f"/v1beta/models/{MODEL}:generateContent",
        "/v1beta/models/gemini-2.0-flash:generateContent",
        f"/v1beta/models/{MODEL}:generateContent",
    ]


async def test_missing_key_is_a_programming_error(harness: Harness) -> None:
    with pytest.raises(ValueError):
        await harness.provider.complete(simple_request(), None)


# Successful answers


async def test_success_fixture(harness: Harness) -> None:
    response = await harness.provider.complete(simple_request(), KEY)
    assert response.text == "Paris."
    assert response.finish_reason == "stop"
    assert response.usage == Usage(prompt_tokens=9, completion_tokens=22, total_tokens=31)
    assert response.served_model == "gemini-2.5-flash"
    assert response.raw == SUCCESS
    assert harness.provider.name == "google_ai_studio"
    assert harness.provider.unavailable_reason is None


async def test_thought_parts_are_skipped_and_total_summed_when_absent(harness: Harness) -> None:
    body = {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [
                        {"text": "Let me think...", "thought": True},
                        {"text": "Rome"},
                        {"text": "."},
                    ],
                },
                "finishReason": "MAX_TOKENS",
            }
        ],
        "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 2},
    }
    harness.reply(200, body)
    response = await harness.provider.complete(simple_request(), KEY)
    assert response.text == "Rome."
    assert response.finish_reason == "length"
    assert response.usage == Usage(prompt_tokens=5, completion_tokens=2, total_tokens=7)
    assert response.served_model is None


@pytest.mark.parametrize(
    ("raw", "mapped"),
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("IMAGE_SAFETY", "content_filter"),
        ("IMAGE_OTHER", "content_filter"),
        ("LANGUAGE", "content_filter"),
    ],
)
async def test_finish_reason_mapping(harness: Harness, raw: str, mapped: str) -> None:
    harness.reply(
        200, {"candidates": [{"content": {"parts": [{"text": "x"}]}, "finishReason": raw}]}
    )
    response = await harness.provider.complete(simple_request(), KEY)
    assert response.finish_reason == mapped
    assert response.usage is None


@pytest.mark.parametrize(
    ("raw", "kind", "retryable"),
    [
        # the model wrote a broken or unwanted call: another try may do better
        ("MALFORMED_FUNCTION_CALL", "server_error", True),
        ("UNEXPECTED_TOOL_CALL", "server_error", True),
        ("TOO_MANY_TOOL_CALLS", "server_error", True),
        # the request itself is at fault (or the reason is unknown): no retry
        ("MISSING_THOUGHT_SIGNATURE", "client_error", False),
        ("OTHER", "client_error", False),
        ("FINISH_REASON_UNSPECIFIED", "client_error", False),
        ("SOMETHING_NEW", "client_error", False),
    ],
)
async def test_finish_reasons_that_are_failed_attempts(
    harness: Harness, raw: str, kind: str, retryable: bool
) -> None:
    harness.reply(
        200, {"candidates": [{"content": {"parts": [{"text": "x"}]}, "finishReason": raw}]}
    )
    with pytest.raises(AttemptFailed) as info:
        await harness.provider.complete(simple_request(), KEY)
    assert (info.value.kind, info.value.retryable) == (kind, retryable)
    assert raw in info.value.message


# Failures


async def test_blocked_prompt(harness: Harness) -> None:
    harness.reply(200, BLOCKED)
    failure = await harness.fail()
    assert failure.kind == "client_error"
    assert failure.retryable is False
    assert failure.key_invalid is False
    assert "blocked" in failure.message
    assert "SAFETY" in failure.message


async def test_safety_finish_without_text(harness: Harness) -> None:
    harness.reply(
        200,
        {
            "candidates": [{"finishReason": "SAFETY", "index": 0}],
            "usageMetadata": {"promptTokenCount": 4, "totalTokenCount": 4},
        },
    )
    failure = await harness.fail()
    assert failure.kind == "client_error"
    assert failure.retryable is False
    assert failure.key_invalid is False
    assert "blocked" in failure.message
    assert "SAFETY" in failure.message


async def test_safety_finish_with_partial_text_is_an_answer(harness: Harness) -> None:
    harness.reply(
        200,
        {"candidates": [{"content": {"parts": [{"text": "Partial"}]}, "finishReason": "SAFETY"}]},
    )
    response = await harness.provider.complete(simple_request(), KEY)
    assert (response.text, response.finish_reason) == ("Partial", "content_filter")


async def test_429_with_retry_info(harness: Harness) -> None:
    harness.reply(429, quota_429("GenerateRequestsPerMinutePerProjectPerModel-FreeTier"))
    failure = await harness.fail()
    assert failure.kind == "rate_limited_remote"
    assert failure.status == 429
    assert failure.retry_after == 37.0
    assert failure.quota_reset_at is None
    assert failure.key_invalid is False
    assert "PerMinute" in failure.message


async def test_429_fractional_retry_delay_beats_header(harness: Harness) -> None:
    harness.reply(
        429,
        quota_429("GenerateRequestsPerMinutePerProjectPerModel-FreeTier", retry_delay="0.5s"),
        headers={"retry-after": "30"},
    )
    assert (await harness.fail()).retry_after == 0.5


async def test_429_with_retry_after_header_only(harness: Harness) -> None:
    harness.reply(
        429,
        {"error": {"code": 429, "message": "slow down", "status": "RESOURCE_EXHAUSTED"}},
        headers={"Retry-After": "12"},
    )
    failure = await harness.fail()
    assert failure.kind == "rate_limited_remote"
    assert failure.retry_after == 12.0


async def test_429_without_any_hint(harness: Harness) -> None:
    harness.reply(429, {"error": {"code": 429, "message": "slow down"}})
    failure = await harness.fail()
    assert (failure.kind, failure.retry_after, failure.quota_reset_at) == (
        "rate_limited_remote",
        None,
        None,
    )


@pytest.mark.parametrize(
    ("now_local", "reset_local"),
    [
        # winter (PST, UTC-8)
        (datetime(2026, 1, 15, 13, 30, tzinfo=PACIFIC), datetime(2026, 1, 16, tzinfo=PACIFIC)),
        # summer (PDT, UTC-7)
        (datetime(2026, 7, 4, 23, 59, 59, tzinfo=PACIFIC), datetime(2026, 7, 5, tzinfo=PACIFIC)),
        # exactly midnight: the next one, not this one
        (datetime(2026, 7, 4, 0, 0, tzinfo=PACIFIC), datetime(2026, 7, 5, tzinfo=PACIFIC)),
        # the day DST starts has 23 hours
        (datetime(2026, 3, 8, 1, 0, tzinfo=PACIFIC), datetime(2026, 3, 9, tzinfo=PACIFIC)),
    ],
)
async def test_per_day_quota_resets_at_next_pacific_midnight(
    now_local: datetime, reset_local: datetime
) -> None:
    h = Harness(FixedClock(now_local.timestamp()))
    try:
        h.reply(
            429, quota_429("GenerateRequestsPerDayPerProjectPerModel-FreeTier", retry_delay=None)
        )
        failure = await h.fail()
    finally:
        await h.client.aclose()
    assert failure.kind == "rate_limited_remote"
    assert failure.quota_reset_at == reset_local.timestamp()
    assert failure.retry_after is None


def test_pacific_midnight_offsets() -> None:
    winter = datetime(2026, 1, 15, 12, 0, tzinfo=PACIFIC).timestamp()
    summer = datetime(2026, 7, 15, 12, 0, tzinfo=PACIFIC).timestamp()
    # 00:00 PST is 08:00 UTC; 00:00 PDT is 07:00 UTC.
    assert datetime.fromtimestamp(next_pacific_midnight(winter), UTC).hour == 8
    assert datetime.fromtimestamp(next_pacific_midnight(summer), UTC).hour == 7


def test_pacific_midnight_without_tz_database(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def missing(name: str) -> ZoneInfo:
        raise ZoneInfoNotFoundError(name)

    gemini_errors._pacific.cache_clear()
    monkeypatch.setattr(gemini_errors, "ZoneInfo", missing)
    try:
        noon_utc = datetime(2026, 7, 15, 12, 0, tzinfo=UTC).timestamp()
        first = next_pacific_midnight(noon_utc)
        second = next_pacific_midnight(noon_utc + 60)
    finally:
        gemini_errors._pacific.cache_clear()
    # 12:00 UTC is 04:00 at UTC-8; the next midnight there is 08:00 UTC the next day.
    assert first == second == datetime(2026, 7, 16, 8, 0, tzinfo=UTC).timestamp()
    assert len([r for r in caplog.records if r.name.startswith("llmroute")]) == 1


async def test_api_key_invalid(harness: Harness) -> None:
    harness.reply(400, INVALID_KEY)
    failure = await harness.fail()
    assert failure.kind == "client_error"
    assert failure.key_invalid is True
    assert failure.retryable is False
    assert failure.status == 400
    assert "API key not valid" in failure.message


@pytest.mark.parametrize("status", [401, 403])
async def test_401_403_invalidate_key(harness: Harness, status: int) -> None:
    harness.reply(status, {"error": {"code": status, "message": "denied", "status": "X"}})
    failure = await harness.fail()
    assert (failure.kind, failure.key_invalid, failure.status) == ("client_error", True, status)


async def test_plain_400_is_client_error_without_key_invalid(harness: Harness) -> None:
    harness.reply(
        400, {"error": {"code": 400, "message": "bad field", "status": "INVALID_ARGUMENT"}}
    )
    failure = await harness.fail()
    assert (failure.kind, failure.key_invalid, failure.retryable) == ("client_error", False, False)
    assert failure.message == "HTTP 400 INVALID_ARGUMENT: bad field"


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_5xx_is_server_error(harness: Harness, status: int) -> None:
    harness.reply(
        status, {"error": {"code": status, "message": "overloaded"}}, headers={"retry-after": "3"}
    )
    failure = await harness.fail()
    assert (failure.kind, failure.status, failure.retryable) == ("server_error", status, True)
    assert failure.retry_after == 3.0
    assert failure.key_invalid is False


async def test_404_is_client_error(harness: Harness) -> None:
    harness.reply(
        404, {"error": {"code": 404, "message": "model not found", "status": "NOT_FOUND"}}
    )
    failure = await harness.fail()
    assert (failure.kind, failure.key_invalid, failure.retryable) == ("client_error", False, False)


async def test_error_body_as_json_array(harness: Harness) -> None:
    harness.reply(400, [INVALID_KEY])
    failure = await harness.fail()
    assert failure.key_invalid is True
    assert "API key not valid" in failure.message


async def test_429_body_as_json_array(harness: Harness) -> None:
    harness.reply(429, [quota_429("GenerateRequestsPerMinutePerProjectPerModel-FreeTier")])
    assert (await harness.fail()).retry_after == 37.0


async def test_garbage_200_body(harness: Harness) -> None:
    harness.reply(200, b"<html>oops</html>")
    failure = await harness.fail()
    assert failure.kind == "server_error"
    assert "unparsable" in failure.message
    assert failure.retryable is True


async def test_non_json_error_body(harness: Harness) -> None:
    harness.reply(502, b"<html>bad gateway</html>")
    failure = await harness.fail()
    assert (failure.kind, failure.message) == ("server_error", "HTTP 502: Bad Gateway")


async def test_transport_error_and_timeout(harness: Harness) -> None:
    def connect_error(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    def read_timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    harness.responder = connect_error
    assert (await harness.fail()).kind == "transport_error"
    harness.responder = read_timeout
    assert (await harness.fail()).kind == "timeout"


def failing_replies() -> Iterator[tuple[int, object]]:
    echo = {"error": {"code": 400, "message": f"bad key {KEY}", "status": "INVALID_ARGUMENT"}}
    yield 200, BLOCKED
    yield 200, {"candidates": [{"finishReason": "SAFETY"}]}
    yield 200, b"not json " + KEY.encode()
    yield 200, {"error": {"code": 500, "message": f"echo {KEY}"}}
    yield 400, INVALID_KEY
    yield 400, echo
    yield 400, [echo]
    yield 403, {"error": {"code": 403, "message": f"key {KEY} denied"}}
    yield 429, quota_429("GenerateRequestsPerDayPerProjectPerModel-FreeTier")
    yield 500, b"internal " + KEY.encode()


async def test_key_never_appears_in_failures(harness: Harness) -> None:
    seen = 0
    for status, body in failing_replies():
        harness.reply(status, body)
        failure = await harness.fail()
        assert KEY not in str(failure)
        assert KEY not in repr(failure)
        assert KEY not in failure.message
        assert KEY not in repr(failure.args)
        seen += 1
        with pytest.raises(AttemptFailed) as info:
            async for _ in harness.provider.stream(simple_request(), KEY):
                pass
        assert KEY not in str(info.value)
        assert KEY not in repr(info.value)
    assert seen == 10
    assert KEY not in repr(harness.provider)


# Streaming


class GatedStream(httpx.AsyncByteStream):
    """Serves chunks one at a time, each only when the test allows; records closing."""

    def __init__(self, chunks: list[bytes], *, gated: bool = False) -> None:
        self.chunks = chunks
        self.gate = asyncio.Event()
        self.gated = gated
        self.served = 0
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for i, piece in enumerate(self.chunks):
            if self.gated and i > 0:
                await self.gate.wait()
                self.gate.clear()
            self.served += 1
            yield piece

    async def aclose(self) -> None:
        self.closed = True


def stream_reply(harness: Harness, stream: GatedStream, status: int = 200) -> None:
    harness.responder = lambda request: httpx.Response(
        status, headers={"content-type": "text/event-stream"}, stream=stream
    )


async def collect(harness: Harness, request: ProviderRequest | None = None) -> list[StreamEvent]:
    return [e async for e in harness.provider.stream(request or simple_request(), KEY)]


async def test_stream_yields_chunk_by_chunk(harness: Harness) -> None:
    stream = GatedStream(
        [
            sse(
                chunk(
                    "Par",
                    usage={"promptTokenCount": 9, "candidatesTokenCount": 1, "totalTokenCount": 10},
                )
            ),
            sse(
                chunk(
                    "is.",
                    finish="STOP",
                    usage={"promptTokenCount": 9, "candidatesTokenCount": 2, "totalTokenCount": 11},
                )
            ),
        ],
        gated=True,
    )
    stream_reply(harness, stream)
    events = harness.provider.stream(simple_request(max_tokens=5), KEY)
    first = await anext(events)
    assert first == StreamEvent(text="Par")
    assert stream.served == 1  # the second chunk has not been sent yet
    stream.gate.set()
    rest = [e async for e in events]
    assert rest == [
        StreamEvent(text="is."),
        StreamEvent(
            finish_reason="stop",
            usage=Usage(prompt_tokens=9, completion_tokens=2, total_tokens=11),
            served_model=MODEL,
        ),
    ]
    sent = harness.requests[0]
    assert sent.url.path == f"/v1beta/models/{MODEL}:streamGenerateContent"
    assert sent.url.params["alt"] == "sse"
    assert "key" not in sent.url.params
    assert json.loads(sent.content)["generationConfig"] == {"maxOutputTokens": 5}
    assert stream.closed


async def test_stream_crlf_events_and_usage_after_finish(harness: Harness) -> None:
    body = (
        b'data: {"candidates":[{"content":{"parts":[{"text":"thinking","thought":true}]}}]}\r\n\r\n'
        b'data: {"candidates":[{"content":{"parts":[{"text":"Hi"}]},'
        b'"finishReason":"MAX_TOKENS"}]}\r\n\r\n'
        b'data: {"usageMetadata":{"promptTokenCount":3,"candidatesTokenCount":1,'
        b'"thoughtsTokenCount":4}}\r\n\r\n'
    )
    stream_reply(harness, GatedStream([body]))
    events = await collect(harness)
    assert events == [
        StreamEvent(text="Hi"),
        StreamEvent(
            finish_reason="length",
            usage=Usage(prompt_tokens=3, completion_tokens=5, total_tokens=8),
        ),
    ]


async def test_stream_without_finish_reason_fails(harness: Harness) -> None:
    stream_reply(harness, GatedStream([sse(chunk("Par"), chunk("is"))]))
    received: list[str] = []
    with pytest.raises(AttemptFailed) as info:
        async for event in harness.provider.stream(simple_request(), KEY):
            received.append(event.text)
    assert received == ["Par", "is"]
    assert info.value.kind == "transport_error"
    assert "finishReason" in info.value.message


async def test_stream_error_event(harness: Harness) -> None:
    error = {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}
    stream_reply(harness, GatedStream([sse(chunk("Par"), error)]))
    received: list[str] = []
    with pytest.raises(AttemptFailed) as info:
        async for event in harness.provider.stream(simple_request(), KEY):
            received.append(event.text)
    assert received == ["Par"]
    assert info.value.kind == "server_error"
    assert "overloaded" in info.value.message


async def test_stream_unparsable_event(harness: Harness) -> None:
    stream_reply(harness, GatedStream([b"data: {not json\n\n"]))
    with pytest.raises(AttemptFailed) as info:
        await collect(harness)
    assert info.value.kind == "server_error"


async def test_stream_blocked_prompt_in_first_chunk(harness: Harness) -> None:
    stream_reply(harness, GatedStream([sse(BLOCKED)]))
    with pytest.raises(AttemptFailed) as info:
        await collect(harness)
    failure = info.value
    assert (failure.kind, failure.retryable, failure.key_invalid) == ("client_error", False, False)
    assert "blocked" in failure.message


async def test_stream_safety_finish_without_text(harness: Harness) -> None:
    stream_reply(harness, GatedStream([sse({"candidates": [{"finishReason": "SAFETY"}]})]))
    with pytest.raises(AttemptFailed) as info:
        await collect(harness)
    assert (info.value.kind, info.value.retryable) == ("client_error", False)


async def test_stream_error_status_before_start(harness: Harness) -> None:
    harness.reply(429, quota_429("GenerateRequestsPerMinutePerProjectPerModel-FreeTier"))
    with pytest.raises(AttemptFailed) as info:
        await collect(harness)
    assert (info.value.kind, info.value.retry_after) == ("rate_limited_remote", 37.0)

    harness.reply(400, [INVALID_KEY])
    with pytest.raises(AttemptFailed) as info:
        await collect(harness)
    assert info.value.key_invalid is True


async def test_stream_early_close_closes_response(harness: Harness) -> None:
    stream = GatedStream([sse(chunk("Par")), sse(chunk("is.", finish="STOP"))], gated=True)
    stream_reply(harness, stream)
    events = harness.provider.stream(simple_request(), KEY)
    assert (await anext(events)).text == "Par"
    assert not stream.closed
    await events.aclose()  # type: ignore[attr-defined]
    assert stream.closed
    assert stream.served == 1


async def test_stream_transport_error_mid_stream(harness: Harness) -> None:
    class BrokenStream(GatedStream):
        async def __aiter__(self) -> AsyncIterator[bytes]:
            yield sse(chunk("Par"))
            raise httpx.RemoteProtocolError("peer closed connection")

    stream_reply(harness, BrokenStream([]))
    with pytest.raises(AttemptFailed) as info:
        await collect(harness)
    assert info.value.kind == "transport_error"


async def test_aclose_is_a_noop(harness: Harness) -> None:
    await harness.provider.aclose()
    response = await harness.provider.complete(simple_request(), KEY)
    assert response.text == "Paris."
