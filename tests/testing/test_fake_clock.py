"""FakeClock is virtual time: concurrent sleeps overlap, time jumps only when all wait."""

from __future__ import annotations

import asyncio

import pytest

from llmroute.testing import FakeClock


async def test_ten_concurrent_sleeps_of_five_seconds_end_at_five() -> None:
    clock = FakeClock()
    woke: list[float] = []

    async def sleeper() -> None:
        await clock.sleep(5)
        woke.append(clock.now())

    await asyncio.gather(*(sleeper() for _ in range(10)))
    assert woke == [5.0] * 10
    assert clock.now() == 5.0
    assert clock.time() == 1_700_000_005.0


async def test_staggered_sleeps_wake_in_deadline_order() -> None:
    clock = FakeClock(start=100.0)
    order: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        order.append((name, clock.now()))

    await asyncio.gather(sleeper("c", 3), sleeper("a", 1), sleeper("b", 2), sleeper("a2", 1))
    # same deadline: the order they went to sleep in
    assert order == [("a", 101.0), ("a2", 101.0), ("b", 102.0), ("c", 103.0)]


async def test_nested_sleeps_wake_at_their_own_deadlines() -> None:
    clock = FakeClock()
    log: list[tuple[str, float]] = []

    async def inner(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        log.append((name, clock.now()))

    async def outer() -> None:
        await clock.sleep(2)
        log.append(("outer", clock.now()))
        await asyncio.gather(inner("inner-3", 3), inner("inner-1", 1))
        await clock.sleep(0.5)
        log.append(("outer-end", clock.now()))

    await asyncio.gather(outer(), inner("side-4", 4))
    assert log == [
        ("outer", 2.0),
        ("inner-1", 3.0),
        ("side-4", 4.0),
        ("inner-3", 5.0),
        ("outer-end", 5.5),
    ]


async def test_sequential_sleeps_add_up() -> None:
    clock = FakeClock()
    for _ in range(4):
        await clock.sleep(2.5)
    assert clock.now() == 10.0
    assert clock.slept == [2.5] * 4


async def test_time_does_not_jump_while_a_task_can_run() -> None:
    clock = FakeClock()
    seen: list[float] = []

    async def busy() -> None:
        for _ in range(200):
            seen.append(clock.now())
            await asyncio.sleep(0)

    sleeper = asyncio.ensure_future(clock.sleep(60))
    await busy()
    assert set(seen) == {0.0}
    await sleeper
    assert clock.now() == 60.0


async def test_advance_wakes_every_sleeper_whose_deadline_passed() -> None:
    clock = FakeClock()
    woke: list[tuple[int, float]] = []

    async def sleeper(seconds: int) -> None:
        await clock.sleep(seconds)
        woke.append((seconds, clock.now()))

    async def main() -> None:
        tasks = [asyncio.ensure_future(sleeper(s)) for s in (1, 2, 30)]
        await asyncio.sleep(0)
        clock.advance(2.5)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        await asyncio.gather(*tasks)

    await main()
    assert woke[:2] == [(1, 2.5), (2, 2.5)]
    assert woke[2] == (30, 30.0)


def test_advance_refuses_to_go_back() -> None:
    clock = FakeClock()
    with pytest.raises(ValueError):
        clock.advance(-1)
    clock.advance(3)
    assert clock.now() == 3.0


async def test_a_cancelled_sleeper_does_not_hold_time() -> None:
    clock = FakeClock()
    long = asyncio.ensure_future(clock.sleep(1000))
    await asyncio.sleep(0)
    long.cancel()
    await clock.sleep(1)
    assert clock.now() == 1.0
    assert clock.sleeping == 0


async def test_zero_and_negative_sleeps_only_yield() -> None:
    clock = FakeClock()
    await clock.sleep(0)
    await clock.sleep(-3)
    assert clock.now() == 0.0
    assert clock.slept == [0.0, 0.0]


def test_one_loop_after_another() -> None:
    clock = FakeClock()
    asyncio.run(clock.sleep(2))
    asyncio.run(clock.sleep(3))
    assert clock.now() == 5.0


async def test_sleeps_while_a_timeout_waits_on_real_time() -> None:
    # asyncio.wait_for runs on the loop's real clock; virtual time still jumps meanwhile.
    clock = FakeClock()
    await asyncio.wait_for(clock.sleep(3600), timeout=5)
    assert clock.now() == 3600.0
