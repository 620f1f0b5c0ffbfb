"""How a chain ends: skip rows, the summary of a trace, and the error a failed request raises.

A one-candidate request raises that candidate's own error (`ProviderError` or
`RateLimitedError`); a longer chain raises `RateLimitedError` when every candidate that was
tried ended on a rate limit, else `RoutingError`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from llmroute._candidate import Candidate
from llmroute._hints import nothing_set_up
from llmroute.errors import ProviderError, RateLimitedError, RoutingError
from llmroute.trace import Attempt, Outcome

__all__ = ["RATE_LIMITED", "Failed", "exhausted_error", "finite", "skip_row", "summary"]

RATE_LIMITED: Final = frozenset({"rate_limited_local", "rate_limited_remote", "keys_exhausted"})


@dataclass(slots=True)
class Failed:
    """How a candidate ended without an answer."""

    outcome: Outcome
    status: int | None
    message: str
    #: seconds until this candidate frees up (rate limits only); inf = never
    retry_after: float | None = None


def skip_row(cand: Candidate, outcome: Outcome, reason: str) -> Attempt:
    return Attempt(
        model=cand.id, provider=cand.provider_name, key=None, outcome=outcome, error=reason
    )


def summary(attempts: Sequence[Attempt]) -> str:
    return ", ".join(f"{a.model}{'[' + a.key + ']' if a.key else ''}:{a.outcome}" for a in attempts)


def finite(value: float | None) -> float | None:
    return value if value is not None and value != math.inf else None


def exhausted_error(
    target: str, chain: Sequence[Candidate], attempts: list[Attempt], failures: list[Failed]
) -> RoutingError | ProviderError:
    """The error for a request whose chain ran out (see the module docstring)."""
    text = summary(attempts) or "nothing was tried"
    error: RoutingError | ProviderError
    if len(chain) == 1:
        cand = chain[0]
        last = failures[-1] if failures else Failed("timeout", None, "budget spent")
        if last.outcome in RATE_LIMITED:
            error = RateLimitedError(
                f"{cand.id} is rate limited: {last.message}",
                attempts,
                retry_after=finite(last.retry_after),
            )
        else:
            error = ProviderError(
                f"{cand.id} ({cand.provider_name}) failed: {last.message}",
                attempts,
                status=last.status,
                provider=cand.provider_name,
                model=cand.id,
            )
    elif failures and all(f.outcome in RATE_LIMITED for f in failures):
        waits = [w for f in failures if (w := finite(f.retry_after)) is not None]
        error = RateLimitedError(
            f"every candidate for {target!r} is rate limited ({text})",
            attempts,
            retry_after=min(waits) if waits else None,
        )
    else:
        hint = nothing_set_up(a.outcome for a in attempts)
        error = RoutingError(
            f"no candidate for {target!r} could serve the request"
            + (f": {hint}" if hint else "")
            + f" ({text})",
            attempts,
        )
    return error
