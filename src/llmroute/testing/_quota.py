"""The fake provider's quota mode: real rate limits, enforced the way providers enforce them.

`QuotaEnforcer` sits in front of a `FakeScript`. Every chat request is checked against
exact sliding windows, per key and model (or per model, as one organisation), for requests
and tokens per minute and per day. A request with room is answered by the script, and its
tokens (what the answer reports as usage) are charged; one without room gets a real 429
and the script is not consulted:

- OpenAI wire: Groq's error body naming the window, `Retry-After` in whole seconds, and the
  `x-ratelimit-*` headers, which every answer carries, 200 or 429 (Go durations for resets);
- Gemini wire: RESOURCE_EXHAUSTED with a `QuotaFailure` per violated quota (`quotaId` per
  minute or per day, requests or input tokens, `quotaValue`) and a `RetryInfo` delay; no
  rate-limit headers, as Gemini sends none.

A header's reset is, as OpenAI and Groq define it, the time until the window is back to its
initial state (its newest charge has left it); a 429's `Retry-After` (and RetryInfo) is the
time until the refused request would fit.

Time is the clock's `now()` times `time_scale`: with `time_scale=60` a provider minute
passes in one real second, and every reset and hint is given in provider seconds, so run
the client on a clock of the same scale (`ScaledClock(60)`), or on the same `FakeClock`
for virtual time.

Tokens are checked on arrival against the prompt (the provider cannot know the answer
yet) and charged as the answer's usage, so a window can end a little over its token limit,
exactly as with providers that count the completion afterwards.
"""

from __future__ import annotations

import json
import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol
from urllib.parse import unquote

from llmroute.testing._script import (
    _GEMINI_PATH,
    _OPENAI_SUFFIX,
    FakeScript,
    Wire,
    _parse_json,
    _prompt_text,
    estimate_tokens,
)
from llmroute.testing._wire import Rendered

__all__ = ["Quota", "QuotaEnforcer"]

_MINUTE = 60.0
_DAY = 86_400.0
_JSON = "application/json"
_GEMINI_JSON = "application/json; charset=UTF-8"


class _Now(Protocol):
    def now(self) -> float: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Quota:
    """What the fake provider allows one bucket: any of rpm, tpm, rpd, tpd (None: no limit).

    `per_key=True` gives each API key its own windows for the model (Gemini: one project
    per key); False shares them between all keys (Groq: one organisation). `request_headers`
    says which request window the `x-ratelimit-*-requests` headers describe: `"minute"` (as
    OpenAI does) or `"day"` (as Groq does); `headers=False` sends none at all.
    """

    rpm: int | None = None
    tpm: int | None = None
    rpd: int | None = None
    tpd: int | None = None
    per_key: bool = True
    request_headers: Literal["minute", "day"] = "minute"
    #: False: the answers carry no rate-limit headers (a provider that reports nothing)
    headers: bool = True


class _Windows:
    """Exact sliding windows of one bucket: (time, tokens) of every admitted request."""

    __slots__ = ("day", "day_tokens", "minute", "minute_tokens")

    def __init__(self) -> None:
        self.minute: deque[list[float]] = deque()
        self.day: deque[list[float]] = deque()
        self.minute_tokens = 0.0
        self.day_tokens = 0.0

    def prune(self, now: float) -> None:
        while self.minute and self.minute[0][0] + _MINUTE <= now:
            self.minute_tokens -= self.minute.popleft()[1]
        while self.day and self.day[0][0] + _DAY <= now:
            self.day_tokens -= self.day.popleft()[1]

    def charge(self, now: float, tokens: int) -> list[float]:
        entry = [now, float(tokens)]
        self.minute.append(entry)
        self.day.append(entry)
        self.minute_tokens += tokens
        self.day_tokens += tokens
        return entry

    def settle(self, entry: list[float], tokens: int) -> None:
        """Correct the charge just made (still the newest in both windows) to `tokens`."""
        delta = tokens - entry[1]
        entry[1] = float(tokens)
        self.minute_tokens += delta
        self.day_tokens += delta


_Kind = Literal["rpm", "tpm", "rpd", "tpd"]


@dataclass(frozen=True, slots=True)
class _Violation:
    kind: _Kind
    limit: int
    used: int
    wait: float


