"""The `llmroute` command, run as a real subprocess: exit codes, output, no secret, no traceback.

Requests go to a `FakeProviderServer` on 127.0.0.1 (in a thread of this process) through a
temporary config directory whose base URLs point at it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from llmroute.testing import (
    FakeProviderServer,
    FakeScript,
    InvalidKey,
    RateLimit,
    Reply,
    Stream,
    serve_in_thread,
)

ROOT = Path(__file__).resolve().parents[1]
SECRET = "sk-test-SECRET-cli-4242"
POOL = ("gk-SECRET-pool-one", "gk-SECRET-pool-two", "gk-SECRET-pool-three")
ALL_SECRETS = (SECRET, *POOL)


@dataclass
class Run:
    code: int
    out: str
    err: str

    @property
    def both(self) -> str:
        return self.out + self.err


def llmroute(
    *args: str,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    stdin: str | None = None,
    timeout: float = 60,
) -> Run:
    # os.environ is already clean of provider variables (conftest's clean_env)
    full_env = {**os.environ, **(env or {})}
    done = subprocess.run(
        [sys.executable, "-m", "llmroute.cli", *args],
        cwd=cwd,
        env=full_env,
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Run(done.returncode, done.stdout, done.stderr)


def assert_clean(run: Run) -> None:
    assert "Traceback" not in run.both
    for secret in ALL_SECRETS:
        assert secret not in run.both


@pytest.fixture
def server() -> Iterator[FakeProviderServer]:
    script = FakeScript()
    script.set_default("small-1", Reply(text="Hello from the fake."))
    script.set_default("refuses", InvalidKey())
    script.set_default("streamy", Stream(chunks=("Hel", "lo ", "stream"), delay=0.01))
    script.set_default("gemini-2.5-flash", Reply(text="Gemini here."))
    with serve_in_thread(script) as server:
        yield server


@pytest.fixture
def project(tmp_path: Path, server: FakeProviderServer) -> Path:
    """A project directory: config/ pointing at the fake server."""
    config = tmp_path / "config"
    config.mkdir()
    (config / "models.yaml").write_text(
        f"""
providers:
  fake:
    type: openai_compatible
    base_url: {server.openai_base_url}
    api_key: ${{FAKE_KEY}}
  pricey:
    type: openai_compatible
    base_url: {server.openai_base_url}
    api_key: ${{FAKE_KEY}}
    paid: true
  gem:
    type: google_ai_studio
    base_url: {server.gemini_base_url}
    api_keys: ["${{POOL_1}}", "${{POOL_2}}", "${{POOL_3}}"]
models:
  fake/small: {{provider: fake, model: small-1}}
  fake/refuses: {{provider: fake, model: refuses}}
  fake/streamy: {{provider: fake, model: streamy}}
  pricey/big: {{provider: pricey, model: big-1}}
  gem/flash: {{provider: gem, model: gemini-2.5-flash}}
routes:
  chat: [pricey/big, gem/flash, fake/small]
