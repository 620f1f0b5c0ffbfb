"""Claude Code (`claude -p`) and Codex (`codex exec`) as models behind the `Provider` protocol.

Each attempt runs the configured command once, with `{model}` replaced by the request's
model, the conversation flattened to one prompt on stdin, and `request.timeout` as the wall
clock (waiting for a concurrency slot included). The process machinery lives in
`_subprocess` and reading the CLIs' output in `_cli_output`; this module builds the
invocation and turns what the run gave into a response, stream events or a failure.

How an attempt ends (docs/providers.md sections 6, 7 and 7.6):

    Claude `is_error: true` (whatever `subtype` says), by `api_error_status`:
        429, or a usage-limit message          rate_limited_remote
        529, 5xx                               server_error (retryable)
        401, 403, authentication failures      client_error, not retryable
        anything else                          client_error
    Codex `turn.failed`, or a non-zero exit, by message text:
        429 / rate limit / usage limit / Too Many Requests   rate_limited_remote
        401, 403, not logged in                              client_error, not retryable
        anything else                                        server_error (retryable)
    Either CLI:
        wall clock ran out (group killed)      timeout
        crash, unparsable or missing result    server_error (retryable)
        executable cannot be started           transport_error, not retryable

A top-level Codex `error` line is not a failure by itself: Codex prints one for a retry
that may still succeed. Messages carry the end of stderr with every `env:` value and every
secret-looking environment variable removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from typing import ClassVar

from llmroute._redact import Redactor
from llmroute._registry import ProviderKind
from llmroute.providers._cli_output import (
    ClaudeStream,
    CodexTurn,
    JSONObject,
    claude_failed,
    claude_failure,
    claude_finish,
    claude_result,
    served_model,
    str_field,
    usage,
)
from llmroute.providers._subprocess import Runner, RunResult, SubprocessRunner
from llmroute.providers.base import (
    AttemptFailed,
    FailureKind,
    Message,
    ProviderRequest,
    ProviderResponse,
    ProviderSettings,
    StreamEvent,
    message_text,
)

__all__ = ["KINDS", "ClaudeCodeProvider", "CodexCliProvider", "flatten_messages"]

logger = logging.getLogger(__name__)

#: characters of stderr (and of an error text) kept in a failure message
MESSAGE_TAIL_CHARS = 500

_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD", re.IGNORECASE)

_ROLE_LABELS = {"system": "System", "user": "User", "assistant": "Assistant"}


def flatten_messages(messages: Sequence[Message]) -> str:
    """The conversation as one prompt: system messages first, each turn labelled by role.

    A lone user message is sent as it is: a plain prompt needs no role label.

    >>> flatten_messages([{"role": "user", "content": "Hi"}, {"role": "system", "content": "Hush"}])
    'System: Hush\\n\\nUser: Hi'
    """
    if len(messages) == 1 and messages[0].get("role") == "user":
        return message_text(messages[0].get("content"))
    system = [m for m in messages if m.get("role") == "system"]
    rest = [m for m in messages if m.get("role") != "system"]
    parts = []
    for message in (*system, *rest):
        role = message.get("role", "user")
        label = _ROLE_LABELS.get(role, role.capitalize())
        parts.append(f"{label}: {message_text(message.get('content'))}")
    return "\n\n".join(parts)


class _CliProvider:
    """What both CLIs share: invocation, concurrency slots, failures and scrubbing."""

    #: the CLI's name in messages
    _cli: ClassVar[str]

    def __init__(self, config: ProviderSettings, *, runner: Runner | None = None) -> None:
        self.name = config.name
        self._command = tuple(config.command)
        self._env = dict(config.env)
        self._runner: Runner = runner if runner is not None else SubprocessRunner()
        self._slots = asyncio.Semaphore(max(1, config.max_concurrency))
        #: why this provider cannot run (no command, executable not on PATH), or None.
        #: Decided once here; the router skips the provider's models while it is set.
        self.unavailable_reason: str | None = _unavailable_reason(self._command)
        # Its own env values (keys the child needs), the config's `${VAR}` values and the
        # process's secret-looking variables: the CLI may echo any of them.
        self._redact = Redactor(
            {
                *self._env.values(),
                *getattr(config, "secrets", ()),
                *(value for name, value in os.environ.items() if _SECRET_NAME.search(name)),
            }
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"

    async def aclose(self) -> None:
        """Nothing to release: no process outlives the call that started it."""

    def _argv(self, request: ProviderRequest) -> tuple[str, ...]:
        return tuple(part.replace("{model}", request.model) for part in self._command)

    @contextlib.asynccontextmanager
    async def _slot(self, request: ProviderRequest) -> AsyncIterator[float]:
        """Hold one of `max_concurrency` slots; yields the seconds left of the timeout."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            async with asyncio.timeout(request.timeout):
                await self._slots.acquire()
        except TimeoutError:
            raise self._failure(
                "timeout", request, f"no free slot within {request.timeout:g}s", reached=False
            ) from None
        try:
            yield max(0.0, request.timeout - (loop.time() - started))
        finally:
            self._slots.release()

    async def _run(self, request: ProviderRequest) -> RunResult:
        argv = self._argv(request)
        stdin = flatten_messages(request.messages).encode()
        async with self._slot(request) as remaining:
            try:
                result = await self._runner.run(argv, stdin=stdin, timeout=remaining, env=self._env)
            except OSError as exc:
                raise self._start_failure(request, argv, exc) from exc
        logger.debug(
            "%s: %s exited %d after %.2fs", self.name, self._cli, result.returncode, result.duration
        )
        return result

    def _lines(
        self, request: ProviderRequest, remaining: float
    ) -> AsyncGenerator[bytes | RunResult, None]:
        return self._runner.stream(
            self._argv(request),
            stdin=flatten_messages(request.messages).encode(),
            timeout=remaining,
            env=self._env,
        )

    async def _relay(
        self,
        request: ProviderRequest,
        feed: Callable[[bytes], str | None],
        finish: Callable[[RunResult], StreamEvent],
    ) -> AsyncGenerator[StreamEvent, None]:
        """Run the CLI for a stream: each stdout line goes to `feed`, the text it returns
        becomes an event, and once the process has ended cleanly `finish` gives the last."""
        ended: RunResult | None = None
        async with (
            self._slot(request) as remaining,
            contextlib.aclosing(self._lines(request, remaining)) as lines,
        ):
            try:
                async for item in lines:
                    if isinstance(item, RunResult):
                        ended = item
                        break
                    text = feed(item)
                    if text is not None:
                        yield StreamEvent(text=text)
            except OSError as exc:
                raise self._start_failure(request, self._argv(request), exc) from exc
        if ended is None:
            raise self._failure("server_error", request, "runner ended without an exit status")
        self._check_ended(request, ended)
        yield finish(ended)

    def _start_failure(
        self, request: ProviderRequest, argv: Sequence[str], exc: OSError
    ) -> AttemptFailed:
        reason = exc.strerror or type(exc).__name__
        return self._failure(
            "transport_error",
            request,
            f"cannot start {argv[0]!r}: {reason}",
            retryable=False,
            reached=False,
        )

    def _check_ended(self, request: ProviderRequest, result: RunResult) -> None:
        """Raise for a run that the runner had to kill."""
        if result.timed_out:
            raise self._failure(
                "timeout",
                request,
                f"no answer within {request.timeout:g}s, process group killed",
                result=result,
            )
        if result.stdout_overflow:
            raise self._failure(
                "server_error", request, "output too large, process group killed", result=result
            )

    def _failure(
        self,
        kind: FailureKind,
        request: ProviderRequest,
        detail: str,
        *,
        result: RunResult | None = None,
        retryable: bool | None = None,
        reached: bool = True,
    ) -> AttemptFailed:
        detail = _clip_head(self._redact(detail))
        message = f"{self.name} ({request.model}): {self._cli} {detail}"
        if result is not None:
            # Scrubbed before clipping, so no secret is cut into an unrecognisable piece.
            tail = self._redact(result.stderr_tail.decode("utf-8", "replace")).strip()
            if tail:
                clipped = tail[-MESSAGE_TAIL_CHARS:]
                message += f"; stderr: {'...' if len(clipped) < len(tail) else ''}{clipped}"
        return AttemptFailed(kind, message, retryable=retryable, reached=reached)


