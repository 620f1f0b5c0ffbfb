"""No key in any log line, exception, repr or trace, across a matrix of failures."""

from __future__ import annotations

import logging
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
            try:
                if call == "complete":
                    texts.append(repr(await router.complete(target, "hi")))
                else:
                    texts.extend([repr(c) async for c in router.stream(target, "hi")])
            except LLMRouteError as exc:
                texts += [str(exc), repr(exc), repr(exc.args)]
                texts += [repr(a) for a in getattr(exc, "attempts", [])]
                cause = exc.__cause__ or exc.__context__
                texts.append(repr(cause))
            texts.append(repr(await router.key_status()))
            texts.append(repr(router.usage()))
    texts.append(caplog.text)
    for record in caplog.records:
        texts.append(record.getMessage())
    blob = "\n".join(texts)
    for secret in SECRETS:
        assert secret not in blob
        assert secret[-12:] not in blob
