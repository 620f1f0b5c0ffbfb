"""router.stream: chunk-by-chunk delivery, fallback before the first chunk, failures after it,
early close, usage correction, and a tolerant SSE reader."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import httpx
import pytest

from llmroute import Router
from llmroute.errors import ProviderError, RateLimitedError, StreamInterruptedError
from llmroute.testing import (
    FakeClock,
    FakeProviderServer,
    FakeScript,
    FakeTransport,
    RateLimit,
    Reply,
    ServerError,
    Stream,
)
from llmroute.trace import Chunk


def config(base_url: str) -> dict[str, Any]:
    return {
        "providers": {
            "oai": {"type": "openai_compatible", "base_url": f"{base_url}/v1", "api_key": "sk-x"},
            "gem": {
                "type": "google_ai_studio",
                "base_url": f"{base_url}/v1beta",
                "api_keys": ["g-key-0", "g-key-1"],
            },
        },
        "models": {
            "oai/a": {"provider": "oai", "model": "a"},
            "oai/b": {"provider": "oai", "model": "b"},
            "gem/flash": {"provider": "gem", "model": "gemini-2.5-flash"},
        },
        "routes": {"ab": ["oai/a", "oai/b"], "ga": ["gem/flash", "oai/a"]},
    }


def router_on(
    script: FakeScript, clock: FakeClock, tmp_path: Any, limits: dict[str, Any] | None = None
) -> tuple[Router, FakeTransport]:
    transport = FakeTransport(script, clock=clock)
    router = Router(
        config("http://fake.test"),
        limits or {},
        env_file=None,
        cache_dir=tmp_path,
        clock=clock,
        http_client=httpx.AsyncClient(transport=transport),
    )
    return router, transport


async def collect(router: Router, target: str, **kwargs: Any) -> list[Chunk]:
    return [chunk async for chunk in router.stream(target, "hi", **kwargs)]


@pytest.mark.parametrize("target", ["oai/a", "gem/flash"])
async def test_stream_yields_text_then_a_closing_chunk(
    clock: FakeClock, tmp_path: Any, target: str
) -> None:
    script = FakeScript()
    script.set_default(
        None, Stream(chunks=("Par", "is", "."), prompt_tokens=9, completion_tokens=3)
    )
    router, _ = router_on(script, clock, tmp_path)
    async with router:
        chunks = await collect(router, target)
    assert "".join(c.text for c in chunks) == "Paris."
    last = chunks[-1]
    assert last.finish_reason == "stop"
    assert last.model == target
    assert last.usage is not None and last.usage.total_tokens == 12 and not last.usage.estimated
    assert last.attempts is not None and [a.outcome for a in last.attempts] == ["ok"]
    assert all(c.attempts is None for c in chunks[:-1])


class GatedClock(FakeClock):
    """Stream delays wait for the test to open the gate, so ordering is observable."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    async def sleep(self, seconds: float) -> None:
        if seconds >= 1.0:
            await self.gate.wait()
        await super().sleep(seconds)


async def test_first_chunk_arrives_before_the_last_is_sent(tmp_path: Any) -> None:
    clock = GatedClock()
    script = FakeScript()
    script.script("a", Stream(chunks=("first", "second"), delay=1.0))
    router, _ = router_on(script, clock, tmp_path)
    async with router:
        stream = router.stream("oai/a", "hi")
        first = await asyncio.wait_for(stream.__anext__(), timeout=5)
        # The fake is blocked before sending "second": the first chunk was not buffered.
        assert first.text == "first"
        clock.gate.set()
        rest = [c async for c in stream]
    assert "".join(c.text for c in rest) == "second"


async def test_real_server_delivers_chunk_by_chunk(tmp_path: Any) -> None:
    async with FakeProviderServer() as server:
        server.script.script("a", Stream(chunks=("one", "two", "three"), delay=0.15))
        async with Router(config(server.base_url), {}, env_file=None, cache_dir=tmp_path) as router:
            loop = asyncio.get_running_loop()
            start = loop.time()
            arrivals = [(loop.time() - start, c.text) async for c in router.stream("oai/a", "hi")]
    texts = [t for _, t in arrivals if t]
    assert texts == ["one", "two", "three"]
    # Each chunk was handed over as it came, not all at the end.
    assert arrivals[0][0] < arrivals[-1][0] - 0.2


