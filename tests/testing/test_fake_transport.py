"""FakeTransport and FakeScript: every behaviour on both wires, through a raw httpx client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from llmroute.testing._script import (
    Blocked,
    FakeScript,
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
from llmroute.testing._transport import FakeTransport
from llmroute.testing._wire import render

MODELS: dict[Wire, str] = {"openai": "llama-3.1-8b-instant", "gemini": "gemini-2.5-flash"}
WIRES: list[Wire] = ["openai", "gemini"]
PROMPT = "Capital of France?"


class SleepRecorder:
    """A minimal fake clock: sleeping only records the seconds and moves `now`."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


@pytest.fixture
def clock() -> SleepRecorder:
    return SleepRecorder()


@pytest.fixture
def script() -> FakeScript:
    return FakeScript()


@pytest.fixture
def transport(script: FakeScript, clock: SleepRecorder) -> FakeTransport:
    return FakeTransport(script, clock=clock)


@pytest.fixture
async def client(transport: FakeTransport) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=transport, timeout=7.0) as client:
        yield client


def build(
    wire: Wire,
    *,
    model: str | None = None,
    key: str | None = "key-1",
    stream: bool = False,
    prompt: str = PROMPT,
    sse: bool = True,
    extra: dict[str, Any] | None = None,
) -> tuple[str, dict[str, str], dict[str, Any]]:
    """URL, headers and JSON body of a request as the real adapters would send it."""
    model = model or MODELS[wire]
    headers: dict[str, str] = {}
    body: dict[str, Any]
    if wire == "openai":
        url = "https://api.groq.com/openai/v1/chat/completions"
        body = {"model": model, "messages": [{"role": "user", "content": prompt}]}
        if stream:
            body["stream"] = True
        if key is not None:
            headers["authorization"] = f"Bearer {key}"
    else:
        action = "streamGenerateContent" if stream else "generateContent"
        url = f"https://generativelanguage.googleapis.com/v1beta/models/{model}:{action}"
        if stream and sse:
            url += "?alt=sse"
        body = {"contents": [{"role": "user", "parts": [{"text": prompt}]}]}
        if key is not None:
            headers["x-goog-api-key"] = key
    body.update(extra or {})
    return url, headers, body


async def call(client: httpx.AsyncClient, wire: Wire, **kwargs: Any) -> httpx.Response:
    url, headers, body = build(wire, **kwargs)
    return await client.post(url, headers=headers, json=body)


