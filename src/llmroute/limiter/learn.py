"""What a provider says about its own rate-limit windows, read from its answers. Pure.

Two sources:

- OpenAI-compatible answers (success or 429) carry headers. The suffixed form
  `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` (Groq, OpenAI and most others)
  gives a request window and a token window; the reset is a Go duration (`2m59.56s`,
  `750ms`), plain seconds, or an HTTP date. The bare form `x-ratelimit-{limit,remaining,
  reset}` is either OpenRouter's (a reset in epoch milliseconds, sent on a 429) or
  Together's, which counts per second (recognised by its `x-tokenlimit-*` companions, or a
  relative reset).
- Gemini sends no headers; its 429 names each violated quota (`QuotaFailure`: `quotaId`
  says per minute or per day, requests or input tokens; `quotaValue` is the limit) and the
  delay before a retry (`RetryInfo.retryDelay`).

The headers do not name their window's length, and Groq's request window is a day where
OpenAI's is a minute. The window is read from the reset horizon instead: a reset at most a
minute away is a minute window, a later one a day window. The only mistake this can make is
to take a day window whose reset happens to be near for a minute window of the day's size,
which is looser than the truth, never tighter. A per-second window (Together) teaches no
size the limiter could hold, only that it is spent until its reset.

Parsing runs on every answer: header names are precomputed, there is no regex, and an
answer without rate-limit headers costs two dictionary look-ups.
"""

from __future__ import annotations

import email.utils
import logging
import math
from collections.abc import Mapping
from typing import Any, Final, Literal, NamedTuple

from llmroute.stores.base import LimitKind

__all__ = [
    "RateLimitInfo",
    "RawHeaders",
    "Span",
    "Unit",
    "Window",
    "gemini_quota_report",
    "learned_limits",
    "parse_duration",
    "parse_gemini_quota",
    "parse_headers",
    "parse_reset",
    "read_headers",
    "spent_for",
    "tighten",
    "worth_parsing",
]

logger = logging.getLogger("llmroute")

Unit = Literal["requests", "tokens"]
#: the window's length; None when it could not be told (no reset was given)
Span = Literal["second", "minute", "day"] | None

_MINUTE: Final = 60.0
_DAY: Final = 86_400.0
#: a reset further away than this is no window the limiter knows: ignored as garbage
_MAX_RESET: Final = 2 * _DAY
#: above these, a bare reset number is an epoch time (seconds, milliseconds), not a delay
_EPOCH_S: Final = 1e9
_EPOCH_MS: Final = 1e12

_LIMIT_REQ: Final = "x-ratelimit-limit-requests"
_REMAIN_REQ: Final = "x-ratelimit-remaining-requests"
_RESET_REQ: Final = "x-ratelimit-reset-requests"
_LIMIT_TOK: Final = "x-ratelimit-limit-tokens"
_REMAIN_TOK: Final = "x-ratelimit-remaining-tokens"
_RESET_TOK: Final = "x-ratelimit-reset-tokens"
_LIMIT: Final = "x-ratelimit-limit"
_REMAIN: Final = "x-ratelimit-remaining"
_RESET: Final = "x-ratelimit-reset"
_TOKEN_LIMIT: Final = "x-tokenlimit-limit"
_TOKEN_REMAIN: Final = "x-tokenlimit-remaining"

_GO_UNITS: Final = {
    "h": 3600.0,
    "m": 60.0,
    "s": 1.0,
    "ms": 1e-3,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ns": 1e-9,
}
_NUMBER_CHARS: Final = frozenset("0123456789.")
_KIND: Final[dict[tuple[Unit, Span], LimitKind]] = {
    ("requests", "minute"): "rpm",
    ("tokens", "minute"): "tpm",
    ("requests", "day"): "rpd",
    ("tokens", "day"): "tpd",
}


class Window(NamedTuple):
    """One window as the provider reported it."""

    unit: Unit
    span: Span
    #: the window's size, None when not reported
    limit: int | None
    #: what is left in it, None when not reported
    remaining: int | None
    #: seconds from the answer until the window has room again, None when not reported
    reset: float | None


class RateLimitInfo(NamedTuple):
    """Everything one answer said about the provider's windows."""

    windows: tuple[Window, ...]


class RawHeaders(NamedTuple):
    """The rate-limit headers of one answer, as sent: what an adapter keeps per answer.

    The bare forms are filed under the same names: OpenRouter's `x-ratelimit-*` as the
    request window, Together's `x-tokenlimit-*` as the token window (sharing the reset).
    """

    #: True for the bare form (`x-ratelimit-limit`, no `-requests`/`-tokens` suffix)
    bare: bool
    limit_requests: str | None
    remaining_requests: str | None
    reset_requests: str | None
    limit_tokens: str | None
    remaining_tokens: str | None
    reset_tokens: str | None

    def parse(self, wall_now: float) -> RateLimitInfo | None:
        """The windows these headers report (see `parse_headers`)."""
        per_second = False
        if self.bare:
            # Together counts per second and says so only by its token companions (or a
            # relative reset); OpenRouter's reset is an epoch time in milliseconds.
            per_second = self.limit_tokens is not None or self.remaining_tokens is not None
            if not per_second and self.reset_requests is not None:
                number = _number(self.reset_requests)
                per_second = number is not None and number < _EPOCH_S
        windows = []
        requests = _window(
            "requests",
            self.limit_requests,
            self.remaining_requests,
            self.reset_requests,
            wall_now,
            per_second,
        )
        if requests is not None:
            windows.append(requests)
        tokens = _window(
            "tokens",
            self.limit_tokens,
            self.remaining_tokens,
            self.reset_tokens,
            wall_now,
            per_second,
        )
        if tokens is not None:
            windows.append(tokens)
        return RateLimitInfo(tuple(windows)) if windows else None


