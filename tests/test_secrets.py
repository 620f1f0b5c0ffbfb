"""No key in any log line, exception, repr or trace, across a matrix of failures."""

from __future__ import annotations

import logging
import sys
from typing import Any

import httpx
import pytest

from llmroute import Router
from llmroute.errors import LLMRouteError
from llmroute.testing import FakeClock

OPENAI_KEY = "sk-SECRET-openai-0123456789"
GEMINI_KEYS = ["AIzaSECRET-gemini-key-aaaaaaaa", "AIzaSECRET-gemini-key-bbbbbbbb"]
SECRETS = [OPENAI_KEY, *GEMINI_KEYS]

CONFIG: dict[str, Any] = {
    "providers": {
        "oai": {
            "type": "openai_compatible",
            "base_url": "http://fake.test/v1",
            "api_key": OPENAI_KEY,
        },
        "gem": {
            "type": "google_ai_studio",
            "base_url": "http://fake.test/v1beta",
            "api_keys": GEMINI_KEYS,
        },
    },
    "models": {"oai/a": {"provider": "oai"}, "gem/flash": {"provider": "gem"}},
    "routes": {"both": ["gem/flash", "oai/a"]},
}


def echo(
    status: int, request: httpx.Request, extra: dict[str, str] | None = None
) -> httpx.Response:
    """An error that echoes the key back, as some providers do."""
    key = request.headers.get("authorization", "") + request.headers.get("x-goog-api-key", "")
    return httpx.Response(
        status,
        headers=extra or {},
        json={"error": {"message": f"Incorrect API key provided: {key}", "code": status}},
    )


def failing(kind: str) -> Any:
    def handler(request: httpx.Request) -> httpx.Response:
        assert "key=" not in str(request.url)
        key = request.headers.get("authorization", "") + request.headers.get("x-goog-api-key", "")
        if kind == "transport":
            raise httpx.ConnectError(f"cannot connect with {key}")
        if kind == "timeout":
            raise httpx.ReadTimeout(f"timed out for {key}")
        if kind == "garbage":
            return httpx.Response(200, content=f"<html>{key}</html>".encode())
        return echo(int(kind), request, {"retry-after": "1"})

    return handler


@pytest.mark.parametrize(
    "kind", ["400", "401", "403", "429", "500", "503", "transport", "timeout", "garbage"]
)
@pytest.mark.parametrize("target", ["both", "oai/a", "gem/flash"])
async def test_no_secret_leaks(
    kind: str, target: str, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    clock = FakeClock()
    router = Router(
        CONFIG,
        {},
        env_file=None,
        cache_dir=tmp_path,
        clock=clock,
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(failing(kind))),
    )
    texts: list[str] = [repr(router), repr(router.config)]
    async with router:
        for call in ("complete", "stream"):
            texts += await texts_of_call(router, call, target)
            texts.append(repr(await router.key_status()))
            texts.append(repr(router.usage()))
    texts.append(caplog.text)
    for record in caplog.records:
        texts.append(record.getMessage())
    blob = "\n".join(texts)
    for secret in SECRETS:
        assert secret not in blob
        assert secret[-12:] not in blob


# -- every interpolated secret, and fragments of each ----------------------------------

INTERPOLATED = {
    "LEAK_OAI_KEY": "fake-oai-leak-4f1c9a7e2b3d8f60a5c4e3d2",
    "LEAK_GEM_KEY_1": "fake-gem-leak-7d3e9b1f0c2a4e6d8b0f1a2c",
    "LEAK_GEM_KEY_2": "fake-gem-leak-0b9a8c7d6e5f4a3b2c1d0e9f",
    "LEAK_ORG_TOKEN": "org-tok-e8d7c6b5a4f3e2d1c0b9",
    "LEAK_TENANT": "tenant-9f8e7d6c5b4a3f2e",
    "LEAK_CLI_KEY": "fake-cli-leak-3a4b5c6d7e8f9a0b1c2d",
}

FAKE_CLI = """
import os, sys
key = os.environ.get("ANTHROPIC_API_KEY", "")
sys.stdin.read()
mode = sys.argv[1]
if mode == "whole":
    sys.stderr.write(f"Invalid API key: {key}\\n")
else:
    sys.stderr.write(f"auth failed for key ...{key[4:20]}...\\n")
sys.exit(1)
"""


