"""The router's own HTTP client: a small `httpx.AsyncClient` look-alike on aiohttp.

Measured on the benchmark's fake server (bench/, 2 cores, concurrency 50), per request:
httpx's default pool costs about 1,000-3,000 us of client CPU and tops out near 500 req/s;
raw aiohttp costs about 120 us (8,000+ req/s). `httpx.AsyncClient` itself, before any
transport, costs about 110 us (request building, cookies, auth and redirect machinery,
response objects), so an aiohttp-backed httpx *transport* still lands near 330 us
(3,000 req/s). Hence this client: adapters call `post()` and `stream()` exactly as they
would on an `httpx.AsyncClient`, and get back objects with the parts of `httpx.Response`
they read (`status_code`, `headers`, `content`, `json()`, `aread()`, `aiter_lines()`).
A user's own `httpx.AsyncClient` (`http_client=`, `httpx.MockTransport` in tests) has
the same calls, so adapters serve both without knowing which they hold.

Failures are raised as httpx exceptions (`httpx.ConnectError`, `httpx.ReadTimeout`, ...),
mapped once here, so the adapters' single httpx -> AttemptFailed mapping covers both. Their
message says what happened in words ("connection refused by 127.0.0.1:8080", "malformed
answer: not an HTTP status line"); aiohttp's own text is left out, as it carries internal
status numbers (a bad status line is its "400"), `ssl:default` for plain-http URLs, and
raw bytes of the answer.

Each event loop that calls the client gets its own aiohttp session, made lazily inside it
(`asyncio.run` per call, as sync wrappers do; threads, each with its loop). A session is
closed when its loop shuts down, as its connections cannot be closed after; one whose loop
is still open at interpreter exit (an `asyncio.Runner` never closed) is closed then, so a
client that is never closed prints nothing. Not supported:
HTTP/2, cookies, redirects, proxies unless `trust_env=True` (which also makes aiohttp read
`~/.netrc` in a thread on every request), and write timeouts.
"""

from __future__ import annotations

import asyncio
import atexit
import codecs
import contextlib
import errno
import json
import ssl
import threading
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import httpx

from llmroute._lifecycle import running_loop
from llmroute._transport_words import MALFORMED, phrase, where_of, worded

__all__ = ["AiohttpClient", "AiohttpResponse"]

# Looked up along the exception's MRO, so a subclass finds its own entry before its base's.
_EXCEPTIONS: dict[type[BaseException], type[httpx.TransportError]] = {
    aiohttp.ConnectionTimeoutError: httpx.ConnectTimeout,
    aiohttp.SocketTimeoutError: httpx.ReadTimeout,
    aiohttp.ServerTimeoutError: httpx.ReadTimeout,
    TimeoutError: httpx.PoolTimeout,
    aiohttp.ClientProxyConnectionError: httpx.ProxyError,
    aiohttp.ClientHttpProxyError: httpx.ProxyError,
    aiohttp.ClientConnectorError: httpx.ConnectError,
    aiohttp.ServerDisconnectedError: httpx.RemoteProtocolError,
    aiohttp.ClientResponseError: httpx.RemoteProtocolError,
    aiohttp.ClientPayloadError: httpx.RemoteProtocolError,
    aiohttp.ClientOSError: httpx.ReadError,
    aiohttp.InvalidURL: httpx.UnsupportedProtocol,
    aiohttp.NonHttpUrlClientError: httpx.UnsupportedProtocol,
    aiohttp.ClientConnectionError: httpx.NetworkError,
    aiohttp.ClientError: httpx.TransportError,
}
_MAPPED = (aiohttp.ClientError, TimeoutError)


def _mapped(exc: BaseException, url: str | None = None) -> httpx.TransportError:
    """The httpx exception for an aiohttp one, with the cause said in words."""
    for cls in type(exc).__mro__:
        target = _EXCEPTIONS.get(cls)
        if target is not None:
            return worded(target(_describe(exc, url)))
    return worded(httpx.TransportError(_describe(exc, url)))  # pragma: no cover


