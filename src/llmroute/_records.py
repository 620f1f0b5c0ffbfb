"""The trace's frozen records, built on the per-request path without their `__init__`.

A frozen dataclass's generated `__init__` sets each field through `object.__setattr__`
(the class's own `__setattr__` refuses): about 1.3 us for a `Completion`, 0.8 us for an
`Attempt` and 0.4 us for a `Usage`, on every request. Their fields are slots, and a slot's
descriptor sets it directly, in about half the time. The records built here are the same
objects: same class, every field set, equal to (and hashing like) one built by the
constructor, as frozen as ever. Only the request path uses this; everything else calls
the constructors.

Each function names every field of its class; `_setters` refuses, at import, a class whose
fields differ or that validates in `__post_init__`, so a field added to the trace cannot
be left unset here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from llmroute.trace import Attempt, Completion, ToolCall, Usage

__all__ = ["completion", "ok_attempt", "usage"]

_new = object.__new__


def _setters(cls: type, names: str) -> tuple[Callable[[Any, Any], None], ...]:
    declared = sorted(f.name for f in dataclasses.fields(cls))
    wanted = names.split()
    if declared != sorted(wanted) or hasattr(cls, "__post_init__"):
        raise RuntimeError(f"llmroute._records is out of date with {cls.__name__}'s fields")
    return tuple(getattr(cls, name).__set__ for name in wanted)


_USAGE = _setters(Usage, "prompt_tokens completion_tokens total_tokens estimated")
_ATTEMPT = _setters(
    Attempt, "model provider key outcome status waited_s latency_ms error wait_reason"
)
_COMPLETION = _setters(
    Completion,
    "text model provider finish_reason usage latency_ms attempts raw tool_calls cost",
)


def usage(prompt_tokens: int, completion_tokens: int, total_tokens: int) -> Usage:
    """`Usage(...)` as a provider reported it (not estimated)."""
    record = _new(Usage)
    set_ = _USAGE  # in the order the names were given to _setters
    set_[0](record, prompt_tokens)
    set_[1](record, completion_tokens)
    set_[2](record, total_tokens)
    set_[3](record, False)
    return record


def ok_attempt(
    model: str,
    provider: str,
    key: str | None,
    status: int | None,
    waited_s: float,
    latency_ms: float,
    wait_reason: str | None,
) -> Attempt:
    """`Attempt(..., outcome="ok")`: the served attempt's row."""
    record = _new(Attempt)
    set_ = _ATTEMPT  # in the order the names were given to _setters
    set_[0](record, model)
    set_[1](record, provider)
    set_[2](record, key)
    set_[3](record, "ok")
    set_[4](record, status)
    set_[5](record, waited_s)
    set_[6](record, latency_ms)
    set_[7](record, None)
    set_[8](record, wait_reason)
    return record


def completion(
    text: str,
    model: str,
    provider: str,
    finish_reason: str | None,
    usage: Usage,
    latency_ms: float,
    attempts: list[Attempt],
    raw: object,
    tool_calls: list[ToolCall],
    cost: float | None,
) -> Completion:
    """`Completion(...)`, every field given."""
    record = _new(Completion)
    set_ = _COMPLETION  # in the order the names were given to _setters
    set_[0](record, text)
    set_[1](record, model)
    set_[2](record, provider)
    set_[3](record, finish_reason)
    set_[4](record, usage)
    set_[5](record, latency_ms)
    set_[6](record, attempts)
    set_[7](record, raw)
    set_[8](record, tool_calls)
    set_[9](record, cost)
    return record
