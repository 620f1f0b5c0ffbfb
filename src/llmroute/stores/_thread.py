"""One worker thread for blocking store calls; the calls of one event-loop tick go as one job.

A thread hop costs more than a small SQLite transaction: fifty concurrent requests each
making three calls would mean 150 hand-overs between the loop and the thread. Calls made
before the loop next turns are handed over together, run one after another in call order
(each its own transaction), and their results come back together. Several event loops
(one router per thread, sharing the store) each get their own batches; the one worker
thread runs them all in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

__all__ = ["TickQueue"]

_Call = tuple[Callable[..., Any], tuple[Any, ...], "asyncio.Future[Any]"]


class TickQueue:
    """Runs `run_one(fn, args)` on one thread, for calls batched per event-loop tick.

    `on_abandoned(fn, result)` is called (on the loop) for a call whose caller stopped
    waiting (cancelled) but which ran to its end anyway, so its effect can be undone.
    """

    __slots__ = ("_executor", "_lock", "_on_abandoned", "_pending", "_run_one", "name")

    def __init__(
        self,
        name: str,
        run_one: Callable[[Callable[..., Any], tuple[Any, ...]], Any],
        on_abandoned: Callable[[Callable[..., Any], Any], None],
    ) -> None:
        self.name = name
        self._run_one = run_one
        self._on_abandoned = on_abandoned
        self._executor: ThreadPoolExecutor | None = None
        #: calls not yet handed over, per event loop
        self._pending: dict[asyncio.AbstractEventLoop, list[_Call]] = {}
        self._lock = threading.Lock()

    def call(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        with self._lock:
            pending = self._pending.get(loop)
            if pending is None:
                pending = self._pending[loop] = []
                loop.call_soon(self._dispatch, loop)
                # Calls left by event loops that ended before handing them over: nobody
                # waits for those.
                for dead in [other for other in self._pending if other.is_closed()]:
                    del self._pending[dead]
            pending.append((fn, args, future))
        return future

    def _dispatch(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            batch = self._pending.pop(loop, None)
            executor = self.executor()
        if batch:
            executor.submit(self._run_batch, loop, batch)

    def executor(self) -> ThreadPoolExecutor:
        executor = self._executor
        if executor is None:
            executor = self._executor = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix=self.name
            )
        return executor

    def _run_batch(self, loop: asyncio.AbstractEventLoop, batch: list[_Call]) -> None:
        outcomes: list[tuple[Any, BaseException | None]] = []
        for fn, args, _ in batch:
            try:
                outcomes.append((self._run_one(fn, args), None))
            except BaseException as exc:
                outcomes.append((None, exc))
        # A loop that has closed meanwhile has nobody left waiting.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._deliver, batch, outcomes)

    def _deliver(
        self, batch: list[_Call], outcomes: list[tuple[Any, BaseException | None]]
    ) -> None:
        for (fn, _, future), (result, exc) in zip(batch, outcomes, strict=True):
            if future.cancelled():
                if exc is None:
                    self._on_abandoned(fn, result)
            elif exc is not None:
                future.set_exception(exc)
            else:
                future.set_result(result)

    async def shutdown(self, last: Callable[[], None]) -> None:
        """Hand over what this loop has queued, run `last` after it on the thread, then let
        the thread go (a later call starts a new one)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            executor, self._executor = self._executor, None
            batch = self._pending.pop(loop, None)
        if executor is None:
            return
        if batch:
            executor.submit(self._run_batch, loop, batch)
        await asyncio.wrap_future(executor.submit(last))
        executor.shutdown(wait=False)


def forget(future: asyncio.Future[Any]) -> None:
    """For a call nobody awaits: retrieve its outcome so a failure is not reported later."""
    future.add_done_callback(lambda done: done.cancelled() or done.exception())
