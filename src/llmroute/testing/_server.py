"""The fake provider as a real HTTP/1.1 server on loopback, for the demo, benchmarks and tests.

A hand-written `asyncio.Protocol`: keep-alive, Content-Length bodies, chunked SSE streams
sent event by event with their delays. An answer without latency is written straight from
`data_received`, with no task, which keeps thousands of requests a second cheap. Answers
that wait (latency, stream delays, `Timeout`) run in one task per connection, which the
connection's loss or `stop()` cancels.

Run it alone with `python -m llmroute.testing._server --port 8080 [--latency-ms 20]`; it
prints `listening on http://127.0.0.1:PORT` once ready and serves until SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import signal
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from types import TracebackType

from llmroute.testing._quota import QuotaEnforcer
from llmroute.testing._script import FakeScript
from llmroute.testing._wire import Rendered
from llmroute.testing._wires import fake_wire

__all__ = ["FakeProviderServer", "main", "serve_in_thread"]

_MAX_HEAD = 64 * 1024
_MAX_BODY = 32 * 1024 * 1024


class _BadRequest(Exception):
    pass


@dataclass(frozen=True, slots=True)
class _Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    keep_alive: bool


class FakeProviderServer:
    """A loopback HTTP server speaking the fake OpenAI-compatible and Gemini APIs.

    It answers from `script` (a `FakeScript`) exactly as `FakeTransport` does, but over real
    sockets and in real time: `latency` and stream delays are really waited, stream events
    really leave one by one, a `fail_after` break really drops the connection, and `Timeout()`
    holds the request until the client disconnects or the server stops. `latency` (seconds)
    is added to every answer. Only loopback addresses are accepted for `host`. With `quota`
    (a `QuotaEnforcer`) it enforces real rate limits in front of the script.

        async with FakeProviderServer() as server:
            server.script.script("gemini-2.5-flash", RateLimit(retry_delay=1))
            client = httpx.AsyncClient(base_url=server.gemini_base_url)
    """

    def __init__(
        self,
        script: FakeScript | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        latency: float = 0.0,
        quota: QuotaEnforcer | None = None,
    ) -> None:
        if not _is_loopback(host):
            raise ValueError(f"the fake provider serves loopback only, not {host!r}")
        #: the behaviours answered and the requests recorded
        self.script = script if script is not None else FakeScript()
        self.host = host
        self.latency = latency
        #: the quotas enforced in front of the script, if any
        self.quota = quota
        #: client connections accepted since start
        self.connections_total = 0
        self._port = port
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        """The port listened on (the one chosen by the system when 0 was asked)."""
        if self._server is None:
            raise RuntimeError("the fake provider server is not started")
        return self._port

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:{port}`."""
        return f"http://{self.host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        """The base URL for OpenAI-compatible providers: `{base_url}/v1`."""
        return f"{self.base_url}/v1"

    @property
    def gemini_base_url(self) -> str:
        """The base URL for the Gemini provider: `{base_url}/v1beta`."""
        return f"{self.base_url}/v1beta"

    def url_for(self, wire: str) -> str:
        """The base URL for providers of a registered fake wire (`openai`, `gemini`, ...)."""
        spec = fake_wire(wire)
        if spec is None:
            raise ValueError(f"no fake wire {wire!r} is registered")
        return self.base_url + spec.base_path

    @property
    def open_connections(self) -> int:
        """Client connections open right now."""
        return len(self._connections)

    async def start(self) -> None:
        """Listen; `port` is known once this returns."""
        if self._server is not None:
            raise RuntimeError("the fake provider server is already started")
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self), self.host, self._port, reuse_address=True
        )
        self._port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening, drop every connection and wait until nothing of the server runs."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        # a connection accepted just before close() shows up one loop turn later: repeat
        while self._connections or self._tasks:
            connections = list(self._connections)
            for connection in connections:
                connection.abort()
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for connection in connections:
                await connection.lost.wait()
        await server.wait_closed()

    async def __aenter__(self) -> FakeProviderServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.stop()

    def _answer(self, request: _Request) -> Rendered:
        args = (request.method, request.path, request.query, request.headers, request.body)
        if self.quota is None:
            return self.script.handle(*args)
        return self.quota.handle(self.script, *args, latency=self.latency)

    def __repr__(self) -> str:
        where = self.base_url if self._server is not None else "stopped"
        return f"FakeProviderServer({where}, open_connections={self.open_connections})"


class _Connection(asyncio.Protocol):
    def __init__(self, server: FakeProviderServer) -> None:
        self._server = server
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._busy: asyncio.Task[None] | None = None
        self._writable: asyncio.Future[None] | None = None
        self.lost = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._server._connections.add(self)
        self._server.connections_total += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self._server._connections.discard(self)
        self.lost.set()
        if self._busy is not None:
            self._busy.cancel()
        self._wake_writer()

    def pause_writing(self) -> None:
        if self._writable is None:
            self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        self._wake_writer()

    def _wake_writer(self) -> None:
        waiter, self._writable = self._writable, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if self._busy is None:
            self._serve_buffered()

    def _serve_buffered(self) -> None:
        """Answer every complete request in the buffer, in order, until one must wait."""
        transport = self._transport
        while transport is not None and not transport.is_closing():
            try:
                request = _parse_request(self._buffer)
            except _BadRequest as exc:
                transport.write(
                    _head(400, {"content-type": "text/plain"}, str(exc).encode(), keep_alive=False)
                )
                transport.close()
                return
            if request is None:
                return
            try:
                rendered = self._server._answer(request)
            except Exception as exc:
                # a fault of the fake itself: say so to the client rather than just hang up
                message = f"fake provider failed: {exc!r}".encode()
                transport.write(
                    _head(500, {"content-type": "text/plain"}, message, keep_alive=False)
                )
                transport.close()
                return
            latency = rendered.latency + self._server.latency
            if rendered.hang or rendered.pieces is not None or latency > 0:
                task = asyncio.get_running_loop().create_task(
                    self._serve_slowly(rendered, latency, request.keep_alive)
                )
                self._busy = task
                self._server._tasks.add(task)
                task.add_done_callback(self._server._tasks.discard)
                return
            transport.write(
                _head(
                    rendered.status, rendered.headers, rendered.body, keep_alive=request.keep_alive
                )
            )
            if not request.keep_alive:
                transport.close()

    async def _serve_slowly(self, rendered: Rendered, latency: float, keep_alive: bool) -> None:
        transport = self._transport
        assert transport is not None
        try:
            if rendered.hang:
                await self.lost.wait()
                return
            if latency > 0:
                await asyncio.sleep(latency)
            if rendered.pieces is None:
                transport.write(
                    _head(rendered.status, rendered.headers, rendered.body, keep_alive=keep_alive)
                )
            else:
                await self._send_pieces(transport, rendered, keep_alive)
                if rendered.break_after:
                    transport.abort()
                    return
            if not keep_alive:
                transport.close()
        except (ConnectionError, OSError):
            transport.abort()
        finally:
            self._busy = None
        if not self.lost.is_set():
            self._serve_buffered()

    async def _send_pieces(
        self, transport: asyncio.Transport, rendered: Rendered, keep_alive: bool
    ) -> None:
        headers = dict(rendered.headers)
        # an announced length means raw bytes (a cut plain body); otherwise chunked SSE
        chunked = "content-length" not in headers
        if chunked:
            headers["transfer-encoding"] = "chunked"
        transport.write(_head(rendered.status, headers, None, keep_alive=keep_alive))
        for delay, piece in rendered.pieces or ():
            if delay > 0:
                await asyncio.sleep(delay)
            if self._writable is not None:
                await self._writable
            if transport.is_closing():
                raise ConnectionResetError("the client went away")
            if piece:
                transport.write(b"%x\r\n%b\r\n" % (len(piece), piece) if chunked else piece)
        if chunked and not rendered.break_after:
            transport.write(b"0\r\n\r\n")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _parse_request(buffer: bytearray) -> _Request | None:
    """Take one complete request off the front of `buffer`; None while it is incomplete."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        if len(buffer) > _MAX_HEAD:
            raise _BadRequest("request head too large")
        return None
    lines = bytes(buffer[:end]).decode("latin-1").split("\r\n")
    try:
        method, target, version = lines[0].split(" ", 2)
    except ValueError:
        raise _BadRequest("malformed request line") from None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep:
            raise _BadRequest("malformed header line")
        name = name.strip().lower()
        value = value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    start = end + 4
    if "chunked" in headers.get("transfer-encoding", "").lower():
        decoded = _parse_chunked(buffer, start)
        if decoded is None:
            return None
        body, consumed = decoded
    else:
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            raise _BadRequest("malformed content-length") from None
        if not 0 <= length <= _MAX_BODY:
            raise _BadRequest("bad content-length")
        if len(buffer) < start + length:
            return None
        body, consumed = bytes(buffer[start : start + length]), start + length
    del buffer[:consumed]
    connection = headers.get("connection", "").lower()
    keep_alive = "keep-alive" in connection if version == "HTTP/1.0" else "close" not in connection
    path, _, query = target.partition("?")
    return _Request(method, path, query, headers, body, keep_alive)


