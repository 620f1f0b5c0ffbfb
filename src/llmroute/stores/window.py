"""Exact sliding windows, pure: every method takes the current time as an argument.

A request admitted at time t counts in every window that contains t: in the minute window
until t + 60 s and in the day window until t + 24 h, both exclusive. A request is admitted
at `now` only if, with it, the trailing minute holds at most `rpm` requests and `tpm` tokens
and the trailing day at most `rpd` requests and `tpd` tokens. A window keeps only live
entries younger than its span, plus released ones that are compacted away once they
outnumber the live ones.
"""

from __future__ import annotations

import math
from collections import deque

__all__ = ["DAY", "MINUTE", "Entry", "SlidingWindow"]

MINUTE = 60.0
DAY = 86_400.0
_INF = math.inf
#: the shortest wait a refusal reports
_MIN_WAIT = 1e-6


class Entry:
    """One admitted request: when, how many tokens it is charged, and where it still counts."""

    __slots__ = ("in_day", "in_minute", "live", "t", "tokens", "window")

    def __init__(self, window: SlidingWindow, t: float, tokens: int) -> None:
        self.window = window
        self.t = t
        self.tokens = tokens
        self.live = True
        self.in_minute = False
        self.in_day = False


class SlidingWindow:
    """The history of one bucket (a model, or a model's key), and optionally its own limits.

    The history does not depend on the limits: `wait` takes them per call, so a limit
    tightened between two calls applies at once to what is already recorded. The minute
    history is always kept (it is bounded by one minute of traffic); the day history only
    for charges made while the bucket has a day limit (`charge(..., day=True)`), because a
    day of entries is a real cost for a bucket that needs none.
    The limits given at construction serve `try_admit`, the single-bucket shortcut.
    """

    __slots__ = (
        "_day",
        "_day_req",
        "_day_tok",
        "_dead",
        "_min_req",
        "_min_tok",
        "_minute",
        "rpd",
        "rpm",
        "tpd",
        "tpm",
    )

    def __init__(
        self,
        *,
        rpm: int | None = None,
        tpm: int | None = None,
        rpd: int | None = None,
        tpd: int | None = None,
    ) -> None:
        self.rpm, self.tpm, self.rpd, self.tpd = rpm, tpm, rpd, tpd
        self._minute: deque[Entry] = deque()
        self._day: deque[Entry] = deque()
        self._min_req = self._min_tok = self._day_req = self._day_tok = 0
        self._dead = 0

    def can_ever_fit(self, cost: int) -> bool:
        return _can_ever_fit(cost, self.rpm, self.tpm, self.rpd, self.tpd)

    def try_admit(self, cost: int, now: float) -> Entry | float:
        """Charge `cost` tokens at `now` under the window's own limits and return the entry,
        or the seconds to wait (`inf` if never).

        Check and charge happen with no await in between, so this is atomic in asyncio.
        """
        rpd, tpd = self.rpd, self.tpd
        wait = self.wait(cost, now, self.rpm, self.tpm, rpd, tpd)
        if wait:
            return wait
        return self.charge(cost, now, day=rpd is not None or tpd is not None)

    def wait(
        self,
        cost: int,
        now: float,
        rpm: int | None,
        tpm: int | None,
        rpd: int | None,
        tpd: int | None,
    ) -> float:
        """0.0 when a request of `cost` tokens fits at `now` under these limits; else the
        seconds until it would if nothing else changed (`inf` if it never can)."""
        self._prune(now)
        if (
            (rpm is None or self._min_req < rpm)
            and (tpm is None or self._min_tok + cost <= tpm)
            and (rpd is None or self._day_req < rpd)
            and (tpd is None or self._day_tok + cost <= tpd)
        ):
            return 0.0
        if not _can_ever_fit(cost, rpm, tpm, rpd, tpd):
            return _INF
        # Refused means a positive wait: 0.0 would read as "fits".
        return max(self._free_at(cost, rpm, tpm, rpd, tpd) - now, _MIN_WAIT)

    def _free_at(
        self, cost: int, rpm: int | None, tpm: int | None, rpd: int | None, tpd: int | None
    ) -> float:
        """When enough of the history has expired for the request to fit."""
        until = 0.0
        if rpm is not None and self._min_req >= rpm:
            until = max(until, _drop_requests(self._minute, self._min_req - rpm + 1) + MINUTE)
        if tpm is not None and self._min_tok + cost > tpm:
            until = max(until, _drop_tokens(self._minute, self._min_tok + cost - tpm) + MINUTE)
        if rpd is not None and self._day_req >= rpd:
            until = max(until, _drop_requests(self._day, self._day_req - rpd + 1) + DAY)
        if tpd is not None and self._day_tok + cost > tpd:
            until = max(until, _drop_tokens(self._day, self._day_tok + cost - tpd) + DAY)
        return until

    def wait_for(self, cost: int, now: float) -> float:
        """`wait` under the window's own limits."""
        return self.wait(cost, now, self.rpm, self.tpm, self.rpd, self.tpd)

    def charge(self, cost: int, now: float, *, day: bool) -> Entry:
        """Record an admitted request; `wait` must have said it fits."""
        entry = Entry(self, now, cost)
        entry.in_minute = True
        self._minute.append(entry)
        self._min_req += 1
        self._min_tok += cost
        if day:
            entry.in_day = True
            self._day.append(entry)
            self._day_req += 1
            self._day_tok += cost
        return entry

    def settle(self, entry: Entry, tokens: int) -> None:
        """Correct a live entry's charge to the real total."""
        if not entry.live:
            return
        delta = tokens - entry.tokens
        entry.tokens = tokens
        if entry.in_minute:
            self._min_tok += delta
        if entry.in_day:
            self._day_tok += delta

    def release(self, entry: Entry) -> None:
        """Give a charge back: the request never reached the provider."""
        if not entry.live:
            return
        entry.live = False
        if entry.in_minute:
            self._min_req -= 1
            self._min_tok -= entry.tokens
        if entry.in_day:
            self._day_req -= 1
            self._day_tok -= entry.tokens
        entry.tokens = 0
        # The common case is giving back the newest charge: drop it outright.
        if entry.in_minute and self._minute[-1] is entry:
            self._minute.pop()
            entry.in_minute = False
        if entry.in_day and self._day[-1] is entry:
            self._day.pop()
            entry.in_day = False
        if entry.in_minute or entry.in_day:
            self._dead += 1
            if self._dead > 16 and self._dead > self._min_req + self._day_req:
                self._compact()

    def usage(self, now: float) -> tuple[int, int, int, int]:
        """(requests, tokens) in the trailing minute and day, for reports and tests."""
        self._prune(now)
        return self._min_req, self._min_tok, self._day_req, self._day_tok

    def is_idle(self, now: float) -> bool:
        self._prune(now)
        return not self._minute and not self._day

    def _prune(self, now: float) -> None:
        minute = self._minute
        while minute and minute[0].t + MINUTE <= now:
            entry = minute.popleft()
            entry.in_minute = False
            if entry.live:
                self._min_req -= 1
                self._min_tok -= entry.tokens
            elif not entry.in_day:
                self._dead -= 1
        day = self._day
        while day and day[0].t + DAY <= now:
            entry = day.popleft()
            entry.in_day = False
            if entry.live:
                self._day_req -= 1
                self._day_tok -= entry.tokens
            elif not entry.in_minute:
                self._dead -= 1

    def _compact(self) -> None:
        for entries in (self._minute, self._day):
            live = [e for e in entries if e.live]
            for e in entries:
                if not e.live:
                    e.in_minute = e.in_day = False
            entries.clear()
            entries.extend(live)
        self._dead = 0


def _can_ever_fit(
    cost: int, rpm: int | None, tpm: int | None, rpd: int | None, tpd: int | None
) -> bool:
    return not (
        rpm == 0 or rpd == 0 or (tpm is not None and cost > tpm) or (tpd is not None and cost > tpd)
    )


def _drop_requests(entries: deque[Entry], count: int) -> float:
    """Admission time of the `count`-th oldest live entry (it must expire first)."""
    seen = 0
    for entry in entries:
        if entry.live:
            seen += 1
            if seen >= count:
                return entry.t
    return entries[-1].t if entries else 0.0


def _drop_tokens(entries: deque[Entry], excess: int) -> float:
    """Admission time of the oldest entry whose expiry frees at least `excess` tokens."""
    freed = 0
    for entry in entries:
        if entry.live:
            freed += entry.tokens
            if freed >= excess:
                return entry.t
    return entries[-1].t if entries else 0.0
