"""The README's and docs/'s examples, run for real, so the docs cannot drift from the code.

Every ```python block runs as written. A block that defines `test_*` functions (the testing
example) runs under pytest in a fresh directory whose pyproject.toml is the README's own
documented pytest configuration. Every other block runs the newcomer's way: in an empty
directory (so `Router()` uses the shipped catalogue), with the environment lines
`llmroute fake-server` prints pointing the catalogue at a `FakeProviderServer` on 127.0.0.1.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmroute._cli_setup import fake_env_lines
from llmroute.config import load_config, shipped_root
from llmroute.config._yaml import read_yaml
from llmroute.testing import FakeProviderServer, serve_in_thread

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
# docs/tools.md's examples are run by tests/test_docs.py, which checks each one's exact output
DOCS = sorted(p for p in (ROOT / "docs").glob("*.md") if p.name != "tools.md")
_FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)


def blocks(path: Path, language: str) -> list[tuple[int, str]]:
    """(line, code) of each fenced block of `language` in `path`."""
    text = path.read_text(encoding="utf-8")
    found = []
    for match in _FENCE.finditer(text):
        if match.group(1).strip().split(" ")[0] == language:
            found.append((text.count("\n", 0, match.start()) + 1, match.group(2)))
    return found


PYTHON = [(path, line, code) for path in [README, *DOCS] for line, code in blocks(path, "python")]
IDS = [f"{path.relative_to(ROOT)}:{line}" for path, line, _ in PYTHON]


def test_the_readme_is_newcomer_sized_and_starts_with_the_two_commands() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 260
    top = "\n".join(lines[:20])
    assert "make demo" in top and "make test" in top
    text = "\n".join(lines)
    for topic in ("fake-server", "aclose", "key_status", "explain", 'asyncio_mode = "auto"'):
        assert topic in text
    assert len([p for p in PYTHON if p[0] == README]) >= 5


@pytest.fixture
def server() -> Iterator[FakeProviderServer]:
    with serve_in_thread() as server:
        yield server


@pytest.fixture
def newcomer(tmp_path: Path, server: FakeProviderServer, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty project directory and the environment `llmroute fake-server` prints."""
    providers = read_yaml(shipped_root() / "config" / "models.yaml").data["providers"]
    for line in fake_env_lines(providers, server.base_url):
        if not line.startswith("#"):
            name, _, value = line.partition("=")
            monkeypatch.setenv(name, value)
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    return project


@pytest.mark.parametrize(("path", "line", "code"), PYTHON, ids=IDS)
def test_python_example_runs(
    path: Path,
    line: int,
    code: str,
    newcomer: Path,
    server: FakeProviderServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if re.search(r"^(async )?def test_", code, re.MULTILINE):
        _run_under_the_documented_pytest_config(code, newcomer)
        return
    namespace: dict[str, Any] = {"__name__": "__example__"}
    exec(compile(code, f"{path}:{line}", "exec"), namespace)
    out = capsys.readouterr().out
    if "FakeProviderServer()" in code:
        # a self-contained example that starts and scripts its own fake provider
        # (docs/tools.md; tests/test_docs.py checks what each one prints)
        assert out.strip()
        return
    assert "Router()" in code, "an example that neither uses Router() nor is a test checks nothing"
    # it really went through the shipped catalogue to the fake provider, and nothing failed
    assert server.script.requests, "the example sent nothing to the fake provider"
    assert out.strip()
    assert "failed:" not in out and "busy" not in out


def _run_under_the_documented_pytest_config(code: str, directory: Path) -> None:
    (toml,) = [c for _, c in blocks(README, "toml") if "[tool.pytest.ini_options]" in c]
    (directory / "pyproject.toml").write_text(toml, encoding="utf-8")
    (directory / "test_example.py").write_text(code, encoding="utf-8")
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_example.py"],
        cwd=directory,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert re.search(r"\b[1-9]\d* passed\b", run.stdout), run.stdout


def test_the_reference_config_examples_are_valid() -> None:
    reference = ROOT / "docs" / "reference.md"
    models_block = next(c for _, c in blocks(reference, "yaml") if c.startswith("providers:"))
    limits_block = next(c for _, c in blocks(reference, "yaml") if c.startswith("defaults:"))
    config = load_config(yaml.safe_load(models_block), yaml.safe_load(limits_block), env={})
    assert config.models.providers["groq"].base_url == "https://api.groq.com/openai/v1"
    assert config.limits.strategy.max_attempts == 8
    assert config.limits.learn_from_headers is True
