"""`${VAR}` and `${VAR:-default}` in config values, and the environment they are read from.

Interpolation keeps every key: a value whose variable is unset becomes an `Unset` marker, so
validation still sees a misspelt key (and reports it whether or not its variable is set), and
a required value left missing can name the variable that would have filled it. A value filled
from the environment is an `Interpolated` string that remembers what the environment gave, so
the secrets among them can be collected for redaction.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

#: how deeply a config may nest (the YAML reader enforces the same bound on files)
MAX_DEPTH: Final = 100

__all__ = ["MAX_DEPTH", "VAR", "Interpolated", "Unset", "interpolate", "read_env"]

#: `${NAME}` or `${NAME:-default}` (the default may be empty, and holds no `}`)
VAR: Final = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class Unset:
    """A value that named unset variables; it counts as absent."""

    __slots__ = ("names",)

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names

    def __repr__(self) -> str:
        return f"Unset({', '.join(self.names)})"

    def describe(self) -> str:
        listed = ", ".join(self.names)
        return f"{listed} {'is' if len(self.names) == 1 else 'are'} not set"


class Interpolated(str):
    """A string that took (part of) its value from the environment: `pieces` are those parts."""

    __slots__ = ("pieces",)
    pieces: tuple[str, ...]

    def __new__(cls, value: str, pieces: tuple[str, ...]) -> Interpolated:
        made = super().__new__(cls, value)
        made.pieces = pieces
        return made


def read_env(env_file: str | os.PathLike[str] | None) -> dict[str, str]:
    """The process environment over the `.env` file's values (a missing file is fine)."""
    merged: dict[str, str] = {}
    if env_file is not None and Path(env_file).is_file():
        from dotenv import dotenv_values

        merged.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    merged.update(os.environ)
    return merged


def interpolate(
    value: Any,
    env: Mapping[str, str],
    path: str,
    fail: Callable[[str, str], None],
    depth: int = 0,
) -> Any:
    """`value` with every `${VAR}` replaced; `fail(path, message)` hears of malformed ones.

    A mapping given in code can be nested without bound (or refer to itself): past
    `MAX_DEPTH` levels it is reported, never a `RecursionError`.
    """
    if isinstance(value, str):
        return _string(value, env, path, fail) if "${" in value else value
    if isinstance(value, Mapping | list | tuple) and depth >= MAX_DEPTH:
        fail(path or "(top level)", f"nested deeper than {MAX_DEPTH} levels")
        return None
    if isinstance(value, Mapping):
        return {
            k: interpolate(v, env, f"{path}.{k}" if path else str(k), fail, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [interpolate(v, env, f"{path}[{i}]", fail, depth + 1) for i, v in enumerate(value)]
    return value


def _string(
    value: str, env: Mapping[str, str], path: str, fail: Callable[[str, str], None]
) -> str | Unset:
    if "${" in VAR.sub("", value):
        fail(path, f"malformed variable reference in {value!r} (write ${{NAME}})")
    missing: list[str] = []
    pieces: list[str] = []

    def substitute(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        found = env.get(name, "")
        if found:
            pieces.append(found)
            return found
        if default is not None:
            return default
        missing.append(name)
        return ""

    result = VAR.sub(substitute, value)
    if missing:
        return Unset(tuple(dict.fromkeys(missing)))
    return Interpolated(result, tuple(pieces)) if pieces else result
