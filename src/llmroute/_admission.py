"""Admission: the limiter as an object.

`reserve(...)` gives a `Reservation` (a charge the store holds) or a `Refusal` with the
wait. `Reservation.commit(real_tokens)` and `Reservation.cancel()` are the only places a
charge changes after admission.

Waiters for one queue (a candidate's buckets) are served first come, first served: the
first waiter sleeps on the injected clock until the store says there will be room, then
tries again; everyone behind it waits for its turn, and a request arriving while others
wait joins the end of the line even when the store would let it in. A charge given back
(`cancel`) wakes the head at once. A waiter whose own limit (`max_wait_seconds`, the
deadline) passes leaves the line with a refusal.

The memory store answers without I/O: `try_now` admits synchronously when nobody waits,
so the common request costs no coroutine here.

Learnt limits hook in through `tighten` (a bucket's effective limits) and `close` (no
admission to a bucket until a time, held in the store's cooldowns so other processes
sharing the store see it too).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Final

from llmroute.clock import Clock
from llmroute.errors import StoreError
from llmroute.stores.base import Bucket, Charge, StateStore

__all__ = ["Admission", "Refusal", "Reservation", "closed_name"]

logger = logging.getLogger("llmroute")

#: a float wait can round to zero; never spin on it
_MIN_SLEEP: Final = 0.001

Options = Sequence[Sequence[Bucket]]


def closed_name(bucket: str) -> str:
    """The cooldown name that keeps `bucket` closed (see `Admission.close`)."""
    return f"closed:{bucket}"


class Refusal:
    """No room: `wait` is the seconds until there could be (inf: the request never fits)."""

    __slots__ = ("wait",)

    def __init__(self, wait: float) -> None:
        self.wait = wait

    def __repr__(self) -> str:
        return f"Refusal(wait={self.wait:.3f})"


class Reservation:
    """One admitted charge. `option` is the index of the bucket set that admitted it."""

    __slots__ = ("_admission", "_queue", "charge", "option", "tokens", "waited")

    def __init__(
        self,
        admission: Admission,
        charge: Charge,
        option: int,
        tokens: int,
        queue: str,
        waited: float,
    ) -> None:
        self._admission = admission
        self._queue = queue
        self.charge = charge
        self.option = option
        self.tokens = tokens
        self.waited = waited

    def __repr__(self) -> str:
        return f"Reservation(tokens={self.tokens}, option={self.option})"

    def commit_now(self, real_tokens: int) -> bool:
        """`commit` without a coroutine when the store answers at once; False: await
        `commit` instead."""
        admission = self._admission
        if admission.commit_nowait is None:
            return False
        if real_tokens != self.tokens:
            shrinks = real_tokens < self.tokens
            self.tokens = real_tokens
            admission.commit_nowait(self.charge, real_tokens)
            if shrinks:
                admission.poke(self._queue)
        return True

    async def commit(self, real_tokens: int) -> None:
        """Correct the charge to the provider's reported total."""
        if real_tokens == self.tokens:
            return
        shrinks = real_tokens < self.tokens
        self.tokens = real_tokens
        admission = self._admission
        if admission.commit_nowait is not None:
            admission.commit_nowait(self.charge, real_tokens)
        else:
            try:
                await admission.store.commit(self.charge, real_tokens)
            except StoreError as exc:
                # The answer is in hand: losing it over a bookkeeping write would be worse
                # than keeping the estimate charged.
                logger.warning("the charge of a served request keeps its estimate: %s", exc)
                return
        if shrinks:
            admission.poke(self._queue)

    async def cancel(self) -> None:
        """Give the charge back whole: the request provably never reached the provider."""
        if self.tokens < 0:
            return
        self.tokens = -1
        admission = self._admission
        if admission.cancel_nowait is not None:
            admission.cancel_nowait(self.charge)
        else:
            try:
                await admission.store.cancel(self.charge)
            except StoreError as exc:
                # Failing safe: the charge stays, and the failure being handled is reported.
                logger.warning("a charge could not be given back: %s", exc)
                return
        admission.poke(self._queue)


class _Waiter:
    __slots__ = ("limit", "turn")

    def __init__(self, limit: float, turn: asyncio.Future[bool] | None) -> None:
        self.limit = limit
        #: resolved True when this waiter becomes the head, False when its limit passed
        self.turn = turn


class _Line:
    __slots__ = ("head_until", "waiters", "wake")

    def __init__(self) -> None:
        self.waiters: deque[_Waiter] = deque()
        #: when the head expects room (its last computed wait)
        self.head_until = 0.0
        self.wake: asyncio.Future[None] | None = None


