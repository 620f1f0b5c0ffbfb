"""Turning what a caller passed into a `ProviderRequest`, and the token estimate for it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from llmroute.providers.base import Message, ProviderRequest

__all__ = ["build_request", "estimate_prompt_tokens", "for_attempt", "normalise_messages"]

_ROLES = frozenset({"system", "user", "assistant"})


def build_request(
    prompt: str | Sequence[Message],
    max_tokens: int | None,
    temperature: float | None,
    top_p: float | None,
    stop: str | Sequence[str] | None,
    extra: Mapping[str, Any],
) -> ProviderRequest:
    return ProviderRequest(
        model="",
        messages=normalise_messages(prompt),
        max_tokens=max_tokens,
        temperature=temperature,
        top_p=top_p,
        stop=(stop,) if isinstance(stop, str) else (tuple(stop) if stop else None),
        extra=extra,
    )


def for_attempt(request: ProviderRequest, model: str, timeout: float) -> ProviderRequest:
    # Spelled out: dataclasses.replace introspects the fields on every call.
    return ProviderRequest(
        model=model,
        messages=request.messages,
        max_tokens=request.max_tokens,
        temperature=request.temperature,
        top_p=request.top_p,
        stop=request.stop,
        timeout=timeout,
        extra=request.extra,
    )


def normalise_messages(prompt: str | Sequence[Message]) -> Sequence[Message]:
    if isinstance(prompt, str):
        return ({"role": "user", "content": prompt},)
    if not prompt:
        raise ValueError("prompt: an empty message list")
    for i, message in enumerate(prompt):
        if not isinstance(message, Mapping):
            raise TypeError(f"prompt[{i}]: expected a mapping with role and content")
        if message.get("role") not in _ROLES:
            raise ValueError(f"prompt[{i}].role: expected one of system, user, assistant")
        if not isinstance(message.get("content"), str):
            raise TypeError(f"prompt[{i}].content: expected a string")
    return prompt


def estimate_prompt_tokens(messages: Sequence[Message]) -> int:
    # About four characters a token, plus a few tokens of framing per message: an
    # overestimate for English, which errs on the side of never overshooting a limit.
    return sum(len(m["content"]) // 4 + 4 for m in messages) + 1
