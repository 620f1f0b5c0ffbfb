"""A transport failure in the router's words: the check both clients pass (the router's own
in tests/test_transport.py, a user's httpx client in tests/faults/test_httpx_words.py)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import pytest

from llmroute import Router
from llmroute.errors import ProviderError

KEY = "sk-words-0123456789abcdef"

#: (fault server's fault, words the attempt's error holds) that every client meets alike
FAULT_WORDS = [
    ("refused", "connection refused by 127.0.0.1:"),
    ("reset", "connection reset by 127.0.0.1:"),
    ("bad_status_line", "malformed answer from 127.0.0.1:"),
    ("truncated_body", "cut off before its end"),
]


def one_model_config(base_url: str, wire: str, *, timeout: float) -> dict[str, Any]:
    """`p/m` alone, on `wire` ("openai" or "gemini") at `base_url`, never retried."""
    return {
        "providers": {
            "p": {
                "type": "openai_compatible" if wire == "openai" else "google_ai_studio",
                "base_url": base_url,
                "api_key": KEY,
                "retries": 0,
                "timeout": timeout,
            }
        },
        "models": {"p/m": {"provider": "p", "model": "m"}},
    }


async def assert_fails_in_words(router: Router, words: str, internal: Iterable[str]) -> None:
    """Both `complete` and `stream` of `p/m` fail with `words` in the attempt's error, none
    of `internal` in the message, and no stray HTTP 400."""
    internal = tuple(internal)
    for call in ("complete", "stream"):
        with pytest.raises(ProviderError) as caught:
            if call == "complete":
                await router.complete("p/m", "hi")
            else:
                async for _ in router.stream("p/m", "hi"):
                    pass  # pragma: no cover
        message = caught.value.attempts[-1].error or ""
        assert words in message, message
        text = str(caught.value)
        for part in internal:
            assert part not in text, text
        assert not re.search(r"(?<![\d:])400(?!\d)", text), text
