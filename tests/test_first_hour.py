"""A newcomer's first hour: the shipped catalogue from any directory, the offline path through
`llmroute fake-server`, errors that say what to do, and `--version`."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmroute import Router
from llmroute._cli_setup import fake_env_lines
from llmroute.config import shipped_root
from llmroute.errors import ProviderUnavailableError, RoutingError, UnknownTargetError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def empty_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


async def test_router_without_a_config_uses_the_shipped_catalogue_and_says_so(
    empty_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="llmroute"):
        async with Router(cache_dir=empty_dir / ".cache") as router:
            assert "chat" in router.config.models.routes
    assert any("catalogue shipped with llmroute" in r.getMessage() for r in caplog.records)


async def test_a_request_with_no_key_set_says_so_and_names_llmroute_check(
    empty_dir: Path,
) -> None:
    async with Router(cache_dir=empty_dir / ".cache") as router:
        with pytest.raises(RoutingError) as info:
            await router.complete("chat", "hello")
        assert "no provider of this chain has an API key set" in str(info.value)
        assert "llmroute check" in str(info.value)
        with pytest.raises(ProviderUnavailableError, match="llmroute check"):
            await router.complete("groq/qwen/qwen3.6-27b", "hello")


async def test_unknown_targets_get_a_did_you_mean(empty_dir: Path) -> None:
    models = {
        "providers": {"gem": {"type": "google_ai_studio", "base_url": "http://127.0.0.1:9"}},
        "models": {"gem/flash": {"provider": "gem"}, "gem/pro": {"provider": "gem"}},
        "routes": {"chat": ["gem/flash"]},
    }
    async with Router(models, None, env_file=None, cache_dir=empty_dir) as router:
        with pytest.raises(UnknownTargetError) as info:
            await router.complete("chta", "hi")
        assert "did you mean 'chat'?" in str(info.value)
        assert info.value.suggestions == ["chat"]
        with pytest.raises(UnknownTargetError, match="did you mean 'gem/flash'"):
            await router.complete("gem/flsh", "hi")
        with pytest.raises(KeyError):  # still a KeyError, as before
            await router.complete("nothing-like-it-at-all", "hi")


def test_every_error_is_importable_from_llmroute() -> None:
    import llmroute.errors

    for name in llmroute.errors.__all__:
        assert getattr(llmroute, name) is getattr(llmroute.errors, name)
        assert name in llmroute.__all__
    assert llmroute.__version__ == _metadata_version()


def _metadata_version() -> str:
    from importlib.metadata import version

    return version("llmroute")


def test_version_flag(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "llmroute.cli", "--version"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert run.returncode == 0
    assert run.stdout.strip() == f"llmroute {_metadata_version()}"


def test_fake_env_lines_point_every_http_provider_of_the_catalogue_at_the_server() -> None:
    from llmroute.config._yaml import read_yaml

    providers = read_yaml(shipped_root() / "config" / "models.yaml").data["providers"]
    lines = fake_env_lines(providers, "http://127.0.0.1:1234")
    assert "GROQ_BASE_URL=http://127.0.0.1:1234/v1" in lines
    assert "GOOGLE_AI_STUDIO_BASE_URL=http://127.0.0.1:1234/v1beta" in lines
    assert "GROQ_API_KEY=fake-groq-api-key" in lines
    assert "GOOGLE_AI_STUDIO_KEY_1=fake-google-ai-studio-key-1" in lines
    assert not any("ANTHROPIC" in line or "CODEX" in line for line in lines)


class _FakeServerProcess:
    def __init__(self, cwd: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llmroute.cli", "fake-server"],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.env: dict[str, str] = {}
        self.stdout_text = ""
        assert self.proc.stdout is not None
        # the lines come at once, the last one is a key of the last provider
        timer = threading.Timer(30, self.proc.kill)
        timer.start()
        try:
            for line in self.proc.stdout:
                self.stdout_text += line
                if "=" in line and not line.startswith("#"):
                    name, _, value = line.strip().partition("=")
                    self.env[name] = value
                if "GOOGLE_AI_STUDIO_KEY_5" in self.env:
                    break
        finally:
            timer.cancel()

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGINT)
        _, err = self.proc.communicate(timeout=15)
        return err


@pytest.fixture
def fake_server(tmp_path: Path) -> Iterator[_FakeServerProcess]:
    server = _FakeServerProcess(tmp_path)
    try:
        yield server
    finally:
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.communicate()


def test_fake_server_runs_until_interrupted_and_a_plain_router_gets_answers(
    fake_server: _FakeServerProcess, tmp_path: Path
) -> None:
    env = fake_server.env
    assert env["GROQ_BASE_URL"].startswith("http://127.0.0.1:")
    code = (
        "import asyncio\n"
        "from llmroute import Router\n"
        "async def main():\n"
        "    async with Router() as router:\n"
        "        c = await router.complete('chat', 'Hello')\n"
        "        print(c.model, '|', c.text)\n"
        "asyncio.run(main())\n"
    )
    project = tmp_path / "project"
    project.mkdir()
    # the README's way: the printed lines saved as .env where the code runs
    (project / ".env").write_text(fake_server.stdout_text, encoding="utf-8")
    run = subprocess.run(
        [sys.executable, "-c", code],
        cwd=project,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert "fake answer" in run.stdout
    err = fake_server.stop()
    assert fake_server.proc.returncode == 0
    assert "Traceback" not in err
    assert "stopped" in err


def test_fake_server_on_a_busy_port_is_one_line(tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        run = subprocess.run(
            [sys.executable, "-m", "llmroute.cli", "fake-server", "--port", str(port)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert run.returncode == 1
    assert "--port" in run.stderr
    assert "Traceback" not in run.stderr