class QuotaEnforcer:
    """Enforces `Quota`s in front of a fake provider's script (see the module docstring).

    `quotas` maps a provider model name to its quota (None: every other model); a bare
    `Quota` applies to every model. Pass it to `FakeTransport(..., quota=)` or
    `FakeProviderServer(..., quota=)`.

        quota = QuotaEnforcer({"llama-3.1-8b-instant": Quota(rpm=30, tpm=6000)}, clock=clock)
        transport = FakeTransport(script, clock=clock, quota=quota)
        ...
        assert quota.refused == 0

    `grace` (provider seconds, default 0: exact) forgives a request that arrives that much
    before a charge leaves its window: over real sockets the order in which requests arrive
    jitters by a scheduling slice, which a time scale multiplies.

    `admitted` and `refused` count requests; `refused_by` counts 429s per (model, key) and
    `refused_at` says when each was sent.
    """

    def __init__(
        self,
        quotas: Quota | Mapping[str | None, Quota],
        *,
        clock: _Now | None = None,
        time_scale: float = 1.0,
        grace: float = 0.0,
    ) -> None:
        if not time_scale > 0:
            raise ValueError("time_scale must be positive")
        if not grace >= 0:
            raise ValueError("grace must not be negative")
        self._grace = grace
        self._quotas: dict[str | None, Quota] = (
            {None: quotas} if isinstance(quotas, Quota) else dict(quotas)
        )
        read: Callable[[], float] = clock.now if clock is not None else time.monotonic
        self._now: Callable[[], float] = (
            read if time_scale == 1.0 else (lambda: read() * time_scale)
        )
        self._scale = time_scale
        self._windows: dict[tuple[str, str | None], _Windows] = {}
        #: requests answered by the script
        self.admitted = 0
        #: requests refused with a 429
        self.refused = 0
        #: 429s per (model, key); the key is None for a quota shared by all keys
        self.refused_by: dict[tuple[str, str | None], int] = {}
        #: when each 429 was sent (provider time, see `now`)
        self.refused_at: list[float] = []

    def now(self) -> float:
        """Provider time: the clock's seconds times the time scale."""
        return self._now()

    def quota_for(self, model: str) -> Quota | None:
        return self._quotas.get(model, self._quotas.get(None))

    def handle(
        self,
        script: FakeScript,
        method: str,
        path: str,
        query: str,
        headers: Mapping[str, str],
        body: bytes,
        *,
        latency: float = 0.0,
    ) -> Rendered:
        """Answer one raw HTTP request as `script.handle` does, within the quotas.

        `latency` is what the fake adds before the answer leaves, beyond the behaviour's
        own: the headers describe the windows as they stand when the answer is sent."""
        request = _chat_request(method, path, headers, body)
        if request is None:
            return script.handle(method, path, query, headers, body)
        wire, model, key, prompt_tokens = request
        quota = self.quota_for(model)
        if quota is None:
            return script.handle(method, path, query, headers, body)
        bucket = (model, key if quota.per_key else None)
        windows = self._windows.get(bucket)
        if windows is None:
            windows = self._windows[bucket] = _Windows()
        now = self._now()
        windows.prune(now + self._grace)
        violations = _violations(quota, windows, prompt_tokens)
        if violations:
            self.refused += 1
            self.refused_by[bucket] = self.refused_by.get(bucket, 0) + 1
            self.refused_at.append(now)
            return _too_many(wire, model, quota, windows, violations, now)
        self.admitted += 1
        entry = windows.charge(now, prompt_tokens)
        rendered = script.handle(method, path, query, headers, body)
        used = _answer_tokens(rendered)
        if used is not None:
            windows.settle(entry, used)
        if wire != "openai" or not quota.headers:
            return rendered
        sent_at = now + (rendered.latency + latency) * self._scale
        return _with_headers(rendered, _rate_headers(quota, windows, sent_at))

    def __repr__(self) -> str:
        return f"QuotaEnforcer(admitted={self.admitted}, refused={self.refused})"


