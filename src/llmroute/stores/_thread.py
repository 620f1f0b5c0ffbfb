"""One worker thread for blocking store calls; the calls of one event-loop tick go as one job.

A thread hop costs more than a small SQLite transaction: fifty concurrent requests each
making three calls would mean 150 hand-overs between the loop and the thread. Calls made
before the loop next turns are handed over together, run one after another in call order
(each its own transaction), and their results come back together.
"""

from __future__ import annotations

import asyncio
import contextlib
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

    __slots__ = ("_executor", "_loop", "_on_abandoned", "_pending", "_run_one", "name")

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
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: list[_Call] = []

    def call(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        if self._pending and self._loop is not loop:
            # Left over from an event loop that has ended: nobody waits for those.
            self._pending = []
        future: asyncio.Future[Any] = loop.create_future()
        if not self._pending:
            self._loop = loop
            loop.call_soon(self._dispatch)
        self._pending.append((fn, args, future))
        return future

    def _dispatch(self) -> None:
        batch, self._pending = self._pending, []
        if batch and self._loop is not None:
            self.executor().submit(self._run_batch, self._loop, batch)

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
        """Run what is queued, then `last` on the thread, then stop the thread."""
        executor, self._executor = self._executor, None
        if executor is None:
            return
        if self._pending:
            self._dispatch_on(executor)
        await asyncio.wrap_future(executor.submit(last))
        executor.shutdown(wait=False)

    def _dispatch_on(self, executor: ThreadPoolExecutor) -> None:
        batch, self._pending = self._pending, []
        if self._loop is not None:
            executor.submit(self._run_batch, self._loop, batch)


def forget(future: asyncio.Future[Any]) -> None:
    """For a call nobody awaits: retrieve its outcome so a failure is not reported later."""
    future.add_done_callback(lambda done: done.cancelled() or done.exception())
