"""The trace recorder: every attempt row, the usage totals and the log lines of a request.

Every text that leaves here (a trace row's error, a log line) has passed through the one
`Redactor`, so no secret reaches a trace, a log or an exception built from them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Final

from llmroute._candidate import Candidate
from llmroute._records import ok_attempt
from llmroute._redact import Redactor
from llmroute.trace import Attempt, ModelUsage, Outcome, Usage

__all__ = ["Call", "Recorder", "summary"]

logger = logging.getLogger("llmroute")
_enabled = logger.isEnabledFor
_DEBUG: Final = logging.DEBUG
_INFO: Final = logging.INFO

#: what ended a call early, for its error message
BUDGET_ATTEMPTS: Final = "max_attempts"
BUDGET_DEADLINE: Final = "deadline"


class Call:
    """The budget and trace of one request."""

    __slots__ = (
        "attempts",
        "cooled",
        "deadline",
        "deadline_at",
        "max_attempts",
        "sent",
        "spent_by",
        "start",
        "target",
    )

    def __init__(
        self, target: str, start: float, max_attempts: int, deadline: float | None
    ) -> None:
        self.target = target
        self.start = start
        self.max_attempts = max_attempts
        self.deadline = deadline
        self.deadline_at = start + deadline if deadline is not None else math.inf
        self.sent = 0
        self.attempts: list[Attempt] = []
        #: seconds spent waiting for cooldowns to end (`on_limit: sleep`)
        self.cooled = 0.0
        #: the budget that ended the call (`max_attempts`, `deadline`), or None
        self.spent_by: str | None = None

    def spent(self, now: float) -> bool:
        if self.sent >= self.max_attempts:
            self.spent_by = BUDGET_ATTEMPTS
            return True
        if now >= self.deadline_at:
            self.spent_by = BUDGET_DEADLINE
            return True
        return False

    def budget_text(self) -> str:
        if self.spent_by == BUDGET_ATTEMPTS:
            return f"the attempt budget (max_attempts={self.max_attempts}) is spent"
        if self.spent_by == BUDGET_DEADLINE:
            return f"the deadline ({self.deadline:g}s) has passed"
        return ""


def summary(attempts: Sequence[Attempt]) -> str:
    return ", ".join(f"{a.model}{'[' + a.key + ']' if a.key else ''}:{a.outcome}" for a in attempts)


class Recorder:
    """Writes trace rows and usage; one per router, bound to its clock and redactor."""

    def __init__(self, mono: Callable[[], float], redact: Redactor) -> None:
        self.mono = mono
        self.redact = redact
        #: model id -> [requests, prompt tokens, completion tokens, errors, cost]
        self.stats: dict[str, list[float]] = {}

    def usage(self) -> dict[str, ModelUsage]:
        return {
            model: ModelUsage(
                requests=int(s[0]),
                prompt_tokens=int(s[1]),
                completion_tokens=int(s[2]),
                errors=int(s[3]),
                cost=s[4],
            )
            for model, s in self.stats.items()
        }

    def skip(self, call: Call, cand: Candidate, outcome: Outcome, reason: str) -> None:
        call.attempts.append(
            Attempt(
                model=cand.id,
                provider=cand.provider_name,
                key=None,
                outcome=outcome,
                error=self.redact(reason),
            )
        )

    def row(
        self,
        call: Call,
        cand: Candidate,
        slot: int | None,
        outcome: Outcome,
        *,
        status: int | None = None,
        started: float,
        error: str | None = None,
        waited: float = 0.0,
        wait_reason: str | None = None,
    ) -> None:
        """One attempt row; a failed send also counts as an error in the usage totals."""
        text = self.redact(error) if error else error
        call.attempts.append(
            Attempt(
                model=cand.id,
                provider=cand.provider_name,
                key=cand.label(slot),
                outcome=outcome,
                status=status,
                waited_s=waited,
                latency_ms=(self.mono() - started) * 1000.0,
                error=text,
                wait_reason=wait_reason,
            )
        )
        if _enabled(_DEBUG):
            logger.debug(
                "%s %s: %s%s",
                cand.id,
                cand.label(slot) or "",
                outcome,
                f" ({text})" if text else "",
            )

    def failed_send(self, cand: Candidate) -> None:
        stats = self._stats(cand)
        stats[0] += 1
        stats[3] += 1

    def ok(
        self,
        call: Call,
        cand: Candidate,
        slot: int,
        started: float,
        waited: float,
        wait_reason: str | None,
        usage: Usage,
    ) -> float | None:
        """The served attempt: its row, its usage counted, its log lines. Returns its cost by
        the model's price (None: no price). One method, as it runs on every request."""
        call.attempts.append(
            ok_attempt(
                cand.id,
                cand.provider_name,
                cand.label(slot),
                200 if cand.provider_config.uses_keys else None,
                waited,
                (self.mono() - started) * 1000.0,
                wait_reason,
            )
        )
        stats = self.stats.get(cand.id)
        if stats is None:
            stats = self.stats[cand.id] = [0, 0, 0, 0, 0.0]
        stats[0] += 1
        stats[1] += usage.prompt_tokens
        stats[2] += usage.completion_tokens
        cost = None
        if cand.price is not None:
            cost = (
                usage.prompt_tokens * cand.price_in + usage.completion_tokens * cand.price_out
            ) / 1_000_000
            stats[4] += cost
        if _enabled(_INFO):  # DEBUG implies INFO: one test when logging is quiet
            self._log_ok(call, cand, slot, usage)
        return cost

    def _log_ok(self, call: Call, cand: Candidate, slot: int, usage: Usage) -> None:
        """The attempt's DEBUG line, then the one INFO line per served request with its
        facts as structured fields."""
        if _enabled(_DEBUG):
            logger.debug("%s %s: ok", cand.id, cand.label(slot) or "")
        latency = (self.mono() - call.start) * 1000.0
        outcomes = [a.outcome for a in call.attempts]
        logger.info(
            "%s -> %s ok: %d tokens%s, %.0f ms, attempts: %s",
            call.target,
            cand.id,
            usage.total_tokens,
            " (estimated)" if usage.estimated else "",
            latency,
            summary(call.attempts),
            extra={
                "target": call.target,
                "model": cand.id,
                "outcomes": outcomes,
                "tokens": usage.total_tokens,
                "latency_ms": latency,
            },
        )

    def log_failure(self, call: Call) -> None:
        if not _enabled(_INFO):
            return
        latency = (self.mono() - call.start) * 1000.0
        logger.info(
            "%s failed: %s",
            call.target,
            self.redact(summary(call.attempts)) or "nothing was tried",
            extra={
                "target": call.target,
                "model": None,
                "outcomes": [a.outcome for a in call.attempts],
                "tokens": 0,
                "latency_ms": latency,
            },
        )

    def _stats(self, cand: Candidate) -> list[float]:
        stats = self.stats.get(cand.id)
        if stats is None:
            stats = self.stats[cand.id] = [0, 0, 0, 0, 0.0]
        return stats
