"""What the fake providers answer: behaviours, and the script that queues them.

A `FakeScript` holds queues of behaviours per provider model name (and optionally per API
key) and records every request it sees. `FakeScript.handle` turns one raw HTTP request into
a `Rendered` answer in the real wire format of the OpenAI-compatible providers (Groq,
Together, OpenRouter) or of Gemini; the rendering itself lives in `_wire`. Both fakes
(`FakeTransport`, `FakeProviderServer`) only move those bytes. Nothing in this module does
I/O or reads a clock.

    script = FakeScript()
    script.script("llama-3.1-8b-instant", RateLimit(retry_after=6), Reply(text="Paris."))
    script.script("gemini-2.5-flash", InvalidKey(), key="bad-key")
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias
from urllib.parse import unquote

from llmroute.testing._wires import _GEMINI_PATH, _OPENAI_SUFFIX, fake_wire, match_wire
from llmroute.trace import ToolCall

if TYPE_CHECKING:
    from llmroute.testing._wire import Rendered

__all__ = [
    "Behaviour",
    "Blocked",
    "FakeScript",
    "Garbage",
    "InvalidKey",
    "Predicate",
    "RateLimit",
    "RecordedRequest",
    "Reply",
    "ServerError",
    "Status",
    "Stream",
    "Timeout",
    "Wire",
    "estimate_tokens",
]

#: a wire the fakes speak: "openai", "gemini", or one registered with `register_wire`
Wire = str

# Kept importable from here for the other fakes that route by the same paths.
__all__ += ["_GEMINI_PATH", "_OPENAI_SUFFIX"]


def estimate_tokens(text: str) -> int:
    """A rough token count (about four characters a token), what the fakes report by default."""
    return (len(text) + 3) // 4


def _as_calls(calls: Sequence[object]) -> tuple[ToolCall, ...]:
    """`ToolCall`s, or the same calls written as the OpenAI shape
    (`{"id", "type", "function": {"name", "arguments"}}`) or flat (`{"id", "name",
    "arguments"}`); arguments given as an object are written as JSON."""
    out: list[ToolCall] = []
    for index, call in enumerate(calls):
        if isinstance(call, ToolCall):
            out.append(call)
            continue
        if not isinstance(call, Mapping):
            raise TypeError(f"tool_calls[{index}]: expected a ToolCall or a mapping")
        function = call.get("function")
        fields = function if isinstance(function, Mapping) else call
        arguments = fields.get("arguments", "{}")
        out.append(
            ToolCall(
                str(call.get("id", f"call_{index}")),
                str(fields["name"]),
                arguments if isinstance(arguments, str) else json.dumps(arguments),
            )
        )
    return tuple(out)


@dataclass(frozen=True, slots=True, kw_only=True)
class Reply:
    """A successful answer with `text` and/or `tool_calls`.

    `text` defaults to "ok", or to "" when the reply calls tools. Each `ToolCall` goes out
    in the wire's own form (OpenAI `tool_calls`; Gemini `functionCall` parts, with the id
    only when it is not empty and the call's `thought_signature` beside it), and a reply
    with calls finishes as `tool_calls` (Gemini: `STOP`). For a JSON answer, put the JSON
    text in `text` (`Reply(text=json.dumps(value))`).

    Token counts default to `estimate_tokens` of the prompt and of `text`; `usage=False`
    leaves usage out of the answer. `latency` is seconds before the answer starts. A
    streamed request gets it as a one-chunk stream (the calls whole, in one delta).
    """

    text: str | None = None
    tool_calls: Sequence[ToolCall | Mapping[str, Any]] = ()
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    #: OpenAI spelling (`stop`, `length`, `content_filter`); Gemini gets `STOP`, `MAX_TOKENS`, ...
    finish_reason: str | None = "stop"
    latency: float = 0.0
    usage: bool = True

    def __post_init__(self) -> None:
        # A list is the natural thing to pass; keep the reply hashable and immutable.
        object.__setattr__(self, "tool_calls", _as_calls(self.tool_calls))


@dataclass(frozen=True, slots=True, kw_only=True)
class Stream:
    """A successful streamed answer sent as `chunks`, `delay` seconds apart.

    `fail_after=n` sends the first n chunks, then breaks the connection without a finish
    reason or `[DONE]`. A non-streamed request gets the joined text as one answer (after
    the whole stream's time); with `fail_after` its body is cut off the same way.
    """

    chunks: tuple[str, ...] = ("Par", "is.")
    #: sent after the text, as the wire streams them: OpenAI in fragments (id and name
    #: first, then the arguments `fragment` characters at a time; 0 sends each call whole
    #: in one delta, as Groq does), Gemini one whole call per event
    tool_calls: Sequence[ToolCall | Mapping[str, Any]] = ()
    fragment: int = 8
    delay: float = 0.0
    fail_after: int | None = None
    usage: bool = True
    finish_reason: str | None = "stop"
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    #: seconds before the response headers
    latency: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "tool_calls", _as_calls(self.tool_calls))


@dataclass(frozen=True, slots=True, kw_only=True)
class RateLimit:
    """HTTP 429.

    OpenAI wire: a Groq-style error body naming RPM (RPD when `per_day`). Gemini wire:
    RESOURCE_EXHAUSTED with a QuotaFailure per minute (per day when `per_day`), and a
    RetryInfo `retryDelay` when `retry_delay` is given. Both wires send a `Retry-After`
    header when `retry_after` is given (a number in seconds, or a string sent verbatim,
    e.g. an HTTP date).
    """

    retry_after: float | str | None = None
    retry_delay: float | None = None
    per_day: bool = False
    latency: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerError:
    """A 5xx error in the wire's error envelope, with `Retry-After` when `retry_after` is set."""

    status: int = 500
    retry_after: float | str | None = None
    latency: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class InvalidKey:
    """The key is refused: 401 on the OpenAI wire, 400 API_KEY_INVALID on Gemini."""

    latency: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Status:
    """Any other answer: `status`, `body` as given (a dict is sent as JSON) and `headers`."""

    status: int
    body: bytes | str | Mapping[str, object] = b""
    headers: Mapping[str, str] = field(default_factory=dict)
    latency: float = 0.0


@dataclass(frozen=True, slots=True)
class Timeout:
    """No answer at all.

    The server holds the request until the client gives up; the transport waits the
    request's read timeout on its clock, then raises `httpx.ReadTimeout`.
    """


@dataclass(frozen=True, slots=True, kw_only=True)
class Garbage:
    """HTTP 200 whose body is not JSON (a stream gets one SSE event that is not JSON)."""

    body: bytes = b"<!doctype html><title>upstream</title><p>not json"
    latency: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Blocked:
    """A refused prompt: Gemini's 200 with `promptFeedback.blockReason` SAFETY; OpenAI 400."""

    latency: float = 0.0


Behaviour: TypeAlias = (
    Reply | Stream | RateLimit | ServerError | InvalidKey | Status | Timeout | Garbage | Blocked
)
_BEHAVIOURS = (Reply, Stream, RateLimit, ServerError, InvalidKey, Status, Timeout, Garbage, Blocked)


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordedRequest:
    """One request a fake received, as the provider would have seen it."""

    wire: Wire
    #: the provider's model name: `model` of the body (OpenAI) or of the path (Gemini)
    model: str
    #: the bearer token or the `x-goog-api-key` value; None when absent
    key: str | None
    stream: bool
    #: the URL path, without the query
    path: str
    #: the raw query string (`alt=sse` for Gemini streams)
    query: str
    #: lower-cased names; repeated headers joined with ", "
    headers: dict[str, str]
    #: the parsed JSON body, None when it was not JSON
    body: object

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The conversation as OpenAI-shaped messages, whichever wire carried it (a Gemini
        body read back: `functionCall` parts as `tool_calls`, `functionResponse` parts as
        `tool` messages, `inlineData` as a data-URL image part)."""
        wire = fake_wire(self.wire)
        return wire.messages(self.body) if wire is not None else []

    @property
    def tools(self) -> list[str]:
        """The names of the functions the request declared."""
        wire = fake_wire(self.wire)
        return wire.tools(self.body) if wire is not None else []

    @property
    def last_message(self) -> dict[str, Any]:
        """The last message of the conversation ({} for an empty one)."""
        messages = self.messages
        return messages[-1] if messages else {}


#: chooses an answer by looking at the request
Predicate = Callable[[RecordedRequest], bool]


@dataclass(slots=True)
class _Rule:
    predicate: Predicate
    behaviour: Behaviour
    #: answers left; None for every matching request
    times: int | None


class FakeScript:
    """Scripted answers per provider model name and API key, and a record of every request.

    `script(model, *behaviours, key=None)` queues behaviours; each request takes the next one.
    Lookup order: the queue for (model, key), for the model, for the key (model None), for
    everything (both None); then the defaults set with `set_default` in the same order; then
    `Reply(text=f"fake answer from {model}")`. Meant for one event loop: no locks.
    `record=False` keeps `requests` empty, for long benchmark runs.

        script = FakeScript()
        script.script("gemini-2.5-flash", RateLimit(retry_delay=37), key="key-1")
        script.set_default("llama-3.1-8b-instant", Stream(chunks=("a", "b"), delay=0.01))
        ...
        assert [r.key for r in script.requests] == ["key-1", "key-2"]
    """

    def __init__(self, *, record: bool = True) -> None:
        self._queues: dict[tuple[str | None, str | None], deque[Behaviour]] = {}
        self._defaults: dict[tuple[str | None, str | None], Behaviour] = {}
        self._rules: list[_Rule] = []
        self._record = record
        self._answered = 0
        #: every request received, oldest first
        self.requests: list[RecordedRequest] = []

    def script(
        self, model: str | Predicate | None, *behaviours: Behaviour, key: str | None = None
    ) -> None:
        """Queue `behaviours` for the wire model name `model` (None: any model), optionally
        only for requests made with API key `key`. Given a predicate instead of a model
        name, the behaviours answer the next requests it accepts, one each, in order (see
        `when`)."""
        for behaviour in behaviours:
            _check_behaviour(behaviour)
        if callable(model):
            if key is not None:
                raise TypeError("key: a predicate can look at request.key itself")
            for behaviour in behaviours:
                self._rules.append(_Rule(model, behaviour, 1))
            return
        self._queues.setdefault((model, key), deque()).extend(behaviours)

    def set_default(
        self, model: str | Predicate | None, behaviour: Behaviour, key: str | None = None
    ) -> None:
        """Answer with `behaviour` whenever the queues for `model` (None: any model) are
        empty; given a predicate, every request it accepts (as `when`)."""
        _check_behaviour(behaviour)
        if callable(model):
            if key is not None:
                raise TypeError("key: a predicate can look at request.key itself")
            self._rules.append(_Rule(model, behaviour, None))
            return
        self._defaults[(model, key)] = behaviour

    def when(self, predicate: Predicate, behaviour: Behaviour, *, times: int | None = None) -> None:
        """Answer with `behaviour` every request for which `predicate(request)` is true (the
        next `times` ones only, when given). Rules are asked in the order they were added,
        before any queue; the request is a `RecordedRequest` (`messages`, `tools`,
        `stream`, `model`, `key`, `body`).

            script.when(lambda r: r.last_message.get("role") == "tool", Reply(text="18 C"))
            script.when(lambda r: "get_weather" in r.tools, Reply(tool_calls=[call]))
        """
        _check_behaviour(behaviour)
        if times is not None and times < 1:
            raise ValueError("times: at least 1, or None for every matching request")
        self._rules.append(_Rule(predicate, behaviour, times))

    def _by_rule(self, request: RecordedRequest) -> Behaviour | None:
        for rule in self._rules:
            if rule.times == 0 or not rule.predicate(request):
                continue
            if rule.times is not None:
                rule.times -= 1
            return rule.behaviour
        return None

    def next_behaviour(self, model: str, key: str | None) -> Behaviour:
        """Take the behaviour that answers the next request for `model` made with `key`."""
        slots = _lookup_order(model, key)
        for slot in slots:
            queue = self._queues.get(slot)
            if queue:
                return queue.popleft()
        for slot in slots:
            default = self._defaults.get(slot)
            if default is not None:
                return default
        return Reply(text=f"fake answer from {model}")

    def pending(self) -> int:
        """How many queued behaviours no request has taken yet (answers given to a
        predicate with a count included)."""
        queued = sum(len(queue) for queue in self._queues.values())
        return queued + sum(rule.times or 0 for rule in self._rules)

    def handle(
        self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes
    ) -> Rendered:
        """Answer one raw HTTP request: route it by path, record it, render its behaviour.

        `.../chat/completions` is the OpenAI wire, `.../models/{model}:generateContent` and
        `:streamGenerateContent` the Gemini wire; anything else is a 404.
        """
        # deferred: `_wire` imports the behaviours from this module
        from llmroute.testing._wire import _error

        path = unquote(path)
        lowered = {name.lower(): value for name, value in headers.items()}
        parsed = _parse_json(body)
        matched = match_wire(path, query, lowered, parsed)
        if matched is None:
            return _error(404, "openai", f"Unknown request URL: {method} {path}", "not_found")
        wire, facts = matched
        if method.upper() != "POST":
            message = f"Method {method} not allowed on {path}"
            return _error(405, wire.name, message, "method_not_allowed")
        key, model, stream = facts.key, facts.model, facts.stream
        self._answered += 1
        recorded: RecordedRequest | None = None
        if self._record or self._rules:
            recorded = RecordedRequest(
                wire=wire.name,
                model=model if isinstance(model, str) else "",
                key=key,
                stream=stream,
                path=path,
                query=query,
                headers=lowered,
                body=parsed,
            )
            if self._record:
                self.requests.append(recorded)
        if not isinstance(parsed, dict):
            return _error(400, wire.name, "The request body is not a JSON object.", "invalid_json")
        if not isinstance(model, str) or not model:
            return _error(400, wire.name, "The request names no model.", "model_missing")
        problem = wire.problem(parsed)
        if problem is not None:
            return _error(400, wire.name, problem, "invalid_request")
        behaviour = self._by_rule(recorded) if self._rules and recorded is not None else None
        return wire.render(
            behaviour or self.next_behaviour(model, key),
            wire=wire.name,
            model=model,
            stream=stream,
            prompt_text=wire.prompt_text(parsed),
            include_usage=facts.include_usage,
            sse=facts.sse,
            response_id=f"fake{self._answered:06d}",
        )

    def __repr__(self) -> str:
        return f"FakeScript(pending={self.pending()}, requests={len(self.requests)})"


def _check_behaviour(behaviour: object) -> None:
    if not isinstance(behaviour, _BEHAVIOURS):
        # catches `Reply` passed instead of `Reply()`, which would fail far from the mistake
        raise TypeError(f"not a fake-provider behaviour: {behaviour!r}")


def _lookup_order(model: str, key: str | None) -> list[tuple[str | None, str | None]]:
    slots: list[tuple[str | None, str | None]] = [(model, key), (model, None)]
    slots += [(None, key), (None, None)]
    # without a key, (model, None) and (None, None) would each be tried twice
    return list(dict.fromkeys(slots))


def _parse_json(body: bytes) -> object:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None


def _prompt_text(wire: Wire, body: dict[str, Any]) -> str:
    """The prompt's text of a body on `wire` (for the token counts the fakes report)."""
    spec = fake_wire(wire)
    return spec.prompt_text(body) if spec is not None else ""
