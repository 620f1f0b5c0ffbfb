"""Which event loop a router serves, and whether it may serve at all.

A router serves one event loop after another (two `asyncio.run` in a row, `complete_sync`
then `asyncio.run`): when a call arrives on a new loop and the old one has no call in
flight, the loop-bound parts are rebuilt (`on_new_loop`). A call from a second loop while
the first still has calls in flight (two threads sharing a router) raises a clear
`LLMRouteError` instead of failing deep inside a library. A closed router raises too.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from llmroute.errors import LLMRouteError

__all__ = ["LoopGuard", "read_now", "running_loop"]

_T = TypeVar("_T")

_thread = threading.get_ident


def running_loop(known: asyncio.AbstractEventLoop | None) -> asyncio.AbstractEventLoop:
    """The running event loop: `known` when it is the loop running in this thread, else
    asyncio's answer. Python 3.11's `get_running_loop` makes a getpid system call on every
    call (about 150 ns, several times a request); asyncio's own loops record the thread
    that runs them, and a thread runs one loop at a time."""
    if known is not None and getattr(known, "_thread_id", None) == _thread():
        return known
    return asyncio.get_running_loop()


class LoopGuard:
    __slots__ = ("_active", "_lock", "_loop", "_on_new_loop", "closed")

    def __init__(self, on_new_loop: Callable[[], None]) -> None:
        self._on_new_loop = on_new_loop
        self._loop: asyncio.AbstractEventLoop | None = None
        self._active = 0
        self._lock = threading.Lock()
        self.closed = False

    def enter(self) -> None:
        """Start a call: refuse on a closed router; bind to the running loop."""
        if self.closed:
            raise LLMRouteError("router is closed")
        loop = running_loop(self._loop)
        if loop is not self._loop:
            self._bind(loop)
        self._active += 1

    def leave(self) -> None:
        self._active -= 1

    def check_sync(self) -> None:
        """For `complete_sync`: no running loop here, and the router open."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise LLMRouteError(
                "complete_sync was called inside a running event loop; "
                "use `await router.complete(...)` there instead"
            )
        if self.closed:
            raise LLMRouteError("router is closed")

    def _bind(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            previous = self._loop
            if previous is loop:
                return
            if previous is not None and self._active and not previous.is_closed():
                raise LLMRouteError(
                    "this router is serving another event loop right now (a call from "
                    "another thread?); use one router per thread, with a shared store"
                )
            self._loop = loop
            self._active = 0
            if previous is not None:
                self._on_new_loop()


def read_now(make: Callable[[], Coroutine[Any, Any, _T]], *, inline: bool) -> _T:
    """Run a read-only coroutine to its end from synchronous code, inside a running event
    loop or not. `inline`: its reads never wait on I/O (the memory store), so it finishes in
    the caller's thread at once. Otherwise it runs on a short-lived thread with an event
    loop of its own, where a shared store opens connections for that loop."""
    if inline:
        coro = make()
        try:
            coro.send(None)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        # It waited after all (a store that says it is not shared, yet does I/O): run it
        # where it can wait.
        coro.close()
    with ThreadPoolExecutor(1, thread_name_prefix="llmroute-read") as pool:
        return pool.submit(asyncio.run, make()).result()
