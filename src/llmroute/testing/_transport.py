"""The fake provider as an httpx transport: no sockets, time through an injectable clock."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Protocol

import httpx

from llmroute.testing._quota import QuotaEnforcer
from llmroute.testing._script import FakeScript
from llmroute.testing._wire import Rendered

__all__ = ["FakeTransport"]


class _Sleeper(Protocol):
    async def sleep(self, seconds: float) -> None: ...


class _AsyncioSleeper:
    __slots__ = ()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))


class FakeTransport(httpx.AsyncBaseTransport):
    """An `httpx.AsyncBaseTransport` that answers as the fake OpenAI-compatible and Gemini APIs.

    Every wait (a behaviour's latency, the delay between stream chunks, a `Timeout`'s read
    timeout) goes through `clock.sleep`, so with a fake clock a test never really sleeps.
    The default clock is `asyncio.sleep`. `Timeout()` waits the request's read timeout
    (httpx's `timeout=`), then raises `httpx.ReadTimeout`; a stream's `fail_after` break
    raises `httpx.RemoteProtocolError` while the body is read.

        script = FakeScript()
        script.script("llama-3.1-8b-instant", RateLimit(retry_after=6))
        client = httpx.AsyncClient(transport=FakeTransport(script, clock=clock))

    `open_streams` counts streamed bodies handed out and not yet closed. With `quota` (a
    `QuotaEnforcer`) the fake enforces real rate limits in front of the script.
    """

    def __init__(
        self,
        script: FakeScript | None = None,
        *,
        clock: _Sleeper | None = None,
        quota: QuotaEnforcer | None = None,
    ) -> None:
        #: the behaviours answered and the requests recorded
        self.script = script if script is not None else FakeScript()
        #: the quotas enforced in front of the script, if any
        self.quota = quota
        self._clock: _Sleeper = clock if clock is not None else _AsyncioSleeper()
        #: streamed response bodies created and not yet closed
        self.open_streams = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        answer = self.script.handle if self.quota is None else self._within_quota
        rendered = answer(
            request.method,
            request.url.path,
            request.url.query.decode("ascii", "replace"),
            dict(request.headers.items()),
            body,
        )
        if rendered.hang:
            timeouts = request.extensions.get("timeout", {})
            read = timeouts.get("read") if isinstance(timeouts, dict) else None
            await self._clock.sleep(read if isinstance(read, int | float) else 0.0)
            raise httpx.ReadTimeout("fake provider: no answer (scripted Timeout)", request=request)
        await self._clock.sleep(rendered.latency)
        if rendered.pieces is None:
            return httpx.Response(
                rendered.status,
                headers=dict(rendered.headers),
                content=rendered.body,
                request=request,
            )
        self.open_streams += 1
        return httpx.Response(
            rendered.status,
            headers=dict(rendered.headers),
            stream=_PiecesStream(self, rendered, request),
            request=request,
        )

    def _within_quota(
        self, method: str, path: str, query: str, headers: dict[str, str], body: bytes
    ) -> Rendered:
        assert self.quota is not None
        return self.quota.handle(self.script, method, path, query, headers, body)


class _PiecesStream(httpx.AsyncByteStream):
    """Yields the rendered pieces after their delays; closing it once releases the count."""

    def __init__(self, owner: FakeTransport, rendered: Rendered, request: httpx.Request) -> None:
        self._owner = owner
        self._rendered = rendered
        self._request = request
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for delay, piece in self._rendered.pieces or ():
            if delay > 0:
                await self._owner._clock.sleep(delay)
            yield piece
        if self._rendered.break_after:
            raise httpx.RemoteProtocolError(
                "fake provider: peer closed connection without sending complete message body",
                request=self._request,
            )

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._owner.open_streams -= 1
