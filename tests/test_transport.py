"""AiohttpClient, the Router's default HTTP client, over real sockets on 127.0.0.1: it must
answer the calls the adapters make exactly as `httpx.AsyncClient` does, down to the lines
of a stream and the httpx exception raised for each way a connection can fail.

Servers: `FakeProviderServer` for provider answers, and small `asyncio.start_server` servers
for what a provider never does on purpose (closing mid-body, resetting, splitting `\\r\\n`
across writes). Where both clients can talk to the same server, both do, and must agree.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import itertools
import json
import logging
import socket
import struct
import subprocess
import sys
import threading
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import aiohttp
import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmroute import Router
from llmroute._transport import _EXCEPTIONS, AiohttpClient, AiohttpResponse, _mapped
from llmroute.providers._http import HttpClient, HttpResponse, iter_sse_data, transport_failure
from llmroute.testing import (
    FakeProviderServer,
    FaultServer,
    Garbage,
    Reply,
    Status,
    Stream,
    Timeout,
    serve_in_thread,
)
from transport_faults import FAULT_WORDS, assert_fails_in_words, one_model_config

JSON = {"content-type": "application/json"}
#: seconds after which a test that waits on the client fails instead of hanging
GUARD = 5.0
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


# -- helpers ---------------------------------------------------------------------------


@pytest.fixture
async def server() -> AsyncIterator[FakeProviderServer]:
    async with FakeProviderServer() as server:
        yield server


@pytest.fixture
async def client() -> AsyncIterator[AiohttpClient]:
    client = AiohttpClient()
    yield client
    await client.aclose()


def new_client(kind: str) -> HttpClient:
    # httpx reads proxy settings from the environment unless told not to
    return AiohttpClient() if kind == "aiohttp" else httpx.AsyncClient(trust_env=False)


@pytest.fixture(params=["aiohttp", "httpx"])
async def any_client(request: pytest.FixtureRequest) -> AsyncIterator[HttpClient]:
    """Each client in turn: what AiohttpClient does, httpx must do too."""
    client = new_client(request.param)
    yield client
    await client.aclose()


def chat_url(server: FakeProviderServer) -> str:
    return f"{server.openai_base_url}/chat/completions"


def chat_body(model: str = "m", *, stream: bool = False) -> bytes:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    return json.dumps(body).encode()


async def until(predicate: Callable[[], bool], *, seconds: float = 5.0) -> None:
    """Let the loop turn until `predicate` holds (the server notices a close on its next
    read); fail after `seconds`."""
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while not predicate():
        assert loop.time() < end, "condition never became true"
        await asyncio.sleep(0.001)


async def settle() -> None:
    """A few loop turns: over loopback, the client has read what was written by then."""
    for _ in range(20):
        await asyncio.sleep(0)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens there: connecting is refused


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return await reader.readexactly(length)


@contextlib.asynccontextmanager
async def raw_server(handler: Handler) -> AsyncIterator[str]:
    """A one-off HTTP server on 127.0.0.1 answering every connection with `handler`;
    yields a URL on it."""
    tasks: set[asyncio.Task[Any]] = set()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tasks.add(task)
        try:
            await handler(reader, writer)
        except ConnectionError:
            pass
        finally:
            writer.close()

    listener = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/v1/chat/completions"
    finally:
        listener.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await listener.wait_closed()


SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
    b"transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
)


def http_chunk(data: bytes) -> bytes:
    return b"%x\r\n%b\r\n" % (len(data), data)


def sends(pieces: Sequence[bytes]) -> Handler:
    """A chunked 200 whose body leaves in `pieces`, each read by the client before the next
    is written, so the client sees the body cut exactly there."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(SSE_HEAD)
        for piece in pieces:
            writer.write(http_chunk(piece))
            await writer.drain()
            await settle()
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    return handle


async def collect_lines(client: HttpClient, url: str) -> list[str]:
    async with client.stream("POST", url, content=b"{}", headers=JSON) as response:
        return [line async for line in response.aiter_lines()]


# -- post ------------------------------------------------------------------------------


async def test_post_returns_status_headers_content_and_json(
    server: FakeProviderServer, client: AiohttpClient
) -> None:
    server.script.script("m", Reply(text="Paris."))
    body = chat_body()
    headers = {**JSON, "Authorization": "Bearer sk-test", "X-Custom": "Kept As Sent"}
    response = await client.post(chat_url(server), content=body, headers=headers, timeout=5)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["content-type"] == response.headers["CONTENT-TYPE"]
    assert response.headers.get("Retry-After") is None
    assert response.json() == json.loads(response.content)
    assert response.json()["choices"][0]["message"]["content"] == "Paris."
    # the request arrived intact: path, body and every header
    (request,) = server.script.requests
    assert request.path == "/v1/chat/completions"
    assert request.body == json.loads(body)
    assert request.key == "sk-test"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-custom"] == "Kept As Sent"
    assert request.headers["content-length"] == str(len(body))


