from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from llmroute.config import load_config
from llmroute.errors import ConfigError

MODELS: dict[str, Any] = {
    "providers": {
        "groq": {
            "type": "openai_compatible",
            "base_url": "https://api.groq.com/openai/v1/",
            "api_key": "${GROQ_API_KEY}",
            "timeout": 30,
        },
        "gem": {
            "type": "google_ai_studio",
            "api_keys": ["${K1}", "${K2}", "${K3}"],
            "rotation": {"strategy": "failover"},
        },
        "claude": {"type": "claude_code", "env": {"X": "1"}},
    },
    "models": {
        "groq/llama": {"provider": "groq", "price": {"input_per_mtok": 1, "output_per_mtok": 2}},
        "gem/flash": {"provider": "gem", "model": "gemini-2.5-flash", "fallbacks": ["fast"]},
        "claude/sonnet": {"provider": "claude", "model": "sonnet", "paid": True},
    },
    "routes": {"fast": ["groq/llama"], "chat": ["gem/flash", "fast", "claude/sonnet"]},
}


def test_valid_config_is_resolved() -> None:
    cfg = load_config(MODELS, {}, env={"GROQ_API_KEY": "gsk_x", "K1": "a", "K3": "c"})
    groq = cfg.models.providers["groq"]
    assert groq.base_url == "https://api.groq.com/openai/v1"
    assert [k.reveal() for k in groq.keys] == ["gsk_x"]
    assert groq.timeout == 30.0
    gem = cfg.models.providers["gem"]
    assert [k.reveal() for k in gem.keys] == ["a", "c"]  # the unset K2 is dropped
    assert gem.rotation == "failover"
    assert gem.base_url == "https://generativelanguage.googleapis.com/v1beta"
    assert cfg.models.models["groq/llama"].model == "llama"
    assert cfg.models.models["gem/flash"].fallbacks == ("groq/llama",)
    assert cfg.models.routes["chat"] == ("gem/flash", "groq/llama", "claude/sonnet")
    assert cfg.models.providers["claude"].command[0] == "claude"
    assert cfg.models.models["claude/sonnet"].paid is True


def test_missing_credentials_are_not_an_error() -> None:
    cfg = load_config(MODELS, {}, env={})
    assert cfg.models.providers["groq"].keys == ()
    assert cfg.models.providers["gem"].keys == ()


def test_secret_repr_is_masked() -> None:
    cfg = load_config(MODELS, {}, env={"GROQ_API_KEY": "gsk_supersecret"})
    text = repr(cfg)
    assert "gsk_supersecret" not in text


