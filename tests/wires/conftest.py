"""Both HTTP adapters on an `httpx.MockTransport` that records bodies and answers canned
bytes, and the captured fixtures (official SDK requests, canned provider answers)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmroute._request import build_request, for_attempt
from llmroute.config._schema import ProviderConfig, Secret
from llmroute.providers.base import ProviderRequest, ProviderResponse, StreamEvent
from llmroute.providers.google_ai_studio import GoogleAIStudioProvider
from llmroute.providers.openai_compatible import OpenAICompatibleProvider
from llmroute.testing import FakeClock

FIXTURES = Path(__file__).parent / "fixtures"
KEY = "wire-test-key-0123456789"


def fixture_json(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def request(
    prompt: str | Sequence[Mapping[str, Any]],
    model: str,
    *,
    extra: Mapping[str, Any] | None = None,
    **options: Any,
) -> ProviderRequest:
    base = build_request(prompt, None, None, None, None, extra or {}, **options)
    return for_attempt(base, model, 30.0)


class Wire:
    """One adapter whose every request is recorded and answered with `answer`."""

    def __init__(self, kind: str) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.answers: list[tuple[bytes, str]] = []
        transport = httpx.MockTransport(self._handle)
        self.client = httpx.AsyncClient(transport=transport)
        clock = FakeClock()
        if kind == "openai":
            config = ProviderConfig(
                name="together", type="openai_compatible", base_url="http://wire.test/v1"
            )
            self.provider: Any = OpenAICompatibleProvider(
                config, get_client=lambda: self.client, clock=clock
            )
        else:
            config = ProviderConfig(
                name="google_ai_studio",
                type="google_ai_studio",
                base_url="http://wire.test/v1beta",
                keys=(Secret(KEY),),
            )
            self.provider = GoogleAIStudioProvider(
                config, get_client=lambda: self.client, clock=clock
            )

    def answer(self, body: bytes | Mapping[str, Any], content_type: str = "") -> None:
        if isinstance(body, Mapping):
            self.answers.append((json.dumps(body).encode(), "application/json"))
        else:
            self.answers.append((body, content_type or "text/event-stream"))

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.bodies.append(json.loads(request.content))
        body, content_type = self.answers.pop(0) if self.answers else (b"{}", "application/json")
        return httpx.Response(200, headers={"content-type": content_type}, content=body)

    async def complete(self, request: ProviderRequest) -> ProviderResponse:
        response: ProviderResponse = await self.provider.complete(request, KEY)
        return response

    async def stream(self, request: ProviderRequest) -> list[StreamEvent]:
        return [event async for event in self.provider.stream(request, KEY)]


@pytest.fixture
async def openai_wire() -> AsyncIterator[Wire]:
    wire = Wire("openai")
    yield wire
    await wire.client.aclose()


@pytest.fixture
async def gemini_wire() -> AsyncIterator[Wire]:
    wire = Wire("gemini")
    yield wire
    await wire.client.aclose()
