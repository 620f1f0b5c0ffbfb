"""Key rotation end to end through the Router (issue 3): FakeTransport + FakeClock, no sockets.

Every test builds a `google_ai_studio` provider with a few fake keys and checks what is
visible from outside: which `x-goog-api-key` the fake received, the trace's slot labels,
cooldowns measured on the fake clock, the warnings logged and the persisted `.keyidx`.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from llmroute import Completion, Router
from llmroute.errors import (
    ProviderError,
    ProviderUnavailableError,
    RateLimitedError,
    RoutingError,
)
from llmroute.testing import (
    Behaviour,
    Blocked,
    FakeClock,
    FakeScript,
    FakeTransport,
    InvalidKey,
    RateLimit,
    Reply,
    Status,
)

PROVIDER = "google_ai_studio"
FLASH = "google_ai_studio/gemini-2.5-flash"
LITE = "google_ai_studio/gemini-2.0-flash-lite"
BACKUP = "backup/llama-3.1-8b-instant"
WIRE_FLASH = "gemini-2.5-flash"
WIRE_LITE = "gemini-2.0-flash-lite"
KEYS = (
    "fake-gemini-rotation-key-zero-000000000",
    "fake-gemini-rotation-key-one-1111111111",
    "fake-gemini-rotation-key-two-2222222222",
    "fake-gemini-rotation-key-three-33333333",
    "fake-gemini-rotation-key-four-444444444",
)
BACKUP_KEY = "gsk-FAKE-backup-key-5555555555"
IDX = f"{PROVIDER}.keyidx"


def label(slot: int) -> str:
    return f"{PROVIDER}#{slot}"


def models_config(
    n_keys: int = 3, *, strategy: str = "round_robin", cooldown: float | None = None
) -> dict[str, Any]:
    gemini: dict[str, Any] = {
        "type": "google_ai_studio",
        "base_url": "http://gemini.test/v1beta",
        "api_keys": list(KEYS[:n_keys]),
        "rotation": {"strategy": strategy},
    }
    if cooldown is not None:
        gemini["cooldown_seconds"] = cooldown
    return {
        "providers": {
            PROVIDER: gemini,
            "backup": {
                "type": "openai_compatible",
                "base_url": "http://backup.test/v1",
                "api_key": BACKUP_KEY,
            },
        },
        "models": {
            FLASH: {"provider": PROVIDER, "model": WIRE_FLASH},
            LITE: {"provider": PROVIDER, "model": WIRE_LITE},
            BACKUP: {"provider": "backup", "model": "llama-3.1-8b-instant"},
        },
        "routes": {"chat": [FLASH, BACKUP], "gemini": [FLASH, LITE]},
    }


class Harness:
    """One fake upstream and clock shared by every router a test builds."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.script = FakeScript()
        self.clock = FakeClock()
        self.clients: list[httpx.AsyncClient] = []

    def router(
        self,
        models: dict[str, Any] | None = None,
        limits: dict[str, Any] | None = None,
        *,
        clock: FakeClock | None = None,
        cache_dir: Path | None = None,
    ) -> Router:
        clock = clock or self.clock
        client = httpx.AsyncClient(transport=FakeTransport(self.script, clock=clock))
        self.clients.append(client)
        return Router(
            models or models_config(),
            limits or {},
            env_file=None,
            cache_dir=cache_dir or self.tmp_path,
            http_client=client,
            clock=clock,
        )

    def gemini_slots(self, model: str = WIRE_FLASH) -> list[int]:
        """The slot of every key the fake Gemini received for `model`, in order."""
        return [KEYS.index(r.key or "") for r in self.script.requests if r.model == model]

    def persisted(self) -> str:
        return (self.tmp_path / IDX).read_text()

    def set_index(self, value: str) -> None:
        (self.tmp_path / IDX).write_text(value)


@pytest.fixture
async def h(tmp_path: Path) -> AsyncIterator[Harness]:
    harness = Harness(tmp_path)
    yield harness
    for client in harness.clients:
        await client.aclose()


def rows(c: Completion | Sequence[Any]) -> list[tuple[str, str | None, str]]:
    attempts = c.attempts if isinstance(c, Completion) else c
    return [(a.model, a.key, a.outcome) for a in attempts]


def served_slot(c: Completion) -> int:
    key = c.attempts[-1].key
    assert key is not None and key.startswith(f"{PROVIDER}#")
    return int(key.rsplit("#", 1)[1])


