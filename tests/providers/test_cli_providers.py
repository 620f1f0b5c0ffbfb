"""Claude Code and Codex adapters against fake executables that print the real CLIs' output.

Each fake is a small Python script put on PATH as `claude` or `codex`. Like the real CLIs
(docs/providers.md 7.6) it reads its prompt from stdin until EOF before answering, so every test
also proves that stdin gets closed.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
import textwrap
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from pathlib import Path

import pytest
from proc_helpers import is_empty, read_pids, wait_gone

from llmroute.config._schema import ProviderConfig
from llmroute.providers._subprocess import Runner, RunResult, SubprocessRunner
from llmroute.providers.base import AttemptFailed, Provider, ProviderRequest, StreamEvent
from llmroute.providers.cli import ClaudeCodeProvider, CodexCliProvider, flatten_messages
from llmroute.trace import Usage

CLAUDE_JSON = ("claude", "-p", "--output-format", "json", "--tools", "", "--model", "{model}")
CLAUDE_STREAM = (
    "claude",
    "-p",
    "--output-format",
    "stream-json",
    "--verbose",
    "--include-partial-messages",
    "--model",
    "{model}",
)
CODEX = ("codex", "exec", "--json", "--skip-git-repo-check", "--model", "{model}", "-")

# docs/providers.md 9.6
CLAUDE_SUCCESS = (
    '{"type":"result","subtype":"success","is_error":false,"duration_ms":2210,'
    '"duration_api_ms":1980,"num_turns":1,"result":"Paris.","stop_reason":"end_turn",'
    '"session_id":"5d9c2f3e-7a41-4b8e-9c0d-1e2f3a4b5c6d","total_cost_usd":0.0031,'
    '"usage":{"input_tokens":12,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,'
    '"output_tokens":4},"modelUsage":{"claude-sonnet-4-5":{"inputTokens":12,"outputTokens":4,'
    '"costUSD":0.0031}},"permission_denials":[],"uuid":"a1b2c3d4-0000-4000-8000-000000000001"}\n'
)
SID = '"session_id":"5d9c2f3e-7a41-4b8e-9c0d-1e2f3a4b5c6d"'
CLAUDE_INIT = (
    f'{{"type":"system","subtype":"init",{SID},"model":"claude-sonnet-4-5",'
    '"cwd":"/fixture/workdir","tools":[],"mcp_servers":[],"permissionMode":"default",'
    '"apiKeySource":"ANTHROPIC_API_KEY","uuid":"u-0001"}'
)
CLAUDE_PARTIAL_HEAD = [
    CLAUDE_INIT,
    '{"type":"stream_event","event":{"type":"message_start","message":{"id":"msg_fixture01",'
    '"type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[],'
    f'"stop_reason":null,"usage":{{"input_tokens":12,"output_tokens":1}}}}}},{SID},'
    '"parent_tool_use_id":null,"uuid":"u-0002"}',
    '{"type":"stream_event","event":{"type":"content_block_start","index":0,'
    f'"content_block":{{"type":"text","text":""}}}},{SID},"parent_tool_use_id":null,'
    '"uuid":"u-0003"}',
    '{"type":"stream_event","event":{"type":"content_block_delta","index":0,'
    f'"delta":{{"type":"text_delta","text":"Par"}}}},{SID},"parent_tool_use_id":null,'
    '"uuid":"u-0004"}',
]
CLAUDE_ASSISTANT = (
    '{"type":"assistant","message":{"id":"msg_fixture01","type":"message","role":"assistant",'
    '"model":"claude-sonnet-4-5","content":[{"type":"text","text":"Paris."}],'
    f'"stop_reason":null,"usage":{{"input_tokens":12,"output_tokens":4}}}},{SID},'
    '"parent_tool_use_id":null,"uuid":"u-0006"}'
)
CLAUDE_STREAM_RESULT = (
    '{"type":"result","subtype":"success","is_error":false,"duration_ms":2240,'
    '"duration_api_ms":1990,"num_turns":1,"result":"Paris.","stop_reason":"end_turn",'
    f'{SID},"total_cost_usd":0.0031,"usage":{{"input_tokens":12,'
    '"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":4},'
    '"uuid":"u-0008"}'
)
CLAUDE_PARTIAL_TAIL = [
    '{"type":"stream_event","event":{"type":"content_block_delta","index":0,'
    f'"delta":{{"type":"text_delta","text":"is."}}}},{SID},"parent_tool_use_id":null,'
    '"uuid":"u-0005"}',
    CLAUDE_ASSISTANT,
    f'{{"type":"stream_event","event":{{"type":"message_stop"}}}},{SID},'
    '"parent_tool_use_id":null,"uuid":"u-0007"}',
    CLAUDE_STREAM_RESULT,
]
PARTIAL_HEAD = "\n".join(CLAUDE_PARTIAL_HEAD)
PARTIAL_TAIL = "\n".join(CLAUDE_PARTIAL_TAIL)
CLAUDE_RATE_LIMITED_STREAM = "\n".join(
    [
        '{"type":"system","subtype":"init","session_id":"7e1f","model":"claude-sonnet-4-5",'
        '"cwd":"/fixture/workdir","tools":[],"mcp_servers":[],"permissionMode":"default",'
        '"apiKeySource":"ANTHROPIC_API_KEY","uuid":"u-0101"}',
        '{"type":"system","subtype":"api_retry","attempt":1,"max_retries":2,'
        '"retry_delay_ms":2000,"error_status":429,"error":"rate_limit","session_id":"7e1f",'
        '"uuid":"u-0102"}',
        '{"type":"result","subtype":"success","is_error":true,"api_error_status":429,'
        '"duration_ms":6620,"duration_api_ms":0,"num_turns":1,"result":"API Error: 429 '
        '{\\"type\\":\\"error\\",\\"error\\":{\\"type\\":\\"rate_limit_error\\",\\"message\\":'
        '\\"This request would exceed your account\'s rate limit. Please try again later.\\"},'
        '\\"request_id\\":\\"req_fixture0001\\"}","session_id":"7e1f","total_cost_usd":0,'
        '"usage":{"input_tokens":0,"output_tokens":0},"uuid":"u-0104"}',
        "",
    ]
)

# docs/providers.md 9.5
CODEX_HEAD = (
    '{"type":"thread.started","thread_id":"0199f0aa-1111-7222-8333-944455556666"}\n'
    '{"type":"turn.started"}\n'
)
CODEX_SUCCESS = (
    CODEX_HEAD + '{"type":"item.completed","item":{"id":"item_0","type":"reasoning",'
    '"text":"**Answering a short factual question**"}}\n'
    '{"type":"item.completed","item":{"id":"item_1","type":"agent_message","text":"Paris."}}\n'
    '{"type":"turn.completed","usage":{"input_tokens":1520,"cached_input_tokens":1408,'
    '"output_tokens":9}}\n'
)
CODEX_RATE_LIMITED = (
    CODEX_HEAD
    + '{"type":"error","message":"exceeded retry limit, last status: 429 Too Many Requests"}\n'
    '{"type":"turn.failed","error":{"message":"exceeded retry limit, last status: 429 Too Many '
    'Requests"}}\n'
)

# Reads the prompt to EOF (as the real CLIs do), records what it got, prints its script.
CANNED = """
import json, os, sys
prompt = sys.stdin.buffer.read()
if "FAKE_RECORD" in os.environ:
    with open(os.environ["FAKE_RECORD"], "w") as f:
        json.dump({"argv": sys.argv[1:], "stdin": prompt.decode(), "cwd": os.getcwd()}, f)
