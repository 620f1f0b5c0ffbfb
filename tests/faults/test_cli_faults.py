"""`llmroute complete -vv --trace` against faults, as a real subprocess: one clear line, no
traceback, no secret or fragment of one anywhere in its output (DEBUG log included)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
import yaml

from llmroute.testing import FaultServer

from .helpers import GEM, OAI, SECRET_ENV, leaked, models_config

#: (fault, target, extra flags): a subset of the matrix, both wires, complete and stream
CASES = [
    ("key_echo", OAI, ["--json"]),
    ("key_echo", GEM, ["--stream"]),
    ("key_echo_partial", OAI, ["--stream"]),
    ("key_echo_partial", GEM, []),
    ("header_echo", OAI, []),
    ("header_echo", GEM, ["--stream", "--json"]),
    ("reset", OAI, ["--stream"]),
    ("refused", GEM, []),
    ("malformed_chunk", OAI, ["--stream"]),
    ("drip_body", GEM, []),
]
DEADLINE = 1.0


async def run_cli(project: Path, target: str, flags: list[str]) -> tuple[int, str, str]:
    return await run_command(
        project,
        [
            "-vv",
            "complete",
            target,
            "hi",
            "--trace",
            *flags,
            "--config",
            str(project / "config"),
            "--cache-dir",
            str(project / "cache"),
            "--env-file",
            str(project / "none.env"),
        ],
    )


@pytest.mark.parametrize(("fault", "target", "flags"), CASES)
async def test_cli_output_holds_no_secret(
    fault: str, target: str, flags: list[str], tmp_path: Path
) -> None:
    async with FaultServer() as server:
        config = tmp_path / "config"
        config.mkdir()
        models = models_config(server, fault)
        (config / "models.yaml").write_text(yaml.safe_dump(models))
        limits = {"strategy": {"deadline_seconds": DEADLINE}}
        (config / "limits.yaml").write_text(yaml.safe_dump(limits))
        code, out, err = await run_cli(tmp_path, target, flags)
    assert code == 1, (out, err)
    assert "Traceback" not in out + err
    assert leaked(out + err) == []
    assert "DEBUG" in err or target in err  # -vv logged the attempts


COMMANDS = [
    ["check"],
    ["-vv", "check", "--strict"],
    ["keys"],
    ["-vv", "explain", GEM, "hi"],
    ["-vv", "complete", OAI, "hi", "--trace", "--json"],
    ["-vv", "complete", GEM, "hi", "--stream", "--trace"],
]


async def test_every_command_holds_no_secret(tmp_path: Path) -> None:
    """Secrets of every kind, a CLI provider's env included, through commands that work."""
    async with FaultServer() as server:
        config = tmp_path / "config"
        config.mkdir()
        models = models_config(server, "ok")
        models["providers"]["claude"] = {
            "type": "claude_code",
            "env": {"ANTHROPIC_API_KEY": "${FAULT_CLI_KEY}"},
        }
        models["models"]["claude/sonnet"] = {"provider": "claude", "model": "sonnet"}
        (config / "models.yaml").write_text(yaml.safe_dump(models))
        (config / "limits.yaml").write_text("{}\n")
        runs = await asyncio.gather(*(run_command(tmp_path, args) for args in COMMANDS))
    for args, (code, out, err) in zip(COMMANDS, runs, strict=True):
        assert code == 0, (args, out, err)
        assert "Traceback" not in out + err
        assert leaked(out + err) == [], args


async def run_command(project: Path, args: list[str]) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "llmroute.cli",
        *args,
        cwd=project,
        env={**os.environ, **SECRET_ENV},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(30):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()
