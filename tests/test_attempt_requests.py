"""Each attempt sends a request of its own: the call's first send uses the request built
for the call, every later one a copy, and none is changed after it was sent."""

from __future__ import annotations

import json
from typing import Any

import httpx

from llmroute import Router
from llmroute.providers.base import ProviderRequest
from llmroute.testing import FakeClock

MODELS = {
    "providers": {
        "p": {
            "type": "openai_compatible",
            "base_url": "http://upstream.test/v1",
            "api_key": "sk-attempt-requests-0000",
            "retries": 2,
        }
    },
    "models": {"p/a": {"provider": "p"}, "p/b": {"provider": "p"}},
    "routes": {"ab": ["p/a", "p/b"]},
}


def answer(request: httpx.Request) -> httpx.Response:
    model = json.loads(request.content)["model"]
    if model == "a":
        return httpx.Response(500, json={"error": {"message": "down"}})
    return httpx.Response(
        200, json={"choices": [{"message": {"content": "ok"}, "finish_reason": "stop"}]}
    )


async def test_retries_and_fallbacks_each_send_their_own_request() -> None:
    client = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    r = Router(MODELS, {}, env_file=None, clock=FakeClock(), http_client=client)
    provider = r._providers["p"]
    sent: list[tuple[ProviderRequest, str, float]] = []
    complete = provider.complete

    async def recording(request: ProviderRequest, key: str | None) -> Any:
        sent.append((request, request.model, request.timeout))
        return await complete(request, key)

    provider.complete = recording  # type: ignore[method-assign]
    async with r:
        c = await r.complete("ab", "hi", timeout=7)
    assert c.model == "p/b"
    assert [model for _, model, _ in sent] == ["a", "a", "a", "b"]
    assert len({id(request) for request, _, _ in sent}) == len(sent)
    # What each attempt was sent is still what it says, after the later attempts.
    assert [(request.model, request.timeout) for request, _, _ in sent] == [
        (model, timeout) for _, model, timeout in sent
    ]
    await client.aclose()
