"""How Gemini says an attempt failed: HTTP status, the google.rpc details of its error
body (RetryInfo, QuotaFailure, ErrorInfo), and when a daily quota comes back.

    429                                       rate_limited_remote; retry_after from
                                              RetryInfo.retryDelay, else Retry-After;
                                              a PerDay quota sets quota_reset_at to the
                                              next midnight in America/Los_Angeles
    400 ErrorInfo API_KEY_INVALID, 401, 403   client_error, key_invalid
    5xx                                       server_error (retry_after from Retry-After)
    other 4xx                                 client_error
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone, tzinfo
from datetime import time as wall_time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx

from llmroute.limiter.learn import gemini_quota_report
from llmroute.providers._http import MAX_RETRY_AFTER, error_message, parse_retry_after
from llmroute.providers.base import AttemptFailed

__all__ = ["classify_error", "next_pacific_midnight"]

logger = logging.getLogger("llmroute.providers.google_ai_studio")

JSONObject = dict[str, object]

_SERVER_STATUSES = frozenset({500, 502, 503, 504})
_DURATION = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)s\s*")
_MAX_DETAIL = 120


def classify_error(
    status: int, body: object, headers: Mapping[str, str], *, wall_now: float
) -> AttemptFailed:
    """Map a non-2xx Gemini answer to an `AttemptFailed` (docs/providers.md 5.5)."""
    if isinstance(body, list) and body:
        body = body[0]
    error = body.get("error") if isinstance(body, dict) else None
    error = error if isinstance(error, dict) else {}
    details = [d for d in _list(error.get("details")) if isinstance(d, dict)]
    status_name = error.get("status")
    label = f"HTTP {status} {status_name}" if isinstance(status_name, str) else f"HTTP {status}"
    message = f"{label}: " + error_message(body, httpx.codes.get_reason_phrase(status) or "error")

    if status == 429:
        return _rate_limited(label, message, details, headers, wall_now)
    if status in (401, 403) or (status == 400 and _has_reason(details, "API_KEY_INVALID")):
        return AttemptFailed("client_error", message, status=status, key_invalid=True)
    if status in _SERVER_STATUSES or status >= 500:
        return AttemptFailed(
            "server_error", message, status=status, retry_after=parse_retry_after(headers, wall_now)
        )
    return AttemptFailed("client_error", message, status=status)


def _rate_limited(
    label: str,
    message: str,
    details: list[JSONObject],
    headers: Mapping[str, str],
    wall_now: float,
) -> AttemptFailed:
    retry_after = _retry_delay(details)
    if retry_after is None:
        retry_after = parse_retry_after(headers, wall_now)
    quota_ids = _quota_ids(details)
    reset_at = next_pacific_midnight(wall_now) if any("PerDay" in q for q in quota_ids) else None
    if quota_ids:
        message = f"{label}: quota exceeded ({', '.join(quota_ids)[:_MAX_DETAIL]})"
    return AttemptFailed(
        "rate_limited_remote",
        message,
        status=429,
        retry_after=retry_after,
        quota_reset_at=reset_at,
        ratelimit=gemini_quota_report(
            details, retry_after, reset_at - wall_now if reset_at is not None else None
        ),
    )


def next_pacific_midnight(now: float) -> float:
    """Unix time of the first midnight in America/Los_Angeles after `now`: when Gemini's
    per-day quotas reset."""
    zone = _pacific()
    today = datetime.fromtimestamp(now, zone).date()
    # Midnight never falls in a DST gap in Los Angeles (changes happen at 02:00).
    return datetime.combine(today + timedelta(days=1), wall_time(0), tzinfo=zone).timestamp()


def _retry_delay(details: list[JSONObject]) -> float | None:
    for detail in details:
        if not str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            continue
        delay = detail.get("retryDelay")
        seconds: float | None = None
        if isinstance(delay, str):
            match = _DURATION.fullmatch(delay)
            seconds = float(match.group(1)) if match else None
        elif isinstance(delay, dict):
            # The protobuf object form, in case a proxy re-encodes the Duration.
            secs, nanos = delay.get("seconds", 0), delay.get("nanos", 0)
            if isinstance(secs, int | float | str) and isinstance(nanos, int | float):
                try:
                    seconds = float(secs) + float(nanos) / 1e9
                except ValueError:
                    seconds = None
        if seconds is not None:
            return min(max(seconds, 0.0), MAX_RETRY_AFTER)
    return None


def _quota_ids(details: list[JSONObject]) -> list[str]:
    ids: list[str] = []
    for detail in details:
        if not str(detail.get("@type", "")).endswith("google.rpc.QuotaFailure"):
            continue
        for violation in _list(detail.get("violations")):
            if isinstance(violation, dict) and isinstance(violation.get("quotaId"), str):
                ids.append(violation["quotaId"])
    return ids


def _has_reason(details: list[JSONObject], reason: str) -> bool:
    return any(detail.get("reason") == reason for detail in details)


@functools.cache
def _pacific() -> tzinfo:
    try:
        return ZoneInfo("America/Los_Angeles")
    except ZoneInfoNotFoundError:
        # Cached, so this is said once per process rather than per 429.
        logger.warning("no tz database for America/Los_Angeles; daily quotas reset at UTC-8")
        return timezone(timedelta(hours=-8))


def _list(value: object) -> list[object]:
    return value if isinstance(value, list) else []