async def test_post_sends_binary_bodies_byte_for_byte(client: AiohttpClient) -> None:
    received: list[bytes] = []
    payload = bytes(range(256)) * 300  # larger than one socket read

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        received.append(await read_request(reader))
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()

    async with raw_server(echo) as url:
        response = await client.post(url, content=payload, headers=JSON)
    assert received == [payload]
    assert response.content == b"ok"


@pytest.mark.parametrize(
    ("behaviour", "body"),
    [
        (
            Status(status=429, body={"error": "slow down"}, headers={"Retry-After": "7"}),
            b'{"error":"slow down"}',
        ),
        (Status(status=503, body="upstream down"), b"upstream down"),
        (Status(status=401, body=b""), b""),
    ],
    ids=["429", "503", "401-empty"],
)
async def test_post_returns_error_answers_instead_of_raising(
    server: FakeProviderServer, any_client: HttpClient, behaviour: Status, body: bytes
) -> None:
    server.script.script("m", behaviour)
    response = await any_client.post(chat_url(server), content=chat_body(), headers=JSON)
    assert response.status_code == behaviour.status
    assert response.content == body
    assert response.headers.get("Retry-After") == behaviour.headers.get("Retry-After")


async def test_post_hands_over_a_body_that_is_not_json(
    server: FakeProviderServer, client: AiohttpClient
) -> None:
    server.script.script("m", Garbage())
    response = await client.post(chat_url(server), content=chat_body(), headers=JSON)
    assert response.status_code == 200
    assert response.content.startswith(b"<!doctype html>")
    with pytest.raises(ValueError):
        response.json()


async def test_post_reuses_the_pooled_connection(
    server: FakeProviderServer, client: AiohttpClient
) -> None:
    for _ in range(3):
        response = await client.post(chat_url(server), content=chat_body(), headers=JSON)
        assert response.status_code == 200
    assert server.connections_total == 1


# -- stream ----------------------------------------------------------------------------


async def test_stream_yields_sse_lines_and_events(
    server: FakeProviderServer, any_client: HttpClient
) -> None:
    server.script.script("m", Stream(chunks=("Par", "is", ".")))
    async with any_client.stream(
        "POST", chat_url(server), content=chat_body(stream=True), headers=JSON, timeout=5
    ) as response:
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "text/event-stream"
        events = [data async for data in iter_sse_data(response)]
    assert events[-1] == "[DONE]"
    texts = [json.loads(e)["choices"][0]["delta"].get("content") for e in events[:-1]]
    assert "".join(t for t in texts if t) == "Paris."
    assert server.script.requests[0].body == json.loads(chat_body(stream=True))


async def test_first_event_is_handed_over_before_the_next_is_sent(
    client: AiohttpClient,
) -> None:
    go = asyncio.Event()
    second_sent = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(SSE_HEAD + http_chunk(b"data: one\n\n"))
        await writer.drain()
        await go.wait()  # the test decides when the second event leaves
        writer.write(http_chunk(b"data: two\n\n") + b"0\r\n\r\n")
        second_sent.set()
        await writer.drain()

    async with (
        raw_server(handle) as url,
        client.stream("POST", url, content=b"{}", headers=JSON, timeout=5) as response,
    ):
        events = iter_sse_data(response)
        # would hang (and time out) if the client waited for more bytes or the body's end
        assert await asyncio.wait_for(anext(events), timeout=GUARD) == "one"
        assert not second_sent.is_set()
        go.set()
        assert [e async for e in events] == ["two"]


async def test_stream_delay_first_event_arrives_before_the_delay(
    server: FakeProviderServer, client: AiohttpClient
) -> None:
    delay = 3.0
    server.script.script("m", Stream(chunks=("one", "two"), delay=delay))
    halfway = asyncio.Event()  # set by the test's own timer, well before "two" may leave
    timer = asyncio.get_running_loop().call_later(delay / 2, halfway.set)
    try:
        async with client.stream(
            "POST", chat_url(server), content=chat_body(stream=True), headers=JSON, timeout=10
        ) as response:
            contents: list[str] = []
            async for data in iter_sse_data(response):
                content = json.loads(data)["choices"][0]["delta"]["content"]
                if content:
                    contents.append(content)
                    break  # leave early: the test never waits for the delay
        assert contents == ["one"]
        assert not halfway.is_set()
    finally:
        timer.cancel()


