"""What a request leaves behind: usage figures and one routing-trace row per attempt."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "Attempt",
    "CandidateExplanation",
    "Chunk",
    "Completion",
    "ExplainOutcome",
    "Explanation",
    "ModelUsage",
    "Outcome",
    "ToolCall",
    "Usage",
]

Outcome = Literal[
    "ok",
    "skipped_paid",
    "skipped_unavailable",
    "skipped_capability",
    "skipped_context",
    "rate_limited_local",
    "rate_limited_remote",
    "keys_exhausted",
    "timeout",
    "server_error",
    "client_error",
    "transport_error",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Usage:
    """Token counts of one request; `estimated` when the provider reported none."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    estimated: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Attempt:
    """One row of the routing trace: one candidate (and key) tried, or skipped."""

    model: str
    provider: str
    #: slot label `{provider}#{i}`; never the secret. None for providers without keys.
    key: str | None
    outcome: Outcome
    #: HTTP status, or None (skips, local limits, timeouts, transport errors, CLIs)
    status: int | None = None
    #: seconds spent waiting for the local limiter before this attempt
    waited_s: float = 0.0
    latency_ms: float = 0.0
    #: what went wrong, secrets removed
    error: str | None = None
    #: why `waited_s` was waited: the configured limit, a limit learnt from the provider,
    #: or a window the provider reported spent; None when nothing was waited
    wait_reason: str | None = None


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One function call the model asked for.

    `arguments` is the JSON text exactly as the model wrote it: models can write invalid JSON,
    so parse it yourself and keep the original. Gemini issues no ids of its own on most
    models; such calls get a generated one, which the next request may quote back as
    `tool_call_id`.
    """

    id: str
    name: str
    arguments: str
    #: Gemini's opaque `thoughtSignature` for this call, which must go back with it on the
    #: next turn; None elsewhere. Carried so a history rebuilt from `to_dict()` keeps it.
    thought_signature: str | None = field(default=None, repr=False, compare=False, kw_only=True)

    def to_dict(self) -> dict[str, object]:
        """The call as an entry of an assistant message's `tool_calls` (OpenAI shape)."""
        call: dict[str, object] = {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }
        if self.thought_signature is not None:
            # Google's own OpenAI-compatible endpoint carries the signature in this field;
            # llmroute strips it before any other provider sees the message.
            call["extra_content"] = {"google": {"thought_signature": self.thought_signature}}
        return call


@dataclass(frozen=True, slots=True, kw_only=True)
class Completion:
    """The answer to `Router.complete`."""

    text: str
    model: str
    provider: str
    #: normalised: `stop`, `length`, `tool_calls` or `content_filter`
    finish_reason: str | None
    usage: Usage
    #: the whole call, waits included
    latency_ms: float
    attempts: list[Attempt]
    #: the provider's parsed answer
    raw: object = field(default=None, repr=False)
    #: the functions the model asked to call, in its order (`text` may then be "")
    tool_calls: list[ToolCall] = field(default_factory=list)
    #: this request's cost by the model's `price`; None when the model has no price
    cost: float | None = None

    def message(self) -> dict[str, object]:
        """This answer as the assistant message to append to the conversation."""
        return {
            "role": "assistant",
            "content": self.text if self.text or not self.tool_calls else None,
            **(
                {"tool_calls": [call.to_dict() for call in self.tool_calls]}
                if self.tool_calls
                else {}
            ),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Chunk:
    """One piece of a stream; the last one carries finish_reason, usage, model and attempts."""

    text: str
    finish_reason: str | None = None
    usage: Usage | None = None
    model: str | None = None
    attempts: list[Attempt] | None = None
    #: on the last chunk: every tool call of the answer, assembled and complete
    tool_calls: list[ToolCall] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelUsage:
    """Totals for one model since the router was built.

    `requests` counts requests sent to the model (retries included); `errors` those that failed.
    `cost` is in the currency of the model's `price` (per million tokens), 0.0 without one.
    """

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    errors: int = 0
    cost: float = 0.0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


ExplainOutcome = Literal[
    "would_send",
    "skipped_paid",
    "skipped_unavailable",
    "skipped_capability",
    "skipped_context",
    "rate_limited_local",
    "keys_exhausted",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class CandidateExplanation:
    """What a request sent now would meet at one candidate (`Router.explain`)."""

    model: str
    provider: str
    outcome: ExplainOutcome
    #: the key slot it would use (`{provider}#{i}`), never the secret
    key: str | None = None
    #: seconds the local limiter would make it wait (inf: it can never fit)
    wait_s: float = 0.0
    #: seconds until the soonest of its keys (or the model) stops cooling down
    cooldown_s: float = 0.0
    reason: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Explanation:
    """The resolved chain of a target and, per candidate, what a request would meet."""

    target: str
    chain: tuple[str, ...]
    candidates: tuple[CandidateExplanation, ...]

    def __await__(self) -> Generator[Any, None, Explanation]:
        """`router.explain(...)` is synchronous; awaiting its result gives it back as it is,
        so `await router.explain(...)` reads the same in async code."""
        return self
        yield  # a generator that yields nothing: awaiting it never suspends

    def __str__(self) -> str:
        head = ("model", "provider", "outcome", "key", "wait", "cooldown", "reason")
        rows = [head]
        for c in self.candidates:
            rows.append(
                (
                    c.model,
                    c.provider,
                    c.outcome,
                    c.key or "-",
                    _seconds(c.wait_s),
                    _seconds(c.cooldown_s),
                    c.reason or "",
                )
            )
        widths = [max(len(r[i]) for r in rows) for i in range(len(head) - 1)]
        lines = [f"{self.target}: {' > '.join(self.chain)}"]
        for r in rows:
            cells = [r[i].ljust(widths[i]) for i in range(len(widths))]
            lines.append("  ".join([*cells, r[-1]]).rstrip())
        return "\n".join(lines)


def _seconds(value: float) -> str:
    if value == float("inf"):
        return "never"
    return f"{value:.1f}s" if value else "-"
