"""What a call's keywords become before the walk starts: the provider request, the
capabilities it needs (tools, vision, json) and its token estimate. Bad input raises here,
before anything is charged or sent."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Final

from llmroute._request import build_request
from llmroute.providers.base import Message, ProviderRequest

__all__ = ["check_budget", "check_sampling", "checked_extra", "prepare"]

#: `extra_body` may never set these: the routing (and the paid gate) decide them
_RESERVED_BODY: Final = frozenset({"model", "messages", "contents", "stream"})
#: ... nor anything that carries a key
_KEY_WORDS: Final = ("key", "authorization", "token", "secret", "password", "credential")


def prepare(
    completion_estimate: int,
    prompt: str | Sequence[Message],
    max_tokens: int | None,
    temperature: float | None,
    top_p: float | None,
    stop: str | Sequence[str] | None,
    tools: Sequence[Mapping[str, Any]] | None,
    tool_choice: str | Mapping[str, Any] | None,
    response_format: Mapping[str, Any] | None,
    extra_body: Mapping[str, Any] | None,
) -> tuple[ProviderRequest, frozenset[str], int]:
    """The provider request, the capabilities it needs and its token estimate (the prompt
    plus `max_tokens`, else `completion_estimate`)."""
    # build_request checks the prompt and the three options in one pass, and finds what
    # the request needs and its prompt estimate on the way.
    if max_tokens is not None or temperature is not None or top_p is not None:
        check_sampling(max_tokens, temperature, top_p)
    extra = {} if extra_body is None else checked_extra(extra_body)
    request = build_request(
        prompt,
        max_tokens,
        temperature,
        top_p,
        stop,
        extra,
        tools=tools,
        tool_choice=tool_choice,
        response_format=response_format,
    )
    needs: frozenset[str] = request.needs
    tokens = request.prompt_estimate + (
        max_tokens if max_tokens is not None else completion_estimate
    )
    return request, needs, tokens


def checked_extra(extra_body: Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy of `extra_body`; ValueError for a field the router owns (the model, the
    prompt, streaming) or one that could carry a key."""
    if extra_body is None:
        return {}
    if not isinstance(extra_body, Mapping):
        raise TypeError("extra_body: expected a mapping of body fields")
    for name in extra_body:
        if not isinstance(name, str):
            raise TypeError(f"extra_body: field names must be strings, not {name!r}")
        lowered = name.lower()
        if lowered in _RESERVED_BODY or any(word in lowered for word in _KEY_WORDS):
            raise ValueError(
                f"extra_body[{name!r}]: the router sets this field itself "
                "(the routed model, the prompt, streaming, the provider's key)"
            )
    return dict(extra_body)


def check_sampling(max_tokens: int | None, temperature: float | None, top_p: float | None) -> None:
    """`max_tokens` a positive integer; `temperature` and `top_p` finite numbers."""
    if max_tokens is not None:
        if isinstance(max_tokens, bool) or not isinstance(max_tokens, int):
            raise TypeError(f"max_tokens: expected an integer, not {type(max_tokens).__name__}")
        if max_tokens < 1:
            raise ValueError(f"max_tokens: expected at least 1, not {max_tokens}")
    for name, value in (("temperature", temperature), ("top_p", top_p)):
        if value is not None:
            _finite(name, value, minimum=0.0)


def check_budget(timeout: float | None, deadline: float | None) -> None:
    """`timeout` and `deadline`: positive, finite seconds (or None for the default)."""
    for name, value in (("timeout", timeout), ("deadline", deadline)):
        if value is not None and _finite(name, value, minimum=0.0) <= 0.0:
            raise ValueError(f"{name}: expected a positive number of seconds, not {value!r}")


def _finite(name: str, value: object, *, minimum: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name}: expected a number, not {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number) or number < minimum:
        raise ValueError(f"{name}: expected a finite number of at least {minimum:g}, not {value!r}")
    return number
