"""Adding entries to a user's YAML file by editing its text, so every comment, blank line and
key order the user wrote stays exactly as it was.

The file is composed (not loaded) to learn where each top-level section and each of its
entries is written; new entries are copied as text from the shipped file, re-indented to the
user's indent, and inserted after the last entry of their section.
"""

from __future__ import annotations

from dataclasses import dataclass

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode

__all__ = ["Section", "TextEditError", "entry_blocks", "insert_entries", "sections"]


class TextEditError(Exception):
    """The file is laid out in a way text editing cannot extend safely (flow style, say)."""


@dataclass(frozen=True, slots=True)
class Section:
    """One top-level key holding a mapping: its entries and where they are written."""

    name: str
    #: entry key -> (first line, end line) 0-based, end exclusive, trailing blanks trimmed
    entries: dict[str, tuple[int, int]]
    #: the line after which new entries go (0-based index of the last content line)
    last_line: int
    indent: int
    block: bool


def _compose(text: str) -> Node | None:
    return yaml.compose(text, Loader=yaml.SafeLoader)


def sections(text: str) -> dict[str, Section]:
    """The top-level mapping sections of `text`."""
    root = _compose(text)
    if root is None:
        return {}
    if not isinstance(root, MappingNode):
        raise TextEditError("the file is not a mapping of sections")
    lines = text.splitlines()
    out: dict[str, Section] = {}
    for key_node, value in root.value:
        if not isinstance(key_node, ScalarNode):
            continue
        name = str(key_node.value)
        if isinstance(value, ScalarNode) and value.tag == "tag:yaml.org,2002:null":
            # `routes:` with nothing under it yet: entries go right below the key
            out[name] = Section(name, {}, key_node.start_mark.line, 2, block=True)
            continue
        if not isinstance(value, MappingNode) or _is_flow(lines, value):
            out[name] = Section(name, {}, _content_end(lines, value), 2, block=False)
            continue
        entries: dict[str, tuple[int, int]] = {}
        pairs = value.value
        for i, (k, v) in enumerate(pairs):
            if not isinstance(k, ScalarNode):
                continue
            start = k.start_mark.line
            end = pairs[i + 1][0].start_mark.line if i + 1 < len(pairs) else _end_line(v)
            entries[str(k.value)] = (start, _trim(lines, start, end))
        indent = pairs[0][0].start_mark.column
        out[name] = Section(name, entries, _content_end(lines, value), indent, block=True)
    return out


def _is_flow(lines: list[str], node: MappingNode) -> bool:
    line = lines[node.start_mark.line] if node.start_mark.line < len(lines) else ""
    return line[node.start_mark.column : node.start_mark.column + 1] == "{"


def _end_line(node: Node) -> int:
    """The exclusive end line of `node`'s text."""
    mark = node.end_mark
    return mark.line if mark.column == 0 else mark.line + 1


def _trim(lines: list[str], start: int, end: int) -> int:
    """`end` moved back over blank and comment-only lines (they belong to what follows)."""
    while end > start + 1 and _is_filler(lines[end - 1]):
        end -= 1
    return end


def _is_filler(line: str) -> bool:
    stripped = line.strip()
    return not stripped or stripped.startswith("#")


def _content_end(lines: list[str], node: Node) -> int:
    end = _trim(lines, node.start_mark.line, min(_end_line(node), len(lines)))
    return end - 1


def entry_blocks(text: str, section: str) -> dict[str, str]:
    """Each entry of `section` in `text` as its own lines, with the comment lines just above
    it (they describe it), unindented to column 0 of the section's indent."""
    found = sections(text).get(section)
    if found is None:
        return {}
    lines = text.splitlines()
    blocks: dict[str, str] = {}
    for key, (start, end) in found.entries.items():
        first = start
        while first > 0 and lines[first - 1].strip().startswith("#"):
            first -= 1
        body = [_dedent(line, found.indent) for line in lines[first:end]]
        blocks[key] = "\n".join(body) + "\n"
    return blocks


def _dedent(line: str, indent: int) -> str:
    spaces = len(line) - len(line.lstrip(" "))
    return line[min(spaces, indent) :]


def insert_entries(text: str, section: str, blocks: list[str], note: str) -> str:
    """`text` with `blocks` (from `entry_blocks`) added at the end of `section`, after a
    `# note` line; a missing section is added at the end of the file."""
    if not blocks:
        return text
    found = sections(text).get(section)
    if found is not None and not found.block:
        raise TextEditError(
            f"the {section}: section is written in flow style ({{...}}); add the entries by hand"
        )
    indent = found.indent if found is not None else 2
    pad = " " * indent
    added = [f"{pad}# {note}"]
    for block in blocks:
        added.extend(pad + line if line.strip() else "" for line in block.splitlines())
    lines = text.splitlines()
    if found is None:
        tail = [] if not lines or not lines[-1].strip() else [""]
        return "\n".join([*lines, *tail, f"{section}:", *added]) + "\n"
    at = found.last_line + 1
    return "\n".join([*lines[:at], *added, *lines[at:]]) + "\n"