def _chat_request(
    method: str, path: str, headers: Mapping[str, str], body: bytes
) -> tuple[Wire, str, str | None, int] | None:
    """(wire, model, key, prompt tokens) of a well-formed chat request, else None."""
    if method.upper() != "POST":
        return None
    path = unquote(path)
    lowered = {name.lower(): value for name, value in headers.items()}
    parsed = _parse_json(body)
    if not isinstance(parsed, dict):
        return None
    wire: Wire
    if path.endswith(_OPENAI_SUFFIX):
        wire = "openai"
        auth = lowered.get("authorization", "")
        key = auth[7:].strip() if auth[:7].lower() == "bearer " else None
        model = parsed.get("model")
    else:
        match = _GEMINI_PATH.match(path)
        if match is None:
            return None
        wire = "gemini"
        key = lowered.get("x-goog-api-key")
        model = match["model"]
    if not isinstance(model, str) or not model:
        return None
    return wire, model, key, estimate_tokens(_prompt_text(wire, parsed))


def _violations(quota: Quota, windows: _Windows, prompt_tokens: int) -> list[_Violation]:
    found: list[_Violation] = []
    requests: tuple[tuple[_Kind, int | None, deque[list[float]], float], ...] = (
        ("rpd", quota.rpd, windows.day, _DAY),
        ("rpm", quota.rpm, windows.minute, _MINUTE),
    )
    for kind, limit, entries, span in requests:
        if limit is not None and len(entries) >= limit:
            wait = entries[len(entries) - limit][0] + span if limit else math.inf
            found.append(_Violation(kind, limit, len(entries), wait))
    tokens: tuple[tuple[_Kind, int | None, deque[list[float]], float, float], ...] = (
        ("tpd", quota.tpd, windows.day, windows.day_tokens, _DAY),
        ("tpm", quota.tpm, windows.minute, windows.minute_tokens, _MINUTE),
    )
    for kind, limit, entries, used, span in tokens:
        if limit is not None and used + prompt_tokens > limit:
            wait = _token_wait(entries, used + prompt_tokens - limit, span)
            found.append(_Violation(kind, limit, int(used), wait))
    return found


def _token_wait(entries: deque[list[float]], excess: float, span: float) -> float:
    """When enough of the oldest charges have left the window to free `excess` tokens."""
    freed = 0.0
    for t, tokens in entries:
        freed += tokens
        if freed >= excess:
            return t + span
    return math.inf  # a prompt larger than the limit never fits


def _too_many(
    wire: Wire,
    model: str,
    quota: Quota,
    windows: _Windows,
    violations: list[_Violation],
    now: float,
) -> Rendered:
    wait = max(v.wait for v in violations) - now
    if wire == "openai":
        first = violations[0]
        names = {
            "rpm": "requests per minute (RPM)",
            "tpm": "tokens per minute (TPM)",
            "rpd": "requests per day (RPD)",
            "tpd": "tokens per day (TPD)",
        }
        hint = f" Please try again in {_go_duration(wait)}." if wait < math.inf else ""
        message = (
            f"Rate limit reached for model `{model}` in organization `org_fake` service tier "
            f"on_demand on {names[first.kind]}: Limit {first.limit}, Used {first.used}, "
            f"Requested 1.{hint}"
        )
        body = {
            "error": {
                "message": message,
                "type": "tokens" if first.kind[0] == "t" else "requests",
                "code": "rate_limit_exceeded",
            }
        }
        headers = {"content-type": _JSON}
        if quota.headers:
            headers.update(_rate_headers(quota, windows, now))
        if wait < math.inf:
            headers["retry-after"] = str(max(1, math.ceil(wait)))
        return Rendered(status=429, headers=headers, body=_dumps(body))
    details: list[object] = [
        {
            "@type": "type.googleapis.com/google.rpc.QuotaFailure",
            "violations": [_gemini_violation(v, model) for v in violations],
        },
        {
            "@type": "type.googleapis.com/google.rpc.Help",
            "links": [
                {
                    "description": "Learn more about Gemini API quotas",
                    "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
                }
            ],
        },
    ]
    if wait < math.inf:
        details.append(
            {
                "@type": "type.googleapis.com/google.rpc.RetryInfo",
                "retryDelay": f"{max(wait, 0.0):.3f}".rstrip("0").rstrip(".") + "s",
            }
        )
    envelope = {
        "error": {
            "code": 429,
            "message": (
                "You exceeded your current quota, please check your plan and billing details."
            ),
            "status": "RESOURCE_EXHAUSTED",
            "details": details,
        }
    }
    return Rendered(status=429, headers={"content-type": _GEMINI_JSON}, body=_dumps(envelope))


