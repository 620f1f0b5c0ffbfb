"""The wires the fake providers speak, each registered as a `FakeWire`.

A wire says which requests are its own (by path), where a request keeps its key, model and
streaming options, how to read its conversation back in the router's own message shape (for
predicates), what the real provider refuses, and how a behaviour is answered on it. The
OpenAI-compatible and Gemini wires are registered here; a provider module that speaks a new
wire registers one with `register_wire` and names it in its `ProviderKind.wire`, and both
fakes and `llmroute fake-server` then serve it. Nothing here does I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from llmroute.testing._view import messages_of, tool_names_of, wire_problem

if TYPE_CHECKING:
    from llmroute.testing._wire import Rendered

__all__ = ["FakeWire", "RequestFacts", "fake_wire", "match_wire", "register_wire"]

_GEMINI_PATH = re.compile(
    r"^(?:.*/)?models/(?P<model>[^/]+?):(?P<action>generateContent|streamGenerateContent)$"
)
_OPENAI_SUFFIX = "/chat/completions"


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What routing an answer needs from one request."""

    key: str | None
    model: object
    stream: bool
    include_usage: bool = False
    sse: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class FakeWire:
    """How the fakes speak one wire."""

    name: str
    #: where its providers' `base_url` points on the fake server (`/v1`)
    base_path: str
    #: the request's facts from (path, query, lower-cased headers, parsed body), or None
    #: when the path is not this wire's
    read: Callable[[str, str, Mapping[str, str], object], RequestFacts | None]
    #: the conversation as OpenAI-shaped messages, and the declared function names
    messages: Callable[[object], list[dict[str, Any]]]
    tools: Callable[[object], list[str]]
    #: the prompt's text, for the token counts the fake reports
    prompt_text: Callable[[dict[str, Any]], str]
    #: the 400 message the real provider gives this body, or None
    problem: Callable[[dict[str, Any]], str | None]
    #: `render(behaviour, wire=name, model=..., stream=..., prompt_text=...,
    #: include_usage=..., sse=..., response_id=...)` -> the answer
    render: Callable[..., Rendered]


_WIRES: dict[str, FakeWire] = {}


def register_wire(wire: FakeWire) -> None:
    """Teach the fakes a wire (a provider type names it in `ProviderKind.wire`)."""
    existing = _WIRES.get(wire.name)
    if existing is not None and existing is not wire:
        raise ValueError(f"fake wire {wire.name!r} is already registered")
    _WIRES[wire.name] = wire


def fake_wire(name: str) -> FakeWire | None:
    return _WIRES.get(name)


def match_wire(
    path: str, query: str, headers: Mapping[str, str], body: object
) -> tuple[FakeWire, RequestFacts] | None:
    """The wire a request belongs to, and its facts; None when no wire claims its path."""
    for wire in _WIRES.values():
        facts = wire.read(path, query, headers, body)
        if facts is not None:
            return wire, facts
    return None


def _read_openai(
    path: str, query: str, headers: Mapping[str, str], body: object
) -> RequestFacts | None:
    if not path.endswith(_OPENAI_SUFFIX):
        return None
    auth = headers.get("authorization", "")
    fields = body if isinstance(body, dict) else {}
    options = fields.get("stream_options")
    return RequestFacts(
        key=auth[7:].strip() if auth[:7].lower() == "bearer " else None,
        model=fields.get("model"),
        stream=fields.get("stream") is True,
        include_usage=isinstance(options, dict) and options.get("include_usage") is True,
    )


def _read_gemini(
    path: str, query: str, headers: Mapping[str, str], body: object
) -> RequestFacts | None:
    match = _GEMINI_PATH.match(path)
    if match is None:
        return None
    return RequestFacts(
        key=headers.get("x-goog-api-key"),
        model=match["model"],
        stream=match["action"] == "streamGenerateContent",
        sse="sse" in parse_qs(query).get("alt", []),
    )


def _openai_prompt(body: dict[str, Any]) -> str:
    texts: list[str] = []
    for message in body.get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts += _part_texts(content)
    return "\n".join(texts)


def _gemini_prompt(body: dict[str, Any]) -> str:
    texts: list[str] = []
    system = body.get("systemInstruction")
    if isinstance(system, dict) and isinstance(system.get("parts"), list):
        texts += _part_texts(system["parts"])
    for content in body.get("contents") or ():
        if isinstance(content, dict) and isinstance(content.get("parts"), list):
            texts += _part_texts(content["parts"])
    return "\n".join(texts)


def _part_texts(parts: list[object]) -> list[str]:
    return [
        part["text"]
        for part in parts
        if isinstance(part, dict) and isinstance(part.get("text"), str)
    ]


def _render_builtin(behaviour: object, **kwargs: Any) -> Rendered:
    # deferred: `_wire` imports the behaviours, which import this module
    from llmroute.testing._wire import render

    return render(behaviour, **kwargs)  # type: ignore[arg-type]


def _builtin(
    name: str,
    base_path: str,
    read: Callable[[str, str, Mapping[str, str], object], RequestFacts | None],
    prompt_text: Callable[[dict[str, Any]], str],
) -> FakeWire:
    def messages(body: object) -> list[dict[str, Any]]:
        return messages_of(name, body)

    def tools(body: object) -> list[str]:
        return tool_names_of(name, body)

    def problem(body: dict[str, Any]) -> str | None:
        return wire_problem(name, body)

    return FakeWire(
        name=name,
        base_path=base_path,
        read=read,
        messages=messages,
        tools=tools,
        prompt_text=prompt_text,
        problem=problem,
        render=_render_builtin,
    )


register_wire(_builtin("openai", "/v1", _read_openai, _openai_prompt))
register_wire(_builtin("gemini", "/v1beta", _read_gemini, _gemini_prompt))
