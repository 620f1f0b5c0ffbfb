"""The bounded YAML parser behind `read_yaml`/`parse_yaml`: no duplicate keys, no non-finite
numbers, the line of every key kept for error messages.

PyYAML composes the document into a node graph first; the limits are checked there, before
any Python object is built, so an alias bomb costs a few node counts instead of gigabytes,
and deep nesting is stopped before Python's recursion limit is anywhere near.
"""

from __future__ import annotations

import math
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from llmroute.config._yaml import MAX_DEPTH, MAX_NODES, Located, YamlProblem

__all__ = ["parse"]


def parse(text: str) -> Located:
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
    except _TooDeep as exc:
        raise YamlProblem(
            f"nested deeper than {MAX_DEPTH} levels", exc.line, exc.path or "(top level)"
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise YamlProblem(f"YAML syntax error: {exc.problem or exc}", line) from None
    except yaml.YAMLError as exc:
        raise YamlProblem(f"YAML error: {exc}") from None
    finally:
        loader.dispose()
    if node is None:
        return Located({})
    _check_size(node)
    located = Located(None)
    located.data = _Builder(loader, located).value(node, "")
    return located


class _TooDeep(Exception):
    def __init__(self, line: int, path: str = "") -> None:
        super().__init__(line)
        self.line = line
        self.path = path


class _Loader(yaml.SafeLoader):
    """Composes with a depth guard; construction is done by `_Builder`, path by path."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _TooDeep(self.peek_event().start_mark.line + 1)  # type: ignore[no-untyped-call]
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _check_size(root: Node) -> None:
    """Refuse a document whose alias expansion is too large or too deep (an alias bomb)."""
    sizes: dict[int, tuple[int, int]] = {}

    def measure(node: Node) -> tuple[int, int]:
        known = sizes.get(id(node))
        if known is not None:
            return known
        count, depth = 1, 1
        children: list[Node] = []
        if isinstance(node, SequenceNode):
            children = list(node.value)
        elif isinstance(node, MappingNode):
            children = [n for pair in node.value for n in pair]
        for child in children:
            child_count, child_depth = measure(child)
            count += child_count
            depth = max(depth, child_depth + 1)
        if count > MAX_NODES:
            raise YamlProblem(
                f"expands to more than {MAX_NODES} values (aliases nested inside aliases?)",
                node.start_mark.line + 1,
                "(top level)",
            )
        if depth > MAX_DEPTH:
            raise YamlProblem(
                f"nested deeper than {MAX_DEPTH} levels once aliases are expanded",
                node.start_mark.line + 1,
                "(top level)",
            )
        sizes[id(node)] = (count, depth)
        return count, depth

    measure(root)


class _Builder:
    """Node graph -> plain dicts, lists and scalars, recording each key's line."""

    def __init__(self, loader: _Loader, located: Located) -> None:
        self.loader = loader
        self.located = located

    def value(self, node: Node, path: str) -> Any:
        self.located.lines.setdefault(path or "(top level)", node.start_mark.line + 1)
        if isinstance(node, MappingNode):
            return self.mapping(node, path)
        if isinstance(node, SequenceNode):
            return [self.value(item, f"{path}[{i}]") for i, item in enumerate(node.value)]
        try:
            scalar = self.loader.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, OverflowError) as exc:
            problem = getattr(exc, "problem", None) or str(exc)
            self.fail(path or "(top level)", node, f"unreadable value: {problem}")
            return None
        if isinstance(scalar, float) and not math.isfinite(scalar):
            self.fail(path or "(top level)", node, f"{node.value} is not a finite number")
            return None
        return scalar

    def mapping(self, node: MappingNode, path: str) -> dict[Any, Any]:
        seen: dict[Any, Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.key(key_node, path)
            if key is None:
                continue
            if key in seen:
                first = seen[key].start_mark.line + 1
                self.fail(
                    _join(path, key), key_node, f"duplicate key (first written on line {first})"
                )
            seen[key] = key_node
        try:
            self.loader.flatten_mapping(node)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or node.start_mark
            self.located.problems.append((path or "(top level)", mark.line + 1, str(exc.problem)))
            return {}
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = self.key(key_node, path, report=False)
            if key is None:
                continue
            child = _join(path, key)
            # The last written line wins for a duplicate, as its value does.
            self.located.lines[child] = key_node.start_mark.line + 1
            out[key] = self.value(value_node, child)
        return out

    def key(self, node: Node, path: str, *, report: bool = True) -> Any:
        if not isinstance(node, ScalarNode):
            if report:
                self.fail(path or "(top level)", node, "a key must be a plain name")
            return None
        try:
            key = self.loader.construct_object(node)
        except (yaml.YAMLError, ValueError, OverflowError):
            key = None
        if key is None or isinstance(key, bool | float):
            # `null:`, `yes:` or `1.5:` as a key is almost surely a slip; keep the text
            return str(node.value)
        return key

    def fail(self, path: str, node: Node, message: str) -> None:
        self.located.problems.append((path, node.start_mark.line + 1, message))


def _join(path: str, key: Any) -> str:
    return f"{path}.{key}" if path else str(key)
