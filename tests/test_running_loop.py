"""`running_loop` answers as `asyncio.get_running_loop` does, whatever loop it is told."""

from __future__ import annotations

import asyncio
import threading

import pytest

from llmroute._lifecycle import running_loop


async def test_the_known_loop_when_it_is_the_one_running() -> None:
    loop = asyncio.get_running_loop()
    assert running_loop(loop) is loop
    assert running_loop(None) is loop


def test_a_finished_loop_is_not_taken_for_the_running_one() -> None:
    first = asyncio.new_event_loop()
    try:
        first.run_until_complete(asyncio.sleep(0))

        async def which() -> asyncio.AbstractEventLoop:
            return running_loop(first)

        second = asyncio.new_event_loop()
        try:
            assert second.run_until_complete(which()) is second
        finally:
            second.close()
    finally:
        first.close()


def test_a_loop_running_in_another_thread_is_not_this_threads() -> None:
    other = asyncio.new_event_loop()
    started = threading.Event()
    thread = threading.Thread(target=lambda: (other.call_soon(started.set), other.run_forever()))
    thread.start()
    try:
        assert started.wait(5)

        async def which() -> asyncio.AbstractEventLoop:
            return running_loop(other)

        mine = asyncio.new_event_loop()
        try:
            assert mine.run_until_complete(which()) is mine
        finally:
            mine.close()
    finally:
        other.call_soon_threadsafe(other.stop)
        thread.join(5)
        other.close()


def test_outside_any_loop_it_raises_as_asyncio_does() -> None:
    with pytest.raises(RuntimeError):
        running_loop(None)
