"""The CLI on hostile or broken config input: one clear message, exit 1, never a traceback,
and never a secret from the environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.config.test_malformed import CASES

HEADER_SECRET = "hdr-SECRET-token-7777"
#: a spread of the malformed files: values, structure, YAML, bombs, limits
PICKED = [
    "dup-model", "inf-timeout", "bigint-timeout", "unknown-provider-field", "unset-base-url",
    "python-tag", "complex-key", "yaml-syntax", "alias-bomb", "deep-flow", "deep-block",
    "limits-dup", "limits-enum", "limits-misspelt-unset",
]  # fmt: skip


def _check(directory: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "llmroute.cli", "check", "--config", str(directory), *extra],
        cwd=directory.parent,
        env={**os.environ, "HEADER_TOKEN": HEADER_SECRET},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("case", PICKED)
def test_check_on_a_malformed_config_is_one_clear_message(tmp_path: Path, case: str) -> None:
    (_, models, limits, which, path, line) = next(c for c in CASES if c[0] == case)
    config = tmp_path / "config"
    config.mkdir()
    (config / "models.yaml").write_text(models, encoding="utf-8")
    if limits is not None:
        (config / "limits.yaml").write_text(limits, encoding="utf-8")
    run = _check(config)
    assert run.returncode == 1, run.stdout
    assert "Traceback" not in run.stderr + run.stdout
    assert f"{which}.yaml" in run.stderr
    if path is not None:
        assert path in run.stderr
    if line is not None:
        assert f"line {line}" in run.stderr


def test_check_with_a_limits_directory_is_an_error_not_no_limits(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "models.yaml").write_text(
        CASES[0][1].split("  groq/a:\n    provider: groq\nroutes")[0]
        + "routes:\n  chat: [groq/a]\n",
        encoding="utf-8",
    )
    (config / "limits.yaml").mkdir()
    run = _check(config)
    assert run.returncode == 1
    assert "limits.yaml: is a directory" in run.stderr
    assert "no limits" not in run.stdout


def test_check_never_shows_a_header_value_from_the_environment(tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "models.yaml").write_text(
        "providers:\n"
        "  p:\n"
        "    type: openai_compatible\n"
        "    base_url: http://127.0.0.1:9/v1\n"
        "    headers: {Authorization: 'Bearer ${HEADER_TOKEN}'}\n"
        "    timeout: 1e400\n"
        "models:\n  p/a: {provider: p}\n",
        encoding="utf-8",
    )
    run = _check(config)
    assert run.returncode == 1
    assert HEADER_SECRET not in run.stdout + run.stderr
    assert "providers.p.timeout" in run.stderr
