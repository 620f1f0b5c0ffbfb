"""Translating between the router's OpenAI-shaped requests and Gemini's `generateContent`.

Requests, field by field: system messages -> `systemInstruction`; `assistant` -> `model`
turns whose tool calls become `functionCall` parts (arguments parsed into an object, the
thought signature Gemini gave echoed as the part's sibling `thoughtSignature`); `tool`
results -> `functionResponse` parts, named after the call they answer; images -> `inlineData`
(data URLs) or `fileData` (http(s) URLs); `tools` -> one tool object holding every
`functionDeclarations` entry (the JSON Schema goes in `parametersJsonSchema` as written);
`tool_choice` -> `toolConfig.functionCallingConfig`; `response_format` ->
`generationConfig.responseMimeType` (+ `responseJsonSchema`). Keys inside arguments,
results and schemas are user data and are never renamed.

Answers: text parts joined (thought parts skipped); each `functionCall` part becomes a
`ToolCall`, with a generated id when Gemini sent none and the part's `thoughtSignature`
kept on it.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final
from urllib.parse import unquote_to_bytes, urlsplit

from llmroute.providers.base import GENERATED_CALL_ID as _GENERATED
from llmroute.providers.base import AttemptFailed, ProviderRequest, message_text, new_call_id
from llmroute.trace import ToolCall

__all__ = ["MAX_STOP_SEQUENCES", "CallMemory", "build_body", "parse_parts"]

JSONObject = dict[str, Any]

#: the API rejects more than this many stop sequences with a 400
MAX_STOP_SEQUENCES: Final = 5
#: what Gemini's docs allow in place of a signature it never gave (a history built
#: elsewhere, or after a fallback from another provider)
SKIP_SIGNATURE: Final = "skip_thought_signature_validator"
#: OpenAI tool options with no Gemini counterpart: dropped (Gemini may answer with several
#: calls regardless, and they are all kept)
_NO_GEMINI_EQUIVALENT: Final = frozenset({"parallel_tool_calls"})
_MODES: Final = {"auto": "AUTO", "none": "NONE", "required": "ANY"}
_IMAGE_TYPES: Final = frozenset(
    {"image/png", "image/jpeg", "image/webp", "image/heic", "image/heif"}
)
_BY_EXTENSION: Final = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "webp": "image/webp",
    "heic": "image/heic",
    "heif": "image/heif",
}
_GEMINI_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_.:-]{0,127}")
_DECODE: Final = json.JSONDecoder().decode
_ENCODE: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


class CallMemory:
    """The calls one provider's answers issued: id -> thought signature (or None).

    A caller who rebuilds the assistant message from `ToolCall.id`, `name` and `arguments`
    alone drops the signature; this memory gives it back on the next turn. Bounded: the
    oldest entries go first.
    """

    __slots__ = ("_calls", "_limit")

    def __init__(self, limit: int = 10_000) -> None:
        self._calls: dict[str, str | None] = {}
        self._limit = limit

    def remember(self, call_id: str, signature: str | None) -> None:
        if len(self._calls) >= self._limit:
            del self._calls[next(iter(self._calls))]
        self._calls[call_id] = signature

    def issued(self, call_id: str) -> bool:
        return call_id in self._calls

    def signature(self, call_id: str) -> str | None:
        return self._calls.get(call_id)


class _Untranslatable(Exception):
    """The request is valid but cannot be said on this wire."""


def build_body(
    request: ProviderRequest,
    memory: CallMemory | None = None,
    signatures: Mapping[str, str] | None = None,
) -> JSONObject:
    """The `generateContent` body for a request.

    `signatures` are the ones the caller handed back (`extra_content`), `memory` the ones
    this provider's answers carried. Raises `AttemptFailed` (nothing sent) for a request
    Gemini cannot take: an argument string that is not a JSON object, a function name
    Gemini refuses, an image type it does not read.
    """
    try:
        return _build(request, memory or CallMemory(0), signatures or {})
    except _Untranslatable as exc:
        raise AttemptFailed(
            "client_error", f"not sendable to Gemini: {exc}", retryable=False, reached=False
        ) from None


def _build(
    request: ProviderRequest, memory: CallMemory, signatures: Mapping[str, str]
) -> JSONObject:
    system: list[str] = []
    contents: list[JSONObject] = []
    #: call id -> (function name, whether Gemini gets the id)
    names: dict[str, tuple[str, bool]] = {}
    current_turn = _current_turn_start(request.messages)
    for i, message in enumerate(request.messages):
        role = message.get("role", "user")
        if role == "system":
            system.append(message_text(message.get("content")))
            continue
        if role == "assistant":
            parts = _model_parts(message, i, memory, signatures, names, i >= current_turn)
            wire_role = "model"
        elif role == "tool":
            parts = [_function_response(message, names)]
            wire_role = "user"
        else:
            parts = _user_parts(message.get("content"), i)
            wire_role = "user"
        # Strict models answer 400 to two turns of the same role in a row.
        if contents and contents[-1]["role"] == wire_role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": wire_role, "parts": parts})

    body: JSONObject = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": [{"text": "\n\n".join(system)}]}
    if request.tools:
        body["tools"] = [
            {"functionDeclarations": [_declaration(t, k) for k, t in enumerate(request.tools)]}
        ]
    if request.tool_choice is not None:
        body["toolConfig"] = {"functionCallingConfig": _calling_config(request.tool_choice)}
    config = _generation_config(request)
    if config:
        body["generationConfig"] = config
    _merge_extra(body, request.extra)
    return body


def _merge_extra(body: JSONObject, extra: Mapping[str, object]) -> None:
    for name, value in extra.items():
        if name in _NO_GEMINI_EQUIVALENT:
            continue
        current = body.get(name)
        # A caller adding e.g. thinkingConfig through extra should not lose max_tokens.
        if isinstance(current, dict) and isinstance(value, Mapping):
            body[name] = {**current, **value}
        else:
            body[name] = value


def _current_turn_start(messages: Sequence[Mapping[str, Any]]) -> int:
    """Index after the latest user message with ordinary content: Gemini checks the
    signatures of the model steps from there on."""
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].get("role") == "user":
            return i + 1
    return 0


def _generation_config(request: ProviderRequest) -> JSONObject:
    config: JSONObject = {}
    if request.max_tokens is not None:
        config["maxOutputTokens"] = request.max_tokens
    if request.temperature is not None:
        config["temperature"] = request.temperature
    if request.top_p is not None:
        config["topP"] = request.top_p
    if request.stop:
        stop = [request.stop] if isinstance(request.stop, str) else list(request.stop)
        config["stopSequences"] = stop[:MAX_STOP_SEQUENCES]
    response_format = request.response_format
    if response_format is not None and response_format.get("type") != "text":
        config["responseMimeType"] = "application/json"
        spec = response_format.get("json_schema")
        if isinstance(spec, Mapping) and spec.get("schema") is not None:
            # name, description and strict have no Gemini counterpart.
            config["responseJsonSchema"] = spec["schema"]
    return config


def _user_parts(content: Any, i: int) -> list[JSONObject]:
    if isinstance(content, str):
        return [{"text": content}]
    parts: list[JSONObject] = []
    for j, part in enumerate(content):
        if part.get("type") == "text":
            parts.append({"text": part["text"]})
        else:
            parts.append(_image(part["image_url"]["url"], f"prompt[{i}].content[{j}]"))
    return parts


def _image(url: str, path: str) -> JSONObject:
    if url.startswith("data:"):
        header, _, data = url[5:].partition(",")
        media_type, _, encoding = header.partition(";")
        media_type = media_type.strip().lower()
        if media_type not in _IMAGE_TYPES:
            raise _Untranslatable(
                f"{path}: Gemini reads png, jpeg, webp, heic and heif images, not {media_type}"
            )
        if encoding.strip().lower() != "base64":
            data = base64.b64encode(unquote_to_bytes(data)).decode("ascii")
        return {"inlineData": {"mimeType": media_type, "data": data}}
    extension = urlsplit(url).path.rpartition(".")[2].lower()
    # Gemini needs a type with the URI; most image URLs say it in their extension, and
    # JPEG is what the rest usually are.
    return {"fileData": {"mimeType": _BY_EXTENSION.get(extension, "image/jpeg"), "fileUri": url}}


def _model_parts(
    message: Mapping[str, Any],
    i: int,
    memory: CallMemory,
    signatures: Mapping[str, str],
    names: dict[str, tuple[str, bool]],
    current: bool,
) -> list[JSONObject]:
    parts: list[JSONObject] = []
    text = message_text(message.get("content"))
    if text:
        parts.append({"text": text})
    for k, call in enumerate(message.get("tool_calls") or ()):
        function = call["function"]
        call_id: str = call["id"]
        signature = signatures.get(call_id) or memory.signature(call_id)
        send_id = _gemini_issued(call_id, memory, signature)
        names[call_id] = (function["name"], send_id)
        function_call: JSONObject = {}
        if send_id:
            function_call["id"] = call_id
        function_call["name"] = _function_name(
            function["name"], f"prompt[{i}].tool_calls[{k}].function.name"
        )
        function_call["args"] = _arguments(
            function["arguments"], f"prompt[{i}].tool_calls[{k}].function.arguments"
        )
        part: JSONObject = {"functionCall": function_call}
        if signature is None and current and k == 0:
            # The first call of each step of the current turn must carry one.
            signature = SKIP_SIGNATURE
        if signature is not None:
            part["thoughtSignature"] = signature
        parts.append(part)
    return parts


def _gemini_issued(call_id: str, memory: CallMemory, signature: str | None) -> bool:
    # Gemini's own ids go back as they came; ids the router made up or another provider
    # issued stay out (a gateway reported a 400 for a foreign id).
    if call_id.startswith(_GENERATED):
        return False
    return signature is not None or memory.issued(call_id)


def _arguments(arguments: str, path: str) -> object:
    if not arguments.strip():
        return {}
    try:
        value = _DECODE(arguments)
    except ValueError:
        raise _Untranslatable(f"{path} is not valid JSON") from None
    if not isinstance(value, dict):
        raise _Untranslatable(f"{path} is not a JSON object")
    return value


def _function_name(name: str, path: str) -> str:
    if not _GEMINI_NAME.fullmatch(name):
        raise _Untranslatable(f"{path}: Gemini function names start with a letter or _")
    return name


def _function_response(
    message: Mapping[str, Any], names: dict[str, tuple[str, bool]]
) -> JSONObject:
    call_id: str = message["tool_call_id"]
    name, send_id = names[call_id]
    text = message_text(message.get("content"))
    try:
        output: object = _DECODE(text)
    except ValueError:
        output = text
    response: JSONObject = {}
    if send_id:
        response["id"] = call_id
    response["name"] = name
    # The API reads `output` (or `error`); a result that parses as JSON goes as the value.
    response["response"] = {"output": output}
    return {"functionResponse": response}


def _declaration(tool: Mapping[str, Any], k: int) -> JSONObject:
    function = tool["function"]
    declaration: JSONObject = {
        "name": _function_name(function["name"], f"tools[{k}].function.name")
    }
    if function.get("description") is not None:
        declaration["description"] = function["description"]
    if function.get("parameters") is not None:
        # Plain JSON Schema, as written; `parameters` would want Gemini's OpenAPI subset.
        declaration["parametersJsonSchema"] = function["parameters"]
    return declaration


def _calling_config(choice: str | Mapping[str, Any]) -> JSONObject:
    if isinstance(choice, str):
        return {"mode": _MODES[choice]}
    return {"mode": "ANY", "allowedFunctionNames": [choice["function"]["name"]]}


# -- answers ----------------------------------------------------------------------------------


def parse_parts(parts: object, memory: CallMemory | None) -> tuple[str, list[ToolCall]]:
    """The text and the tool calls of one candidate's parts (or one stream event's)."""
    if not isinstance(parts, list):
        return "", []
    text = ""
    calls: list[ToolCall] = []
    for part in parts:
        if not isinstance(part, dict):
            continue
        piece = part.get("text")
        if isinstance(piece, str) and not part.get("thought"):
            text += piece
        function_call = part.get("functionCall")
        if isinstance(function_call, dict):
            calls.append(_tool_call(function_call, part.get("thoughtSignature"), memory))
    return text, calls


def _tool_call(function_call: JSONObject, signature: object, memory: CallMemory | None) -> ToolCall:
    name = function_call.get("name")
    if not isinstance(name, str) or not name:
        raise AttemptFailed("server_error", "functionCall part without a name")
    given = function_call.get("id")
    call_id = given if isinstance(given, str) and given else new_call_id()
    args = function_call.get("args")
    signature = signature if isinstance(signature, str) and signature else None
    if memory is not None and (given or signature is not None):
        memory.remember(call_id, signature)
    return ToolCall(
        id=call_id,
        name=name,
        arguments="{}" if args is None else _ENCODE(args),
        thought_signature=signature,
    )
