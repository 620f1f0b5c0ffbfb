from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmroute.stores.window import DAY, MINUTE, Entry, SlidingWindow


def admit(window: SlidingWindow, cost: int, now: float) -> Entry:
    got = window.try_admit(cost, now)
    assert isinstance(got, Entry), f"expected admission at {now}, got wait {got}"
    return got


def refused(window: SlidingWindow, cost: int, now: float) -> float:
    got = window.try_admit(cost, now)
    assert isinstance(got, float), f"expected refusal at {now}"
    return got


def test_rpm_window_is_exactly_sixty_seconds() -> None:
    w = SlidingWindow(rpm=2, tpm=None, rpd=None, tpd=None)
    admit(w, 1, 0.0)
    admit(w, 1, 10.0)
    assert refused(w, 1, 59.999) == pytest.approx(0.001)
    # The request admitted at 0 counts until 60, exclusive.
    admit(w, 1, 60.0)
    assert refused(w, 1, 60.0) == pytest.approx(10.0)


def test_tpm_counts_tokens_and_waits_for_enough_to_expire() -> None:
    w = SlidingWindow(rpm=None, tpm=100, rpd=None, tpd=None)
    admit(w, 40, 0.0)
    admit(w, 40, 5.0)
    admit(w, 20, 6.0)
    # 50 more tokens need the first two entries (80 tokens) gone: at 65.
    assert refused(w, 50, 7.0) == pytest.approx(58.0)
    assert refused(w, 30, 7.0) == pytest.approx(53.0)


def test_request_above_tpm_never_fits() -> None:
    w = SlidingWindow(rpm=10, tpm=100, rpd=None, tpd=None)
    assert refused(w, 101, 0.0) == math.inf
    assert SlidingWindow(rpm=0, tpm=None, rpd=None, tpd=None).try_admit(1, 0.0) == math.inf


def test_day_windows() -> None:
    w = SlidingWindow(rpm=None, tpm=None, rpd=2, tpd=None)
    admit(w, 1, 0.0)
    admit(w, 1, 100.0)
    assert refused(w, 1, 200.0) == pytest.approx(DAY - 200.0)
    admit(w, 1, DAY)


def test_release_gives_the_charge_back() -> None:
    w = SlidingWindow(rpm=1, tpm=10, rpd=None, tpd=None)
    entry = admit(w, 5, 0.0)
    refused(w, 1, 1.0)
    w.release(entry)
    admit(w, 10, 1.0)


def test_settle_corrects_to_the_real_total() -> None:
    w = SlidingWindow(rpm=None, tpm=100, rpd=None, tpd=100)
    entry = admit(w, 80, 0.0)
    refused(w, 30, 1.0)
    w.settle(entry, 20)
    admit(w, 30, 1.0)
    assert w.usage(2.0) == (2, 50, 2, 50)


def test_settle_after_expiry_does_not_corrupt_the_minute_sum() -> None:
    w = SlidingWindow(rpm=None, tpm=100, rpd=None, tpd=1000)
    entry = admit(w, 50, 0.0)
    assert w.usage(MINUTE)[1] == 0
    w.settle(entry, 90)
    assert w.usage(MINUTE) == (0, 0, 1, 90)


def test_released_entries_are_compacted() -> None:
    w = SlidingWindow(rpm=5, tpm=None, rpd=10_000, tpd=None)
    keep = admit(w, 1, 0.0)
    for i in range(1000):
        e = admit(w, 1, float(i) / 100)
        other = admit(w, 1, float(i) / 100)
        w.release(e)  # not the newest: stays until compacted
        w.release(other)
    assert w.usage(10.0)[0] == 1
    assert len(w._day) < 50  # memory bounded by the limits, not the traffic
    w.release(keep)
    assert w.is_idle(10.0) or w.usage(10.0) == (0, 0, 0, 0)


@settings(max_examples=200, deadline=None)
@given(
    rpm=st.one_of(st.none(), st.integers(1, 8)),
    tpm=st.one_of(st.none(), st.integers(1, 400)),
    rpd=st.one_of(st.none(), st.integers(1, 30)),
    events=st.lists(
        st.tuples(
            st.floats(0, 200, allow_nan=False),  # gap before the arrival, seconds
            st.integers(1, 150),  # tokens
            st.booleans(),  # released afterwards?
        ),
        min_size=1,
        max_size=120,
    ),
)
def test_no_trailing_window_ever_exceeds_its_limit(
    rpm: int | None, tpm: int | None, rpd: int | None, events: list[tuple[float, int, bool]]
) -> None:
    w = SlidingWindow(rpm=rpm, tpm=tpm, rpd=rpd, tpd=None)
    admitted: list[tuple[float, int]] = []
    now = 0.0
    for gap, tokens, release in events:
        now += gap
        got = w.try_admit(tokens, now)
        if isinstance(got, Entry):
            if release:
                w.release(got)
            else:
                admitted.append((now, tokens))
        else:
            # A refusal must be honest: the wait is when it would fit.
            if got != math.inf:
                assert got >= 0.0
                probe = SlidingWindow(rpm=rpm, tpm=tpm, rpd=rpd, tpd=None)
                for t, c in admitted:
                    assert isinstance(probe.try_admit(c, t), Entry)
                # (a float sum can land a hair before the expiry, hence the microsecond)
                assert isinstance(probe.try_admit(tokens, now + got + 1e-6), Entry)
    # Check every trailing window that ends at an admission time.
    for end, _ in admitted:
        # t counts until t + 60 (resp. t + 24 h), exclusive, computed as such.
        minute = [(t, c) for t, c in admitted if t <= end < t + MINUTE]
        day = [(t, c) for t, c in admitted if t <= end < t + DAY]
        if rpm is not None:
            assert len(minute) <= rpm
        if tpm is not None:
            assert sum(c for _, c in minute) <= tpm
        if rpd is not None:
            assert len(day) <= rpd
