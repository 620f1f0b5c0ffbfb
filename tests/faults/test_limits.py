"""What the provider sees stays within the limits, under cancellation and with CJK text."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from llmroute import Router
from llmroute.errors import LLMRouteError, RateLimitedError
from llmroute.testing import FaultServer

from .helpers import GEM, OAI, models_config, until

pytestmark = pytest.mark.usefixtures("secret_env")


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    from .helpers import SECRET_ENV

    for name, value in SECRET_ENV.items():
        monkeypatch.setenv(name, value)


def limits(target: str, **limit: int) -> dict[str, Any]:
    # Learning off: its cold-start probe sends the first request of a burst alone, which
    # would hide what these tests count (charges kept by requests already sent).
    return {
        "strategy": {"on_limit": "fallback"},
        "learn_from_headers": False,
        "models": {target: limit},
    }


@pytest.mark.parametrize("target", [OAI, GEM])
async def test_cancelled_after_send_keeps_its_charge(target: str, tmp_path: Path) -> None:
    async with FaultServer() as server:
        router = Router(
            models_config(server, "hang", timeout=30, retries=0),
            limits(target, rpm=5),
            env_file=None,
            cache_dir=tmp_path,
        )
        async with router:
            calls = [asyncio.ensure_future(router.complete(target, "hi")) for _ in range(10)]
            try:
                assert await until(lambda: len(server.requests) == 5)
                await asyncio.sleep(0.05)  # the other five were refused locally by now
                refused = [c for c in calls if c.done()]
                assert len(refused) == 5
                assert all(isinstance(c.exception(), RateLimitedError) for c in refused)
            finally:
                for call in calls:
                    call.cancel()
                await asyncio.gather(*calls, return_exceptions=True)
            # The five cancelled requests reached the provider: their charges stay.
            for _ in range(10):
                with pytest.raises(RateLimitedError):
                    await router.complete(target, "hi", deadline=1)
        assert len(server.requests) == 5


@pytest.mark.parametrize("target", [OAI, GEM])
async def test_with_learning_on_a_cancelled_burst_stays_within_rpm(
    target: str, tmp_path: Path
) -> None:
    async with FaultServer() as server:
        config = models_config(server, "hang", timeout=30, retries=0)
        limits_ = {"strategy": {"on_limit": "fallback"}, "models": {target: {"rpm": 5}}}
        async with Router(config, limits_, env_file=None, cache_dir=tmp_path) as router:
            for _ in range(3):
                burst = [asyncio.ensure_future(router.complete(target, "hi")) for _ in range(10)]
                await asyncio.sleep(0.2)
                for call in burst:
                    call.cancel()
                await asyncio.gather(*burst, return_exceptions=True)
        assert 1 <= len(server.requests) <= 5


@pytest.mark.parametrize("target", [OAI, GEM])
@pytest.mark.parametrize("mode", ["complete", "stream"])
async def test_cut_by_the_deadline_after_send_keeps_its_charge(
    target: str, mode: str, tmp_path: Path
) -> None:
    async with FaultServer() as server:
        router = Router(
            models_config(server, "hang", timeout=30, retries=0),
            limits(target, rpm=5),
            env_file=None,
            cache_dir=tmp_path,
        )

        async def call() -> None:
            if mode == "complete":
                await router.complete(target, "hi", deadline=0.3)
            else:
                async for _ in router.stream(target, "hi", deadline=0.3):
                    pass  # pragma: no cover

        async with router:
            first = await asyncio.gather(*(call() for _ in range(5)), return_exceptions=True)
            assert all(isinstance(r, LLMRouteError) for r in first), first
            assert len(server.requests) == 5
            again = await asyncio.gather(*(call() for _ in range(5)), return_exceptions=True)
            assert all(isinstance(r, RateLimitedError) for r in again), again
        assert len(server.requests) == 5


@pytest.mark.parametrize("target", [OAI, GEM])
async def test_cjk_prompts_stay_within_tpm_as_the_provider_counts(
    target: str, tmp_path: Path
) -> None:
    tpm = 2000
    prompt = "東京の天気について詳しく教えてください。" * 75  # 1,500 characters
    assert len(prompt) == 1500
    async with FaultServer(completion_tokens=10) as server:
        router = Router(
            models_config(server, "ok", timeout=5),
            limits(target, tpm=tpm),
            env_file=None,
            cache_dir=tmp_path,
        )
        async with router:
            results = await asyncio.gather(
                *(router.complete(target, prompt, max_tokens=10) for _ in range(5)),
                return_exceptions=True,
            )
    served = [r for r in results if not isinstance(r, BaseException)]
    assert served, results
    assert all(isinstance(r, RateLimitedError) for r in results if isinstance(r, BaseException))
    reported = sum(r.prompt_tokens + server.completion_tokens for r in server.requests)
    assert reported <= tpm, f"the provider counted {reported} tokens in one minute, tpm {tpm}"
