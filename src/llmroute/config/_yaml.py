"""Reading a config file as YAML that cannot hurt: what a read gives back (`Located`), what
refuses a file (`YamlProblem`) and the checks made before parsing (size, encoding).

The parser itself, and PyYAML with it, lives in `_yaml_parse` and is imported with the
first file read: `from llmroute import Router` and a router built from mappings never
load PyYAML.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from llmroute.config._env import MAX_DEPTH

__all__ = [
    "MAX_BYTES",
    "MAX_DEPTH",
    "MAX_NODES",
    "Located",
    "YamlProblem",
    "parse_yaml",
    "read_yaml",
]

MAX_BYTES: Final = 10 * 1024 * 1024
#: nodes after alias expansion: the whole shipped catalogue is about 2,000
MAX_NODES: Final = 200_000


@dataclass(frozen=True, slots=True)
class YamlProblem(Exception):
    """A file that cannot be used at all, with the line and key path where known."""

    message: str
    line: int | None = None
    #: None for the file as a whole
    path: str | None = None


@dataclass(slots=True)
class Located:
    """The parsed document and, for each key path (`providers.groq.timeout`, `routes.chat[2]`),
    the 1-based line where it is written."""

    data: Any
    lines: dict[str, int] = field(default_factory=dict)
    #: values that cannot be used (non-finite numbers, odd keys): (path, line, message)
    problems: list[tuple[str, int, str]] = field(default_factory=list)


def read_yaml(path: str | os.PathLike[str]) -> Located:
    """Read and parse `path`; raise `YamlProblem` for a file that cannot be used at all."""
    file = Path(path)
    if not file.exists():
        raise YamlProblem("file not found")
    if file.is_dir():
        raise YamlProblem("is a directory, not a file")
    try:
        with file.open("rb") as stream:
            raw = stream.read(MAX_BYTES + 1)
    except OSError as exc:
        raise YamlProblem(f"cannot read ({exc.strerror or type(exc).__name__})") from None
    if len(raw) > MAX_BYTES:
        raise YamlProblem(f"larger than {MAX_BYTES // (1024 * 1024)} MB: not a config file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise YamlProblem(f"not UTF-8 text (byte {exc.start})") from None
    return parse_yaml(text)


def parse_yaml(text: str) -> Located:
    """Parse YAML text under the limits; raise `YamlProblem` for a document that cannot be
    used at all."""
    from llmroute.config._yaml_parse import parse

    return parse(text)
