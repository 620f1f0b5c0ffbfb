"""FakeProviderServer: the same behaviours over real loopback sockets, in real (short) time."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

import llmroute.testing._server as server_module
from llmroute.testing._script import (
    Behaviour,
    Blocked,
    FakeScript,
    Garbage,
    InvalidKey,
    RateLimit,
    Reply,
    ServerError,
    Status,
    Stream,
    Timeout,
    Wire,
)
from llmroute.testing._server import FakeProviderServer, serve_in_thread

MODELS: dict[Wire, str] = {"openai": "llama-3.1-8b-instant", "gemini": "gemini-2.5-flash"}
WIRES: list[Wire] = ["openai", "gemini"]


@pytest.fixture
async def server() -> AsyncIterator[FakeProviderServer]:
    async with FakeProviderServer() as server:
        yield server


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5.0) as client:
        yield client


def build(
    server: FakeProviderServer, wire: Wire, *, key: str = "key-1", stream: bool = False
) -> tuple[str, dict[str, str], dict[str, Any]]:
    """URL, headers and JSON body of a request as the real adapters would send it."""
    messages = [{"role": "user", "content": "Capital of France?"}]
    if wire == "openai":
        body: dict[str, Any] = {"model": MODELS[wire], "messages": messages, "stream": stream}
        return (
            f"{server.openai_base_url}/chat/completions",
            {"authorization": f"Bearer {key}"},
            body,
        )
    action = "streamGenerateContent?alt=sse" if stream else "generateContent"
    return (
        f"{server.gemini_base_url}/models/{MODELS[wire]}:{action}",
        {"x-goog-api-key": key},
        {"contents": [{"role": "user", "parts": [{"text": "Capital of France?"}]}]},
    )


def data_events(lines: list[str]) -> list[Any]:
    found: list[Any] = []
    for line in lines:
        if line.startswith("data: "):
            data = line[len("data: ") :]
            found.append(data if data == "[DONE]" else json.loads(data))
    return found


def delta_text(wire: Wire, event: Any) -> str:
    if wire == "openai":
        return str(event["choices"][0]["delta"].get("content", "")) if event["choices"] else ""
    return str(event["candidates"][0]["content"]["parts"][0]["text"])


async def eventually(condition: Callable[[], bool], seconds: float = 1.0) -> None:
    """Wait (briefly) for the server side to notice what the client just did."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.002)


def plain_check(wire: Wire) -> Callable[[httpx.Response], None]:
    def check(response: httpx.Response) -> None:
        answer = response.json()
        text = (
            answer["choices"][0]["message"]["content"]
            if wire == "openai"
            else answer["candidates"][0]["content"]["parts"][0]["text"]
        )
        assert text == "Paris."

    return check


CASES: list[tuple[str, Behaviour, int]] = [
    ("reply", Reply(text="Paris."), 200),
    ("stream", Stream(chunks=("Par", "is.")), 200),
    ("rate_limit", RateLimit(retry_after=3, retry_delay=3), 429),
    ("server_error", ServerError(status=502), 502),
    ("status", Status(status=404, body={"error": "nope"}), 404),
    ("garbage", Garbage(), 200),
]


@pytest.mark.parametrize("wire", WIRES)
@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("name", "behaviour", "status"), CASES, ids=[c[0] for c in CASES])
async def test_each_behaviour_over_the_wire(
    server: FakeProviderServer,
    client: httpx.AsyncClient,
    wire: Wire,
    stream: bool,
    name: str,
    behaviour: Behaviour,
    status: int,
) -> None:
    server.script.script(MODELS[wire], behaviour)
    url, headers, body = build(server, wire, stream=stream)
    async with client.stream("POST", url, headers=headers, json=body) as response:
        raw = await response.aread()
    assert response.status_code == status
    if name in ("reply", "stream"):
        if stream:
            events = data_events(raw.decode().splitlines())
            assert "".join(delta_text(wire, e) for e in events if e != "[DONE]") == "Paris."
            assert (events[-1] == "[DONE]") == (wire == "openai")
        else:
            plain_check(wire)(response)
    elif name == "rate_limit":
        assert response.headers["retry-after"] == "3"
        assert "RetryInfo" in raw.decode() or wire == "openai"
    elif name == "garbage":
        with pytest.raises(json.JSONDecodeError):
            json.loads(raw.removeprefix(b"data: "))
    elif name == "status":
        assert json.loads(raw) == {"error": "nope"}


