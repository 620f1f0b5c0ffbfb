"""The StateStore contract, checked the same way over every backend (see conftest.py)."""

from __future__ import annotations

import asyncio
import math

import pytest
from store_backends import Backend

from llmroute.stores import Bucket, Charge, StateStore

MINUTE = 60.0
DAY = 86_400.0


async def admit(store: StateStore, buckets: list[Bucket], tokens: int, now: float) -> Charge:
    got = await store.acquire(buckets, tokens, now)
    assert isinstance(got, Charge), f"expected admission at {now}, got a wait of {got}"
    return got


async def refused(store: StateStore, buckets: list[Bucket], tokens: int, now: float) -> float:
    got = await store.acquire(buckets, tokens, now)
    assert isinstance(got, float), f"expected a refusal at {now}"
    assert got > 0.0
    return got


# -- windows -----------------------------------------------------------------------------------


async def test_rpm_window_is_sixty_seconds_exclusive(store: StateStore, backend: Backend) -> None:
    t0, b = backend.t0, [Bucket("m", rpm=2)]
    await admit(store, b, 1, t0)
    await admit(store, b, 1, t0 + 10)
    assert await refused(store, b, 1, t0 + 59.5) == pytest.approx(0.5, abs=1e-3)
    # Admitted at t0, it counts until t0 + 60, exclusive.
    await admit(store, b, 1, t0 + MINUTE)
    assert await refused(store, b, 1, t0 + MINUTE) == pytest.approx(10.0, abs=1e-3)


async def test_tpm_waits_until_enough_tokens_expire(store: StateStore, backend: Backend) -> None:
    t0, b = backend.t0, [Bucket("m", tpm=100)]
    await admit(store, b, 40, t0)
    await admit(store, b, 40, t0 + 5)
    await admit(store, b, 20, t0 + 6)
    # 50 more tokens need the first two charges (80 tokens) gone: at t0 + 65.
    assert await refused(store, b, 50, t0 + 7) == pytest.approx(58.0, abs=1e-3)
    await refused(store, b, 50, t0 + 64.9)
    await admit(store, b, 50, t0 + 65)


async def test_rpd_window_is_a_day_exclusive(store: StateStore, backend: Backend) -> None:
    t0, b = backend.t0, [Bucket("m", rpd=2)]
    await admit(store, b, 1, t0)
    await admit(store, b, 1, t0 + 3_600)
    assert await refused(store, b, 1, t0 + 4_000) == pytest.approx(DAY - 4_000, abs=1e-3)
    await refused(store, b, 1, t0 + DAY - 1)
    await admit(store, b, 1, t0 + DAY)
    await refused(store, b, 1, t0 + DAY)


async def test_tpd_counts_tokens_over_a_day(store: StateStore, backend: Backend) -> None:
    t0, b = backend.t0, [Bucket("m", tpd=1_000)]
    await admit(store, b, 600, t0)
    await admit(store, b, 300, t0 + 100)
    assert await refused(store, b, 200, t0 + 200) == pytest.approx(DAY - 200, abs=1e-3)
    await admit(store, b, 100, t0 + 200)
    await admit(store, b, 200, t0 + DAY)


async def test_all_four_limits_together(store: StateStore, backend: Backend) -> None:
    t0, b = backend.t0, [Bucket("m", rpm=3, tpm=100, rpd=4, tpd=150)]
    await admit(store, b, 50, t0)
    await admit(store, b, 50, t0 + 1)
    # tpm: 100 already charged.
    assert await refused(store, b, 10, t0 + 2) == pytest.approx(58.0, abs=1e-3)
    await admit(store, b, 40, t0 + MINUTE)
    # tpd: 140 of 150 charged today; the first 50 free at t0 + DAY.
    assert await refused(store, b, 20, t0 + MINUTE + 2) == pytest.approx(DAY - 62, abs=1e-3)
    await admit(store, b, 10, t0 + MINUTE + 2)
    # rpd: 4 of 4.
    assert await refused(store, b, 0, t0 + 200) == pytest.approx(DAY - 200, abs=1e-3)


async def test_what_can_never_fit_waits_forever(store: StateStore, backend: Backend) -> None:
    t0 = backend.t0
    assert await store.acquire([Bucket("a", tpm=100)], 101, t0) == math.inf
    assert await store.acquire([Bucket("b", tpd=100)], 101, t0) == math.inf
    assert await store.acquire([Bucket("c", rpm=0)], 1, t0) == math.inf
    assert await store.acquire([Bucket("d", rpd=0)], 1, t0) == math.inf
    # One bucket that can never fit makes the whole request never fit.
    assert await store.acquire([Bucket("e", rpm=5), Bucket("a", tpm=100)], 101, t0) == math.inf


