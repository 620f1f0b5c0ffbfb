"""How fast the fake server is, so that it is never what a benchmark measures.

Several load-generator processes, each a bare asyncio protocol that keeps a few keep-alive
connections busy (much cheaper per request than any real client), drive one server for a
few seconds. The server's own `GET /__stats` gives its CPU seconds per request, hence its
ceiling on one core, and its busy share of a core during the run.

    python bench/capacity.py --url http://127.0.0.1:8000/v1 --processes 2 --seconds 2
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from urllib.parse import urlsplit

REQUEST_BODY = b'{"model":"bench-model","messages":[{"role":"user","content":"Hello"}]}'


class _Pinger(asyncio.Protocol):
    """One connection sending the next request as soon as the previous answer is complete."""

    def __init__(
        self,
        request: bytes,
        response_size: int,
        state: dict[str, float],
        all_closed: asyncio.Event,
    ) -> None:
        self._all_closed = all_closed
        self._request = request
        self._size = response_size
        self._state = state
        self._got = 0
        self._tr: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._tr = transport
        transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        self._got += len(data)
        while self._got >= self._size:
            self._got -= self._size
            self._state["done"] += 1
            if time.perf_counter() < self._state["deadline"] and self._tr is not None:
                self._tr.write(self._request)
            elif self._tr is not None:
                self._tr.close()
                self._tr = None

    def connection_lost(self, exc: Exception | None) -> None:
        self._state["open"] -= 1
        if self._state["open"] <= 0:
            self._all_closed.set()


async def load(host: str, port: int, path: str, connections: int, seconds: float) -> int:
    request = (
        b"POST %s HTTP/1.1\r\nhost: %s:%d\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n%s"
        % (path.encode(), host.encode(), port, len(REQUEST_BODY), REQUEST_BODY)
    )
    # Learn the exact answer size once, so the pingers only count bytes.
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    await reader.readexactly(length)
    writer.close()
    state = {"done": 0.0, "open": float(connections), "deadline": time.perf_counter() + seconds}
    all_closed = asyncio.Event()
    loop = asyncio.get_running_loop()
    for _ in range(connections):
        await loop.create_connection(
            lambda: _Pinger(request, len(head) + length, state, all_closed), host, port
        )
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(all_closed.wait(), timeout=seconds + 5)
    return int(state["done"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="the server's /v1 URL")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args(argv)
    parts = urlsplit(args.url)
    assert parts.hostname == "127.0.0.1" and parts.port is not None
    started = time.perf_counter()
    done = asyncio.run(
        load(
            parts.hostname,
            parts.port,
            parts.path + "/chat/completions",
            args.connections,
            args.seconds,
        )
    )
    wall = time.perf_counter() - started
    print(json.dumps({"requests": done, "wall_s": wall, "cpu_s": time.process_time()}))


if __name__ == "__main__":
    main()
