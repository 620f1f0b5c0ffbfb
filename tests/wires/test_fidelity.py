"""Wire fidelity: for the same input, llmroute sends field by field the body the official
SDKs send (openai-python for OpenAI-compatible providers, google-genai for Gemini), and
reads their canned answers into the same tool calls on both wires, whole or streamed.

The fixtures under fixtures/ were recorded from the SDKs talking to a loopback recorder.
The google-genai SDK writes a few proto field names in snake_case (`parameters_json_schema`,
`mime_type`, `file_uri`), re-encodes base64 URL-safe, and adds an empty `generationConfig`
and a `role` on `systemInstruction`; the API reads both spellings, so `sdk_form` brings
its capture to the camelCase form llmroute sends before comparing.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from llmroute.providers.base import GENERATED_CALL_ID
from llmroute.trace import ToolCall, Usage

from .conftest import Wire, fixture_bytes, fixture_json, request

OPENAI_MODEL = "llama-3.3-70b-versatile"
GEMINI_MODEL = "gemini-2.5-flash"
_SNAKE = {
    "parameters_json_schema": "parametersJsonSchema",
    "mime_type": "mimeType",
    "file_uri": "fileUri",
}
_BASE64_FIELDS = ("thoughtSignature", "data")


def sdk_form(value: Any, *, top: bool = True) -> Any:
    """google-genai's capture in the camelCase form, base64 decoded for comparison."""
    if isinstance(value, list):
        return [sdk_form(item, top=False) for item in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        key = _SNAKE.get(key, key)
        if key in _BASE64_FIELDS and isinstance(item, str):
            out[key] = base64.urlsafe_b64decode(item)
        elif key in ("args", "response", "parametersJsonSchema", "responseJsonSchema"):
            out[key] = item  # user data: never renamed
        else:
            out[key] = sdk_form(item, top=False)
    if top:
        if out.get("generationConfig") == {}:
            del out["generationConfig"]
        out.get("systemInstruction", {}).pop("role", None)
    return out


def openai_input(fixture: dict[str, Any]) -> dict[str, Any]:
    """The caller's side of a captured OpenAI request: what complete() would be given."""
    options = {
        name: fixture[name]
        for name in ("tools", "tool_choice", "response_format")
        if name in fixture
    }
    extra = {k: fixture[k] for k in ("parallel_tool_calls",) if k in fixture}
    return {"prompt": fixture["messages"], **options, "extra": extra}


# -- OpenAI-compatible requests ------------------------------------------------------------

OPENAI_REQUESTS = [
    "openai_request_tools_named_choice.json",
    "openai_request_two_turns.json",
    "openai_request_json_schema.json",
    "openai_request_images.json",
]


@pytest.mark.parametrize("name", OPENAI_REQUESTS)
async def test_openai_body_equals_the_sdk_body(openai_wire: Wire, name: str) -> None:
    captured = fixture_json(name)
    openai_wire.answer(fixture_json("openai_answer_parallel_calls.json"))
    await openai_wire.complete(request(model=captured["model"], **openai_input(captured)))
    assert openai_wire.bodies == [captured]


@pytest.mark.parametrize("name", OPENAI_REQUESTS)
async def test_openai_stream_body_adds_only_the_stream_fields(openai_wire: Wire, name: str) -> None:
    captured = fixture_json(name)
    openai_wire.answer(fixture_bytes("openai_stream_fragmented_calls.sse"))
    await openai_wire.stream(request(model=captured["model"], **openai_input(captured)))
    assert openai_wire.bodies == [
        {**captured, "stream": True, "stream_options": {"include_usage": True}}
    ]


# -- Gemini requests -----------------------------------------------------------------------

WEATHER_TOOL = fixture_json("openai_request_two_turns.json")["tools"]


async def test_gemini_tools_with_a_named_choice(gemini_wire: Wire) -> None:
    gemini_wire.answer(fixture_json("gemini_answer_parallel_calls.json"))
    await gemini_wire.complete(
        request(
            [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": "Weather in Paris and Rome?"},
            ],
            GEMINI_MODEL,
            tools=WEATHER_TOOL,
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
        )
    )
    assert sdk_form(gemini_wire.bodies[0]) == sdk_form(
        fixture_json("gemini_sdk_request_tools_any.json")
    )


async def test_gemini_two_turn_conversation_replays_the_model_turn(gemini_wire: Wire) -> None:
    """Gemini answered two parallel calls without ids, a signature on the first; the next
    turn sends both calls back with that signature, and the results in call order."""
    question = {"role": "user", "content": "Weather in Paris and Rome?"}
    gemini_wire.answer(fixture_json("gemini_answer_parallel_calls.json"))
    first = await gemini_wire.complete(
        request([question], GEMINI_MODEL, tools=WEATHER_TOOL, tool_choice="auto")
    )
    results = ['{"temp_c":18,"sky":"clear"}', '{"temp_c":24,"sky":"cloudy"}']
    assistant = {
        "role": "assistant",
        "content": None,
        "tool_calls": [call.to_dict() for call in first.tool_calls],
    }
    history = [
        question,
        assistant,
        *(
            {"role": "tool", "tool_call_id": call.id, "content": result}
            for call, result in zip(first.tool_calls, results, strict=True)
        ),
    ]
    gemini_wire.answer(fixture_json("gemini_answer_parallel_calls.json"))
    await gemini_wire.complete(
        request(history, GEMINI_MODEL, tools=WEATHER_TOOL, tool_choice="auto")
    )
    assert sdk_form(gemini_wire.bodies[1]) == sdk_form(
        fixture_json("gemini_sdk_request_two_turns.json")
    )


async def test_gemini_signature_comes_back_when_the_caller_drops_it(gemini_wire: Wire) -> None:
    """A caller who rebuilds the calls from id, name and arguments alone still sends the
    signature: the provider remembers the calls its answers issued."""
    question = {"role": "user", "content": "Weather in Paris and Rome?"}
    gemini_wire.answer(fixture_json("gemini_answer_parallel_calls.json"))
    first = await gemini_wire.complete(request([question], GEMINI_MODEL, tools=WEATHER_TOOL))
    plain_calls = [
        {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
        for c in first.tool_calls
    ]
    history = [
        question,
        {"role": "assistant", "content": None, "tool_calls": plain_calls},
        {"role": "tool", "tool_call_id": plain_calls[0]["id"], "content": '{"temp_c":18}'},
        {"role": "tool", "tool_call_id": plain_calls[1]["id"], "content": '{"temp_c":24}'},
    ]
    gemini_wire.answer(fixture_json("gemini_answer_parallel_calls.json"))
    await gemini_wire.complete(request(history, GEMINI_MODEL, tools=WEATHER_TOOL))
    model_turn = gemini_wire.bodies[1]["contents"][1]
    assert model_turn["parts"][0]["thoughtSignature"] == "EjRmaXh0dXJlLXNpZ/v/vy0wMDAx"
    assert "thoughtSignature" not in model_turn["parts"][1]
    # generated ids are the router's own: Gemini never sees them
    assert all("id" not in part["functionCall"] for part in model_turn["parts"])


async def test_gemini_issued_ids_go_back_as_they_came(gemini_wire: Wire) -> None:
    """The router's rendering of a one-call turn where Gemini issued `call_fx_1`."""
    answer = {
        "candidates": [
            {
                "content": {
                    "role": "model",
                    "parts": [
                        {
                            "functionCall": {
                                "id": "call_fx_1",
                                "name": "get_weather",
                                "args": {"city": "Paris", "unit": "celsius"},
                            },
                            "thoughtSignature": "EjRmaXh0dXJlLXNpZ/v/vy0wMDAx",
                        }
                    ],
                },
                "finishReason": "STOP",
            }
        ]
    }
    question = {"role": "user", "content": "Weather in Paris?"}
    gemini_wire.answer(answer)
    first = await gemini_wire.complete(request([question], GEMINI_MODEL, tools=WEATHER_TOOL))
    assert [c.id for c in first.tool_calls] == ["call_fx_1"]
    history = [
        question,
        first_message(first.tool_calls),
        {"role": "tool", "tool_call_id": "call_fx_1", "content": '{"temp_c":18}'},
    ]
    gemini_wire.answer(answer)
    await gemini_wire.complete(request(history, GEMINI_MODEL, tools=WEATHER_TOOL))
    assert gemini_wire.bodies[1] == fixture_json("gemini_request_one_call_turn.json")


def first_message(calls: list[ToolCall]) -> dict[str, Any]:
    return {"role": "assistant", "content": None, "tool_calls": calls}


async def test_gemini_json_schema_and_json_mode(gemini_wire: Wire) -> None:
    captured = fixture_json("openai_request_json_schema.json")
    expected = [
        json.loads(line)
        for line in (
            fixture_bytes("gemini_sdk_request_json_schema.jsonl").decode().strip().splitlines()
        )
    ]
    for response_format in (captured["response_format"], {"type": "json_object"}):
        gemini_wire.answer({"candidates": [{"content": {"parts": [{"text": "{}"}]}}]})
        await gemini_wire.complete(
            request(captured["messages"], GEMINI_MODEL, response_format=response_format)
        )
    assert [sdk_form(body) for body in gemini_wire.bodies] == [sdk_form(e) for e in expected]


async def test_gemini_images_data_url_and_https(gemini_wire: Wire) -> None:
    captured = fixture_json("openai_request_images.json")
    gemini_wire.answer({"candidates": [{"content": {"parts": [{"text": "a cat"}]}}]})
    await gemini_wire.complete(request(captured["messages"], GEMINI_MODEL))
    assert sdk_form(gemini_wire.bodies[0]) == sdk_form(
        fixture_json("gemini_sdk_request_images.json")
    )
    # the base64 text goes out exactly as the caller wrote it
    inline = gemini_wire.bodies[0]["contents"][0]["parts"][1]["inlineData"]
    assert captured["messages"][0]["content"][1]["image_url"]["url"].endswith(inline["data"])


# -- answers, both wires, whole and streamed -----------------------------------------------

PARIS_ROME = [
    ("get_weather", {"city": "Paris", "unit": "celsius"}),
    ("get_weather", {"city": "Rome", "unit": "celsius"}),
]


def calls_of(calls: Any) -> list[tuple[str, Any]]:
    return [(c.name, json.loads(c.arguments)) for c in calls]


async def test_openai_answer_with_parallel_calls(openai_wire: Wire) -> None:
    openai_wire.answer(fixture_json("openai_answer_parallel_calls.json"))
    response = await openai_wire.complete(request("Weather?", OPENAI_MODEL, tools=WEATHER_TOOL))
    assert response.text == ""
    assert response.finish_reason == "tool_calls"
    assert response.tool_calls == [
        ToolCall("call_fx_1", "get_weather", '{"city":"Paris","unit":"celsius"}'),
        ToolCall("call_fx_2", "get_weather", '{"city":"Rome","unit":"celsius"}'),
    ]
    assert response.usage == Usage(prompt_tokens=96, completion_tokens=38, total_tokens=134)


async def test_openai_stream_with_fragmented_arguments(openai_wire: Wire) -> None:
    openai_wire.answer(fixture_bytes("openai_stream_fragmented_calls.sse"))
    events = await openai_wire.stream(request("Weather?", OPENAI_MODEL, tools=WEATHER_TOOL))
    *text, last = events
    assert not text  # no text delta: the calls come whole, on the closing event
    assert last.finish_reason == "tool_calls"
    assert [c.id for c in last.tool_calls] == ["call_fx_1", "call_fx_2"]
    assert [c.arguments for c in last.tool_calls] == [
        '{"city":"Paris","unit":"celsius"}',
        '{"city":"Rome","unit":"celsius"}',
    ]
    assert last.usage == Usage(prompt_tokens=96, completion_tokens=38, total_tokens=134)


async def test_groq_stream_with_whole_calls_and_usage_in_x_groq(openai_wire: Wire) -> None:
    openai_wire.answer(fixture_bytes("openai_stream_groq_whole_call.sse"))
    events = await openai_wire.stream(request("Weather?", OPENAI_MODEL, tools=WEATHER_TOOL))
    assert events[-1].tool_calls == [
        ToolCall("call_fx_3", "get_weather", '{"city":"Paris","unit":"celsius"}')
    ]
    assert events[-1].usage == Usage(prompt_tokens=96, completion_tokens=19, total_tokens=115)


async def test_gemini_answer_with_parallel_calls(gemini_wire: Wire) -> None:
    gemini_wire.answer(fixture_json("gemini_answer_parallel_calls.json"))
    response = await gemini_wire.complete(request("Weather?", GEMINI_MODEL, tools=WEATHER_TOOL))
    assert response.text == ""
    assert response.finish_reason == "tool_calls"
    assert calls_of(response.tool_calls) == PARIS_ROME
    ids = [c.id for c in response.tool_calls]
    assert all(i.startswith(GENERATED_CALL_ID) for i in ids) and len(set(ids)) == 2
    signatures = [c.thought_signature for c in response.tool_calls]
    assert signatures == ["EjRmaXh0dXJlLXNpZ/v/vy0wMDAx", None]
    # thinking tokens are billed as output
    assert response.usage == Usage(prompt_tokens=61, completion_tokens=102, total_tokens=163)


async def test_gemini_stream_with_calls_in_two_events(gemini_wire: Wire) -> None:
    gemini_wire.answer(fixture_bytes("gemini_stream_calls.sse"))
    events = await gemini_wire.stream(request("Weather?", GEMINI_MODEL, tools=WEATHER_TOOL))
    assert len(events) == 1
    last = events[0]
    assert last.finish_reason == "tool_calls"
    assert calls_of(last.tool_calls) == PARIS_ROME
    assert last.tool_calls[0].thought_signature == "EjRmaXh0dXJlLXNpZ/v/vy0wMDAx"


async def test_both_wires_read_the_same_calls(openai_wire: Wire, gemini_wire: Wire) -> None:
    openai_wire.answer(fixture_json("openai_answer_parallel_calls.json"))
    gemini_wire.answer(fixture_json("gemini_answer_parallel_calls.json"))
    openai_wire.answer(fixture_bytes("openai_stream_fragmented_calls.sse"))
    gemini_wire.answer(fixture_bytes("gemini_stream_calls.sse"))
    req_o = request("Weather?", OPENAI_MODEL, tools=WEATHER_TOOL)
    req_g = request("Weather?", GEMINI_MODEL, tools=WEATHER_TOOL)
    seen = [
        calls_of((await openai_wire.complete(req_o)).tool_calls),
        calls_of((await gemini_wire.complete(req_g)).tool_calls),
        calls_of((await openai_wire.stream(req_o))[-1].tool_calls),
        calls_of((await gemini_wire.stream(req_g))[-1].tool_calls),
    ]
    assert seen == [PARIS_ROME] * 4


async def test_signatures_never_reach_an_openai_compatible_provider(openai_wire: Wire) -> None:
    call = ToolCall("call_1", "get_weather", '{"city":"Paris"}', thought_signature="c2ln")
    history = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [call.to_dict()]},
        {"role": "tool", "tool_call_id": "call_1", "content": "18"},
    ]
    openai_wire.answer(fixture_json("openai_answer_parallel_calls.json"))
    await openai_wire.complete(request(history, OPENAI_MODEL, tools=WEATHER_TOOL))
    sent = openai_wire.bodies[0]["messages"][1]
    assert sent == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
            }
        ],
    }


