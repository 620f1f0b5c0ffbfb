"""The walk: one request through its chain of candidates, shared by complete, stream and
explain.

For each candidate: screen (paid gate, availability, capability, context) -> key slot
(KeyPool: rotation, cooldowns, disabled keys) -> admission (FIFO, in the store) -> send,
under a wall-clock timeout -> on failure, the pure retry policy says what comes next.
One budget governs the whole call: `max_attempts` counts every request sent, the deadline
bounds waits, retries and fallbacks together.

A charge is given back only when the request provably never reached the provider: refused
before it was sent, or cancelled before the send began. Cancelled after, it stays.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from llmroute._admission import Admission, Reservation
from llmroute._candidate import Candidate
from llmroute._learning import Learner, Probe
from llmroute._pick import Picker
from llmroute._recorder import Call, Recorder
from llmroute._request import for_attempt
from llmroute._retry import (
    Decision,
    Failure,
    NextCandidate,
    NextKey,
    RandomSource,
    Retry,
    RetryState,
    attempt_floor,
    cooldown_seconds,
    decide,
)
from llmroute._watchdog import Watchdog
from llmroute.clock import Clock
from llmroute.errors import PaidModelBlockedError, ProviderUnavailableError, StoreError
from llmroute.fallback import COOLING, Failed, exhausted_error
from llmroute.providers.base import AttemptFailed, Provider, ProviderRequest
from llmroute.stores.base import StateStore
from llmroute.trace import Usage

__all__ = ["Screened", "Served", "Walk"]

_T = TypeVar("_T")
Send = Callable[[Provider, ProviderRequest, "str | None"], Awaitable[_T]]


@dataclass(slots=True)
class Served(Generic[_T]):
    result: _T
    slot: int
    reservation: Reservation | None
    started: float
    waited: float


SkipOutcome = Literal[
    "skipped_paid", "skipped_unavailable", "skipped_capability", "skipped_context"
]
#: why a candidate is skipped before anything is spent: (outcome, reason)
Screened = tuple[SkipOutcome, str]


class Walk:
    """The per-request machinery, with what it needs bound once at construction."""

    def __init__(
        self,
        *,
        store: StateStore,
        admission: Admission,
        recorder: Recorder,
        clock: Clock,
        mono: Callable[[], float],
        store_now: Callable[[], float],
        use_paid_models: bool,
        rng: RandomSource,
        learner: Learner | None = None,
    ) -> None:
        self.store = store
        self.admission = admission
        self.recorder = recorder
        self.clock = clock
        self.mono = mono
        self.store_now = store_now
        self.use_paid_models = use_paid_models
        self.rng = rng
        #: wall-clock limits for attempts and stream gaps
        self.watchdog = Watchdog()
        #: limits learnt from the providers' own reports (None: `learn_from_headers` off)
        self.learner = learner
        self.observe: Callable[[Candidate, int, object, Probe | None], Awaitable[None] | None] = (
            learner.observe if learner is not None else _nothing_to_learn
        )
        #: key slot and room for each attempt
        self.picker = Picker(
            store=store,
            admission=admission,
            recorder=recorder,
            mono=mono,
            store_now=store_now,
            learner=learner,
        )
        # What explain and key_status read, the way the walk reads it.
        self.cooldowns = self.picker.cooldowns
        self.options = self.picker.options
        self.wait_reason = self.picker.wait_reason

    # -- screening (shared with explain) -----------------------------------------------------

    def screen(self, cand: Candidate, needs: frozenset[str], estimate: int) -> Screened | None:
        """Why `cand` cannot take this request at all, or None."""
        if cand.paid and not self.use_paid_models:
            return "skipped_paid", "paid model; USE_PAID_MODELS is off"
        reason = cand.unavailable_reason()
        if reason:
            return "skipped_unavailable", reason
        if needs:
            lacking = cand.lacks(needs)
            if lacking:
                return (
                    "skipped_capability",
                    f"the model does not support {', '.join(sorted(lacking))}",
                )
        if cand.context_window is not None and estimate > cand.context_window:
            return (
                "skipped_context",
                f"about {estimate} tokens needed, over its context window of {cand.context_window}",
            )
        return None

    # -- the chain ---------------------------------------------------------------------------

    async def run(
        self,
        chain: Sequence[Candidate],
        call: Call,
        request: ProviderRequest,
        needs: frozenset[str],
        tokens: int,
        timeout: float | None,
        send: Send[_T],
    ) -> tuple[Candidate, Served[_T]]:
        """Try the chain's candidates in order until one is served; raise when none is.

        When every candidate ended cooling down and `on_limit: sleep` allows the wait, the
        chain is walked again once the soonest cooldown is over."""
        failures: list[Failed] = []
        single = len(chain) == 1
        passes = 0
        try:
            while True:
                for cand in chain:
                    if cand.pool is not None and not cand.pool.loaded:
                        await cand.pool.load()  # a shared store's disabled keys, once
                    skipped = self.screen(cand, needs, tokens)
                    if skipped is not None:
                        self._skip(call, cand, skipped, single, passes)
                        continue
                    now = self.mono()
                    # Both budget tests spelled out: `spent` is only called to name the one
                    # that ended the call.
                    if (call.sent >= call.max_attempts or now >= call.deadline_at) and call.spent(
                        now
                    ):
                        break
                    served = await self.serve(cand, call, request, tokens, timeout, send)
                    if not isinstance(served, Failed):
                        return cand, served
                    failures.append(served)
                    if call.spent_by is not None:
                        break
                if not await self._wait_for_cooldown(call, failures):
                    break
                failures = []
                passes += 1
        except StoreError as exc:
            raise StoreError(str(exc), call.attempts) from exc
        self.recorder.log_failure(call)
        raise exhausted_error(call, chain, failures)

    def _skip(
        self, call: Call, cand: Candidate, skipped: Screened, single: bool, passes: int
    ) -> None:
        if not passes:
            self.recorder.skip(call, cand, *skipped)
        if single:
            _raise_direct(cand, call, skipped)

    async def _wait_for_cooldown(self, call: Call, failures: list[Failed]) -> bool:
        pause = self._cooldown_pause(call, failures)
        if pause is None:
            return False
        await self.clock.sleep(pause)
        call.cooled += pause
        return True

    def _cooldown_pause(self, call: Call, failures: list[Failed]) -> float | None:
        if not failures or any(f.outcome not in COOLING for f in failures):
            return None
        waits = [f.retry_after for f in failures if f.retry_after is not None]
        if len(waits) != len(failures):
            return None
        pause = min(waits)
        allowed = min(f.max_wait for f in failures) - call.cooled
        if pause > allowed or self.mono() + pause >= call.deadline_at:
            return None
        if call.sent >= call.max_attempts:
            return None
        return max(pause, 0.001)

    def finish(
        self,
        cand: Candidate,
        call: Call,
        served: Served[Any],
        reported: Usage | None,
        request: ProviderRequest,
        tokens: int,
    ) -> tuple[Usage, float | None, Awaitable[None] | None]:
        """Settle a served request: correct the charge, write the ok row, count the usage
        (the estimate, marked so, when the provider reported none) and log the request.

        Returns the usage, the cost, and the charge correction still to await when the
        store could not make it at once (None for the memory store)."""
        if reported is None:
            prompt = request.prompt_estimate
            usage = Usage(
                prompt_tokens=prompt,
                completion_tokens=tokens - prompt,
                total_tokens=tokens,
                estimated=True,
            )
        else:
            usage = reported
        pending = None
        reservation = served.reservation
        if reservation is not None and not reservation.commit_now(usage.total_tokens):
            pending = reservation.commit(usage.total_tokens)
        waited = served.waited
        cost = self.recorder.ok(
            call,
            cand,
            served.slot,
            served.started,
            waited,
            self.wait_reason(cand, served.slot, waited) if waited else None,
            usage,
        )
        return usage, cost, pending

    # -- one candidate -----------------------------------------------------------------------

    def serve(
        self,
        cand: Candidate,
        call: Call,
        request: ProviderRequest,
        tokens: int,
        timeout: float | None,
        send: Send[_T],
    ) -> Awaitable[Served[_T] | Failed]:
        """Keys, admission and provider call for one candidate, retries included."""
        learner = self.learner
        if learner is None or learner.knows(cand):
            return self._serve(cand, call, request, tokens, timeout, send, None)
        return self._serve_cold(learner, cand, call, request, tokens, timeout, send)

    async def _serve_cold(
        self,
        learner: Learner,
        cand: Candidate,
        call: Call,
        request: ProviderRequest,
        tokens: int,
        timeout: float | None,
        send: Send[_T],
    ) -> Served[_T] | Failed:
        """`serve` while the provider's windows are unknown: one request goes alone (the
        probe) and the others wait for what its answer teaches."""
        seconds = timeout if timeout is not None else cand.provider_config.timeout
        # no longer than the attempt would have taken, nor past the call's deadline
        probe = await learner.gate(cand, min(seconds, call.deadline_at - self.mono()))
        try:
            return await self._serve(cand, call, request, tokens, timeout, send, probe)
        finally:
            learner.release(probe)

    async def _serve(
        self,
        cand: Candidate,
        call: Call,
        request: ProviderRequest,
        tokens: int,
        timeout: float | None,
        send: Send[_T],
        probe: Probe | None,
    ) -> Served[_T] | Failed:
        attempt_timeout = timeout if timeout is not None else cand.provider_config.timeout
        floor = attempt_floor(attempt_timeout, call.deadline)
        retries_used = 0
        last: Failed | None = None
        while True:
            now = self.mono()
            # Too little time left for an attempt ends the call as if the deadline had passed.
            if call.spent(now + floor):
                return last or Failed("timeout", None, call.budget_text())
            picked = self.picker.pick_now(cand, tokens)
            if picked is None:
                slow = await self.picker.pick(cand, call, tokens, now)
                if not isinstance(slow, tuple):
                    return slow or last or Failed("client_error", None, "every key was refused")
                picked = slow
                now = self.mono()
            slot, reservation, waited = picked
            pool = cand.pool
            if pool is not None and cand.rotates:
                try:
                    await pool.take(slot)
                except BaseException:
                    # Nothing was sent yet (cancelled, the store failed): the charge goes back.
                    if reservation is not None:
                        await reservation.cancel()
                    raise
            # The attempt's timeout, cut to what is left of the deadline.
            seconds = min(attempt_timeout, call.deadline_at - now)
            wire = _wire(request, cand.wire_model, seconds, first=not call.sent)
            call.sent += 1
            result = await self._send(
                cand, wire, cand.secrets[slot], reservation, send, seconds, slot, probe
            )
            if not isinstance(result, AttemptFailed):
                return Served(result, slot, reservation, now, waited)
            last = await self._failed(cand, call, slot, result, now, waited)
            step = await self._again(cand, call, slot, result, retries_used)
            if step is None:
                return last
            retries_used += step

    async def _again(
        self, cand: Candidate, call: Call, slot: int, exc: AttemptFailed, retries_used: int
    ) -> int | None:
        """Apply the retry policy: None to move on; else try this candidate again (after the
        backoff it asks for), counting 1 same-key retry, or 0 for the next key."""
        decision = self._decide(cand, call, slot, exc, retries_used)
        if isinstance(decision, Retry):
            await self.clock.sleep(decision.delay)
            return 1
        if isinstance(decision, NextKey):
            return 0
        if not isinstance(decision, NextCandidate):
            call.spent(math.inf)  # Stop: say which budget ended the call
        return None

    def _decide(
        self, cand: Candidate, call: Call, slot: int, exc: AttemptFailed, retries_used: int
    ) -> Decision:
        pool = cand.pool
        return decide(
            _failure(exc),
            RetryState(
                retries_left=cand.provider_config.retries - retries_used,
                attempts_left=call.max_attempts - call.sent,
                time_left=call.deadline_at - self.mono(),
                other_keys=pool is not None
                and _other_keys(pool.enabled_count(), slot, pool.disabled),
                max_wait=cand.max_wait,
                retry_number=retries_used + 1,
            ),
            self.rng,
        )

    async def _send(
        self,
        cand: Candidate,
        wire: ProviderRequest,
        key: str | None,
        reservation: Reservation | None,
        send: Send[_T],
        seconds: float,
        slot: int,
        probe: Probe | None,
    ) -> _T | AttemptFailed:
        """One request to the provider under a wall-clock timeout (headers and body); what
        its answer says about the provider's windows goes to the learner."""
        watchdog = self.watchdog
        limit = watchdog.arm(seconds)
        result: _T | AttemptFailed
        try:
            result = await send(cand.provider, wire, key)
        except AttemptFailed as exc:
            if not exc.reached and reservation is not None:
                await reservation.cancel()
            result = exc
        except asyncio.CancelledError:
            if not limit.fired:
                raise
            return AttemptFailed("timeout", f"no answer within {seconds:.3g}s")
        finally:
            watchdog.disarm(limit)
        if (
            probe is None
            and getattr(result, "ratelimit", None) is None
            and not isinstance(result, tuple)  # an opened stream's report is inside
        ):
            return result  # nothing to learn: no call at all
        learning = self.observe(cand, slot, result, probe)
        if learning is not None:
            await learning
        return result

    async def _failed(
        self,
        cand: Candidate,
        call: Call,
        slot: int,
        exc: AttemptFailed,
        started: float,
        waited: float,
    ) -> Failed:
        """Record a failed send and apply what it says about the key: cooled or disabled."""
        recorder = self.recorder
        message = recorder.redact(exc.message)
        recorder.row(
            call,
            cand,
            slot,
            exc.kind,
            status=exc.status,
            started=started,
            error=message,
            waited=waited,
            wait_reason=self.wait_reason(cand, slot, waited),
        )
        recorder.failed_send(cand)
        failed = Failed(exc.kind, exc.status, message)
        pool = cand.pool
        if exc.key_invalid and pool is not None:
            await pool.disable(slot, f"HTTP {exc.status}: key refused")
        if exc.kind == "rate_limited_remote":
            seconds = cooldown_seconds(
                exc.retry_after,
                exc.quota_reset_at,
                cand.provider_config.cooldown_seconds,
                self.clock.time(),
            )
            await self.store.set_cooldown(cand.cooldown_names[slot], seconds, self.store_now())
            if pool is not None:
                await pool.failed(slot)
            failed.retry_after = seconds
            failed.max_wait = cand.max_wait if cand.on_limit == "sleep" else 0.0
        return failed