def warning_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


# -- rotation order ---------------------------------------------------------------------------


async def test_round_robin_starts_at_persisted_index_and_advances_one_per_request(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    h.set_index("2")
    async with h.router(models_config(4)) as router:
        served = [await router.complete(FLASH, f"question {i}") for i in range(6)]
        status = await router.key_status()
    assert [served_slot(c) for c in served] == [2, 3, 0, 1, 2, 3]
    # The trace's label and the header the fake received name the same slot.
    assert h.gemini_slots() == [2, 3, 0, 1, 2, 3]
    assert all(len(c.attempts) == 1 and c.attempts[0].outcome == "ok" for c in served)
    assert all(c.attempts[0].status == 200 and c.provider == PROVIDER for c in served)
    assert status[PROVIDER]["index"] == 0
    assert status[PROVIDER]["labels"] == [label(i) for i in range(4)]
    # aclose flushed the next index to use; a valid file is read without a warning.
    assert h.persisted() == "0"
    assert warning_records(caplog) == []


async def test_round_robin_is_one_index_per_provider_across_models(h: Harness) -> None:
    async with h.router() as router:
        a = await router.complete(FLASH, "hi")
        b = await router.complete(LITE, "hi")
        c = await router.complete(FLASH, "hi")
    assert [served_slot(x) for x in (a, b, c)] == [0, 1, 2]
    assert h.persisted() == "0"


async def test_failover_stays_on_a_key_until_it_fails(h: Harness) -> None:
    h.set_index("0")
    h.script.script(WIRE_FLASH, Reply(), Reply(), Reply(), RateLimit(retry_delay=30), key=KEYS[0])
    h.script.script(WIRE_FLASH, Reply(), Reply(), Reply(), InvalidKey(), key=KEYS[1])
    async with h.router(models_config(3, strategy="failover")) as router:
        first = [await router.complete(FLASH, "hi") for _ in range(3)]
        moved = await router.complete(FLASH, "hi")
        stayed = [await router.complete(FLASH, "hi") for _ in range(2)]
        refused = await router.complete(FLASH, "hi")
        # key 0's cooldown is long over: failover still stays where it is.
        h.clock.advance(60)
        after = [await router.complete(FLASH, "hi") for _ in range(2)]
    assert [served_slot(c) for c in first] == [0, 0, 0]
    assert rows(moved) == [
        (FLASH, label(0), "rate_limited_remote"),
        (FLASH, label(1), "ok"),
    ]
    assert [served_slot(c) for c in stayed] == [1, 1]
    assert rows(refused) == [(FLASH, label(1), "client_error"), (FLASH, label(2), "ok")]
    assert [served_slot(c) for c in after] == [2, 2]
    assert h.gemini_slots() == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2]
    # failover persists the key in use, not the one after it
    assert h.persisted() == "2"


# -- cooldowns ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("behaviour", "cooldown"),
    [
        pytest.param(RateLimit(retry_delay=37), 37.0, id="RetryInfo.retryDelay"),
        pytest.param(RateLimit(retry_delay=0.5), 0.5, id="fractional-retryDelay"),
        pytest.param(RateLimit(retry_delay=5, retry_after=30), 5.0, id="retryDelay-beats-header"),
        pytest.param(RateLimit(retry_after=12), 12.0, id="Retry-After-only"),
        pytest.param(RateLimit(), 45.0, id="no-hint-cooldown_seconds"),
    ],
)
async def test_429_cools_that_key_for_the_hint_and_moves_on_at_once(
    h: Harness, behaviour: RateLimit, cooldown: float
) -> None:
    h.set_index("0")
    h.script.script(WIRE_FLASH, behaviour, key=KEYS[0])
    async with h.router(models_config(3, cooldown=45)) as router:
        first = await router.complete(FLASH, "hi")
        # One Completion, two attempt rows: the same request moved at once to key 1.
        assert rows(first) == [
            (FLASH, label(0), "rate_limited_remote"),
            (FLASH, label(1), "ok"),
        ]
        assert first.attempts[0].status == 429
        assert (
            first.attempts[0].error is not None and "RESOURCE_EXHAUSTED" in first.attempts[0].error
        )
        assert h.clock.now() == 0.0  # no waiting before the next key
        status = await router.key_status()
        assert status[PROVIDER]["cooling"] == {f"{FLASH} {label(0)}": pytest.approx(cooldown)}
        # Just before the cooldown ends key 0 is still passed over...
        h.clock.advance(cooldown - 0.1)
        before = [await router.complete(FLASH, "hi") for _ in range(3)]
        assert [served_slot(c) for c in before] == [2, 1, 2]
        assert all(len(c.attempts) == 1 for c in before)
        # ... and once it has ended, key 0 is used again in its turn.
        h.clock.advance(0.1)
        again = await router.complete(FLASH, "hi")
    assert rows(again) == [(FLASH, label(0), "ok")]
    assert h.gemini_slots() == [0, 1, 2, 1, 2, 0]