def interpolated_config(tmp_path: Any, cli_mode: str) -> dict[str, Any]:
    script = tmp_path / "fake_claude.py"
    script.write_text(FAKE_CLI)
    headers = {"X-Org-Token": "${LEAK_ORG_TOKEN}"}
    return {
        "providers": {
            "oai": {
                "type": "openai_compatible",
                "base_url": "http://fake.test/${LEAK_TENANT}/v1",
                "api_key": "${LEAK_OAI_KEY}",
                "headers": headers,
                "retries": 0,
            },
            "gem": {
                "type": "google_ai_studio",
                "base_url": "http://fake.test/v1beta",
                "api_keys": ["${LEAK_GEM_KEY_1}", "${LEAK_GEM_KEY_2}"],
                "headers": headers,
                "retries": 0,
            },
            "claude": {
                "type": "claude_code",
                "command": [sys.executable, str(script), cli_mode],
                "env": {"ANTHROPIC_API_KEY": "${LEAK_CLI_KEY}"},
            },
        },
        "models": {
            "oai/a": {"provider": "oai"},
            "gem/flash": {"provider": "gem"},
            "claude/sonnet": {"provider": "claude"},
        },
        "routes": {"all": ["gem/flash", "oai/a", "claude/sonnet"]},
    }


def echo_everything(kind: str) -> Any:
    """Errors that repeat what the request carried: the key, part of it, every header,
    the URL (with its tenant token)."""

    def handler(request: httpx.Request) -> httpx.Response:
        key = request.headers.get("authorization", "").removeprefix("Bearer ")
        key = key or request.headers.get("x-goog-api-key", "")
        if kind == "whole":
            message = f"Incorrect API key provided: {key}"
        elif kind == "fragment":
            message = f"key {key[5:21]}... is suspended"
        elif kind == "headers":
            message = "headers: " + "; ".join(f"{k}={v}" for k, v in request.headers.items())
        else:
            message = f"no route for {request.url}"
        return httpx.Response(400, json={"error": {"message": message, "code": 400}})

    return handler


def fragments_in(blob: str) -> list[str]:
    found = []
    for name, secret in INTERPOLATED.items():
        if any(secret[i : i + 8] in blob for i in range(len(secret) - 7)):
            found.append(name)
    return found


LEAK_CASES = [
    (kind, target)
    for kind in ("whole", "fragment", "headers", "url")
    for target in ("all", "oai/a", "gem/flash", "claude/sonnet")
    # a CLI provider has no headers or URL to echo
    if target != "claude/sonnet" or kind in ("whole", "fragment")
]


@pytest.mark.parametrize(("kind", "target"), LEAK_CASES)
async def test_no_interpolated_secret_or_fragment_leaks(
    kind: str,
    target: str,
    tmp_path: Any,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in INTERPOLATED.items():
        monkeypatch.setenv(name, value)
    caplog.set_level(logging.DEBUG)
    router = Router(
        interpolated_config(tmp_path, "whole" if kind == "whole" else "fragment"),
        {},
        env_file=None,
        cache_dir=tmp_path,
        clock=FakeClock(),
        http_client=httpx.AsyncClient(transport=httpx.MockTransport(echo_everything(kind))),
    )
    texts: list[str] = [repr(router), repr(router.config), str(router.config)]
    texts += [repr(p) for p in router.config.models.providers.values()]
    async with router:
        for call in ("complete", "stream"):
            texts += await texts_of_call(router, call, target)
        texts.append(repr(await router.explain(target, "hi")))
        texts.append(repr(await router.key_status()))
    # Every record but httpx's own: a user's httpx client logs each request URL at INFO,
    # base_url secrets included, on its own logger.
    texts += [r.getMessage() for r in caplog.records if not r.name.startswith("httpx")]
    texts += [r.exc_text or "" for r in caplog.records]
    assert fragments_in("\n".join(texts)) == []


async def texts_of_call(router: Router, call: str, target: str) -> list[str]:
    """Everything one call leaves for a user to see: the result's repr, or the error's
    text, repr, args, attempts and cause."""
    try:
        if call == "complete":
            return [repr(await router.complete(target, "hi"))]
        return [repr(c) async for c in router.stream(target, "hi")]
    except LLMRouteError as exc:
        cause = exc.__cause__ or exc.__context__
        return [
            str(exc),
            repr(exc),
            repr(exc.args),
            *(repr(a) for a in getattr(exc, "attempts", [])),
            repr(cause),
            str(cause),
        ]
