"""A user's own `httpx.AsyncClient` reports transport failures in the router's words.

The same faults as the router's own client meets (tests/test_transport.py), on the fault
server: each message names the event and the host, never httpx's text ("All connection
attempts failed"), h11's raw bytes (`bytearray(b'...')`) or byte counts.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from llmroute import Router
from llmroute._transport_words import describe
from llmroute.testing import FaultServer
from transport_faults import FAULT_WORDS, KEY, assert_fails_in_words, one_model_config

INTERNAL = ("All connection attempts", "bytearray", "illegal status", "Errno", "received ")


@pytest.mark.parametrize(("fault", "words"), FAULT_WORDS)
@pytest.mark.parametrize("wire", ["openai", "gemini"])
async def test_a_users_httpx_client_reports_failures_in_words(
    fault: str, words: str, wire: str, tmp_path: Path
) -> None:
    async with FaultServer() as faults, httpx.AsyncClient(trust_env=False) as client:
        config = one_model_config(faults.base_url(fault, wire), wire, timeout=0.5)
        router = Router(config, {}, env_file=None, cache_dir=tmp_path, http_client=client)
        async with router:
            await assert_fails_in_words(router, words, (*INTERNAL, KEY[5:]))


def _raised(exc: httpx.TransportError, *, cause: BaseException | None = None) -> str:
    exc.request = httpx.Request("POST", "https://api.example.test/secret-token/v1")
    exc.__cause__ = cause
    return describe(exc)


@pytest.mark.parametrize(
    ("exc", "cause", "words"),
    [
        (httpx.ConnectTimeout("x"), None, "connecting to api.example.test:443 timed out"),
        (httpx.ReadTimeout("x"), None, "api.example.test:443 sent nothing for the read timeout"),
        (httpx.WriteTimeout("x"), None, "sending the request to api.example.test:443 timed out"),
        (httpx.PoolTimeout("x"), None, "waiting for a connection to api.example.test:443"),
        (httpx.ConnectError("x"), ConnectionRefusedError(111, "x"), "connection refused by"),
        (httpx.ReadError(""), ConnectionResetError(104, "x"), "connection reset by"),
        (httpx.WriteError(""), BrokenPipeError(32, "x"), "closed the connection while the req"),
        (
            httpx.RemoteProtocolError("Server disconnected without sending a response."),
            None,
            "api.example.test:443 closed the connection without answering",
        ),
        (
            httpx.RemoteProtocolError("illegal status line: bytearray(b'SSH-2.0')"),
            None,
            "malformed answer from api.example.test:443: not an HTTP status line",
        ),
        (httpx.LocalProtocolError("Illegal header value b'x'"), None, "could not be sent as valid"),
        (httpx.UnsupportedProtocol("x"), None, "invalid URL"),
    ],
)
def test_each_httpx_failure_type_has_words(
    exc: httpx.TransportError, cause: BaseException | None, words: str
) -> None:
    text = _raised(exc, cause=cause)
    assert words in text
    assert "secret-token" not in text and "bytearray" not in text
