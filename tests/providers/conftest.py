"""Fixtures shared by the subprocess runner and CLI-provider tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmroute.providers._subprocess import SubprocessRunner


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    """Where each run's private directory goes, so tests can see it is cleaned up."""
    path = tmp_path / "runs"
    path.mkdir()
    return path


@pytest.fixture
def runner(runs: Path) -> SubprocessRunner:
    return SubprocessRunner(kill_grace=0.2, temp_dir=runs)