async def test_no_limits_always_admits(store: StateStore, backend: Backend) -> None:
    for i in range(20):
        await admit(store, [Bucket("free")], 1_000_000, backend.t0 + i * 0.01)


async def test_a_tightened_limit_applies_to_the_recorded_history(
    store: StateStore, backend: Backend
) -> None:
    t0 = backend.t0
    for i in range(3):
        await admit(store, [Bucket("m", rpm=5, tpm=1_000)], 100, t0 + i)
    # The same history, a tighter limit (learnt from the provider, say): already full.
    assert await refused(store, [Bucket("m", rpm=3)], 1, t0 + 3) == pytest.approx(57.0, abs=1e-3)
    assert await refused(store, [Bucket("m", tpm=350)], 100, t0 + 3) == pytest.approx(
        57.0, abs=1e-3
    )
    await admit(store, [Bucket("m", tpm=400)], 100, t0 + 3)


# -- several buckets at once -------------------------------------------------------------------


async def test_multi_bucket_acquire_is_all_or_nothing(store: StateStore, backend: Backend) -> None:
    t0 = backend.t0
    model, key = Bucket("model", rpm=1), Bucket("key", rpm=3)
    await admit(store, [model, key], 10, t0)
    # The model is full: the key must not be charged by the refused request.
    await refused(store, [model, key], 10, t0 + 1)
    await refused(store, [model, key], 10, t0 + 2)
    await admit(store, [key], 10, t0 + 3)
    await admit(store, [key], 10, t0 + 4)
    await refused(store, [key], 10, t0 + 5)


async def test_refusal_is_the_longest_wait_over_the_buckets(
    store: StateStore, backend: Backend
) -> None:
    t0 = backend.t0
    a, b = Bucket("a", rpm=1), Bucket("b", rpm=1)
    await admit(store, [a], 1, t0)
    await admit(store, [b], 1, t0 + 30)
    assert await refused(store, [a, b], 1, t0 + 40) == pytest.approx(50.0, abs=1e-3)
    assert await refused(store, [b, a], 1, t0 + 40) == pytest.approx(50.0, abs=1e-3)


# -- dry run -----------------------------------------------------------------------------------


async def test_peek_answers_what_acquire_would(store: StateStore, backend: Backend) -> None:
    t0 = backend.t0
    b = [Bucket("m", rpm=2, tpm=100, rpd=3)]
    assert await store.peek(b, 10, t0) == 0.0
    await admit(store, b, 60, t0)
    assert await store.peek(b, 50, t0 + 1) == pytest.approx(59.0, abs=1e-3)
    assert await store.peek(b, 40, t0 + 1) == 0.0
    await admit(store, b, 40, t0 + 2)
    # rpm: two of two; after the minute, the day still holds both.
    assert await store.peek(b, 1, t0 + 3) == pytest.approx(57.0, abs=1e-3)
    assert await store.peek(b, 1, t0 + MINUTE) == 0.0
    await admit(store, b, 1, t0 + MINUTE)
    assert await store.peek(b, 1, t0 + MINUTE + 2) == pytest.approx(DAY - 62, abs=1e-3)
    assert await store.peek([Bucket("n", tpm=5)], 6, t0) == math.inf
    assert await store.peek([Bucket("n", rpd=0)], 1, t0) == math.inf
    assert await store.peek([], 1, t0) == 0.0


async def test_peek_is_the_longest_wait_over_the_buckets(
    store: StateStore, backend: Backend
) -> None:
    t0 = backend.t0
    await admit(store, [Bucket("a", rpm=1)], 1, t0)
    await admit(store, [Bucket("b", rpm=1)], 1, t0 + 30)
    both = [Bucket("a", rpm=1), Bucket("b", rpm=1)]
    assert await store.peek(both, 1, t0 + 40) == pytest.approx(50.0, abs=1e-3)
    assert await store.peek([Bucket("a", rpm=1), Bucket("c", rpm=1)], 1, t0 + 40) == (
        pytest.approx(20.0, abs=1e-3)
    )


