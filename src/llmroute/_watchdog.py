"""Wall-clock time limits for many concurrent awaits, at the cost of a dict entry each.

`asyncio.timeout` schedules and cancels one loop timer per use: several microseconds on
every request. Here one timer per event loop, set for the soonest armed limit, cancels
the tasks whose limit has passed. Limits armed together (the same timeout on many
requests) share that one timer; it never wakes more often than every `GRAIN` seconds, so a
limit fires at most `GRAIN` late, well inside the quarter second the deadline promise
allows.

    limit = watchdog.arm(seconds)
    try:
        result = await something()
    except asyncio.CancelledError:
        if not watchdog.expired(limit):
            raise
        ...  # the time limit ended it
    finally:
        watchdog.disarm(limit)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Final

from llmroute._lifecycle import running_loop

__all__ = ["GRAIN", "Limit", "Watchdog"]

#: how often armed limits are checked, in seconds
GRAIN: Final = 0.02


class Limit:
    __slots__ = ("fired", "task", "when")

    def __init__(self, task: asyncio.Task[object], when: float) -> None:
        self.task = task
        self.when = when
        self.fired = False


class Watchdog:
    """Cancels tasks whose armed limit has passed (loop time)."""

    __slots__ = ("_armed", "_loop", "_time", "_timer", "_timer_at")

    def __init__(self) -> None:
        self._armed: dict[Limit, None] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._time: Callable[[], float] = time.monotonic

    def arm(self, seconds: float) -> Limit:
        """Limit the current task to `seconds` from now (until `disarm`)."""
        loop = running_loop(self._loop)
        if loop is not self._loop:
            self._loop = loop
            self._timer = None
            # asyncio's own loops keep time with time.monotonic: read it without a method.
            self._time = (
                time.monotonic if type(loop).time is asyncio.BaseEventLoop.time else loop.time
            )
        task = asyncio.current_task(loop)
        assert task is not None
        when = self._time() + seconds
        limit = Limit(task, when)
        self._armed[limit] = None
        if self._timer is None:
            self._schedule(loop, when)
        elif when < self._timer_at - GRAIN:
            self._timer.cancel()
            self._schedule(loop, when)
        return limit

    def disarm(self, limit: Limit) -> None:
        self._armed.pop(limit, None)
        if limit.fired:
            # The cancellation was ours: the task is not being cancelled by anyone else.
            limit.task.uncancel()

    @staticmethod
    def expired(limit: Limit) -> bool:
        return limit.fired

    def _schedule(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        self._timer_at = when
        self._timer = loop.call_at(when, self._check)

    def _check(self) -> None:
        loop = self._loop
        assert loop is not None
        now = loop.time()
        soonest = float("inf")
        for limit in list(self._armed):
            if limit.when <= now:
                del self._armed[limit]
                limit.fired = True
                limit.task.cancel()
            elif limit.when < soonest:
                soonest = limit.when
        if self._armed:
            self._schedule(loop, max(soonest, now + GRAIN))
        else:
            self._timer = None