async def test_fallback_before_the_first_chunk(clock: FakeClock, tmp_path: Any) -> None:
    script = FakeScript()
    script.script("a", RateLimit(retry_after=5))
    script.script("b", Stream(chunks=("from ", "b")))
    router, _ = router_on(script, clock, tmp_path)
    async with router:
        chunks = await collect(router, "ab")
    assert "".join(c.text for c in chunks) == "from b"
    assert chunks[-1].model == "oai/b"
    assert [a.outcome for a in chunks[-1].attempts or []] == ["rate_limited_remote", "ok"]


async def test_gemini_key_rotation_before_first_chunk(clock: FakeClock, tmp_path: Any) -> None:
    script = FakeScript()
    script.script("gemini-2.5-flash", RateLimit(retry_delay=30), key="g-key-0")
    router, _ = router_on(script, clock, tmp_path)
    async with router:
        chunks = await collect(router, "gem/flash")
    attempts = chunks[-1].attempts or []
    assert [(a.key, a.outcome) for a in attempts] == [
        ("gem#0", "rate_limited_remote"),
        ("gem#1", "ok"),
    ]


async def test_server_error_before_first_chunk_is_retried(clock: FakeClock, tmp_path: Any) -> None:
    script = FakeScript()
    script.script("a", ServerError(status=503), Stream(chunks=("ok",)))
    router, _ = router_on(script, clock, tmp_path)
    async with router:
        chunks = await collect(router, "oai/a")
    assert [a.outcome for a in chunks[-1].attempts or []] == ["server_error", "ok"]


async def test_failure_after_first_chunk_raises_with_delivered_count(
    clock: FakeClock, tmp_path: Any
) -> None:
    script = FakeScript()
    script.script("a", Stream(chunks=("Hello", " world"), fail_after=1))
    router, _ = router_on(script, clock, tmp_path)
    got: list[str] = []
    async with router:
        with pytest.raises(StreamInterruptedError) as info:
            async for chunk in router.stream("ab", "hi"):
                got.append(chunk.text)
    assert got == ["Hello"]
    assert info.value.delivered_chars == 5
    assert isinstance(info.value, ProviderError)
    assert info.value.model == "oai/a"
    # No fallback after text went out: b was never asked.
    assert [r.model for r in script.requests] == ["a"]


async def test_one_candidate_stream_error(clock: FakeClock, tmp_path: Any) -> None:
    script = FakeScript()
    script.script("a", RateLimit(retry_after=3))
    router, _ = router_on(script, clock, tmp_path, {"strategy": {"on_limit": "fallback"}})
    async with router:
        with pytest.raises(RateLimitedError) as info:
            await collect(router, "oai/a")
    assert info.value.retry_after == 3.0


async def test_early_break_closes_the_response(clock: FakeClock, tmp_path: Any) -> None:
    script = FakeScript()
    script.set_default(None, Stream(chunks=tuple("abcdef")))
    router, transport = router_on(script, clock, tmp_path)
    async with router:
        async for _chunk in router.stream("oai/a", "hi"):
            break
        # Python finalises an abandoned async generator on the loop's next turns.
        for _ in range(3):
            await asyncio.sleep(0)
        assert transport.open_streams == 0
        async with contextlib.aclosing(router.stream("oai/a", "hi")) as chunks:
            async for _chunk in chunks:
                break
        assert transport.open_streams == 0  # at once with aclosing
        stream = router.stream("gem/flash", "hi")
        await stream.__anext__()
        await stream.aclose()  # type: ignore[attr-defined]
        assert transport.open_streams == 0


async def test_early_break_closes_the_connection_on_a_real_server(tmp_path: Any) -> None:
    async with FakeProviderServer() as server:
        server.script.set_default(None, Stream(chunks=("a", "b", "c"), delay=0.5))
        async with Router(config(server.base_url), {}, env_file=None, cache_dir=tmp_path) as router:
            async for _chunk in router.stream("oai/a", "hi"):
                break
            for _ in range(200):  # the server notices the close on its next read
                if server.open_connections == 0:
                    break
                await asyncio.sleep(0.01)
            assert server.open_connections == 0


