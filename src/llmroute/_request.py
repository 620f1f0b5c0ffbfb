"""Turning what a caller passed into a `ProviderRequest`, and the token estimate for it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from llmroute._prompt import check_prompt, check_tools, text_tokens
from llmroute.providers.base import SIGNATURES, Message, Need, ProviderRequest

__all__ = [
    "build_request",
    "estimate_prompt_tokens",
    "for_attempt",
    "normalise_messages",
    "text_tokens",
]

# Names complete() used to take through **extra; picked out so they are checked and
# translated even when a caller (or an older router) passes them that way.
_OPTIONS: Final = ("tools", "tool_choice", "response_format")
_NO_NEEDS: Final[frozenset[Need]] = frozenset()


def build_request(
    prompt: str | Sequence[Message],
    max_tokens: int | None,
    temperature: float | None,
    top_p: float | None,
    stop: str | Sequence[str] | None,
    extra: Mapping[str, Any],
    *,
    tools: Sequence[Mapping[str, Any]] | None = None,
    tool_choice: str | Mapping[str, Any] | None = None,
    response_format: Mapping[str, Any] | None = None,
) -> ProviderRequest:
    """Check the prompt and options (raising `TypeError`/`ValueError` naming the bad path)
    and build the request every attempt starts from."""
    if extra and any(name in extra for name in _OPTIONS):
        extra = dict(extra)
        tools = extra.pop("tools", tools)
        tool_choice = extra.pop("tool_choice", tool_choice)
        response_format = extra.pop("response_format", response_format)
    memo: dict[str, object] = {}
    if isinstance(prompt, str):
        # The plain-text path: one message, nothing to walk.
        messages: Sequence[Message] = ({"role": "user", "content": prompt},)
        needs = _NO_NEEDS
        estimate = text_tokens(prompt) + 5
        if tools is not None or tool_choice is not None or response_format is not None:
            found: set[Need] = set()
            tools, tool_tokens = check_tools(tools, tool_choice, response_format, found)
            needs = frozenset(found)
            estimate += tool_tokens
    else:
        checked = check_prompt(prompt)
        tools, tool_tokens = check_tools(tools, tool_choice, response_format, checked.needs)
        messages = tuple(checked.messages)
        needs = frozenset(checked.needs)
        estimate = checked.estimate + tool_tokens
        if checked.signatures:
            memo[SIGNATURES] = checked.signatures
    return ProviderRequest(
        model="",
        messages=messages,
        max_tokens=max_tokens,
        temperature=temperature,
        top_p=top_p,
        stop=(stop,) if isinstance(stop, str) else (tuple(stop) if stop else None),
        extra=extra,
        tools=tools,
        tool_choice=tool_choice,
        response_format=response_format,
        needs=needs,
        prompt_estimate=estimate,
        memo=memo,
    )


def for_attempt(request: ProviderRequest, model: str, timeout: float) -> ProviderRequest:
    # Spelled out: dataclasses.replace introspects the fields on every call. The memo is
    # shared on purpose: an adapter's translation of the request serves every attempt.
    return ProviderRequest(
        model=model,
        messages=request.messages,
        max_tokens=request.max_tokens,
        temperature=request.temperature,
        top_p=request.top_p,
        stop=request.stop,
        timeout=timeout,
        extra=request.extra,
        tools=request.tools,
        tool_choice=request.tool_choice,
        response_format=request.response_format,
        needs=request.needs,
        prompt_estimate=request.prompt_estimate,
        memo=request.memo,
    )


def normalise_messages(prompt: str | Sequence[Message]) -> Sequence[Message]:
    """The prompt as a checked list of messages (a string is one user message)."""
    if isinstance(prompt, str):
        return ({"role": "user", "content": prompt},)
    return tuple(check_prompt(prompt).messages)


def estimate_prompt_tokens(messages: Sequence[Message]) -> int:
    """About four ASCII characters a token, a token per other character, a fixed share per
    image, plus a few tokens of framing per message: an overestimate, which errs on the
    side of never overshooting a limit. `ProviderRequest.prompt_estimate` holds this (and
    the tool declarations) for a built request."""
    if len(messages) == 1:
        content = messages[0].get("content")
        if isinstance(content, str):
            return text_tokens(content) + 5
    return check_prompt(messages).estimate
