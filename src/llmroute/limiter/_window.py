"""Exact sliding windows, pure: every method takes the current time as an argument.

A request admitted at time t counts in every window that contains t: in the minute window
until t + 60 s and in the day window until t + 24 h, both exclusive. A request is admitted
at `now` only if, with it, the trailing minute holds at most `rpm` requests and `tpm` tokens
and the trailing day at most `rpd` requests and `tpd` tokens. Memory is bounded by the
limits: a window keeps only live entries younger than its span, plus released ones that are
compacted away once they outnumber the live ones.
"""

from __future__ import annotations

import math
from collections import deque

__all__ = ["DAY", "MINUTE", "Entry", "SlidingWindow"]

MINUTE = 60.0
DAY = 86_400.0
_INF = math.inf


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
    """The windows of one bucket (a model, or a model's key)."""

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
        "track_day",
        "track_minute",
    )

    def __init__(
        self, *, rpm: int | None, tpm: int | None, rpd: int | None, tpd: int | None
    ) -> None:
        self.rpm, self.tpm, self.rpd, self.tpd = rpm, tpm, rpd, tpd
        self.track_minute = rpm is not None or tpm is not None
        self.track_day = rpd is not None or tpd is not None
        self._minute: deque[Entry] = deque()
        self._day: deque[Entry] = deque()
        self._min_req = self._min_tok = self._day_req = self._day_tok = 0
        self._dead = 0

    def can_ever_fit(self, cost: int) -> bool:
        return not (
            self.rpm == 0
            or self.rpd == 0
            or (self.tpm is not None and cost > self.tpm)
            or (self.tpd is not None and cost > self.tpd)
        )

    def try_admit(self, cost: int, now: float) -> Entry | float:
        """Charge `cost` tokens at `now` and return the entry, or the seconds to wait.

        The wait is when the request would fit if nothing else changed; `inf` if never.
        Check and charge happen with no await in between, so this is atomic in asyncio.
        """
        self._prune(now)
        rpm, tpm, rpd, tpd = self.rpm, self.tpm, self.rpd, self.tpd
        if (
            (rpm is None or self._min_req < rpm)
            and (tpm is None or self._min_tok + cost <= tpm)
            and (rpd is None or self._day_req < rpd)
            and (tpd is None or self._day_tok + cost <= tpd)
        ):
            entry = Entry(self, now, cost)
            if self.track_minute:
                entry.in_minute = True
                self._minute.append(entry)
                self._min_req += 1
                self._min_tok += cost
            if self.track_day:
                entry.in_day = True
                self._day.append(entry)
                self._day_req += 1
                self._day_tok += cost
            return entry
        return self.wait_for(cost, now)

    def wait_for(self, cost: int, now: float) -> float:
        if not self.can_ever_fit(cost):
            return _INF
        wait = 0.0
        if self.rpm is not None and self._min_req >= self.rpm:
            wait = max(wait, _drop_requests(self._minute, self._min_req - self.rpm + 1) + MINUTE)
        if self.tpm is not None and self._min_tok + cost > self.tpm:
            wait = max(wait, _drop_tokens(self._minute, self._min_tok + cost - self.tpm) + MINUTE)
        if self.rpd is not None and self._day_req >= self.rpd:
            wait = max(wait, _drop_requests(self._day, self._day_req - self.rpd + 1) + DAY)
        if self.tpd is not None and self._day_tok + cost > self.tpd:
            wait = max(wait, _drop_tokens(self._day, self._day_tok + cost - self.tpd) + DAY)
        return max(wait - now, 0.0) if wait else 0.0

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