sys.stdout.write(STDOUT)
sys.stdout.flush()
sys.stderr.write(STDERR)
sys.exit(CODE)
"""

HANG = """
import os, subprocess, sys, time
sys.stdin.buffer.read()
grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
with open(os.environ["PIDS"] + ".tmp", "w") as f:
    f.write(f"{os.getpid()} {grandchild.pid}")
os.replace(os.environ["PIDS"] + ".tmp", os.environ["PIDS"])
time.sleep(60)
"""


@pytest.fixture
def bin_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "bin"
    path.mkdir()
    # Only the fakes: a real claude or codex on this machine must never be reached.
    monkeypatch.setenv("PATH", str(path))
    return path


def write_fake(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text(f"#!{sys.executable}\n{textwrap.dedent(body)}")
    path.chmod(0o755)


def canned(bin_dir: Path, name: str, stdout: str = "", stderr: str = "", code: int = 0) -> None:
    write_fake(bin_dir, name, f"STDOUT = {stdout!r}\nSTDERR = {stderr!r}\nCODE = {code}\n{CANNED}")


def config(
    kind: str,
    command: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    max_concurrency: int = 2,
) -> ProviderConfig:
    return ProviderConfig(
        name=kind,
        type="claude_code" if kind == "claude" else "codex_cli",
        uses_keys=False,
        command=tuple(command),
        env=dict(env or {}),
        max_concurrency=max_concurrency,
    )


def claude(
    runner: SubprocessRunner,
    command: Sequence[str] = CLAUDE_JSON,
    *,
    env: Mapping[str, str] | None = None,
) -> ClaudeCodeProvider:
    return ClaudeCodeProvider(config("claude", command, env=env), runner=runner)


def codex(
    runner: SubprocessRunner,
    command: Sequence[str] = CODEX,
    *,
    env: Mapping[str, str] | None = None,
    max_concurrency: int = 2,
) -> CodexCliProvider:
    config_ = config("codex", command, env=env, max_concurrency=max_concurrency)
    return CodexCliProvider(config_, runner=runner)


def request(
    prompt: str = "Capital of France?", *, model: str = "m", timeout: float = 10
) -> ProviderRequest:
    return ProviderRequest(
        model=model, messages=[{"role": "user", "content": prompt}], timeout=timeout
    )


def agent_message(text: str) -> str:
    item = {"id": "item_0", "type": "agent_message", "text": text}
    return json.dumps({"type": "item.completed", "item": item}) + "\n"


async def collect(stream: AsyncIterator[StreamEvent]) -> list[StreamEvent]:
    return [event async for event in stream]


async def test_claude_success(
    runner: SubprocessRunner, bin_dir: Path, runs: Path, tmp_path: Path
) -> None:
    canned(bin_dir, "claude", CLAUDE_SUCCESS)
    record = tmp_path / "record.json"
    provider = claude(runner, env={"FAKE_RECORD": str(record)})
    assert provider.unavailable_reason is None
    response = await provider.complete(request(model="claude-sonnet-4-5"), None)
    assert response.text == "Paris."
    assert response.usage == Usage(prompt_tokens=12, completion_tokens=4, total_tokens=16)
    assert response.served_model == "claude-sonnet-4-5"
    assert response.finish_reason == "stop"
    seen = json.loads(record.read_text())
    assert seen["argv"] == [
        "-p",
        "--output-format",
        "json",
        "--tools",
        "",
        "--model",
        "claude-sonnet-4-5",
    ]
    assert seen["stdin"] == "Capital of France?"
    assert Path(seen["cwd"]).parent.parent == runs
    assert is_empty(runs)


async def test_claude_verbose_array_takes_the_last_result(
    runner: SubprocessRunner, bin_dir: Path
) -> None:
    init = json.loads(CLAUDE_INIT)
    first = json.loads(CLAUDE_SUCCESS) | {"result": "stale"}
    last = json.loads(CLAUDE_SUCCESS)
    canned(bin_dir, "claude", json.dumps([init, first, last, {"type": "other"}]))
    response = await claude(runner).complete(request(), None)
    assert response.text == "Paris."


@pytest.mark.parametrize(
    ("status", "text", "kind", "retryable"),
    [
        (429, "API Error: 429 rate_limit_error", "rate_limited_remote", False),
        (529, "API Error: 529 overloaded_error", "server_error", True),
        (500, "API Error: 500 api_error", "server_error", True),
        (401, "API Error: 401 invalid x-api-key", "client_error", False),
        (403, "API Error: 403 forbidden", "client_error", False),
        (None, "authentication_failed", "client_error", False),
        (None, "You've hit your limit · resets 5pm", "rate_limited_remote", False),
        (400, "API Error: 400 prompt is too long", "client_error", False),
    ],
)
async def test_claude_is_error_despite_success_subtype(
    runner: SubprocessRunner,
    bin_dir: Path,
    status: int | None,
    text: str,
    kind: str,
    retryable: bool,
) -> None:
    answer: dict[str, object] = {
        "type": "result",
        "subtype": "success",
        "is_error": True,
        "result": text,
        "terminal_reason": "api_error",
        "usage": {"input_tokens": 0, "output_tokens": 0},
    }
    if status is not None:
        answer["api_error_status"] = status
    canned(bin_dir, "claude", json.dumps(answer), code=1)
    with pytest.raises(AttemptFailed) as caught:
        await claude(runner).complete(request(model="sonnet"), None)
    assert caught.value.kind == kind
    assert caught.value.retryable is retryable
    assert not caught.value.key_invalid
    assert "claude (sonnet)" in caught.value.message
    assert text in caught.value.message


async def test_claude_stream_json_arrives_chunk_by_chunk(
    runner: SubprocessRunner, bin_dir: Path, tmp_path: Path
) -> None:
    # The rest of the transcript is only printed once the first delta has been received.
    write_fake(
        bin_dir,
        "claude",
        f"""
        import os, sys, time
        sys.stdin.buffer.read()
        print({PARTIAL_HEAD!r}, flush=True)
        while not os.path.exists(os.environ["GO"]):
            time.sleep(0.01)
        print({PARTIAL_TAIL!r}, flush=True)
        """,
    )
    go = tmp_path / "go"
    stream = claude(runner, CLAUDE_STREAM, env={"GO": str(go)}).stream(request(), None)
    assert await anext(stream) == StreamEvent(text="Par")
    go.touch()
    assert await collect(stream) == [
        StreamEvent(text="is."),
        StreamEvent(
            finish_reason="stop",
            usage=Usage(prompt_tokens=12, completion_tokens=4, total_tokens=16),
            served_model="claude-sonnet-4-5",
        ),
    ]


async def test_claude_stream_without_partial_messages_uses_assistant_text(
    runner: SubprocessRunner, bin_dir: Path
) -> None:
    canned(bin_dir, "claude", "\n".join([CLAUDE_INIT, CLAUDE_ASSISTANT, CLAUDE_STREAM_RESULT, ""]))
    command = [part for part in CLAUDE_STREAM if part != "--include-partial-messages"]
    events = await collect(claude(runner, command).stream(request(), None))
    assert [e.text for e in events] == ["Paris.", ""]
    assert events[-1].usage == Usage(prompt_tokens=12, completion_tokens=4, total_tokens=16)
    assert events[-1].served_model == "claude-sonnet-4-5"


async def test_claude_stream_with_a_json_command_yields_one_event(
    runner: SubprocessRunner, bin_dir: Path
) -> None:
    canned(bin_dir, "claude", CLAUDE_SUCCESS)
    events = await collect(claude(runner).stream(request(), None))
    assert events == [
        StreamEvent(
            text="Paris.",
            finish_reason="stop",
            usage=Usage(prompt_tokens=12, completion_tokens=4, total_tokens=16),
            served_model="claude-sonnet-4-5",
        )
    ]


async def test_claude_stream_rate_limited(runner: SubprocessRunner, bin_dir: Path) -> None:
    canned(bin_dir, "claude", CLAUDE_RATE_LIMITED_STREAM, code=1)
    with pytest.raises(AttemptFailed) as caught:
        await collect(claude(runner, CLAUDE_STREAM).stream(request(), None))
    assert caught.value.kind == "rate_limited_remote"
    assert "API error 429" in caught.value.message


async def test_closing_a_stream_early_kills_the_cli(
    runner: SubprocessRunner, bin_dir: Path, runs: Path, tmp_path: Path
) -> None:
    write_fake(
        bin_dir,
        "claude",
        f"""
        import os, subprocess, sys, time
        sys.stdin.buffer.read()
        grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        with open(os.environ["PIDS"], "w") as f:
            f.write(f"{{os.getpid()}} {{grandchild.pid}}")
        print({PARTIAL_HEAD!r}, flush=True)
        time.sleep(60)
        """,
    )
    pids_file = tmp_path / "pids"
    stream = claude(runner, CLAUDE_STREAM, env={"PIDS": str(pids_file)}).stream(request(), None)
    assert await anext(stream) == StreamEvent(text="Par")
    pids = await read_pids(pids_file)
    await stream.aclose()
    assert await wait_gone(*pids)
    assert is_empty(runs)


async def test_prompt_is_the_flattened_conversation(
    runner: SubprocessRunner, bin_dir: Path
) -> None:
    write_fake(
        bin_dir,
        "claude",
        """
        import json, sys
        prompt = sys.stdin.read()
        answer = {"type": "result", "subtype": "success", "is_error": False, "result": prompt}
        print(json.dumps(answer))
        """,
    )
    messages = [
        {"role": "user", "content": "Hi"},
        {"role": "system", "content": "Be brief."},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Capital of France?"},
    ]
    response = await claude(runner).complete(ProviderRequest(model="m", messages=messages), None)
    expected = "System: Be brief.\n\nUser: Hi\n\nAssistant: Hello.\n\nUser: Capital of France?"
    assert response.text == expected == flatten_messages(messages)
    assert response.usage is None


async def test_a_100kb_prompt_passes_intact(runner: SubprocessRunner, bin_dir: Path) -> None:
    write_fake(
        bin_dir,
        "codex",
        """
        import hashlib, json, sys
        data = sys.stdin.buffer.read()
        answer = f"{len(data)} {hashlib.sha256(data).hexdigest()}"
        item = {"type": "agent_message", "text": answer}
        print(json.dumps({"type": "item.completed", "item": item}))
        usage = {"input_tokens": 1, "output_tokens": 1}
        print(json.dumps({"type": "turn.completed", "usage": usage}))
        """,
    )
    content = "Ünïcode prompt line.\n" * 5000
    response = await codex(runner).complete(request(content), None)
    sent = content.encode()
    assert len(sent) > 100_000
    assert response.text == f"{len(sent)} {hashlib.sha256(sent).hexdigest()}"


async def test_codex_success(runner: SubprocessRunner, bin_dir: Path, tmp_path: Path) -> None:
    canned(bin_dir, "codex", CODEX_SUCCESS, stderr="Reading additional input from stdin...\n")
    record = tmp_path / "record.json"
    provider = codex(runner, env={"FAKE_RECORD": str(record)})
    response = await provider.complete(request(model="gpt-5-codex"), None)
    assert response.text == "Paris."
    assert response.usage == Usage(prompt_tokens=1520, completion_tokens=9, total_tokens=1529)
    assert response.served_model is None
    assert response.finish_reason == "stop"
    assert json.loads(record.read_text())["argv"] == [
        "exec",
        "--json",
        "--skip-git-repo-check",
        "--model",
        "gpt-5-codex",
        "-",
    ]


async def test_codex_takes_the_last_agent_message(runner: SubprocessRunner, bin_dir: Path) -> None:
    early = agent_message("Let me think.")
    canned(bin_dir, "codex", CODEX_HEAD + early + CODEX_SUCCESS.removeprefix(CODEX_HEAD))
    response = await codex(runner).complete(request(), None)
    assert response.text == "Paris."


async def test_codex_rate_limited(runner: SubprocessRunner, bin_dir: Path) -> None:
    canned(bin_dir, "codex", CODEX_RATE_LIMITED, code=1)
    with pytest.raises(AttemptFailed) as caught:
        await codex(runner).complete(request(), None)
    assert caught.value.kind == "rate_limited_remote"
    assert "429 Too Many Requests" in caught.value.message


async def test_codex_error_notice_followed_by_success_is_a_success(
    runner: SubprocessRunner, bin_dir: Path
) -> None:
    notice = (
        '{"type":"error","message":"Reconnecting... 1/5 (stream disconnected before completion)"}\n'
    )
    canned(bin_dir, "codex", CODEX_HEAD + notice + CODEX_SUCCESS.removeprefix(CODEX_HEAD))
    response = await codex(runner).complete(request(), None)
    assert response.text == "Paris."


@pytest.mark.parametrize(
    ("message", "kind", "retryable"),
    [
        ("stream disconnected: 500 Internal Server Error", "server_error", True),
        ("You've hit your usage limit. Try again later.", "rate_limited_remote", False),
        ("unexpected status 401 Unauthorized: invalid api key", "client_error", False),
    ],
)
async def test_codex_turn_failed(
    runner: SubprocessRunner, bin_dir: Path, message: str, kind: str, retryable: bool
) -> None:
    failed = json.dumps({"type": "turn.failed", "error": {"message": message}})
    canned(bin_dir, "codex", f"{CODEX_HEAD}{failed}\n", code=1)
    with pytest.raises(AttemptFailed) as caught:
        await codex(runner).complete(request(), None)
    assert (caught.value.kind, caught.value.retryable) == (kind, retryable)
    assert message in caught.value.message


async def test_codex_exit_status_with_a_usage_limit_error_is_a_rate_limit(
    runner: SubprocessRunner, bin_dir: Path
) -> None:
    error = '{"type":"error","message":"You\'ve hit your usage limit."}\n'
    canned(bin_dir, "codex", CODEX_HEAD + error, code=1)
    with pytest.raises(AttemptFailed) as caught:
        await codex(runner).complete(request(), None)
    assert caught.value.kind == "rate_limited_remote"
    assert "status 1" in caught.value.message


async def test_codex_without_an_agent_message_fails(
    runner: SubprocessRunner, bin_dir: Path
) -> None:
    canned(bin_dir, "codex", CODEX_HEAD + '{"type":"turn.completed","usage":{}}\n')
    with pytest.raises(AttemptFailed) as caught:
        await codex(runner).complete(request(), None)
    assert caught.value.kind == "server_error"
    assert "no agent message" in caught.value.message


async def test_codex_that_reads_stdin_line_by_line_until_eof(
    runner: SubprocessRunner, bin_dir: Path
) -> None:
    write_fake(
        bin_dir,
        "codex",
        f"""
        import sys
        lines = [line for line in sys.stdin]
        sys.stdout.write({CODEX_SUCCESS!r})
        """,
    )
    started = time.monotonic()
    response = await codex(runner).complete(request("line one\nline two", timeout=5), None)
    assert response.text == "Paris."
    assert time.monotonic() - started < 3


async def test_codex_stream_yields_each_agent_message(
    runner: SubprocessRunner, bin_dir: Path
) -> None:
    early = agent_message("Checking.")
    canned(bin_dir, "codex", CODEX_HEAD + early + CODEX_SUCCESS.removeprefix(CODEX_HEAD))
    events = await collect(codex(runner).stream(request(), None))
    assert events == [
        StreamEvent(text="Checking."),
        StreamEvent(text="\n\nParis."),
        StreamEvent(
            finish_reason="stop",
            usage=Usage(prompt_tokens=1520, completion_tokens=9, total_tokens=1529),
        ),
    ]


async def test_codex_stream_rate_limited(runner: SubprocessRunner, bin_dir: Path) -> None:
    canned(bin_dir, "codex", CODEX_RATE_LIMITED, code=1)
    with pytest.raises(AttemptFailed) as caught:
        await collect(codex(runner).stream(request(), None))
    assert caught.value.kind == "rate_limited_remote"


@pytest.mark.parametrize("cls", [ClaudeCodeProvider, CodexCliProvider])
def test_missing_binary_makes_the_provider_unavailable(
    bin_dir: Path, cls: type[ClaudeCodeProvider] | type[CodexCliProvider]
) -> None:
    name = "claude" if cls is ClaudeCodeProvider else "codex"
    command = CLAUDE_JSON if cls is ClaudeCodeProvider else CODEX
    provider = cls(config(name, command))
    assert provider.unavailable_reason == f"executable {name!r} not found on PATH"
    # Decided at construction: a binary that turns up later does not change it.
    canned(bin_dir, name)
    assert provider.unavailable_reason is not None
    assert cls(config(name, command)).unavailable_reason is None
    assert cls(config(name, ())).unavailable_reason == "no command configured"


async def test_a_binary_gone_at_call_time_is_a_transport_error(
    runner: SubprocessRunner, bin_dir: Path
) -> None:
    canned(bin_dir, "codex", CODEX_SUCCESS)
    provider = codex(runner)
    (bin_dir / "codex").unlink()
    with pytest.raises(AttemptFailed) as caught:
        await provider.complete(request(), None)
    assert (caught.value.kind, caught.value.retryable, caught.value.reached) == (
        "transport_error",
        False,
        False,
    )


@pytest.mark.parametrize(("name", "command"), [("claude", CLAUDE_JSON), ("codex", CODEX)])
async def test_a_crash_reports_the_stderr_tail_without_secrets(
    runner: SubprocessRunner,
    bin_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    command: Sequence[str],
) -> None:
    configured = "sk-configured-0123456789"
    ambient = "tok-ambient-9876543210"
    monkeypatch.setenv("SOME_SERVICE_TOKEN", ambient)
    write_fake(
        bin_dir,
        name,
        f"""
        import os, sys
        sys.stdin.read()
        sys.stderr.write("early noise " * 400)
        sys.stderr.write("using " + os.environ["FAKE_API_KEY"] + " and {ambient}\\n")
        sys.stderr.write("Error: something broke TAIL-MARKER\\n")
        sys.exit(2)
        """,
    )
    provider = ClaudeCodeProvider if name == "claude" else CodexCliProvider
    with pytest.raises(AttemptFailed) as caught:
        await provider(
            config(name, command, env={"FAKE_API_KEY": configured}), runner=runner
        ).complete(request(), None)
    failure = caught.value
    assert failure.kind == "server_error" and failure.retryable
    assert "status 2" in failure.message
    assert "TAIL-MARKER" in failure.message
    assert "using *** and ***" in failure.message
    for text in (str(failure), repr(failure), failure.message):
        assert configured not in text and ambient not in text
    assert len(failure.message) < 700


@pytest.mark.parametrize(("name", "command"), [("claude", CLAUDE_JSON), ("codex", CODEX)])
async def test_garbage_output_is_a_server_error(
    runner: SubprocessRunner, bin_dir: Path, name: str, command: Sequence[str]
) -> None:
    canned(bin_dir, name, "<html>502 Bad Gateway</html>\nnot json at all\n")
    provider = ClaudeCodeProvider if name == "claude" else CodexCliProvider
    with pytest.raises(AttemptFailed) as caught:
        await provider(config(name, command), runner=runner).complete(request(), None)
    assert caught.value.kind == "server_error" and caught.value.retryable


async def test_huge_output_is_bounded(bin_dir: Path, runs: Path) -> None:
    write_fake(
        bin_dir,
        "claude",
        """
        import sys
        sys.stdin.read()
        block = b"x" * 65536
        while True:
            sys.stdout.buffer.write(block)
        """,
    )
    runner = SubprocessRunner(max_stdout_bytes=1024 * 1024, kill_grace=0.2, temp_dir=runs)
    with pytest.raises(AttemptFailed) as caught:
        await claude(runner).complete(request(), None)
    assert caught.value.kind == "server_error"
    assert "output too large" in caught.value.message


async def test_timeout_kills_the_process_group(
    runner: SubprocessRunner, bin_dir: Path, runs: Path, tmp_path: Path
) -> None:
    write_fake(bin_dir, "claude", HANG)
    pids_file = tmp_path / "pids"
    started = time.monotonic()
    with pytest.raises(AttemptFailed) as caught:
        await claude(runner, env={"PIDS": str(pids_file)}).complete(request(timeout=0.5), None)
    assert time.monotonic() - started < 2.5
    assert caught.value.kind == "timeout" and caught.value.retryable
    assert "0.5s" in caught.value.message
    assert await wait_gone(*await read_pids(pids_file))
    assert is_empty(runs)


async def test_cancelling_a_call_kills_the_process_group(
    runner: SubprocessRunner, bin_dir: Path, runs: Path, tmp_path: Path
) -> None:
    write_fake(bin_dir, "codex", HANG)
    pids_file = tmp_path / "pids"
    provider = codex(runner, env={"PIDS": str(pids_file)})
    task = asyncio.create_task(provider.complete(request(timeout=30), None))
    pids = await read_pids(pids_file)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await wait_gone(*pids)
    assert is_empty(runs)


async def test_max_concurrency_caps_running_processes(
    runner: SubprocessRunner, bin_dir: Path, tmp_path: Path
) -> None:
    log = tmp_path / "spans"
    log.mkdir()
    write_fake(
        bin_dir,
        "codex",
        f"""
        import os, sys, time
        sys.stdin.read()
        start = time.time()
        time.sleep(0.2)
        with open(os.path.join(os.environ["SPANS"], str(os.getpid())), "w") as f:
            f.write(f"{{start}} {{time.time()}}")
        sys.stdout.write({CODEX_SUCCESS!r})
        """,
    )
    provider = codex(runner, env={"SPANS": str(log)}, max_concurrency=2)
    responses = await asyncio.gather(*(provider.complete(request(), None) for _ in range(5)))
    assert [r.text for r in responses] == ["Paris."] * 5
    spans = [tuple(map(float, f.read_text().split())) for f in log.iterdir()]
    assert len(spans) == 5
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = peak = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    assert peak == 2


class ScriptedRunner:
    """A `Runner` that spawns nothing: it replays canned stdout and records the calls."""

    def __init__(self, stdout: bytes, returncode: int = 0) -> None:
        self.stdout = stdout
        self.returncode = returncode
        self.calls: list[tuple[tuple[str, ...], bytes, float, dict[str, str]]] = []

    async def run(
        self, argv: Sequence[str], *, stdin: bytes, timeout: float, env: Mapping[str, str]
    ) -> RunResult:
        self.calls.append((tuple(argv), stdin, timeout, dict(env)))
        return RunResult(returncode=self.returncode, stdout=self.stdout, stderr_tail=b"")

    async def stream(
        self, argv: Sequence[str], *, stdin: bytes, timeout: float, env: Mapping[str, str]
    ) -> AsyncGenerator[bytes | RunResult, None]:
        self.calls.append((tuple(argv), stdin, timeout, dict(env)))
        for line in self.stdout.splitlines():
            yield line
        yield RunResult(returncode=self.returncode, stdout=b"", stderr_tail=b"")


async def test_an_injected_runner_replaces_the_subprocess(bin_dir: Path) -> None:
    canned(bin_dir, "codex")  # only so that the provider counts as available
    scripted = ScriptedRunner(CODEX_SUCCESS.encode())
    as_runner: Runner = scripted  # the fake fits the protocol without inheriting
    provider: Provider = CodexCliProvider(config("codex", CODEX, env={"X": "1"}), runner=as_runner)
    assert provider.unavailable_reason is None
    response = await provider.complete(request(model="gpt-5", timeout=42), None)
    assert response.text == "Paris."
    events = await collect(provider.stream(request(model="gpt-5"), None))
    assert [e.text for e in events] == ["Paris.", ""]
    argv, stdin, timeout, env = scripted.calls[0]
    assert argv[-3:] == ("--model", "gpt-5", "-")
    assert stdin == b"Capital of France?"
    assert 41 < timeout <= 42
    assert env == {"X": "1"}
