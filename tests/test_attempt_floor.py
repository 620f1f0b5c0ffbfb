"""No attempt starts with less than a floor of time left before the deadline: the call
ends as budget-spent instead, naming the deadline (FakeClock throughout)."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import httpx
import pytest

from llmroute import Router
from llmroute._retry import MIN_ATTEMPT_SECONDS, attempt_floor
from llmroute.errors import RoutingError
from llmroute.testing import FakeClock

CONFIG = {
    "providers": {
        "p": {
            "type": "openai_compatible",
            "base_url": "http://upstream.test/v1",
            "api_key": "sk-floor-SECRET-0001",
            "retries": 2,
        }
    },
    "models": {"p/a": {"provider": "p"}, "p/b": {"provider": "p"}, "p/c": {"provider": "p"}},
    "routes": {"abc": ["p/a", "p/b", "p/c"]},
}

Script = Callable[[httpx.Request], Awaitable[httpx.Response]]


class Upstream:
    """Scripted answers per wire model (then a good answer); records what it received."""

    def __init__(self) -> None:
        self.scripts: dict[str, list[Script]] = {}
        self.models: list[str] = []

    def script(self, model: str, *answers: Script) -> None:
        self.scripts.setdefault(model, []).extend(answers)

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        model = json.loads(request.content)["model"]
        self.models.append(model)
        queue = self.scripts.get(model, [])
        if queue:
            return await queue.pop(0)(request)
        choice = {"message": {"content": f"from {model}"}, "finish_reason": "stop"}
        return httpx.Response(200, json={"choices": [choice]})


def error(status: int, headers: dict[str, str]) -> httpx.Response:
    return httpx.Response(status, headers=headers, json={"error": {"message": "nope"}})


def router(upstream: Upstream, clock: FakeClock) -> Router:
    client = httpx.AsyncClient(transport=httpx.MockTransport(upstream))
    return Router(CONFIG, {}, env_file=None, clock=clock, http_client=client)


@pytest.mark.parametrize(
    ("timeout", "deadline", "floor"),
    [
        (60.0, None, MIN_ATTEMPT_SECONDS),
        (60.0, 5.0, MIN_ATTEMPT_SECONDS),
        (0.2, None, 0.02),  # a tenth of a short attempt timeout
        (60.0, 0.1, 0.01),  # a tenth of a short deadline: its first attempt still starts
    ],
)
def test_the_floor(timeout: float, deadline: float | None, floor: float) -> None:
    assert attempt_floor(timeout, deadline) == pytest.approx(floor)


async def test_a_retry_is_not_started_with_a_few_ms_left(clock: FakeClock) -> None:
    upstream = Upstream()

    async def late_failure(request: httpx.Request) -> httpx.Response:
        clock.advance(4.5)
        # Asks for a retry in 0.49 s: after it, 10 ms of the 5 s deadline would be left.
        return error(503, {"retry-after-ms": "490"})

    upstream.script("a", late_failure, late_failure)
    async with router(upstream, clock) as r:
        with pytest.raises(RoutingError) as info:
            await r.complete("abc", "hi", deadline=5.0)
    assert upstream.models == ["a"]  # the retry was never sent
    assert "deadline (5s)" in str(info.value)
    assert info.value.not_tried == ("p/b", "p/c")
    assert "no answer within" not in str(info.value)


async def test_a_retry_with_enough_time_left_is_sent(clock: FakeClock) -> None:
    upstream = Upstream()

    async def failure(request: httpx.Request) -> httpx.Response:
        clock.advance(4.0)
        return error(503, {"retry-after-ms": "490"})  # 0.51 s left after it

    upstream.script("a", failure)
    async with router(upstream, clock) as r:
        completion = await r.complete("abc", "hi", deadline=5.0)
    assert completion.text == "from a" and upstream.models == ["a", "a"]
