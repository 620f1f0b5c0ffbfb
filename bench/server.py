"""A fast fake OpenAI-compatible server for the benchmarks, in its own process.

Hand-written on `asyncio.Protocol` (HTTP/1.1 keep-alive, no framework) so that it costs
a few microseconds per request and is never what a benchmark measures. It answers

- `POST .../chat/completions` with a fixed small chat completion (docs/providers.md 9.1), or,
  when the body asks for `"stream": true`, a chunked `text/event-stream` of a few events;
- `GET /__stats` with its own request count and CPU time, so a benchmark can tell how busy
  the server was while a client ran (a server near 100 % of one core is a bottleneck).

`--latency-ms` delays every answer (the first event of a stream) by that long. It binds
127.0.0.1 only, prints `listening on 127.0.0.1:PORT` once ready, and stops by itself when
its stdin closes (with `--exit-on-stdin-eof`: the parent went away) or after `--max-seconds`.

    python bench/server.py --port 0 --latency-ms 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time

COMPLETION = json.dumps(
    {
        "id": "chatcmpl-bench",
        "object": "chat.completion",
        "created": 1767225600,
        "model": "bench-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Paris."},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 18, "completion_tokens": 3, "total_tokens": 21},
        "system_fingerprint": "fp_bench",
    },
    separators=(",", ":"),
).encode()


def _event(delta: dict[str, str], finish: str | None = None, usage: bool = False) -> bytes:
    chunk: dict[str, object] = {
        "id": "chatcmpl-s1",
        "object": "chat.completion.chunk",
        "created": 1767225600,
        "model": "bench-model",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    if usage:
        chunk["usage"] = {"prompt_tokens": 18, "completion_tokens": 3, "total_tokens": 21}
    return b"data: " + json.dumps(chunk, separators=(",", ":")).encode() + b"\n\n"


def _chunked(payload: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(payload), payload)


RESPONSE = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
    % len(COMPLETION)
) + COMPLETION
# A stream goes out in two writes: the head with the first text delta, then the tail.
# Both are prebuilt; the server does no per-request formatting.
STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n\r\n"
    + _chunked(_event({"role": "assistant", "content": ""}) + _event({"content": "Par"}))
)
STREAM_TAIL = (
    _chunked(
        _event({"content": "is."}) + _event({}, finish="stop", usage=True) + b"data: [DONE]\n\n"
    )
    + b"0\r\n\r\n"
)
NOT_FOUND = (
    b"HTTP/1.1 404 Not Found\r\ncontent-type: text/plain\r\ncontent-length: 9\r\n\r\nnot found"
)


class Stats:
    __slots__ = ("requests",)

    def __init__(self) -> None:
        self.requests = 0


class FakeOpenAI(asyncio.Protocol):
    """One connection. Requests are parsed from a byte buffer; no per-request allocations
    beyond slicing the buffer. Clients here never pipeline, but the parser loops anyway."""

    __slots__ = ("_buf", "_close_after", "_latency", "_loop", "_stats", "_stream_gap", "_tr")

    def __init__(self, latency: float, stream_gap: float, stats: Stats) -> None:
        self._latency = latency
        self._stream_gap = stream_gap
        self._stats = stats
        self._buf = b""
        self._tr: asyncio.Transport | None = None
        self._close_after = False
        self._loop = asyncio.get_running_loop()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._tr = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._tr = None

    def data_received(self, data: bytes) -> None:
        buf = self._buf + data if self._buf else data
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            head = buf[:end]
            lower = head.lower()
            body_start = end + 4
            pos = lower.find(b"\r\ncontent-length:")
            if pos >= 0:
                stop = lower.find(b"\r\n", pos + 17)
                length = int(lower[pos + 17 : stop if stop >= 0 else len(lower)])
                if len(buf) < body_start + length:
                    break
                body = buf[body_start : body_start + length]
                buf = buf[body_start + length :]
            elif b"\r\ntransfer-encoding: chunked" in lower:
                parsed = _read_chunked(buf, body_start)
                if parsed is None:
                    break
                body, buf = parsed
            else:
                body = b""
                buf = buf[body_start:]
            if b"\r\nconnection: close" in lower:
                self._close_after = True
            self._handle(head, body)
        self._buf = buf

    def _handle(self, head: bytes, body: bytes) -> None:
        if head.startswith(b"POST ") and b"/chat/completions " in head[:200]:
            self._stats.requests += 1
            stream = b'"stream":true' in body or b'"stream": true' in body
            if self._latency > 0:
                self._loop.call_later(self._latency, self._answer, stream)
            else:
                self._answer(stream)
        elif head.startswith(b"GET /__stats "):
            payload = json.dumps(
                {
                    "requests": self._stats.requests,
                    "cpu": time.process_time(),
                    "wall": time.monotonic(),
                }
            ).encode()
            self._write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d"
                b"\r\n\r\n%s" % (len(payload), payload)
            )
        else:
            self._write(NOT_FOUND)

    def _answer(self, stream: bool) -> None:
        if not stream:
            self._write(RESPONSE)
            return
        tr = self._tr
        if tr is None:
            return
        tr.write(STREAM_HEAD)
        if self._stream_gap > 0:
            self._loop.call_later(self._stream_gap, self._write, STREAM_TAIL)
        else:
            self._loop.call_soon(self._write, STREAM_TAIL)

    def _write(self, payload: bytes) -> None:
        tr = self._tr
        if tr is None:
            return
        tr.write(payload)
        if self._close_after:
            tr.close()


def _read_chunked(buf: bytes, pos: int) -> tuple[bytes, bytes] | None:
    parts: list[bytes] = []
    while True:
        line_end = buf.find(b"\r\n", pos)
        if line_end < 0:
            return None
        size = int(buf[pos:line_end].split(b";", 1)[0], 16)
        start = line_end + 2
        if size == 0:
            trailer_end = buf.find(b"\r\n", start)
            if trailer_end < 0:
                return None
            return b"".join(parts), buf[trailer_end + 2 :]
        if len(buf) < start + size + 2:
            return None
        parts.append(buf[start : start + size])
        pos = start + size + 2


async def serve(
    port: int, latency_ms: float, stream_gap_ms: float, max_seconds: float, watch_stdin: bool
) -> None:
    loop = asyncio.get_running_loop()
    stats = Stats()
    server = await loop.create_server(
        lambda: FakeOpenAI(latency_ms / 1000.0, stream_gap_ms / 1000.0, stats),
        host="127.0.0.1",
        port=port,
        backlog=1024,
        reuse_address=True,
    )
    bound = server.sockets[0].getsockname()[1]
    done = loop.create_future()

    def stop(*_: object) -> None:
        if not done.done():
            done.set_result(None)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)
    # The parent holds our stdin open; EOF means it is gone, so we stop too.
    if watch_stdin:

        def on_stdin() -> None:
            if not os.read(sys.stdin.fileno(), 4096):
                loop.remove_reader(sys.stdin.fileno())
                stop()

        loop.add_reader(sys.stdin.fileno(), on_stdin)
    timer = loop.call_later(max_seconds, stop)
    print(f"listening on 127.0.0.1:{bound} latency_ms={latency_ms:g}", flush=True)
    try:
        await done
    finally:
        timer.cancel()
        server.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument(
        "--stream-gap-ms", type=float, default=1.0, help="pause between a stream's two writes"
    )
    parser.add_argument("--max-seconds", type=float, default=3600.0, help="stop after this long")
    parser.add_argument(
        "--exit-on-stdin-eof", action="store_true", help="stop when stdin closes (parent gone)"
    )
    args = parser.parse_args(argv)
    asyncio.run(
        serve(
            args.port,
            args.latency_ms,
            args.stream_gap_ms,
            args.max_seconds,
            args.exit_on_stdin_eof,
        )
    )


if __name__ == "__main__":
    main()