class ClaudeCodeProvider(_CliProvider):
    """Claude Code in print mode (`claude -p --output-format json`) as a provider.

    `config.command` is the argv template; with `--output-format stream-json --verbose` in
    it, `stream()` yields text as it arrives (token deltas with
    `--include-partial-messages`), otherwise the whole answer comes as one event.
    `runner` replaces the real subprocess runner (tests script the CLI with it).

        from llmroute.config import ProviderConfig

        provider = ClaudeCodeProvider(ProviderConfig(
            name="claude", type="claude_code", uses_keys=False,
            command=("claude", "-p", "--output-format", "json", "--model", "{model}")))
    """

    _cli = "claude"

    async def complete(self, request: ProviderRequest, key: str | None) -> ProviderResponse:
        """Run the CLI once and read its JSON result. Raises `AttemptFailed`."""
        result = await self._run(request)
        self._check_ended(request, result)
        final = claude_result(result.stdout)
        if final is None:
            raise self._no_result(request, result)
        self._raise_if_failed(request, final, result)
        text = final.get("result")
        if not isinstance(text, str):
            raise self._failure("server_error", request, "result has no text", result=result)
        return ProviderResponse(
            text=text,
            finish_reason=claude_finish(final),
            usage=usage(final.get("usage")),
            served_model=served_model(final.get("modelUsage")),
            raw=final,
        )

    def stream(
        self, request: ProviderRequest, key: str | None
    ) -> AsyncGenerator[StreamEvent, None]:
        """Yield text as the CLI prints it, then one event with finish reason and usage."""
        if not _is_stream_json(self._command):
            return self._whole_answer(request, key)
        reading = ClaudeStream(partial="--include-partial-messages" in self._command)
        return self._relay(
            request, reading.feed, lambda ended: self._last_event(request, reading, ended)
        )

    async def _whole_answer(
        self, request: ProviderRequest, key: str | None
    ) -> AsyncGenerator[StreamEvent, None]:
        """The answer as one event, for a command whose output is not a stream of events."""
        response = await self.complete(request, key)
        yield StreamEvent(
            text=response.text,
            finish_reason=response.finish_reason,
            usage=response.usage,
            served_model=response.served_model,
        )

    def _last_event(
        self, request: ProviderRequest, reading: ClaudeStream, ended: RunResult
    ) -> StreamEvent:
        final = reading.final
        if final is None:
            raise self._no_result(request, ended)
        self._raise_if_failed(request, final, ended)
        # The final result is the authoritative text; it only fills in for a run that
        # streamed none (an answer without text blocks).
        fill_in = str_field(final, "result") if not reading.streamed else None
        return StreamEvent(
            text=fill_in or "",
            finish_reason=claude_finish(final),
            usage=usage(final.get("usage")),
            served_model=served_model(final.get("modelUsage")) or reading.served,
        )

    def _no_result(self, request: ProviderRequest, result: RunResult) -> AttemptFailed:
        if result.returncode != 0:
            detail = f"exited with status {result.returncode} without a result"
        else:
            detail = "printed no JSON result (unparsable output)"
        return self._failure("server_error", request, detail, result=result)

    def _raise_if_failed(
        self, request: ProviderRequest, final: JSONObject, result: RunResult
    ) -> None:
        if claude_failed(final):
            kind, detail, retryable = claude_failure(final)
            raise self._failure(kind, request, detail, result=result, retryable=retryable)
        if result.returncode != 0:
            raise self._failure(
                "server_error",
                request,
                f"exited with status {result.returncode} after reporting success",
                result=result,
            )


