"""What the fakes send: a rendered answer, and the pieces every wire's renderer shares.

Nothing here does I/O or reads a clock.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from llmroute.trace import ToolCall

__all__ = [
    "CREATED",
    "GEMINI_JSON",
    "JSON",
    "SSE",
    "Generation",
    "Rendered",
    "dumps",
    "sent_chunks",
]

#: fixed `created` stamp: rendering is pure, so it cannot read the clock
CREATED = 1767225600
JSON = "application/json"
GEMINI_JSON = "application/json; charset=UTF-8"
SSE = "text/event-stream"


@dataclass(frozen=True, slots=True, kw_only=True)
class Rendered:
    """An answer ready to be sent.

    With `pieces` None the answer is `body`; otherwise `pieces` are sent one after the other,
    each after waiting its delay in seconds, and `break_after` says the connection then breaks
    instead of ending the response. `hang` means no answer is ever sent. `latency` is waited
    before anything is sent.
    """

    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    pieces: tuple[tuple[float, bytes], ...] | None = None
    break_after: bool = False
    latency: float = 0.0
    hang: bool = False


@dataclass(slots=True)
class Generation:
    """Reply and Stream brought to one shape."""

    chunks: tuple[str, ...]
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str | None
    usage: bool
    delay: float
    fail_after: int | None
    latency: float
    tool_calls: tuple[ToolCall, ...] = ()
    #: OpenAI streams: argument characters per fragment (0: each call whole)
    fragment: int = 0


def dumps(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def sent_chunks(gen: Generation) -> tuple[str, ...]:
    return gen.chunks if gen.fail_after is None else gen.chunks[: gen.fail_after]
