"""What the config carries beyond the basics: `${VAR:-default}`, the secrets set and masked
reprs, capabilities, retired notes, `state:` and `learn_from_headers`, and "did you mean"."""

from __future__ import annotations

from typing import Any

import pytest

from llmroute._hints import did_you_mean, suggest
from llmroute.config import load_config
from llmroute.errors import ConfigError


def _models(**provider: Any) -> dict[str, Any]:
    return {
        "providers": {
            "p": {"type": "openai_compatible", "base_url": "http://127.0.0.1:9/v1", **provider},
            "cli": {"type": "claude_code", "env": {"ANTHROPIC_API_KEY": "${ANTHROPIC_API_KEY}"}},
        },
        "models": {
            "p/a": {"provider": "p", "capabilities": ["tools", "json"]},
            "p/b": {"provider": "p", "retired": "2026-08-16"},
            "cli/c": {"provider": "cli"},
        },
        "routes": {"chat": ["p/a", "p/b"]},
    }


def test_default_values_apply_when_the_variable_is_unset_or_empty() -> None:
    models = _models(base_url="${P_URL:-http://127.0.0.1:9/v1}")
    for env in ({}, {"P_URL": ""}):
        config = load_config(models, None, env=env)
        assert config.models.providers["p"].base_url == "http://127.0.0.1:9/v1"
        # a default written in the file is no secret
        assert "http://127.0.0.1:9/v1" not in config.secrets
    config = load_config(models, None, env={"P_URL": "http://127.0.0.1:7/v1"})
    assert config.models.providers["p"].base_url == "http://127.0.0.1:7/v1"
    assert "http://127.0.0.1:7/v1" in config.models.secrets


def test_secrets_hold_keys_and_every_interpolated_header_env_and_url_value() -> None:
    models = _models(
        api_keys=["${K1}", "${K2}"],
        headers={"Authorization": "Bearer ${TOKEN}", "X-Title": "my-app"},
        base_url="${URL}",
    )
    env = {
        "K1": "key-one-1234",
        "K2": "key-two-5678",
        "TOKEN": "token-abcdefgh",
        "URL": "http://127.0.0.1:5/v1",
        "ANTHROPIC_API_KEY": "anthropic-secret-99",
    }
    config = load_config(
        models,
        {"state": {"backend": "redis", "url": "${R}"}},
        env={**env, "R": "redis://:pw-secret@127.0.0.1/0"},
    )
    assert {
        "key-one-1234",
        "key-two-5678",
        "token-abcdefgh",
        "http://127.0.0.1:5/v1",
    } <= config.models.secrets
    assert "anthropic-secret-99" in config.models.secrets
    assert "my-app" not in config.models.secrets  # written in the file: not a secret
    assert "redis://:pw-secret@127.0.0.1/0" in config.secrets
    shown = repr(config)
    for value in [*env.values(), "redis://:pw-secret@127.0.0.1/0", "token-abcdefgh"]:
        assert value not in shown
    assert "***" in repr(config.models.providers["p"])


def test_a_cli_argument_from_the_environment_is_a_secret_too() -> None:
    models = _models()
    models["providers"]["cli"]["command"] = ["mycli", "--token", "${CLI_TOKEN}", "{model}"]
    config = load_config(models, None, env={"CLI_TOKEN": "cli-token-secret-1"})
    assert "cli-token-secret-1" in config.models.secrets
    assert "cli-token-secret-1" not in repr(config)


def test_capabilities_and_retired_are_parsed() -> None:
    config = load_config(_models(), None, env={})
    assert config.models.models["p/a"].capabilities == frozenset({"tools", "json"})
    assert config.models.models["p/b"].capabilities is None
    assert config.models.models["p/b"].retired == "2026-08-16"
    assert config.models.models["p/a"].retired is None


def test_state_and_learn_from_headers_are_parsed_with_defaults() -> None:
    models = _models()
    plain = load_config(models, {}, env={})
    assert plain.limits.learn_from_headers is True
    assert plain.limits.state.backend == "memory"
    sqlite = load_config(
        models,
        {"state": {"backend": "sqlite", "path": "x.db"}, "learn_from_headers": False},
        env={},
    )
    assert sqlite.limits.state.backend == "sqlite"
    assert sqlite.limits.state.path == "x.db"
    assert sqlite.limits.learn_from_headers is False
    redis = load_config(
        models,
        {"state": {"backend": "redis", "url": "redis://127.0.0.1/0", "prefix": "app1"}},
        env={},
    )
    assert redis.limits.state.prefix == "app1"
    assert redis.limits.state.url is not None
    assert redis.limits.state.url.reveal() == "redis://127.0.0.1/0"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"routes": {"chat": ["p/a"], "x": ["chta"]}}, "did you mean 'chat'?"),
        ({"models": {"p/a": {"provider": "q"}, "q/x": {"provider": "pp"}}}, "did you mean 'p'?"),
        (
            {
                "providers": {
                    "p": {
                        "type": "openai_compatible",
                        "base_url": "http://127.0.0.1:9",
                        "rotation": {"strategy": "roundrobin"},
                    }
                }
            },
            "did you mean 'round_robin'?",
        ),
        (
            {"models": {"p/a": {"provider": "p", "contex_window": 5}}},
            "did you mean 'context_window'?",
        ),
        (
            {"models": {"p/a": {"provider": "p", "capabilities": ["visoin"]}}},
            "did you mean 'vision'?",
        ),
        (
            {"providers": {"p": {"type": "google_ai_studo"}}},
            "did you mean 'google_ai_studio'?",
        ),
    ],
)
def test_misspelt_names_get_the_right_suggestion(change: dict[str, Any], expected: str) -> None:
    models = _models()
    models.update(change)
    with pytest.raises(ConfigError) as info:
        load_config(models, None, env={})
    assert expected in str(info.value)


def test_misspelt_enum_in_limits_gets_a_suggestion() -> None:
    with pytest.raises(ConfigError, match=r"did you mean 'fallback'\?"):
        load_config(_models(), {"strategy": {"on_limit": "fallbak"}}, env={})


def test_suggest_handles_abbreviated_ids() -> None:
    ids = ["google_ai_studio/gemini-2.5-flash", "groq/openai/gpt-oss-20b", "gem/flash", "chat"]
    assert suggest("gem/flsh", ids)[0] == "gem/flash"
    assert "google_ai_studio/gemini-2.5-flash" in suggest("gem/flsh", ids[:2])
    assert suggest("chta", ids) == ["chat"]
    assert suggest("zzzzzz", ids) == []
    assert (
        did_you_mean("roundrobin", ["round_robin", "failover"]) == " (did you mean 'round_robin'?)"
    )