async def test_peek_never_changes_what_acquire_later_sees(
    store: StateStore, backend: Backend
) -> None:
    t0 = backend.t0
    b = [Bucket("m", rpm=3, tpm=100, rpd=5, tpd=200)]

    async def dry_runs(at: float) -> None:
        # Every kind: fitting, refused, never fitting, with an untouched bucket, and (at
        # t0 + 61) after charges have left the minute window, which a real admission
        # would expire and a dry run must not.
        for tokens in (0, 10, 20, 21, 70, 101):
            await store.peek(b, tokens, at)
            await store.peek([Bucket("untouched", rpm=1), *b], tokens, at)

    # Exactly what the same history without any dry run admits: 20 more tokens this
    # minute, then rpd 5 and tpd 200 over the day.
    steps = [
        (t0, 50, True),
        (t0 + 1, 30, True),
        (t0 + 2, 21, False),
        (t0 + 2, 20, True),
        (t0 + 3, 1, False),
        (t0 + MINUTE + 1, 60, True),
        (t0 + MINUTE + 2, 40, True),
        (t0 + MINUTE + 3, 0, False),
    ]
    for at, tokens, fits in steps:
        await dry_runs(at)
        if fits:
            await admit(store, b, tokens, at)
        else:
            await refused(store, b, tokens, at)
    assert await store.peek(b, 0, t0 + MINUTE + 3) == pytest.approx(DAY - 63, abs=1e-3)
    assert await store.snapshot(t0 + MINUTE + 3) == {
        "cooldowns": {},
        "disabled": {},
        "indexes": {},
        "learned": {},
    }
    assert isinstance(await store.acquire([Bucket("untouched", rpm=1)], 1, t0 + 70), Charge)


async def test_a_dry_run_is_invisible_to_another_handle(backend: Backend) -> None:
    """What another process sees while this one peeks: never a charge, however brief."""
    first, second = backend.make(), backend.make()
    try:
        t0, b = backend.t0, [Bucket("m", rpm=5)]
        for i in range(4):
            await admit(second, b, 1, t0 + i * 0.01)
        # One place left: a dry run that charged and gave back could take it for a moment.
        for round_ in range(5):
            at = t0 + 1 + round_ * 0.01
            peeks = [first.peek(b, 1, at) for _ in range(10)]
            got = await asyncio.gather(*peeks, second.acquire(b, 1, at))
            assert isinstance(got[-1], Charge)
            await second.cancel(got[-1])
    finally:
        await backend.close_all()


# -- commit and cancel -------------------------------------------------------------------------


async def test_commit_corrects_the_charge(store: StateStore, backend: Backend) -> None:
    t0, b = backend.t0, [Bucket("m", tpm=100, tpd=1_000)]
    charge = await admit(store, b, 60, t0)
    await refused(store, b, 60, t0 + 1)
    await store.commit(charge, 10)
    assert charge.tokens == 10
    await admit(store, b, 90, t0 + 2)
    # ... and upwards: the provider reported more than the estimate.
    up = await admit(store, [Bucket("n", tpm=100)], 10, t0 + 3)
    await store.commit(up, 80)
    await refused(store, [Bucket("n", tpm=100)], 30, t0 + 4)
    await admit(store, [Bucket("n", tpm=100)], 20, t0 + 4)


async def test_commit_reaches_every_bucket_of_the_charge(
    store: StateStore, backend: Backend
) -> None:
    t0 = backend.t0
    both = [Bucket("a", tpm=100), Bucket("b", tpm=100)]
    charge = await admit(store, both, 90, t0)
    await store.commit(charge, 20)
    await admit(store, [Bucket("a", tpm=100)], 80, t0 + 1)
    await admit(store, [Bucket("b", tpm=100)], 80, t0 + 1)


async def test_commit_after_the_minute_keeps_the_day_exact(
    store: StateStore, backend: Backend
) -> None:
    t0, b = backend.t0, [Bucket("m", tpm=100, tpd=1_000)]
    charge = await admit(store, b, 50, t0)
    await store.commit(charge, 900)  # a long stream, settled late
    await admit(store, b, 100, t0 + MINUTE)
    await refused(store, b, 1, t0 + MINUTE + 1)


async def test_cancel_gives_the_charge_back(store: StateStore, backend: Backend) -> None:
    t0, b = backend.t0, [Bucket("m", rpm=1, tpm=100, rpd=1, tpd=100)]
    charge = await admit(store, b, 100, t0)
    await refused(store, b, 100, t0 + 1)
    await store.cancel(charge)
    await admit(store, b, 100, t0 + 2)


