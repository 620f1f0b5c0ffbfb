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

from llmroute.testing._clock import FakeClock, ScaledClock
from llmroute.testing._faults import FAULTS, FaultRequest, FaultServer
from llmroute.testing._quota import Quota, QuotaEnforcer
from llmroute.testing._script import (
    Behaviour,
    Blocked,
    FakeScript,
    Garbage,
    InvalidKey,
    Predicate,
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
from llmroute.testing._wires import FakeWire, RequestFacts, fake_wire, register_wire

__all__ = [
    "FAULTS",
    "Behaviour",
    "Blocked",
    "FakeClock",
    "FakeProviderServer",
    "FakeScript",
    "FakeTransport",
    "FakeWire",
    "FaultRequest",
    "FaultServer",
    "Garbage",
    "InvalidKey",
    "Predicate",
    "Quota",
    "QuotaEnforcer",
    "RateLimit",
    "RecordedRequest",
    "Reply",
    "RequestFacts",
    "ScaledClock",
    "ServerError",
    "Status",
    "Stream",
    "Timeout",
    "fake_wire",
    "register_wire",
    "serve_in_thread",
]
