"""How the fakes write tool calls on each wire: OpenAI `tool_calls` (whole, or streamed in
fragments keyed by index) and Gemini `functionCall` parts."""

from __future__ import annotations

import json
from collections.abc import Sequence

from llmroute.trace import ToolCall

__all__ = ["call_fragments", "calls_text", "finish_with", "gemini_call_part", "openai_calls"]


def calls_text(calls: Sequence[ToolCall]) -> str:
    return "".join(call.name + call.arguments for call in calls)


def finish_with(finish: str | None, calls: Sequence[ToolCall]) -> str | None:
    return "tool_calls" if calls and finish == "stop" else finish


def openai_calls(calls: tuple[ToolCall, ...]) -> list[dict[str, object]]:
    return [
        {
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": call.arguments},
        }
        for call in calls
    ]


def call_fragments(calls: tuple[ToolCall, ...], size: int) -> list[list[dict[str, object]]]:
    """Each call as OpenAI streams it: a head with id, type, name and empty arguments, then
    the arguments `size` characters at a time (size 0: the whole call in one delta)."""
    deltas: list[list[dict[str, object]]] = []
    for index, call in enumerate(calls):
        if size <= 0:
            whole = openai_calls((call,))[0]
            deltas.append([{"index": index, **whole}])
            continue
        head = {
            "index": index,
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
        deltas.append([head])
        arguments = call.arguments
        for start in range(0, len(arguments), size):
            piece = arguments[start : start + size]
            deltas.append([{"index": index, "function": {"arguments": piece}}])
    return deltas


def gemini_call_part(call: ToolCall) -> dict[str, object]:
    function_call: dict[str, object] = {}
    if call.id:
        function_call["id"] = call.id
    function_call["name"] = call.name
    function_call["args"] = json.loads(call.arguments) if call.arguments.strip() else {}
    part: dict[str, object] = {"functionCall": function_call}
    if call.thought_signature is not None:
        part["thoughtSignature"] = call.thought_signature
    return part
