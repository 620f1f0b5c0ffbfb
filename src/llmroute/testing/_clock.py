"""Virtual time for tests: `FakeClock`.

A sleeper parks on a future filed under its own deadline. Time moves in two ways only:
`advance()` by hand, or a jump to the earliest deadline once the event loop has nothing
left to run. Concurrent sleeps therefore overlap exactly as real ones do (ten tasks that
each sleep 5 s wake together at t=5), and a test of a minute-long schedule runs in
milliseconds.

"Nothing left to run" is read from the loop's ready queue: the watcher is a loop callback
that re-arms itself while callbacks are queued, and jumps only after it has seen the queue
empty on a few consecutive turns. Those turns also poll the selector, so a reply already
sitting in a loopback socket is read before time moves. Work in other threads or on the
far side of a real socket counts as waiting, as it would for a real clock.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import time

__all__ = ["FakeClock", "ScaledClock"]

# Consecutive idle loop turns before virtual time jumps. One suffices for pure asyncio
# code; the rest give I/O that has already arrived (the fake server's answer on loopback,
# a result handed back from a thread) a selector poll or two to be read first.
_IDLE_TURNS = 3
# A loop without a readable ready queue (not CPython's asyncio loop): settle for more turns.
_BLIND_TURNS = 32


class FakeClock:
    """Virtual time: `now()` (monotonic seconds), `time()` (Unix seconds), `async sleep()`.

    `now()` starts at `start` and `time()` at `wall`; both move together. A task that
    sleeps wakes when virtual time reaches its own deadline. When every task is waiting,
    time jumps to the earliest deadline; `advance(seconds)` moves it by hand and wakes
    every sleeper whose deadline has passed. Sleepers with the same deadline wake in the
    order they went to sleep. `slept` lists every duration asked of `sleep`, in order.

        clock = FakeClock()
        await asyncio.gather(*(clock.sleep(5) for _ in range(10)))
        assert clock.now() == 5.0

    Meant for one event loop at a time (one loop after another is fine).
    """

    def __init__(self, start: float = 0.0, wall: float = 1_700_000_000.0) -> None:
        self._now = float(start)
        self._wall_offset = float(wall) - self._now
        #: (deadline, order of arrival, future) of every sleeper not yet woken
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._arrivals = 0
        self._watching: asyncio.AbstractEventLoop | None = None
        self._idle_turns = 0
        #: every duration passed to `sleep`, in call order
        self.slept: list[float] = []

    def now(self) -> float:
        return self._now

    def time(self) -> float:
        return self._now + self._wall_offset

    @property
    def sleeping(self) -> int:
        """How many sleepers wait for their deadline right now."""
        return sum(1 for _, _, future in self._sleepers if not future.done())

    async def sleep(self, seconds: float) -> None:
        seconds = float(seconds)
        if not seconds > 0.0 or math.isnan(seconds):
            seconds = 0.0
        self.slept.append(seconds)
        if seconds == 0.0:
            # Let other tasks run, as a real zero sleep would; time does not move.
            await asyncio.sleep(0)
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._arrivals += 1
        heapq.heappush(self._sleepers, (self._now + seconds, self._arrivals, future))
        self._watch(loop)
        # A cancelled sleeper leaves its (cancelled) future in the heap: skipped when due.
        await future

    def advance(self, seconds: float) -> None:
        """Move time forward by `seconds` and wake every sleeper whose deadline has passed."""
        if not seconds >= 0:
            raise ValueError("a clock does not go back")
        self._now += seconds
        self._wake_due()

    def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._watching is loop:
            return
        old = self._watching
        if old is not None and not old.is_closed() and old.is_running():
            raise RuntimeError("a FakeClock serves one event loop at a time")
        # A loop that has gone away leaves sleepers nobody will ever await: forget them.
        self._sleepers = [s for s in self._sleepers if s[2].get_loop() is loop]
        heapq.heapify(self._sleepers)
        self._watching = loop
        self._idle_turns = 0
        loop.call_soon(self._check)

    def _check(self) -> None:
        """One loop turn of the watcher: jump once the loop has stayed idle long enough."""
        loop = self._watching
        if loop is None:
            return
        sleepers = self._sleepers
        while sleepers and sleepers[0][2].done():
            heapq.heappop(sleepers)
        if not sleepers:
            self._watching = None
            return
        ready = getattr(loop, "_ready", None)
        if ready is not None and len(ready) > 0:
            self._idle_turns = 0
        else:
            self._idle_turns += 1
            if self._idle_turns >= (_IDLE_TURNS if ready is not None else _BLIND_TURNS):
                self._idle_turns = 0
                deadline = sleepers[0][0]
                if deadline > self._now:
                    self._now = deadline
                self._wake_due()
        loop.call_soon(self._check)

    def _wake_due(self) -> None:
        sleepers = self._sleepers
        now = self._now
        while sleepers and sleepers[0][0] <= now:
            future = heapq.heappop(sleepers)[2]
            if not future.done():
                future.set_result(None)

    def __repr__(self) -> str:
        return f"FakeClock(now={self._now}, sleeping={self.sleeping})"


class ScaledClock:
    """The real clock running `scale` times faster: a minute of it passes in 60/scale real
    seconds. Run a router on it against a fake provider with the same `time_scale`, and
    minute windows take seconds while every wait stays real.
    """

    __slots__ = ("_origin", "_scale", "_wall")

    def __init__(self, scale: float, *, wall: float | None = None) -> None:
        if not scale > 0:
            raise ValueError("scale must be positive")
        self._scale = float(scale)
        self._origin = time.monotonic()
        self._wall = time.time() if wall is None else wall

    def now(self) -> float:
        return (time.monotonic() - self._origin) * self._scale

    def time(self) -> float:
        return self._wall + self.now()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self._scale)

    def __repr__(self) -> str:
        return f"ScaledClock({self._scale:g})"
