"""A loopback server that misbehaves on purpose, byte by byte, for fault tests.

`FaultServer` speaks the OpenAI-compatible wire (`POST .../v1/chat/completions`, `"stream":
true` for SSE ending in `data: [DONE]`) and the Gemini wire (`POST .../v1beta/models/{model}
:generateContent`, `:streamGenerateContent?alt=sse`), and answers each request with the
fault named in the first segment of its path. One server serves every fault at once, so
tests can run many cases concurrently:

```
async with FaultServer() as server:
    base_url = server.base_url("drip_body", "openai")  # http://127.0.0.1:PORT/drip_body/v1
    ...
```

It is written on raw sockets (`asyncio.start_server`) rather than an HTTP framework, so a
fault can break HTTP itself: headers sent a byte at a time, a body shorter than its
`Content-Length`, a reset instead of a close. The faults (`FAULTS`):

- `ok`: a normal answer (the control case).
- `drip_body`: the headers at once, then the body one byte every `drip` seconds.
- `drip_headers`: the whole answer, status line included, one byte every `drip` seconds.
- `hang`: reads the request and never answers.
- `stream_forever`: a body that never ends, a piece every `tick` seconds.
- `slow_chunks`: a correct answer sent in pieces `gap` seconds apart.
- `reset`: reads the request, then resets the connection (RST).
- `refused`: `base_url` points at a port where nothing listens.
- `bad_status_line`: an answer that is not HTTP at all (it repeats the key, too).
- `html_200`: status 200 with an HTML page (a captive portal, a proxy's error page).
- `malformed_json`: status 200 with JSON cut in the middle (a stream: its first event).
- `truncated_body`: fewer bytes than announced, then the connection closes.
- `cut_stream`: a stream that ends cleanly at the HTTP level but before its terminator
  (OpenAI: no `[DONE]`; Gemini: no `finishReason`); a plain answer cut after half its body.
- `malformed_chunk`: a stream whose second event is not JSON, between two good ones; a
  plain answer that is JSON of the wrong shape.
- `key_echo`: an invalid-key error whose message repeats the key sent.
- `key_echo_partial`: an error whose message repeats 16 characters of the key.
- `header_echo`: an error whose message repeats every request header, values included.

Each answer's usage counts one token per 4 ASCII characters of the prompt and one per
other character, roughly as real tokenizers do for CJK text, so limiter tests can check
what the provider would have counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
from dataclasses import dataclass
from types import TracebackType

from llmroute.testing._fault_wire import (
    PIECES,
    FaultRequest,
    Wire,
    body_pieces,
    chunk,
    chunked_head,
    complete_body,
    error,
    event,
    good_answer,
    key_of,
    plain,
    read_request,
    terminator,
)

__all__ = ["FAULTS", "FaultRequest", "FaultServer", "Wire"]


FAULTS = (
    "ok",
    "drip_body",
    "drip_headers",
    "hang",
    "stream_forever",
    "slow_chunks",
    "reset",
    "refused",
    "bad_status_line",
    "html_200",
    "malformed_json",
    "truncated_body",
    "cut_stream",
    "malformed_chunk",
    "key_echo",
    "key_echo_partial",
    "header_echo",
)


@dataclass(frozen=True, slots=True)
class _Exchange:
    request: FaultRequest
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter


class FaultServer:
    """The fault server on 127.0.0.1 (port 0: any free one). See the module docstring.

    `drip` (seconds per byte), `gap` (seconds between the pieces of `slow_chunks`) and
    `tick` (seconds between the pieces of `stream_forever`) set the pace; `completion_tokens`
    is what every answer reports for its reply. `requests` lists what was read, in order;
    `open_connections` counts connections not yet closed.
    """

    def __init__(
        self,
        *,
        port: int = 0,
        drip: float = 0.4,
        gap: float = 0.7,
        tick: float = 0.05,
        completion_tokens: int = 10,
    ) -> None:
        self._port = port
        self.drip = drip
        self.gap = gap
        self.tick = tick
        self.completion_tokens = completion_tokens
        self.requests: list[FaultRequest] = []
        self.open_connections = 0
        self.connections_total = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._refused_port: int | None = None

    def __repr__(self) -> str:
        return f"FaultServer(port={self._port}, requests={len(self.requests)})"

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the fault server is not started")
        return self._port

    def base_url(self, fault: str, wire: Wire) -> str:
        """The provider `base_url` whose requests meet `fault`."""
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}; one of {', '.join(FAULTS)}")
        version = "v1" if wire == "openai" else "v1beta"
        port = self._refused() if fault == "refused" else self.port
        return f"http://127.0.0.1:{port}/{fault}/{version}"

    def requests_for(self, fault: str) -> list[FaultRequest]:
        return [r for r in self.requests if r.fault == fault]

    async def start(self) -> FaultServer:
        if self._server is None:
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", self._port)
            self._port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    async def __aenter__(self) -> FaultServer:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def _refused(self) -> int:
        if self._refused_port is None:
            # Bound and closed at once: nothing listens there, so connecting is refused.
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                self._refused_port = sock.getsockname()[1]
        return self._refused_port

    # -- one connection ------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.open_connections += 1
        self.connections_total += 1
        try:
            while await self._answer_one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except asyncio.CancelledError:
            # stop() ends the connection; a task of asyncio.start_server must not end
            # cancelled (its done-callback would log the CancelledError on Python 3.11).
            pass
        finally:
            self.open_connections -= 1
            writer.close()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await writer.wait_closed()
            self._tasks.discard(task)

    async def _answer_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; True when the connection may carry another."""
        request = await read_request(reader, self.completion_tokens)
        if request is None:
            return False
        self.requests.append(request)
        exchange = _Exchange(request, reader, writer)
        answer = getattr(self, f"_fault_{request.fault}", None)
        if answer is None:
            await _send(writer, plain(404, "text/plain", b"no such fault"))
            return True
        keep: bool = await answer(exchange)
        return keep

    # -- the faults ----------------------------------------------------------------------

    async def _fault_ok(self, ex: _Exchange) -> bool:
        await _send(ex.writer, good_answer(ex.request, self.completion_tokens))
        return True

    async def _fault_drip_body(self, ex: _Exchange) -> bool:
        answer = good_answer(ex.request, self.completion_tokens)
        head, _, body = answer.partition(b"\r\n\r\n")
        await _send(ex.writer, head + b"\r\n\r\n")
        await self._drip(ex.writer, body)
        return False

    async def _fault_drip_headers(self, ex: _Exchange) -> bool:
        await self._drip(ex.writer, good_answer(ex.request, self.completion_tokens))
        return False

    async def _fault_hang(self, ex: _Exchange) -> bool:
        await ex.reader.read()  # until the client gives up
        return False

    async def _fault_stream_forever(self, ex: _Exchange) -> bool:
        request = ex.request
        await _send(ex.writer, chunked_head(request))
        if not request.stream:
            await _send(ex.writer, chunk(b'{"choices": ['))
        while True:
            piece = event(request, "more ", None, 0) if request.stream else b" "
            await _send(ex.writer, chunk(piece))
            await asyncio.sleep(self.tick)

    async def _fault_slow_chunks(self, ex: _Exchange) -> bool:
        request = ex.request
        await _send(ex.writer, chunked_head(request))
        for piece in body_pieces(request, self.completion_tokens):
            await _send(ex.writer, chunk(piece))
            await asyncio.sleep(self.gap)
        await _send(ex.writer, b"0\r\n\r\n")
        return False

    async def _fault_reset(self, ex: _Exchange) -> bool:
        sock = ex.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        ex.writer.transport.abort()  # linger 0: an RST instead of a FIN
        return False

    async def _fault_refused(self, ex: _Exchange) -> bool:  # pragma: no cover
        return await self._fault_reset(ex)  # only reached by a hand-made URL

    async def _fault_bad_status_line(self, ex: _Exchange) -> bool:
        await _send(ex.writer, f"SSH-2.0-OpenSSH {key_of(ex.request)}\r\n\r\n".encode())
        await _close_softly(ex.writer)
        return False

    async def _fault_html_200(self, ex: _Exchange) -> bool:
        page = b"<html><body><h1>Service temporarily unavailable</h1></body></html>"
        await _send(ex.writer, plain(200, "text/html; charset=utf-8", page))
        return True

    async def _fault_malformed_json(self, ex: _Exchange) -> bool:
        broken = b'{"choices": [{"message": {"role": "assistant", "content": "The qu'
        if ex.request.stream:
            await _send(ex.writer, chunked_head(ex.request))
            await _send(ex.writer, chunk(b"data: " + broken + b"\n\n"))
            await _send(ex.writer, _last_chunks(ex.request))
        else:
            await _send(ex.writer, plain(200, "application/json", broken))
        return True

    async def _fault_truncated_body(self, ex: _Exchange) -> bool:
        answer = good_answer(ex.request, self.completion_tokens)
        if ex.request.stream:
            # One chunk announced whole, half of it sent.
            head, _, body = answer.partition(b"\r\n\r\n")
            payload = body.split(b"\r\n", 2)[1]
            await _send(ex.writer, head + b"\r\n\r\n" + b"%x\r\n" % len(payload))
            await _send(ex.writer, payload[: len(payload) // 2])
        else:
            await _send(ex.writer, answer[: len(answer) - len(answer) // 3])
        await _close_softly(ex.writer)
        return False

    async def _fault_cut_stream(self, ex: _Exchange) -> bool:
        request = ex.request
        await _send(ex.writer, chunked_head(request))
        if request.stream:
            for piece in PIECES[:2]:
                await _send(ex.writer, chunk(event(request, piece, None, 0)))
            await _send(ex.writer, b"0\r\n\r\n")  # a clean end, without the terminator
            return True
        body = complete_body(request, self.completion_tokens)
        await _send(ex.writer, chunk(body[: len(body) // 2]))
        await _close_softly(ex.writer)
        return False

    async def _fault_malformed_chunk(self, ex: _Exchange) -> bool:
        request = ex.request
        if not request.stream:
            shape = {"choices": "none"} if request.wire == "openai" else {"candidates": 7}
            await _send(ex.writer, plain(200, "application/json", json.dumps(shape).encode()))
            return True
        await _send(ex.writer, chunked_head(request))
        await _send(ex.writer, chunk(event(request, "The quick ", None, 0)))
        await _send(ex.writer, chunk(b'data: {"choices": [{"delta": {"content": "brown\n\n'))
        await _send(ex.writer, chunk(event(request, "fox.", "stop", self.completion_tokens)))
        await _send(ex.writer, _last_chunks(request))
        return True

    async def _fault_key_echo(self, ex: _Exchange) -> bool:
        key = key_of(ex.request)
        if ex.request.wire == "openai":
            message = f"Incorrect API key provided: {key}. You can find your API key online."
            await _send(ex.writer, error(ex.request, 401, message, "invalid_api_key"))
        else:
            message = f"API key not valid: {key}. Please pass a valid API key."
            await _send(ex.writer, error(ex.request, 400, message, "API_KEY_INVALID"))
        return True

    async def _fault_key_echo_partial(self, ex: _Exchange) -> bool:
        key = key_of(ex.request)
        message = f"Request rejected for the key {key[3:19]}... (project suspended)"
        await _send(ex.writer, error(ex.request, 400, message, "invalid_request"))
        return True

    async def _fault_header_echo(self, ex: _Exchange) -> bool:
        listed = "; ".join(f"{k}: {v}" for k, v in ex.request.headers.items())
        message = f"Bad request. Headers received: {listed}"
        await _send(ex.writer, error(ex.request, 400, message, "invalid_request"))
        return True

    async def _drip(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        for i in range(len(data)):
            await _send(writer, data[i : i + 1])
            await asyncio.sleep(self.drip)


# -- sending ------------------------------------------------------------------------------


def _last_chunks(request: FaultRequest) -> bytes:
    """The stream's terminator event (OpenAI's `[DONE]`; Gemini has none), then the end."""
    end = terminator(request)
    return (chunk(end) if end else b"") + b"0\r\n\r\n"


async def _send(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(data)
    await writer.drain()


async def _close_softly(writer: asyncio.StreamWriter) -> None:
    """A FIN after what was sent, so the client reads it all before the end."""
    with contextlib.suppress(OSError):
        writer.write_eof()
    writer.close()
