"""No module imports a private module (`_name`) of another package.

A private module belongs to its package: modules of that package (and of the packages
inside it) may import it, nobody else. `llmroute._redact` is shared by every part of
`llmroute`; `llmroute.config._schema` only by `llmroute.config`. Private names of a
public module (`from llmroute.cli import _Out`) are not modules and not checked here.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import llmroute

SRC = Path(llmroute.__file__).parent.parent


def _package_of(path: Path) -> tuple[str, ...]:
    parts = path.relative_to(SRC).with_suffix("").parts
    return parts[:-1]


def _is_module(dotted: tuple[str, ...]) -> bool:
    base = SRC.joinpath(*dotted)
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _imported(tree: ast.AST, package: tuple[str, ...]) -> Iterator[tuple[int, tuple[str, ...]]]:
    """Every dotted module path an import names (`from m import n` may name module m.n)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, tuple(alias.name.split("."))
        elif isinstance(node, ast.ImportFrom):
            base: tuple[str, ...] = tuple((node.module or "").split(".")) if node.module else ()
            if node.level:
                base = package[: len(package) - node.level + 1] + base
            yield node.lineno, base
            for alias in node.names:
                yield node.lineno, (*base, alias.name)


def _violations(source: str, package: tuple[str, ...], where: str) -> list[str]:
    return list(dict.fromkeys(_each_violation(source, package, where)))


def _each_violation(source: str, package: tuple[str, ...], where: str) -> Iterator[str]:
    for lineno, dotted in _imported(ast.parse(source), package):
        if dotted[:1] != ("llmroute",):
            continue
        for i, part in enumerate(dotted):
            if not part.startswith("_") or part.startswith("__"):
                continue
            owner = dotted[:i]
            if _is_module(dotted[: i + 1]) and package[: len(owner)] != owner:
                yield f"{where}:{lineno} imports {'.'.join(dotted[: i + 1])}"
            break


def test_no_module_imports_another_packages_private_module() -> None:
    found = [
        v
        for path in sorted(SRC.rglob("*.py"))
        for v in _violations(
            path.read_text(encoding="utf-8"), _package_of(path), str(path.relative_to(SRC))
        )
    ]
    assert found == []


def test_the_check_flags_what_it_should() -> None:
    source = (
        "from llmroute.config._schema import ProviderConfig\n"
        "import llmroute.stores._redis_lua\n"
        "from llmroute.stores import _sqlite_windows\n"
        "from llmroute._redact import Redactor\n"
        "from llmroute.config import ProviderConfig as P\n"
        "from llmroute.cli import _Out\n"
        "from . import _gemini_wire\n"
        "from .._registry import provider_kind\n"
    )
    found = _violations(source, ("llmroute", "providers"), "x.py")
    assert found == [
        "x.py:1 imports llmroute.config._schema",
        "x.py:2 imports llmroute.stores._redis_lua",
        "x.py:3 imports llmroute.stores._sqlite_windows",
    ]
    # The same imports from inside the owning packages are theirs to make.
    assert (
        list(_violations("from llmroute.config._schema import X\n", ("llmroute", "config"), "y"))
        == []
    )