def read_headers(headers: Mapping[str, str]) -> RawHeaders | None:
    """Pick the rate-limit headers out of an answer's (case-insensitive) headers, unparsed;
    None when there are none. This is all an answer costs on the common path.

    Every provider that reports a window reports what remains of it, so an answer is
    looked into only when a `remaining` header is there: two look-ups when it is not.
    """
    raw = getattr(headers, "raw", None)
    if isinstance(raw, list):
        # httpx.Headers: its look-ups scan every header, so one pass over them is cheaper
        # than the six look-ups below.
        picked = _rate_limit_items(raw)
        if picked is None:
            return None
        headers = picked
    get = headers.get
    remaining = get(_REMAIN_REQ)
    if remaining is not None:
        return RawHeaders(
            False,
            get(_LIMIT_REQ),
            remaining,
            get(_RESET_REQ),
            get(_LIMIT_TOK),
            get(_REMAIN_TOK),
            get(_RESET_TOK),
        )
    remaining = get(_REMAIN)
    if remaining is None:
        return None
    reset = get(_RESET)
    token_limit = get(_TOKEN_LIMIT)
    token_remaining = get(_TOKEN_REMAIN)
    token_reset = reset if token_limit is not None or token_remaining is not None else None
    return RawHeaders(
        True, get(_LIMIT), remaining, reset, token_limit, token_remaining, token_reset
    )


def _rate_limit_items(raw: list[tuple[bytes, bytes]]) -> dict[str, str] | None:
    """The `x-ratelimit-*` and `x-tokenlimit-*` headers of raw (name, value) pairs, with
    lower-case names; None when there are none."""
    found: dict[str, str] | None = None
    for name, value in raw:
        head = name[:4].lower()
        if head == b"x-ra" or head == b"x-to":
            if found is None:
                found = {}
            found[name.decode("latin-1").lower()] = value.decode("latin-1")
    return found


def worth_parsing(raw: RawHeaders, known_limits: tuple[str | None, str | None] | None) -> bool:
    """Whether an answer may teach something new: a spent window, or limits other than
    `known_limits` (the raw limit strings last learnt for the bucket). String compares
    only: the common answer is settled without parsing anything."""
    return (
        raw.remaining_requests == "0"
        or raw.remaining_tokens == "0"
        or known_limits != (raw.limit_requests, raw.limit_tokens)
    )


def parse_headers(headers: Mapping[str, str], wall_now: float) -> RateLimitInfo | None:
    """The windows an OpenAI-compatible answer reports, or None when it reports none.

    `headers` is case-insensitive (httpx, aiohttp); `wall_now` (Unix seconds) turns
    HTTP dates and epoch resets into delays. Missing values are None; garbage is ignored
    with a DEBUG line, never an error.
    """
    raw = read_headers(headers)
    return raw.parse(wall_now) if raw is not None else None


def _window(
    unit: Unit,
    raw_limit: str | None,
    raw_remaining: str | None,
    raw_reset: str | None,
    wall_now: float,
    per_second: bool,
) -> Window | None:
    limit = _count(raw_limit, unit)
    remaining = _count(raw_remaining, unit)
    reset = parse_reset(raw_reset, wall_now) if raw_reset is not None else None
    if limit is None and remaining is None:
        return None
    span: Span
    if per_second:
        span = "second"
    elif reset is None:
        span = None
    else:
        span = "minute" if reset <= _MINUTE else "day"
    return Window(unit, span, limit, remaining, reset)


def _count(raw: str | None, what: str) -> int | None:
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        number = _number(raw)
        if number is None or number != number or number in (math.inf, -math.inf):
            logger.debug("ignored a rate-limit %s count that is not a number: %.40r", what, raw)
            return None
        value = int(number)
    if value < 0:
        logger.debug("ignored a negative rate-limit %s count: %.40r", what, raw)
        return None
    return value


def _number(raw: str) -> float | None:
    try:
        return float(raw)
    except ValueError:
        return None


def parse_reset(raw: str, wall_now: float) -> float | None:
    """Seconds until a reset: a Go duration, plain seconds, an epoch time or an HTTP date."""
    number = _number(raw)
    if number is not None:
        if number != number or number < 0:
            logger.debug("ignored a rate-limit reset that is not a delay: %.40r", raw)
            return None
        if number >= _EPOCH_MS:
            number = number / 1000.0 - wall_now
        elif number >= _EPOCH_S:
            number -= wall_now
        return _delay(number, raw)
    seconds = parse_duration(raw)
    if seconds is None and "," in raw:
        seconds = _http_date(raw, wall_now)
    if seconds is None:
        logger.debug("ignored a rate-limit reset that is not a duration: %.40r", raw)
        return None
    return _delay(seconds, raw)


