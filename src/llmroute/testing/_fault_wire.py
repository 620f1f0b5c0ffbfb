"""The fault server's wire: reading a request, and the answers' bytes on both wires.

Answers are built as whole HTTP messages (status line, headers, body) so the server can
send them in any pieces it likes: a byte at a time, cut short, or not at all.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

__all__ = ["FaultRequest", "Wire"]

Wire = Literal["openai", "gemini"]

TEXT = "The quick brown fox jumps over the lazy dog."
PIECES = ("The quick ", "brown fox ", "jumps over ", "the lazy ", "dog.")
MAX_HEAD = 64 * 1024


@dataclass(frozen=True, slots=True)
class FaultRequest:
    """One request the server read: which fault it asked for, on which wire."""

    fault: str
    wire: Wire
    stream: bool
    model: str
    headers: Mapping[str, str]
    body: bytes
    #: tokens the server counted in the prompt (see the module docstring)
    prompt_tokens: int


# -- reading a request -------------------------------------------------------------------


async def read_request(reader: asyncio.StreamReader, completion: int) -> FaultRequest | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None  # the client closed a kept-alive connection
    if len(head) > MAX_HEAD:  # pragma: no cover
        return None
    lines = head.decode("latin-1").split("\r\n")
    _, target, _ = ([*lines[0].split(" "), "", ""])[:3]
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0") or 0))
    path, _, _ = target.partition("?")
    fault = path.strip("/").split("/", 1)[0]
    wire: Wire = "gemini" if "/models/" in path else "openai"
    try:
        parsed = json.loads(body or b"{}")
    except ValueError:
        parsed = {}
    if not isinstance(parsed, dict):
        parsed = {}
    if wire == "gemini":
        stream = ":streamGenerateContent" in path
        model = path.rsplit("/models/", 1)[1].split(":", 1)[0]
    else:
        stream = parsed.get("stream") is True
        model = str(parsed.get("model", ""))
    return FaultRequest(
        fault=fault,
        wire=wire,
        stream=stream,
        model=model,
        headers=headers,
        body=body,
        prompt_tokens=count_tokens(prompt_text(parsed)),
    )


def prompt_text(body: Mapping[str, object]) -> str:
    """Every string in the messages (OpenAI) or contents (Gemini), roles left out."""
    found: list[str] = []

    def walk(value: object) -> None:
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, Mapping):
            for name, item in value.items():
                if name != "role":
                    walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk(body.get("messages", body.get("contents", [])))
    return "".join(found)


def count_tokens(text: str) -> int:
    ascii_chars = sum(1 for ch in text if ch < "\x80")
    return (ascii_chars + 3) // 4 + (len(text) - ascii_chars)


def key_of(request: FaultRequest) -> str:
    if request.wire == "gemini":
        return request.headers.get("x-goog-api-key", "")
    return request.headers.get("authorization", "").removeprefix("Bearer ")


# -- writing answers ---------------------------------------------------------------------


def plain(status: int, content_type: str, body: bytes, *, close: bool = False) -> bytes:
    reason = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found"}
    head = (
        f"HTTP/1.1 {status} {reason.get(status, 'Error')}\r\n"
        f"content-type: {content_type}\r\ncontent-length: {len(body)}\r\n"
        + ("connection: close\r\n" if close else "")
        + "\r\n"
    )
    return head.encode() + body


def chunked_head(request: FaultRequest) -> bytes:
    content_type = "text/event-stream" if request.stream else "application/json"
    return (
        f"HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\n"
        "transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    ).encode()


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


def usage(request: FaultRequest, completion: int) -> dict[str, int]:
    prompt = request.prompt_tokens
    if request.wire == "openai":
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }
    return {
        "promptTokenCount": prompt,
        "candidatesTokenCount": completion,
        "totalTokenCount": prompt + completion,
    }


def complete_body(request: FaultRequest, completion: int) -> bytes:
    if request.wire == "openai":
        body: dict[str, object] = {
            "id": "chatcmpl-fault",
            "object": "chat.completion",
            "created": 1767225600,
            "model": request.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": TEXT},
                    "finish_reason": "stop",
                }
            ],
            "usage": usage(request, completion),
        }
    else:
        body = {
            "candidates": [
                {
                    "content": {"parts": [{"text": TEXT}], "role": "model"},
                    "finishReason": "STOP",
                    "index": 0,
                }
            ],
            "usageMetadata": usage(request, completion),
            "modelVersion": request.model,
            "responseId": "fault",
        }
    return json.dumps(body).encode()


def event(request: FaultRequest, text: str, finish: str | None, completion: int) -> bytes:
    """One SSE event with `text`; with `finish`, the last one, carrying usage."""
    if request.wire == "openai":
        chunk: dict[str, object] = {
            "id": "chatcmpl-fault",
            "object": "chat.completion.chunk",
            "created": 1767225600,
            "model": request.model,
            "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}],
        }
        if finish is not None:
            chunk["usage"] = usage(request, completion)
    else:
        candidate: dict[str, object] = {
            "content": {"parts": [{"text": text}], "role": "model"},
            "index": 0,
        }
        chunk = {"candidates": [candidate], "modelVersion": request.model}
        if finish is not None:
            candidate["finishReason"] = "STOP"
            chunk["usageMetadata"] = usage(request, completion)
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


def terminator(request: FaultRequest) -> bytes:
    return b"data: [DONE]\n\n" if request.wire == "openai" else b""


def body_pieces(request: FaultRequest, completion: int) -> list[bytes]:
    """The body of a good answer in pieces: a stream's events, or slices of the JSON."""
    if request.stream:
        last = len(PIECES) - 1
        pieces = [
            event(request, p, "stop" if i == last else None, completion)
            for i, p in enumerate(PIECES)
        ]
        end = terminator(request)
        return [*pieces, end] if end else pieces
    body = complete_body(request, completion)
    step = max(1, len(body) // 5)
    return [body[i : i + step] for i in range(0, len(body), step)]


def good_answer(request: FaultRequest, completion: int) -> bytes:
    if not request.stream:
        return plain(200, "application/json", complete_body(request, completion))
    body = b"".join(chunk(p) for p in body_pieces(request, completion)) + b"0\r\n\r\n"
    return chunked_head(request) + body


def error(request: FaultRequest, status: int, message: str, code: str) -> bytes:
    if request.wire == "openai":
        envelope: dict[str, object] = {
            "error": {"message": message, "type": "invalid_request_error", "code": code}
        }
    else:
        envelope = {
            "error": {
                "code": status,
                "message": message,
                "status": "INVALID_ARGUMENT",
                "details": [
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": code,
                        "domain": "googleapis.com",
                    }
                ],
            }
        }
    return plain(status, "application/json", json.dumps(envelope).encode())