async def test_cancel_refunds_every_bucket(store: StateStore, backend: Backend) -> None:
    t0 = backend.t0
    both = [Bucket("a", rpm=1), Bucket("b", rpm=1)]
    charge = await admit(store, both, 1, t0)
    await store.cancel(charge)
    await admit(store, [Bucket("a", rpm=1)], 1, t0 + 1)
    await admit(store, [Bucket("b", rpm=1)], 1, t0 + 1)


async def test_cancel_of_an_older_charge_keeps_the_newer(
    store: StateStore, backend: Backend
) -> None:
    t0, b = backend.t0, [Bucket("m", rpm=2)]
    first = await admit(store, b, 1, t0)
    await admit(store, b, 1, t0 + 1)
    await store.cancel(first)
    await admit(store, b, 1, t0 + 2)
    assert await refused(store, b, 1, t0 + 3) == pytest.approx(58.0, abs=1e-3)


# -- cooldowns ---------------------------------------------------------------------------------


async def test_cooldowns_are_relative_and_never_shortened(
    store: StateStore, backend: Backend
) -> None:
    t0 = backend.t0
    await store.set_cooldown("groq/key1", 30.0, t0)
    await store.set_cooldown("groq/key1", 10.0, t0 + 1)  # shorter: ignored
    left = await store.cooldowns(["groq/key1", "never-cooled"], t0 + 5)
    assert left[0] == pytest.approx(25.0, abs=0.01)
    assert left[1] == 0.0
    await store.set_cooldown("groq/key1", 60.0, t0 + 5)  # longer: extends
    assert (await store.cooldowns(["groq/key1"], t0 + 5))[0] == pytest.approx(60.0, abs=0.01)
    assert await store.cooldowns(["groq/key1"], t0 + 65) == [0.0]
    assert await store.cooldowns([], t0) == []


# -- keys --------------------------------------------------------------------------------------


async def test_disabled_keys_by_provider(store: StateStore) -> None:
    assert await store.disabled_keys("groq") == frozenset()
    await store.disable_key("groq", "fp-1")
    await store.disable_key("groq", "fp-1")
    await store.disable_key("groq", "fp-2")
    await store.disable_key("gemini", "fp-9")
    assert await store.disabled_keys("groq") == frozenset({"fp-1", "fp-2"})
    assert await store.disabled_keys("gemini") == frozenset({"fp-9"})


async def test_rotate_index_fetches_and_advances(store: StateStore) -> None:
    assert await store.get_index("groq") is None
    assert [await store.rotate_index("groq", 3) for _ in range(4)] == [0, 1, 2, 0]
    assert await store.get_index("groq") == 1
    await store.set_index("groq", 5)
    assert await store.get_index("groq") == 5
    assert await store.rotate_index("groq", 3) == 2
    assert await store.get_index("other") is None


async def test_rotate_index_spreads_concurrent_callers(store: StateStore) -> None:
    picks = await asyncio.gather(*(store.rotate_index("groq", 4) for _ in range(40)))
    assert sorted(picks.count(i) for i in range(4)) == [10, 10, 10, 10]


async def test_set_index_if_absent_keeps_the_first(store: StateStore) -> None:
    assert await store.set_index_if_absent("groq", 2) == 2
    assert await store.get_index("groq") == 2
    assert await store.set_index_if_absent("groq", 0) == 2
    assert await store.rotate_index("groq", 3) == 2
    assert await store.set_index_if_absent("groq", 1) == 3
    await store.set_index("groq", 1)
    assert await store.set_index_if_absent("groq", 5) == 1
    assert await store.snapshot(0.0) == {
        "cooldowns": {},
        "disabled": {},
        "indexes": {"groq": 1},
        "learned": {},
    }


async def test_starts_racing_on_an_empty_index_never_undo_an_advance(backend: Backend) -> None:
    """Several handles (processes) each set their start and advance at once: every start
    after the first is a no-op, so the advances all count."""
    handles = [backend.make() for _ in range(4)]
    try:

        async def start_and_take(store: StateStore) -> list[int]:
            await store.set_index_if_absent("p", 0)
            return [await store.rotate_index("p", 4) for _ in range(3)]

        picks = await asyncio.gather(*(start_and_take(h) for h in handles))
        flat = [p for one in picks for p in one]
        assert sorted(flat.count(i) for i in range(4)) == [3, 3, 3, 3]
        assert await handles[0].get_index("p") in (0, 4)
    finally:
        await backend.close_all()


async def test_rotate_index_follows_a_changed_key_count(store: StateStore) -> None:
    await store.set_index("p", 7)
    assert await store.rotate_index("p", 2) == 1
    assert await store.rotate_index("p", 5) in range(5)


