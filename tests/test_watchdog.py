"""The watchdog's wall-clock limits: they fire (late by at most GRAIN), leave other
cancellations alone, and share one loop timer."""

from __future__ import annotations

import asyncio
import time

import pytest

from llmroute._watchdog import GRAIN, Watchdog


async def test_a_limit_ends_a_hanging_await() -> None:
    dog = Watchdog()
    never = asyncio.Event()
    start = time.monotonic()
    limit = dog.arm(0.05)
    with pytest.raises(asyncio.CancelledError):
        try:
            await never.wait()
        finally:
            fired = dog.expired(limit)
            dog.disarm(limit)
    assert fired
    assert 0.05 <= time.monotonic() - start < 0.05 + GRAIN + 0.1
    # The cancellation was the limit's: the task itself is not being cancelled.
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0


async def test_an_outside_cancel_is_not_a_timeout() -> None:
    dog = Watchdog()
    seen: list[bool] = []

    async def victim() -> None:
        limit = dog.arm(10.0)
        try:
            await asyncio.Event().wait()
        finally:
            seen.append(dog.expired(limit))
            dog.disarm(limit)

    task = asyncio.create_task(victim())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == [False]


async def test_finished_work_is_never_cancelled_and_limits_share_one_timer() -> None:
    dog = Watchdog()
    limits = [dog.arm(5.0) for _ in range(100)]
    timer = dog._timer
    for limit in limits:
        dog.disarm(limit)
    assert timer is dog._timer  # one timer for them all, none made per limit
    await asyncio.sleep(0)
    assert not any(limit.fired for limit in limits)