@pytest.mark.parametrize(("wire", "status"), [("openai", 401), ("gemini", 400)])
async def test_invalid_key_and_blocked(
    server: FakeProviderServer, client: httpx.AsyncClient, wire: Wire, status: int
) -> None:
    server.script.script(MODELS[wire], InvalidKey(), Blocked())
    url, headers, body = build(server, wire)
    refused = await client.post(url, headers=headers, json=body)
    assert refused.status_code == status
    blocked = await client.post(url, headers=headers, json=body)
    if wire == "gemini":
        assert refused.json()["error"]["details"][0]["reason"] == "API_KEY_INVALID"
        assert blocked.status_code == 200
        assert blocked.json()["promptFeedback"]["blockReason"] == "SAFETY"
    else:
        assert blocked.status_code == 400


@pytest.mark.parametrize("wire", WIRES)
async def test_per_key_scripting_and_recording(
    server: FakeProviderServer, client: httpx.AsyncClient, wire: Wire
) -> None:
    server.script.script(MODELS[wire], RateLimit(), key="key-1")
    statuses = []
    for key in ("key-1", "key-2"):
        url, headers, body = build(server, wire, key=key)
        statuses.append((await client.post(url, headers=headers, json=body)).status_code)
    assert statuses == [429, 200]
    assert [(r.wire, r.model, r.key, r.stream) for r in server.script.requests] == [
        (wire, MODELS[wire], "key-1", False),
        (wire, MODELS[wire], "key-2", False),
    ]


@pytest.mark.parametrize("wire", WIRES)
async def test_stream_events_arrive_one_by_one(
    server: FakeProviderServer, client: httpx.AsyncClient, wire: Wire
) -> None:
    delay = 0.03
    server.script.script(MODELS[wire], Stream(chunks=("a", "b", "c"), delay=delay))
    url, headers, body = build(server, wire, stream=True)
    arrivals: list[tuple[float, str]] = []
    async with client.stream("POST", url, headers=headers, json=body) as response:
        async for line in response.aiter_lines():
            if line.startswith("data: {"):
                text = delta_text(wire, json.loads(line[len("data: ") :]))
                if text:
                    arrivals.append((time.monotonic(), text))
    assert [text for _, text in arrivals] == ["a", "b", "c"]
    # had the server buffered the stream, every event would arrive at once
    assert arrivals[1][0] - arrivals[0][0] >= delay * 0.8
    assert arrivals[2][0] - arrivals[0][0] >= 2 * delay * 0.8


@pytest.mark.parametrize("wire", WIRES)
async def test_fail_after_breaks_the_connection(
    server: FakeProviderServer, client: httpx.AsyncClient, wire: Wire
) -> None:
    server.script.script(MODELS[wire], Stream(chunks=("a", "b", "c"), fail_after=1))
    url, headers, body = build(server, wire, stream=True)
    texts: list[str] = []
    with pytest.raises(httpx.RemoteProtocolError):
        async with client.stream("POST", url, headers=headers, json=body) as response:
            async for line in response.aiter_lines():
                if line.startswith("data: {"):
                    texts.append(delta_text(wire, json.loads(line[len("data: ") :])))
    assert "".join(texts) == "a"
    await eventually(lambda: server.open_connections == 0)
    # the next request opens a fresh connection and works
    url, headers, body = build(server, wire)
    assert (await client.post(url, headers=headers, json=body)).status_code == 200


async def test_keep_alive_and_connection_counting(server: FakeProviderServer) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(5):
            url, headers, body = build(server, "openai")
            assert (await client.post(url, headers=headers, json=body)).status_code == 200
        assert server.open_connections == 1
        assert server.connections_total == 1
    await eventually(lambda: server.open_connections == 0)
    assert server.connections_total == 1


async def test_early_break_closes_the_connection(server: FakeProviderServer) -> None:
    server.script.script(MODELS["openai"], Stream(chunks=("a",) * 50, delay=0.01))
    url, headers, body = build(server, "openai", stream=True)
    async with (
        httpx.AsyncClient() as client,
        client.stream("POST", url, headers=headers, json=body) as response,
    ):
        async for _ in response.aiter_lines():
            break
    await eventually(lambda: server.open_connections == 0)


async def test_timeout_holds_until_the_client_gives_up(server: FakeProviderServer) -> None:
    server.script.script(MODELS["gemini"], Timeout())
    url, headers, body = build(server, "gemini")
    async with httpx.AsyncClient(timeout=0.05) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.post(url, headers=headers, json=body)
    await eventually(lambda: server.open_connections == 0)