async def test_gemini_drops_what_it_has_no_word_for(gemini_wire: Wire) -> None:
    gemini_wire.answer({"candidates": [{"content": {"parts": [{"text": "ok"}]}}]})
    await gemini_wire.complete(
        request(
            "Weather?",
            GEMINI_MODEL,
            tools=WEATHER_TOOL,
            extra={"parallel_tool_calls": False, "safetySettings": []},
        )
    )
    body = gemini_wire.bodies[0]
    assert "parallel_tool_calls" not in body
    assert body["safetySettings"] == []  # other extras still go through as written
    # strict has no Gemini counterpart either
    assert "strict" not in json.dumps(body["tools"])


async def test_gemini_image_forms(gemini_wire: Wire) -> None:
    gemini_wire.answer({"candidates": [{"content": {"parts": [{"text": "ok"}]}}]})
    plain = "data:image/webp,RIFF%00%01"  # not base64: encoded on the way
    await gemini_wire.complete(
        request(
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": plain}},
                        {"type": "image_url", "image_url": {"url": "https://x.test/a.PNG?s=1"}},
                        {"type": "image_url", "image_url": {"url": "https://x.test/photo"}},
                    ],
                }
            ],
            GEMINI_MODEL,
        )
    )
    parts = gemini_wire.bodies[0]["contents"][0]["parts"]
    assert parts[0] == {
        "inlineData": {
            "mimeType": "image/webp",
            "data": base64.b64encode(b"RIFF\x00\x01").decode(),
        }
    }
    assert parts[1]["fileData"] == {"mimeType": "image/png", "fileUri": "https://x.test/a.PNG?s=1"}
    assert parts[2]["fileData"]["mimeType"] == "image/jpeg"


@pytest.mark.parametrize(
    ("messages", "path"),
    [
        (
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": "data:image/gif;base64,R0lG"}}
                    ],
                }
            ],
            "prompt[0].content[0]",
        ),
        (
            [
                {"role": "user", "content": "Go"},
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "c",
                            "type": "function",
                            "function": {"name": "9lives", "arguments": "{}"},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "c", "content": "ok"},
            ],
            "prompt[1].tool_calls[0].function.name",
        ),
        (
            [
                {"role": "user", "content": "Go"},
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "c",
                            "type": "function",
                            "function": {"name": "f", "arguments": "{oops"},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "c", "content": "ok"},
            ],
            "prompt[1].tool_calls[0].function.arguments",
        ),
    ],
)
async def test_what_gemini_cannot_take_fails_before_sending(
    gemini_wire: Wire, messages: list[Any], path: str
) -> None:
    from llmroute.providers.base import AttemptFailed

    with pytest.raises(AttemptFailed) as info:
        await gemini_wire.complete(request(messages, GEMINI_MODEL))
    assert path in info.value.message
    assert (info.value.kind, info.value.reached, info.value.retryable) == (
        "client_error",
        False,
        False,
    )
    assert gemini_wire.bodies == []
