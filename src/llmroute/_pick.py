"""Key slot and room: which key a request uses and the charge it is admitted with.

The walk asks `pick_now` first (no coroutine: the memory store answers at once, a key is
free and there is room), then `pick` (rotation through a shared store, waiting in line for
room, or ending the candidate as `keys_exhausted` / `rate_limited_local` with its trace
row). Limits learnt from the providers replace the configured bucket options when a
learner is present.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Final

from llmroute._admission import Admission, Refusal, Reservation
from llmroute._candidate import Candidate
from llmroute._recorder import Call, Recorder
from llmroute.fallback import Failed
from llmroute.stores.base import Bucket, StateStore

if TYPE_CHECKING:
    from llmroute._learning import Learner

__all__ = ["Picked", "Picker"]

#: the key slot, the admitted charge (None without limits) and the seconds waited for it
Picked = tuple[int, Reservation | None, float]
_ONE_SLOT: Final = [0]


class Picker:
    """Chooses the key slot and admits the charge for one attempt of a candidate."""

    def __init__(
        self,
        *,
        store: StateStore,
        admission: Admission,
        recorder: Recorder,
        mono: Callable[[], float],
        store_now: Callable[[], float],
        learner: Learner | None,
    ) -> None:
        self.store = store
        self.admission = admission
        self.recorder = recorder
        self.mono = mono
        self.store_now = store_now
        self.learner = learner
        self._cooldowns_nowait: Callable[[Sequence[str], float], list[float]] | None = getattr(
            store, "cooldowns_nowait", None
        )

    async def cooldowns(self, cand: Candidate, slots: Sequence[int]) -> list[float]:
        names = [cand.cooldown_names[s] for s in slots]
        if self._cooldowns_nowait is not None:
            return self._cooldowns_nowait(names, self.store_now())
        return await self.store.cooldowns(names, self.store_now())

    def wait_reason(self, cand: Candidate, slot: int | None, waited: float) -> str | None:
        """Why a trace row's `waited_s` was waited (None when nothing was)."""
        if not waited:
            return None
        if self.learner is not None:
            return self.learner.wait_reason(cand, slot, waited)
        return "the configured limit"

    def options(self, cand: Candidate) -> tuple[Sequence[Sequence[Bucket]], bool]:
        """The bucket options `cand` is admitted against, and whether they are per key:
        the configured ones, or those learnt from the provider."""
        learner = self.learner
        if learner is None:
            return cand.bucket_options, cand.per_key
        return learner.options(cand)

    def pick_now(self, cand: Candidate, tokens: int) -> Picked | None:
        """`pick` without a coroutine, for a store that answers at once and a key free and
        room now; None: ask `pick`."""
        cooldowns = self._cooldowns_nowait
        if cooldowns is None:
            return None
        pool = cand.pool
        if pool is None or not cand.rotates:  # `rotates`: the pool has several keys
            return self._pick_only_slot(cand, tokens, cooldowns)
        if self.store.shared:
            return None
        slots = pool.order_now()
        names = cand.cooldown_names
        left = cooldowns([names[s] for s in slots], self.store_now())
        free = [s for s, seconds in zip(slots, left, strict=True) if seconds <= 0.0]
        if not free:
            return None
        all_options, per_key = self.options(cand)
        if not all_options:
            return free[0], None, 0.0
        options = [all_options[s] for s in free] if per_key else all_options
        got = self.admission.try_now(options, tokens, cand.id)
        if not isinstance(got, Reservation):
            return None
        return (free[got.option] if per_key else free[0]), got, 0.0

    def _pick_only_slot(
        self,
        cand: Candidate,
        tokens: int,
        cooldowns: Callable[[Sequence[str], float], list[float]],
    ) -> Picked | None:
        # A provider with one key (or none): nothing to choose, only cooldown and room.
        pool = cand.pool
        if pool is not None and not (pool.usable and pool.loaded):
            return None
        if cooldowns(cand.cooldown_names, self.store_now())[0] > 0.0:
            return None
        learner = self.learner
        options = cand.bucket_options if learner is None else learner.options(cand)[0]
        if not options:
            return 0, None, 0.0
        got = self.admission.try_now(options, tokens, cand.id)
        return (0, got, 0.0) if isinstance(got, Reservation) else None

    async def pick(
        self, cand: Candidate, call: Call, tokens: int, now: float
    ) -> Picked | Failed | None:
        """The key slot and the admitted charge, or how the candidate ends (a row is written),
        or None when no key is left at all."""
        pool = cand.pool
        if pool is None:
            slots = _ONE_SLOT
        elif self.store.shared:
            slots = await pool.order()
        else:
            slots = pool.order_now()
        if not slots:
            return None
        left = await self.cooldowns(cand, slots)
        free = [s for s, seconds in zip(slots, left, strict=True) if seconds <= 0.0]
        if not free:
            soonest = min(left)
            message = (
                f"all {len(slots)} usable keys are cooling down; the first frees in {soonest:.1f}s"
            )
            self.recorder.row(call, cand, None, "keys_exhausted", started=now, error=message)
            return Failed(
                "keys_exhausted",
                None,
                message,
                retry_after=soonest,
                max_wait=cand.max_wait if cand.on_limit == "sleep" else 0.0,
            )
        options, per_key = self.options(cand)
        if not options:
            return free[0], None, 0.0
        got = await self._admit(cand, call, free, tokens, options, per_key)
        if isinstance(got, Refusal):
            waited = self.mono() - now
            message = "local limit reached" + (
                ", the request can never fit"
                if got.wait == math.inf
                else f"; room in {got.wait:.1f}s"
            )
            self.recorder.row(
                call,
                cand,
                None,
                "rate_limited_local",
                started=now,
                error=message,
                waited=waited,
                wait_reason=self.wait_reason(cand, None, waited),
            )
            return Failed("rate_limited_local", None, message, retry_after=got.wait)
        slot = free[got.option] if per_key else free[0]
        return slot, got, got.waited

    async def _admit(
        self,
        cand: Candidate,
        call: Call,
        free: list[int],
        tokens: int,
        all_options: Sequence[Sequence[Bucket]],
        per_key: bool,
    ) -> Reservation | Refusal:
        options = [all_options[s] for s in free] if per_key else all_options
        admission = self.admission
        got = admission.try_now(options, tokens, cand.id)
        if isinstance(got, Reservation):
            return got
        sleeps = cand.on_limit == "sleep"
        if got is not None and (not sleeps or got == math.inf or got > cand.max_wait):
            return Refusal(got)
        return await admission.reserve(
            options,
            tokens,
            queue=cand.id,
            max_wait=cand.max_wait if sleeps else 0.0,
            until=call.deadline_at,
        )
