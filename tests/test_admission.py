"""Admission on its own: first come first served waiting lines, refusals with their wait,
and the only two places a charge changes (commit, cancel). FakeClock, MemoryStore."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest

from llmroute._admission import Admission, Refusal, Reservation
from llmroute.errors import StoreError
from llmroute.stores import Bucket, MemoryStore
from llmroute.testing import FakeClock

RPM60 = Bucket(name="m", rpm=60)


def admission(clock: FakeClock, store: MemoryStore | None = None) -> Admission:
    store = store or MemoryStore()
    return Admission(store, clock, clock.now, clock.now)


def usage(store: MemoryStore, name: str, now: float) -> tuple[int, int, int, int]:
    return store.window(name).usage(now)


async def test_twenty_waiters_are_admitted_in_arrival_order(clock: FakeClock) -> None:
    store = MemoryStore()
    adm = admission(clock, store)
    # Capacity for one a second: the window is full, and one entry leaves it each second.
    for i in range(60):
        assert not isinstance(store.acquire_nowait([RPM60], 1, float(i)), float)
    clock.advance(59.5)
    admitted: list[tuple[int, float]] = []

    async def waiter(i: int) -> None:
        got = await adm.reserve([[RPM60]], 1, queue="m", max_wait=100.0, until=math.inf)
        assert isinstance(got, Reservation)
        admitted.append((i, clock.now()))

    tasks = []
    for i in range(20):
        tasks.append(asyncio.create_task(waiter(i)))
        await asyncio.sleep(0)  # arrival order is creation order
    await asyncio.gather(*tasks)
    assert [i for i, _ in admitted] == list(range(20))
    times = [t for _, t in admitted]
    assert times == sorted(times)
    # Nobody is admitted before there was room for them.
    assert all(t >= 60.0 + i - 1e-9 for i, t in admitted)
    assert times[-1] == pytest.approx(79.0, abs=0.01)


async def test_a_late_arrival_never_overtakes_a_waiter(clock: FakeClock) -> None:
    store = MemoryStore()
    adm = admission(clock, store)
    bucket = Bucket(name="m", rpm=2)
    assert isinstance(adm.try_now([[bucket]], 1, "m"), Reservation)
    assert isinstance(adm.try_now([[bucket]], 1, "m"), Reservation)
    order: list[str] = []

    async def go(name: str) -> None:
        got = await adm.reserve([[bucket]], 1, queue="m", max_wait=120.0, until=math.inf)
        assert isinstance(got, Reservation)
        order.append(name)

    first = asyncio.create_task(go("first"))
    await asyncio.sleep(0)
    # While "first" waits, the fast path declines: someone is in line.
    assert adm.try_now([[bucket]], 1, "m") is None
    late = asyncio.create_task(go("late"))
    await asyncio.gather(first, late)
    assert order == ["first", "late"]


async def test_refusal_when_the_wait_is_over_max_wait_or_past_the_deadline(
    clock: FakeClock,
) -> None:
    adm = admission(clock)
    bucket = Bucket(name="m", rpm=1)
    assert isinstance(adm.try_now([[bucket]], 1, "m"), Reservation)
    got = await adm.reserve([[bucket]], 1, queue="m", max_wait=5.0, until=math.inf)
    assert isinstance(got, Refusal) and got.wait == pytest.approx(60.0)
    got = await adm.reserve([[bucket]], 1, queue="m", max_wait=100.0, until=30.0)
    assert isinstance(got, Refusal)
    never = await adm.reserve(
        [[Bucket(name="t", tpm=10)]], 11, queue="t", max_wait=100.0, until=math.inf
    )
    assert isinstance(never, Refusal) and never.wait == math.inf
    assert clock.now() == 0.0  # refusals never wait


async def test_a_waiter_behind_leaves_when_its_own_limit_passes(clock: FakeClock) -> None:
    adm = admission(clock)
    bucket = Bucket(name="m", rpm=1)
    assert isinstance(adm.try_now([[bucket]], 1, "m"), Reservation)
    head = asyncio.create_task(
        adm.reserve([[bucket]], 1, queue="m", max_wait=100.0, until=math.inf)
    )
    await asyncio.sleep(0)
    # The line's head waits until t=60: a newcomer allowed 30 s is turned away at once.
    quick = await adm.reserve([[bucket]], 1, queue="m", max_wait=30.0, until=math.inf)
    assert isinstance(quick, Refusal)
    assert isinstance(await head, Reservation)


async def test_commit_and_cancel_are_the_only_changes_to_a_charge(clock: FakeClock) -> None:
    store = MemoryStore()
    adm = admission(clock, store)
    bucket = Bucket(name="m", rpm=10, tpm=1000)
    got = adm.try_now([[bucket]], 400, "m")
    assert isinstance(got, Reservation)
    assert usage(store, "m", 0.0)[:2] == (1, 400)
    await got.commit(15)
    assert usage(store, "m", 0.0)[:2] == (1, 15)
    other = adm.try_now([[bucket]], 100, "m")
    assert isinstance(other, Reservation)
    await other.cancel()
    await other.cancel()  # twice is harmless
    assert usage(store, "m", 0.0)[:2] == (1, 15)


async def test_a_charge_given_back_wakes_the_head_at_once() -> None:
    # Real time here: the head sleeps for a minute unless woken.
    from llmroute.clock import SystemClock

    clock = SystemClock()
    adm = Admission(MemoryStore(), clock, clock.now, clock.now)
    bucket = Bucket(name="m", rpm=1)
    held = adm.try_now([[bucket]], 1, "m")
    assert isinstance(held, Reservation)
    waiting = asyncio.create_task(
        adm.reserve([[bucket]], 1, queue="m", max_wait=120.0, until=math.inf)
    )
    await asyncio.sleep(0.01)
    assert not waiting.done()
    await held.cancel()
    got = await asyncio.wait_for(waiting, 2.0)
    assert isinstance(got, Reservation)


async def test_options_pick_the_first_bucket_set_with_room(clock: FakeClock) -> None:
    adm = admission(clock)
    a, b = Bucket(name="k0", rpm=1), Bucket(name="k1", rpm=1)
    first = adm.try_now([[a], [b]], 1, "m")
    second = adm.try_now([[a], [b]], 1, "m")
    assert isinstance(first, Reservation) and first.option == 0
    assert isinstance(second, Reservation) and second.option == 1
    assert adm.try_now([[a], [b]], 1, "m") == pytest.approx(60.0)


async def test_peek_changes_nothing(clock: FakeClock) -> None:
    store = MemoryStore()
    adm = admission(clock, store)
    bucket = Bucket(name="m", rpm=1)
    assert await adm.peek([[bucket]], 1, "m") == 0.0
    assert usage(store, "m", 0.0) == (0, 0, 0, 0)
    assert isinstance(adm.try_now([[bucket]], 1, "m"), Reservation)
    assert await adm.peek([[bucket]], 1, "m") == pytest.approx(60.0)
    assert usage(store, "m", 0.0)[0] == 1


async def test_a_closed_bucket_admits_nothing_until_it_opens(clock: FakeClock) -> None:
    adm = admission(clock)
    bucket = Bucket(name="m", rpm=100)
    await adm.close("m", 30.0)
    got = await adm.reserve([[bucket]], 1, queue="m", max_wait=5.0, until=math.inf)
    assert isinstance(got, Refusal) and got.wait == pytest.approx(30.0)
    got = await adm.reserve([[bucket]], 1, queue="m", max_wait=60.0, until=math.inf)
    assert isinstance(got, Reservation)
    assert clock.now() == pytest.approx(30.0, abs=0.01)


async def test_tightened_limits_apply_to_the_recorded_history(clock: FakeClock) -> None:
    adm = admission(clock)
    loose = Bucket(name="m", rpm=10)
    for _ in range(3):
        assert isinstance(adm.try_now([[loose]], 1, "m"), Reservation)
    adm.tighten(Bucket(name="m", rpm=3))
    got = await adm.reserve([[loose]], 1, queue="m", max_wait=0.0, until=math.inf)
    assert isinstance(got, Refusal) and got.wait == pytest.approx(60.0)


async def test_a_waiter_in_the_middle_of_the_line_leaves_at_its_own_limit(
    clock: FakeClock,
) -> None:
    adm = admission(clock)
    bucket = Bucket(name="m", rpm=1)
    assert isinstance(adm.try_now([[bucket]], 1, "m"), Reservation)
    ended: dict[str, float] = {}

    async def go(name: str, max_wait: float) -> Reservation | Refusal:
        got = await adm.reserve([[bucket]], 1, queue="m", max_wait=max_wait, until=math.inf)
        ended[name] = clock.now()
        return got

    head = asyncio.create_task(go("head", 200.0))
    await asyncio.sleep(0)
    second = asyncio.create_task(go("second", 200.0))
    await asyncio.sleep(0)
    # The head's room comes at t=60, within 70 s, so "third" joins; its own turn (t=180)
    # would come too late, and it leaves at t=70 rather than at its turn.
    third = asyncio.create_task(go("third", 70.0))
    results = await asyncio.gather(head, second, third)
    assert isinstance(results[0], Reservation) and isinstance(results[1], Reservation)
    assert isinstance(results[2], Refusal)
    # Turned away before the head in front of it was served (at t=70 on a virtual clock).
    assert list(ended) == ["head", "third", "second"]
    assert ended["head"] == pytest.approx(60.0, abs=0.01)
    assert ended["second"] == pytest.approx(120.0, abs=0.01)


async def test_the_fast_path_knows_learnt_limits_and_closed_buckets(clock: FakeClock) -> None:
    adm = admission(clock)
    loose = Bucket(name="m", rpm=10)
    for _ in range(2):
        assert isinstance(adm.try_now([[loose]], 1, "m"), Reservation)
    adm.tighten(Bucket(name="m", rpm=2))
    assert adm.try_now([[loose]], 1, "m") == pytest.approx(60.0)
    other = Bucket(name="n", rpm=10)
    await adm.close("n", 30.0)
    assert adm.try_now([[other]], 1, "n") == pytest.approx(30.0)
    clock.advance(30.0)
    assert isinstance(adm.try_now([[other]], 1, "n"), Reservation)


class FlakyStore(MemoryStore):
    """Admits, then cannot be reached for the corrections."""

    commit_nowait = None  # type: ignore[assignment]
    cancel_nowait = None  # type: ignore[assignment]

    async def commit(self, charge: Any, tokens: int) -> None:
        raise StoreError("store gone (test)")

    async def cancel(self, charge: Any) -> None:
        raise StoreError("store gone (test)")


async def test_a_store_lost_after_admission_keeps_the_estimate_and_says_so(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    adm = admission(clock, FlakyStore())
    got = adm.try_now([[Bucket(name="m", rpm=10)]], 100, "m")
    assert isinstance(got, Reservation)
    assert not got.commit_now(15)
    await got.commit(15)  # the served answer is not lost over it
    await got.cancel()
    assert len([r for r in caplog.records if "store gone" in r.getMessage()]) == 2
