"""The prompt model: what is accepted, and every malformed prompt refused before anything is
sent, with the path of the offending value in the error."""

from __future__ import annotations

import re
from typing import Any

import pytest

from llmroute._request import build_request, estimate_prompt_tokens
from llmroute.trace import ToolCall

PNG = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGP4z8DwHwAF"
    "AAH/iZk9HQAAAABJRU5ErkJggg=="
)
TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
}
USER = {"role": "user", "content": "Weather in Paris?"}
ASKED = {"role": "assistant", "content": None, "tool_calls": [CALL]}
ANSWERED = {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c":18}'}


def build(prompt: Any, **options: Any) -> Any:
    return build_request(prompt, None, None, None, None, {}, **options)


def user(*parts: Any) -> dict[str, Any]:
    return {"role": "user", "content": list(parts)}


def image(url: str, **more: Any) -> dict[str, Any]:
    return {"type": "image_url", "image_url": {"url": url, **more}}


# (prompt, options, error type, path the message must name)
MALFORMED: list[tuple[Any, dict[str, Any], type[Exception], str]] = [
    (None, {}, TypeError, "prompt"),
    (42, {}, TypeError, "prompt"),
    (USER, {}, TypeError, "prompt"),
    ([], {}, ValueError, "prompt"),
    (["hello"], {}, TypeError, "prompt[0]"),
    ([{"content": "hi"}], {}, ValueError, "prompt[0].role"),
    ([{"role": 1, "content": "hi"}], {}, TypeError, "prompt[0].role"),
    ([USER, {"role": "robot", "content": "hi"}], {}, ValueError, "prompt[1].role"),
    ([{"role": "user"}], {}, ValueError, "prompt[0].content"),
    ([{"role": "user", "content": None}], {}, TypeError, "prompt[0].content"),
    ([{"role": "user", "content": 7}], {}, TypeError, "prompt[0].content"),
    ([{"role": "user", "content": {"text": "hi"}}], {}, TypeError, "prompt[0].content"),
    ([{"role": "user", "content": []}], {}, ValueError, "prompt[0].content"),
    ([user("hi")], {}, TypeError, "prompt[0].content[0]"),
    ([user({"text": "hi"})], {}, ValueError, "prompt[0].content[0].type"),
    (
        [USER, user({"type": "text", "text": "a"}, {"type": "audio"})],
        {},
        ValueError,
        "prompt[1].content[1].type",
    ),
    ([user({"type": "text", "text": 3})], {}, TypeError, "prompt[0].content[0].text"),
    (
        [user({"type": "image_url", "image_url": "https://x.test/a.png"})],
        {},
        TypeError,
        "prompt[0].content[0].image_url",
    ),
    ([user(image(None))], {}, TypeError, "prompt[0].content[0].image_url.url"),
    ([user(image("ftp://x.test/a.png"))], {}, ValueError, "prompt[0].content[0].image_url.url"),
    (
        [user(image("data:text/plain;base64,aGk="))],
        {},
        ValueError,
        "prompt[0].content[0].image_url.url",
    ),
    ([user(image(PNG, detail="ultra"))], {}, ValueError, "prompt[0].content[0].image_url.detail"),
    (
        [{"role": "system", "content": [image(PNG)]}, USER],
        {},
        ValueError,
        "prompt[0].content[0].type",
    ),
    ([USER, {"role": "assistant", "content": None}], {}, TypeError, "prompt[1].content"),
    (
        [USER, {"role": "assistant", "content": None, "tool_calls": {}}],
        {},
        TypeError,
        "prompt[1].tool_calls",
    ),
    (
        [USER, {"role": "assistant", "content": None, "tool_calls": []}],
        {},
        ValueError,
        "prompt[1].tool_calls",
    ),
    (
        [USER, {"role": "assistant", "tool_calls": ["call_1"]}],
        {},
        TypeError,
        "prompt[1].tool_calls[0]",
    ),
    (
        [USER, {"role": "assistant", "tool_calls": [{**CALL, "id": ""}]}, ANSWERED],
        {},
        ValueError,
        "prompt[1].tool_calls[0].id",
    ),
    (
        [USER, {"role": "assistant", "tool_calls": [{**CALL, "type": "code"}]}, ANSWERED],
        {},
        ValueError,
        "prompt[1].tool_calls[0].type",
    ),
    (
        [USER, {"role": "assistant", "tool_calls": [{**CALL, "function": None}]}, ANSWERED],
        {},
        TypeError,
        "prompt[1].tool_calls[0].function",
    ),
    (
        [
            USER,
            {"role": "assistant", "tool_calls": [{**CALL, "function": {"arguments": "{}"}}]},
            ANSWERED,
        ],
        {},
        ValueError,
        "prompt[1].tool_calls[0].function.name",
    ),
    (
        [
            USER,
            {
                "role": "assistant",
                "tool_calls": [
                    {**CALL, "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}
                ],
            },
            ANSWERED,
        ],
        {},
        TypeError,
        "prompt[1].tool_calls[0].function.arguments",
    ),
    ([USER, ASKED, {"role": "tool", "content": "18"}], {}, ValueError, "prompt[2].tool_call_id"),
    (
        [USER, ASKED, {**ANSWERED, "tool_call_id": "call_9"}],
        {},
        ValueError,
        "prompt[2].tool_call_id",
    ),
    ([USER, ASKED, {**ANSWERED, "content": {"temp_c": 18}}], {}, TypeError, "prompt[2].content"),
    ([USER, ASKED, USER], {}, ValueError, "prompt[1].tool_calls"),
    ([USER, ASKED], {}, ValueError, "prompt[1].tool_calls"),
    ([USER, ASKED, ANSWERED, ANSWERED], {}, ValueError, "prompt[3].tool_call_id"),
    ([{**USER, "name": 5}], {}, TypeError, "prompt[0].name"),
    # the options beside the prompt
    ("hi", {"tools": TOOL}, TypeError, "tools"),
    ("hi", {"tools": [{"type": "retrieval"}]}, ValueError, "tools[0].type"),
    (
        "hi",
        {"tools": [{"type": "function", "function": {"name": "get weather"}}]},
        ValueError,
        "tools[0].function.name",
    ),
    (
        "hi",
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": "{}"}}]},
        TypeError,
        "tools[0].function.parameters",
    ),
    ("hi", {"tool_choice": "auto"}, ValueError, "tool_choice"),
    ("hi", {"tools": [TOOL], "tool_choice": "always"}, ValueError, "tool_choice"),
    (
        "hi",
        {"tools": [TOOL], "tool_choice": {"type": "function", "function": {"name": "x"}}},
        ValueError,
        "tool_choice.function.name",
    ),
    ("hi", {"response_format": "json"}, TypeError, "response_format"),
    ("hi", {"response_format": {"type": "yaml"}}, ValueError, "response_format.type"),
    ("hi", {"response_format": {"type": "json_schema"}}, TypeError, "response_format.json_schema"),
    (
        "hi",
        {"response_format": {"type": "json_schema", "json_schema": {"name": "w"}}},
        TypeError,
        "response_format.json_schema.schema",
    ),
]


@pytest.mark.parametrize(
    ("prompt", "options", "error", "path"),
    MALFORMED,
    ids=[f"{i}:{case[3]}" for i, case in enumerate(MALFORMED)],
)
def test_malformed_prompt_names_its_path(
    prompt: Any, options: dict[str, Any], error: type[Exception], path: str
) -> None:
    with pytest.raises(error) as info:
        build(prompt, **options)
    message = str(info.value)
    # the path starts the message, whole (prompt[1] must not match prompt[1].role)
    assert re.match(re.escape(path) + r"(:|\s)", message), message


def test_the_table_is_long_enough() -> None:
    assert len(MALFORMED) >= 20


def test_a_whole_tool_conversation_with_images_is_accepted() -> None:
    prompt = [
        {"role": "system", "content": "You are terse."},
        user({"type": "text", "text": "Weather where this was taken?"}, image(PNG)),
        {"role": "assistant", "content": None, "tool_calls": [CALL]},
        ANSWERED,
        {"role": "assistant", "content": [{"type": "text", "text": "18 degrees."}]},
        {"role": "user", "content": "And tomorrow?", "name": "ann"},
    ]
    request = build(
        prompt, tools=[TOOL], tool_choice="auto", response_format={"type": "json_object"}
    )
    assert list(request.messages) == prompt
    assert request.needs == {"tools", "vision", "json"}


def test_needs_are_only_what_the_request_uses() -> None:
    assert build("hi").needs == frozenset()
    assert build([USER]).needs == frozenset()
    assert build("hi", response_format={"type": "text"}).needs == frozenset()
    assert build("hi", tools=[]).tools is None
    assert build("hi", tools=[TOOL]).needs == {"tools"}
    assert build([user(image("https://x.test/cat.jpg"))]).needs == {"vision"}
    # a tool history needs a model that reads tool calls, even without tools= this time
    assert build([USER, ASKED, ANSWERED]).needs == {"tools"}


def test_options_passed_the_old_way_through_extra_are_checked_too() -> None:
    request = build_request("hi", None, None, None, None, {"tools": [TOOL], "seed": 1})
    assert request.tools == [TOOL]
    assert dict(request.extra) == {"seed": 1}
    with pytest.raises(ValueError, match=r"^tool_choice"):
        build_request("hi", None, None, None, None, {"tool_choice": "auto"})


def test_tool_call_objects_and_signatures_are_taken_out_of_the_messages() -> None:
    signed = ToolCall("call_1", "get_weather", '{"city":"Paris"}', thought_signature="c2ln")
    for calls in ([signed], [signed.to_dict()]):
        request = build([USER, {"role": "assistant", "tool_calls": calls}, ANSWERED])
        assert request.messages[1]["tool_calls"] == [CALL]
        assert request.memo == {"thought_signatures": {"call_1": "c2ln"}}
    assert build([USER, ASKED, ANSWERED]).messages[1] is ASKED  # nothing to change: no copy


def test_estimate_counts_a_token_per_character_outside_ascii() -> None:
    cjk = "東京の天気はどうですか" * 100
    assert build(cjk).prompt_estimate >= len(cjk)
    assert build([{"role": "user", "content": cjk}]).prompt_estimate >= len(cjk)
    assert estimate_prompt_tokens([{"role": "user", "content": cjk}]) >= len(cjk)
    mixed = "Paris " * 100 + "é" * 50
    assert build(mixed).prompt_estimate == 600 // 4 + 50 + 5
    # plain ASCII stays at four characters a token, plus the framing it always had
    assert build("x" * 400).prompt_estimate == 105


def test_estimate_counts_images_not_their_base64_and_includes_tools() -> None:
    big = "data:image/png;base64," + "A" * 400_000
    with_image = build([user({"type": "text", "text": "what?"}, image(big))]).prompt_estimate
    assert 1000 <= with_image < 2000
    assert build("hi", tools=[TOOL]).prompt_estimate > build("hi").prompt_estimate
