"""One candidate, one request: limiter admission, key choice, the provider call and its
retries, and the bookkeeping every attempt leaves (trace row, usage, secrets scrubbed).

The Router walks a chain and asks the engine to serve each candidate in turn; everything
here runs per request, so it reads no file and builds nothing it could have built once.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

from llmroute._candidate import Candidate
from llmroute._request import for_attempt
from llmroute.clock import Clock
from llmroute.fallback import Failed
from llmroute.limiter.store import MemoryStore, StateStore, Ticket
from llmroute.providers.base import AttemptFailed, Provider, ProviderRequest
from llmroute.trace import Attempt, ModelUsage, Outcome, Usage

__all__ = ["Call", "Engine", "Served"]

logger = logging.getLogger("llmroute")

_ONE_SLOT: Final = (0,)
_NO_SLOT: Final = ()
_MIN_SLEEP = 0.001  # a float wait can round to zero; never spin on it

_T = TypeVar("_T")


@dataclass(slots=True)
class Served(Generic[_T]):
    result: _T
    slot: int
    ticket: Ticket | None
    started: float
    waited: float


class Call:
    """The budget and trace of one request."""

    __slots__ = ("attempts", "deadline_at", "max_attempts", "sent", "start")

    def __init__(self, start: float, max_attempts: int, deadline_at: float) -> None:
        self.start = start
        self.max_attempts = max_attempts
        self.deadline_at = deadline_at
        self.sent = 0
        self.attempts: list[Attempt] = []

    def spent(self, now: float) -> bool:
        return self.sent >= self.max_attempts or now >= self.deadline_at


class Engine:
    """The per-request machinery, with what it needs bound once at construction."""

    def __init__(
        self,
        *,
        store: StateStore,
        clock: Clock,
        mono: Callable[[], float],
        secrets: tuple[str, ...],
    ) -> None:
        self.store = store
        # The default store answers without I/O: skip a coroutine per call on the hot path.
        self.memory = store if isinstance(store, MemoryStore) else None
        self.clock = clock
        self.mono = mono
        self.wall_clock_store = store.uses_wall_clock
        self.store_now: Callable[[], float] = clock.time if self.wall_clock_store else mono
        # Longest first, so a key that contains another is scrubbed whole.
        self.secrets = tuple(sorted(set(secrets), key=len, reverse=True))
        self.rng = random.Random()
        #: model id -> [requests, prompt tokens, completion tokens, errors, cost]
        self.stats: dict[str, list[float]] = {}

    def usage(self) -> dict[str, ModelUsage]:
        return {
            model: ModelUsage(
                requests=int(s[0]),
                prompt_tokens=int(s[1]),
                completion_tokens=int(s[2]),
                errors=int(s[3]),
                cost=s[4],
            )
            for model, s in self.stats.items()
        }

    async def serve(
        self,
        cand: Candidate,
        call: Call,
        request: ProviderRequest,
        cost: int,
        timeout: float | None,
        send: Callable[[Provider, ProviderRequest, str | None], Awaitable[_T]],
    ) -> Served[_T] | Failed:
        """Limiter, key choice and provider call for one candidate, retries included."""
        clock = self.clock
        mono = self.mono
        store = self.store
        memory = self.memory
        ring = cand.keyring
        retries_left = cand.provider_config.retries
        attempt_timeout = timeout if timeout is not None else cand.provider_config.timeout
        wire_request = for_attempt(request, cand.wire_model, attempt_timeout)
        waited = 0.0
        last: Failed | None = None
        while True:
            now = mono()
            if call.spent(now):
                return last or Failed("timeout", None, "deadline or attempt budget spent")
            # Keys that may be used now: enabled (order) and not cooling down.
            if cand.multi_key:
                slots = ring.order()  # type: ignore[union-attr]
            else:
                slots = _ONE_SLOT if ring is None or ring.usable else _NO_SLOT
            free: list[int] = []
            soonest = math.inf
            store_now = self.store_now() if self.wall_clock_store else now
            for slot in slots:
                name = cand.cooldown_names[slot]
                until = (
                    memory.cooldown_until_nowait(name)
                    if memory is not None
                    else await store.cooldown_until(name)
                )
                if until <= store_now:
                    free.append(slot)
                else:
                    soonest = min(soonest, until - store_now)
            if not free:
                if not slots:
                    return last or Failed("client_error", None, "every key was refused")
                failed = Failed(
                    "keys_exhausted",
                    None,
                    f"all {len(slots)} usable keys are cooling down; the first frees in "
                    f"{soonest:.1f}s",
                    retry_after=soonest,
                )
                call.attempts.append(
                    self.attempt(cand, None, "keys_exhausted", None, now, failed.message, waited)
                )
                return failed
            # Admission: one atomic check-and-reserve per bucket.
            ticket: Ticket | None = None
            wait = 0.0
            slot = free[0]
            if cand.bucket is not None:
                got = (
                    memory.acquire_nowait(cand.bucket, cost, store_now)
                    if memory is not None
                    else await store.acquire(cand.bucket, cost, store_now)
                )
                if isinstance(got, float):
                    wait = got
                else:
                    ticket = got
            elif cand.key_buckets is not None:
                wait = math.inf
                for candidate_slot in free:
                    bucket = cand.key_buckets[candidate_slot]
                    got = (
                        memory.acquire_nowait(bucket, cost, store_now)
                        if memory is not None
                        else await store.acquire(bucket, cost, store_now)
                    )
                    if isinstance(got, float):
                        wait = min(wait, got)
                    else:
                        ticket, slot = got, candidate_slot
                        break
            if ticket is None and (cand.bucket is not None or cand.key_buckets is not None):
                if (
                    cand.on_limit == "sleep"
                    and waited + wait <= cand.max_wait
                    and now + wait < call.deadline_at
                ):
                    pause = max(wait, _MIN_SLEEP)
                    logger.debug("%s: limiter full, waiting %.3fs", cand.id, pause)
                    await clock.sleep(pause)
                    waited += pause
                    continue
                failed = Failed(
                    "rate_limited_local",
                    None,
                    "local limit reached"
                    + (
                        ", the request can never fit"
                        if wait == math.inf
                        else f"; room in {wait:.1f}s"
                    ),
                    retry_after=wait,
                )
                call.attempts.append(
                    self.attempt(
                        cand, None, "rate_limited_local", None, now, failed.message, waited
                    )
                )
                return failed
            # Send.
            if ring is not None:
                ring.take(slot)
            key = cand.secrets[slot]
            remaining = call.deadline_at - now
            this_timeout = attempt_timeout if attempt_timeout < remaining else remaining
            if this_timeout != wire_request.timeout:
                wire_request = for_attempt(wire_request, cand.wire_model, this_timeout)
            call.sent += 1
            started = mono()
            try:
                result = await send(cand.provider, wire_request, key)
            except AttemptFailed as exc:
                if ticket is not None and not exc.reached:
                    await store.release(ticket)
                message = self.scrub(exc.message)
                self.count(cand, error=True)
                call.attempts.append(
                    self.attempt(cand, slot, exc.kind, exc.status, started, message, waited)
                )
                logger.debug(
                    "%s %s: %s (%s)", cand.id, cand.slot_labels[slot] or "", exc.kind, message
                )
                waited = 0.0
                last = Failed(exc.kind, exc.status, message)
                if exc.key_invalid and ring is not None:
                    ring.disable(slot, f"HTTP {exc.status}: key refused")
                    continue
                if exc.kind == "rate_limited_remote":
                    hint = (
                        exc.retry_after
                        if exc.retry_after is not None
                        else cand.provider_config.cooldown_seconds
                    )
                    if exc.quota_reset_at is not None:
                        hint = max(exc.quota_reset_at - clock.time(), hint)
                    await store.set_cooldown(cand.cooldown_names[slot], self.store_now() + hint)
                    if ring is not None:
                        ring.failed(slot)
                    last.retry_after = hint
                    if ring is not None and len(ring.order()) > 1:
                        continue
                    return last
                if exc.retryable and retries_left > 0:
                    retries_left -= 1
                    backoff = self.backoff(cand, retries_left, exc.retry_after)
                    if backoff is not None and mono() + backoff < call.deadline_at:
                        await clock.sleep(backoff)
                        continue
                return last
            except BaseException:
                # Cancelled (or a bug): the charge goes back, nothing is lost.
                if ticket is not None:
                    await store.release(ticket)
                raise
            return Served(result, slot, ticket, started, waited)

    def backoff(self, cand: Candidate, retries_left: int, hint: float | None) -> float | None:
        """Seconds before the next same-candidate retry, or None to move on instead."""
        if hint is not None:
            # A long hint is a rate limit in disguise: the next candidate beats a blocking sleep.
            return hint if hint <= cand.max_wait else None
        from tenacity import RetryCallState, wait_exponential

        state = RetryCallState(None, None, (), {})  # type: ignore[arg-type]
        state.attempt_number = cand.provider_config.retries - retries_left
        base = wait_exponential(multiplier=0.25, max=8.0)(state)
        return float(base) + self.rng.uniform(0.0, 0.25)

    def usage_of(
        self, cand: Candidate, reported: Usage | None, request: ProviderRequest, cost: int
    ) -> Usage:
        """The usage to report (the estimate when the provider gave none), counted."""
        if reported is None:
            prompt_est = request.prompt_estimate
            usage = Usage(
                prompt_tokens=prompt_est,
                completion_tokens=cost - prompt_est,
                total_tokens=cost,
                estimated=True,
            )
        else:
            usage = reported
        self.count(
            cand,
            error=False,
            prompt=usage.prompt_tokens,
            completion=usage.completion_tokens,
        )
        return usage

    # -- bookkeeping ------------------------------------------------------------------------

    def count(self, cand: Candidate, *, error: bool, prompt: int = 0, completion: int = 0) -> None:
        stats = self.stats.get(cand.id)
        if stats is None:
            stats = self.stats[cand.id] = [0, 0, 0, 0, 0.0]
        if error:
            stats[0] += 1
            stats[3] += 1
            return
        stats[0] += 1
        stats[1] += prompt
        stats[2] += completion
        stats[4] += (prompt * cand.price_in + completion * cand.price_out) / 1_000_000

    def attempt(
        self,
        cand: Candidate,
        slot: int | None,
        outcome: Outcome,
        status: int | None,
        started: float,
        error: str | None,
        waited: float = 0.0,
    ) -> Attempt:
        return Attempt(
            model=cand.id,
            provider=cand.provider_name,
            key=cand.slot_labels[slot] if slot is not None else None,
            outcome=outcome,
            status=status,
            waited_s=waited,
            latency_ms=(self.mono() - started) * 1000.0,
            error=error,
        )

    def record_ok(self, cand: Candidate, call: Call, served: Served[Any], usage: Usage) -> float:
        latency = (self.mono() - served.started) * 1000.0
        call.attempts.append(
            Attempt(
                model=cand.id,
                provider=cand.provider_name,
                key=cand.slot_labels[served.slot],
                outcome="ok",
                status=200 if cand.provider_config.uses_keys else None,
                waited_s=served.waited,
                latency_ms=latency,
            )
        )
        return latency

    def scrub(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, "***")
        return text