class CodexCliProvider(_CliProvider):
    """OpenAI Codex (`codex exec --json ... -`) as a provider.

    The answer is the last `agent_message`; usage comes from `turn.completed`. `stream()`
    yields each agent message as it completes (Codex prints no token deltas), then one
    event with the usage. `runner` replaces the real subprocess runner.

        from llmroute.config import ProviderConfig

        provider = CodexCliProvider(ProviderConfig(
            name="codex", type="codex_cli", uses_keys=False, timeout=300,
            command=("codex", "exec", "--json", "--skip-git-repo-check", "-m", "{model}", "-")))
    """

    _cli = "codex"

    async def complete(self, request: ProviderRequest, key: str | None) -> ProviderResponse:
        """Run the CLI once and read its JSONL events. Raises `AttemptFailed`."""
        result = await self._run(request)
        self._check_ended(request, result)
        turn = CodexTurn()
        for line in result.stdout.splitlines():
            turn.feed(line)
        self._raise_if_failed(request, turn, result)
        return ProviderResponse(
            text=turn.messages[-1],
            finish_reason="stop",
            usage=turn.usage,
            served_model=None,
            raw=turn.events,
        )

    def stream(
        self, request: ProviderRequest, key: str | None
    ) -> AsyncGenerator[StreamEvent, None]:
        """Yield each agent message as Codex completes it, then one event with the usage."""
        turn = CodexTurn()
        return self._relay(
            request, turn.feed_delta, lambda ended: self._last_event(request, turn, ended)
        )

    def _last_event(
        self, request: ProviderRequest, turn: CodexTurn, ended: RunResult
    ) -> StreamEvent:
        self._raise_if_failed(request, turn, ended)
        return StreamEvent(finish_reason="stop", usage=turn.usage)

    def _raise_if_failed(
        self, request: ProviderRequest, turn: CodexTurn, result: RunResult
    ) -> None:
        if turn.failed is not None or result.returncode != 0:
            kind, detail, retryable = turn.failure(result.returncode, result.stderr_tail)
            raise self._failure(kind, request, detail, result=result, retryable=retryable)
        if not turn.messages:
            detail = "printed no agent message" if turn.events else "printed no JSON events"
            raise self._failure("server_error", request, detail, result=result)


