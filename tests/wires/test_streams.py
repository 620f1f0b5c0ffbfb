"""Streamed answers: tool-call deltas assembled exactly, text beside calls, parallel calls,
and the streams that must fail (an unreadable event, a missing terminator)."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from llmroute import Router
from llmroute.errors import ProviderError, StreamInterruptedError
from llmroute.providers.base import AttemptFailed
from llmroute.testing import FakeClock
from llmroute.trace import ToolCall

from .conftest import Wire, request

MODEL = "llama-3.3-70b-versatile"


def sse(*events: Any, done: bool = True) -> bytes:
    out = b"".join(
        b"data: " + (e if isinstance(e, bytes) else json.dumps(e).encode()) + b"\n\n"
        for e in events
    )
    return out + (b"data: [DONE]\n\n" if done else b"")


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta or {}, "finish_reason": finish}],
    }


def fragments(calls: list[ToolCall], rng: random.Random, *, repeat: bool = False) -> list[Any]:
    """The calls as OpenAI sends them: id, type and name first, then arguments in pieces
    of random size; several fragments (of several calls) may share one chunk. With
    `repeat`, every fragment repeats id and name, as Together's schema allows."""
    pieces: list[dict[str, Any]] = []
    for index, call in enumerate(calls):
        head: dict[str, Any] = {
            "index": index,
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
        pieces.append(head)
        text = call.arguments
        while text:
            size = rng.randint(1, 7)
            piece: dict[str, Any] = {"index": index, "function": {"arguments": text[:size]}}
            if repeat:
                piece.update(id=call.id, type="function")
                piece["function"]["name"] = call.name
            pieces.append(piece)
            text = text[size:]
    chunks = []
    while pieces:
        take = rng.randint(1, 3)
        chunks.append(chunk({"tool_calls": pieces[:take]}))
        pieces = pieces[take:]
    return chunks


CALLS = [
    ToolCall("call_a", "get_weather", '{"city":"Paris","unit":"celsius"}'),
    ToolCall("call_b", "get_weather", '{"city":"Rome","unit":"celsius","note":"é 東京 \\"q\\""}'),
    ToolCall("call_c", "get_time", "{}"),
]


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("repeat", [False, True])
async def test_split_deltas_assemble_into_exactly_the_calls_sent(
    openai_wire: Wire, seed: int, repeat: bool
) -> None:
    rng = random.Random(seed)
    openai_wire.answer(sse(*fragments(CALLS, rng, repeat=repeat), chunk(finish="tool_calls")))
    events = await openai_wire.stream(request("Weather?", MODEL))
    assert [e.text for e in events[:-1]] == []
    assert list(events[-1].tool_calls) == CALLS
    assert events[-1].finish_reason == "tool_calls"


async def test_text_and_tool_calls_in_one_answer(openai_wire: Wire) -> None:
    rng = random.Random(1)
    openai_wire.answer(
        sse(
            chunk({"role": "assistant", "content": ""}),
            chunk({"content": "Let me "}),
            chunk({"content": "check."}),
            *fragments(CALLS[:1], rng),
            chunk(finish="tool_calls"),
        )
    )
    events = await openai_wire.stream(request("Weather?", MODEL))
    assert "".join(e.text for e in events) == "Let me check."
    assert [e.tool_calls for e in events[:-1]] == [()] * (len(events) - 1)
    assert list(events[-1].tool_calls) == CALLS[:1]


async def test_parallel_calls_interleaved_by_index(openai_wire: Wire) -> None:
    """Fragments of two calls alternate; each call keeps its own arguments."""
    openai_wire.answer(
        sse(
            chunk({"tool_calls": [{"index": 1, "id": "call_b", "function": {"name": "g"}}]}),
            chunk({"tool_calls": [{"index": 0, "id": "call_a", "function": {"name": "f"}}]}),
            chunk(
                {
                    "tool_calls": [
                        {"index": 0, "function": {"arguments": '{"x":'}},
                        {"index": 1, "function": {"arguments": '{"y":'}},
                    ]
                }
            ),
            chunk({"tool_calls": [{"index": 1, "function": {"arguments": "2}"}}]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
            chunk(finish="stop"),  # some servers say stop on a tool turn
        )
    )
    events = await openai_wire.stream(request("Both?", MODEL))
    assert list(events[-1].tool_calls) == [
        ToolCall("call_a", "f", '{"x":1}'),
        ToolCall("call_b", "g", '{"y":2}'),
    ]
    assert events[-1].finish_reason == "tool_calls"


async def test_a_call_without_an_id_gets_one(openai_wire: Wire) -> None:
    openai_wire.answer(
        sse(
            chunk({"tool_calls": [{"index": 0, "function": {"name": "f", "arguments": "{}"}}]}),
            chunk(finish="tool_calls"),
        )
    )
    events = await openai_wire.stream(request("Go", MODEL))
    (call,) = events[-1].tool_calls
    assert call.id.startswith("call_") and call.name == "f"


@pytest.mark.parametrize(
    "bad",
    [
        b"not json at all",
        b"[1, 2]",
        b'{"choices": "no"}',
        b'{"choices": [{"delta": "text"}]}',
        b'{"choices": [{"delta": {"content": 5}}]}',
        b'{"choices": [{"delta": {"tool_calls": {"index": 0}}}]}',
        b'{"choices": [{"delta": {"tool_calls": [{"index": "0"}]}}]}',
    ],
)
async def test_a_malformed_event_fails_the_attempt(openai_wire: Wire, bad: bytes) -> None:
    openai_wire.answer(
        sse(chunk({"content": "Par"}), bad, chunk({"content": "is."}), chunk(finish="stop"))
    )
    with pytest.raises(AttemptFailed, match="malformed stream event"):
        await openai_wire.stream(request("Capital?", MODEL))


@pytest.mark.parametrize(
    "body",
    [
        sse(chunk({"content": "Par"}), done=False),
        # a finish reason is not the end: the stream's terminator is
        sse(chunk({"content": "Paris."}), chunk(finish="stop"), done=False),
        sse(
            chunk({"tool_calls": [{"index": 0, "id": "c", "function": {"name": "f"}}]}), done=False
        ),
    ],
)
async def test_a_stream_without_done_fails(openai_wire: Wire, body: bytes) -> None:
    openai_wire.answer(body)
    with pytest.raises(AttemptFailed, match=r"\[DONE\]"):
        await openai_wire.stream(request("Capital?", MODEL))


# -- through the router: before the first chunk a fallback, after it an interruption --------


def openai_router(
    handler: Callable[[httpx.Request], httpx.Response],
    tmp_path: Any,
    *,
    models: dict[str, Any] | None = None,
    settings: dict[str, Any] | None = None,
) -> Router:
    """A router over one OpenAI-compatible provider, `oai`, whose server is `handler`;
    its models are `oai/a` alone unless given."""
    config = {
        "providers": {
            "oai": {
                "type": "openai_compatible",
                "base_url": "http://wire.test/v1",
                "api_key": "k" * 12,
            }
        },
        "models": models or {"oai/a": {"provider": "oai", "model": "a"}},
    }
    return Router(
        config,
        settings or {},
        env_file=None,
        cache_dir=tmp_path,
        clock=FakeClock(),
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
    )


def two_candidate_router(bodies: dict[str, bytes], tmp_path: Any) -> Router:
    def handler(req: httpx.Request) -> httpx.Response:
        model = json.loads(req.content)["model"]
        return httpx.Response(
            200, headers={"content-type": "text/event-stream"}, content=bodies[model]
        )

    return openai_router(
        handler,
        tmp_path,
        models={
            "oai/a": {"provider": "oai", "model": "a", "fallbacks": ["oai/b"]},
            "oai/b": {"provider": "oai", "model": "b"},
        },
        settings={"strategy": {"max_attempts": 8}},
    )


GOOD = sse(chunk({"content": "Rome."}), chunk(finish="stop"))


@pytest.mark.parametrize(
    "broken",
    [
        sse(b"{oops", chunk({"content": "Paris."}), chunk(finish="stop")),
        sse(chunk(finish="stop"), done=False),
    ],
)
async def test_broken_before_the_first_chunk_falls_back(tmp_path: Any, broken: bytes) -> None:
    router = two_candidate_router({"a": broken, "b": GOOD}, tmp_path)
    async with router:
        chunks = [c async for c in router.stream("oai/a", "Capital?")]
    assert "".join(c.text for c in chunks) == "Rome."
    assert chunks[-1].model == "oai/b"
    assert [a.outcome for a in chunks[-1].attempts or []][-1] == "ok"
    assert (chunks[-1].attempts or [])[0].model == "oai/a"


@pytest.mark.parametrize(
    "broken",
    [
        sse(chunk({"content": "Par"}), b"{oops", chunk({"content": "is."}), chunk(finish="stop")),
        sse(chunk({"content": "Par"}), chunk({"content": "is."}), chunk(finish="stop"), done=False),
    ],
)
async def test_broken_after_the_first_chunk_interrupts(tmp_path: Any, broken: bytes) -> None:
    router = two_candidate_router({"a": broken, "b": GOOD}, tmp_path)
    async with router:
        seen = []
        with pytest.raises(StreamInterruptedError) as info:
            async for c in router.stream("oai/a", "Capital?"):
                seen.append(c.text)
    assert seen[0] == "Par"
    assert info.value.delivered_chars == len("".join(seen))


async def test_a_malformed_whole_answer_is_a_failure_too(tmp_path: Any) -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        answer = {"choices": [{"message": {"content": None, "tool_calls": [{"function": {}}]}}]}
        return httpx.Response(200, json=answer)

    router = openai_router(handler, tmp_path)
    async with router:
        with pytest.raises(ProviderError, match="no function name"):
            await router.complete("oai/a", "Go")


async def test_groq_garbled_tool_call_is_tried_again(tmp_path: Any) -> None:
    """Groq's 400 `tool_use_failed` is the model's fault, not the request's: one more try."""
    answers = [
        httpx.Response(
            400,
            json={
                "error": {
                    "message": "Failed to call a function. Please adjust your prompt.",
                    "type": "invalid_request_error",
                    "code": "tool_use_failed",
                    "failed_generation": 'get_weather{"city": "Paris"}</function>',
                }
            },
        ),
        httpx.Response(
            200,
            json={
                "choices": [
                    {
                        "message": {
                            "content": None,
                            "tool_calls": [
                                {
                                    "id": "call_1",
                                    "type": "function",
                                    "function": {"name": "f", "arguments": "{}"},
                                }
                            ],
                        },
                        "finish_reason": "tool_calls",
                    }
                ]
            },
        ),
    ]
    router = openai_router(lambda request: answers.pop(0), tmp_path)
    tools = [{"type": "function", "function": {"name": "f"}}]
    async with router:
        answer = await router.complete("oai/a", "Go", tools=tools)
    assert [c.name for c in answer.tool_calls] == ["f"]
    assert [a.outcome for a in answer.attempts] == ["client_error", "ok"]
