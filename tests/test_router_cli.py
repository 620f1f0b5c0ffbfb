"""CLI providers through the Router: gate, limiter, trace and usage apply as for HTTP."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fake_cli import install_on_path
from llmroute import Router
from llmroute.errors import PaidModelBlockedError, ProviderUnavailableError, RateLimitedError

CLAUDE = """
import json, sys
prompt = sys.stdin.read()
if "RATE" in prompt:
    print(json.dumps({"type": "result", "subtype": "success", "is_error": True,
                      "api_error_status": 429, "result": "API Error: 429 rate_limit_error",
                      "usage": {"input_tokens": 0, "output_tokens": 0}}))
    sys.exit(1)
print(json.dumps({"type": "result", "subtype": "success", "is_error": False,
                  "result": "echo: " + prompt.splitlines()[-1],
                  "usage": {"input_tokens": 12, "output_tokens": 4},
                  "modelUsage": {"claude-sonnet-4-5": {"inputTokens": 12, "outputTokens": 4}}}))
"""


@pytest.fixture
def fake_claude(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return install_on_path("fake-claude", CLAUDE, tmp_path, monkeypatch)


def config() -> dict[str, Any]:
    return {
        "providers": {
            "claude": {
                "type": "claude_code",
                "command": ["fake-claude", "-p", "--output-format", "json", "--model", "{model}"],
                "paid": True,
                "timeout": 20,
            },
            "ghost": {"type": "codex_cli", "command": ["no-such-codex-binary", "exec", "-"]},
        },
        "models": {
            "claude/sonnet": {
                "provider": "claude",
                "model": "sonnet",
                "price": {"input_per_mtok": 3, "output_per_mtok": 15},
            },
            "ghost/x": {"provider": "ghost", "model": "gpt-5"},
        },
        "routes": {"code": ["ghost/x", "claude/sonnet"]},
    }


@pytest.mark.usefixtures("fake_claude")
async def test_cli_model_through_the_router(tmp_path: Path) -> None:
    limits = {"models": {"claude/sonnet": {"rpm": 1, "on_limit": "fallback"}}}
    async with Router(
        config(), limits, env_file=None, cache_dir=tmp_path, use_paid_models=True
    ) as router:
        c = await router.complete("code", "Say hi")
        assert c.text == "echo: Say hi"
        assert [(a.model, a.outcome) for a in c.attempts] == [
            ("ghost/x", "skipped_unavailable"),
            ("claude/sonnet", "ok"),
        ]
        assert c.usage.prompt_tokens == 12 and c.usage.completion_tokens == 4
        assert "not found" in (c.attempts[0].error or "")
        with pytest.raises(RateLimitedError):
            await router.complete("claude/sonnet", "again")
        usage = router.usage()["claude/sonnet"]
        assert usage.requests == 1
        assert usage.cost == pytest.approx((12 * 3 + 4 * 15) / 1e6)
        with pytest.raises(ProviderUnavailableError, match="no-such-codex-binary"):
            await router.complete("ghost/x", "hi")


@pytest.mark.usefixtures("fake_claude")
async def test_cli_paid_gate_and_remote_rate_limit(tmp_path: Path) -> None:
    async with Router(config(), {}, env_file=None, cache_dir=tmp_path) as router:
        with pytest.raises(PaidModelBlockedError):
            await router.complete("claude/sonnet", "hi")
    async with Router(
        config(), {}, env_file=None, cache_dir=tmp_path, use_paid_models=True
    ) as router:
        with pytest.raises(RateLimitedError) as info:
            await router.complete("claude/sonnet", "RATE please")
        assert info.value.attempts[-1].outcome == "rate_limited_remote"
        assert info.value.attempts[-1].key is None


@pytest.mark.usefixtures("fake_claude")
async def test_cli_stream_falls_back_to_one_chunk(tmp_path: Path) -> None:
    async with Router(
        config(), {}, env_file=None, cache_dir=tmp_path, use_paid_models=True
    ) as router:
        chunks = [c async for c in router.stream("claude/sonnet", "streamed")]
    assert "".join(c.text for c in chunks) == "echo: streamed"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 16
    assert json.dumps(chunks[-1].model) == '"claude/sonnet"'
