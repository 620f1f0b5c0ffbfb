"""A fake command-line tool on PATH, for tests of the CLI providers through the Router."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest


def install_on_path(
    name: str, script: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Write `script` as the executable `name` (run by this interpreter) into a fresh
    directory that goes first on PATH for the test; the executable's path."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / name
    exe.write_text(f"#!{sys.executable}\n{script}")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return exe