def _describe(exc: BaseException, url: str | None) -> str:
    """What went wrong, in words; never aiohttp's text (see the module docstring)."""
    if isinstance(exc, aiohttp.ClientConnectorError):
        return _connect_failure(exc, f"{exc.host}:{exc.port}")
    where = where_of(url)
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return phrase("connect_timeout", where)
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return phrase("read_timeout", where)
    if isinstance(exc, TimeoutError):
        return phrase("pool_timeout", where)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return phrase("closed", where)
    if isinstance(exc, aiohttp.ClientPayloadError):
        return phrase("cut_off", where)
    if isinstance(exc, aiohttp.ClientResponseError):
        return phrase("malformed", where, _malformed(exc))
    if isinstance(exc, aiohttp.ClientOSError | aiohttp.ClientConnectionResetError):
        return _os_failure(exc, where)
    if isinstance(exc, aiohttp.InvalidURL | aiohttp.NonHttpUrlClientError):
        return phrase("invalid_url")
    if isinstance(exc, aiohttp.ClientConnectionError):
        return phrase("lost", where)
    return phrase("other", where, type(exc).__name__)


def _connect_failure(exc: aiohttp.ClientConnectorError, where: str) -> str:
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return phrase("dns", where)
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return phrase("tls_untrusted", where)
    if isinstance(exc, aiohttp.ClientSSLError):
        return phrase("tls", where)
    code = exc.os_error.errno
    if code == errno.ECONNREFUSED:
        return phrase("refused", where)
    if code in (errno.ENETUNREACH, errno.EHOSTUNREACH):
        return phrase("unreachable", where)
    reason = exc.os_error.strerror or type(exc.os_error).__name__
    return phrase("connect_failed", where, reason.lower())


def _os_failure(exc: BaseException, where: str) -> str:
    code = getattr(exc, "errno", None)
    if isinstance(exc, ConnectionResetError) or code == errno.ECONNRESET:
        return phrase("reset", where)
    if code == errno.EPIPE:
        return phrase("broken_pipe", where)
    reason = getattr(exc, "strerror", None) or type(exc).__name__
    return phrase("failed", where, str(reason).lower())


_MALFORMED = (
    ("BadStatusLine", "status_line"),
    ("LineTooLong", "line_too_long"),
    ("InvalidHeader", "header"),
    ("TransferEncodingError", "chunked"),
    ("ContentLengthError", "short_body"),
    ("ContentEncodingError", "encoding"),
)


def _malformed(exc: aiohttp.ClientResponseError) -> str:
    cause = exc.__cause__
    names = {cls.__name__ for cls in type(cause).__mro__} if cause is not None else set()
    for name, what in _MALFORMED:
        if name in names:
            return MALFORMED[what]
    return MALFORMED["other"]


class AiohttpResponse:
    """The parts of `httpx.Response` the adapters read. `headers` is case-insensitive."""

    __slots__ = ("_response", "content", "headers", "status_code")

    def __init__(self, response: aiohttp.ClientResponse, content: bytes | None) -> None:
        self._response = response
        self.status_code = response.status
        self.headers: Mapping[str, str] = response.headers
        #: the whole body; for a stream, empty until `aread()`
        self.content = content if content is not None else b""

    def json(self) -> Any:
        return json.loads(self.content)

    async def aread(self) -> bytes:
        try:
            self.content = await self._response.read()
        except _MAPPED as exc:
            raise _mapped(exc, str(self._response.url)) from None
        return self.content

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        """The body as it arrives, so a stream's first event is not held back."""
        content = self._response.content
        try:
            while chunk := await content.readany():
                yield chunk
        except _MAPPED as exc:
            raise _mapped(exc, str(self._response.url)) from None

    async def aiter_lines(self) -> AsyncIterator[str]:
        """Lines without their endings (`\\n`, `\\r\\n` or `\\r`), as `httpx` splits them.

        Only there, as SSE wants: httpx also splits at the other `str.splitlines` breaks
        (U+2028, `\\x0c`, `\\x85`, ...), which would cut a JSON data line carrying one.
        """
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
        pending = ""
        async for chunk in self.aiter_bytes():
            text = pending + decoder.decode(chunk)
            # A trailing "\r" may be the first half of a "\r\n" split across chunks.
            held = ""
            if text.endswith("\r"):
                text, held = text[:-1], "\r"
            if "\r" in text:
                text = text.replace("\r\n", "\n").replace("\r", "\n")
            *lines, pending = text.split("\n")
            pending += held
            for line in lines:
                yield line
        text = pending + decoder.decode(b"", final=True)
        if text:
            lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
            if not lines[-1]:
                lines.pop()
            for line in lines:
                yield line


