"""Reading the providers' own rate-limit reports: headers and Gemini's 429 details."""

from __future__ import annotations

import logging

import httpx
import pytest

from llmroute.limiter.learn import (
    RateLimitInfo,
    Window,
    learned_limits,
    parse_duration,
    parse_gemini_quota,
    parse_headers,
    parse_reset,
    read_headers,
    spent_for,
    tighten,
    worth_parsing,
)

WALL = 1_767_225_600.0  # 2026-01-01T00:00:00Z


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("7.66s", 7.66),
        ("750ms", 0.75),
        ("1m2.5s", 62.5),
        ("2m59.56s", 179.56),
        ("1h2m3s", 3723.0),
        ("250ms", 0.25),
        ("1h", 3600.0),
        ("5m", 300.0),
        ("3", 3.0),
        ("0.5", 0.5),
        ("0s", 0.0),
        ("12us", 12e-6),
        (" 6s ", 6.0),
    ],
)
def test_go_durations_and_bare_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "ms", "1x", "1.2.3s", "abc", "1s2", "-1s", "1m-2s"])
def test_garbage_durations_are_none(text: str) -> None:
    assert parse_duration(text) is None


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        ("7.66s", 7.66),
        ("6", 6.0),
        ("1767225660", 60.0),  # epoch seconds
        ("1767312000000", 86_400.0),  # epoch milliseconds (OpenRouter)
        ("Thu, 01 Jan 2026 00:00:30 GMT", 30.0),  # an HTTP date
        ("1767225000", 0.0),  # an epoch time already past: room now
    ],
)
def test_reset_forms(raw: str, seconds: float) -> None:
    assert parse_reset(raw, WALL) == pytest.approx(seconds)


@pytest.mark.parametrize("raw", ["soon", "nan", "-5", "inf", "Thu, 99 Foo 2026", "999999999s"])
def test_garbage_resets_are_ignored_with_a_debug_line(
    raw: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="llmroute"):
        assert parse_reset(raw, WALL) is None
    assert any(
        r.levelno == logging.DEBUG and "rate-limit reset" in r.getMessage() for r in caplog.records
    )


GROQ_429 = {
    "retry-after": "6",
    "x-ratelimit-limit-requests": "14400",
    "x-ratelimit-limit-tokens": "6000",
    "x-ratelimit-remaining-requests": "14321",
    "x-ratelimit-remaining-tokens": "0",
    "x-ratelimit-reset-requests": "7m41.52s",
    "x-ratelimit-reset-tokens": "5.73s",
}