def _gemini_violation(violation: _Violation, model: str) -> dict[str, object]:
    period = "Day" if violation.kind[2] == "d" else "Minute"
    if violation.kind[0] == "r":
        metric = "generativelanguage.googleapis.com/generate_content_free_tier_requests"
        quota_id = f"GenerateRequestsPer{period}PerProjectPerModel-FreeTier"
    else:
        metric = "generativelanguage.googleapis.com/generate_content_free_tier_input_token_count"
        quota_id = f"GenerateContentInputTokensPerModelPer{period}-FreeTier"
    return {
        "quotaMetric": metric,
        "quotaId": quota_id,
        "quotaDimensions": {"location": "global", "model": model},
        "quotaValue": str(violation.limit),
    }


def _rate_headers(quota: Quota, windows: _Windows, at: float) -> dict[str, str]:
    """Groq's header set for the windows this quota limits, as they stand at `at` (when the
    answer leaves, which may be after the windows were last pruned)."""
    headers: dict[str, str] = {}
    day_requests = quota.request_headers == "day" or quota.rpm is None
    request_limit = quota.rpd if day_requests else quota.rpm
    if request_limit is not None:
        entries, span = (windows.day, _DAY) if day_requests else (windows.minute, _MINUTE)
        live = [t for t, _ in entries if t + span > at]
        headers["x-ratelimit-limit-requests"] = str(request_limit)
        headers["x-ratelimit-remaining-requests"] = str(max(request_limit - len(live), 0))
        headers["x-ratelimit-reset-requests"] = _go_duration(live[-1] + span - at if live else 0.0)
    token_limit = quota.tpm if quota.tpm is not None else quota.tpd
    if token_limit is not None:
        entries, span = (windows.minute, _MINUTE) if quota.tpm is not None else (windows.day, _DAY)
        live_tokens = [(t, n) for t, n in entries if t + span > at]
        used = sum(n for _, n in live_tokens)
        headers["x-ratelimit-limit-tokens"] = str(token_limit)
        headers["x-ratelimit-remaining-tokens"] = str(max(int(token_limit - used), 0))
        headers["x-ratelimit-reset-tokens"] = _go_duration(
            live_tokens[-1][0] + span - at if live_tokens else 0.0
        )
    return headers


def _go_duration(seconds: float) -> str:
    """Seconds as Go prints a duration: `2m59.56s`, `7.66s`, `750ms`, `0s`."""
    seconds = max(seconds, 0.0)
    if seconds == 0:
        return "0s"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms" if seconds >= 0.001 else "1ms"
    hours, rest = divmod(seconds, 3600.0)
    minutes, secs = divmod(rest, 60.0)
    text = f"{secs:.2f}".rstrip("0").rstrip(".") + "s"
    if minutes or hours:
        text = f"{int(minutes)}m{text}"
    if hours:
        text = f"{int(hours)}h{text}"
    return text


def _answer_tokens(rendered: Rendered) -> int | None:
    """The total tokens the answer reports as usage (the last report of a stream)."""
    if rendered.status != 200:
        return None
    if rendered.pieces is None:
        return _usage_total(_parse_json(rendered.body))
    total: int | None = None
    for _, piece in rendered.pieces:
        for line in piece.split(b"\n"):
            if line.startswith(b"data: "):
                found = _usage_total(_parse_json(line[6:]))
                total = found if found is not None else total
    return total


def _usage_total(data: object) -> int | None:
    if isinstance(data, list):
        totals = [t for t in map(_usage_total, data) if t is not None]
        return totals[-1] if totals else None
    if not isinstance(data, dict):
        return None
    usage = data.get("usage")
    if isinstance(usage, dict) and isinstance(usage.get("total_tokens"), int):
        return int(usage["total_tokens"])
    meta = data.get("usageMetadata")
    if isinstance(meta, dict) and isinstance(meta.get("totalTokenCount"), int):
        return int(meta["totalTokenCount"])
    x_groq = data.get("x_groq")
    return _usage_total(x_groq) if isinstance(x_groq, dict) else None


def _with_headers(rendered: Rendered, headers: Mapping[str, str]) -> Rendered:
    return Rendered(
        status=rendered.status,
        headers={**rendered.headers, **headers},
        body=rendered.body,
        pieces=rendered.pieces,
        break_after=rendered.break_after,
        latency=rendered.latency,
        hang=rendered.hang,
    )


def _dumps(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()