class AiohttpClient:
    """`post()` and `stream()` like `httpx.AsyncClient`'s, sent through aiohttp's pool.

    `max_connections` caps open connections per event loop (None: no cap); an idle one is
    kept for `keepalive_expiry` seconds. `verify`: True checks certificates against the
    system store (certifi's when the system has none), an `ssl.SSLContext` is used as
    given, False checks nothing. `timeout` (seconds) applies to connecting, waiting for a
    pooled connection and each read, as httpx's single-number timeout does; a caller that
    wants a wall-clock bound wraps the call in `asyncio.timeout`, and a cancelled call
    closes its connection.

        client = AiohttpClient()
        response = await client.post(url, content=body, headers=headers, timeout=30)
        await client.aclose()
    """

    def __init__(
        self,
        *,
        max_connections: int | None = 256,
        keepalive_expiry: float = 15.0,
        verify: ssl.SSLContext | bool = True,
        trust_env: bool = False,
    ) -> None:
        self._max_connections = max_connections or 0
        self._keepalive_expiry = keepalive_expiry
        self._verify = verify
        self._trust_env = trust_env
        #: (loop, session) of the last call: one identity test on the common path
        self._current: tuple[asyncio.AbstractEventLoop | None, aiohttp.ClientSession | None] = (
            None,
            None,
        )
        #: every loop's open session and the generator that closes it with the loop
        self._sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopSession] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()
        self._timeouts: dict[float | None, aiohttp.ClientTimeout] = {}
        _LIVE.add(self)

    def __repr__(self) -> str:
        return f"AiohttpClient(max_connections={self._max_connections or None})"

    def _get_session(self) -> aiohttp.ClientSession:
        current_loop, session = self._current
        loop = running_loop(current_loop)
        if current_loop is loop and session is not None:
            return session
        return self._session_for(loop)

    def _session_for(self, loop: asyncio.AbstractEventLoop) -> aiohttp.ClientSession:
        with self._lock:
            entry = self._sessions.get(loop)
            if entry is None or entry.session.closed:
                session = aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(
                        limit=self._max_connections,
                        keepalive_timeout=self._keepalive_expiry,
                        ssl=_ssl_setting(self._verify),
                    ),
                    cookie_jar=aiohttp.DummyCookieJar(),
                    timeout=aiohttp.ClientTimeout(total=None),
                    trust_env=self._trust_env,
                )
                entry = self._sessions[loop] = _LoopSession(session, self._sessions)
            self._current = (loop, entry.session)
            return entry.session

    def _timeout(self, seconds: float | None) -> aiohttp.ClientTimeout:
        timeout = self._timeouts.get(seconds)
        if timeout is None:
            if len(self._timeouts) >= 64:  # deadlines cut timeouts to many distinct values
                self._timeouts.clear()
            # aiohttp's `connect` covers waiting for a pooled connection plus connecting.
            timeout = self._timeouts[seconds] = aiohttp.ClientTimeout(
                total=None, connect=seconds, sock_connect=seconds, sock_read=seconds
            )
        return timeout

    async def _send(
        self, url: str, content: bytes, headers: Mapping[str, str], timeout: float | None
    ) -> aiohttp.ClientResponse:
        try:
            return await self._get_session().request(
                "POST",
                url,
                data=content,
                headers=headers,
                allow_redirects=False,
                timeout=self._timeout(timeout),
            )
        except _MAPPED as exc:
            raise _mapped(exc, url) from None

    async def post(
        self,
        url: str,
        *,
        content: bytes,
        headers: Mapping[str, str],
        timeout: float | None = None,
    ) -> AiohttpResponse:
        """Send a POST and read the whole answer."""
        # _send is spelled out here: one coroutine less on the common path.
        try:
            response = await self._get_session().request(
                "POST",
                url,
                data=content,
                headers=headers,
                allow_redirects=False,
                timeout=self._timeout(timeout),
            )
            try:
                body = await response.read()
            except BaseException:
                # Cancelled or failed half way: the connection cannot be reused.
                response.close()
                raise
            response.release()
        except _MAPPED as exc:
            raise _mapped(exc, url) from None
        return AiohttpResponse(response, body)

    @asynccontextmanager
    async def stream(
        self,
        method: str,
        url: str,
        *,
        content: bytes,
        headers: Mapping[str, str],
        timeout: float | None = None,
    ) -> AsyncIterator[AiohttpResponse]:
        """Send a POST and yield the answer unread; leaving the block before the end of
        the body (an exception, a cancellation, a `break`) closes the connection."""
        if method != "POST":
            raise ValueError(f"AiohttpClient.stream only sends POST, not {method}")
        response = await self._send(url, content, headers, timeout)
        try:
            yield AiohttpResponse(response, None)
        finally:
            if response.content.is_eof():
                response.release()
            else:
                response.close()

    async def aclose(self) -> None:
        """Close the pooled connections; safe to call twice. A later call opens new ones.

        Sessions of other event loops close when their loop shuts down (or at exit)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._sessions.pop(loop, None)
            others = list(self._sessions.items())
            self._current = (None, None)
        if entry is not None:
            await entry.close()
        for other_loop, other in others:
            if other_loop.is_closed() or other.session.closed:
                self._sessions.pop(other_loop, None)
            elif other_loop.is_running():
                # A loop in another thread: its session is closed there.
                with contextlib.suppress(RuntimeError):
                    asyncio.run_coroutine_threadsafe(other.close(), other_loop)

    def _close_at_exit(self) -> None:
        """Close sessions whose loop is still open but idle (a Runner never closed)."""
        with self._lock:
            entries = list(self._sessions.items())
            self._sessions.clear()
        for loop, entry in entries:
            if entry.session.closed or loop.is_closed() or loop.is_running():
                continue
            with contextlib.suppress(Exception):
                loop.run_until_complete(entry.close())


class _LoopSession:
    """A session and what closes it when its event loop shuts down.

    Its connections can only be closed inside that loop: once the loop is closed they stay
    open until garbage collection, and aiohttp logs "Unclosed client session" at ERROR level.
    `asyncio.run` and `asyncio.Runner` close the loop's unfinished async generators just
    before closing the loop, which runs the `finally` of the one started here.
    """

    __slots__ = ("__weakref__", "_closer", "session")

    def __init__(
        self,
        session: aiohttp.ClientSession,
        registry: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopSession],
    ) -> None:
        self.session = session
        loop = asyncio.get_running_loop()

        async def close_at_shutdown() -> AsyncGenerator[None, None]:
            try:
                yield
            finally:
                await session.close()
                if registry.get(loop) is self:
                    registry.pop(loop, None)

        closer = close_at_shutdown()
        # One step up to its `yield`: the first step registers it with the running loop.
        with contextlib.suppress(StopIteration):
            closer.asend(None).send(None)
        self._closer: AsyncGenerator[None, None] | None = closer

    async def close(self) -> None:
        # Two closes can meet in one loop (the loop's own aclose, and another thread's
        # aclose handing it over): only the first may step the generator.
        closer, self._closer = self._closer, None
        if closer is not None:
            await closer.aclose()
        if not self.session.closed:  # the generator had been closed already
            await self.session.close()


_LIVE: weakref.WeakSet[AiohttpClient] = weakref.WeakSet()


@atexit.register
def _close_live_clients() -> None:
    for client in list(_LIVE):
        client._close_at_exit()


def _ssl_setting(verify: ssl.SSLContext | bool) -> ssl.SSLContext | bool:
    if verify is not True:
        return verify
    paths = ssl.get_default_verify_paths()
    if paths.cafile or paths.capath:
        return True  # aiohttp's default context, on the system trust store
    import certifi

    return ssl.create_default_context(cafile=certifi.where())