CASES: list[tuple[str, dict[str, str], tuple[Window, ...] | None]] = [
    (
        "groq 429: a day request window and a spent minute token window",
        GROQ_429,
        (
            Window("requests", "day", 14400, 14321, 461.52),
            Window("tokens", "minute", 6000, 0, 5.73),
        ),
    ),
    (
        "openai style: minute windows in plain seconds and milliseconds",
        {
            "x-ratelimit-limit-requests": "30",
            "x-ratelimit-remaining-requests": "29",
            "x-ratelimit-reset-requests": "2s",
            "x-ratelimit-limit-tokens": "150000",
            "x-ratelimit-remaining-tokens": "149000",
            "x-ratelimit-reset-tokens": "750ms",
        },
        (
            Window("requests", "minute", 30, 29, 2.0),
            Window("tokens", "minute", 150000, 149000, 0.75),
        ),
    ),
    (
        "an HTTP-date reset",
        {
            "x-ratelimit-limit-requests": "30",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": "Thu, 01 Jan 2026 00:00:42 GMT",
        },
        (Window("requests", "minute", 30, 0, 42.0),),
    ),
    (
        "openrouter's free daily cap: bare names, epoch-milliseconds reset",
        {
            "X-RateLimit-Limit": "50",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": "1767312000000",
        },
        (Window("requests", "day", 50, 0, 86_400.0),),
    ),
    (
        "openrouter per minute",
        {
            "X-RateLimit-Limit": "20",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": str(int((WALL + 12) * 1000)),
        },
        (Window("requests", "minute", 20, 0, 12.0),),
    ),
    (
        "together counts per second",
        {
            "x-ratelimit-limit": "2",
            "x-ratelimit-remaining": "0",
            "x-ratelimit-reset": "1",
            "x-tokenlimit-limit": "4000",
            "x-tokenlimit-remaining": "3610",
        },
        (
            Window("requests", "second", 2, 0, 1.0),
            Window("tokens", "second", 4000, 3610, 1.0),
        ),
    ),
    (
        "together without token companions: a relative reset is still per second",
        {"x-ratelimit-limit": "5", "x-ratelimit-remaining": "4", "x-ratelimit-reset": "1"},
        (Window("requests", "second", 5, 4, 1.0),),
    ),
    (
        "no reset: the window's length is unknown",
        {"x-ratelimit-limit-requests": "30", "x-ratelimit-remaining-requests": "3"},
        (Window("requests", None, 30, 3, None),),
    ),
    (
        "garbage values are dropped, the rest kept",
        {
            "x-ratelimit-limit-requests": "lots",
            "x-ratelimit-remaining-requests": "12",
            "x-ratelimit-reset-requests": "whenever",
            "x-ratelimit-limit-tokens": "-4",
            "x-ratelimit-remaining-tokens": "nan",
        },
        (Window("requests", None, None, 12, None),),
    ),
    ("only garbage", {"x-ratelimit-remaining-requests": "?"}, None),
    ("no rate-limit headers at all", {"content-type": "application/json"}, None),
    (
        "a limit without what remains is not looked at",
        {"x-ratelimit-limit-requests": "30"},
        None,
    ),
]


@pytest.mark.parametrize(("case", "headers", "windows"), CASES, ids=[c[0] for c in CASES])
def test_header_table(
    case: str, headers: dict[str, str], windows: tuple[Window, ...] | None
) -> None:
    for mapping in (httpx.Headers(headers), {k.lower(): v for k, v in headers.items()}):
        info = parse_headers(mapping, WALL)
        if windows is None:
            assert info is None
            continue
        assert info is not None
        assert len(info.windows) == len(windows)
        for got, want in zip(info.windows, windows, strict=True):
            assert got[:4] == want[:4]
            if want.reset is None:
                assert got.reset is None
            else:
                assert got.reset == pytest.approx(want.reset)


def test_garbage_headers_leave_a_debug_line(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="llmroute"):
        parse_headers(
            httpx.Headers(
                {"x-ratelimit-remaining-requests": "many", "x-ratelimit-limit-requests": "30"}
            ),
            WALL,
        )
    assert [r.levelno for r in caplog.records] == [logging.DEBUG]
    assert "not a number" in caplog.records[0].getMessage()


def test_learned_limits_and_spent_windows() -> None:
    info = parse_headers(httpx.Headers(GROQ_429), WALL)
    assert info is not None
    assert learned_limits(info) == [("rpd", 14400), ("tpm", 6000)]
    assert spent_for(info) == pytest.approx(5.73)
    together = RateLimitInfo((Window("requests", "second", 2, 0, 1.0),))
    assert learned_limits(together) == []  # no window the limiter could hold
    assert spent_for(together) == 1.0
    unspent = RateLimitInfo((Window("requests", "minute", 30, 4, 20.0),))
    assert spent_for(unspent) is None


def test_only_new_limits_or_spent_windows_are_worth_parsing() -> None:
    raw = read_headers(httpx.Headers(GROQ_429))
    assert raw is not None
    known = (raw.limit_requests, raw.limit_tokens)
    assert worth_parsing(raw, known)  # tokens spent
    fresh = read_headers(
        {
            "x-ratelimit-limit-requests": "30",
            "x-ratelimit-remaining-requests": "12",
            "x-ratelimit-limit-tokens": "6000",
            "x-ratelimit-remaining-tokens": "5000",
        }
    )
    assert fresh is not None
    assert worth_parsing(fresh, None)
    assert not worth_parsing(fresh, ("30", "6000"))
    assert worth_parsing(fresh, ("60", "6000"))


