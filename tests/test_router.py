"""End to end through the Router: FakeClock + httpx.MockTransport, no sleeps, no network."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmroute import Router
from llmroute.errors import (
    PaidModelBlockedError,
    ProviderError,
    ProviderUnavailableError,
    RateLimitedError,
    RoutingError,
    UnknownTargetError,
)
from llmroute.testing import FakeClock

Handler = Callable[[httpx.Request], httpx.Response]


def ok(text: str = "ok", model: str = "m", prompt: int = 10, completion: int = 5) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "model": model,
            "choices": [{"message": {"content": text}, "finish_reason": "stop"}],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": completion,
                "total_tokens": prompt + completion,
            },
        },
    )


def error(
    status: int, headers: dict[str, str] | None = None, message: str = "nope"
) -> httpx.Response:
    return httpx.Response(status, headers=headers or {}, json={"error": {"message": message}})


class Upstream:
    """A scripted OpenAI-compatible upstream keyed by wire model name."""

    def __init__(self) -> None:
        self.scripts: dict[str, list[Any]] = {}
        self.requests: list[dict[str, Any]] = []

    def script(self, model: str, *answers: Any) -> None:
        self.scripts.setdefault(model, []).extend(answers)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.requests.append({**body, "auth": request.headers.get("authorization")})
        queue = self.scripts.get(body["model"], [])
        answer = queue.pop(0) if queue else ok(f"from {body['model']}", body["model"])
        if isinstance(answer, BaseException):
            raise answer
        assert isinstance(answer, httpx.Response)
        return answer

    def models_called(self) -> list[str]:
        return [r["model"] for r in self.requests]


def models_config(**overrides: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "providers": {
            "free": {
                "type": "openai_compatible",
                "base_url": "http://upstream.test/v1",
                "api_key": "${FREE_KEY}",
                "retries": 2,
            },
            "paid": {
                "type": "openai_compatible",
                "base_url": "http://upstream.test/v1",
                "api_key": "${PAID_KEY}",
                "paid": True,
            },
            "nokey": {
                "type": "openai_compatible",
                "base_url": "http://upstream.test/v1",
                "api_key": "${NOT_SET_ANYWHERE}",
            },
        },
        "models": {
            "free/a": {
                "provider": "free",
                "price": {"input_per_mtok": 1.0, "output_per_mtok": 2.0},
            },
            "free/b": {"provider": "free"},
            "free/c": {"provider": "free", "fallbacks": ["free/b"]},
            "paid/x": {"provider": "paid"},
            "nokey/y": {"provider": "nokey"},
        },
        "routes": {
            "chat": ["paid/x", "nokey/y", "free/a", "free/b"],
            "ab": ["free/a", "free/b"],
        },
    }
    cfg.update(overrides)
    return cfg


@pytest.fixture
def upstream() -> Upstream:
    return Upstream()


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FREE_KEY", "sk-free-SECRET-1")
    monkeypatch.setenv("PAID_KEY", "sk-paid-SECRET-2")


def make_router(
    upstream: Handler,
    clock: FakeClock,
    limits: dict[str, Any] | None = None,
    tmp_path: Path | None = None,
    **kwargs: Any,
) -> Router:
    return Router(
        kwargs.pop("models", models_config()),
        limits or {},
        env_file=None,
        cache_dir=tmp_path or ".cache",
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(upstream)),
        clock=clock,
        **kwargs,
    )


@pytest.mark.usefixtures("env")
async def test_route_skips_paid_and_unavailable_then_serves(
    upstream: Upstream, clock: FakeClock
) -> None:
    async with make_router(upstream, clock) as router:
        c = await router.complete("chat", "Hello")
    assert c.text == "from a"
    assert c.model == "free/a"
    assert c.provider == "free"
    assert c.usage.total_tokens == 15 and not c.usage.estimated
    assert [(a.model, a.outcome) for a in c.attempts] == [
        ("paid/x", "skipped_paid"),
        ("nokey/y", "skipped_unavailable"),
        ("free/a", "ok"),
    ]
    assert c.attempts[-1].key == "free#0"
    assert upstream.requests[0]["auth"] == "Bearer sk-free-SECRET-1"
    assert upstream.requests[0]["messages"] == [{"role": "user", "content": "Hello"}]


@pytest.mark.usefixtures("env")
async def test_paid_gate(
    upstream: Upstream, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with make_router(upstream, clock) as router:
        with pytest.raises(PaidModelBlockedError) as info:
            await router.complete("paid/x", "hi")
        assert info.value.attempts[0].outcome == "skipped_paid"
    assert upstream.requests == []
    for value, expected in [
        ("TRUE", True),
        ("1", True),
        ("yes", True),
        ("On", True),
        ("false", False),
        ("2", False),
        ("", False),
    ]:
        monkeypatch.setenv("USE_PAID_MODELS", value)
        assert make_router(upstream, clock).use_paid_models is expected
    monkeypatch.setenv("USE_PAID_MODELS", "true")
    assert make_router(upstream, clock, use_paid_models=False).use_paid_models is False
    async with make_router(upstream, clock) as router:
        c = await router.complete("chat", "hi")
    assert c.model == "paid/x"


async def test_use_paid_models_from_env_file(
    upstream: Upstream, clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("USE_PAID_MODELS=yes\nFREE_KEY=from-file\nPAID_KEY=paid-file\n")
    monkeypatch.setenv("FREE_KEY", "from-process")
    router = Router(
        models_config(),
        {},
        env_file=env_file,
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(upstream)),
        clock=clock,
    )
    async with router:
        await router.complete("free/a", "hi")
    assert router.use_paid_models is True
    # The process environment wins over the file.
    assert upstream.requests[0]["auth"] == "Bearer from-process"


async def test_direct_request_to_unavailable_model(upstream: Upstream, clock: FakeClock) -> None:
    async with make_router(upstream, clock) as router:
        with pytest.raises(ProviderUnavailableError, match="no API key"):
            await router.complete("nokey/y", "hi")
        assert "nokey/y" in router.unavailable()


async def test_unknown_target(upstream: Upstream, clock: FakeClock) -> None:
    async with make_router(upstream, clock) as router:
        with pytest.raises(UnknownTargetError):
            await router.complete("nope", "hi")


@pytest.mark.usefixtures("env")
async def test_model_fallbacks_and_remote_429_cooldown(
    upstream: Upstream, clock: FakeClock
) -> None:
    upstream.script("c", error(429, {"retry-after": "7"}))
    async with make_router(upstream, clock) as router:
        first = await router.complete("free/c", "hi")
        assert [(a.model, a.outcome, a.status) for a in first.attempts] == [
            ("free/c", "rate_limited_remote", 429),
            ("free/b", "ok", 200),
        ]
        # The model cools down for the hint: no request is sent to it meanwhile.
        clock.advance(6.9)
        second = await router.complete("free/c", "hi")
        assert second.attempts[0].outcome == "keys_exhausted"
        clock.advance(0.2)
        third = await router.complete("free/c", "hi")
        assert third.model == "free/c"
    assert upstream.models_called() == ["c", "b", "b", "c"]


@pytest.mark.usefixtures("env")
async def test_one_candidate_rate_limit_raises_with_retry_after(
    upstream: Upstream, clock: FakeClock
) -> None:
    upstream.script("a", error(429, {"retry-after": "12"}))
    async with make_router(upstream, clock) as router:
        with pytest.raises(RateLimitedError) as info:
            await router.complete("free/a", "hi")
        assert info.value.retry_after == 12.0
        # Still longer than max_wait_seconds (10): no waiting for the cooldown, it counts down.
        clock.advance(1)
        with pytest.raises(RateLimitedError) as info:
            await router.complete("free/a", "hi")
        assert info.value.retry_after == pytest.approx(11.0)


@pytest.mark.usefixtures("env")
async def test_429_without_hint_uses_cooldown_seconds(upstream: Upstream, clock: FakeClock) -> None:
    cfg = models_config()
    cfg["providers"]["free"]["cooldown_seconds"] = 30
    upstream.script("a", error(429))
    async with make_router(upstream, clock, models=cfg) as router:
        with pytest.raises(RateLimitedError) as info:
            await router.complete("free/a", "hi")
        assert info.value.retry_after == 30.0


@pytest.mark.usefixtures("env")
async def test_server_errors_are_retried_then_succeed(upstream: Upstream, clock: FakeClock) -> None:
    upstream.script("a", error(503), httpx.ReadTimeout("slow"), ok("third time"))
    async with make_router(upstream, clock) as router:
        c = await router.complete("free/a", "hi")
    assert c.text == "third time"
    assert [a.outcome for a in c.attempts] == ["server_error", "timeout", "ok"]
    assert len(clock.slept) == 2  # backoff went through the injected clock


@pytest.mark.usefixtures("env")
async def test_retry_after_on_5xx_is_honoured(upstream: Upstream, clock: FakeClock) -> None:
    upstream.script("a", error(503, {"retry-after": "2"}))
    async with make_router(upstream, clock) as router:
        await router.complete("free/a", "hi")
    assert clock.slept == [2.0]


@pytest.mark.usefixtures("env")
async def test_one_candidate_provider_error_after_retries(
    upstream: Upstream, clock: FakeClock
) -> None:
    upstream.script("a", error(500), error(502), error(504))
    async with make_router(upstream, clock) as router:
        with pytest.raises(ProviderError) as info:
            await router.complete("free/a", "hi")
    assert info.value.status == 504
    assert info.value.model == "free/a" and info.value.provider == "free"
    assert len(info.value.attempts) == 3  # first try + retries: 2


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
@pytest.mark.usefixtures("env")
async def test_client_errors_are_not_retried(
    upstream: Upstream, clock: FakeClock, status: int
) -> None:
    upstream.script("a", error(status))
    async with make_router(upstream, clock) as router:
        with pytest.raises(ProviderError) as info:
            await router.complete("free/a", "hi")
    assert info.value.status == status
    assert len(upstream.requests) == 1
    assert info.value.attempts[0].outcome == "client_error"


@pytest.mark.usefixtures("env")
async def test_invalid_single_key_makes_provider_unavailable(
    upstream: Upstream, clock: FakeClock
) -> None:
    upstream.script("a", error(401))
    async with make_router(upstream, clock) as router:
        # free/a and free/b share the provider whose only key was just refused.
        with pytest.raises(RoutingError) as info:
            await router.complete("ab", "hi")
        assert [a.outcome for a in info.value.attempts] == ["client_error", "skipped_unavailable"]
        with pytest.raises(ProviderUnavailableError, match="refused"):
            await router.complete("free/b", "hi")
    assert len(upstream.requests) == 1


@pytest.mark.usefixtures("env")
async def test_transport_errors_become_transport_error(
    upstream: Upstream, clock: FakeClock
) -> None:
    upstream.script("a", *(httpx.ConnectError("refused") for _ in range(3)))
    async with make_router(upstream, clock) as router:
        c = await router.complete("ab", "hi")
    assert [a.outcome for a in c.attempts] == ["transport_error"] * 3 + ["ok"]


@pytest.mark.usefixtures("env")
async def test_max_attempts_is_one_budget_across_retries_and_candidates(
    upstream: Upstream, clock: FakeClock
) -> None:
    upstream.script("a", *(error(500) for _ in range(3)))
    upstream.script("b", *(error(500) for _ in range(3)))
    async with make_router(upstream, clock, {"strategy": {"max_attempts": 4}}) as router:
        with pytest.raises(RoutingError) as info:
            await router.complete("ab", "hi")
    assert len(upstream.requests) == 4
    assert [a.model for a in info.value.attempts] == ["free/a"] * 3 + ["free/b"]


@pytest.mark.usefixtures("env")
async def test_deadline_cuts_timeouts_and_stops_waiting(
    upstream: Upstream, clock: FakeClock
) -> None:
    timeouts: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        timeouts.append(request.extensions["timeout"]["read"])
        clock.advance(3)
        return error(500)

    async with make_router(handler, clock) as router:
        with pytest.raises(RoutingError):
            await router.complete("ab", "hi", deadline=5.0, timeout=4.0)
    assert timeouts[0] == 4.0
    assert all(t <= 4.0 for t in timeouts)
    assert clock.now() <= 5.0 + 3.0  # nothing started after the deadline


@pytest.mark.usefixtures("env")
async def test_limiter_sleep_within_max_wait(upstream: Upstream, clock: FakeClock) -> None:
    limits = {"models": {"free/a": {"rpm": 2}}, "strategy": {"max_wait_seconds": 60}}
    async with make_router(upstream, clock, limits) as router:
        await router.complete("free/a", "hi")
        clock.advance(10)
        await router.complete("free/a", "hi")
        c = await router.complete("free/a", "hi")
    assert c.attempts[0].waited_s == pytest.approx(50.0, abs=0.01)
    assert clock.now() == pytest.approx(60.0, abs=0.01)


@pytest.mark.usefixtures("env")
async def test_limiter_moves_on_when_wait_is_too_long(upstream: Upstream, clock: FakeClock) -> None:
    limits = {"models": {"free/a": {"rpm": 1}}, "strategy": {"max_wait_seconds": 5}}
    async with make_router(upstream, clock, limits) as router:
        await router.complete("ab", "hi")
        c = await router.complete("ab", "hi")
        assert [a.outcome for a in c.attempts] == ["rate_limited_local", "ok"]
        with pytest.raises(RateLimitedError) as info:
            await router.complete("free/a", "hi")
        assert info.value.retry_after == pytest.approx(60.0)


@pytest.mark.usefixtures("env")
async def test_request_that_can_never_fit_moves_on_at_once(
    upstream: Upstream, clock: FakeClock
) -> None:
    limits = {"models": {"free/a": {"tpm": 100}}}
    async with make_router(upstream, clock, limits) as router:
        with pytest.raises(RateLimitedError) as info:
            await router.complete("free/a", "x" * 1000)
        assert info.value.retry_after is None
        assert clock.slept == []


@pytest.mark.usefixtures("env")
async def test_thousand_concurrent_requests_admit_exactly_rpm(
    upstream: Upstream, clock: FakeClock
) -> None:
    limits = {"models": {"free/a": {"rpm": 37, "on_limit": "fallback"}}}
    async with make_router(upstream, clock, limits) as router:
        results = await asyncio.gather(*(router.complete("ab", "hi") for _ in range(1000)))
    served = [c.model for c in results]
    assert served.count("free/a") == 37
    assert served.count("free/b") == 963


@pytest.mark.usefixtures("env")
async def test_charge_is_corrected_to_real_usage(upstream: Upstream, clock: FakeClock) -> None:
    limits = {"models": {"free/a": {"tpm": 1000}}, "strategy": {"on_limit": "fallback"}}
    # Each estimate is max_tokens 900 + prompt; the real usage is 15 tokens.
    async with make_router(upstream, clock, limits) as router:
        for _ in range(5):
            c = await router.complete("ab", "hi", max_tokens=900)
            assert c.model == "free/a"


@pytest.mark.usefixtures("env")
async def test_missing_usage_keeps_estimate(clock: FakeClock) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"choices": [{"message": {"content": "x"}}]})

    async with make_router(handler, clock) as router:
        c = await router.complete("free/a", "abcdefgh", max_tokens=10)
    assert c.usage.estimated
    assert c.usage.completion_tokens == 10


@pytest.mark.usefixtures("env")
async def test_cancellation_after_send_keeps_the_charge(clock: FakeClock) -> None:
    gate = asyncio.Event()

    async def handler(request: httpx.Request) -> httpx.Response:
        await gate.wait()
        return ok()

    limits = {"models": {"free/a": {"rpm": 1}}, "strategy": {"on_limit": "fallback"}}
    router = Router(
        models_config(),
        limits,
        env_file=None,
        clock=clock,
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(handler)),
    )
    async with router:
        task = asyncio.create_task(router.complete("free/a", "hi"))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        gate.set()
        # The request may have reached the provider: its charge stays.
        with pytest.raises(RateLimitedError):
            await router.complete("free/a", "hi")


@pytest.mark.usefixtures("env")
async def test_cancelled_while_waiting_for_the_limiter_costs_nothing(
    upstream: Upstream, clock: FakeClock
) -> None:
    limits = {"models": {"free/a": {"rpm": 1}}, "strategy": {"max_wait_seconds": 120}}
    async with make_router(upstream, clock, limits) as router:
        await router.complete("free/a", "hi")
        waiting = asyncio.create_task(router.complete("free/a", "hi"))
        for _ in range(3):
            await asyncio.sleep(0)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        clock.advance(60)
        c = await router.complete("free/a", "hi")
    assert c.attempts[0].waited_s == 0.0
    assert len(upstream.requests) == 2


@pytest.mark.usefixtures("env")
async def test_usage_totals(upstream: Upstream, clock: FakeClock) -> None:
    upstream.script("a", error(500))
    async with make_router(upstream, clock) as router:
        await router.complete("free/a", "hi")
        await router.complete("free/a", "hi")
        usage = router.usage()
    a = usage["free/a"]
    assert a.requests == 3 and a.errors == 1
    assert a.prompt_tokens == 20 and a.completion_tokens == 10
    assert a.cost == pytest.approx((20 * 1.0 + 10 * 2.0) / 1_000_000)


@pytest.mark.usefixtures("env")
async def test_one_info_line_per_request_and_debug_per_attempt(
    upstream: Upstream, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    upstream.script("a", error(500))
    caplog.set_level(logging.DEBUG, logger="llmroute")
    async with make_router(upstream, clock) as router:
        await router.complete("ab", "hi")
    infos = [r for r in caplog.records if r.levelno == logging.INFO and r.name == "llmroute"]
    assert len(infos) == 1
    assert "ab -> free/a" in infos[0].getMessage()
    assert any(
        r.levelno == logging.DEBUG and "server_error" in r.getMessage() for r in caplog.records
    )


@pytest.mark.usefixtures("env")
def test_complete_sync(upstream: Upstream) -> None:
    with Router(
        models_config(),
        {},
        env_file=None,
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(upstream)),
    ) as router:
        assert router.complete_sync("free/a", "hi").text == "from a"
        assert router.complete_sync("free/b", "hi").text == "from b"


@pytest.mark.usefixtures("env")
async def test_messages_and_parameters_pass_through(upstream: Upstream, clock: FakeClock) -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Capital of France?"},
    ]
    async with make_router(upstream, clock) as router:
        await router.complete(
            "free/a",
            messages,
            max_tokens=64,
            temperature=0.2,
            top_p=0.9,
            stop="\n\n",
            extra_body={"seed": 7},
        )
    sent = upstream.requests[0]
    assert sent["messages"] == messages
    assert sent["max_tokens"] == 64 and sent["temperature"] == 0.2 and sent["top_p"] == 0.9
    assert sent["stop"] == ["\n\n"] and sent["seed"] == 7


@pytest.mark.usefixtures("env")
async def test_bad_prompts_are_rejected_clearly(upstream: Upstream, clock: FakeClock) -> None:
    async with make_router(upstream, clock) as router:
        with pytest.raises(ValueError, match="role"):
            await router.complete("free/a", [{"role": "wizard", "content": "x"}])
        with pytest.raises(ValueError, match="empty"):
            await router.complete("free/a", [])
        with pytest.raises(TypeError, match="content"):
            await router.complete("free/a", [{"role": "user", "content": 3}])  # type: ignore[dict-item]


class DelegatingStore:
    """A `StateStore` without the memory store's synchronous twins: the router must use
    the async protocol."""

    uses_wall_clock = False
    shared = False

    def __init__(self) -> None:
        from llmroute.stores import MemoryStore

        self.inner = MemoryStore()
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        if name.endswith("_nowait") or name == "window":
            raise AttributeError(name)
        method = getattr(self.inner, name)

        async def delegate(*args: Any) -> Any:
            self.calls.append(name)
            return await method(*args)

        return delegate


@pytest.mark.usefixtures("env")
async def test_an_injected_store_gets_every_call(upstream: Upstream, clock: FakeClock) -> None:
    store = DelegatingStore()
    upstream.script("c", error(429, {"retry-after": "5"}))
    limits = {"models": {"free/a": {"rpm": 2, "on_limit": "fallback"}}}
    router = make_router(upstream, clock, limits, store=store)
    async with router:
        served = [(await router.complete("ab", "hi")).model for _ in range(3)]
        await router.complete("free/c", "hi")
    assert served == ["free/a", "free/a", "free/b"]
    assert store.calls.count("acquire") == 3
    assert "commit" in store.calls and "set_cooldown" in store.calls
    assert store.calls[-1] != "aclose"  # the router closes only a store it made