def _unavailable_reason(command: Sequence[str]) -> str | None:
    if not command or not command[0]:
        return "no command configured"
    if shutil.which(command[0]) is None:
        return f"executable {command[0]!r} not found on PATH"
    return None


def _is_stream_json(command: Sequence[str]) -> bool:
    return "stream-json" in command or "--output-format=stream-json" in command


def _clip_head(text: str) -> str:
    text = text.strip()
    if len(text) <= MESSAGE_TAIL_CHARS:
        return text
    return text[:MESSAGE_TAIL_CHARS] + "..."


# The prompt goes on stdin, which is then closed (docs/providers.md sections 6 and 7). CLI
# models take text only: tools, images and response formats are skipped to other models.
KINDS = (
    ProviderKind(
        name="claude_code",
        factory=ClaudeCodeProvider,
        transport="cli",
        default_command=(
            "claude",
            "-p",
            "--output-format",
            "json",
            "--tools",
            "",
            "--no-session-persistence",
            "--model",
            "{model}",
        ),
    ),
    ProviderKind(
        name="codex_cli",
        factory=CodexCliProvider,
        transport="cli",
        default_command=(
            "codex",
            "exec",
            "--json",
            "--skip-git-repo-check",
            "--ephemeral",
            "-c",
            "features.plugins=false",
            "--model",
            "{model}",
            "-",
        ),
    ),
)