async def stream_lines(client: httpx.AsyncClient, wire: Wire, **kwargs: Any) -> list[str]:
    url, headers, body = build(wire, stream=True, **kwargs)
    async with client.stream("POST", url, headers=headers, json=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        return [line async for line in response.aiter_lines()]


def events(lines: list[str]) -> list[Any]:
    """The JSON of every `data:` line, `[DONE]` kept as the string."""
    found: list[Any] = []
    for line in lines:
        if line.startswith("data: "):
            data = line[len("data: ") :]
            found.append(data if data == "[DONE]" else json.loads(data))
    return found


def text_of(wire: Wire, answer: dict[str, Any]) -> str:
    if wire == "openai":
        return str(answer["choices"][0]["message"]["content"])
    return "".join(part["text"] for part in answer["candidates"][0]["content"]["parts"])


def stream_text(wire: Wire, chunks: list[Any]) -> str:
    if wire == "openai":
        return "".join(
            c["choices"][0]["delta"].get("content", "")
            for c in chunks
            if c != "[DONE]" and c["choices"]
        )
    return "".join(c["candidates"][0]["content"]["parts"][0]["text"] for c in chunks)


@pytest.mark.parametrize("wire", WIRES)
async def test_default_reply_echoes_the_model(client: httpx.AsyncClient, wire: Wire) -> None:
    response = await call(client, wire)
    assert response.status_code == 200
    answer = response.json()
    assert text_of(wire, answer) == f"fake answer from {MODELS[wire]}"
    completion = estimate_tokens(f"fake answer from {MODELS[wire]}")
    if wire == "openai":
        assert answer["object"] == "chat.completion"
        assert answer["model"] == MODELS[wire]
        assert answer["choices"][0]["finish_reason"] == "stop"
        assert answer["usage"] == {
            "prompt_tokens": estimate_tokens(PROMPT),
            "completion_tokens": completion,
            "total_tokens": estimate_tokens(PROMPT) + completion,
        }
    else:
        assert answer["modelVersion"] == MODELS[wire]
        assert answer["candidates"][0]["finishReason"] == "STOP"
        assert answer["usageMetadata"] == {
            "promptTokenCount": estimate_tokens(PROMPT),
            "candidatesTokenCount": completion,
            "totalTokenCount": estimate_tokens(PROMPT) + completion,
        }


@pytest.mark.parametrize("wire", WIRES)
async def test_reply_with_given_tokens_finish_reason_and_latency(
    client: httpx.AsyncClient, script: FakeScript, clock: SleepRecorder, wire: Wire
) -> None:
    script.script(
        MODELS[wire],
        Reply(text="Paris.", prompt_tokens=18, completion_tokens=3, finish_reason="length"),
        Reply(text="Rome.", usage=False, latency=1.5),
    )
    first = (await call(client, wire)).json()
    second = (await call(client, wire)).json()
    assert text_of(wire, first) == "Paris."
    assert text_of(wire, second) == "Rome."
    if wire == "openai":
        assert first["usage"]["total_tokens"] == 21
        assert first["choices"][0]["finish_reason"] == "length"
        assert "usage" not in second
    else:
        assert first["usageMetadata"]["totalTokenCount"] == 21
        assert first["candidates"][0]["finishReason"] == "MAX_TOKENS"
        assert "usageMetadata" not in second
    assert clock.sleeps == [0.0, 1.5]


async def test_openai_reply_streamed_is_the_groq_transcript(
    client: httpx.AsyncClient, script: FakeScript
) -> None:
    script.script(MODELS["openai"], Reply(text="Paris.", prompt_tokens=18, completion_tokens=3))
    chunks = events(await stream_lines(client, "openai"))
    assert chunks[-1] == "[DONE]"
    role, content, finish = chunks[:-1]
    assert role["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert content["choices"][0]["delta"] == {"content": "Paris."}
    assert content["choices"][0]["finish_reason"] is None
    assert finish["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }
    assert finish["x_groq"]["usage"] == {
        "prompt_tokens": 18,
        "completion_tokens": 3,
        "total_tokens": 21,
    }
    assert {c["object"] for c in chunks[:-1]} == {"chat.completion.chunk"}
    assert len({c["id"] for c in chunks[:-1]}) == 1
    assert all("usage" not in c for c in chunks[:-1])


async def test_openai_include_usage_adds_the_usage_chunk(
    client: httpx.AsyncClient, script: FakeScript
) -> None:
    script.script(MODELS["openai"], Stream(chunks=("Par", "is."), completion_tokens=3))
    lines = await stream_lines(client, "openai", extra={"stream_options": {"include_usage": True}})
    chunks = events(lines)
    assert chunks[-1] == "[DONE]"
    usage_chunk = chunks[-2]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["completion_tokens"] == 3
    assert all(c["usage"] is None for c in chunks[:-2])
    assert stream_text("openai", chunks) == "Paris."


async def test_gemini_reply_streamed_is_one_event(
    client: httpx.AsyncClient, script: FakeScript
) -> None:
    script.script(MODELS["gemini"], Reply(text="Paris.", prompt_tokens=9, completion_tokens=2))
    (chunk,) = events(await stream_lines(client, "gemini"))
    assert chunk["candidates"][0]["content"] == {"role": "model", "parts": [{"text": "Paris."}]}
    assert chunk["candidates"][0]["finishReason"] == "STOP"
    assert chunk["usageMetadata"]["totalTokenCount"] == 11


@pytest.mark.parametrize("wire", WIRES)
async def test_stream_sends_chunks_with_delays(
    client: httpx.AsyncClient, script: FakeScript, clock: SleepRecorder, wire: Wire
) -> None:
    script.script(MODELS[wire], Stream(chunks=("Pa", "r", "is."), delay=0.25, latency=0.5))
    chunks = events(await stream_lines(client, wire))
    assert stream_text(wire, chunks) == "Paris."
    assert clock.sleeps == [0.5, 0.25, 0.25]
    if wire == "openai":
        assert chunks[-1] == "[DONE]"
        assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    else:
        assert [c["candidates"][0].get("finishReason") for c in chunks] == [None, None, "STOP"]
        running = [c["usageMetadata"]["candidatesTokenCount"] for c in chunks]
        assert running == sorted(running)
        assert running[-1] == estimate_tokens("Paris.")


@pytest.mark.parametrize("wire", WIRES)
async def test_stream_without_usage(
    client: httpx.AsyncClient, script: FakeScript, wire: Wire
) -> None:
    script.script(MODELS[wire], Stream(usage=False, finish_reason="length"))
    chunks = events(await stream_lines(client, wire))
    if wire == "openai":
        assert "usage" not in chunks[-2]["x_groq"]
        assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    else:
        assert all("usageMetadata" not in c for c in chunks)
        assert chunks[-1]["candidates"][0]["finishReason"] == "MAX_TOKENS"


@pytest.mark.parametrize("wire", WIRES)
async def test_stream_met_by_a_plain_request_is_one_answer(
    client: httpx.AsyncClient, script: FakeScript, clock: SleepRecorder, wire: Wire
) -> None:
    script.script(MODELS[wire], Stream(chunks=("Par", "is."), delay=0.25))
    response = await call(client, wire)
    assert response.status_code == 200
    assert text_of(wire, response.json()) == "Paris."
    assert clock.sleeps == [0.25]


@pytest.mark.parametrize("wire", WIRES)
async def test_stream_fail_after_breaks_without_finish(
    client: httpx.AsyncClient, script: FakeScript, transport: FakeTransport, wire: Wire
) -> None:
    script.script(MODELS[wire], Stream(chunks=("a", "b", "c"), fail_after=2))
    url, headers, body = build(wire, stream=True)
    lines: list[str] = []
    with pytest.raises(httpx.RemoteProtocolError):
        async with client.stream("POST", url, headers=headers, json=body) as response:
            async for line in response.aiter_lines():
                lines.append(line)
    chunks = events(lines)
    assert stream_text(wire, chunks) == "ab"
    assert "[DONE]" not in chunks
    if wire == "openai":
        assert all(c["choices"][0]["finish_reason"] is None for c in chunks)
    else:
        assert all("finishReason" not in c["candidates"][0] for c in chunks)
    assert transport.open_streams == 0


@pytest.mark.parametrize("wire", WIRES)
async def test_stream_fail_after_on_a_plain_request_breaks_the_body(
    client: httpx.AsyncClient, script: FakeScript, wire: Wire
) -> None:
    script.script(MODELS[wire], Stream(fail_after=1))
    with pytest.raises(httpx.RemoteProtocolError):
        await call(client, wire)


async def test_gemini_stream_without_alt_sse_is_a_json_array(
    client: httpx.AsyncClient, script: FakeScript
) -> None:
    script.script(MODELS["gemini"], Stream(chunks=("Par", "is.")))
    url, headers, body = build("gemini", stream=True, sse=False)
    response = await client.post(url, headers=headers, json=body)
    assert response.headers["content-type"].startswith("application/json")
    assert stream_text("gemini", response.json()) == "Paris."


@pytest.mark.parametrize("wire", WIRES)
@pytest.mark.parametrize("stream", [False, True])
async def test_rate_limit_per_minute(
    client: httpx.AsyncClient, script: FakeScript, wire: Wire, stream: bool
) -> None:
    script.script(MODELS[wire], RateLimit(retry_after=6, retry_delay=37))
    url, headers, body = build(wire, stream=stream)
    response = await client.post(url, headers=headers, json=body)
    assert response.status_code == 429
    assert response.headers["retry-after"] == "6"
    error = response.json()["error"]
    if wire == "openai":
        assert error["code"] == "rate_limit_exceeded"
        assert "(RPM)" in error["message"]
        assert "try again in 37s" in error["message"]
    else:
        assert error["status"] == "RESOURCE_EXHAUSTED"
        by_type = {d["@type"].rsplit(".", 1)[1]: d for d in error["details"]}
        quota = by_type["QuotaFailure"]["violations"][0]
        assert quota["quotaId"] == "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"
        assert quota["quotaDimensions"]["model"] == MODELS[wire]
        assert by_type["RetryInfo"]["retryDelay"] == "37s"


@pytest.mark.parametrize("wire", WIRES)
async def test_rate_limit_per_day_without_hints(
    client: httpx.AsyncClient, script: FakeScript, wire: Wire
) -> None:
    script.script(MODELS[wire], RateLimit(per_day=True))
    response = await call(client, wire)
    assert response.status_code == 429
    assert "retry-after" not in response.headers
    error = response.json()["error"]
    if wire == "openai":
        assert "(RPD)" in error["message"]
    else:
        types = [d["@type"] for d in error["details"]]
        assert "type.googleapis.com/google.rpc.RetryInfo" not in types
        quota_id = error["details"][0]["violations"][0]["quotaId"]
        assert quota_id == "GenerateRequestsPerDayPerProjectPerModel-FreeTier"


@pytest.mark.parametrize(("wire", "google_status"), [("openai", None), ("gemini", "UNAVAILABLE")])
async def test_server_error(
    client: httpx.AsyncClient, script: FakeScript, wire: Wire, google_status: str | None
) -> None:
    script.script(MODELS[wire], ServerError(status=503, retry_after=2), ServerError())
    first = await call(client, wire)
    second = await call(client, wire)
    assert (first.status_code, second.status_code) == (503, 500)
    assert first.headers["retry-after"] == "2"
    assert "retry-after" not in second.headers
    if google_status is not None:
        assert first.json()["error"]["status"] == google_status
        assert second.json()["error"]["status"] == "INTERNAL"
    else:
        assert first.json()["error"]["type"] == "server_error"


async def test_invalid_key_openai_is_401(client: httpx.AsyncClient, script: FakeScript) -> None:
    script.script(MODELS["openai"], InvalidKey())
    response = await call(client, "openai")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


async def test_invalid_key_gemini_is_the_fixture(
    client: httpx.AsyncClient, script: FakeScript
) -> None:
    script.script(MODELS["gemini"], InvalidKey())
    response = await call(client, "gemini", stream=True)
    assert response.status_code == 400
    assert response.json() == {
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


@pytest.mark.parametrize("wire", WIRES)
async def test_status_sends_what_it_is_given(
    client: httpx.AsyncClient, script: FakeScript, wire: Wire
) -> None:
    script.script(
        MODELS[wire],
        Status(status=402, body={"error": {"code": 402, "message": "no credits"}}),
        Status(status=498, body="capacity_exceeded", headers={"X-Should-Retry": "true"}),
        Status(status=200, body=b"\x00\x01"),
    )
    first, second, third = [await call(client, wire) for _ in range(3)]
    assert first.status_code == 402
    assert first.json()["error"]["message"] == "no credits"
    assert first.headers["content-type"] == "application/json"
    assert (second.status_code, second.text) == (498, "capacity_exceeded")
    assert second.headers["x-should-retry"] == "true"
    assert (third.status_code, third.content) == (200, b"\x00\x01")


@pytest.mark.parametrize("wire", WIRES)
@pytest.mark.parametrize("stream", [False, True])
async def test_timeout_waits_the_read_timeout_then_raises(
    client: httpx.AsyncClient, script: FakeScript, clock: SleepRecorder, wire: Wire, stream: bool
) -> None:
    script.script(MODELS[wire], Timeout())
    url, headers, body = build(wire, stream=stream)
    with pytest.raises(httpx.ReadTimeout):
        await client.post(url, headers=headers, json=body)
    assert clock.sleeps == [7.0]


@pytest.mark.parametrize("wire", WIRES)
async def test_garbage_is_not_json(
    client: httpx.AsyncClient, script: FakeScript, wire: Wire
) -> None:
    script.script(MODELS[wire], Garbage(), Garbage())
    response = await call(client, wire)
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        response.json()
    lines = await stream_lines(client, wire)
    data = [line for line in lines if line.startswith("data: ")]
    assert len(data) == 1
    with pytest.raises(json.JSONDecodeError):
        json.loads(data[0][len("data: ") :])


async def test_blocked_gemini_is_200_with_prompt_feedback(
    client: httpx.AsyncClient, script: FakeScript
) -> None:
    script.script(MODELS["gemini"], Blocked(), Blocked())
    response = await call(client, "gemini")
    assert response.status_code == 200
    answer = response.json()
    assert answer["promptFeedback"]["blockReason"] == "SAFETY"
    assert "candidates" not in answer
    (chunk,) = events(await stream_lines(client, "gemini"))
    assert chunk["promptFeedback"]["blockReason"] == "SAFETY"


async def test_blocked_openai_is_400(client: httpx.AsyncClient, script: FakeScript) -> None:
    script.script(MODELS["openai"], Blocked())
    response = await call(client, "openai")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "content_policy_violation"


@pytest.mark.parametrize("wire", WIRES)
async def test_per_key_queue_wins_over_the_model_queue(
    client: httpx.AsyncClient, script: FakeScript, wire: Wire
) -> None:
    model = MODELS[wire]
    script.script(model, RateLimit(retry_delay=5), key="key-1")
    script.script(model, Reply(text="from the model queue"))
    script.set_default(model, Reply(text="model default"))
    script.set_default(model, InvalidKey(), key="key-3")
    assert (await call(client, wire, key="key-1")).status_code == 429
    assert text_of(wire, (await call(client, wire, key="key-2")).json()) == "from the model queue"
    assert text_of(wire, (await call(client, wire, key="key-1")).json()) == "model default"
    assert (await call(client, wire, key="key-3")).status_code in (400, 401)
    assert (await call(client, wire, key="key-3")).status_code in (400, 401)
    assert script.pending() == 0


def test_lookup_order_and_defaults() -> None:
    script = FakeScript()
    script.script(None, Reply(text="any model, key k"), key="k")
    script.script(None, Reply(text="anything"))
    script.set_default(None, Reply(text="global default"))
    script.set_default("m", Reply(text="m default"))
    taken = [
        script.next_behaviour("x", "k"),
        script.next_behaviour("x", "k"),
        script.next_behaviour("x", None),
        script.next_behaviour("m", "k"),
    ]
    assert taken == [
        Reply(text="any model, key k"),
        Reply(text="anything"),
        Reply(text="global default"),
        Reply(text="m default"),
    ]
    assert FakeScript().next_behaviour("m", None) == Reply(text="fake answer from m")


def test_script_refuses_what_is_not_a_behaviour() -> None:
    script = FakeScript()
    with pytest.raises(TypeError):
        script.script("m", Reply)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        script.set_default("m", "ok")  # type: ignore[arg-type]


def test_render_is_pure_and_shared() -> None:
    first = render(Reply(text="hi"), wire="openai", model="m", stream=False, prompt_text="p")
    second = render(Reply(text="hi"), wire="openai", model="m", stream=False, prompt_text="p")
    assert first == second
    streamed = render(Stream(fail_after=0), wire="gemini", model="g", stream=True, prompt_text="")
    assert streamed.pieces == () and streamed.break_after
    assert render(Timeout(), wire="gemini", model="g", stream=False, prompt_text="").hang


@pytest.mark.parametrize("wire", WIRES)
async def test_requests_are_recorded(
    client: httpx.AsyncClient, script: FakeScript, wire: Wire
) -> None:
    await call(client, wire, key="secret-1")
    await stream_lines(client, wire, key="secret-2", extra={"temperature": 0.2})
    plain, streamed = script.requests
    assert (plain.wire, plain.model, plain.key, plain.stream) == (
        wire,
        MODELS[wire],
        "secret-1",
        False,
    )
    assert (streamed.key, streamed.stream) == ("secret-2", True)
    assert isinstance(streamed.body, dict) and streamed.body["temperature"] == 0.2
    if wire == "openai":
        assert plain.path == "/openai/v1/chat/completions"
        assert plain.headers["authorization"] == "Bearer secret-1"
        assert plain.query == ""
    else:
        assert streamed.path == f"/v1beta/models/{MODELS[wire]}:streamGenerateContent"
        assert streamed.query == "alt=sse"
        assert plain.headers["x-goog-api-key"] == "secret-1"
    assert plain.headers["content-type"] == "application/json"


async def test_no_key_is_recorded_as_none(client: httpx.AsyncClient, script: FakeScript) -> None:
    await call(client, "openai", key=None)
    await call(client, "gemini", key=None)
    assert [r.key for r in script.requests] == [None, None]


async def test_recording_can_be_switched_off() -> None:
    script = FakeScript(record=False)
    async with httpx.AsyncClient(transport=FakeTransport(script)) as client:
        assert (await call(client, "gemini")).status_code == 200
    assert script.requests == []


async def test_unknown_path_method_and_body(client: httpx.AsyncClient, script: FakeScript) -> None:
    assert (
        await client.post("https://api.groq.com/openai/v1/embeddings", json={})
    ).status_code == (404)
    assert (await client.get("https://api.groq.com/openai/v1/chat/completions")).status_code == 405
    bad = await client.post("https://api.groq.com/openai/v1/chat/completions", content=b"{not json")
    assert bad.status_code == 400
    no_model = await client.post("https://api.groq.com/openai/v1/chat/completions", json={})
    assert no_model.status_code == 400
    assert [r.body for r in script.requests] == [None, {}]


async def test_open_streams_go_back_to_zero_after_an_early_break(
    client: httpx.AsyncClient, script: FakeScript, transport: FakeTransport
) -> None:
    script.script(MODELS["openai"], Stream(chunks=("a", "b", "c"), delay=1.0))
    url, headers, body = build("openai", stream=True)
    async with client.stream("POST", url, headers=headers, json=body) as response:
        assert transport.open_streams == 1
        async for _ in response.aiter_lines():
            break
        assert transport.open_streams == 1
    assert transport.open_streams == 0
    await call(client, "openai")
    assert transport.open_streams == 0


async def test_default_clock_is_asyncio_sleep(script: FakeScript) -> None:
    script.script(MODELS["openai"], Stream(chunks=("a", "b"), delay=0.001, latency=0.001))
    async with httpx.AsyncClient(transport=FakeTransport(script)) as client:
        chunks = events(await stream_lines(client, "openai"))
    assert stream_text("openai", chunks) == "ab"
