"""The fault server does what each fault promises, seen from a plain httpx client."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from llmroute.testing import FAULTS, FaultServer

KEY = "sk-fault-server-0123456789abcdef"
GEMINI_KEY = "AIzaFaultServer0123456789abcdef"


@pytest.fixture
async def server() -> AsyncIterator[FaultServer]:
    async with FaultServer(drip=0.05, gap=0.05, tick=0.01) as server:
        yield server


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(trust_env=False, timeout=5) as client:
        yield client


def request_for(
    server: FaultServer, fault: str, wire: str, *, stream: bool, prompt: str = "hi"
) -> dict[str, Any]:
    """url, headers and body of a chat request on `wire`, as the adapters send it."""
    base = server.base_url(fault, "openai" if wire == "openai" else "gemini")
    if wire == "openai":
        body: dict[str, Any] = {
            "model": "m",
            "messages": [{"role": "user", "content": prompt}],
            "stream": stream,
        }
        return {
            "url": f"{base}/chat/completions",
            "headers": {"authorization": f"Bearer {KEY}", "x-org-token": "org-secret-value"},
            "json": body,
        }
    method = "streamGenerateContent?alt=sse" if stream else "generateContent"
    return {
        "url": f"{base}/models/gemini-2.5-flash:{method}",
        "headers": {"x-goog-api-key": GEMINI_KEY, "x-org-token": "org-secret-value"},
        "json": {"contents": [{"role": "user", "parts": [{"text": prompt}]}]},
    }


def events(body: str) -> list[str]:
    return [line[6:] for line in body.split("\n") if line.startswith("data: ")]


@pytest.mark.parametrize("wire", ["openai", "gemini"])
async def test_ok_answers_in_the_wire_format(
    server: FaultServer, client: httpx.AsyncClient, wire: str
) -> None:
    plain = await client.post(**request_for(server, "ok", wire, stream=False))
    assert plain.status_code == 200
    body = plain.json()
    if wire == "openai":
        assert body["choices"][0]["message"]["content"].startswith("The quick")
        assert body["usage"]["prompt_tokens"] == 1
    else:
        assert body["candidates"][0]["content"]["parts"][0]["text"].startswith("The quick")
        assert body["usageMetadata"]["promptTokenCount"] == 1
    streamed = await client.post(**request_for(server, "ok", wire, stream=True))
    assert streamed.headers["content-type"] == "text/event-stream"
    data = events(streamed.text)
    if wire == "openai":
        assert data[-1] == "[DONE]"
        data = data[:-1]
    parsed = [json.loads(d) for d in data]
    assert len(parsed) == 5
    recorded = server.requests_for("ok")
    assert [(r.wire, r.stream) for r in recorded] == [(wire, False), (wire, True)]


async def test_usage_counts_one_token_per_character_outside_ascii(
    server: FaultServer, client: httpx.AsyncClient
) -> None:
    answer = await client.post(
        **request_for(server, "ok", "openai", stream=False, prompt="漢字" * 50 + "abcd")
    )
    assert answer.json()["usage"]["prompt_tokens"] == 101
    assert server.requests[-1].prompt_tokens == 101


@pytest.mark.parametrize("wire", ["openai", "gemini"])
async def test_drip_body_sends_headers_then_a_byte_at_a_time(
    server: FaultServer, client: httpx.AsyncClient, wire: str
) -> None:
    started = time.monotonic()
    async with client.stream("POST", **request_for(server, "drip_body", wire, stream=False)) as r:
        assert r.status_code == 200
        assert time.monotonic() - started < 0.5
        got = b""
        async for piece in r.aiter_raw():
            got += piece
            if len(got) >= 3:
                break
    assert time.monotonic() - started >= 2 * server.drip


async def test_drip_headers_sends_even_the_status_line_slowly(
    server: FaultServer, client: httpx.AsyncClient
) -> None:
    # each byte resets a per-read timeout: only a wall clock ends it
    for wire in ("openai", "gemini"):
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await client.post(**request_for(server, "drip_headers", wire, stream=False))
    assert len(server.requests_for("drip_headers")) == 2


@pytest.mark.parametrize("fault", ["hang", "stream_forever"])
async def test_hang_and_stream_forever_never_end(
    server: FaultServer, client: httpx.AsyncClient, fault: str
) -> None:
    for stream in (False, True):
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await client.post(**request_for(server, fault, "openai", stream=stream))
    assert len(server.requests_for(fault)) == 2


async def test_slow_chunks_come_gap_apart_and_end(
    server: FaultServer, client: httpx.AsyncClient
) -> None:
    started = time.monotonic()
    answer = await client.post(**request_for(server, "slow_chunks", "openai", stream=True))
    assert time.monotonic() - started >= 5 * server.gap
    assert events(answer.text)[-1] == "[DONE]"
    plain = await client.post(**request_for(server, "slow_chunks", "gemini", stream=False))
    assert plain.json()["candidates"][0]["finishReason"] == "STOP"


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ("reset", httpx.ReadError),
        ("refused", httpx.ConnectError),
        ("truncated_body", httpx.RemoteProtocolError),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
async def test_broken_connections(
    server: FaultServer,
    client: httpx.AsyncClient,
    fault: str,
    error: type[Exception],
    stream: bool,
) -> None:
    for wire in ("openai", "gemini"):
        with pytest.raises(error):
            await client.post(**request_for(server, fault, wire, stream=stream))


@pytest.mark.parametrize("stream", [False, True])
async def test_html_200(server: FaultServer, client: httpx.AsyncClient, stream: bool) -> None:
    answer = await client.post(**request_for(server, "html_200", "gemini", stream=stream))
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/html")


async def test_malformed_json(server: FaultServer, client: httpx.AsyncClient) -> None:
    answer = await client.post(**request_for(server, "malformed_json", "openai", stream=False))
    with pytest.raises(ValueError):
        answer.json()
    streamed = await client.post(**request_for(server, "malformed_json", "openai", stream=True))
    first, done = events(streamed.text)
    with pytest.raises(ValueError):
        json.loads(first)
    assert done == "[DONE]"


@pytest.mark.parametrize("wire", ["openai", "gemini"])
async def test_cut_stream_ends_cleanly_without_its_terminator(
    server: FaultServer, client: httpx.AsyncClient, wire: str
) -> None:
    answer = await client.post(**request_for(server, "cut_stream", wire, stream=True))
    data = events(answer.text)
    assert len(data) == 2
    assert "[DONE]" not in data
    assert "finishReason" not in answer.text
    with pytest.raises(httpx.RemoteProtocolError):
        await client.post(**request_for(server, "cut_stream", wire, stream=False))


@pytest.mark.parametrize("wire", ["openai", "gemini"])
async def test_malformed_chunk_sits_between_good_ones(
    server: FaultServer, client: httpx.AsyncClient, wire: str
) -> None:
    answer = await client.post(**request_for(server, "malformed_chunk", wire, stream=True))
    data = [d for d in events(answer.text) if d != "[DONE]"]
    assert len(data) == 3
    json.loads(data[0])
    json.loads(data[2])
    with pytest.raises(ValueError):
        json.loads(data[1])
    plain = await client.post(**request_for(server, "malformed_chunk", wire, stream=False))
    assert "choices" in plain.json() or "candidates" in plain.json()


@pytest.mark.parametrize("wire", ["openai", "gemini"])
async def test_echoes(server: FaultServer, client: httpx.AsyncClient, wire: str) -> None:
    key = KEY if wire == "openai" else GEMINI_KEY
    whole = await client.post(**request_for(server, "key_echo", wire, stream=False))
    assert whole.status_code == (401 if wire == "openai" else 400)
    assert key in whole.json()["error"]["message"]
    partial = await client.post(**request_for(server, "key_echo_partial", wire, stream=True))
    message = partial.json()["error"]["message"]
    assert key[3:19] in message
    assert key not in message
    headers = await client.post(**request_for(server, "header_echo", wire, stream=False))
    assert "x-org-token: org-secret-value" in headers.json()["error"]["message"]


async def test_every_fault_has_an_answer_and_unknown_ones_are_refused(
    server: FaultServer, client: httpx.AsyncClient
) -> None:
    assert all(hasattr(server, f"_fault_{fault}") for fault in FAULTS)
    with pytest.raises(ValueError, match="unknown fault"):
        server.base_url("nope", "openai")
    url = server.base_url("ok", "openai").replace("/ok/", "/nope/")
    answer = await client.post(f"{url}/chat/completions", json={})
    assert answer.status_code == 404


async def test_stop_ends_every_connection(client: httpx.AsyncClient) -> None:
    server = await FaultServer().start()
    pending = asyncio.ensure_future(
        client.post(**request_for(server, "hang", "openai", stream=False))
    )
    for _ in range(100):
        if server.open_connections:
            break
        await asyncio.sleep(0.01)
    await server.stop()
    with pytest.raises(httpx.TransportError):
        await pending
    assert server.open_connections == 0
