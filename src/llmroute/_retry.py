"""What to do after a failed attempt: a pure decision over the failure and the budget left.

`decide(failure, state)` answers `Retry(delay)` (same candidate, same key, after `delay`
seconds), `NextKey()` (same candidate, the next usable key, at once), `NextCandidate()` or
`Stop()` (the call's budget is spent). It reads no clock and draws jitter from the random
source it is given, so every row of its table can be tested exactly.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Final, Protocol

__all__ = [
    "BACKOFF_BASE",
    "BACKOFF_MAX",
    "JITTER",
    "MIN_ATTEMPT_SECONDS",
    "Decision",
    "Failure",
    "NextCandidate",
    "NextKey",
    "Retry",
    "RetryState",
    "Stop",
    "attempt_floor",
    "backoff",
    "cooldown_seconds",
    "decide",
]

#: first same-candidate retry waits this long, doubling per retry up to BACKOFF_MAX
BACKOFF_BASE: Final = 0.25
BACKOFF_MAX: Final = 8.0
#: up to this many seconds of random jitter on top, so synchronised clients drift apart
JITTER: Final = 0.25
#: no attempt starts with less time than this left before the deadline (see attempt_floor)
MIN_ATTEMPT_SECONDS: Final = 0.05


class RandomSource(Protocol):
    def random(self) -> float: ...


@dataclass(frozen=True, slots=True)
class Failure:
    """How one attempt failed, as far as the decision needs to know."""

    kind: str
    status: int | None = None
    #: the provider's hint in seconds (Retry-After, RetryInfo)
    retry_after: float | None = None
    #: the provider refused the key itself (401/403, API_KEY_INVALID)
    key_invalid: bool = False
    #: transport errors, timeouts and 5xx are worth another try on the same candidate
    retryable: bool = False


@dataclass(frozen=True, slots=True)
class RetryState:
    """The budget left for the call and for this candidate."""

    #: same-candidate retries left (the provider's `retries`, minus those used)
    retries_left: int
    #: requests the call may still send (`max_attempts` minus those sent)
    attempts_left: int
    #: seconds until the call's deadline (inf without one)
    time_left: float
    #: another enabled key of this candidate exists besides the one that failed
    other_keys: bool
    #: the longest hint worth sleeping for instead of moving on
    max_wait: float
    #: 1 for the first retry of this candidate, 2 for the second ...
    retry_number: int = 1


@dataclass(frozen=True, slots=True)
class Retry:
    delay: float


@dataclass(frozen=True, slots=True)
class NextKey:
    pass


@dataclass(frozen=True, slots=True)
class NextCandidate:
    pass


@dataclass(frozen=True, slots=True)
class Stop:
    pass


Decision = Retry | NextKey | NextCandidate | Stop

_NEXT_KEY: Final = NextKey()
_NEXT_CANDIDATE: Final = NextCandidate()
_STOP: Final = Stop()
_RNG: Final = random.Random()


def decide(failure: Failure, state: RetryState, rng: RandomSource = _RNG) -> Decision:
    """The next step after `failure`, given what is left of the budget."""
    if state.attempts_left <= 0 or state.time_left <= 0.0:
        return _STOP
    if failure.key_invalid or failure.kind == "rate_limited_remote":
        # The key (or the model on it) is out for a while; the request itself was fine.
        return _NEXT_KEY if state.other_keys else _NEXT_CANDIDATE
    if not failure.retryable or state.retries_left <= 0:
        return _NEXT_CANDIDATE
    if failure.retry_after is not None:
        if failure.retry_after > state.max_wait:
            # A long hint is a rate limit in disguise: the next candidate beats a long sleep.
            return _NEXT_CANDIDATE
        delay = failure.retry_after
    else:
        delay = backoff(state.retry_number, rng)
    if delay >= state.time_left:
        return _NEXT_CANDIDATE
    return Retry(delay)


def attempt_floor(attempt_timeout: float, deadline: float | None) -> float:
    """The least time left before the deadline worth starting an attempt with: 50 ms, or
    a tenth of the attempt timeout or of the deadline when that is smaller (a call with a
    100 ms deadline still gets its first attempt). With less, an attempt could only end in
    "no answer within 0.002s"; the call ends as budget-spent instead."""
    floor = min(MIN_ATTEMPT_SECONDS, attempt_timeout / 10)
    return floor if deadline is None else min(floor, deadline / 10)


def backoff(retry_number: int, rng: RandomSource = _RNG) -> float:
    """Exponential backoff with jitter: 0.25 s, 0.5 s, 1 s ... up to 8 s, plus 0-0.25 s."""
    exponent = min(max(retry_number - 1, 0), 16)
    return min(BACKOFF_BASE * 2.0**exponent, BACKOFF_MAX) + rng.random() * JITTER


def cooldown_seconds(
    retry_after: float | None, quota_reset_at: float | None, default: float, wall_now: float
) -> float:
    """How long a 429 cools its key (or model): the hint, else the provider's default; a
    daily quota cools until it resets, and never for less than the hint."""
    seconds = retry_after if retry_after is not None else default
    if quota_reset_at is not None:
        seconds = max(quota_reset_at - wall_now, seconds)
    return seconds
