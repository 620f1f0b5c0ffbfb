"""Helpers to unit-test code that uses llmroute, with no network and no real waiting.

```
from llmroute.testing import FakeClock, FakeScript, FakeTransport, RateLimit, Reply

script = FakeScript()
script.script("llama-3.1-8b-instant", RateLimit(retry_after=5), Reply(text="hello"))
clock = FakeClock()
client = httpx.AsyncClient(transport=FakeTransport(script, clock=clock))
async with Router(models=..., http_client=client, clock=clock) as router:
    ...
```
"""

from __future__ import annotations

import asyncio

from llmroute.testing._faults import FAULTS, FaultRequest, FaultServer
from llmroute.testing._script import (
    Behaviour,
    Blocked,
    FakeScript,
    Garbage,
    InvalidKey,
    RateLimit,
    RecordedRequest,
    Reply,
    ServerError,
    Status,
    Stream,
    Timeout,
)
from llmroute.testing._server import FakeProviderServer, serve_in_thread
from llmroute.testing._transport import FakeTransport

__all__ = [
    "FAULTS",
    "Behaviour",
    "Blocked",
    "FakeClock",
    "FakeProviderServer",
    "FakeScript",
    "FakeTransport",
    "FaultRequest",
    "FaultServer",
    "Garbage",
    "InvalidKey",
    "RateLimit",
    "RecordedRequest",
    "Reply",
    "ServerError",
    "Status",
    "Stream",
    "Timeout",
    "serve_in_thread",
]


class FakeClock:
    """A clock that advances instantly when slept on.

    `now()` starts at `start` (monotonic seconds), `time()` at `wall` (Unix seconds) and
    moves with `now()`; `advance(seconds)` moves both by hand.
    """

    def __init__(self, start: float = 0.0, wall: float = 1_700_000_000.0) -> None:
        self._now = start
        self._wall_offset = wall - start
        self.slept: list[float] = []

    def now(self) -> float:
        return self._now

    def time(self) -> float:
        return self._now + self._wall_offset

    async def sleep(self, seconds: float) -> None:
        seconds = max(0.0, seconds)
        self.slept.append(seconds)
        self._now += seconds
        # Let other tasks run, as a real sleep would.
        await asyncio.sleep(0)

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("a clock does not go back")
        self._now += seconds

    def __repr__(self) -> str:
        return f"FakeClock(now={self._now})"
