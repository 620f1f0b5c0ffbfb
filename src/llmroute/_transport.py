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
mapped once here, so the adapters' single httpx -> AttemptFailed mapping covers both.

The aiohttp session is made lazily inside the running event loop, and again if a later
call runs in another loop (`asyncio.run` per call, as sync wrappers do); each session is
closed when its loop shuts down, as its connections cannot be closed after. Not supported:
HTTP/2, cookies, redirects, proxies unless `trust_env=True` (which also makes aiohttp read
`~/.netrc` in a thread on every request), and write timeouts.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import json
import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import httpx

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


def _mapped(exc: BaseException) -> httpx.TransportError:
    for cls in type(exc).__mro__:
        target = _EXCEPTIONS.get(cls)
        if target is not None:
            return target(str(exc) or type(exc).__name__)
    return httpx.TransportError(str(exc) or type(exc).__name__)  # pragma: no cover


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
            raise _mapped(exc) from exc
        return self.content

    async def aiter_bytes(self) -> AsyncIterator[bytes]:
        """The body as it arrives, so a stream's first event is not held back."""
        content = self._response.content
        try:
            while chunk := await content.readany():
                yield chunk
        except _MAPPED as exc:
            raise _mapped(exc) from exc

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

    `max_connections` caps open connections (None: no cap); an idle one is kept for
    `keepalive_expiry` seconds. `verify`: True checks certificates against the system
    store (certifi's when the system has none), an `ssl.SSLContext` is used as given,
    False checks nothing. `timeout` (seconds) applies to connecting, waiting for a pooled
    connection and each read, as httpx's single-number timeout does.

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
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closer: AsyncGenerator[None, None] | None = None
        self._timeouts: dict[float | None, aiohttp.ClientTimeout] = {}

    def __repr__(self) -> str:
        return f"AiohttpClient(max_connections={self._max_connections or None})"

    def _get_session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        session = self._session
        if session is not None and loop is self._loop:
            return session
        # A session belongs to the loop that made it; one from a finished loop is unusable.
        self._loop = loop
        self._session = session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=self._max_connections,
                keepalive_timeout=self._keepalive_expiry,
                ssl=_ssl_setting(self._verify),
            ),
            cookie_jar=aiohttp.DummyCookieJar(),
            timeout=aiohttp.ClientTimeout(total=None),
            trust_env=self._trust_env,
        )
        self._closer = _closed_with_loop(session)
        return session

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
            raise _mapped(exc) from exc

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
            finally:
                response.release()
        except _MAPPED as exc:
            raise _mapped(exc) from exc
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
        """Send a POST and yield the answer unread; leaving the block early drops the
        connection (its unread remainder makes it unfit for reuse)."""
        if method != "POST":
            raise ValueError(f"AiohttpClient.stream only sends POST, not {method}")
        response = await self._send(url, content, headers, timeout)
        try:
            yield AiohttpResponse(response, None)
        finally:
            response.release()

    async def aclose(self) -> None:
        """Close the pooled connections; safe to call twice."""
        session, self._session = self._session, None
        closer, self._closer = self._closer, None
        if session is not None and not session.closed:
            await session.close()
        if closer is not None and self._loop is asyncio.get_running_loop():
            await closer.aclose()


def _closed_with_loop(session: aiohttp.ClientSession) -> AsyncGenerator[None, None]:
    """Arrange for `session` to be closed when the running event loop shuts down.

    Its connections can only be closed inside that loop: once the loop is closed they stay
    open until garbage collection, and aiohttp logs "Unclosed client session" at ERROR level
    (one per `asyncio.run` call that used the client). `asyncio.run` and `asyncio.Runner`
    close the loop's unfinished async generators just before closing the loop, which runs
    the `finally` of the one returned here; keep a reference to it until then.
    """

    async def close_at_shutdown() -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            await session.close()

    closer = close_at_shutdown()
    # One step up to its `yield`: the first step registers it with the running loop.
    with contextlib.suppress(StopIteration):
        closer.asend(None).send(None)
    return closer


def _ssl_setting(verify: ssl.SSLContext | bool) -> ssl.SSLContext | bool:
    if verify is not True:
        return verify
    paths = ssl.get_default_verify_paths()
    if paths.cafile or paths.capath:
        return True  # aiohttp's default context, on the system trust store
    import certifi

    return ssl.create_default_context(cafile=certifi.where())