def _problems(models: Any, limits: Any = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(models, limits if limits is not None else {}, env={})
    return str(info.value)


@pytest.mark.parametrize(
    ("patch", "expected"),
    [
        ({"providers": {"p": {"type": "opnai", "base_url": "x"}}}, "providers.p.type"),
        (
            {"providers": {"p": {"type": "openai_compatible", "base_url": "x", "timout": 3}}},
            "providers.p.timout: unknown field",
        ),
        ({"providers": {"p": {"type": "openai_compatible"}}}, "providers.p.base_url: missing"),
        (
            {
                "providers": {
                    "p": {"type": "openai_compatible", "base_url": "x", "max_concurrency": 2}
                }
            },
            "providers.p.max_concurrency: unknown field",
        ),
        ({"models": {"m": {"provider": "nope"}}}, "models.m.provider: unknown provider 'nope'"),
        ({"models": {"m": {"provider": "p", "colour": 1}}}, "models.m.colour: unknown field"),
        (
            {"models": {"m": {"provider": "p", "fallbacks": ["ghost"]}}},
            "models.m.fallbacks[0]: unknown model or route 'ghost'",
        ),
        ({"routes": {"r": ["m", "ghost"]}}, "routes.r[1]: unknown model or route 'ghost'"),
        ({"routes": {"a": ["b"], "b": ["a"]}}, "cycle"),
        ({"extra": 1}, "(top level).extra: unknown field"),
        (
            {"models": {"m": {"provider": "p", "context_window": -5}}},
            "models.m.context_window: expected a positive integer",
        ),
    ],
)
def test_models_problems_name_the_key_path(patch: dict[str, Any], expected: str) -> None:
    base: dict[str, Any] = {
        "providers": {"p": {"type": "openai_compatible", "base_url": "http://x"}},
        "models": {"m": {"provider": "p"}},
    }
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    message = _problems(base)
    assert expected in message
    assert message.startswith("models") or "models:" in message


SIMPLE = {
    "providers": {"p": {"type": "openai_compatible", "base_url": "http://x"}},
    "models": {"m": {"provider": "p"}},
}


@pytest.mark.parametrize(
    ("limits", "expected"),
    [
        ({"models": {"m": {"rpm": -1}}}, "models.m.rpm: expected a non-negative integer"),
        ({"models": {"m": {"tpm": "lots"}}}, "models.m.tpm: expected a non-negative integer"),
        ({"models": {"m": {"rpm": 1.5}}}, "models.m.rpm"),
        ({"models": {"ghost": {"rpm": 1}}}, "models.ghost: no such model"),
        ({"strategy": {"on_limit": "wait"}}, "strategy.on_limit: expected one of sleep, fallback"),
        ({"strategy": {"max_attempts": 0}}, "strategy.max_attempts: expected a positive integer"),
        ({"defaults": {"rpn": 3}}, "defaults.rpn: unknown field"),
        ({"state": {"backend": "redis"}}, "state.url"),
    ],
)
def test_limits_problems(limits: dict[str, Any], expected: str) -> None:
    message = _problems(SIMPLE, limits)
    assert expected in message
    assert "limits:" in message


def test_all_problems_are_listed_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(
            {**SIMPLE, "routes": {"r": ["ghost"]}, "bogus": 1},
            {"models": {"m": {"rpm": -1}}},
            env={},
        )
    assert len(info.value.problems) == 3


def test_files_name_the_path_and_yaml_line(tmp_path: Path) -> None:
    models = tmp_path / "models.yaml"
    models.write_text("providers:\n  p: {type: openai_compatible\n  base_url: x\n")
    with pytest.raises(ConfigError) as info:
        load_config(models, None, env={})
    assert str(models) in str(info.value)
    assert "line " in str(info.value)


def test_file_paths_in_key_problems(tmp_path: Path) -> None:
    models = tmp_path / "models.yaml"
    models.write_text(
        "providers:\n  p: {type: openai_compatible, base_url: 'http://x'}\n"
        "models:\n  groq/x: {provider: q}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(models, None, env={})
    assert f"{models}: models.groq/x.provider: unknown provider 'q'" in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.yaml", None, env={})


def test_limits_are_read(tmp_path: Path) -> None:
    limits = tmp_path / "limits.yaml"
    limits.write_text(
        "defaults: {rpm: 60}\nstrategy: {on_limit: fallback, max_wait_seconds: 2.5}\n"
        "completion_estimate: 100\nmodels:\n  m: {rpm: 30, tpm: 6000, rpd: 14400}\n"
    )
    cfg = load_config(SIMPLE, limits, env={})
    assert cfg.limits.strategy.on_limit == "fallback"
    assert cfg.limits.strategy.max_wait_seconds == 2.5
    assert cfg.limits.completion_estimate == 100
    assert cfg.limits.for_model("m").rpm == 30
    assert cfg.limits.for_model("m").tpd is None
    assert cfg.limits.defaults.rpm == 60


def test_interpolation_inside_strings_and_headers() -> None:
    models = {
        "providers": {
            "p": {
                "type": "openai_compatible",
                "base_url": "http://${HOST}/v1",
                "headers": {"X-Title": "${TITLE}", "X-Ref": "${UNSET}"},
            }
        },
        "models": {"m": {"provider": "p"}},
    }
    cfg = load_config(models, {}, env={"HOST": "127.0.0.1:9", "TITLE": "app"})
    provider = cfg.models.providers["p"]
    assert provider.base_url == "http://127.0.0.1:9/v1"
    assert dict(provider.headers) == {"X-Title": "app"}