def _nothing_to_learn(
    cand: Candidate, slot: int, result: object, probe: Probe | None
) -> Awaitable[None] | None:
    return None


def _wire(request: ProviderRequest, model: str, seconds: float, *, first: bool) -> ProviderRequest:
    """The request one attempt sends."""
    if not first:
        return for_attempt(request, model, seconds)
    # The call's first send: its request was built for this call and never handed out, so
    # it goes as it is (each later attempt gets its own copy).
    request.model = model
    request.timeout = seconds
    return request


def _failure(exc: AttemptFailed) -> Failure:
    return Failure(
        kind=exc.kind,
        status=exc.status,
        retry_after=exc.retry_after,
        key_invalid=exc.key_invalid,
        retryable=exc.retryable,
    )


def _other_keys(enabled: int, slot: int, disabled: frozenset[int]) -> bool:
    return enabled - (0 if slot in disabled else 1) > 0


def _raise_direct(cand: Candidate, call: Call, skipped: Screened) -> None:
    """A one-candidate request raises the skip's own error (paid, unavailable)."""
    outcome, reason = skipped
    if outcome == "skipped_paid":
        raise PaidModelBlockedError(
            f"{cand.id} is a paid model and paid models are off "
            "(set USE_PAID_MODELS=true or Router(use_paid_models=True))",
            call.attempts,
        )
    if outcome == "skipped_unavailable":
        raise ProviderUnavailableError(
            f"{cand.id} is unavailable: {reason} (`llmroute check` says what to set)",
            call.attempts,
        )
