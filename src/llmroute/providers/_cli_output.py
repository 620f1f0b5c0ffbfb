"""Reading what Claude Code and Codex print: their JSON results and event lines, and what
kind of failure an error text describes. Pure functions of the output; no processes here."""

from __future__ import annotations

import json
import re

from llmroute.providers.base import FailureKind
from llmroute.trace import Usage

JSONObject = dict[str, object]

_RATE_LIMIT = re.compile(
    r"\b429\b|rate[ _-]?limit|usage limit|too many requests|hit your limit", re.IGNORECASE
)
_AUTH_FAILURE = re.compile(
    r"\b40[13]\b|authentication_failed|unauthori[sz]ed|forbidden|not logged in"
    r"|invalid (?:x-)?api[ -]key",
    re.IGNORECASE,
)

_CLAUDE_STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def _json_object(line: bytes | str) -> JSONObject | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def claude_result(stdout: bytes) -> JSONObject | None:
    """The `result` object of a json-mode run, tolerating an array or JSONL around it."""
    text = stdout.decode("utf-8", "replace").strip()
    try:
        document: object = json.loads(text)
    except ValueError:
        document = [_json_object(line) for line in text.splitlines()]
    candidates = document if isinstance(document, list) else [document]
    for candidate in reversed(candidates):
        if isinstance(candidate, dict) and candidate.get("type") == "result":
            return candidate
    return None


def claude_failed(final: JSONObject) -> bool:
    """`is_error` decides; an `error...` subtype counts too, whatever `is_error` says."""
    subtype = final.get("subtype")
    return final.get("is_error") is True or (
        isinstance(subtype, str) and subtype.startswith("error")
    )


def claude_failure(final: JSONObject) -> tuple[FailureKind, str, bool | None]:
    """A failed result's kind, message and retryability (None: the kind's default)."""
    status = int_field(final, "api_error_status")
    detail = _claude_error_text(final)
    prefix = f"API error {status}: " if status is not None else ""
    kind: FailureKind = "client_error"
    retryable: bool | None = None
    if status == 429 or (status is None and _RATE_LIMIT.search(detail)):
        kind = "rate_limited_remote"
    elif status is not None and (status == 529 or 500 <= status < 600):
        kind = "server_error"
    elif status in (401, 403) or _AUTH_FAILURE.search(detail):
        retryable = False
    return kind, prefix + detail, retryable


def _claude_error_text(final: JSONObject) -> str:
    text = final.get("result")
    if isinstance(text, str) and text:
        return text
    errors = final.get("errors")
    if isinstance(errors, list) and errors:
        return "; ".join(str(e) for e in errors)
    return f"failed ({final.get('subtype', 'no subtype')})"


def claude_finish(final: JSONObject) -> str | None:
    reason = final.get("stop_reason")
    if not isinstance(reason, str):
        return None
    return _CLAUDE_STOP_REASONS.get(reason, reason)


def served_model(model_usage: object) -> str | None:
    """The model that did the work: Claude Code may also call a small model on the side."""
    if not isinstance(model_usage, dict) or not model_usage:
        return None
    names = [name for name in model_usage if isinstance(name, str)]

    def tokens(name: str) -> int:
        counts = model_usage[name]
        if not isinstance(counts, dict):
            return 0
        return sum(int_field(counts, field) or 0 for field in ("inputTokens", "outputTokens"))

    return max(names, key=tokens, default=None)


class ClaudeStream:
    """The facts of one `--output-format stream-json` run, fed one stdout line at a time."""

    __slots__ = ("final", "partial", "served", "streamed")

    def __init__(self, *, partial: bool) -> None:
        #: token deltas are coming, so whole assistant messages would repeat them
        self.partial = partial
        self.served: str | None = None
        self.final: JSONObject | None = None
        self.streamed = False

    def feed(self, line: bytes) -> str | None:
        """Take one line; return the answer text it adds, if any."""
        event = _json_object(line)
        if event is None:
            return None
        kind = event.get("type")
        text = ""
        if kind == "stream_event":
            # Deltas may come without the flag in the command (turned on some other way);
            # from then on, whole assistant messages would only repeat them.
            self.partial = True
            text = _delta_text(event.get("event"))
        elif kind == "assistant":
            message = event.get("message")
            self.served = str_field(message, "model") or self.served
            if not self.partial:
                text = _assistant_text(message)
        elif kind == "system" and event.get("subtype") == "init":
            self.served = self.served or str_field(event, "model")
        elif kind == "result":
            self.final = event
        if not text:
            return None
        self.streamed = True
        return text


def _delta_text(event: object) -> str:
    if not isinstance(event, dict) or event.get("type") != "content_block_delta":
        return ""
    return str_field(event.get("delta"), "text") or ""


def _assistant_text(message: object) -> str:
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, list):
        return ""
    return "".join(
        str_field(block, "text") or ""
        for block in content
        if isinstance(block, dict) and block.get("type") == "text"
    )


class CodexTurn:
    """The facts of one `codex exec --json` run, fed one stdout line at a time."""

    __slots__ = ("events", "failed", "last_error", "messages", "usage")

    def __init__(self) -> None:
        self.events: list[JSONObject] = []
        self.messages: list[str] = []
        self.usage: Usage | None = None
        self.failed: str | None = None
        self.last_error: str | None = None

    def feed(self, line: bytes) -> str | None:
        """Take one line; return the text of an agent message it completes."""
        event = _json_object(line)
        if event is None:
            return None
        self.events.append(event)
        kind = event.get("type")
        if kind == "item.completed":
            item = event.get("item")
            text = str_field(item, "text")
            if str_field(item, "type") == "agent_message" and text is not None:
                self.messages.append(text)
                return text
        elif kind == "turn.completed":
            self.usage = usage(event.get("usage"))
        elif kind == "turn.failed":
            self.failed = str_field(event.get("error"), "message") or "no message"
        elif kind == "error":
            self.last_error = str_field(event, "message")
        return None

    def feed_delta(self, line: bytes) -> str | None:
        """`feed`, for a stream: what the line adds to the answer streamed so far."""
        text = self.feed(line)
        if text is None or len(self.messages) == 1:
            return text
        # Separated like paragraphs, so the joined deltas read as one answer.
        return f"\n\n{text}"

    def failure(self, returncode: int, stderr_tail: bytes) -> tuple[FailureKind, str, bool | None]:
        """What went wrong in a failed turn or run: kind, message, retryability."""
        if self.failed is not None:
            detail = f"turn failed: {self.failed}"
        elif self.last_error is not None:
            detail = f"exited with status {returncode}: {self.last_error}"
        else:
            detail = f"exited with status {returncode}"
        # The turn's own message decides when there is one; stderr may hold log lines
        # about retries that recovered.
        evidence = detail
        if self.failed is None:
            evidence += "\n" + stderr_tail.decode("utf-8", "replace")
        if _RATE_LIMIT.search(evidence):
            return "rate_limited_remote", detail, None
        if _AUTH_FAILURE.search(evidence):
            return "client_error", detail, False
        return "server_error", detail, None


def usage(data: object) -> Usage | None:
    prompt, completion = int_field(data, "input_tokens"), int_field(data, "output_tokens")
    if prompt is None or completion is None:
        return None
    return Usage(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
    )


def int_field(data: object, name: str) -> int | None:
    value = data.get(name) if isinstance(data, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def str_field(data: object, name: str) -> str | None:
    value = data.get(name) if isinstance(data, dict) else None
    return value if isinstance(value, str) else None
