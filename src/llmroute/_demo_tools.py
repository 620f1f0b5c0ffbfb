"""`llmroute demo`'s tool round trip: the model asks for a function, the caller runs it and
sends the result back, the model answers. On the Gemini wire, so the translation shows:
Gemini issues no call id, and the router makes one up."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final, TextIO

from llmroute.router import Router
from llmroute.testing import FakeScript, RecordedRequest, Reply
from llmroute.trace import ToolCall

__all__ = ["script_tool_round_trip", "tool_round_trip"]

_WEATHER_TOOL: Final = {
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
_CALL_ARGS: Final = '{"city": "Paris"}'
_WEATHER_ANSWER: Final = "18 °C and clear in Paris."


def _asks_weather(request: RecordedRequest) -> bool:
    return "get_weather" in request.tools and request.last_message.get("role") == "user"


def _has_weather(request: RecordedRequest) -> bool:
    return request.last_message.get("role") == "tool"


def script_tool_round_trip(script: FakeScript) -> None:
    """The model asks for get_weather (no id, as Gemini does), then answers once the result
    is in. Rules answer before any queue, so they only match this conversation."""
    script.when(_asks_weather, Reply(tool_calls=[ToolCall("", "get_weather", _CALL_ARGS)]))
    script.when(_has_weather, Reply(text=_WEATHER_ANSWER))


async def tool_round_trip(
    models: dict[str, Any], limits: dict[str, Any], cache_dir: Path, out: TextIO
) -> None:
    out.write("\nTool round trip  (tools=[get_weather] on gemini/flash, the Gemini wire)\n")
    router = Router(models, limits, env_file=None, cache_dir=cache_dir)
    async with router:
        messages: list[dict[str, Any]] = [{"role": "user", "content": "Weather in Paris?"}]
        first = await router.complete("gemini/flash", messages, tools=[_WEATHER_TOOL])
        (call,) = first.tool_calls
        out.write(
            f"  1. the model asks: {call.name}({call.arguments}), finish_reason "
            f"{first.finish_reason}, id {call.id[:12]}... (generated: Gemini sent none)\n"
        )
        result = '{"temp_c": 18, "sky": "clear"}'
        messages += [first.message(), {"role": "tool", "tool_call_id": call.id, "content": result}]
        out.write(f"  2. your code runs it and appends the result: {result}\n")
        second = await router.complete("gemini/flash", messages, tools=[_WEATHER_TOOL])
        out.write(f"  3. the model answers: {second.text!r} (docs/tools.md)\n")
