"""A backlog against the quota-enforcing fake, in virtual time: how many 429s each setup
draws. Exact counts: FakeClock and FakeTransport make every run the same."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmroute import Router
from llmroute.testing import FakeClock, FakeScript, FakeTransport, Quota, QuotaEnforcer, Reply

MODEL = "llama-3.1-8b-instant"
TARGET = f"groq/{MODEL}"
GEMINI = "gemini-2.5-flash"
GEMINI_TARGET = f"gemini/{GEMINI}"
LATENCY = 0.5
RPM = 30


def models(keys: int = 3) -> dict[str, Any]:
    return {
        "providers": {
            "groq": {
                "type": "openai_compatible",
                "base_url": "http://fake.test/v1",
                "api_key": "groq-key",
            },
            "gemini": {
                "type": "google_ai_studio",
                "base_url": "http://fake.test/v1beta",
                "api_keys": [f"gemini-key-{i}" for i in range(keys)],
            },
        },
        "models": {
            TARGET: {"provider": "groq", "model": MODEL},
            GEMINI_TARGET: {"provider": "gemini", "model": GEMINI},
        },
    }


def limits(entry: dict[str, Any] | None, target: str = TARGET, **top: Any) -> dict[str, Any]:
    return {
        "strategy": {"on_limit": "sleep", "max_wait_seconds": 3600, "max_attempts": 20},
        "models": {target: entry} if entry else {},
        **top,
    }


class Run:
    def __init__(self, quota: QuotaEnforcer, clock: FakeClock, makespan: float, failed: int):
        self.quota = quota
        self.clock = clock
        self.makespan = makespan
        self.failed = failed


async def backlog(
    tmp_path: Path,
    limits_config: dict[str, Any],
    *,
    requests: int = 90,
    target: str = TARGET,
    quota: Quota | None = None,
) -> Run:
    clock = FakeClock()
    enforcer = QuotaEnforcer(
        {
            MODEL: quota or Quota(rpm=RPM, tpm=100_000, per_key=False),
            GEMINI: Quota(rpm=10, per_key=True),
        },
        clock=clock,
    )
    script = FakeScript(record=False)
    script.set_default(None, Reply(text="ok", latency=LATENCY))
    failed = 0
    async with (
        httpx.AsyncClient(transport=FakeTransport(script, clock=clock, quota=enforcer)) as http,
        Router(
            models(),
            limits_config,
            env_file=None,
            cache_dir=tmp_path,
            http_client=http,
            clock=clock,
        ) as router,
    ):

        async def one(i: int) -> None:
            nonlocal failed
            try:
                await router.complete(target, f"request {i}")
            except Exception:
                failed += 1

        await asyncio.gather(*(one(i) for i in range(requests)))
    return Run(enforcer, clock, clock.now(), failed)


def minimum(requests: int, per_minute: int) -> float:
    return (math.ceil(requests / per_minute) - 1) * 60.0 + LATENCY


async def test_a_limits_configured_exactly_draw_no_429(tmp_path: Path) -> None:
    run = await backlog(tmp_path, limits({"rpm": RPM}))
    assert run.quota.refused == 0
    assert run.failed == 0
    # the cold-start probe goes alone: one latency more than the minimum, once
    assert run.makespan == pytest.approx(minimum(90, RPM) + LATENCY)


async def test_a_without_learning_too(tmp_path: Path) -> None:
    run = await backlog(tmp_path, limits({"rpm": RPM}, learn_from_headers=False))
    assert (run.quota.refused, run.failed) == (0, 0)
    assert run.makespan == pytest.approx(minimum(90, RPM))


async def test_b_no_limits_learning_draws_no_429(tmp_path: Path) -> None:
    # The first request goes alone; its headers give the window; the burst follows it.
    run = await backlog(tmp_path, limits(None))
    assert run.quota.refused == 0
    assert run.failed == 0
    assert run.makespan == pytest.approx(minimum(90, RPM) + LATENCY)


async def test_c_limits_twice_too_high_learning_tightens(tmp_path: Path) -> None:
    run = await backlog(tmp_path, limits({"rpm": 2 * RPM}))
    assert run.quota.refused == 0
    assert run.failed == 0
    assert run.makespan == pytest.approx(minimum(90, RPM) + LATENCY)


async def test_c_limits_twice_too_high_without_learning(tmp_path: Path) -> None:
    run = await backlog(tmp_path, limits({"rpm": 2 * RPM}, learn_from_headers=False))
    # Each minute the local window lets 60 through and the provider refuses 30 of them.
    assert run.quota.refused == C_OFF_429S
    assert run.failed == 0


C_OFF_429S = 60
D_LEARN_429S = 32


async def test_learning_never_loosens_a_configured_limit(tmp_path: Path) -> None:
    # The provider allows 30 a minute; the configuration says 10: 10 it stays.
    run = await backlog(tmp_path, limits({"rpm": 10}), requests=30)
    assert run.quota.refused == 0
    assert run.makespan == pytest.approx(minimum(30, 10) + LATENCY)


async def test_d_gemini_keys_with_per_key_limits(tmp_path: Path) -> None:
    run = await backlog(
        tmp_path,
        limits({"rpm": 10, "per_key": True}, GEMINI_TARGET),
        requests=60,
        target=GEMINI_TARGET,
    )
    assert (run.quota.refused, run.failed) == (0, 0)
    assert run.makespan == pytest.approx(minimum(60, 30))  # no headers: no cold-start probe


async def test_d_gemini_429s_teach_each_keys_window(tmp_path: Path) -> None:
    # per_key without numbers: Gemini reports nothing before a 429, so the first burst
    # overruns; each key's 429 (QuotaFailure quotaValue 10, RetryInfo) then teaches its
    # window and closes it until the reset, and no 429 follows after the first burst.
    run = await backlog(
        tmp_path, limits({"per_key": True}, GEMINI_TARGET), requests=60, target=GEMINI_TARGET
    )
    assert run.failed == 0
    assert run.quota.refused == D_LEARN_429S
    assert max(run.quota.refused_at) < LATENCY
    assert run.makespan == pytest.approx(minimum(60, 30))
