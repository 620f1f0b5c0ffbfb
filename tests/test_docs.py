"""The guides under docs/ run as written: every ```python block is executed in a fresh
directory and must print what it promises, talking only to the fake provider on 127.0.0.1."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_FENCE = re.compile(r"^```python\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)

# the output each example of docs/tools.md must print, in block order
TOOLS_OUTPUT = [
    "18 °C and clear in Paris.\n['user', 'assistant', 'tool', 'assistant']\n",
    "generated id: True\nIt is noon.\nsignature sent back: True\n",
    "A single pixel.\n",
    "18\n",
]


def python_blocks(path: Path) -> list[tuple[int, str]]:
    text = path.read_text(encoding="utf-8")
    return [
        (text.count("\n", 0, match.start()) + 1, match.group(1)) for match in _FENCE.finditer(text)
    ]


TOOLS = python_blocks(ROOT / "docs" / "tools.md")


def test_every_tools_example_is_checked() -> None:
    assert len(TOOLS) == len(TOOLS_OUTPUT)


@pytest.mark.parametrize(
    ("index", "line", "code"),
    [(i, line, code) for i, (line, code) in enumerate(TOOLS)],
    ids=[f"docs/tools.md:{line}" for line, _ in TOOLS],
)
def test_tools_example_runs(
    index: int,
    line: int,
    code: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    exec(compile(code, f"docs/tools.md:{line}", "exec"), {"__name__": "__docs__"})
    assert capsys.readouterr().out == TOOLS_OUTPUT[index]
