"""README.md's examples, run for real, so the README cannot drift from the code.

Every ```python block is executed as written, in a project directory whose config/ is the
shipped catalogue with every HTTP provider pointed at a `FakeProviderServer` on 127.0.0.1
(the CLI providers at a command that does not exist), and a fake value for every variable
the catalogue reads. A block that defines `test_*` functions (the testing example) gets
them called, as pytest would. The two reference ```yaml blocks must validate together.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmroute.config import load_config
from llmroute.testing import FakeProviderServer, serve_in_thread

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
_FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def blocks(language: str) -> list[tuple[int, str, str]]:
    """(line, info string, code) of each fenced block in `language`."""
    text = README.read_text(encoding="utf-8")
    found = []
    for match in _FENCE.finditer(text):
        info = match.group(1).strip()
        if info.split(" ")[0] == language:
            line = text.count("\n", 0, match.start()) + 1
            found.append((line, info, match.group(2)))
    return found


PYTHON = [(line, code) for line, info, code in blocks("python") if "no-run" not in info]


def test_the_readme_has_examples_and_starts_with_the_two_commands() -> None:
    assert len(PYTHON) >= 5
    assert not [line for line, info, _ in blocks("python") if "no-run" in info]
    top = "\n".join(README.read_text(encoding="utf-8").splitlines()[:20])
    assert "make demo" in top
    assert "make test" in top
    assert (ROOT / "config" / "READ_ME_KEY_ROTATION.md").is_file()


@pytest.fixture
def server() -> Iterator[FakeProviderServer]:
    with serve_in_thread() as server:
        yield server


@pytest.fixture
def project(tmp_path: Path, server: FakeProviderServer, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The shipped config, every provider pointed at the fake server, as the current dir."""
    shipped = (ROOT / "config" / "models.yaml").read_text(encoding="utf-8")
    models = yaml.safe_load(shipped)
    for provider in models["providers"].values():
        if provider["type"] == "openai_compatible":
            provider["base_url"] = server.openai_base_url
        elif provider["type"] == "google_ai_studio":
            provider["base_url"] = server.gemini_base_url
        else:
            # a CLI that may well be installed here must never be run by a test
            provider["command"] = ["llmroute-readme-test-no-such-cli", "{model}"]
    config = tmp_path / "project" / "config"
    config.mkdir(parents=True)
    (config / "models.yaml").write_text(yaml.safe_dump(models, sort_keys=False), "utf-8")
    (config / "limits.yaml").write_text(
        (ROOT / "config" / "limits.yaml").read_text(encoding="utf-8"), "utf-8"
    )
    for name in set(_VAR.findall(shipped)):
        monkeypatch.setenv(name, f"readme-test-{name.lower()}")
    monkeypatch.delenv("USE_PAID_MODELS", raising=False)
    monkeypatch.chdir(config.parent)
    return config.parent


def _call(function: Any, tmp_path: Path) -> None:
    kwargs = {"tmp_path": tmp_path} if "tmp_path" in inspect.signature(function).parameters else {}
    result = function(**kwargs)
    if inspect.iscoroutine(result):
        asyncio.run(result)


@pytest.mark.parametrize(("line", "code"), PYTHON, ids=[f"README.md:{line}" for line, _ in PYTHON])
def test_readme_python_example_runs(
    line: int,
    code: str,
    project: Path,
    server: FakeProviderServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    namespace: dict[str, Any] = {"__name__": "__readme__"}
    exec(compile(code, f"{README}:{line}", "exec"), namespace)
    tests = [f for name, f in namespace.items() if name.startswith("test_") and callable(f)]
    for function in tests:
        _call(function, tmp_path / function.__name__)
    out = capsys.readouterr().out
    if "Router()" in code:
        # it really went through the router to the fake provider, and nothing failed
        assert server.script.requests, "the example sent nothing to the fake provider"
        assert out.strip()
        assert "failed:" not in out
        assert "busy" not in out
    else:
        assert tests, "an example that neither uses Router() nor defines a test checks nothing"


def test_readme_config_reference_is_a_valid_config() -> None:
    reference = {
        info_and_code[1].splitlines()[0]: info_and_code[1]
        for info_and_code in ((info, code) for _, info, code in blocks("yaml"))
        if info_and_code[1].startswith("# config/")
    }
    models = yaml.safe_load(reference["# config/models.yaml"])
    limits = yaml.safe_load(reference["# config/limits.yaml"])
    every_var = set(_VAR.findall(reference["# config/models.yaml"]))
    with_keys = load_config(models, limits, env={v: "x" * 8 for v in every_var})
    assert with_keys.models.routes["code"][-1] == "claude/sonnet"
    assert len(with_keys.models.providers["google_ai_studio"].keys) == 3
    # and with no key at all it still loads: missing credentials are not a config error
    bare = load_config(models, limits, env={})
    assert bare.models.providers["groq"].keys == ()
    assert bare.limits.strategy.max_attempts == 8