def _parse_chunked(buffer: bytearray, start: int) -> tuple[bytes, int] | None:
    body = bytearray()
    position = start
    while True:
        line_end = buffer.find(b"\r\n", position)
        if line_end < 0:
            return None
        try:
            size = int(bytes(buffer[position:line_end]).split(b";")[0], 16)
        except ValueError:
            raise _BadRequest("malformed chunk size") from None
        position = line_end + 2
        if size == 0:
            # skip trailers up to the empty line
            while True:
                line_end = buffer.find(b"\r\n", position)
                if line_end < 0:
                    return None
                empty = line_end == position
                position = line_end + 2
                if empty:
                    return bytes(body), position
        if len(buffer) < position + size + 2:
            return None
        body += buffer[position : position + size]
        if len(body) > _MAX_BODY:
            raise _BadRequest("body too large")
        position += size + 2


def _head(
    status: int, headers: Mapping[str, str], body: bytes | None, *, keep_alive: bool = True
) -> bytes:
    """The status line and headers, and `body` framed by Content-Length when given."""
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    lines = [f"HTTP/1.1 {status} {reason}", "server: llmroute-fake"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body is not None:
        lines.append(f"content-length: {len(body)}")
    lines.append("connection: keep-alive" if keep_alive else "connection: close")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + body if body is not None else head


@contextlib.contextmanager
def serve_in_thread(
    script: FakeScript | None = None,
    *,
    port: int = 0,
    latency: float = 0.0,
    quota: QuotaEnforcer | None = None,
) -> Iterator[FakeProviderServer]:
    """Run a `FakeProviderServer` on its own event loop in a background thread.

    For synchronous code (`Router.complete_sync`, scripts). Script it before the requests
    that should meet the behaviours: the script is read from the server's thread.

        with serve_in_thread() as server:
            run_my_program(base_url=server.openai_base_url)
    """
    server = FakeProviderServer(script, port=port, latency=latency, quota=quota)
    ready = threading.Event()
    failure: list[BaseException] = []
    loop = asyncio.new_event_loop()
    stopping = asyncio.Event()

    async def serve() -> None:
        await server.start()
        ready.set()
        try:
            await stopping.wait()
        finally:
            await server.stop()

    def run() -> None:
        try:
            loop.run_until_complete(serve())
        except BaseException as exc:
            failure.append(exc)
        finally:
            ready.set()

    thread = threading.Thread(target=run, name="llmroute-fake-provider", daemon=True)
    thread.start()
    ready.wait()
    try:
        if failure:
            raise failure[0]
        yield server
    finally:
        loop.call_soon_threadsafe(stopping.set)
        thread.join()
        loop.close()


async def _serve_until_signalled(port: int, latency: float) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    # benchmarks send millions of requests: recording them all would only eat memory
    script = FakeScript(record=False)
    async with FakeProviderServer(script, port=port, latency=latency) as server:
        # the launching process waits for this line before it connects
        sys.stdout.write(f"listening on {server.base_url}\n")
        sys.stdout.flush()
        await stopping.wait()


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the fake provider on 127.0.0.1 until SIGTERM/SIGINT; the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m llmroute.testing._server",
        description="Fake OpenAI-compatible and Gemini provider on 127.0.0.1.",
    )
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: any free)")
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, help="milliseconds before every answer"
    )
    args = parser.parse_args(argv)
    asyncio.run(_serve_until_signalled(args.port, args.latency_ms / 1000.0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