""",
        encoding="utf-8",
    )
    (config / "limits.yaml").write_text("defaults: {rpm: 100}\n", encoding="utf-8")
    return tmp_path


KEYS = {"FAKE_KEY": SECRET, "POOL_1": POOL[0], "POOL_2": POOL[1], "POOL_3": POOL[2]}


# -- check -----------------------------------------------------------------------------------


def test_check_on_the_shipped_config_passes_and_never_prints_a_key() -> None:
    run = llmroute(
        "check",
        "--env-file",
        "/nonexistent/.env",
        cwd=ROOT,
        env={"GROQ_API_KEY": SECRET, "GOOGLE_AI_STUDIO_KEY_1": POOL[0]},
    )
    assert run.code == 0, run.err
    assert_clean(run)
    assert "Config OK" in run.out
    assert "1 of 1 key set" in run.out  # groq
    assert "1 of 5 keys set" in run.out  # google_ai_studio
    assert "Paid models: OFF" in run.out
    assert "chat (" in run.out
    assert "set OPENROUTER_API_KEY" in run.out


def test_check_with_only_credentials_missing_exits_0_and_says_what_to_set(project: Path) -> None:
    run = llmroute("check", cwd=project, env={"USE_PAID_MODELS": "yes"})
    assert run.code == 0, run.err
    assert_clean(run)
    assert "Paid models: ON" in run.out
    assert "no API key set for provider 'fake'; set FAKE_KEY" in run.out
    assert "set POOL_1, POOL_2, POOL_3" in run.out


@pytest.mark.parametrize(
    ("models_yaml", "expected"),
    [
        (
            "providers:\n  p: {type: openai_compatible, base_url: 'http://x', api_kee: k}\n"
            "models:\n  p/m: {provider: p}\n",
            "providers.p.api_kee: unknown field",
        ),
        ("models: [\n  a: b\n", "line 3: YAML syntax error"),
        (
            "providers:\n  p: {type: openai_compatible, base_url: 'http://x'}\n"
            "models:\n  p/m: {provider: p}\nroutes:\n  chat: [p/m, p/nope]\n",
            "routes.chat[1]: unknown model or route 'p/nope'",
        ),
    ],
    ids=["unknown-field", "bad-yaml", "unknown-route-entry"],
)
def test_check_on_a_broken_config_exits_1_with_the_problem(
    tmp_path: Path, models_yaml: str, expected: str
) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "models.yaml").write_text(models_yaml, encoding="utf-8")
    run = llmroute("check", cwd=tmp_path)
    assert run.code == 1
    assert "Traceback" not in run.both
    assert expected in run.err
    assert run.out == ""


def test_check_lists_every_problem_on_its_own_line(tmp_path: Path) -> None:
    (tmp_path / "models.yaml").write_text(
        "providers:\n  p: {type: openai_compatible, base_url: 'http://x', colour: red}\n"
        "models:\n  p/m: {provider: p, size: big}\n",
        encoding="utf-8",
    )
    run = llmroute("check", "--config", str(tmp_path), cwd=tmp_path)
    assert run.code == 1
    problems = [line for line in run.err.splitlines() if "unknown field" in line]
    assert len(problems) == 2


def test_check_without_a_config_directory_uses_the_shipped_catalogue(tmp_path: Path) -> None:
    run = llmroute("check", cwd=tmp_path)
    assert run.code == 0, run.err
    assert "the catalogue shipped with llmroute" in run.out
    # nothing is set here, so what to do comes first
    assert run.out.index("To do") < run.out.index("Providers")
    assert "llmroute fake-server" in run.out
    strict = llmroute("check", "--strict", cwd=tmp_path)
    assert strict.code == 1
    assert "no usable candidate now in routes" in strict.out


def test_check_with_a_missing_config_directory_says_where_it_looked(tmp_path: Path) -> None:
    run = llmroute("check", "--config", "nowhere", cwd=tmp_path)
    assert run.code == 1
    assert "nowhere/models.yaml: file not found" in run.err
    assert "--config DIR" in run.err
    assert "Traceback" not in run.err


# -- complete ----------------------------------------------------------------------------------


def test_complete_prints_the_text(project: Path) -> None:
    run = llmroute("complete", "fake/small", "Hello", cwd=project, env=KEYS)
    assert run.code == 0, run.err
    assert run.out == "Hello from the fake.\n"
    assert_clean(run)


def test_complete_json_and_trace(project: Path) -> None:
    run = llmroute("complete", "chat", "Hello", "--json", "--trace", cwd=project, env=KEYS)
    assert run.code == 0, run.err
    assert_clean(run)
    result = json.loads(run.out)
    assert set(result) == {
        "text",
        "model",
        "provider",
        "finish_reason",
        "usage",
        "latency_ms",
        "attempts",
    }
    assert result["text"] == "Gemini here."
    assert result["model"] == "gem/flash"
    assert result["usage"]["total_tokens"] > 0
    assert [a["outcome"] for a in result["attempts"]] == ["skipped_paid", "ok"]
    assert result["attempts"][1]["key"] == "gem#0"
    # the trace goes to stderr, one row per attempt
    assert "routing trace" in run.err
    assert "skipped_paid" in run.err
    assert "gem#0" in run.err


def test_complete_reads_the_prompt_from_stdin(project: Path, server: FakeProviderServer) -> None:
    run = llmroute("complete", "fake/small", "-", cwd=project, env=KEYS, stdin="From a pipe.\n")
    assert run.code == 0, run.err
    assert run.out == "Hello from the fake.\n"
    assert server.script.requests[-1].body["messages"][0]["content"] == "From a pipe.\n"  # type: ignore[index]


def test_complete_streams(project: Path) -> None:
    run = llmroute("complete", "fake/streamy", "Hi", "--stream", "--trace", cwd=project, env=KEYS)
    assert run.code == 0, run.err
    assert run.out == "Hello stream\n"
    assert "fake#0" in run.err


def test_a_refused_key_is_one_line_exit_1_without_the_key(project: Path) -> None:
    run = llmroute("complete", "fake/refuses", "Hi", "--trace", cwd=project, env=KEYS)
    assert run.code == 1
    assert_clean(run)
    assert "llmroute: ProviderError: fake/refuses (fake) failed: HTTP 401" in run.err
    assert "client_error" in run.err  # the trace of the failed request


@pytest.mark.parametrize(
    ("args", "env", "code", "expected"),
    [
        (("complete", "nope", "Hi"), KEYS, 1, "UnknownTargetError: unknown target 'nope'"),
        (("complete", "pricey/big", "Hi"), KEYS, 1, "PaidModelBlockedError"),
        (("complete", "fake/small", "Hi"), {}, 1, "ProviderUnavailableError"),
        (("complete", "fake/small", "-"), KEYS, 2, "the prompt is empty"),
        (("complete", "fake/small"), KEYS, 2, "usage: llmroute complete"),
        (("complete", "fake/small", "Hi", "--max-tokens", "0"), KEYS, 2, "at least 1"),
    ],
    ids=["unknown-target", "paid-blocked", "no-key", "empty-stdin", "missing-arg", "bad-int"],
)
def test_complete_failures_are_one_line_without_traceback(
    project: Path, args: tuple[str, ...], env: dict[str, str], code: int, expected: str
) -> None:
    run = llmroute(*args, cwd=project, env=env)
    assert run.code == code
    assert expected in run.err
    assert_clean(run)


def test_paid_flag_lets_a_paid_model_serve(project: Path) -> None:
    run = llmroute("complete", "pricey/big", "Hi", "--paid", "--json", cwd=project, env=KEYS)
    assert run.code == 0, run.err
    assert json.loads(run.out)["model"] == "pricey/big"


# -- keys ------------------------------------------------------------------------------------


def test_keys_shows_the_persisted_index_and_slot_labels_only(project: Path) -> None:
    cache = project / "state"
    for _ in range(2):
        done = llmroute("complete", "gem/flash", "Hi", "--cache-dir", str(cache), cwd=project,
                        env=KEYS)  # fmt: skip
        assert done.code == 0, done.err
    run = llmroute("keys", "--cache-dir", str(cache), cwd=project, env=KEYS)
    assert run.code == 0, run.err
    assert_clean(run)
    assert "gem: 3 of 3 keys set, rotation round_robin" in run.out
    assert f"{cache / 'gem.keyidx'}: 2" in run.out
    assert "next key    gem#2" in run.out
    # single-key providers do not rotate
    assert "fake:" not in run.out


def test_keys_reports_a_corrupt_or_missing_index(project: Path) -> None:
    cache = project / "state"
    cache.mkdir()
    (cache / "gem.keyidx").write_text("garbage", encoding="ascii")
    run = llmroute("keys", "--cache-dir", str(cache), cwd=project, env=KEYS)
    assert run.code == 0, run.err
    assert "corrupt (starts at key 0)" in run.out
    assert "WARNING" not in run.err
    run = llmroute("keys", "--cache-dir", str(project / "fresh"), cwd=project, env={})
    assert run.code == 0, run.err
    assert "not written yet" in run.out
    assert "no key is set" in run.out


# -- demo and help ---------------------------------------------------------------------------


def test_demo_runs_and_prints_the_summary(tmp_path: Path) -> None:
    run = llmroute("demo", "--requests", "12", "--seed", "3", cwd=tmp_path, timeout=120)
    assert run.code == 0, run.err
    assert "Traceback" not in run.both
    assert run.err == ""
    rows = [line for line in run.out.splitlines() if re.match(r"\s*\d+\s+\d+\.\d\ds ", line)]
    assert len(rows) == 12 + 1  # the requests, then the one paid request
    for heading in ("Usage  (router.usage())", "Key pools", "Paid gate", "What you just saw"):
        assert heading in run.out
    assert "429" in run.out
    assert "paid, skipped" in run.out
    assert "wait" in run.out
    assert "503" in run.out
    assert "demo-gemini-key" not in run.out
    # nothing of the demo is left in the working directory
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", [(), ("check",), ("complete",), ("keys",), ("demo",)])
def test_help_everywhere(tmp_path: Path, command: tuple[str, ...]) -> None:
    run = llmroute(*command, "--help", cwd=tmp_path)
    assert run.code == 0
    assert run.out.startswith("usage: llmroute")


def test_verbose_shows_the_routing_log(project: Path) -> None:
    run = llmroute("-v", "complete", "chat", "Hi", cwd=project, env=KEYS)
    assert run.code == 0, run.err
    assert "INFO" in run.err
    assert "chat -> gem/flash ok" in run.err
    assert_clean(run)


def test_rate_limited_pool_still_answers_without_leaking(
    project: Path, server: FakeProviderServer
) -> None:
    server.script.script("gemini-2.5-flash", RateLimit(retry_delay=30), key=POOL[0])
    run = llmroute("complete", "gem/flash", "Hi", "--trace", cwd=project, env=KEYS)
    assert run.code == 0, run.err
    assert_clean(run)
    assert "rate_limited_remote" in run.err
    assert "gem#1" in run.err


# -- explain -----------------------------------------------------------------------------------


def test_explain_prints_the_chain_and_sends_nothing(
    project: Path, server: FakeProviderServer
) -> None:
    run = llmroute("explain", "chat", "Hello", cwd=project, env={**KEYS, "USE_PAID_MODELS": "0"})
    assert run.code == 0, run.err
    assert_clean(run)
    for model in ("pricey/big", "gem/flash", "fake/small"):
        assert model in run.out
    assert "paid" in run.out
    assert server.script.requests == []
    unknown = llmroute("explain", "chta", "Hello", cwd=project, env=KEYS)
    assert unknown.code == 1
    assert "did you mean 'chat'" in unknown.err