class Admission:
    """Reserves capacity in the store, in arrival order per queue."""

    def __init__(
        self,
        store: StateStore,
        clock: Clock,
        mono: Callable[[], float],
        store_now: Callable[[], float],
    ) -> None:
        self.store = store
        self._clock = clock
        self._mono = mono
        self._store_now = store_now
        # The memory store answers without I/O; use its synchronous methods when it has them.
        self.acquire_nowait: Callable[[Sequence[Bucket], int, float], Charge | float] | None = (
            getattr(store, "acquire_nowait", None)
        )
        self.commit_nowait: Callable[[Charge, int], None] | None = getattr(
            store, "commit_nowait", None
        )
        self.cancel_nowait: Callable[[Charge], None] | None = getattr(store, "cancel_nowait", None)
        self._cooldowns_nowait: Callable[[Sequence[str], float], list[float]] | None = getattr(
            store, "cooldowns_nowait", None
        )
        self._lines: dict[str, _Line] = {}
        #: bucket name -> effective (tightened) limits
        self._tightened: dict[str, Bucket] = {}
        #: buckets that may be closed: only these cost a cooldown lookup on admission
        self._closable: set[str] = set()

    # -- hooks for limits learnt from the providers -----------------------------------------

    def tighten(self, bucket: Bucket) -> None:
        """Use `bucket`'s limits for the bucket of that name from now on (learnt limits; the
        caller has already merged them with the configured ones)."""
        self._tightened[bucket.name] = bucket

    def effective(self, bucket: Bucket) -> Bucket:
        return self._tightened.get(bucket.name, bucket) if self._tightened else bucket

    def watch_closed(self, bucket: str) -> None:
        """Check `bucket`'s closure on every admission: another process sharing the store
        may close it (learnt limits)."""
        self._closable.add(bucket)

    async def close(self, bucket: str, seconds: float) -> None:
        """Admit nothing to `bucket` for `seconds` (a window the provider reported spent)."""
        self._closable.add(bucket)
        await self.store.set_cooldown(closed_name(bucket), seconds, self._store_now())

    def reset_loop(self) -> None:
        """Forget the waiting lines: their futures belong to an event loop that has ended."""
        self._lines = {}

    # -- admission ---------------------------------------------------------------------------

    def try_now(self, options: Options, tokens: int, queue: str) -> Reservation | float | None:
        """The synchronous fast path: a reservation, the wait (nobody queued, no room), or
        None when only `reserve` can answer (a store with I/O, someone in line)."""
        acquire = self.acquire_nowait
        if acquire is None:
            return None
        line = self._lines.get(queue)
        if line is not None and line.waiters:
            return None
        now = self._store_now()
        if self._tightened or self._closable:
            return self._try_learnt_now(options, tokens, queue, now)
        if len(options) == 1:
            got = acquire(options[0], tokens, now)
            if isinstance(got, float):
                return got
            return Reservation(self, got, 0, tokens, queue, 0.0)
        wait = math.inf
        for index, buckets in enumerate(options):
            got = acquire(buckets, tokens, now)
            if isinstance(got, float):
                wait = min(wait, got)
            else:
                return Reservation(self, got, index, tokens, queue, 0.0)
        return wait

    def _try_learnt_now(
        self, options: Options, tokens: int, queue: str, now: float
    ) -> Reservation | float | None:
        """`try_now` once limits were learnt: effective limits, closed buckets skipped."""
        cooldowns = self._cooldowns_nowait
        acquire = self.acquire_nowait
        if acquire is None or (self._closable and cooldowns is None):
            return None
        wait = math.inf
        for index, buckets in enumerate(options):
            effective = [self.effective(b) for b in buckets]
            names = [closed_name(b.name) for b in effective if b.name in self._closable]
            closed = max(cooldowns(names, now)) if names and cooldowns is not None else 0.0
            if closed > 0.0:
                wait = min(wait, closed)
                continue
            got = acquire(effective, tokens, now)
            if isinstance(got, float):
                wait = min(wait, got)
            else:
                return Reservation(self, got, index, tokens, queue, 0.0)
        return wait

    async def reserve(
        self, options: Options, tokens: int, *, queue: str, max_wait: float, until: float
    ) -> Reservation | Refusal:
        """Admit `tokens` to the first option (a set of buckets charged together) with room,
        waiting in line for at most `max_wait` seconds and never past `until` (monotonic)."""
        start = self._mono()
        line = self._lines.get(queue)
        if line is None or not line.waiters:
            got = await self._attempt(options, tokens, queue, 0.0)
            if isinstance(got, Reservation):
                return got
            if got == math.inf or got > max_wait or start + got > until:
                return Refusal(got)
        else:
            ahead = max(line.head_until - start, 0.0)
            if ahead > max_wait or start + ahead > until:
                return Refusal(ahead)
        return await self._wait_in_line(options, tokens, queue, min(start + max_wait, until), start)

    async def peek(self, options: Options, tokens: int, queue: str) -> float:
        """Seconds until `tokens` would be admitted (0.0: now), changing nothing."""
        now = self._store_now()
        best = math.inf
        for buckets in options:
            effective = [self.effective(b) for b in buckets]
            closed = await self._closed_for(effective)
            # The store's dry run, never acquire-then-cancel: that charge would be seen,
            # for a moment, by every other process sharing the store.
            wait = max(closed, await self.store.peek(effective, tokens, now))
            best = min(best, wait)
        line = self._lines.get(queue)
        if line is not None and line.waiters:
            best = max(best, line.head_until - self._mono())
        return best

    def poke(self, queue: str) -> None:
        """Room may have freed in `queue`: wake its head now instead of at its computed time."""
        line = self._lines.get(queue)
        if line is not None and line.wake is not None and not line.wake.done():
            line.wake.set_result(None)

    async def _attempt(
        self, options: Options, tokens: int, queue: str, waited: float
    ) -> Reservation | float:
        now = self._store_now()
        wait = math.inf
        for index, buckets in enumerate(options):
            effective = [self.effective(b) for b in buckets] if self._tightened else buckets
            closed = await self._closed_for(effective) if self._closable else 0.0
            if closed > 0.0:
                wait = min(wait, closed)
                continue
            if self.acquire_nowait is not None:
                got = self.acquire_nowait(effective, tokens, now)
            else:
                got = await self.store.acquire(effective, tokens, now)
            if isinstance(got, float):
                wait = min(wait, got)
            else:
                return Reservation(self, got, index, tokens, queue, waited)
        return wait

    async def _closed_for(self, buckets: Sequence[Bucket]) -> float:
        names = [closed_name(b.name) for b in buckets if b.name in self._closable]
        if not names:
            return 0.0
        left = await self.store.cooldowns(names, self._store_now())
        return max(left)

    async def _wait_in_line(
        self, options: Options, tokens: int, queue: str, limit: float, start: float
    ) -> Reservation | Refusal:
        line = self._lines.get(queue)
        if line is None:
            line = self._lines[queue] = _Line()
        is_head = not line.waiters
        me = _Waiter(limit, None if is_head else asyncio.get_running_loop().create_future())
        line.waiters.append(me)
        try:
            if me.turn is not None and not await me.turn:
                return Refusal(max(line.head_until - self._mono(), 0.0))
            return await self._serve_head(line, me, options, tokens, queue, start)
        finally:
            self._leave(line, me)

    async def _serve_head(
        self,
        line: _Line,
        me: _Waiter,
        options: Options,
        tokens: int,
        queue: str,
        start: float,
    ) -> Reservation | Refusal:
        while True:
            now = self._mono()
            self._expel_expired(line, now)
            got = await self._attempt(options, tokens, queue, now - start)
            if isinstance(got, Reservation):
                return got
            if got == math.inf or now + got > me.limit:
                return Refusal(got)
            line.head_until = now + got
            # Wake in time for the first waiter behind whose own limit passes sooner.
            soonest_limit = min((w.limit for w in line.waiters if w is not me), default=math.inf)
            await self._sleep(line, max(min(got, soonest_limit - now), _MIN_SLEEP))

    def _expel_expired(self, line: _Line, now: float) -> None:
        for waiter in list(line.waiters):
            if waiter.turn is not None and waiter.limit < now and not waiter.turn.done():
                waiter.turn.set_result(False)
                line.waiters.remove(waiter)

    def _leave(self, line: _Line, me: _Waiter) -> None:
        was_head = bool(line.waiters) and line.waiters[0] is me
        try:
            line.waiters.remove(me)
        except ValueError:
            return
        if was_head:
            for waiter in line.waiters:
                if waiter.turn is not None and not waiter.turn.done():
                    waiter.turn.set_result(True)
                    break

    async def _sleep(self, line: _Line, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        wake: asyncio.Future[None] = loop.create_future()
        line.wake = wake
        sleeper: asyncio.Future[Any] = asyncio.ensure_future(self._clock.sleep(seconds))
        try:
            await asyncio.wait((sleeper, wake), return_when=asyncio.FIRST_COMPLETED)
        finally:
            line.wake = None
            if not sleeper.done():
                sleeper.cancel()
