"""What the `llmroute` command prints: stdout, stderr and its log lines, each through one
redactor that knows the configured secrets (a second line of defence: the commands print
only slot labels and counts)."""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterable
from typing import Final, TextIO

from llmroute._redact import Redactor

__all__ = ["SECRET_NAME", "Out", "setup_logging"]

SECRET_NAME: Final = re.compile(r"KEY|TOKEN|SECRET|PASSWORD", re.IGNORECASE)
#: the shortest value of a secret-looking variable taken as a secret
_MIN_GUESSED: Final = 6


class Out:
    """stdout and stderr with every known secret, and every 8+ character piece of one,
    replaced by `***` (the router's own `Redactor` rule)."""

    def __init__(self, stdout: TextIO, stderr: TextIO) -> None:
        self.stdout = stdout
        self.stderr = stderr
        self._secrets: frozenset[str] = frozenset()
        self.redact = Redactor()
        # Guessed from the variable's name, so short values ("true", "1") are left out.
        self.learn(
            v for k, v in os.environ.items() if SECRET_NAME.search(k) and len(v) >= _MIN_GUESSED
        )

    def learn(self, secrets: Iterable[str]) -> None:
        """Add secrets (the config's, once it is loaded); the redactor is rebuilt only here,
        never per line printed."""
        found = self._secrets.union(secrets)
        if found != self._secrets:
            self._secrets = found
            self.redact = Redactor(found)

    def print(self, text: str = "", *, end: str = "\n") -> None:
        self.stdout.write(self.redact(text) + end)

    def write(self, text: str) -> None:
        """Stream a piece of text to stdout at once."""
        self.stdout.write(self.redact(text))
        self.stdout.flush()

    def error(self, text: str) -> None:
        self.stderr.write(self.redact(text) + "\n")
        self.stderr.flush()


def setup_logging(verbose: int, out: Out) -> None:
    """Log lines to stderr (as `logging.basicConfig` would: only when nothing else set up
    logging), each one through the same redactor as every other line printed."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            _RedactingFormatter(
                out,
                "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
                if verbose
                else "llmroute: %(levelname)s: %(message)s",
                datefmt="%H:%M:%S",
            )
        )
        root.addHandler(handler)
        root.setLevel(logging.WARNING)
    if verbose:
        logging.getLogger("llmroute").setLevel(logging.DEBUG if verbose > 1 else logging.INFO)


class _RedactingFormatter(logging.Formatter):
    """The whole formatted line (tracebacks included) through `out.redact`, which learns
    the config's secrets once a router is built."""

    def __init__(self, out: Out, fmt: str, datefmt: str) -> None:
        super().__init__(fmt, datefmt)
        self._out = out

    def format(self, record: logging.LogRecord) -> str:
        return self._out.redact(super().format(record))