async def test_cooldown_is_per_model_and_key_slot(h: Harness) -> None:
    h.set_index("0")
    h.script.script(WIRE_FLASH, RateLimit(retry_delay=30), key=KEYS[0])
    async with h.router() as router:
        await router.complete(FLASH, "hi")  # key 0 429, served by key 1
        lite = await router.complete(LITE, "hi")  # index 2
        lite0 = await router.complete(LITE, "hi")  # index 0: key 0 is free for another model
        flash = await router.complete(FLASH, "hi")  # index 1
        flash_skip = await router.complete(FLASH, "hi")  # index 2
        flash_again = await router.complete(FLASH, "hi")  # index 0: cooling for FLASH -> key 1
    assert [served_slot(c) for c in (lite, lite0)] == [2, 0]
    assert [served_slot(c) for c in (flash, flash_skip, flash_again)] == [1, 2, 1]


PACIFIC_CASES = [
    # wall clock (Unix)  next midnight in Los Angeles          (local time of the 429)
    pytest.param(1_700_000_000.0, 1_700_035_200.0, id="PST-14:13"),
    pytest.param(1_720_000_000.0, 1_720_076_400.0, id="PDT-02:46"),
    pytest.param(1_710_054_000.0, 1_710_057_600.0, id="23:00-before-DST-starts"),
]


@pytest.mark.parametrize("retry_delay", [None, 37.0], ids=["no-RetryInfo", "RetryInfo-37s"])
@pytest.mark.parametrize(("wall", "reset"), PACIFIC_CASES)
async def test_per_day_quota_cools_the_key_until_midnight_pacific(
    tmp_path: Path, wall: float, reset: float, retry_delay: float | None
) -> None:
    h = Harness(tmp_path)
    h.clock = FakeClock(start=100.0, wall=wall)
    h.set_index("0")
    h.script.script(WIRE_FLASH, RateLimit(per_day=True, retry_delay=retry_delay), key=KEYS[0])
    try:
        async with h.router() as router:
            first = await router.complete(FLASH, "hi")
            assert rows(first) == [
                (FLASH, label(0), "rate_limited_remote"),
                (FLASH, label(1), "ok"),
            ]
            assert first.attempts[0].error is not None and "PerDay" in first.attempts[0].error
            left = reset - h.clock.time()
            status = await router.key_status()
            assert status[PROVIDER]["cooling"] == {f"{FLASH} {label(0)}": pytest.approx(left)}
            # Still out 0.1 s before the reset: every turn of key 0 goes to key 1 instead.
            h.clock.advance(left - 0.1)
            assert reset - h.clock.time() == pytest.approx(0.1)
            before = [await router.complete(FLASH, "hi") for _ in range(3)]
            assert [served_slot(c) for c in before] == [2, 1, 2]
            # The same key serves another model meanwhile (quotas are per model).
            other = await router.complete(LITE, "hi")
            assert served_slot(other) == 0
            h.clock.advance(0.1)
            await router.complete(FLASH, "hi")  # index 1
            await router.complete(FLASH, "hi")  # index 2
            back = await router.complete(FLASH, "hi")
        assert rows(back) == [(FLASH, label(0), "ok")]
    finally:
        for client in h.clients:
            await client.aclose()


async def test_per_day_quota_just_before_midnight_still_cools_cooldown_seconds(
    tmp_path: Path,
) -> None:
    # 30 s before midnight in Los Angeles: retrying at midnight sharp would race Google's
    # own clock (a second 429 then costs a whole day), so the cooldown is at least
    # cooldown_seconds (or the provider's hint when it gives one).
    h = Harness(tmp_path)
    h.clock = FakeClock(wall=1_710_057_600.0 - 30)
    h.set_index("0")
    h.script.script(WIRE_FLASH, RateLimit(per_day=True), key=KEYS[0])
    try:
        async with h.router(models_config(3, cooldown=45)) as router:
            await router.complete(FLASH, "hi")
            status = await router.key_status()
        assert status[PROVIDER]["cooling"] == {f"{FLASH} {label(0)}": 45.0}
    finally:
        for client in h.clients:
            await client.aclose()


