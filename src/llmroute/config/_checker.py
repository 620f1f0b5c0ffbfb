"""Field readers that record a problem (with file, key path and line) and carry on.

Every problem is one line, `{file}: {key.path}: {what is wrong} (line N)`, so a user with
several mistakes sees them all at once, each where it is written. A file that cannot be read
as YAML at all gives `{file}: line N: YAML syntax error: ...`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar, cast

from llmroute._hints import did_you_mean
from llmroute.config._env import Interpolated, Unset

__all__ = ["MAX_SECONDS", "Checker", "Problems", "is_number", "kind", "present"]

_T = TypeVar("_T")
#: a bound on any duration (about 31 years): larger values overflow the event loop's timers
MAX_SECONDS = 1e9


class Problems:
    """Every problem found, across both files, as `{file}: {key.path}: {what} (line N)`."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, source: str, path: str | None, message: str, line: int | None = None) -> None:
        if path is None:  # the file as a whole (unreadable, YAML syntax)
            where = f"line {line}: " if line is not None else ""
            self.items.append(f"{source}: {where}{message}")
        else:
            where = f" (line {line})" if line is not None else ""
            self.items.append(f"{source}: {path}: {message}{where}")

    def __bool__(self) -> bool:
        return bool(self.items)


def present(value: Any) -> bool:
    """A value that was written and not left empty by an unset variable."""
    return value is not None and not isinstance(value, Unset)


def is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and _finite(v)


def _finite(v: int | float) -> bool:
    try:
        return math.isfinite(v)
    except OverflowError:  # an int too large for a float
        return False


def kind(value: Any) -> str:
    if isinstance(value, Unset):
        return "nothing (" + value.describe() + ")"
    names: dict[type, str] = {dict: "a mapping", list: "a list", str: "a string"}
    return names.get(type(value), type(value).__name__)


class Checker:
    """Reads fields of one config source, recording problems instead of raising."""

    def __init__(self, problems: Problems, source: str, lines: Mapping[str, int]) -> None:
        self.problems = problems
        self.source = source
        self.lines = lines

    def line_of(self, path: str) -> int | None:
        """The line of `path`, else of the nearest enclosing key that is written down."""
        probe = path.removeprefix("(top level).")
        while probe:
            line = self.lines.get(probe)
            if line is not None:
                return line
            cut = max(probe.rfind("."), probe.rfind("["))
            if cut <= 0:
                break
            probe = probe[:cut]
        return self.lines.get("(top level)")

    def fail(self, path: str, message: str) -> None:
        self.problems.add(self.source, path, message, self.line_of(path))

    def mapping(self, value: Any, path: str) -> Mapping[str, Any]:
        if isinstance(value, Mapping):
            return value
        if present(value):
            self.fail(path, f"expected a mapping, got {kind(value)}")
        return {}

    def fields(self, value: Mapping[str, Any], allowed: Iterable[str], path: str) -> None:
        allowed = sorted(allowed)
        for key in value:
            if key not in allowed:
                hint = did_you_mean(str(key), allowed)
                self.fail(f"{path}.{key}", f"unknown field{hint} (allowed: {', '.join(allowed)})")

    def typed(
        self,
        raw: Mapping[str, Any],
        key: str,
        path: str,
        check: Callable[[Any], bool],
        want: str,
        default: _T,
    ) -> _T:
        value = raw.get(key)
        if not present(value):
            return default
        if not check(value):
            self.fail(f"{path}.{key}", f"expected {want}, got {_shown(value)}")
            return default
        return cast(_T, value)

    def required(self, raw: Mapping[str, Any], key: str, path: str, what: str) -> None:
        """Report a required value that is absent, naming the variable that left it empty."""
        value = raw.get(key)
        if isinstance(value, Unset):
            self.fail(f"{path}.{key}", f"missing: {value.describe()}")
        else:
            self.fail(f"{path}.{key}", f"missing ({what})")

    def number(
        self,
        raw: Mapping[str, Any],
        key: str,
        path: str,
        default: _T,
        *,
        positive: bool = False,
        seconds: bool = True,
    ) -> float | _T:
        def ok(v: Any) -> bool:
            if not is_number(v):
                return False
            if seconds and v > MAX_SECONDS:
                return False
            return bool(v > 0 if positive else v >= 0)

        want = "a positive number" if positive else "a non-negative number"
        if seconds:
            want += f" of seconds up to {MAX_SECONDS:g}"
        value: Any = self.typed(raw, key, path, ok, want, default)
        return float(value) if is_number(value) else value  # type: ignore[no-any-return,unused-ignore]

    def integer(
        self, raw: Mapping[str, Any], key: str, path: str, default: _T, *, positive: bool = False
    ) -> int | _T:
        def ok(v: Any) -> bool:
            return (
                isinstance(v, int) and not isinstance(v, bool) and (v > 0 if positive else v >= 0)
            )

        want = "a positive integer" if positive else "a non-negative integer"
        return self.typed(raw, key, path, ok, want, default)

    def boolean(self, raw: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
        return self.typed(raw, key, path, lambda v: isinstance(v, bool), "true or false", default)

    def choice(
        self, raw: Mapping[str, Any], key: str, path: str, options: tuple[str, ...], default: _T
    ) -> str | _T:
        value = raw.get(key)
        if present(value) and value not in options:
            hint = did_you_mean(str(value), options)
            listed = ", ".join(options)
            self.fail(f"{path}.{key}", f"expected one of {listed}, got {_shown(value)}{hint}")
            return default
        return cast("str | _T", value) if present(value) else default

    def strings(self, raw: Mapping[str, Any], key: str, path: str) -> list[str]:
        """A list of strings; entries left empty by an unset variable are dropped."""
        value = raw.get(key)
        if not present(value):
            return []
        if not isinstance(value, list):
            self.fail(f"{path}.{key}", f"expected a list of strings, got {kind(value)}")
            return []
        out: list[str] = []
        for i, item in enumerate(value):
            if isinstance(item, str):
                out.append(item)
            elif not isinstance(item, Unset):
                self.fail(f"{path}.{key}[{i}]", f"expected a string, got {_shown(item)}")
        return out

    def string_map(self, raw: Mapping[str, Any], key: str, path: str) -> dict[str, str]:
        """A mapping of names to strings (numbers are taken as their text); unset values drop."""
        value = self.mapping(raw.get(key), f"{path}.{key}")
        out: dict[str, str] = {}
        for k, v in value.items():
            if isinstance(v, Unset):
                continue
            if isinstance(v, str):
                out[str(k)] = v
            elif is_number(v):
                out[str(k)] = str(v)
            else:
                self.fail(f"{path}.{key}.{k}", f"expected a string, got {kind(v)}")
        return out


def _shown(value: Any) -> str:
    if isinstance(value, Unset):
        return kind(value)
    if isinstance(value, Interpolated):
        # it may be a secret: say where it came from, never what it is
        return "a value read from the environment"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