async def test_aread_inside_the_block(server: FakeProviderServer, any_client: HttpClient) -> None:
    server.script.script("m", Status(status=400, body={"error": {"message": "bad request"}}))
    server.script.script("m", Stream(chunks=("a", "b")))
    url = chat_url(server)
    async with any_client.stream("POST", url, content=chat_body(), headers=JSON) as response:
        assert response.status_code == 400
        body = await response.aread()
        assert response.content == body
        assert json.loads(body) == {"error": {"message": "bad request"}}
    async with any_client.stream(
        "POST", url, content=chat_body(stream=True), headers=JSON
    ) as response:
        body = await response.aread()
    assert body.startswith(b"data: {") and body.endswith(b"data: [DONE]\n\n")


async def test_leaving_the_block_early_drops_the_connection(
    server: FakeProviderServer, client: AiohttpClient
) -> None:
    server.script.script("m", Stream(chunks=("a", "b", "c"), delay=5.0))
    url = chat_url(server)
    async with client.stream("POST", url, content=chat_body(stream=True), headers=JSON) as response:
        async for _line in response.aiter_lines():
            assert server.open_connections == 1
            break
    # an unread remainder makes the connection unfit for reuse: it is closed, not pooled
    await until(lambda: server.open_connections == 0)
    response2 = await client.post(url, content=chat_body(), headers=JSON)
    assert response2.status_code == 200
    assert server.connections_total == 2


async def test_a_stream_read_to_its_end_returns_the_connection_to_the_pool(
    server: FakeProviderServer, client: AiohttpClient
) -> None:
    server.script.script("m", Stream(chunks=("a", "b")))
    url = chat_url(server)
    async with client.stream("POST", url, content=chat_body(stream=True), headers=JSON) as response:
        assert [line async for line in response.aiter_lines()][-2:] == ["data: [DONE]", ""]
    assert (await client.post(url, content=chat_body(), headers=JSON)).status_code == 200
    assert server.connections_total == 1


async def test_an_exception_in_the_block_drops_the_connection(
    server: FakeProviderServer, client: AiohttpClient
) -> None:
    server.script.script("m", Stream(chunks=("a", "b"), delay=5.0))
    with pytest.raises(KeyError):
        async with client.stream(
            "POST", chat_url(server), content=chat_body(stream=True), headers=JSON
        ) as response:
            assert response.status_code == 200
            raise KeyError("consumer failed")
    await until(lambda: server.open_connections == 0)


async def test_stream_sends_only_post(client: AiohttpClient) -> None:
    with pytest.raises(ValueError, match="only sends POST"):
        async with client.stream("GET", "http://127.0.0.1:9/", content=b"", headers={}):
            pass  # pragma: no cover


# -- line splitting: the same lines as httpx.Response.aiter_lines ----------------------


class _FakeContent:
    """aiohttp's `StreamReader.readany()`: the next chunk, b"" at the end."""

    def __init__(self, chunks: Sequence[bytes]) -> None:
        self._chunks = list(chunks)

    async def readany(self) -> bytes:
        return self._chunks.pop(0) if self._chunks else b""


class _FakeClientResponse:
    status = 200
    headers: dict[str, str] = {}

    def __init__(self, chunks: Sequence[bytes]) -> None:
        self.content = _FakeContent(chunks)


async def aiohttp_lines(chunks: Sequence[bytes]) -> list[str]:
    fake = cast(aiohttp.ClientResponse, _FakeClientResponse(chunks))
    return [line async for line in AiohttpResponse(fake, None).aiter_lines()]


async def httpx_lines(chunks: Sequence[bytes]) -> list[str]:
    async def body() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    response = httpx.Response(200, content=body())
    return [line async for line in response.aiter_lines()]


# Line ends SSE allows (`\n`, `\r\n`, `\r`), multi-byte characters, invalid UTF-8 and a
# UTF-8 sequence cut short: where a chunk boundary falls must not change the lines.
_PIECES = [
    b"a",
    b"data: x",
    "é".encode(),
    "€".encode(),
    b"\r",
    b"\n",
    b"\r\n",
    b"\xff",
    b"\xe2\x82",
]


@st.composite
def chunkings(draw: st.DrawFn) -> list[bytes]:
    body = b"".join(draw(st.lists(st.sampled_from(_PIECES), max_size=24)))
    if not body:
        return []
    cuts = draw(st.sets(st.integers(1, len(body) - 1), max_size=12)) if len(body) > 1 else set()
    bounds = [0, *sorted(cuts), len(body)]
    return [body[start:end] for start, end in itertools.pairwise(bounds)]


@settings(max_examples=400, deadline=None)
@given(chunks=chunkings())
def test_lines_match_httpx_for_any_chunking(chunks: list[bytes]) -> None:
    async def both() -> tuple[list[str], list[str], list[str]]:
        whole = [b"".join(chunks)] if chunks else []
        return await aiohttp_lines(chunks), await httpx_lines(chunks), await httpx_lines(whole)

    ours, theirs, unchunked = asyncio.run(both())
    assert ours == theirs
    assert ours == unchunked