# -- invalid keys ---------------------------------------------------------------------------------


def _refusal_403() -> Status:
    # A 403 whose message even echoes the key: it must be scrubbed before anyone sees it.
    return Status(
        status=403,
        body={
            "error": {
                "code": 403,
                "message": f"Permission denied for API key {KEYS[1]}.",
                "status": "PERMISSION_DENIED",
            }
        },
    )


@pytest.mark.parametrize(
    ("behaviour", "status"),
    [
        pytest.param(InvalidKey(), 400, id="400-API_KEY_INVALID"),
        pytest.param(_refusal_403(), 403, id="403"),
    ],
)
async def test_invalid_key_is_disabled_for_the_routers_life_with_one_warning(
    h: Harness, caplog: pytest.LogCaptureFixture, behaviour: Behaviour, status: int
) -> None:
    h.set_index("0")
    # Scripted many times over: the key must be sent exactly once all the same.
    h.script.script(WIRE_FLASH, *([behaviour] * 5), key=KEYS[1])
    h.script.script(WIRE_LITE, *([behaviour] * 5), key=KEYS[1])
    caplog.set_level(logging.DEBUG)
    async with h.router() as router:
        first = await router.complete(FLASH, "hi")
        refused = await router.complete(FLASH, "hi")
        rest = [await router.complete(FLASH, "hi") for _ in range(4)]
        # Disabled for the provider: another model never sends that key either.
        lite = [await router.complete(LITE, "hi") for _ in range(3)]
        key_status = await router.key_status()
    assert served_slot(first) == 0
    assert rows(refused) == [(FLASH, label(1), "client_error"), (FLASH, label(2), "ok")]
    assert refused.attempts[0].status == status
    assert [served_slot(c) for c in rest] == [0, 2, 0, 2]
    assert [served_slot(c) for c in lite] == [0, 2, 0]
    assert [r.key for r in h.script.requests].count(KEYS[1]) == 1
    assert key_status[PROVIDER]["disabled"] == [label(1)]
    [warning] = warning_records(caplog)
    assert label(1) in warning.getMessage()
    assert "2 of 3 keys left" in warning.getMessage()
    for key in KEYS:
        assert key not in caplog.text
        assert key not in repr(refused)