async def test_usage_correction_and_estimate(clock: FakeClock, tmp_path: Any) -> None:
    script = FakeScript()
    script.script("a", Stream(chunks=("x",), prompt_tokens=5, completion_tokens=5))
    script.script("b", Stream(chunks=("y",), usage=False))
    limits = {"models": {"oai/a": {"tpm": 1000}}, "strategy": {"on_limit": "fallback"}}
    router, _ = router_on(script, clock, tmp_path, limits)
    async with router:
        a = await collect(router, "oai/a", max_tokens=900)
        # The 900-token estimate was corrected to 10, so another 900 fits.
        a2 = await collect(router, "oai/a", max_tokens=900)
        b = await collect(router, "oai/b", max_tokens=50)
    assert a[-1].usage is not None and a[-1].usage.total_tokens == 10
    assert a2[-1].model == "oai/a"
    assert b[-1].usage is not None and b[-1].usage.estimated
    assert b[-1].usage.completion_tokens == 50


async def test_early_break_keeps_no_charge_when_nothing_was_delivered(
    clock: FakeClock, tmp_path: Any
) -> None:
    script = FakeScript()
    script.set_default(None, Stream(chunks=("a", "b")))
    limits = {"models": {"oai/a": {"rpm": 1}}, "strategy": {"on_limit": "fallback"}}
    router, _ = router_on(script, clock, tmp_path, limits)
    async with router:
        stream = router.stream("oai/a", "hi")
        task = asyncio.ensure_future(stream.__anext__())
        await task
        await stream.aclose()  # type: ignore[attr-defined]
        with pytest.raises(RateLimitedError):  # text went out: the charge stays
            await collect(router, "oai/a")


def sse_router(handler: Any, clock: FakeClock, tmp_path: Any) -> Router:
    """A router whose upstream answers every request with `handler`'s raw response."""
    return Router(
        config("http://fake.test"),
        {},
        env_file=None,
        cache_dir=tmp_path,
        clock=clock,
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
    )


SSE_CASES = [
    # comments, keep-alives, CRLF, multi-line data (an undecodable event fails the stream:
    # see test_malformed_event_fails_the_stream)
    b": OPENROUTER PROCESSING\r\n\r\n"
    b'data: {"choices":[{"delta":{"content":"Hel"}}]}\r\n\r\n'
    b": keep-alive\n\n"
    b'data: {"choices":[{"delta":\ndata: {"content":"lo"}}]}\n\n'
    b"event: ping\nid: 7\n\n"
    b'data: {"choices":[{"delta":{},"finish_reason":"stop"}],'
    b'"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}\n\n'
    b"data: [DONE]\n\n",
]


@pytest.mark.parametrize("body", SSE_CASES)
async def test_tolerant_sse_reader(clock: FakeClock, tmp_path: Any, body: bytes) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    router = sse_router(handler, clock, tmp_path)
    async with router:
        chunks = await collect(router, "oai/a")
    assert "".join(c.text for c in chunks) == "Hello"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 3


async def test_error_event_inside_the_stream(clock: FakeClock, tmp_path: Any) -> None:
    body = (
        b'data: {"error":{"code":502,"message":"Upstream provider disconnected"},'
        b'"choices":[{"delta":{"content":""},"finish_reason":"error"}]}\n\ndata: [DONE]\n\n'
    )

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body)

    router = sse_router(handler, clock, tmp_path)
    async with router:
        with pytest.raises(ProviderError, match="Upstream provider disconnected"):
            await collect(router, "oai/a")


async def test_stream_cut_without_done_fails(clock: FakeClock, tmp_path: Any) -> None:
    body = b'data: {"choices":[{"delta":{"content":"par"}}]}\n\n'

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body)

    router = sse_router(handler, clock, tmp_path)
    async with router:
        with pytest.raises(StreamInterruptedError) as info:
            await collect(router, "oai/a")
    assert info.value.delivered_chars == 3


async def test_reply_behaviour_streams_as_one_chunk(clock: FakeClock, tmp_path: Any) -> None:
    script = FakeScript()
    script.set_default(None, Reply(text="whole"))
    router, _ = router_on(script, clock, tmp_path)
    async with router:
        chunks = await collect(router, "ga")
    assert "".join(c.text for c in chunks) == "whole"
