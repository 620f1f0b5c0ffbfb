"""Keeps secrets out of the log records of a user's own httpx client.

httpx logs every request URL at INFO ("HTTP Request: POST https://host/<token>/v1/...")
on its `httpx` logger, and httpcore logs connection steps at DEBUG on `httpcore.*`. A
base_url may carry a secret (a token in the path, from `${VAR}`), so while a router that
uses a user's client is open, a filter on those loggers passes each record through the
router's `Redactor`. Installed once per router and removed at `aclose`: a filter on a
logger runs only for records that logger's level lets through, so a quiet httpx costs
nothing per request. (The router's own client logs no URLs.)
"""

from __future__ import annotations

import logging

from llmroute._redact import Redactor

__all__ = ["LOGGERS", "RedactingFilter"]

# A logger's filters see only the records logged on that very logger, not its children's:
# each of httpcore's loggers is named.
LOGGERS = (
    "httpx",
    "httpcore",
    "httpcore.connection",
    "httpcore.connection_pool",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
)


class RedactingFilter(logging.Filter):
    """Masks every secret the router knows, and any 8+ character piece of one, in each
    record of the httpx and httpcore loggers. Never drops a record."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self._redact = redact
        self._loggers: list[logging.Logger] = []

    def install(self) -> RedactingFilter:
        for name in LOGGERS:
            logger = logging.getLogger(name)
            logger.addFilter(self)
            self._loggers.append(logger)
        return self

    def remove(self) -> None:
        for logger in self._loggers:
            logger.removeFilter(self)
        self._loggers.clear()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = self._redact(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True