async def test_concurrent_requests_meeting_one_invalid_key_warn_once(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    h.set_index("0")
    h.script.set_default(WIRE_FLASH, InvalidKey(), key=KEYS[1])
    h.script.set_default(WIRE_FLASH, Reply(latency=0.01))
    async with h.router() as router:
        served = await asyncio.gather(*(router.complete(FLASH, "hi") for _ in range(30)))
    assert all(c.attempts[-1].outcome == "ok" for c in served)
    # Requests already in flight on key 1 all came back refused; one warning in total.
    assert [r.getMessage() for r in warning_records(caplog)] == [
        f"{label(1)} disabled for this router's life: HTTP 400: key refused (2 of 3 keys left)"
    ]
    refused = [c for c in served if c.attempts[0].outcome == "client_error"]
    assert len(refused) == h.gemini_slots().count(1) >= 1


async def test_every_key_disabled_makes_the_provider_unavailable(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    h.set_index("1")
    h.script.set_default(WIRE_FLASH, InvalidKey())
    async with h.router() as router:
        # The request that finds every key refused reports the provider's own answer.
        with pytest.raises(ProviderError) as refused:
            await router.complete(FLASH, "hi")
        assert rows(refused.value.attempts) == [
            (FLASH, label(1), "client_error"),
            (FLASH, label(2), "client_error"),
            (FLASH, label(0), "client_error"),
        ]
        assert refused.value.status == 400
        # From then on the provider is unavailable: nothing more is sent.
        with pytest.raises(ProviderUnavailableError, match="refused") as direct:
            await router.complete(FLASH, "hi")
        assert rows(direct.value.attempts) == [(FLASH, None, "skipped_unavailable")]
        with pytest.raises(ProviderUnavailableError):
            await router.complete(LITE, "hi")
        chained = await router.complete("chat", "hi")
        assert rows(chained) == [(FLASH, None, "skipped_unavailable"), (BACKUP, "backup#0", "ok")]
        with pytest.raises(RoutingError) as both:
            await router.complete("gemini", "hi")
        assert [a.outcome for a in both.value.attempts] == ["skipped_unavailable"] * 2
        assert FLASH in router.unavailable()
    assert len(h.gemini_slots()) == 3
    assert len([r for r in warning_records(caplog) if "disabled" in r.getMessage()]) == 3


# -- every key cooling --------------------------------------------------------------------------


async def test_all_keys_cooling_is_keys_exhausted_then_fallback_and_retry_after(
    h: Harness,
) -> None:
    h.set_index("0")
    for slot, delay in enumerate((30, 10, 20)):
        h.script.script(WIRE_FLASH, RateLimit(retry_delay=delay), key=KEYS[slot])
    # `on_limit: sleep` would wait for the first key instead (test_router's cooldown tests).
    async with h.router(limits={"strategy": {"on_limit": "fallback"}}) as router:
        first = await router.complete("chat", "hi")
        assert rows(first) == [
            (FLASH, label(0), "rate_limited_remote"),
            (FLASH, label(1), "rate_limited_remote"),
            (FLASH, label(2), "rate_limited_remote"),
            (FLASH, None, "keys_exhausted"),
            (BACKUP, "backup#0", "ok"),
        ]
        assert first.model == BACKUP
        # While every key cools, nothing is sent to Gemini: keys_exhausted, then the backup.
        h.clock.advance(4)
        second = await router.complete("chat", "hi")
        assert rows(second) == [(FLASH, None, "keys_exhausted"), (BACKUP, "backup#0", "ok")]
        # A one-candidate request says when the first key frees up (key 1, 10 s after).
        with pytest.raises(RateLimitedError) as info:
            await router.complete(FLASH, "hi")
        assert info.value.retry_after == pytest.approx(6.0)
        assert rows(info.value.attempts) == [(FLASH, None, "keys_exhausted")]
        h.clock.advance(6)
        third = await router.complete(FLASH, "hi")
    assert rows(third) == [(FLASH, label(1), "ok")]
    assert h.gemini_slots() == [0, 1, 2, 1]


async def test_one_candidate_request_whose_every_key_answers_429(h: Harness) -> None:
    h.set_index("0")
    h.script.set_default(WIRE_FLASH, RateLimit(retry_delay=25))
    h.script.script(WIRE_FLASH, RateLimit(retry_delay=8), key=KEYS[2])
    async with h.router(limits={"strategy": {"on_limit": "fallback"}}) as router:
        with pytest.raises(RateLimitedError) as info:
            await router.complete(FLASH, "hi")
    assert info.value.retry_after == pytest.approx(8.0)
    assert [a.outcome for a in info.value.attempts] == ["rate_limited_remote"] * 3 + [
        "keys_exhausted"
    ]
    assert h.gemini_slots() == [0, 1, 2]


# -- what is not retried on another key ------------------------------------------------------


async def test_blocked_prompt_is_not_retried_on_other_keys(h: Harness) -> None:
    h.set_index("0")
    h.script.set_default(WIRE_FLASH, Blocked())
    async with h.router() as router:
        with pytest.raises(ProviderError, match="content filter") as info:
            await router.complete(FLASH, "something the filter refuses")
        assert rows(info.value.attempts) == [(FLASH, label(0), "client_error")]
        # Nothing was disabled or cooled: the key was fine, the prompt was not.
        status = await router.key_status()
    assert status[PROVIDER]["disabled"] == [] and status[PROVIDER]["cooling"] == {}
    assert h.gemini_slots() == [0]


# -- secrets --------------------------------------------------------------------------------------


async def test_keys_never_leak_into_urls_logs_errors_or_traces(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    h.set_index("0")
    h.script.script(WIRE_FLASH, RateLimit(retry_delay=5), key=KEYS[0])
    h.script.script(WIRE_FLASH, _refusal_403(), key=KEYS[1])
    h.script.script(
        WIRE_FLASH,
        Status(
            status=400,
            body={"error": {"code": 400, "message": f"bad request from {KEYS[2]}"}},
        ),
        key=KEYS[2],
    )
    texts: list[str] = []
    async with h.router(models_config(3)) as router:
        with pytest.raises(ProviderError) as info:
            await router.complete(FLASH, "hi")
        texts += [str(info.value), repr(info.value), repr(info.value.attempts)]
        c = await router.complete("chat", "hi")
        texts += [repr(c), str(c.raw), repr(router), str(await router.key_status())]
        texts += [str(router.usage()), str(router.unavailable())]
    assert rows(info.value.attempts) == [
        (FLASH, label(0), "rate_limited_remote"),
        (FLASH, label(1), "client_error"),
        (FLASH, label(2), "client_error"),
    ]
    errors = [a.error or "" for a in info.value.attempts]
    assert "***" in errors[1] and "***" in errors[2]
    texts += [caplog.text, *(r.getMessage() for r in caplog.records)]
    texts += [h.persisted(), *(p.name for p in h.tmp_path.iterdir())]
    for request in h.script.requests:
        texts += [request.path, request.query]
        if request.wire == "gemini":
            assert request.headers["x-goog-api-key"] == request.key
            assert "authorization" not in request.headers
    joined = "\n".join(texts)
    for key in (*KEYS, BACKUP_KEY):
        assert key not in joined
    assert "rotation-key" not in joined


# -- persistence ----------------------------------------------------------------------------------


async def test_persisted_index_survives_a_new_router(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    async with h.router() as first:
        served = [await first.complete(FLASH, "hi") for _ in range(4)]
    assert [served_slot(c) for c in served] == [0, 1, 2, 0]
    assert h.persisted() == "1"
    # The fresh cache dir had no file: an expected state, so no warning.
    assert warning_records(caplog) == []
    caplog.clear()
    async with h.router() as second:
        assert (await second.key_status())[PROVIDER]["index"] == 1
        nxt = [await second.complete(FLASH, "hi") for _ in range(2)]
    assert [served_slot(c) for c in nxt] == [1, 2]
    assert h.persisted() == "0"
    async with h.router() as third:
        assert served_slot(await third.complete(FLASH, "hi")) == 0
    assert h.persisted() == "1"
    assert warning_records(caplog) == []


async def test_index_is_written_behind_without_waiting_for_aclose(h: Harness) -> None:
    router = h.router()
    try:
        await router.complete(FLASH, "hi")
        await router.complete(FLASH, "hi")
        for _ in range(200):
            if (h.tmp_path / IDX).exists() and h.persisted() == "2":
                break
            await asyncio.sleep(0.005)
        assert h.persisted() == "2"
    finally:
        await router.aclose()


@pytest.mark.parametrize(
    "contents",
    ["", "   \n", "garbage", "3", "7", "-1", "1.5", "0x1", "9" * 200, "\x00\xff"],
    ids=["empty", "blank", "garbage", "n_keys", "too-big", "negative", "float", "hex",
         "huge", "binary"],
)  # fmt: skip
async def test_corrupt_or_out_of_range_index_starts_at_zero_with_one_warning(
    h: Harness, caplog: pytest.LogCaptureFixture, contents: str
) -> None:
    (h.tmp_path / IDX).write_bytes(contents.encode("latin-1"))
    async with h.router() as router:
        served = [await router.complete(FLASH, "hi") for _ in range(4)]
    assert [served_slot(c) for c in served] == [0, 1, 2, 0]
    [warning] = warning_records(caplog)
    assert IDX in warning.getMessage() and "starting at key 0" in warning.getMessage()
    # ... and the next write repaired the file.
    assert h.persisted() == "1"


async def test_unwritable_cache_dir_keeps_rotating_in_memory(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = h.tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache dir should be")
    async with h.router(cache_dir=blocker) as router:
        served = [await router.complete(FLASH, "hi") for _ in range(7)]
    assert [served_slot(c) for c in served] == [0, 1, 2, 0, 1, 2, 0]
    # One warning for the unreadable index at start, one when writing first failed; not
    # one per request.
    messages = [r.getMessage() for r in warning_records(caplog)]
    assert len(messages) == 2, messages
    assert "starting at key 0" in messages[0] and "memory only" in messages[1]


# -- per-key limits -------------------------------------------------------------------------------


def per_key_limits(rpm: int, **more: Any) -> dict[str, Any]:
    return {"models": {FLASH: {"rpm": rpm, "per_key": True, **more}}}


async def test_per_key_limits_serve_keys_times_rpm_without_a_remote_429(h: Harness) -> None:
    n_keys, rpm = 3, 4
    h.set_index("0")
    async with h.router(models_config(n_keys), per_key_limits(rpm)) as router:
        burst = await asyncio.gather(*(router.complete(FLASH, "hi") for _ in range(n_keys * rpm)))
        assert h.clock.now() == 0.0  # nobody waited
        # Each key got exactly its own rpm: a provider quota of rpm per key never fires.
        assert Counter(h.gemini_slots()) == dict.fromkeys(range(n_keys), rpm)
        assert all(rows(c) == [(FLASH, c.attempts[0].key, "ok")] for c in burst)
        assert all(c.attempts[0].waited_s == 0.0 for c in burst)
        # The next one finds no key with room: waiting 60 s is over max_wait_seconds.
        with pytest.raises(RateLimitedError) as info:
            await router.complete(FLASH, "hi")
        assert rows(info.value.attempts) == [(FLASH, None, "rate_limited_local")]
        assert info.value.retry_after == pytest.approx(60.0)
        # ... and with fallback, the next candidate serves it.
        chained = await router.complete("chat", "hi")
        assert rows(chained) == [(FLASH, None, "rate_limited_local"), (BACKUP, "backup#0", "ok")]
        # A minute later every key has room again.
        h.clock.advance(60)
        later = await router.complete(FLASH, "hi")
        assert later.attempts[0].outcome == "ok"
    assert len(h.gemini_slots()) == n_keys * rpm + 1


async def test_per_key_limits_wait_for_the_first_key_with_room(h: Harness) -> None:
    h.set_index("0")
    limits = per_key_limits(2, max_wait_seconds=90)
    async with h.router(models_config(3), limits) as router:
        for _ in range(6):
            await router.complete(FLASH, "hi")
            h.clock.advance(1)  # key 0 got the first request, at t=0
        c = await router.complete(FLASH, "hi")
    assert rows(c) == [(FLASH, label(0), "ok")]
    # Key 0 frees first: its oldest request (t=0) leaves the window at t=60.
    assert c.attempts[0].waited_s == pytest.approx(60.0 - 6.0)
    assert Counter(h.gemini_slots()) == {0: 3, 1: 2, 2: 2}


async def test_per_key_limits_rotation_picks_a_key_with_room(h: Harness) -> None:
    h.set_index("0")
    # Key 0's first answer reports 900 tokens: its 1000-token minute is almost spent.
    h.script.script(WIRE_FLASH, Reply(prompt_tokens=10, completion_tokens=890), key=KEYS[0])
    limits = {"models": {FLASH: {"tpm": 1000, "per_key": True, "on_limit": "fallback"}}}
    async with h.router(models_config(3), limits) as router:
        first = [await router.complete(FLASH, "hi", max_tokens=100) for _ in range(3)]
        # Key 0's turn: it has no room for ~100 tokens more, so key 1 serves instead.
        skipped = await router.complete(FLASH, "hi", max_tokens=100)
        nxt = await router.complete(FLASH, "hi", max_tokens=100)
    assert [served_slot(c) for c in first] == [0, 1, 2]
    assert rows(skipped) == [(FLASH, label(1), "ok")]
    assert skipped.attempts[0].waited_s == 0.0
    assert served_slot(nxt) == 2


async def test_failover_with_per_key_limits_fills_one_key_then_the_next(h: Harness) -> None:
    h.set_index("0")
    async with h.router(models_config(3, strategy="failover"), per_key_limits(2)) as router:
        served = [await router.complete(FLASH, "hi") for _ in range(6)]
    assert [served_slot(c) for c in served] == [0, 0, 1, 1, 2, 2]
    assert h.persisted() == "2"


# -- concurrency ----------------------------------------------------------------------------------


async def test_200_concurrent_requests_over_5_keys_spread_evenly(h: Harness) -> None:
    h.set_index("3")
    h.script.set_default(WIRE_FLASH, Reply(text="ok", latency=0.01))
    router = h.router(models_config(5))
    try:
        served = await asyncio.gather(*(router.complete(FLASH, f"q{i}") for i in range(200)))
    finally:
        await router.aclose()
    assert Counter(served_slot(c) for c in served) == dict.fromkeys(range(5), 40)
    assert Counter(h.gemini_slots()) == dict.fromkeys(range(5), 40)
    assert all(len(c.attempts) == 1 for c in served)
    # Trace labels and received headers agree request by request (texts are unique).
    by_prompt = {
        r.body["contents"][0]["parts"][0]["text"]: KEYS.index(r.key or "")  # type: ignore[index]
        for r in h.script.requests
    }
    assert {f"q{i}": served_slot(c) for i, c in enumerate(served)} == by_prompt
    text = h.persisted()
    assert text == "3"  # 200 requests over 5 keys: back where it started
    assert 0 <= int(text) < 5
    assert {p.name for p in h.tmp_path.iterdir()} <= {IDX, f"{IDX}.lock"}  # no temp files


async def test_concurrent_requests_never_send_a_cooling_or_disabled_key(h: Harness) -> None:
    h.set_index("0")
    h.script.script(WIRE_FLASH, RateLimit(retry_delay=30), key=KEYS[0])
    h.script.script(WIRE_FLASH, InvalidKey(), key=KEYS[1])
    h.script.set_default(WIRE_FLASH, Reply(latency=0.01))
    router = h.router(models_config(5))
    try:
        first = await router.complete(FLASH, "hi")
        assert [a.outcome for a in first.attempts] == ["rate_limited_remote", "client_error", "ok"]
        served = await asyncio.gather(*(router.complete(FLASH, "hi") for _ in range(99)))
    finally:
        await router.aclose()
    assert h.clock.now() < 30  # the burst ran inside key 0's cooldown
    assert all(rows(c) == [(FLASH, c.attempts[0].key, "ok")] for c in served)
    # Three keys left: the burst spreads over them (33 each) and never touches 0 or 1.
    assert Counter(served_slot(c) for c in served) == {2: 33, 3: 33, 4: 33}
    assert h.gemini_slots().count(0) == 1 and h.gemini_slots().count(1) == 1
    assert 0 <= int(h.persisted()) < 5


@pytest.mark.parametrize("contents", [None, "garbage"], ids=["missing", "corrupt"])
async def test_failover_repairs_a_missing_or_corrupt_index_so_it_warns_once(
    h: Harness, caplog: pytest.LogCaptureFixture, contents: str | None
) -> None:
    if contents is not None:
        h.set_index(contents)
    # failover on a healthy key 0 never moves the index, yet the file must be made valid.
    async with h.router(models_config(3, strategy="failover")) as router:
        served = [await router.complete(FLASH, "hi") for _ in range(3)]
    assert [served_slot(c) for c in served] == [0, 0, 0]
    # a missing file is a fresh cache (silent); a corrupt one warns
    assert len(warning_records(caplog)) == (0 if contents is None else 1)
    assert h.persisted() == "0"
    caplog.clear()
    async with h.router(models_config(3, strategy="failover")) as router:
        await router.complete(FLASH, "hi")
    assert warning_records(caplog) == []


# -- the guide's example -------------------------------------------------------------------------

GUIDE = Path(__file__).resolve().parents[1] / "config" / "READ_ME_KEY_ROTATION.md"


def guide_block(name: str) -> dict[str, Any]:
    match = re.search(rf"`config/{name}`:\n\n```yaml\n(.*?)```", GUIDE.read_text(), re.S)
    assert match is not None, name
    loaded = yaml.safe_load(match.group(1))
    assert isinstance(loaded, dict)
    return loaded


async def test_the_guides_example_config_loads_and_rotates(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in (1, 2, 3):
        monkeypatch.setenv(f"GOOGLE_AI_STUDIO_KEY_{i}", KEYS[i - 1])
    monkeypatch.setenv("GROQ_API_KEY", BACKUP_KEY)
    h.set_index("0")
    limits = guide_block("limits.yaml")
    async with h.router(guide_block("models.yaml"), limits) as router:
        served = [await router.complete("chat", "hi") for _ in range(31)]
    # per_key rpm 10 over three keys: 30 served by Gemini, the 31st falls back to Groq.
    assert Counter(h.gemini_slots()) == {0: 10, 1: 10, 2: 10}
    assert rows(served[-1]) == [
        (FLASH, None, "rate_limited_local"),
        ("groq/llama-3.1-8b-instant", "groq#0", "ok"),
    ]
    assert h.persisted() == "0"


async def test_an_unset_key_variable_drops_its_slot(
    h: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GOOGLE_AI_STUDIO_KEY_1", KEYS[0])
    monkeypatch.setenv("GOOGLE_AI_STUDIO_KEY_3", KEYS[2])
    h.set_index("1")
    async with h.router(guide_block("models.yaml")) as router:
        status = (await router.key_status())[PROVIDER]
        c = await router.complete(FLASH, "hi")
    # KEY_3 is slot #1 once KEY_2's empty entry is dropped.
    assert status["labels"] == [label(0), label(1)]
    assert rows(c) == [(FLASH, label(1), "ok")]
    assert [r.key for r in h.script.requests] == [KEYS[2]]
