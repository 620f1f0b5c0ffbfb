"""Tool use, images and JSON through the Router, on both wires, over the loopback fake
provider speaking the real wire formats; and the fake's own scripting of them."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from llmroute import Completion, Router, ToolCall
from llmroute.errors import ProviderError
from llmroute.testing import FakeProviderServer, RecordedRequest, Reply, Stream

PNG = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGP4z8DwHwAF"
    "AAH/iZk9HQAAAABJRU5ErkJggg=="
)
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
TARGETS = ["groq/llama", "gemini/flash"]
SIGNATURE = "c2lnbmF0dXJlLW9mLXRoZS1maXJzdC1jYWxs"


@pytest.fixture
async def server() -> AsyncIterator[FakeProviderServer]:
    async with FakeProviderServer() as server:
        yield server


@pytest.fixture
async def router(server: FakeProviderServer, tmp_path: Path) -> AsyncIterator[Router]:
    models = {
        "providers": {
            "groq": {
                "type": "openai_compatible",
                "base_url": server.openai_base_url,
                "api_key": "groq-test-key-123456",
            },
            "gemini": {
                "type": "google_ai_studio",
                "base_url": server.gemini_base_url,
                "api_key": "gemini-test-key-123456",
            },
        },
        "models": {
            "groq/llama": {"provider": "groq", "model": "llama-3.3-70b-versatile"},
            "gemini/flash": {"provider": "gemini", "model": "gemini-2.5-flash"},
        },
    }
    async with Router(models, {}, env_file=None, cache_dir=tmp_path) as router:
        yield router


def asks_weather(request: RecordedRequest) -> bool:
    return "get_weather" in request.tools and request.last_message.get("role") == "user"


def has_result(request: RecordedRequest) -> bool:
    return request.last_message.get("role") == "tool"


def script_weather(server: FakeProviderServer, target: str, *, stream: bool = False) -> None:
    # Gemini issues no ids of its own here, and signs its first call.
    call = (
        ToolCall("", "get_weather", '{"city": "Paris"}', thought_signature=SIGNATURE)
        if target.startswith("gemini")
        else ToolCall("call_fx_1", "get_weather", '{"city": "Paris"}')
    )
    first = (
        Stream(chunks=("Let me look.",), tool_calls=(call,), fragment=3)
        if stream
        else Reply(tool_calls=[call])
    )
    server.script.when(asks_weather, first)
    server.script.when(has_result, Reply(text="18 °C and clear in Paris."))


@pytest.mark.parametrize("target", TARGETS)
async def test_two_turn_tool_conversation(
    server: FakeProviderServer, router: Router, target: str
) -> None:
    script_weather(server, target)
    messages: list[Any] = [{"role": "user", "content": "Weather in Paris?"}]
    first = await router.complete(target, messages, tools=[WEATHER], tool_choice="auto")
    assert first.finish_reason == "tool_calls"
    assert first.text == ""
    (call,) = first.tool_calls
    assert (call.name, json.loads(call.arguments)) == ("get_weather", {"city": "Paris"})
    assert call.id  # Gemini sent none: the router made one up

    messages += [
        first.message(),
        {"role": "tool", "tool_call_id": call.id, "content": json.dumps({"temp_c": 18})},
    ]
    second = await router.complete(target, messages, tools=[WEATHER])
    assert second.text == "18 °C and clear in Paris."
    assert (second.finish_reason, second.tool_calls) == ("stop", [])

    sent = server.script.requests[-1]
    assert [m["role"] for m in sent.messages] == ["user", "assistant", "tool"]
    assert json.loads(sent.messages[2]["content"]) == {"temp_c": 18}
    if sent.wire == "gemini":
        model_turn = sent.body["contents"][1]["parts"][0]  # type: ignore[index]
        assert model_turn["thoughtSignature"] == SIGNATURE
        response = sent.body["contents"][2]["parts"][0]["functionResponse"]  # type: ignore[index]
        assert response == {"name": "get_weather", "response": {"output": {"temp_c": 18}}}
    else:
        assert sent.body["messages"][1]["tool_calls"][0]["id"] == "call_fx_1"  # type: ignore[index]


@pytest.mark.parametrize("target", TARGETS)
async def test_streamed_tool_call_arrives_whole_on_the_last_chunk(
    server: FakeProviderServer, router: Router, target: str
) -> None:
    script_weather(server, target, stream=True)
    chunks = [chunk async for chunk in router.stream(target, "Weather in Paris?", tools=[WEATHER])]
    assert "".join(c.text for c in chunks) == "Let me look."
    assert all(c.tool_calls is None for c in chunks[:-1])
    last = chunks[-1]
    assert last.finish_reason == "tool_calls"
    assert [(c.name, json.loads(c.arguments)) for c in last.tool_calls or []] == [
        ("get_weather", {"city": "Paris"})
    ]


@pytest.mark.parametrize("target", TARGETS)
async def test_json_answer(server: FakeProviderServer, router: Router, target: str) -> None:
    server.script.when(
        lambda r: (
            r.body.get("response_format") is not None  # type: ignore[union-attr]
            or "responseMimeType" in r.body.get("generationConfig", {})
        ),  # type: ignore[union-attr]
        Reply(text=json.dumps({"city": "Paris", "temp_c": 18})),
    )
    schema = {
        "type": "json_schema",
        "json_schema": {
            "name": "weather",
            "schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
    answer = await router.complete(target, "Weather in Paris as JSON.", response_format=schema)
    assert json.loads(answer.text) == {"city": "Paris", "temp_c": 18}


@pytest.mark.parametrize("target", TARGETS)
async def test_image_bearing_request(
    server: FakeProviderServer, router: Router, target: str
) -> None:
    def has_image(request: RecordedRequest) -> bool:
        content = request.last_message.get("content")
        return isinstance(content, list) and any(p["type"] == "image_url" for p in content)

    server.script.when(has_image, Reply(text="A cat."))
    prompt = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": PNG}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
            ],
        }
    ]
    answer = await router.complete(target, prompt)
    assert answer.text == "A cat."
    parts = server.script.requests[-1].last_message["content"]
    assert [p.get("image_url", {}).get("url") for p in parts] == [
        None,
        PNG,
        "https://example.com/cat.jpg",
    ]


async def test_predicates_on_streaming_and_times(
    server: FakeProviderServer, router: Router
) -> None:
    server.script.when(lambda r: r.stream, Reply(text="streamed"), times=1)
    server.script.when(lambda r: not r.stream, Reply(text="whole"))
    streamed = [c.text async for c in router.stream("groq/llama", "hi")]
    assert "".join(streamed) == "streamed"
    assert (await router.complete("groq/llama", "hi")).text == "whole"
    # the streaming rule answered once; the queue's default answers next
    streamed = [c.text async for c in router.stream("groq/llama", "hi")]
    assert "".join(streamed) == "fake answer from llama-3.3-70b-versatile"


async def test_fake_gemini_refuses_a_result_count_that_differs_from_the_calls(
    server: FakeProviderServer,
) -> None:
    """The fake checks what the real API checks: here through a raw body, as the router
    itself never sends such a turn."""
    import httpx

    body = {
        "contents": [
            {"role": "user", "parts": [{"text": "Weather?"}]},
            {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}}]},
            {
                "role": "user",
                "parts": [
                    {"functionResponse": {"name": "f", "response": {"output": 1}}},
                    {"functionResponse": {"name": "f", "response": {"output": 2}}},
                ],
            },
        ]
    }
    async with httpx.AsyncClient() as client:
        answer = await client.post(
            f"{server.gemini_base_url}/models/gemini-2.5-flash:generateContent",
            json=body,
            headers={"x-goog-api-key": "k"},
        )
    assert answer.status_code == 400
    assert "number of function response parts" in answer.text


async def test_a_history_gemini_cannot_take_moves_on_without_sending(
    server: FakeProviderServer, router: Router
) -> None:
    """Arguments that are not a JSON object are fine for OpenAI-compatible providers and
    untranslatable for Gemini: that candidate fails without a request going out."""
    messages = [
        {"role": "user", "content": "List?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "[1]"}}
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "ok"},
    ]
    assert (await router.complete("groq/llama", messages)).text
    before = len(server.script.requests)
    with pytest.raises(ProviderError, match=r"prompt\[1\]\.tool_calls\[0\]\.function\.arguments"):
        await router.complete("gemini/flash", messages)
    assert len(server.script.requests) == before


def test_completion_message_round_trips() -> None:
    call = ToolCall("call_1", "f", "{}")
    done = Completion(
        text="",
        model="m",
        provider="p",
        finish_reason="tool_calls",
        usage=None,  # type: ignore[arg-type]
        latency_ms=0.0,
        attempts=[],
        tool_calls=[call],
    )
    assert done.message() == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        ],
    }


async def test_a_predicate_in_place_of_a_model_queues_answers(
    server: FakeProviderServer, router: Router
) -> None:
    def streaming(request: RecordedRequest) -> bool:
        return request.stream

    server.script.script(streaming, Reply(text="one"), Reply(text="two"))
    server.script.set_default(lambda r: "gemini" in r.model, Reply(text="gem"))
    assert server.script.pending() == 2
    texts = []
    for _ in range(3):
        texts.append("".join([c.text async for c in router.stream("groq/llama", "hi")]))
    assert texts == ["one", "two", "fake answer from llama-3.3-70b-versatile"]
    assert server.script.pending() == 0
    assert (await router.complete("gemini/flash", "hi")).text == "gem"
    with pytest.raises(TypeError):
        server.script.script(streaming, Reply(), key="k")


async def test_gemini_translates_a_request_once_for_all_its_attempts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import httpx

    from llmroute.providers import google_ai_studio
    from llmroute.testing import FakeClock

    calls = []
    real = google_ai_studio.build_body

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(google_ai_studio, "build_body", counting)
    answers = [
        httpx.Response(503, json={"error": {"code": 503, "status": "UNAVAILABLE"}}),
        httpx.Response(429, json={"error": {"code": 429, "status": "RESOURCE_EXHAUSTED"}}),
        httpx.Response(200, json={"candidates": [{"content": {"parts": [{"text": "ok"}]}}]}),
    ]
    models = {
        "providers": {
            "gemini": {
                "type": "google_ai_studio",
                "base_url": "http://wire.test/v1beta",
                "api_keys": ["gemini-key-one-123", "gemini-key-two-456"],
            }
        },
        "models": {"gemini/flash": {"provider": "gemini", "model": "gemini-2.5-flash"}},
    }
    client = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: answers.pop(0)))
    async with Router(
        models, {}, env_file=None, cache_dir=tmp_path, clock=FakeClock(), http_client=client
    ) as router:
        answer = await router.complete("gemini/flash", "hi", tools=[WEATHER])
    await client.aclose()
    assert answer.text == "ok"
    assert len(answer.attempts) == 3  # a retry, another key, then the answer
    assert calls == [1]


async def test_replies_take_calls_in_the_openai_shape_too(
    server: FakeProviderServer, router: Router
) -> None:
    server.script.script(
        "llama-3.3-70b-versatile",
        Reply(
            tool_calls=[
                {
                    "id": "call_9",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                },
                {"name": "get_time", "arguments": {"zone": "CET"}},
            ]
        ),
    )
    answer = await router.complete("groq/llama", "Weather and time?", tools=[WEATHER])
    assert [(c.id, c.name, json.loads(c.arguments)) for c in answer.tool_calls] == [
        ("call_9", "get_weather", {"city": "Oslo"}),
        ("call_1", "get_time", {"zone": "CET"}),
    ]
