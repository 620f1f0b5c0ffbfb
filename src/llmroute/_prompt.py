"""Checking what a caller passed as a prompt, tools and response format, in one pass.

The prompt is the OpenAI Chat Completions shape, which is also the router's own message
model: adapters for other wires translate from it. Checking happens once per request, before
anything is sent, and every complaint names the path of the offending value
(`prompt[2].content[0].type`): a `TypeError` for a value of the wrong type, a `ValueError`
for a wrong value. The same pass notes what the request needs beyond text (tools, vision,
JSON) and estimates its prompt tokens, so nothing walks the messages twice.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

from llmroute.providers.base import Message, Need
from llmroute.trace import ToolCall

__all__ = ["Checked", "check_prompt", "check_tools", "text_tokens"]

_ROLES: Final = "system, user, assistant, tool"
_PART_TYPES: Final = frozenset({"text", "image_url"})
_DETAILS: Final = frozenset({"auto", "low", "high"})
_CHOICES: Final = frozenset({"auto", "none", "required"})
_FORMATS: Final = frozenset({"text", "json_object", "json_schema"})
# OpenAI's rule for function names; the strictest wire llmroute sends them on as they are.
_FUNCTION_NAME: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: framing tokens per message (role markers and separators), as the wires count them
_PER_MESSAGE: Final = 4
# Providers count an image from a few dozen tokens (a small, low-detail one) to over a
# thousand (a large one cut into tiles); the estimate takes the high end, because it decides
# admission against tpm and context windows and is corrected by the real usage afterwards.
IMAGE_TOKENS: Final = 1000


def text_tokens(text: str) -> int:
    """A token estimate that never undercounts: four ASCII characters a token, and a whole
    token for every other character (CJK text runs near one token a character)."""
    if text.isascii():  # O(1) in CPython: the string knows it
        return len(text) // 4
    ascii_chars = len(text.encode("ascii", "ignore"))
    return ascii_chars // 4 + (len(text) - ascii_chars)


class Checked:
    """A prompt that passed: its messages, what they need and their token estimate.

    `signatures` maps a tool-call id to the Gemini thought signature the caller handed back
    with it; the signature itself is taken out of the messages, so it can never reach
    another provider.
    """

    __slots__ = ("estimate", "messages", "needs", "signatures")

    def __init__(self) -> None:
        self.messages: list[Message] = []
        self.needs: set[Need] = set()
        self.estimate = 1
        self.signatures: dict[str, str] | None = None


def check_prompt(prompt: object) -> Checked:
    """Check a list of messages (a string prompt never gets here)."""
    if (
        prompt is None
        or isinstance(prompt, str | bytes | Mapping)
        or not isinstance(prompt, Sequence)
    ):
        what = (
            "a single message (wrap it in a list)"
            if isinstance(prompt, Mapping)
            else (type(prompt).__name__)
        )
        raise TypeError(f"prompt: expected a string or a list of messages, got {what}")
    if not prompt:
        raise ValueError("prompt: an empty message list")
    checked = Checked()
    calls = _OpenCalls()
    for i, message in enumerate(prompt):
        path = f"prompt[{i}]"
        role = _role(message, path)
        if role != "tool":
            calls.close(path)
        if role == "user":
            _check_content(message, path, checked, images=True, optional=False)
        elif role == "system":
            _check_content(message, path, checked, images=False, optional=False)
        elif role == "assistant":
            message = _check_assistant(message, path, checked, calls)
        elif role == "tool":
            _check_tool_result(message, path, checked, calls)
        else:
            raise ValueError(f"{path}.role: {role!r} is not one of {_ROLES}")
        _check_name(message, path)
        checked.estimate += _PER_MESSAGE
        checked.messages.append(message)
    calls.close("the end of the prompt")
    return checked


def _role(message: object, path: str) -> str:
    if not isinstance(message, Mapping):
        raise TypeError(f"{path}: expected a mapping with role and content")
    role = message.get("role")
    if not isinstance(role, str):
        if role is None:
            raise ValueError(f"{path}.role: missing (expected one of {_ROLES})")
        raise TypeError(f"{path}.role: expected a string, got {type(role).__name__}")
    return role


class _OpenCalls:
    """The tool calls of the latest assistant message still waiting for their results.

    Every call must be answered by a `tool` message before the conversation goes on, as
    every wire demands (Gemini counts the results against the calls).
    """

    __slots__ = ("open", "path")

    def __init__(self) -> None:
        self.path = ""
        #: call id -> function name, for calls still waiting
        self.open: dict[str, str] = {}

    def opened(self, path: str, call_id: str, name: str) -> None:
        self.path = path
        self.open[call_id] = name

    def answer(self, path: str, call_id: str) -> None:
        if self.open.pop(call_id, None) is None:
            raise ValueError(
                f"{path}.tool_call_id: {call_id!r} is not a call of the assistant message "
                "just before still waiting for its result"
            )

    def close(self, where: str) -> None:
        if self.open:
            waiting = ", ".join(repr(call_id) for call_id in self.open)
            raise ValueError(f"{self.path}.tool_calls: no tool result for {waiting} before {where}")


def _check_name(message: Mapping[str, Any], path: str) -> None:
    name = message.get("name")
    if name is not None and not isinstance(name, str):
        raise TypeError(f"{path}.name: expected a string, got {type(name).__name__}")


def _check_content(
    message: Mapping[str, Any], path: str, checked: Checked, *, images: bool, optional: bool
) -> None:
    if "content" not in message:
        if optional:
            return
        raise ValueError(f"{path}.content: missing")
    content = message["content"]
    if isinstance(content, str):
        checked.estimate += text_tokens(content)
        return
    if content is None:
        if optional:
            return
        raise TypeError(f"{path}.content: expected a string or a list of parts, got None")
    if isinstance(content, bytes | Mapping) or not isinstance(content, Sequence):
        raise TypeError(
            f"{path}.content: expected a string or a list of parts, got {type(content).__name__}"
        )
    if not content:
        raise ValueError(f"{path}.content: an empty list of parts")
    for j, part in enumerate(content):
        _check_part(part, f"{path}.content[{j}]", checked, images=images)


def _check_part(part: object, path: str, checked: Checked, *, images: bool) -> None:
    if not isinstance(part, Mapping):
        raise TypeError(f"{path}: expected a mapping with a type, got {type(part).__name__}")
    kind = part.get("type")
    if kind not in _PART_TYPES:
        if kind is None:
            raise ValueError(f"{path}.type: missing (expected text or image_url)")
        raise ValueError(f"{path}.type: {kind!r} is not text or image_url")
    if kind == "text":
        text = part.get("text")
        if not isinstance(text, str):
            raise TypeError(f"{path}.text: expected a string, got {type(text).__name__}")
        checked.estimate += text_tokens(text)
        return
    if not images:
        raise ValueError(f"{path}.type: images are accepted in user messages only")
    image = part.get("image_url")
    if not isinstance(image, Mapping):
        raise TypeError(
            f"{path}.image_url: expected a mapping with a url, got {type(image).__name__}"
        )
    url = image.get("url")
    if not isinstance(url, str):
        raise TypeError(f"{path}.image_url.url: expected a string, got {type(url).__name__}")
    if url.startswith("data:"):
        media_type, comma, _ = url[5:].partition(",")
        if not comma or not media_type.startswith("image/"):
            raise ValueError(
                f"{path}.image_url.url: a data URL must read data:image/<type>;base64,<data>"
            )
    elif not url.startswith(("https://", "http://")):
        raise ValueError(f"{path}.image_url.url: expected a data: URL or an http(s) URL")
    detail = image.get("detail")
    if detail is not None and detail not in _DETAILS:
        raise ValueError(f"{path}.image_url.detail: {detail!r} is not auto, low or high")
    checked.needs.add("vision")
    checked.estimate += IMAGE_TOKENS


def _check_assistant(
    message: Mapping[str, Any], path: str, checked: Checked, open_calls: _OpenCalls
) -> Mapping[str, Any]:
    calls = message.get("tool_calls")
    if calls is None:
        _check_content(message, path, checked, images=False, optional=False)
        return message
    _check_content(message, path, checked, images=False, optional=True)
    if isinstance(calls, str | bytes | Mapping) or not isinstance(calls, Sequence):
        raise TypeError(f"{path}.tool_calls: expected a list, got {type(calls).__name__}")
    if not calls:
        raise ValueError(f"{path}.tool_calls: an empty list (leave the key out instead)")
    checked.needs.add("tools")
    wire_calls: list[Mapping[str, Any]] = []
    rebuilt = False
    for k, call in enumerate(calls):
        call_path = f"{path}.tool_calls[{k}]"
        wire, signature = _check_call(call, call_path)
        function = wire["function"]
        checked.estimate += text_tokens(function["name"]) + text_tokens(function["arguments"])
        open_calls.opened(path, wire["id"], function["name"])
        if signature is not None:
            if checked.signatures is None:
                checked.signatures = {}
            checked.signatures[wire["id"]] = signature
        rebuilt = rebuilt or wire is not call
        wire_calls.append(wire)
    if not rebuilt:
        return message
    # A ToolCall object or a signature in extra_content: send a plain copy.
    return {**message, "tool_calls": wire_calls}


def _check_call(call: object, path: str) -> tuple[Mapping[str, Any], str | None]:
    """The call in wire shape (the same object when it needs no change) and its signature."""
    if isinstance(call, ToolCall):
        return {
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": call.arguments},
        }, call.thought_signature
    if not isinstance(call, Mapping):
        raise TypeError(f"{path}: expected a mapping (or a ToolCall), got {type(call).__name__}")
    call_id = call.get("id")
    if not isinstance(call_id, str) or not call_id:
        raise _bad(f"{path}.id", call_id, "a non-empty string")
    kind = call.get("type", "function")
    if kind != "function":
        raise ValueError(f"{path}.type: {kind!r} is not 'function'")
    function = call.get("function")
    if not isinstance(function, Mapping):
        raise TypeError(
            f"{path}.function: expected a mapping with name and arguments, "
            f"got {type(function).__name__}"
        )
    name = function.get("name")
    if not isinstance(name, str) or not name:
        raise _bad(f"{path}.function.name", name, "a non-empty string")
    arguments = function.get("arguments")
    if not isinstance(arguments, str):
        raise TypeError(
            f"{path}.function.arguments: expected the JSON text as a string "
            f"(json.dumps it), got {type(arguments).__name__}"
        )
    extra = call.get("extra_content")
    if extra is None:
        return call, None
    return _without_signature(call, extra)


def _without_signature(
    call: Mapping[str, Any], extra: object
) -> tuple[Mapping[str, Any], str | None]:
    """The call without `extra_content` (never sent on), and the signature it carried."""
    google = extra.get("google") if isinstance(extra, Mapping) else None
    signature = google.get("thought_signature") if isinstance(google, Mapping) else None
    stripped = {key: value for key, value in call.items() if key != "extra_content"}
    return stripped, signature if isinstance(signature, str) else None


def _check_tool_result(
    message: Mapping[str, Any], path: str, checked: Checked, calls: _OpenCalls
) -> None:
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise _bad(f"{path}.tool_call_id", call_id, "the id of the call this answers")
    calls.answer(path, call_id)
    checked.needs.add("tools")
    _check_content(message, path, checked, images=False, optional=False)


def _bad(path: str, value: object, expected: str) -> TypeError | ValueError:
    if value is None or isinstance(value, str):
        return ValueError(f"{path}: expected {expected}, got {value!r}")
    return TypeError(f"{path}: expected {expected}, got {type(value).__name__}")


# -- tools, tool_choice, response_format ---------------------------------------------------


def check_tools(
    tools: object, tool_choice: object, response_format: object, needs: set[Need]
) -> tuple[Sequence[Mapping[str, Any]] | None, int]:
    """Check the three options; add what they need to `needs`. Returns the tools (None for
    none) and their token estimate."""
    names: set[str] = set()
    estimate = 0
    if tools is not None:
        if isinstance(tools, str | bytes | Mapping) or not isinstance(tools, Sequence):
            raise TypeError(f"tools: expected a list, got {type(tools).__name__}")
        for k, tool in enumerate(tools):
            names.add(_check_tool(tool, f"tools[{k}]"))
        if tools:
            needs.add("tools")
            # Declarations count against the prompt as the JSON the model reads.
            estimate = text_tokens(json.dumps(tools, ensure_ascii=False, default=str))
        else:
            tools = None
    if tool_choice is not None:
        _check_choice(tool_choice, names)
    if response_format is not None:
        _check_format(response_format, needs)
    return tools, estimate


def _check_tool(tool: object, path: str) -> str:
    if not isinstance(tool, Mapping):
        raise TypeError(f"{path}: expected a mapping, got {type(tool).__name__}")
    if tool.get("type") != "function":
        raise ValueError(f"{path}.type: {tool.get('type')!r} is not 'function'")
    function = tool.get("function")
    if not isinstance(function, Mapping):
        raise TypeError(f"{path}.function: expected a mapping, got {type(function).__name__}")
    name = function.get("name")
    if not isinstance(name, str):
        raise _bad(f"{path}.function.name", name, "a string")
    if not _FUNCTION_NAME.fullmatch(name):
        raise ValueError(f"{path}.function.name: {name!r} must be 1 to 64 letters, digits, _ or -")
    for key, kind, label in (
        ("description", str, "a string"),
        ("parameters", Mapping, "a JSON Schema mapping"),
        ("strict", bool, "a bool"),
    ):
        value = function.get(key)
        if value is not None and not isinstance(value, kind):
            raise TypeError(f"{path}.function.{key}: expected {label}, got {type(value).__name__}")
    return name


def _check_choice(choice: object, names: set[str]) -> None:
    if not names:
        raise ValueError("tool_choice: given without tools")
    if isinstance(choice, str):
        if choice not in _CHOICES:
            raise ValueError(f"tool_choice: {choice!r} is not auto, none, required or a function")
        return
    if not isinstance(choice, Mapping):
        raise TypeError(f"tool_choice: expected a string or a mapping, got {type(choice).__name__}")
    if choice.get("type") != "function":
        raise ValueError(f"tool_choice.type: {choice.get('type')!r} is not 'function'")
    function = choice.get("function")
    name = function.get("name") if isinstance(function, Mapping) else None
    if not isinstance(name, str):
        raise TypeError("tool_choice.function.name: expected the name of one of the tools")
    if name not in names:
        raise ValueError(f"tool_choice.function.name: {name!r} is not one of the tools")


def _check_format(response_format: object, needs: set[Need]) -> None:
    if not isinstance(response_format, Mapping):
        raise TypeError(
            f"response_format: expected a mapping, got {type(response_format).__name__}"
        )
    kind = response_format.get("type")
    if kind not in _FORMATS:
        raise ValueError(f"response_format.type: {kind!r} is not json_object, json_schema or text")
    if kind == "text":
        return
    needs.add("json")
    if kind == "json_object":
        return
    spec = response_format.get("json_schema")
    if not isinstance(spec, Mapping):
        raise TypeError(
            "response_format.json_schema: expected a mapping with name and schema, "
            f"got {type(spec).__name__}"
        )
    if not isinstance(spec.get("name"), str):
        raise _bad("response_format.json_schema.name", spec.get("name"), "a string")
    if not isinstance(spec.get("schema"), Mapping):
        raise TypeError(
            "response_format.json_schema.schema: expected a JSON Schema mapping, "
            f"got {type(spec.get('schema')).__name__}"
        )
