"""What only the SQLite store promises: a file shared by processes, kept across restarts,
failures as `StoreError`, and a slow disk that never holds up the event loop."""

from __future__ import annotations

import asyncio
import multiprocessing
import sqlite3
from pathlib import Path

import pytest
from store_backends import wall_t0
from store_workers import admit_many

from llmroute.errors import StoreError
from llmroute.stores import Bucket, Charge, SQLiteStore

DAY = 86_400.0


async def test_state_survives_a_restart(tmp_path: Path) -> None:
    path, t0 = tmp_path / "state.sqlite3", wall_t0()
    daily = [Bucket("m", rpd=2)]
    first = SQLiteStore(path)
    assert isinstance(await first.acquire(daily, 1, t0), Charge)
    assert isinstance(await first.acquire(daily, 1, t0 + 10), Charge)
    await first.set_cooldown("groq/key1", 3_600.0, t0)
    await first.disable_key("groq", "fp-1")
    await first.set_index("groq", 2)
    await first.learn_limit("m", "rpd", 2)
    await first.aclose()

    second = SQLiteStore(path)
    try:
        assert await second.acquire(daily, 1, t0 + 20) == pytest.approx(DAY - 20, abs=1e-3)
        assert (await second.cooldowns(["groq/key1"], t0 + 600))[0] == pytest.approx(3_000.0)
        assert await second.disabled_keys("groq") == frozenset({"fp-1"})
        assert await second.rotate_index("groq", 3) == 2
        assert await second.learned_limits("m") == {"rpd": 2}
    finally:
        await second.aclose()


def test_processes_sharing_the_file_never_overshoot(tmp_path: Path) -> None:
    path = str(tmp_path / "shared.sqlite3")
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        results = pool.starmap(admit_many, [("sqlite", path, "", 60, 90)] * 4)
    assert sum(r[0] for r in results) == 50  # rpm 50 binds (tpm 5000 / 90 = 55)
    assert sum(r[1] for r in results) <= 5_000
    picks = [sum(r[2 + i] for r in results) for i in range(4)]
    assert picks == [60, 60, 60, 60]


async def test_an_unusable_file_is_a_store_error_then_recovers(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the directory should be")
    store = SQLiteStore(blocker / "state.sqlite3")
    try:
        with pytest.raises(StoreError, match="could not be used"):
            await store.acquire([Bucket("m", rpm=1)], 1, wall_t0())
        blocker.unlink()
        assert isinstance(await store.acquire([Bucket("m", rpm=1)], 1, wall_t0()), Charge)
    finally:
        await store.aclose()


async def test_a_locked_file_past_the_busy_timeout_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite3"
    store = SQLiteStore(path, busy_timeout=0.05)
    await store.get_index("init")  # creates the schema
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreError, match="locked"):
            await store.acquire([Bucket("m", rpm=1)], 1, wall_t0())
    finally:
        other.execute("COMMIT")
        other.close()
    try:
        assert isinstance(await store.acquire([Bucket("m", rpm=1)], 1, wall_t0()), Charge)
    finally:
        await store.aclose()


async def test_a_blocked_admission_leaves_the_loop_free_and_a_cancel_refunds(
    tmp_path: Path,
) -> None:
    path, t0 = tmp_path / "state.sqlite3", wall_t0()
    store = SQLiteStore(path)
    await store.get_index("init")
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        waiting = asyncio.create_task(store.acquire([Bucket("m", rpm=1)], 1, t0))
        # The event loop keeps serving other tasks while the admission waits for the file.
        ticks = 0
        for _ in range(50):
            await asyncio.sleep(0)
            ticks += 1
        assert ticks == 50
        assert not waiting.done()
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
    finally:
        other.execute("COMMIT")
        other.close()
    try:
        # Calls run in order on the store's thread: two round trips let the refund of the
        # abandoned admission run first.
        await store.get_index("x")
        await store.get_index("x")
        assert isinstance(await store.acquire([Bucket("m", rpm=1)], 1, t0 + 1), Charge)
    finally:
        await store.aclose()


async def test_expired_rows_are_pruned(tmp_path: Path) -> None:
    path, t0 = tmp_path / "state.sqlite3", wall_t0()
    store = SQLiteStore(path)
    try:
        for i in range(5):
            await store.acquire([Bucket("minute-only", rpm=100)], 1, t0 + i)
            await store.acquire([Bucket("daily", rpd=100)], 1, t0 + i)
        await store.set_cooldown("short", 1.0, t0)
        await store.acquire([Bucket("minute-only", rpm=100)], 1, t0 + 120)
        with sqlite3.connect(path) as db:
            buckets = sorted(r[0] for r in db.execute("SELECT bucket FROM charges"))
            cooling = db.execute("SELECT count(*) FROM cooldowns").fetchone()[0]
        # Minute-only charges go after a minute, day charges after a day.
        assert buckets == ["daily"] * 5 + ["minute-only"]
        assert cooling == 0
        await store.acquire([Bucket("minute-only", rpm=100)], 1, t0 + DAY + 200)
        with sqlite3.connect(path) as db:
            assert db.execute("SELECT count(*) FROM charges").fetchone()[0] == 1
    finally:
        await store.aclose()


async def test_the_store_serves_one_event_loop_after_another(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.sqlite3")
    await store.set_index("p", 4)
    await store.aclose()
    # Used again after aclose (a router reused after a loop ended): it reopens.
    assert await store.get_index("p") == 4
    await store.aclose()
    assert "s.sqlite3" in repr(store)
