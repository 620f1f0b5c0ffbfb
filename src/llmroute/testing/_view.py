"""What a request asked, read back from either wire into the router's own (OpenAI) shape.

Predicates given to `FakeScript.when` look at `RecordedRequest.messages` and
`RecordedRequest.tools`; this module builds those views from the body that was sent, so one
predicate serves both wires. It also holds the checks the real providers make on the
request's tool data (a 400 from the fake rather than a silent pass). Gemini bodies are read
in camelCase and in the proto snake_case the API also accepts. Nothing here does I/O.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["messages_of", "tool_names_of", "wire_problem"]

JSONObject = dict[str, Any]


def _get(mapping: JSONObject, camel: str, snake: str) -> Any:
    value = mapping.get(camel)
    return mapping.get(snake) if value is None else value


def messages_of(wire: str, body: object) -> list[JSONObject]:
    """The conversation of a request body, as OpenAI-shaped messages."""
    if not isinstance(body, dict):
        return []
    if wire == "openai":
        messages = body.get("messages")
        return [m for m in messages if isinstance(m, dict)] if isinstance(messages, list) else []
    out: list[JSONObject] = []
    system = _get(body, "systemInstruction", "system_instruction")
    if isinstance(system, dict):
        out.append({"role": "system", "content": _joined_text(system.get("parts"))})
    for content in body.get("contents") or ():
        if isinstance(content, dict):
            out += _gemini_turn(content)
    return out


def _joined_text(parts: Any) -> str:
    return "".join(
        p["text"] for p in parts or () if isinstance(p, dict) and isinstance(p.get("text"), str)
    )


def _gemini_turn(content: JSONObject) -> list[JSONObject]:
    parts = [p for p in content.get("parts") or () if isinstance(p, dict)]
    if content.get("role") == "model":
        return [_model_message(parts)]
    out: list[JSONObject] = []
    user_parts: list[JSONObject] = []
    for part in parts:
        response = _get(part, "functionResponse", "function_response")
        if isinstance(response, dict):
            out.append(
                {
                    "role": "tool",
                    "tool_call_id": response.get("id") or response.get("name"),
                    "content": json.dumps((response.get("response") or {}).get("output")),
                }
            )
        elif isinstance(part.get("text"), str):
            user_parts.append({"type": "text", "text": part["text"]})
        else:
            image = _image_part(part)
            if image is not None:
                user_parts.append(image)
    if user_parts:
        plain = all(p["type"] == "text" for p in user_parts)
        text = "".join(p.get("text", "") for p in user_parts)
        out.append({"role": "user", "content": text if plain else user_parts})
    return out


def _image_part(part: JSONObject) -> JSONObject | None:
    inline = _get(part, "inlineData", "inline_data")
    if isinstance(inline, dict):
        mime = _get(inline, "mimeType", "mime_type")
        url = f"data:{mime};base64,{inline.get('data', '')}"
        return {"type": "image_url", "image_url": {"url": url}}
    file_data = _get(part, "fileData", "file_data")
    if isinstance(file_data, dict):
        return {"type": "image_url", "image_url": {"url": _get(file_data, "fileUri", "file_uri")}}
    return None


def _model_message(parts: list[JSONObject]) -> JSONObject:
    calls = []
    for part in parts:
        call = _get(part, "functionCall", "function_call")
        if isinstance(call, dict):
            calls.append(
                {
                    "id": call.get("id") or call.get("name"),
                    "type": "function",
                    "function": {
                        "name": call.get("name"),
                        "arguments": json.dumps(call.get("args") or {}),
                    },
                }
            )
    message: JSONObject = {"role": "assistant", "content": _joined_text(parts) or None}
    if calls:
        message["tool_calls"] = calls
    return message


def tool_names_of(wire: str, body: object) -> list[str]:
    """The names of the functions a request declared."""
    if not isinstance(body, dict):
        return []
    names: list[str] = []
    for tool in body.get("tools") or ():
        if not isinstance(tool, dict):
            continue
        if wire == "openai":
            function = tool.get("function")
            if isinstance(function, dict) and isinstance(function.get("name"), str):
                names.append(function["name"])
            continue
        for declaration in _get(tool, "functionDeclarations", "function_declarations") or ():
            if isinstance(declaration, dict) and isinstance(declaration.get("name"), str):
                names.append(declaration["name"])
    return names


def wire_problem(wire: str, body: JSONObject) -> str | None:
    """What the real provider would refuse with a 400 in the request's tool data."""
    return _openai_problem(body) if wire == "openai" else _gemini_problem(body)


def _openai_problem(body: JSONObject) -> str | None:
    for i, message in enumerate(body.get("messages") or ()):
        calls = message.get("tool_calls") if isinstance(message, dict) else None
        if isinstance(calls, list) and any(
            isinstance(call, dict) and "extra_content" in call for call in calls
        ):
            # Groq's words for any field it does not know
            return f"'messages.{i}.tool_calls' : property 'extra_content' is unsupported"
    return None


def _gemini_problem(body: JSONObject) -> str | None:
    calls = 0
    for content in body.get("contents") or ():
        parts = content.get("parts") if isinstance(content, dict) else None
        kinds = [k for p in parts or () if isinstance(p, dict) for k in p]
        answered = kinds.count("functionResponse") + kinds.count("function_response")
        if answered and answered != calls:
            return (
                "Please ensure that the number of function response parts is equal to the "
                "number of function call parts of the function call turn."
            )
        calls = kinds.count("functionCall") + kinds.count("function_call")
    return None