async def test_latency_is_really_waited() -> None:
    script = FakeScript()
    script.script(MODELS["openai"], Reply(latency=0.02))
    async with FakeProviderServer(script, latency=0.01) as server, httpx.AsyncClient() as client:
        url, headers, body = build(server, "openai")
        started = time.monotonic()
        await client.post(url, headers=headers, json=body)
        assert time.monotonic() - started >= 0.025


async def test_stop_drops_every_connection_and_leaves_no_task() -> None:
    server = FakeProviderServer()
    await server.start()
    server.script.script(MODELS["openai"], Timeout())
    server.script.script(MODELS["gemini"], Stream(chunks=("a", "b"), delay=10.0))
    client = httpx.AsyncClient(timeout=5.0)

    async def hang() -> None:
        url, headers, body = build(server, "openai")
        await client.post(url, headers=headers, json=body)

    async def half_stream() -> None:
        url, headers, body = build(server, "gemini", stream=True)
        async with client.stream("POST", url, headers=headers, json=body) as response:
            async for _ in response.aiter_lines():
                pass

    pending = [asyncio.create_task(hang()), asyncio.create_task(half_stream())]
    await eventually(lambda: len(server.script.requests) == 2)
    await server.stop()
    assert server.open_connections == 0
    results = await asyncio.gather(*pending, return_exceptions=True)
    assert all(isinstance(r, httpx.TransportError) for r in results), results
    await client.aclose()
    assert asyncio.all_tasks() == {asyncio.current_task()}
    await server.stop()


async def test_raw_http_pipelining_and_chunked_bodies(server: FakeProviderServer) -> None:
    body = json.dumps({"model": "m", "messages": []}).encode()
    chunked = b"%x\r\n%b\r\n0\r\n\r\n" % (len(body), body)
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n"
        + chunked
    )
    last = b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nconnection: close\r\n"
    last += b"content-length: %d\r\n\r\n%b" % (len(body), body)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(request + last)
    data = await reader.read()
    writer.close()
    await writer.wait_closed()
    assert data.count(b"HTTP/1.1 200 OK") == 2
    assert b"connection: close" in data
    assert data.count(b"fake answer from m") == 2


async def test_bad_request_is_refused(server: FakeProviderServer) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(b"nonsense\r\n\r\n")
    data = await reader.read()
    writer.close()
    await writer.wait_closed()
    assert data.startswith(b"HTTP/1.1 400 ")


async def test_a_fault_of_the_fake_is_a_500() -> None:
    class Broken(FakeScript):
        def handle(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("boom")

    async with FakeProviderServer(Broken()) as server, httpx.AsyncClient() as client:
        url, headers, body = build(server, "openai")
        response = await client.post(url, headers=headers, json=body)
    assert response.status_code == 500
    assert "boom" in response.text


def test_loopback_only() -> None:
    with pytest.raises(ValueError, match="loopback"):
        FakeProviderServer(host="0.0.0.0")
    FakeProviderServer(host="::1")


async def test_urls_need_a_started_server() -> None:
    server = FakeProviderServer()
    with pytest.raises(RuntimeError):
        _ = server.base_url
    async with server:
        assert server.openai_base_url == f"http://127.0.0.1:{server.port}/v1"
        assert server.gemini_base_url == f"http://127.0.0.1:{server.port}/v1beta"
        assert "open_connections=0" in repr(server)


def test_serve_in_thread_for_sync_code() -> None:
    script = FakeScript()
    script.script(MODELS["gemini"], RateLimit(per_day=True))
    with serve_in_thread(script) as server, httpx.Client() as client:
        url, headers, body = build(server, "gemini")
        assert client.post(url, headers=headers, json=body).status_code == 429
        assert client.post(url, headers=headers, json=body).status_code == 200
    assert len(script.requests) == 2


def runner_env() -> dict[str, str]:
    """The environment for a child that must import this very llmroute."""
    src = str(Path(server_module.__file__).resolve().parents[2])
    return {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}


async def test_command_line_runner_serves_until_sigterm() -> None:
    env = runner_env()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "llmroute.testing._server",
        "--port",
        "0",
        "--latency-ms",
        "1",
        stdout=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 10)).decode().strip()
        assert line.startswith("listening on http://127.0.0.1:")
        base_url = line.removeprefix("listening on ")
        async with httpx.AsyncClient() as client:
            response = await client.post(
                f"{base_url}/v1/chat/completions",
                json={"model": "llama-3.1-8b-instant", "messages": []},
            )
        assert response.json()["choices"][0]["message"]["content"].startswith("fake answer")
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 10) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