def _delay(seconds: float, raw: str) -> float | None:
    if seconds > _MAX_RESET:
        logger.debug("ignored a rate-limit reset too far away: %.40r", raw)
        return None
    return max(seconds, 0.0)


def _http_date(raw: str, wall_now: float) -> float | None:
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return when.timestamp() - wall_now


def parse_duration(raw: str) -> float | None:
    """A Go duration (`2m59.56s`, `1h2m3s`, `750ms`, `7.66s`) or bare seconds; None if not."""
    text = raw.strip()
    if not text:
        return None
    if text[-1] == "s" and text[-2:-1].isdigit():
        value = _number(text[:-1])  # the common one-piece `7.66s`
        if value is not None:
            return value if 0.0 <= value < math.inf else None
    return _go_pieces(text)


def _go_pieces(text: str) -> float | None:
    """The sum of a Go duration's `<number><unit>` pieces; a bare number alone is seconds."""
    total = 0.0
    i, n = 0, len(text)
    while i < n:
        start = i
        while i < n and text[i] in _NUMBER_CHARS:
            i += 1
        if i == start:
            return None
        try:
            value = float(text[start:i])
        except ValueError:
            return None
        unit_start = i
        while i < n and text[i] not in _NUMBER_CHARS:
            i += 1
        unit = text[unit_start:i]
        if not unit:
            # a bare number is seconds, but only on its own
            return value if start == 0 else None
        scale = _GO_UNITS.get(unit)
        if scale is None:
            return None
        total += value * scale
    return total


def parse_gemini_quota(
    body: object, retry_delay: float | None, day_reset: float | None
) -> RateLimitInfo | None:
    """The windows a Gemini 429 names (QuotaFailure violations), or None.

    A per-minute quota is spent for `retry_delay` (the RetryInfo delay), a per-day quota
    until `day_reset` (seconds until the quota's midnight); without them the reset is
    unknown (None) and the router's own cooldown for the 429 applies.
    """
    if isinstance(body, list) and body:
        body = body[0]
    error = body.get("error") if isinstance(body, dict) else None
    details = error.get("details") if isinstance(error, dict) else None
    if not isinstance(details, list):
        return None
    return gemini_quota_report(details, retry_delay, day_reset)


def gemini_quota_report(
    details: list[Any], retry_delay: float | None, day_reset: float | None
) -> RateLimitInfo | None:
    """`parse_gemini_quota` for the error's `details` list itself."""
    windows: list[Window] = []
    for detail in details:
        if not isinstance(detail, dict) or not str(detail.get("@type", "")).endswith(
            "google.rpc.QuotaFailure"
        ):
            continue
        violations = detail.get("violations")
        for violation in violations if isinstance(violations, list) else ():
            window = _violation(violation, retry_delay, day_reset)
            if window is not None:
                windows.append(window)
    return RateLimitInfo(tuple(windows)) if windows else None


def _violation(
    violation: object, retry_delay: float | None, day_reset: float | None
) -> Window | None:
    if not isinstance(violation, dict):
        return None
    quota_id = violation.get("quotaId")
    metric = violation.get("quotaMetric")
    if not isinstance(quota_id, str):
        logger.debug("ignored a quota violation without a quotaId")
        return None
    span: Span
    if "PerDay" in quota_id:
        span, reset = "day", day_reset
    elif "PerMinute" in quota_id:
        span, reset = "minute", retry_delay
    else:
        logger.debug("ignored a quota violation of unknown period: %.80r", quota_id)
        return None
    tokens = "Token" in quota_id or (isinstance(metric, str) and "token" in metric)
    raw_value = violation.get("quotaValue")
    limit = _count(str(raw_value), "quota") if raw_value is not None else None
    return Window("tokens" if tokens else "requests", span, limit, 0, reset)


def learned_limits(info: RateLimitInfo) -> list[tuple[LimitKind, int]]:
    """The window sizes worth keeping: minute and day windows whose limit was reported."""
    found: list[tuple[LimitKind, int]] = []
    for window in info.windows:
        if window.limit is None:
            continue
        kind = _KIND.get((window.unit, window.span))
        if kind is not None:
            found.append((kind, window.limit))
    return found


def spent_for(info: RateLimitInfo) -> float | None:
    """Seconds until the longest-closed spent window has room again; None if none is spent.

    A window is spent when nothing remains in it; a spent window without a reset is
    not reported here (the 429's own hint covers it).
    """
    longest: float | None = None
    for window in info.windows:
        reset = window.reset
        if window.remaining == 0 and reset is not None and (longest is None or reset > longest):
            longest = reset
    return longest


def tighten(configured: int | None, learned: int | None) -> int | None:
    """The limit to enforce: what was learnt only ever lowers a configured limit."""
    if learned is None:
        return configured
    if configured is None:
        return learned
    return learned if learned < configured else configured