# -- learnt limits -----------------------------------------------------------------------------


async def test_learned_limits_latest_report_wins(store: StateStore) -> None:
    assert await store.learned_limits("groq/llama") == {}
    await store.learn_limit("groq/llama", "rpm", 30)
    await store.learn_limit("groq/llama", "tpd", 500_000)
    await store.learn_limit("groq/llama", "rpm", 20)
    assert await store.learned_limits("groq/llama") == {"rpm": 20, "tpd": 500_000}
    assert await store.learned_limits("other") == {}


# -- inspection --------------------------------------------------------------------------------


async def test_snapshot_holds_what_the_store_holds(store: StateStore, backend: Backend) -> None:
    t0 = backend.t0
    empty = await store.snapshot(t0)
    assert empty == {"cooldowns": {}, "disabled": {}, "indexes": {}, "learned": {}}
    await store.set_cooldown("groq/key2", 40.0, t0)
    await store.set_cooldown("gone", 1.0, t0)
    await store.disable_key("groq", "fp-1")
    await store.set_index("groq", 3)
    await store.learn_limit("groq/llama", "rpm", 30)
    snap = await store.snapshot(t0 + 10)
    assert set(snap) == {"cooldowns", "disabled", "indexes", "learned"}
    assert snap["cooldowns"].keys() == {"groq/key2"}
    assert snap["cooldowns"]["groq/key2"] == pytest.approx(30.0, abs=0.01)
    assert snap["disabled"] == {"groq": ["fp-1"]}
    assert snap["indexes"] == {"groq": 3}
    assert snap["learned"] == {"groq/llama": {"rpm": 30}}


# -- concurrency -------------------------------------------------------------------------------


async def test_many_tasks_never_overshoot(store: StateStore, backend: Backend) -> None:
    t0 = backend.t0
    buckets = [Bucket("model", rpm=50, tpm=5_000), Bucket("key", rpm=80)]
    got = await asyncio.gather(*(store.acquire(buckets, 90, t0 + i * 1e-3) for i in range(200)))
    admitted = [g for g in got if isinstance(g, Charge)]
    # tpm 5000 / 90 tokens: 55 fit by tokens, so rpm is the binding limit.
    assert len(admitted) == 50
    assert all(isinstance(g, float) and g > 0 for g in got if not isinstance(g, Charge))


async def test_stores_on_one_state_share_it(backend: Backend) -> None:
    """Two handles (two processes, for a shared backend) see one window."""
    first, second = backend.make(), backend.make()
    try:
        t0, b = backend.t0, [Bucket("m", rpm=3)]
        await admit(first, b, 1, t0)
        await admit(second, b, 1, t0 + 1)
        await admit(first, b, 1, t0 + 2)
        await refused(second, b, 1, t0 + 3)
        await second.set_cooldown("k", 10.0, t0)
        assert (await first.cooldowns(["k"], t0))[0] == pytest.approx(10.0, abs=0.01)
    finally:
        await backend.close_all()


async def test_store_flags(store: StateStore) -> None:
    assert isinstance(store, StateStore)
    assert isinstance(store.uses_wall_clock, bool)
    assert isinstance(store.shared, bool)


async def test_commit_to_the_same_total_keeps_the_charge(
    store: StateStore, backend: Backend
) -> None:
    t0, b = backend.t0, [Bucket("m", rpm=1, tpm=100, rpd=5)]
    charge = await admit(store, b, 0, t0)
    await store.commit(charge, 0)
    await refused(store, b, 0, t0 + 1)
    await store.commit(charge, 100)
    await store.commit(charge, 100)
    await refused(store, [Bucket("m", tpm=100)], 1, t0 + 2)


def test_one_store_shared_by_routers_in_threads_never_overshoots(backend: Backend) -> None:
    """One router per thread (each its own event loop), all on one store object."""
    import threading

    store, t0 = backend.make(), backend.t0
    buckets = [Bucket("model", rpm=40), Bucket("key", tpm=10_000)]
    admitted: list[int] = []

    def one_thread() -> None:
        async def run() -> int:
            got = await asyncio.gather(*(store.acquire(buckets, 10, t0) for _ in range(30)))
            return sum(isinstance(g, Charge) for g in got)

        admitted.append(asyncio.run(run()))

    threads = [threading.Thread(target=one_thread) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    asyncio.run(backend.close_all())
    assert len(admitted) == 4
    assert sum(admitted) == 40
