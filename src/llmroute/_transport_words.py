"""Transport failures in words: one phrase table for every HTTP client the router may hold.

The router's own aiohttp client and a user's `httpx.AsyncClient` fail in different ways
(different exception types, texts and causes), yet a user must read the same sentence for
the same event: "connection refused by 127.0.0.1:8080", not httpx's "All connection
attempts failed" or aiohttp's "Cannot connect to host ... ssl:default". Libraries' own
texts are never shown: they carry internal status numbers (aiohttp's "400" for a bad status
line), raw bytes of the answer (h11's `bytearray(b'...')`) and byte counts. Only the host
and port are named, as a path or user part of a URL may carry a token.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import ssl
from typing import Final

import httpx

__all__ = ["MALFORMED", "PHRASES", "describe", "phrase", "where_of", "worded"]

#: situation -> sentence; `{where}` is `host:port`, `{what}` what was wrong with the answer
PHRASES: Final[dict[str, str]] = {
    "refused": "connection refused by {where}",
    "reset": "connection reset by {where}",
    "unreachable": "{where} is unreachable",
    "dns": "could not resolve the host of {where}",
    "tls_untrusted": "the TLS certificate of {where} is not trusted",
    "tls": "the TLS handshake with {where} failed",
    "connect_failed": "could not connect to {where} ({what})",
    "cannot_connect": "could not connect to {where}",
    "connect_timeout": "connecting to {where} timed out",
    "read_timeout": "{where} sent nothing for the read timeout",
    "write_timeout": "sending the request to {where} timed out",
    "pool_timeout": "timed out waiting for a connection to {where}",
    "closed": "{where} closed the connection without answering",
    "cut_off": "the answer from {where} was cut off before its end",
    "malformed": "malformed answer from {where}: {what}",
    "bad_request": "the request to {where} could not be sent as valid HTTP",
    "broken_pipe": "{where} closed the connection while the request was sent",
    "failed": "connection to {where} failed ({what})",
    "lost": "connection to {where} failed",
    "invalid_url": "invalid URL (only http:// and https:// are sent)",
    "proxy": "the proxy failed to connect to {where}",
    "other": "HTTP client error talking to {where} ({what})",
}

#: what can be wrong with an answer, in words
MALFORMED: Final[dict[str, str]] = {
    "status_line": "not an HTTP status line",
    "line_too_long": "a line too long",
    "header": "an invalid header",
    "chunked": "broken chunked encoding",
    "short_body": "a body shorter than its Content-Length",
    "encoding": "a body that does not decode",
    "other": "not valid HTTP",
}


def phrase(situation: str, where: str = "the server", what: str = "") -> str:
    return PHRASES[situation].format(where=where, what=what)


def where_of(url: str | httpx.URL | None) -> str:
    """`host:port` of a URL, or "the server"."""
    if url is None:
        return "the server"
    with contextlib.suppress(ValueError, TypeError):
        parsed = url if isinstance(url, httpx.URL) else httpx.URL(url)
        if parsed.host:
            port = parsed.port or (443 if parsed.scheme == "https" else 80)
            return f"{parsed.host}:{port}"
    return "the server"


# httpx's RemoteProtocolError says what broke only in its text (from h11): read, never shown.
_REMOTE_TEXTS: Final = (
    ("illegal status line", "status_line"),
    ("status line", "status_line"),
    ("line too long", "line_too_long"),
    ("exceeded maximum size", "line_too_long"),
    ("header", "header"),
    ("chunk", "chunked"),
    ("decod", "encoding"),
)


_WORDED = "_llmroute_worded"


def worded(exc: httpx.TransportError) -> httpx.TransportError:
    """Mark an exception whose text is already one of these phrases (the router's client)."""
    setattr(exc, _WORDED, True)
    return exc


def describe(exc: httpx.TransportError) -> str:
    """The words for an httpx exception: its own text when the router's client raised it,
    else read from its type and causes (a user's own `httpx.AsyncClient`)."""
    if getattr(exc, _WORDED, False):
        return str(exc)
    where = _request_where(exc)
    if isinstance(exc, httpx.TimeoutException):
        return phrase(_timeout_situation(exc), where)
    if isinstance(exc, httpx.ConnectError):
        return _connect_failure(exc, where)
    if isinstance(exc, httpx.RemoteProtocolError):
        return _remote_protocol(exc, where)
    if isinstance(exc, httpx.LocalProtocolError):
        return phrase("bad_request", where)
    if isinstance(exc, httpx.ProxyError):
        return phrase("proxy", where)
    if isinstance(exc, httpx.UnsupportedProtocol):
        return phrase("invalid_url")
    if isinstance(exc, httpx.NetworkError):  # ReadError, WriteError, CloseError
        return _network_failure(exc, where)
    return phrase("other", where, type(exc).__name__)


def _request_where(exc: httpx.TransportError) -> str:
    try:
        return where_of(exc.request.url)
    except RuntimeError:  # raised without a request (a hand-made exception)
        return "the server"


def _timeout_situation(exc: httpx.TimeoutException) -> str:
    if isinstance(exc, httpx.ConnectTimeout):
        return "connect_timeout"
    if isinstance(exc, httpx.WriteTimeout):
        return "write_timeout"
    if isinstance(exc, httpx.PoolTimeout):
        return "pool_timeout"
    return "read_timeout"


def _causes(exc: BaseException) -> list[BaseException]:
    """The exception and those behind it, nearest first (loops cut)."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain and len(chain) < 10:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _connect_failure(exc: httpx.ConnectError, where: str) -> str:
    for cause in _causes(exc):
        if isinstance(cause, socket.gaierror):
            return phrase("dns", where)
        if isinstance(cause, ssl.SSLCertVerificationError):
            return phrase("tls_untrusted", where)
        if isinstance(cause, ssl.SSLError):
            return phrase("tls", where)
        if isinstance(cause, ConnectionRefusedError):
            return phrase("refused", where)
        if isinstance(cause, OSError) and cause.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
            return phrase("unreachable", where)
    for cause in _causes(exc):
        if isinstance(cause, OSError) and cause.strerror:
            return phrase("connect_failed", where, cause.strerror.lower())
    return phrase("cannot_connect", where)


def _remote_protocol(exc: httpx.RemoteProtocolError, where: str) -> str:
    text = str(exc).lower()
    if "without sending a response" in text or "disconnected" in text:
        return phrase("closed", where)
    if "without sending complete message body" in text or "incomplete" in text:
        return phrase("cut_off", where)
    for needle, what in _REMOTE_TEXTS:
        if needle in text:
            return phrase("malformed", where, MALFORMED[what])
    return phrase("malformed", where, MALFORMED["other"])


def _network_failure(exc: httpx.NetworkError, where: str) -> str:
    for cause in _causes(exc):
        if isinstance(cause, ConnectionResetError):
            return phrase("reset", where)
        if isinstance(cause, BrokenPipeError):
            return phrase("broken_pipe", where)
    for cause in _causes(exc):
        if isinstance(cause, OSError) and cause.strerror:
            return phrase("failed", where, cause.strerror.lower())
    return phrase("lost", where)