@pytest.mark.parametrize(
    ("chunks", "lines"),
    [
        ([b"data: a\r", b"\ndata: b\r\n\r\n"], ["data: a", "data: b", ""]),  # split \r\n
        ([b"data: a\r", b"\r\n"], ["data: a", ""]),  # \r, then \r\n
        ([b"a\rb\r", b"c\n"], ["a", "b", "c"]),  # lone \r line ends
        ([b"a\r"], ["a"]),  # a body ending in \r
        ([b"a\n\r"], ["a", ""]),
        ([b"\xe2", b"\x82\xac\n"], ["€"]),  # a character split across chunks
        ([b"no newline at all"], ["no newline at all"]),
    ],
)
async def test_line_ends_like_httpx(chunks: list[bytes], lines: list[str]) -> None:
    assert await aiohttp_lines(chunks) == lines
    assert await httpx_lines(chunks) == lines


async def test_only_cr_and_lf_end_lines() -> None:
    # SSE lines end at \r, \n or \r\n only. httpx also splits at the other `str.splitlines`
    # breaks (U+2028, \x0c, \x85, ...), which would cut a JSON data line carrying one.
    event = json.dumps({"t": "a\u2028b\x0cc\x85d"}, ensure_ascii=False).encode()
    assert await aiohttp_lines([b"data: " + event + b"\n\n"]) == [f"data: {event.decode()}", ""]


async def test_split_crlf_over_a_real_socket(any_client: HttpClient) -> None:
    pieces = [b"data: one\r", b"\ndata: two\r", b"\n\r", b"\n"]
    async with raw_server(sends(pieces)) as url:
        if isinstance(any_client, AiohttpClient):
            # the pieces really reach the client one by one
            async with any_client.stream("POST", url, content=b"{}", headers=JSON) as response:
                assert [chunk async for chunk in response.aiter_bytes()] == pieces
        lines = await collect_lines(any_client, url)
    assert lines == ["data: one", "data: two", ""]


@settings(max_examples=25, deadline=None)
@given(chunks=chunkings())
def test_lines_over_a_real_socket_match_httpx(chunks: list[bytes]) -> None:
    async def run() -> tuple[list[str], list[str], list[str]]:
        async with raw_server(sends(chunks)) as url:
            clients = (AiohttpClient(), httpx.AsyncClient(trust_env=False))
            try:
                ours, theirs = [await collect_lines(c, url) for c in clients]
            finally:
                for c in clients:
                    await c.aclose()
        return ours, theirs, await httpx_lines(chunks)

    ours, theirs, expected = asyncio.run(run())
    assert ours == theirs == expected


# -- failures: httpx's exceptions, and what the adapters make of them ------------------


async def _close_mid_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n0123456789")
    await writer.drain()


async def _close_mid_chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    writer.write(SSE_HEAD + http_chunk(b"data: one\n\n"))
    await writer.drain()


async def _close_without_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)


async def _reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()  # linger 0: an RST instead of a FIN