def gemini_429(*violations: dict[str, object], delay: str | None = "37s") -> dict[str, object]:
    details: list[dict[str, object]] = [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": list(violations)},
        {"@type": "type.googleapis.com/google.rpc.Help", "links": []},
    ]
    if delay is not None:
        details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay})
    return {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "details": details}}


PER_MINUTE = {
    "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
    "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
    "quotaDimensions": {"location": "global", "model": "gemini-2.5-flash"},
    "quotaValue": "10",
}
PER_DAY = {
    "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
    "quotaId": "GenerateRequestsPerDayPerProjectPerModel-FreeTier",
    "quotaValue": "250",
}
TOKENS_PER_MINUTE = {
    "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_input_token_count",
    "quotaId": "GenerateContentInputTokensPerModelPerMinute-FreeTier",
    "quotaValue": "250000",
}


def test_gemini_quota_failure_per_minute() -> None:
    info = parse_gemini_quota(gemini_429(PER_MINUTE), retry_delay=37.0, day_reset=5000.0)
    assert info == RateLimitInfo((Window("requests", "minute", 10, 0, 37.0),))
    assert learned_limits(info) == [("rpm", 10)]
    assert spent_for(info) == 37.0


def test_gemini_quota_failure_per_day() -> None:
    info = parse_gemini_quota(gemini_429(PER_DAY, delay=None), retry_delay=None, day_reset=5000.0)
    assert info == RateLimitInfo((Window("requests", "day", 250, 0, 5000.0),))
    assert learned_limits(info) == [("rpd", 250)]
    assert spent_for(info) == 5000.0


def test_gemini_several_violations_and_tokens() -> None:
    body = [gemini_429(PER_MINUTE, PER_DAY, TOKENS_PER_MINUTE)]  # the array-wrapped form
    info = parse_gemini_quota(body, retry_delay=37.0, day_reset=5000.0)
    assert info is not None
    assert learned_limits(info) == [("rpm", 10), ("rpd", 250), ("tpm", 250000)]
    assert spent_for(info) == 5000.0


def test_gemini_per_minute_without_retry_info_has_no_known_reset() -> None:
    no_value = {k: v for k, v in PER_MINUTE.items() if k != "quotaValue"}
    info = parse_gemini_quota(gemini_429(no_value, delay=None), retry_delay=None, day_reset=None)
    assert info == RateLimitInfo((Window("requests", "minute", None, 0, None),))
    assert learned_limits(info) == []
    assert spent_for(info) is None  # the router's own cooldown for the 429 applies


@pytest.mark.parametrize(
    "body",
    [
        None,
        {},
        {"error": {"details": "nope"}},
        {"error": {"details": [{"@type": "type.googleapis.com/google.rpc.Help"}]}},
        gemini_429({"quotaId": "SomethingPerFortnight"}),
        gemini_429({"quotaValue": "3"}),
        gemini_429("not a dict"),  # type: ignore[arg-type]
    ],
)
def test_gemini_bodies_without_usable_quota(body: object) -> None:
    assert parse_gemini_quota(body, retry_delay=1.0, day_reset=1.0) is None


def test_gemini_garbage_quota_value_is_dropped(caplog: pytest.LogCaptureFixture) -> None:
    bad = {**PER_MINUTE, "quotaValue": "ten"}
    with caplog.at_level(logging.DEBUG, logger="llmroute"):
        info = parse_gemini_quota(gemini_429(bad), retry_delay=3.0, day_reset=None)
    assert info == RateLimitInfo((Window("requests", "minute", None, 0, 3.0),))
    assert any(r.levelno == logging.DEBUG for r in caplog.records)


@pytest.mark.parametrize(
    ("configured", "learned", "enforced"),
    [(None, None, None), (None, 30, 30), (60, 30, 30), (30, 60, 30), (30, None, 30), (0, 5, 0)],
)
def test_tightening_never_loosens_a_configured_limit(
    configured: int | None, learned: int | None, enforced: int | None
) -> None:
    assert tighten(configured, learned) == enforced
