"""The adapters' JSON shortcuts answer exactly as json's own encoder and decoder do."""

from __future__ import annotations

import json
from typing import Any

import pytest

from llmroute.providers._http import parse_json_body
from llmroute.providers.openai_compatible import encode_body


def reference_parse(content: bytes) -> object:
    try:
        return json.JSONDecoder().decode(content.decode("utf-8"))
    except ValueError:
        return None


@pytest.mark.parametrize(
    "content",
    [
        b'{"a": 1}',
        b'{"a": 1}\n',
        b'  {"a": 1}  \r\n',
        b'[1, 2, {"b": null}]',
        b'{"a": 1} {"b": 2}',
        b'{"a": 1} x',
        '{"a": 1}\u3000'.encode(),
        b'{"a": 1}\x0b',
        b'{"a": ',
        b"{",
        b"[",
        b"",
        b"   ",
        b"42",
        b'"text"',
        b"null",
        b"<html>bad gateway</html>",
        b'{"a": "\xff"}',
        '{"text": "\u00e9\u4e2d\U0001f600"}'.encode(),
        b'{"a": NaN, "b": Infinity}',
    ],
)
def test_parse_json_body_matches_json(content: bytes) -> None:
    assert parse_json_body(content) == reference_parse(content) or (
        # NaN never equals itself: compare the text form
        repr(parse_json_body(content)) == repr(reference_parse(content))
    )


@pytest.mark.parametrize(
    "body",
    [
        {"model": "m", "messages": ({"role": "user", "content": "Hello"},)},
        {
            "model": "m",
            "messages": [{"role": "user", "content": 'h\u00e9llo \u4e2d \U0001f600 "q" \\ \n'}],
        },
        {"n": 1.5, "t": True, "z": None, "big": 10**30, "neg": -0.0, "e": 1e-300},
        {"nested": {"a": [1, [2, [3, {"b": ()}]]]}},
    ],
)
def test_encode_body_matches_json(body: dict[str, Any]) -> None:
    expected = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    assert encode_body(body) == expected


def test_encode_body_refuses_what_json_refuses() -> None:
    with pytest.raises(TypeError, match="Object of type set is not JSON serializable"):
        encode_body({"a": {1, 2}})
    circular: dict[str, Any] = {}
    circular["self"] = circular
    with pytest.raises(ValueError, match="Circular reference"):
        encode_body({"extra": circular})
