"""How a chain ends: the error a request raises when no candidate served it.

A one-candidate request raises that candidate's own error (`ProviderError` or
`RateLimitedError`); a longer chain raises `RateLimitedError` when every candidate that was
tried ended on a rate limit, else `RoutingError`. When `max_attempts` or the deadline ended
the call, the message says so and `not_tried` lists the candidates never reached.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from llmroute._candidate import Candidate
from llmroute._hints import nothing_set_up
from llmroute._recorder import Call, summary
from llmroute.errors import ProviderError, RateLimitedError, RoutingError
from llmroute.trace import Outcome

__all__ = ["RATE_LIMITED", "Failed", "exhausted_error", "finite"]

RATE_LIMITED: Final = frozenset({"rate_limited_local", "rate_limited_remote", "keys_exhausted"})
#: failures that end by themselves after a known time (a cooldown)
COOLING: Final = frozenset({"rate_limited_remote", "keys_exhausted"})


@dataclass(slots=True)
class Failed:
    """How a candidate ended without an answer."""

    outcome: Outcome
    status: int | None
    message: str
    #: seconds until this candidate frees up (rate limits only); inf = never
    retry_after: float | None = None
    #: how long the candidate's `on_limit: sleep` lets a request wait for it (0: fallback)
    max_wait: float = 0.0


def finite(value: float | None) -> float | None:
    return value if value is not None and value != math.inf else None


def exhausted_error(
    call: Call, chain: Sequence[Candidate], failures: list[Failed]
) -> RoutingError | ProviderError:
    """The error for a request whose chain ran out (see the module docstring)."""
    target = call.target
    text = summary(call.attempts) or "nothing was tried"
    budget = call.budget_text()
    not_tried, suffix = _budget_suffix(call, chain)
    if len(chain) == 1 and failures:
        return _own_error(call, chain[0], failures[-1], suffix)
    if failures and all(f.outcome in RATE_LIMITED for f in failures):
        waits = [w for f in failures if (w := finite(f.retry_after)) is not None]
        return RateLimitedError(
            f"every candidate for {target!r} is rate limited ({text}){suffix}",
            call.attempts,
            retry_after=min(waits) if waits else None,
            not_tried=not_tried,
        )
    if budget and not failures:
        message = f"{target!r} was not served: {budget} ({text})"
    elif not failures:
        message = _all_skipped(call, text)
    else:
        message = f"no candidate for {target!r} could serve the request ({text}){suffix}"
    return RoutingError(message, call.attempts, not_tried=not_tried)


def _all_skipped(call: Call, text: str) -> str:
    skips = "; ".join(f"{a.model}: {a.outcome} ({a.error})" for a in call.attempts)
    # no key anywhere is what a newcomer meets first: say so and name the way out
    hint = nothing_set_up(a.outcome for a in call.attempts)
    reasons = f"{hint} ({skips})" if hint else skips or text
    return f"no candidate for {call.target!r} can serve this request: {reasons}"


def _budget_suffix(call: Call, chain: Sequence[Candidate]) -> tuple[tuple[str, ...], str]:
    """The candidates never reached, and what to add to the message, when a budget ended
    the call."""
    if not call.spent_by:
        return (), ""
    seen = {a.model for a in call.attempts}
    not_tried = tuple(c.id for c in chain if c.id not in seen)
    suffix = f"; {call.budget_text()}"
    if not_tried:
        suffix += f"; never tried: {', '.join(not_tried)}"
    return not_tried, suffix


def _own_error(
    call: Call, cand: Candidate, last: Failed, suffix: str
) -> RateLimitedError | ProviderError:
    if last.outcome in RATE_LIMITED:
        return RateLimitedError(
            f"{cand.id} is rate limited: {last.message}{suffix}",
            call.attempts,
            retry_after=finite(last.retry_after),
        )
    return ProviderError(
        f"{cand.id} ({cand.provider_name}) failed: {last.message}{suffix}",
        call.attempts,
        status=last.status,
        provider=cand.provider_name,
        model=cand.id,
    )
