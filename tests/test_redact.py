"""The one Redactor: whole secrets, fragments of 8+ characters, and its cost."""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llmroute._redact import FRAGMENT, MASK, Redactor

KEY = "sk-live-0123456789abcdefghij"
OTHER = "AIzaQwErTyUiOpAsDfGhJkL"

CASES = [
    # (secrets, text, expected)
    ([KEY], "no secret here", "no secret here"),
    ([KEY], f"bad key {KEY}", f"bad key {MASK}"),
    ([KEY], f"{KEY}{KEY}", MASK),
    ([KEY], f"{KEY} and {KEY}.", f"{MASK} and {MASK}."),
    ([KEY], "echo: sk-live-01234567 (truncated)", f"echo: {MASK} (truncated)"),
    ([KEY], "ends in 456789abcdefghij", f"ends in {MASK}"),
    ([KEY], "middle 3456789a only", f"middle {MASK} only"),
    ([KEY], "seven 3456789 is fine", "seven 3456789 is fine"),
    ([KEY], "Bearer " + KEY[:16] + "...", f"Bearer {MASK}..."),
    ([KEY], KEY[:8], MASK),
    ([KEY], KEY[:7], KEY[:7]),
    ([KEY], KEY[-8:], MASK),
    ([KEY], "x" + KEY[5:13] + "y", f"x{MASK}y"),
    # Two fragments of different secrets side by side merge into one mask.
    ([KEY, OTHER], KEY[:10] + OTHER[-10:], MASK),
    ([KEY, OTHER], f"{KEY[:9]} / {OTHER[3:12]}", f"{MASK} / {MASK}"),
    # A secret inside another: the longer one is masked whole.
    ([KEY, KEY[3:15]], f"<{KEY}>", f"<{MASK}>"),
    # Short secrets: masked whole only; shorter than 4 never.
    (["hunter2"], "pw=hunter2;", f"pw={MASK};"),
    (["hunter2"], "hunter", "hunter"),
    (["abc"], "abc abc", "abc abc"),
    (["", "abcd"], "abcd", MASK),
    ([], f"nothing known {KEY}", f"nothing known {KEY}"),
    # Non-ASCII secrets and text.
    (["пароль-секретный-1"], "ключ: пароль-секретный-1!", f"ключ: {MASK}!"),
    ([KEY], "日本語" + KEY[2:12] + "テキスト", f"日本語{MASK}テキスト"),
    # Repetitive secrets whose pieces occur at several offsets.
    (["aaaaaaaaaaaaaaaaaaaa"], "xaaaaaaaax", f"x{MASK}x"),
    (["abababababababab"], "--babababa--abab", f"--{MASK}--abab"),
]


@pytest.mark.parametrize(("secrets", "text", "expected"), CASES)
def test_table(secrets: list[str], text: str, expected: str) -> None:
    assert Redactor(secrets)(text) == expected


def test_falsy_without_secrets_and_repr_shows_only_a_count() -> None:
    assert not Redactor([])
    assert not Redactor(["", "ab"])
    redactor = Redactor([KEY, OTHER])
    assert redactor
    assert repr(redactor) == "Redactor(secrets=2)"
    assert KEY[:FRAGMENT] not in repr(redactor)


def _brute_force_leaks(secrets: list[str], text: str) -> bool:
    """True if `text` still holds a run of FRAGMENT characters of a secret."""
    for secret in secrets:
        if len(secret) < FRAGMENT:
            continue
        for i in range(len(secret) - FRAGMENT + 1):
            if secret[i : i + FRAGMENT] in text:
                return True
    return False


_ALPHABET = "abcAB01-_*"


@settings(max_examples=300, deadline=None)
@given(
    secrets=st.lists(st.text(_ALPHABET, min_size=8, max_size=24), min_size=1, max_size=3),
    pieces=st.lists(
        st.tuples(st.integers(0, 2), st.integers(0, 23), st.integers(0, 24), st.text(_ALPHABET)),
        max_size=6,
    ),
)
def test_no_fragment_survives(secrets: list[str], pieces: list[tuple[int, int, int, str]]) -> None:
    text = ""
    for which, start, length, filler in pieces:
        secret = secrets[which % len(secrets)]
        text += secret[start : start + length] + filler
    redacted = Redactor(secrets)(text)
    # Masking may join text into a new run only through the mask itself, which holds "*".
    assert not _brute_force_leaks(secrets, redacted.replace(MASK, "\0"))


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=200))
def test_text_without_secret_is_unchanged(text: str) -> None:
    assert Redactor([KEY, OTHER])(text.replace("-", "")) == text.replace("-", "")


def test_a_10kb_error_body_costs_well_under_a_millisecond() -> None:
    secrets = [KEY, OTHER, "x-org-token-0f9e8d7c6b5a", "https://user:pw0rd-long@proxy"]
    redactor = Redactor(secrets)
    body = ('{"error": {"message": "upstream failure", "detail": "' + "lorem ipsum " * 850)[:10_000]
    runs = 200
    started = time.perf_counter()
    for _ in range(runs):
        assert redactor(body) is body
    per_call = (time.perf_counter() - started) / runs
    # Measured about 0.15 ms on a shared 2-core machine; the bound leaves room for noise.
    assert per_call < 0.002, per_call
    leaked = body[:5000] + KEY[4:20] + body[5000:]
    assert KEY[4:20] not in redactor(leaked)


