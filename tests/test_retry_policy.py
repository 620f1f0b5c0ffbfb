"""The retry policy as a table: every failure kind x every budget state -> one decision."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from llmroute._retry import (
    BACKOFF_BASE,
    JITTER,
    Decision,
    Failure,
    NextCandidate,
    NextKey,
    Retry,
    RetryState,
    Stop,
    backoff,
    cooldown_seconds,
    decide,
)


class FixedRandom:
    def __init__(self, value: float) -> None:
        self.value = value

    def random(self) -> float:
        return self.value


HALF = FixedRandom(0.5)
#: the first retry's delay with the fixed random source
FIRST = BACKOFF_BASE + 0.5 * JITTER

FAILURES = {
    "timeout": Failure("timeout", retryable=True),
    "server_error": Failure("server_error", status=503, retryable=True),
    "transport_error": Failure("transport_error", retryable=True),
    "server_error_hint_2s": Failure("server_error", status=503, retry_after=2.0, retryable=True),
    "server_error_hint_60s": Failure("server_error", status=503, retry_after=60.0, retryable=True),
    "client_error": Failure("client_error", status=400),
    "key_invalid": Failure("client_error", status=401, key_invalid=True),
    "rate_limited_remote": Failure("rate_limited_remote", status=429, retry_after=5.0),
}

FRESH = RetryState(
    retries_left=2, attempts_left=5, time_left=math.inf, other_keys=True, max_wait=10.0
)
STATES = {
    "fresh": FRESH,
    "no_retries_left": replace(FRESH, retries_left=0),
    "no_other_key": replace(FRESH, other_keys=False),
    "attempts_spent": replace(FRESH, attempts_left=0),
    "deadline_passed": replace(FRESH, time_left=0.0),
    "deadline_close": replace(FRESH, time_left=0.1),
}

R1 = Retry(FIRST)
R2 = Retry(2.0)
NK = NextKey()
NC = NextCandidate()
ST = Stop()

# failure -> decision per state, in the order of STATES
TABLE: dict[str, tuple[Decision, ...]] = {
    #                       fresh no_retries no_other_key attempts deadline close
    "timeout": (R1, NC, R1, ST, ST, NC),
    "server_error": (R1, NC, R1, ST, ST, NC),
    "transport_error": (R1, NC, R1, ST, ST, NC),
    "server_error_hint_2s": (R2, NC, R2, ST, ST, NC),
    "server_error_hint_60s": (NC, NC, NC, ST, ST, NC),
    "client_error": (NC, NC, NC, ST, ST, NC),
    "key_invalid": (NK, NK, NC, ST, ST, NK),
    "rate_limited_remote": (NK, NK, NC, ST, ST, NK),
}


def test_the_table_covers_every_failure_kind_and_state() -> None:
    kinds = {f.kind for f in FAILURES.values()}
    assert kinds == {
        "timeout",
        "server_error",
        "transport_error",
        "client_error",
        "rate_limited_remote",
    }
    assert set(TABLE) == set(FAILURES)
    assert all(len(row) == len(STATES) for row in TABLE.values())


@pytest.mark.parametrize(
    ("failure", "state", "expected"),
    [
        pytest.param(FAILURES[f], STATES[s], TABLE[f][i], id=f"{f}-{s}")
        for f in TABLE
        for i, s in enumerate(STATES)
    ],
)
def test_decision(failure: Failure, state: RetryState, expected: Decision) -> None:
    assert decide(failure, state, HALF) == expected


def test_backoff_doubles_up_to_its_cap_plus_jitter() -> None:
    none, full = FixedRandom(0.0), FixedRandom(0.999999)
    assert [backoff(n, none) for n in (1, 2, 3, 4, 10, 100)] == [0.25, 0.5, 1.0, 2.0, 8.0, 8.0]
    assert backoff(1, full) == pytest.approx(0.25 + JITTER, abs=1e-5)
    state = replace(FRESH, retry_number=3)
    assert decide(FAILURES["timeout"], state, none) == Retry(1.0)


def test_jitter_comes_from_the_injected_source() -> None:
    delays = {decide(FAILURES["timeout"], FRESH, FixedRandom(v)) for v in (0.0, 0.2, 0.9)}
    assert len(delays) == 3


def test_cooldown_is_the_hint_else_the_default_and_a_quota_lasts_until_reset() -> None:
    assert cooldown_seconds(7.0, None, 60.0, 1000.0) == 7.0
    assert cooldown_seconds(None, None, 60.0, 1000.0) == 60.0
    assert cooldown_seconds(None, 4600.0, 60.0, 1000.0) == 3600.0
    # A reset a moment away still cools for at least the hint.
    assert cooldown_seconds(None, 1010.0, 60.0, 1000.0) == 60.0