async def _bad_status_line(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    writer.write(b"NONSENSE sk-echoed-secret\r\n\r\n")
    await writer.drain()


async def _bad_header(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_request(reader)
    writer.write(b"HTTP/1.1 200 OK\r\nbad header line\r\ncontent-length: 0\r\n\r\n")
    await writer.drain()


FAILURES = [
    pytest.param(
        _close_mid_body, httpx.RemoteProtocolError, "cut off before its end", id="closed-mid-body"
    ),
    pytest.param(
        _close_mid_chunked,
        httpx.RemoteProtocolError,
        "cut off before its end",
        id="closed-mid-chunked-body",
    ),
    pytest.param(
        _close_without_answer,
        httpx.RemoteProtocolError,
        "closed the connection without answering",
        id="closed-without-answer",
    ),
    pytest.param(_reset, httpx.ReadError, "connection reset by 127.0.0.1:", id="reset"),
]


@pytest.mark.parametrize(("handler", "expected", "words"), FAILURES)
async def test_broken_connections_raise_what_httpx_raises(
    any_client: HttpClient, handler: Handler, expected: type[httpx.TransportError], words: str
) -> None:
    async with raw_server(handler) as url:
        with pytest.raises(httpx.TransportError) as caught:
            await any_client.post(url, content=b"{}", headers=JSON, timeout=5)
    assert type(caught.value) is expected
    failure = transport_failure(caught.value)
    assert (failure.kind, failure.reached) == ("transport_error", True)
    if isinstance(any_client, AiohttpClient):
        assert words in str(caught.value)
        # aiohttp's own text stays out, and so does its exception
        assert caught.value.__cause__ is None
        assert caught.value.__suppress_context__


@pytest.mark.parametrize(
    ("handler", "words"),
    [
        (_bad_status_line, "malformed answer from 127.0.0.1:"),
        (_bad_header, "malformed answer from 127.0.0.1:"),
    ],
)
async def test_a_malformed_answer_is_said_in_words_without_its_bytes(
    handler: Handler, words: str, client: AiohttpClient
) -> None:
    async with raw_server(handler) as url:
        for call in ("post", "stream"):
            with pytest.raises(httpx.RemoteProtocolError) as caught:
                if call == "post":
                    await client.post(url, content=b"{}", headers=JSON, timeout=5)
                else:
                    async with client.stream("POST", url, content=b"{}", headers=JSON):
                        pass  # pragma: no cover
            message = str(caught.value)
            assert words in message
            # never aiohttp's internal "400", nor the bytes the server sent
            assert "400" not in message
            assert "sk-echoed" not in message
            assert "NONSENSE" not in message
            assert caught.value.__cause__ is None


async def test_refused_is_said_in_words_without_ssl_default(client: AiohttpClient) -> None:
    port = closed_port()
    with pytest.raises(httpx.ConnectError) as caught:
        await client.post(f"http://127.0.0.1:{port}/v1/x", content=b"{}", headers=JSON)
    assert str(caught.value) == f"connection refused by 127.0.0.1:{port}"


async def test_the_url_path_and_user_part_never_appear_in_a_message(
    client: AiohttpClient,
) -> None:
    async with raw_server(_close_without_answer) as url:
        secret_url = url.replace("127.0.0.1", "user:pa55word-secret@127.0.0.1").replace(
            "/v1/", "/tenant-token-0123456789/v1/"
        )
        with pytest.raises(httpx.RemoteProtocolError) as caught:
            await client.post(secret_url, content=b"{}", headers=JSON)
    assert "pa55word" not in str(caught.value)
    assert "tenant-token" not in str(caught.value)
    assert "127.0.0.1:" in str(caught.value)


async def test_connection_refused_is_a_connect_error(any_client: HttpClient) -> None:
    url = f"http://127.0.0.1:{closed_port()}/v1/chat/completions"
    with pytest.raises(httpx.TransportError) as caught:
        await any_client.post(url, content=b"{}", headers=JSON, timeout=5)
    assert type(caught.value) is httpx.ConnectError
    failure = transport_failure(caught.value)
    assert (failure.kind, failure.reached) == ("transport_error", False)
    with pytest.raises(httpx.ConnectError):
        async with any_client.stream("POST", url, content=b"{}", headers=JSON):
            pass  # pragma: no cover


async def test_a_server_that_never_answers_is_a_read_timeout(
    server: FakeProviderServer, any_client: HttpClient
) -> None:
    server.script.script("m", Timeout(), Timeout())
    url = chat_url(server)
    async with asyncio.timeout(GUARD):
        with pytest.raises(httpx.TimeoutException) as caught:
            await any_client.post(url, content=chat_body(), headers=JSON, timeout=0.2)
        with pytest.raises(httpx.ReadTimeout):
            async with any_client.stream(
                "POST", url, content=chat_body(stream=True), headers=JSON, timeout=0.2
            ):
                pass  # pragma: no cover
    assert type(caught.value) is httpx.ReadTimeout
    failure = transport_failure(caught.value)
    assert (failure.kind, failure.reached) == ("timeout", True)
    # the client gave up on both connections, and the server sees them go
    await until(lambda: server.open_connections == 0)


async def test_a_stream_that_stalls_is_a_read_timeout(
    server: FakeProviderServer, any_client: HttpClient
) -> None:
    # the timeout applies to each read, not to the whole body
    server.script.script("m", Stream(chunks=("a", "b"), delay=5.0))
    lines: list[str] = []
    async with asyncio.timeout(GUARD / 2):  # well before "b" would come
        with pytest.raises(httpx.ReadTimeout):
            async with any_client.stream(
                "POST", chat_url(server), content=chat_body(stream=True), headers=JSON, timeout=0.2
            ) as response:
                async for line in response.aiter_lines():
                    lines.append(line)
    assert json.loads(lines[0].removeprefix("data: "))["choices"][0]["delta"]["role"]
    await until(lambda: server.open_connections == 0)


async def test_a_stream_cut_after_some_events_raises_after_them(
    server: FakeProviderServer, any_client: HttpClient
) -> None:
    server.script.script("m", Stream(chunks=("a", "b", "c"), fail_after=1))
    events: list[str] = []
    with pytest.raises(httpx.RemoteProtocolError):
        async with any_client.stream(
            "POST", chat_url(server), content=chat_body(stream=True), headers=JSON
        ) as response:
            async for data in iter_sse_data(response):
                events.append(data)
    assert len(events) == 2  # the role chunk and "a", nothing after the break


async def test_a_cut_body_raises_inside_the_stream(any_client: HttpClient) -> None:
    async with raw_server(_close_mid_chunked) as url:
        lines: list[str] = []
        with pytest.raises(httpx.RemoteProtocolError):
            async with any_client.stream("POST", url, content=b"{}", headers=JSON) as response:
                async for line in response.aiter_lines():
                    lines.append(line)
    assert lines == ["data: one", ""]


def _connector_error(exc_class: type[aiohttp.ClientConnectorError]) -> BaseException:
    key = type("Key", (), {"host": "127.0.0.1", "port": 1, "ssl": True})()
    return exc_class(key, OSError(111, "refused"))


@pytest.mark.parametrize(
    ("exc", "expected", "kind", "reached"),
    [
        (aiohttp.ConnectionTimeoutError(), httpx.ConnectTimeout, "timeout", False),
        (aiohttp.SocketTimeoutError(), httpx.ReadTimeout, "timeout", True),
        (aiohttp.ServerTimeoutError(), httpx.ReadTimeout, "timeout", True),
        (TimeoutError(), httpx.PoolTimeout, "timeout", False),
        (
            _connector_error(aiohttp.ClientConnectorError),
            httpx.ConnectError,
            "transport_error",
            False,
        ),
        (
            _connector_error(aiohttp.ClientConnectorDNSError),
            httpx.ConnectError,
            "transport_error",
            False,
        ),
        (aiohttp.ServerDisconnectedError(), httpx.RemoteProtocolError, "transport_error", True),
        (aiohttp.ClientPayloadError("cut"), httpx.RemoteProtocolError, "transport_error", True),
        (aiohttp.ClientOSError(104, "reset"), httpx.ReadError, "transport_error", True),
        (aiohttp.InvalidURL("x"), httpx.UnsupportedProtocol, "transport_error", True),
        (aiohttp.ClientConnectionError("x"), httpx.NetworkError, "transport_error", True),
        (aiohttp.ClientError("x"), httpx.TransportError, "transport_error", True),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else None,
)
def test_exception_mapping(
    exc: BaseException, expected: type[httpx.TransportError], kind: str, reached: bool
) -> None:
    # subclasses find their own entry before their bases' (MRO order)
    mapped = _mapped(exc)
    assert type(mapped) is expected
    failure = transport_failure(mapped)
    assert (failure.kind, failure.reached) == (kind, reached)


def test_every_mapped_exception_is_an_httpx_transport_error() -> None:
    assert all(issubclass(target, httpx.TransportError) for target in _EXCEPTIONS.values())


# -- event loops and closing -----------------------------------------------------------


@contextlib.contextmanager
def no_leak_reports(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Nothing left open: no ResourceWarning at garbage collection, no asyncio log about an
    unclosed session or connector."""
    caplog.set_level(logging.ERROR, logger="asyncio")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []
    assert "Unclosed" not in caplog.text


def test_a_new_event_loop_gets_a_new_session(caplog: pytest.LogCaptureFixture) -> None:
    client = AiohttpClient()
    with no_leak_reports(caplog), serve_in_thread() as server:
        url = chat_url(server)

        async def ask() -> int:
            response = await client.post(url, content=chat_body(), headers=JSON)
            return response.status_code

        assert asyncio.run(ask()) == 200

        async def ask_again() -> int:
            # the first loop's connection was closed when that loop shut down
            await until(lambda: server.open_connections == 0)
            return await ask()

        assert asyncio.run(ask_again()) == 200
        assert server.connections_total == 2
        asyncio.run(client.aclose())
        asyncio.run(client.aclose())


def test_one_runner_keeps_one_session(caplog: pytest.LogCaptureFixture) -> None:
    client = AiohttpClient()
    with no_leak_reports(caplog), serve_in_thread() as server, asyncio.Runner() as runner:
        for _ in range(3):
            response = runner.run(client.post(chat_url(server), content=chat_body(), headers=JSON))
            assert response.status_code == 200
        assert server.connections_total == 1
        runner.run(client.aclose())


async def test_aclose_is_idempotent_and_closes_the_connections(
    server: FakeProviderServer,
) -> None:
    client = AiohttpClient()
    await client.aclose()  # never used: nothing to close
    response = await client.post(chat_url(server), content=chat_body(), headers=JSON)
    assert response.status_code == 200
    assert server.open_connections == 1
    await client.aclose()
    await client.aclose()
    await until(lambda: server.open_connections == 0)


def test_two_loops_at_once_each_get_their_own_session(caplog: pytest.LogCaptureFixture) -> None:
    client = AiohttpClient()
    barrier = threading.Barrier(2)
    results: list[int] = []

    with no_leak_reports(caplog), serve_in_thread() as server:
        url = chat_url(server)

        async def ask_twice() -> None:
            for _ in range(2):
                response = await client.post(url, content=chat_body(), headers=JSON)
                results.append(response.status_code)
                await asyncio.to_thread(barrier.wait, GUARD)  # both loops hold a session now
            await client.aclose()

        threads = [threading.Thread(target=asyncio.run, args=(ask_twice(),)) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(GUARD)
    assert results == [200] * 4
    # each loop kept its connection for its second request
    assert server.connections_total == 2


async def test_a_session_closed_twice_at_once_closes_once(server: FakeProviderServer) -> None:
    # its loop's aclose and another thread's hand-over can meet
    client = AiohttpClient()
    response = await client.post(chat_url(server), content=chat_body(), headers=JSON)
    assert response.status_code == 200
    entry = client._sessions[asyncio.get_running_loop()]
    await asyncio.gather(entry.close(), entry.close(), client.aclose())
    assert entry.session.closed
    await until(lambda: server.open_connections == 0)


async def test_a_cancelled_post_closes_its_connection_and_leaves_no_task(
    server: FakeProviderServer, client: AiohttpClient
) -> None:
    server.script.script("m", Timeout(), Stream(chunks=("a", "b"), delay=5.0))
    before = asyncio.all_tasks()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await client.post(chat_url(server), content=chat_body(), headers=JSON, timeout=30)
    await until(lambda: server.open_connections == 0)
    lines: list[str] = []
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):
            async with client.stream(
                "POST", chat_url(server), content=chat_body(stream=True), headers=JSON, timeout=30
            ) as response:
                async for line in response.aiter_lines():
                    lines.append(line)
    assert lines  # the first event came before the cancellation
    await until(lambda: server.open_connections == 0)
    assert asyncio.all_tasks() == before
    connector = client._get_session().connector
    assert connector is not None
    assert connector._conns == {}  # nothing pooled from a cancelled call


_NEVER_CLOSED = """
import asyncio, json, sys
from llmroute._transport import AiohttpClient
from llmroute.testing import serve_in_thread

client = AiohttpClient()
BODY = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}).encode()
HEADERS = {"content-type": "application/json"}

with serve_in_thread() as server:
    url = server.openai_base_url + "/chat/completions"

    async def ask():
        return (await client.post(url, content=BODY, headers=HEADERS)).status_code

    if sys.argv[1] == "asyncio.run":
        assert asyncio.run(ask()) == 200
        assert asyncio.run(ask()) == 200
    else:
        runner = asyncio.Runner()  # never closed, as a sync wrapper's may be
        assert runner.run(ask()) == 200
        assert runner.run(ask()) == 200
        RUNNER = runner
print("done")
"""


@pytest.mark.parametrize("how", ["asyncio.run", "runner"])
def test_a_client_never_closed_prints_nothing_at_exit(how: str, tmp_path: Path) -> None:
    script = tmp_path / "never_closed.py"
    script.write_text(_NEVER_CLOSED)
    flags = ["-W", "always::ResourceWarning"] if how == "asyncio.run" else []
    done = subprocess.run(
        [sys.executable, *flags, str(script), how],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "done\n", "")


# -- the HttpClient protocol -----------------------------------------------------------


def takes_http_client(client: HttpClient) -> HttpClient:
    """Type-checked (`mypy --strict tests/test_transport.py`) with both clients below."""
    return client


def takes_http_response(response: HttpResponse) -> HttpResponse:
    return response


async def test_both_clients_fit_the_protocol(server: FakeProviderServer) -> None:
    ours = AiohttpClient()
    theirs = httpx.AsyncClient(trust_env=False)
    a_response: AiohttpResponse = await ours.post(
        chat_url(server), content=chat_body(), headers=JSON
    )
    assert takes_http_response(a_response).status_code == 200
    for client in (takes_http_client(ours), takes_http_client(theirs)):
        response = await client.post(chat_url(server), content=chat_body(), headers=JSON)
        assert takes_http_response(response).status_code == 200
        await client.aclose()


def _shape(function: Callable[..., Any]) -> list[tuple[str, Any, bool]]:
    parameters = list(inspect.signature(function).parameters.values())
    return [(p.name, p.kind, p.default is not p.empty) for p in parameters]


@pytest.mark.parametrize("name", ["post", "stream", "aclose"])
def test_method_signatures_match_the_protocol(name: str) -> None:
    protocol = _shape(getattr(HttpClient, name))
    assert _shape(getattr(AiohttpClient, name)) == protocol
    # httpx's methods take more, all optional; the protocol's parameters are among them
    httpx_method = getattr(httpx.AsyncClient, name)
    theirs = {pname: (kind, default) for pname, kind, default in _shape(httpx_method)}
    for pname, kind, default in protocol:
        assert theirs[pname][0] == kind
        assert theirs[pname][1] or not default
    named = {pname for pname, _, _ in protocol}
    assert all(default for pname, (_, default) in theirs.items() if pname not in named)
    for cls in (HttpClient, AiohttpClient, httpx.AsyncClient):
        method = getattr(cls, name)
        # post and aclose are awaited; stream returns an async context manager
        assert inspect.iscoroutinefunction(method) is (name != "stream")


def test_response_has_what_the_adapters_read() -> None:
    for cls in (AiohttpResponse, httpx.Response):
        assert inspect.iscoroutinefunction(cls.aread)
        assert inspect.isasyncgenfunction(cls.aiter_lines)
        assert _shape(cls.aread) == _shape(HttpResponse.aread)
    # plain attributes on AiohttpResponse, properties on the protocol and on httpx.Response
    assert {"status_code", "headers", "content"} <= set(AiohttpResponse.__slots__)
    answer = httpx.Response(200, content=b"{}")
    for attribute in ("status_code", "headers", "content"):
        assert isinstance(getattr(HttpResponse, attribute), property)
        assert hasattr(answer, attribute)


# -- through the Router ----------------------------------------------------------------


def router_config(server: FakeProviderServer, *, oai_url: str | None = None) -> dict[str, Any]:
    return {
        "providers": {
            "oai": {
                "type": "openai_compatible",
                "base_url": oai_url or server.openai_base_url,
                "api_key": "sk-test",
                "retries": 0,  # straight to the fallback: no backoff sleeps
            },
            "gem": {
                "type": "google_ai_studio",
                "base_url": server.gemini_base_url,
                "api_keys": ["g-key-0"],
            },
        },
        "models": {
            "oai/a": {"provider": "oai", "model": "a"},
            "gem/flash": {"provider": "gem", "model": "gemini-2.5-flash"},
        },
        "routes": {"a-then-flash": ["oai/a", "gem/flash"]},
    }


def default_router(config: dict[str, Any], tmp_path: Path) -> Router:
    # no http_client: the Router makes its own, an AiohttpClient
    return Router(config, {}, env_file=None, cache_dir=tmp_path)


@pytest.mark.parametrize(
    ("target", "wire_model"), [("oai/a", "a"), ("gem/flash", "gemini-2.5-flash")]
)
async def test_router_completes_and_streams_over_its_own_client(
    server: FakeProviderServer, tmp_path: Path, target: str, wire_model: str
) -> None:
    server.script.script(wire_model, Reply(text="Paris."), Stream(chunks=("Par", "is", ".")))
    async with default_router(router_config(server), tmp_path) as router:
        completion = await router.complete(target, "capital of France?")
        chunks = [chunk async for chunk in router.stream(target, "capital of France?")]
    assert completion.text == "Paris."
    assert [a.outcome for a in completion.attempts] == ["ok"]
    assert "".join(c.text for c in chunks) == "Paris."
    assert chunks[-1].finish_reason == "stop"
    plain, streamed = server.script.requests
    assert (plain.stream, streamed.stream) == (False, True)
    for request in (plain, streamed):
        assert "aiohttp" in request.headers["user-agent"]  # the Router's own client sent it
    if target == "gem/flash":
        assert streamed.query == "alt=sse"
    # the router closed its client: no connection left open
    await until(lambda: server.open_connections == 0)


async def test_router_falls_back_after_a_real_timeout(
    server: FakeProviderServer, tmp_path: Path
) -> None:
    server.script.set_default("a", Timeout())
    async with default_router(router_config(server), tmp_path) as router, asyncio.timeout(GUARD):
        completion = await router.complete("a-then-flash", "hi", timeout=0.2)
    assert [(a.model, a.outcome, a.status) for a in completion.attempts] == [
        ("oai/a", "timeout", None),
        ("gem/flash", "ok", 200),
    ]


async def test_router_falls_back_after_a_refused_connection(
    server: FakeProviderServer, tmp_path: Path
) -> None:
    refused = f"http://127.0.0.1:{closed_port()}/v1"
    async with default_router(router_config(server, oai_url=refused), tmp_path) as router:
        completion = await router.complete("a-then-flash", "hi")
        chunks = [chunk async for chunk in router.stream("a-then-flash", "hi")]
    assert chunks[-1].attempts is not None
    for attempts in (completion.attempts, chunks[-1].attempts):
        assert [(a.model, a.outcome) for a in attempts] == [
            ("oai/a", "transport_error"),
            ("gem/flash", "ok"),
        ]


@pytest.mark.parametrize(("fault", "words"), [*FAULT_WORDS, ("hang", "no answer within 0.3s")])
@pytest.mark.parametrize("wire", ["openai", "gemini"])
async def test_the_router_reports_transport_failures_in_words(
    fault: str, words: str, wire: str, tmp_path: Path
) -> None:
    async with FaultServer() as faults:
        config = one_model_config(faults.base_url(fault, wire), wire, timeout=0.3)
        async with default_router(config, tmp_path) as router:
            await assert_fails_in_words(
                router, words, ("ssl:default", "Errno", "0123456789abcdef", "aiohttp")
            )