# Every part that scrubs text uses this same rule: each masks an 8-character piece.

PIECE = KEY[6:18]  # 12 characters from the middle of the key, never the whole key


def test_the_cli_output_masks_a_fragment() -> None:
    import io

    from llmroute._cli_out import Out as _Out

    stdout, stderr = io.StringIO(), io.StringIO()
    out = _Out(stdout, stderr)
    out.learn([KEY])
    out.print(f"provider said: key ends {PIECE}")
    out.error(f"llmroute: ProviderError: bad key {KEY[:9]}…")
    out.write(KEY[-8:])
    assert PIECE not in stdout.getvalue() and KEY[-8:] not in stdout.getvalue()
    assert KEY[:9] not in stderr.getvalue()
    assert stdout.getvalue().count(MASK) == 2 and MASK in stderr.getvalue()


async def test_a_cli_provider_masks_a_fragment_of_its_env_key() -> None:
    from collections.abc import AsyncGenerator, Mapping, Sequence

    from llmroute.config import ProviderConfig
    from llmroute.providers._subprocess import RunResult
    from llmroute.providers.base import AttemptFailed, ProviderRequest
    from llmroute.providers.cli import ClaudeCodeProvider

    class EchoingRunner:
        """A CLI that fails, printing a piece of its key to stdout and stderr."""

        async def run(
            self, argv: Sequence[str], *, stdin: bytes, timeout: float, env: Mapping[str, str]
        ) -> RunResult:
            echo = f"invalid x-api-key ...{env['ANTHROPIC_API_KEY'][6:18]}...".encode()
            return RunResult(returncode=1, stdout=echo, stderr_tail=echo)

        def stream(  # pragma: no cover - not called
            self, argv: Sequence[str], *, stdin: bytes, timeout: float, env: Mapping[str, str]
        ) -> AsyncGenerator[bytes | RunResult, None]:
            raise NotImplementedError

    config = ProviderConfig(
        name="claude",
        type="claude_code",
        uses_keys=False,
        command=("claude", "-p", "--output-format", "json"),
        env={"ANTHROPIC_API_KEY": KEY},
    )
    provider = ClaudeCodeProvider(config, runner=EchoingRunner())
    request = ProviderRequest(model="m", messages=[{"role": "user", "content": "hi"}], timeout=5)
    with pytest.raises(AttemptFailed) as info:
        await provider.complete(request, None)
    assert "invalid x-api-key" in info.value.message
    assert PIECE not in str(info.value) and MASK in info.value.message


async def test_the_gemini_provider_masks_a_fragment_of_its_key_and_header() -> None:
    import httpx

    from llmroute.config import ProviderConfig
    from llmroute.providers.base import AttemptFailed, ProviderRequest
    from llmroute.providers.google_ai_studio import GoogleAIStudioProvider
    from llmroute.testing import FakeClock

    header = "org-" + OTHER

    def echo(request: httpx.Request) -> httpx.Response:
        piece = request.headers["x-goog-api-key"][6:18] + " " + request.headers["x-org"][4:14]
        error = {"error": {"code": 400, "message": f"API key not valid: ...{piece}..."}}
        if request.url.path.endswith(":streamGenerateContent"):
            return httpx.Response(200, content=b"data: " + json.dumps(error).encode() + b"\n\n")
        return httpx.Response(400, json=error)

    config = ProviderConfig(
        name="gem",
        type="google_ai_studio",
        base_url="http://127.0.0.1:9/v1beta",
        headers={"x-org": header},
        secrets=frozenset({header}),
    )
    request = ProviderRequest(
        model="gemini-2.5-flash", messages=[{"role": "user", "content": "hi"}]
    )
    async with httpx.AsyncClient(transport=httpx.MockTransport(echo)) as client:
        provider = GoogleAIStudioProvider(config, get_client=lambda: client, clock=FakeClock())
        failures = []
        with pytest.raises(AttemptFailed) as info:
            await provider.complete(request, KEY)
        failures.append(info.value)
        with pytest.raises(AttemptFailed) as info:
            async for _ in provider.stream(request, KEY):
                pass
        failures.append(info.value)
    for failure in failures:
        text = f"{failure} {failure.message} {failure.args}"
        assert PIECE not in text and header[4:14] not in text, text
        assert MASK in failure.message


def test_the_cli_log_lines_mask_a_fragment() -> None:
    import os
    import subprocess
    import sys

    script = (
        "import logging, sys\n"
        "from llmroute._cli_out import Out, setup_logging\n"
        "out = Out(sys.stdout, sys.stderr)\n"
        "setup_logging(2, out)\n"
        "out.learn([sys.argv[1]])\n"
        "logging.getLogger('llmroute.x').debug('provider echoed ...%s...', sys.argv[2])\n"
        "logging.getLogger('httpx').warning('GET http://h/%s/v1', sys.argv[1])\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script, KEY, PIECE],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONWARNINGS": "error"},
        check=True,
    )
    assert "provider echoed ...***..." in run.stderr
    assert "GET http://h/***/v1" in run.stderr
    assert PIECE not in run.stderr and KEY not in run.stderr
