"""The pipeline's promises through the Router: charges kept once sent, cooldown waits,
budgets named with what was never tried, the keyword surface, lifecycle, explain, and
capability/context skips. httpx.MockTransport + FakeClock unless real time is the point."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

import llmroute
import llmroute.router
from llmroute import Router
from llmroute.config import RouterConfig, load_config
from llmroute.errors import (
    LLMRouteError,
    ProviderError,
    RateLimitedError,
    RoutingError,
    StreamInterruptedError,
)
from llmroute.testing import FakeClock
from llmroute.trace import Explanation

KEY = "sk-pipeline-SECRET-0001"


def ok(text: str = "ok", prompt: int = 10, completion: int = 5) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "choices": [{"message": {"content": text}, "finish_reason": "stop"}],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
        },
    )


def error(status: int, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, headers=headers or {}, json={"error": {"message": "nope"}})


def models(**extra_models: Any) -> dict[str, Any]:
    return {
        "providers": {
            "p": {
                "type": "openai_compatible",
                "base_url": "http://upstream.test/v1",
                "api_key": KEY,
                "retries": 2,
            },
            "paid": {
                "type": "openai_compatible",
                "base_url": "http://upstream.test/v1",
                "api_key": KEY,
                "paid": True,
            },
        },
        "models": {
            "p/a": {"provider": "p", "price": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}},
            "p/b": {"provider": "p"},
            "p/c": {"provider": "p"},
            "paid/x": {"provider": "paid"},
            **extra_models,
        },
        "routes": {"abc": ["p/a", "p/b", "p/c"], "xab": ["paid/x", "p/a", "p/b"]},
    }


class Upstream:
    """Scripted answers per wire model; counts what it received."""

    def __init__(self) -> None:
        self.scripts: dict[str, list[Any]] = {}
        self.models: list[str] = []

    def script(self, model: str, *answers: Any) -> None:
        self.scripts.setdefault(model, []).extend(answers)

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.models.append(body["model"])
        queue = self.scripts.get(body["model"], [])
        answer = queue.pop(0) if queue else ok(f"from {body['model']}")
        if callable(answer):
            answer = await answer(request)
        assert isinstance(answer, httpx.Response)
        return answer


def router(
    upstream: Callable[[httpx.Request], Any],
    clock: FakeClock | None = None,
    limits: dict[str, Any] | None = None,
    cfg: dict[str, Any] | None = None,
) -> Router:
    return Router(
        cfg or models(),
        limits or {},
        env_file=None,
        clock=clock,
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(upstream)),
    )


# -- charges -------------------------------------------------------------------------------


async def test_cancelled_after_send_keeps_its_charge(clock: FakeClock) -> None:
    upstream = Upstream()
    hang = asyncio.Event()

    async def hold(request: httpx.Request) -> httpx.Response:
        await hang.wait()
        return ok()

    upstream.script("a", *([hold] * 10))
    # learning off: its cold start would send one request alone and hold the rest back
    limits = {
        "models": {"p/a": {"rpm": 5}},
        "strategy": {"on_limit": "fallback"},
        "learn_from_headers": False,
    }
    async with router(upstream, clock, limits) as r:
        sent = [asyncio.create_task(r.complete("p/a", "hi")) for _ in range(10)]
        for _ in range(5):
            await asyncio.sleep(0)
        for task in sent:
            task.cancel()
        await asyncio.gather(*sent, return_exceptions=True)
        for _ in range(10):
            with pytest.raises(RateLimitedError):
                await r.complete("p/a", "hi")
    assert len(upstream.models) <= 5


async def test_waiting_requests_are_sent_in_arrival_order(clock: FakeClock) -> None:
    prompts: list[tuple[str, float]] = []

    async def record(request: httpx.Request) -> httpx.Response:
        prompts.append((json.loads(request.content)["messages"][0]["content"], clock.now()))
        return ok()

    limits = {"models": {"p/a": {"rpm": 2}}, "strategy": {"max_wait_seconds": 1000}}
    async with router(record, clock, limits) as r:
        tasks = []
        for i in range(10):
            tasks.append(asyncio.create_task(r.complete("p/a", f"q{i}")))
            await asyncio.sleep(0)
        done = await asyncio.gather(*tasks)
    assert [p for p, _ in prompts] == [f"q{i}" for i in range(10)]
    # Two a minute: the 9th and 10th go at t=240, waiting their turn the whole time.
    assert [t for _, t in prompts] == pytest.approx([0, 0, 60, 60, 120, 120, 180, 180, 240, 240])
    assert done[-1].attempts[0].waited_s == pytest.approx(240.0)


# -- on_limit: sleep and cooldowns ---------------------------------------------------------


async def test_sleep_waits_for_the_soonest_cooldown_when_every_candidate_cools(
    clock: FakeClock,
) -> None:
    upstream = Upstream()
    upstream.script("a", error(429, {"retry-after": "4"}))
    upstream.script("b", error(429, {"retry-after": "2"}))
    async with router(upstream, clock, cfg=models()) as r:
        c = await r.complete("abc", "hi", max_tokens=5)
        # p/c is not cooling: served at once, no waiting.
        assert c.model == "p/c" and clock.now() == 0.0
        cfg = models()
        cfg["routes"]["ab"] = ["p/a", "p/b"]
    upstream = Upstream()
    upstream.script("a", error(429, {"retry-after": "4"}))
    upstream.script("b", error(429, {"retry-after": "2"}))
    async with router(upstream, clock, cfg=cfg) as r:
        start = clock.now()
        c = await r.complete("ab", "hi")
    assert c.model == "p/b"
    assert clock.now() - start == pytest.approx(2.0, abs=0.01)
    assert [a.outcome for a in c.attempts] == [
        "rate_limited_remote",
        "rate_limited_remote",
        "keys_exhausted",
        "ok",
    ]


async def test_fallback_does_not_wait_for_cooldowns(clock: FakeClock) -> None:
    upstream = Upstream()
    upstream.script("a", error(429, {"retry-after": "4"}))
    async with router(upstream, clock, {"strategy": {"on_limit": "fallback"}}) as r:
        with pytest.raises(RateLimitedError) as info:
            await r.complete("p/a", "hi")
    assert info.value.retry_after == 4.0 and clock.now() == 0.0


async def test_a_cooldown_longer_than_max_wait_is_not_waited_for(clock: FakeClock) -> None:
    upstream = Upstream()
    upstream.script("a", error(429, {"retry-after": "11"}))
    async with router(upstream, clock, {"strategy": {"max_wait_seconds": 10}}) as r:
        with pytest.raises(RateLimitedError):
            await r.complete("p/a", "hi")
    assert clock.now() == 0.0


# -- budgets -------------------------------------------------------------------------------


async def test_max_attempts_names_the_budget_and_what_was_never_tried(clock: FakeClock) -> None:
    upstream = Upstream()
    upstream.script("a", error(500), error(500), error(500))
    async with router(upstream, clock, {"strategy": {"max_attempts": 2}}) as r:
        with pytest.raises(RoutingError) as info:
            await r.complete("abc", "hi")
    assert "max_attempts=2" in str(info.value)
    assert info.value.not_tried == ("p/b", "p/c")
    assert len(upstream.models) == 2


async def test_deadline_names_the_budget(clock: FakeClock) -> None:
    upstream = Upstream()

    async def slow_fail(request: httpx.Request) -> httpx.Response:
        clock.advance(3)
        return error(500)

    upstream.script("a", slow_fail, slow_fail, slow_fail)
    async with router(upstream, clock) as r:
        with pytest.raises(RoutingError) as info:
            await r.complete("abc", "hi", deadline=5.0)
    assert "deadline (5s)" in str(info.value)
    assert "p/c" in info.value.not_tried


async def test_not_tried_is_empty_when_no_budget_ended_the_call(clock: FakeClock) -> None:
    upstream = Upstream()
    upstream.script("a", error(400), error(400))
    upstream.script("b", error(400))
    upstream.script("c", error(400))
    async with router(upstream, clock) as r:
        with pytest.raises(RoutingError) as info:
            await r.complete("abc", "hi")
        with pytest.raises(ProviderError) as single:
            await r.complete("p/a", "hi")
    assert info.value.not_tried == () and single.value.not_tried == ()


# -- wall-clock timeouts -------------------------------------------------------------------


async def test_timeout_is_wall_clock_for_a_hanging_answer() -> None:
    never = asyncio.Event()

    async def hang(request: httpx.Request) -> httpx.Response:
        await never.wait()
        return ok()

    cfg = models()
    cfg["providers"]["p"]["retries"] = 0
    async with router(hang, cfg=cfg) as r:
        start = time.monotonic()
        with pytest.raises(ProviderError) as info:
            await r.complete("p/a", "hi", timeout=0.1)
        elapsed = time.monotonic() - start
    assert elapsed < 1.0
    assert info.value.attempts[0].outcome == "timeout"


async def test_deadline_ends_a_stream_that_keeps_going() -> None:
    async def forever(request: httpx.Request) -> httpx.Response:
        async def body() -> Any:
            yield b'data: {"choices":[{"delta":{"content":"tick"}}]}\n\n'
            while True:
                await asyncio.sleep(0.05)
                yield b'data: {"choices":[{"delta":{"content":"."}}]}\n\n'

        return httpx.Response(200, content=body())

    async with router(forever) as r:
        start = time.monotonic()
        with pytest.raises(StreamInterruptedError) as info:
            async for _chunk in r.stream("p/a", "hi", deadline=0.3):
                pass
        elapsed = time.monotonic() - start
    assert elapsed < 0.3 + 0.25
    assert info.value.delivered_chars >= 4
    assert "deadline" in str(info.value)


async def test_a_gap_longer_than_timeout_interrupts_a_stream() -> None:
    never = asyncio.Event()

    async def stall(request: httpx.Request) -> httpx.Response:
        async def body() -> Any:
            yield b'data: {"choices":[{"delta":{"content":"par"}}]}\n\n'
            await never.wait()
            yield b"data: [DONE]\n\n"

        return httpx.Response(200, content=body())

    async with router(stall) as r:
        with pytest.raises(StreamInterruptedError, match="no chunk within"):
            async for _chunk in r.stream("p/a", "hi", timeout=0.1):
                pass


# -- keywords ------------------------------------------------------------------------------


async def test_unknown_keywords_and_reserved_extra_body_fields(clock: FakeClock) -> None:
    upstream = Upstream()
    async with router(upstream, clock) as r:
        with pytest.raises(TypeError):
            await r.complete("p/a", "hi", max_tokns=5)  # type: ignore[call-arg]
        with pytest.raises(TypeError):
            await r.explain("p/a", "hi", model="p/b")  # type: ignore[call-arg]
        with pytest.raises(TypeError):
            r.stream("p/a", "hi", seed=1)  # type: ignore[call-arg]
        for field in ("model", "messages", "contents", "stream", "api_key", "key", "Authorization",
                      "x-goog-api-key", "access_token"):  # fmt: skip
            with pytest.raises(ValueError, match=field):
                await r.complete("p/a", "hi", extra_body={field: "x"})
            with pytest.raises(ValueError):
                async for _ in r.stream("p/a", "hi", extra_body={field: "x"}):
                    pass
        c = await r.complete("p/a", "hi", extra_body={"seed": 7})
    assert c.model == "p/a"
    assert upstream.models == ["a"]


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"timeout": math.inf}, ValueError),
        ({"timeout": math.nan}, ValueError),
        ({"timeout": -1}, ValueError),
        ({"timeout": 0}, ValueError),
        ({"timeout": "3"}, TypeError),
        ({"deadline": math.inf}, ValueError),
        ({"deadline": 0}, ValueError),
        ({"deadline": True}, TypeError),
        ({"max_tokens": 0}, ValueError),
        ({"max_tokens": 1.5}, TypeError),
        ({"temperature": math.nan}, ValueError),
        ({"top_p": -0.1}, ValueError),
    ],
)
async def test_bad_budgets_and_sampling_options_raise_before_anything_is_sent(
    clock: FakeClock, options: dict[str, Any], error: type[Exception]
) -> None:
    upstream = Upstream()
    async with router(upstream, clock) as r:
        name = next(iter(options))
        with pytest.raises(error, match=name):
            await r.complete("p/a", "hi", **options)
        with pytest.raises(error, match=name):
            await r.explain("p/a", "hi", **options)
        with pytest.raises(error, match=name):
            async for _ in r.stream("p/a", "hi", **options):
                pass
    assert upstream.models == [] and r.usage() == {}


# -- lifecycle -----------------------------------------------------------------------------


async def test_a_closed_router_raises() -> None:
    r = router(Upstream())
    await r.aclose()
    with pytest.raises(LLMRouteError, match="router is closed"):
        await r.complete("p/a", "hi")
    with pytest.raises(LLMRouteError, match="router is closed"):
        await r.explain("p/a", "hi")
    with pytest.raises(LLMRouteError, match="router is closed"):
        async for _ in r.stream("p/a", "hi"):
            pass


def test_one_router_serves_one_event_loop_after_another() -> None:
    upstream = Upstream()
    r = router(upstream)
    assert asyncio.run(r.complete("p/a", "hi")).model == "p/a"
    assert asyncio.run(r.complete("p/b", "hi")).model == "p/b"
    assert r.complete_sync("p/c", "hi").model == "p/c"
    assert asyncio.run(r.complete("p/a", "hi")).model == "p/a"
    r.close()
    assert upstream.models == ["a", "b", "c", "a"]


def test_calls_from_two_threads_at_once_raise_a_clear_error() -> None:
    release = threading.Event()
    started = threading.Event()

    async def held(request: httpx.Request) -> httpx.Response:
        started.set()
        await asyncio.to_thread(release.wait, 5)
        return ok()

    r = router(held)
    results: list[Any] = []

    def first() -> None:
        results.append(asyncio.run(r.complete("p/a", "hi")))

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert started.wait(5)
        with pytest.raises(LLMRouteError, match="another event loop"):
            asyncio.run(r.complete("p/a", "hi"))
    finally:
        release.set()
        thread.join(5)
    assert results and results[0].model == "p/a"


async def test_complete_sync_inside_a_running_loop_says_what_to_do() -> None:
    r = router(Upstream())
    with pytest.raises(LLMRouteError, match=r"await router\.complete"):
        r.complete_sync("p/a", "hi")
    await r.aclose()


# -- explain -------------------------------------------------------------------------------


async def test_explain_sends_nothing_and_changes_nothing(clock: FakeClock) -> None:
    upstream = Upstream()
    limits = {"models": {"p/a": {"rpm": 1}}, "strategy": {"max_wait_seconds": 5}}
    async with router(upstream, clock, limits) as r:
        before = await r._store.snapshot(clock.now())
        first = await r.explain("xab", "hi")
        assert isinstance(first, Explanation)
        assert first.chain == ("paid/x", "p/a", "p/b")
        assert [(c.model, c.outcome) for c in first.candidates] == [
            ("paid/x", "skipped_paid"),
            ("p/a", "would_send"),
            ("p/b", "would_send"),
        ]
        assert first.candidates[1].key == "p#0"
        again = await r.explain("xab", "hi")
        assert again == first
        assert upstream.models == [] and r.usage() == {}
        assert await r._store.snapshot(clock.now()) == before
        await r.complete("p/a", "hi")  # the window is now full
        full = await r.explain("xab", "hi")
        assert full.candidates[1].outcome == "rate_limited_local"
        assert full.candidates[1].wait_s == pytest.approx(60.0)
        table = str(full)
    assert "p/a" in table and "rate_limited_local" in table and "skipped_paid" in table
    assert KEY not in table and KEY not in repr(full)
    assert len(upstream.models) == 1


async def test_explain_shows_a_cooldown(clock: FakeClock) -> None:
    upstream = Upstream()
    upstream.script("a", error(429, {"retry-after": "30"}))
    async with router(upstream, clock) as r:
        await r.complete("abc", "hi")
        explained = await r.explain("abc", "hi")
    a = explained.candidates[0]
    assert a.outcome == "keys_exhausted" and a.cooldown_s == pytest.approx(30.0)


# -- capability and context skips ---------------------------------------------------------


@pytest.fixture
def text_only_b(monkeypatch: pytest.MonkeyPatch) -> None:
    """p/b accepts text only (as `capabilities: []` in models.yaml would say)."""
    real = load_config

    def patched(*args: Any, **kwargs: Any) -> RouterConfig:
        config = real(*args, **kwargs)
        models_ = dict(config.models.models)
        models_["p/b"] = dataclasses.replace(models_["p/b"], capabilities=frozenset())
        return dataclasses.replace(
            config, models=dataclasses.replace(config.models, models=models_)
        )

    monkeypatch.setattr(llmroute.router, "load_config", patched)


TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]


@pytest.mark.usefixtures("text_only_b")
async def test_capability_skips_in_a_mixed_route(clock: FakeClock) -> None:
    upstream = Upstream()
    cfg = models()
    cfg["routes"]["ba"] = ["p/b", "p/a"]
    async with router(upstream, clock, cfg=cfg) as r:
        c = await r.complete("ba", "hi", tools=TOOLS)
        assert [(a.model, a.outcome) for a in c.attempts] == [
            ("p/b", "skipped_capability"),
            ("p/a", "ok"),
        ]
        j = await r.complete("ba", "hi", response_format={"type": "json_object"})
        plain = await r.complete("ba", "hi")
        explained = await r.explain("ba", "hi", tools=TOOLS)
        with pytest.raises(RoutingError, match="does not support tools") as info:
            await r.complete("p/b", "hi", tools=TOOLS)
    assert [a.outcome for a in j.attempts] == ["skipped_capability", "ok"]
    assert plain.model == "p/b"
    assert explained.candidates[0].outcome == "skipped_capability"
    assert [a.outcome for a in info.value.attempts] == ["skipped_capability"]
    # Skips spend nothing: p/b never saw a request that needed tools or json.
    assert upstream.models.count("b") == 1


@pytest.mark.usefixtures("text_only_b")
async def test_conversation_with_tool_results_or_images_needs_the_capability(
    clock: FakeClock,
) -> None:
    from llmroute._request import build_request

    def needs_of(prompt: list[dict[str, object]], tool_choice: object = None) -> frozenset[str]:
        kwargs = {"tool_choice": tool_choice} if tool_choice is not None else {}
        if tool_choice is not None:
            kwargs["tools"] = [{"type": "function", "function": {"name": "f"}}]
        return build_request(prompt, None, None, None, None, {}, **kwargs).needs  # type: ignore[arg-type]

    assert needs_of([{"role": "user", "content": "hi"}]) == frozenset()
    call = {"id": "1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    turn = [
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
    ]
    assert needs_of([*turn, {"role": "tool", "content": "r", "tool_call_id": "1"}]) == {"tools"}
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}
    assert needs_of([{"role": "user", "content": [{"type": "text", "text": "x"}, image]}]) == {
        "vision"
    }
    assert needs_of([{"role": "user", "content": "x"}], "auto") == {"tools"}


async def test_context_window_skips_without_spending_an_attempt(clock: FakeClock) -> None:
    upstream = Upstream()
    cfg = models()
    cfg["models"]["p/a"]["context_window"] = 300
    async with router(upstream, clock, {"strategy": {"max_attempts": 1}}, cfg=cfg) as r:
        short = await r.complete("abc", "hi", max_tokens=100)
        long = await r.complete("abc", "x" * 2000, max_tokens=100)
        with pytest.raises(RoutingError) as info:
            await r.complete("p/a", "x" * 2000)
        explained = await r.explain("abc", "hi", max_tokens=1000)
    assert short.model == "p/a"
    assert [(a.model, a.outcome) for a in long.attempts] == [
        ("p/a", "skipped_context"),
        ("p/b", "ok"),
    ]
    assert "context window of 300" in str(info.value)
    assert explained.candidates[0].outcome == "skipped_context"
    assert upstream.models == ["a", "b"]


# -- what a request leaves behind ---------------------------------------------------------


async def test_cost_from_the_price_and_none_without_one(clock: FakeClock) -> None:
    async with router(Upstream(), clock) as r:
        priced = await r.complete("p/a", "hi")
        unpriced = await r.complete("p/b", "hi")
    assert priced.cost == pytest.approx((10 * 1.0 + 5 * 2.0) / 1_000_000)
    assert unpriced.cost is None


async def test_the_info_line_carries_structured_fields(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    upstream = Upstream()
    upstream.script("a", error(500))
    caplog.set_level(logging.INFO, logger="llmroute")
    async with router(upstream, clock) as r:
        await r.complete("abc", "hi")
    [record] = [r for r in caplog.records if r.levelno == logging.INFO and r.name == "llmroute"]
    fields = record.__dict__
    assert fields["target"] == "abc" and fields["model"] == "p/a"
    assert fields["outcomes"] == ["server_error", "ok"]
    assert fields["tokens"] == 15 and fields["latency_ms"] >= 0.0
