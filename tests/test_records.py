"""The hot path's record builders make the very records the constructors make."""

from __future__ import annotations

import dataclasses

import pytest

from llmroute._records import _setters, completion, ok_attempt, usage
from llmroute.trace import Attempt, Completion, ToolCall, Usage


def test_ok_attempt_is_the_constructed_row() -> None:
    built = ok_attempt("m", "p", "p#0", 200, 0.5, 12.0, "the configured limit")
    made = Attempt(
        model="m",
        provider="p",
        key="p#0",
        outcome="ok",
        status=200,
        waited_s=0.5,
        latency_ms=12.0,
        wait_reason="the configured limit",
    )
    assert type(built) is Attempt
    assert built == made
    assert hash(built) == hash(made)
    assert repr(built) == repr(made)


def test_completion_is_the_constructed_answer_and_stays_frozen() -> None:
    usage = Usage(prompt_tokens=3, completion_tokens=4, total_tokens=7)
    rows = [ok_attempt("m", "p", None, None, 0.0, 1.0, None)]
    calls = [ToolCall("c1", "f", "{}")]
    built = completion("hi", "m", "p", "stop", usage, 2.5, rows, {"raw": 1}, calls, 0.25)
    made = Completion(
        text="hi",
        model="m",
        provider="p",
        finish_reason="stop",
        usage=usage,
        latency_ms=2.5,
        attempts=rows,
        raw={"raw": 1},
        tool_calls=calls,
        cost=0.25,
    )
    assert built == made
    assert dataclasses.asdict(built) == dataclasses.asdict(made)
    assert built.message() == made.message()
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.text = "changed"  # type: ignore[misc]


def test_a_class_whose_fields_differ_is_refused() -> None:
    with pytest.raises(RuntimeError, match="out of date with Usage"):
        _setters(Usage, "prompt_tokens completion_tokens total_tokens")


def test_usage_is_the_constructed_report() -> None:
    built = usage(3, 4, 7)
    made = Usage(prompt_tokens=3, completion_tokens=4, total_tokens=7)
    assert built == made
    assert repr(built) == repr(made)
    assert built.estimated is False
