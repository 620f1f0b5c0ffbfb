"""A user's httpx client logs each request URL; no secret piece may reach those records."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmroute import Router
from llmroute._log_redact import LOGGERS, RedactingFilter

TENANT = "tenant-4f1c9a0b7d2e86c3a5"
KEY = "sk-logs-77aa0e13bc4d59f2e1"

ANSWER = {
    "id": "x",
    "object": "chat.completion",
    "model": "m",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}


def config() -> dict[str, Any]:
    return {
        "providers": {
            "p": {
                "type": "openai_compatible",
                "base_url": "http://127.0.0.1:9/${LOG_TENANT}/v1",
                "api_key": "${LOG_KEY}",
            }
        },
        "models": {"p/m": {"provider": "p", "model": "m"}},
    }


def installed() -> list[logging.Filter]:
    return [
        f
        for name in LOGGERS
        for f in logging.getLogger(name).filters
        if isinstance(f, RedactingFilter)
    ]


def fragments(secret: str) -> list[str]:
    return [secret[i : i + 8] for i in range(len(secret) - 7)]


async def test_no_secret_fragment_reaches_the_httpx_loggers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("LOG_TENANT", TENANT)
    monkeypatch.setenv("LOG_KEY", KEY)
    caplog.set_level(logging.DEBUG)
    seen_urls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen_urls.append(str(request.url))
        return httpx.Response(200, json=ANSWER)

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        async with Router(
            config(), {}, env_file=None, cache_dir=tmp_path, http_client=client
        ) as router:
            assert len(installed()) == len(LOGGERS)  # one filter per logger, per router
            for _ in range(3):
                assert (await router.complete("p/m", "hi")).text == "hi"
            # A record logged on an httpcore logger is masked too.
            logging.getLogger("httpcore.http11").debug("to %s", seen_urls[0])
        assert installed() == []  # removed at aclose
    assert TENANT in seen_urls[0]  # the token did travel in the URL
    records = [r for r in caplog.records if r.name.split(".")[0] in ("httpx", "httpcore")]
    assert any(r.name == "httpx" and "HTTP Request" in r.getMessage() for r in records)
    assert any(r.name == "httpcore.http11" for r in records)
    text = "\n".join(r.getMessage() for r in records)
    assert "/chat/completions" in text  # masked, not dropped
    for secret in (TENANT, KEY):
        assert [f for f in fragments(secret) if f in text] == []


async def test_the_routers_own_client_installs_no_filter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOG_TENANT", TENANT)
    monkeypatch.setenv("LOG_KEY", KEY)
    async with Router(config(), {}, env_file=None, cache_dir=tmp_path):
        assert installed() == []


def test_a_record_is_masked_never_dropped() -> None:
    from llmroute._redact import Redactor

    record = logging.LogRecord("httpx", logging.INFO, __file__, 1, "GET %s", (TENANT,), None)
    assert RedactingFilter(Redactor([TENANT])).filter(record) is True
    assert record.getMessage() == "GET ***"
    plain = logging.LogRecord("httpx", logging.INFO, __file__, 1, "GET %s", ("/v1",), None)
    RedactingFilter(Redactor([TENANT])).filter(plain)
    assert plain.args == ("/v1",)
