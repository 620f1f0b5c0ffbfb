"""A provider type is declared by its own module: type name, adapter, config fields,
capabilities and fake wire; shared code asks the registry and names no provider."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmroute import Router
from llmroute._cli_setup import fake_env_lines
from llmroute._registry import provider_kind, provider_type_names
from llmroute.config import load_config
from llmroute.errors import ConfigError
from llmroute.providers import ProviderKind, register_provider
from llmroute.providers.base import ProviderRequest, ProviderResponse, StreamEvent
from llmroute.testing import (
    FakeClock,
    FakeProviderServer,
    FakeWire,
    Reply,
    RequestFacts,
    register_wire,
)
from llmroute.testing._wire import Rendered

SRC = Path(__file__).resolve().parents[2] / "src" / "llmroute"


class EchoProvider:
    """A provider of a type registered from outside the package: it answers locally."""

    unavailable_reason = None

    def __init__(self, config: Any) -> None:
        self.name = config.name
        self.shout = config.options["shout"]

    async def complete(self, request: ProviderRequest, key: str | None) -> ProviderResponse:
        text = str(request.messages[-1]["content"])
        return ProviderResponse(
            text=text.upper() if self.shout else text, finish_reason="stop", usage=None
        )

    async def stream(self, request: ProviderRequest, key: str | None) -> AsyncIterator[StreamEvent]:
        yield StreamEvent(text=str(request.messages[-1]["content"]))
        yield StreamEvent(finish_reason="stop")

    async def aclose(self) -> None:
        return None


ECHO = ProviderKind(
    name="echo_test", factory=EchoProvider, transport="cli", options={"shout": False}
)


def echo_config(**fields: Any) -> dict[str, Any]:
    return {
        "providers": {"local": {"type": "echo_test", **fields}},
        "models": {"local/echo": {"provider": "local", "model": "echo"}},
    }


async def test_a_registered_type_is_usable_in_models_yaml(tmp_path: Path) -> None:
    register_provider(ECHO)
    register_provider(ECHO)  # the same declaration twice is harmless
    assert "echo_test" in provider_type_names()
    async with Router(echo_config(shout=True), {}, env_file=None, cache_dir=tmp_path) as router:
        answer = await router.complete("local/echo", "hello")
    assert answer.text == "HELLO"
    # a CLI-like type declares no capabilities: requests needing tools skip it
    assert provider_kind("echo_test") is ECHO


def test_a_type_name_cannot_be_taken_twice() -> None:
    register_provider(ECHO)
    with pytest.raises(ValueError, match="already registered"):
        register_provider(ProviderKind(name="echo_test", factory=EchoProvider, transport="cli"))


def test_a_type_fields_are_checked_like_any_other() -> None:
    register_provider(ECHO)
    with pytest.raises(ConfigError, match=r"providers\.local\.shout.*expected bool"):
        load_config(echo_config(shout="yes"), {}, env={})
    with pytest.raises(ConfigError, match=r"providers\.local\.shuot"):
        load_config(echo_config(shuot=True), {}, env={})
    # a field of one type is unknown to another
    wrong = {
        "providers": {"g": {"type": "google_ai_studio", "max_tokens_field": "x"}},
        "models": {"g/m": {"provider": "g", "model": "m"}},
    }
    with pytest.raises(ConfigError, match=r"providers\.g\.max_tokens_field"):
        load_config(wrong, {}, env={})


def test_unknown_type_lists_every_known_one() -> None:
    bad = {
        "providers": {"x": {"type": "openai_compatibel"}},
        "models": {"x/m": {"provider": "x", "model": "m"}},
    }
    with pytest.raises(ConfigError) as info:
        load_config(bad, {}, env={})
    message = str(info.value)
    assert "openai_compatible" in message and "claude_code" in message


async def test_max_tokens_field_is_the_provider_configs_word(tmp_path: Path) -> None:
    bodies: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(
            200, json={"choices": [{"message": {"content": "ok"}, "finish_reason": "stop"}]}
        )

    def provider(**fields: Any) -> dict[str, Any]:
        return {
            "type": "openai_compatible",
            "base_url": "http://wire.test/v1",
            "api_key": "k" * 12,
            **fields,
        }

    models = {
        "providers": {
            "groq": provider(max_tokens_field="max_completion_tokens"),
            "other": provider(),
        },
        "models": {
            "groq/m": {"provider": "groq", "model": "m"},
            "other/m": {"provider": "other", "model": "m"},
        },
    }
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    async with Router(
        models, {}, env_file=None, cache_dir=tmp_path, clock=FakeClock(), http_client=client
    ) as router:
        await router.complete("groq/m", "hi", max_tokens=5)
        await router.complete("other/m", "hi", max_tokens=5)
    await client.aclose()
    assert [("max_completion_tokens" in b, "max_tokens" in b) for b in bodies] == [
        (True, False),
        (False, True),
    ]


def test_shared_code_names_no_provider_and_sniffs_no_host() -> None:
    """Only a provider's own module (and the registry's table of built-in modules) may
    name a provider type or a provider's host."""
    # the registry's table of built-in modules; the demo's and the hints' examples; a
    # docstring example in the key index
    allowed = {"_registry.py", "_demo.py", "_hints.py", "persist.py"}
    offenders = []
    for path in SRC.rglob("*.py"):
        relative = path.relative_to(SRC).as_posix()
        if relative.startswith(("providers/", "testing/")) or path.name in allowed:
            continue
        text = path.read_text(encoding="utf-8")
        for pattern in (
            r"groq\.com",
            r"\"(openai_compatible|google_ai_studio|codex_cli|claude_code)\"",
        ):
            for match in re.finditer(pattern, text):
                line = text.count("\n", 0, match.start()) + 1
                offenders.append(f"{relative}:{line}: {match.group(0)}")
    assert offenders == []


# -- a provider that speaks a wire of its own, and the fake that learns it -------------------


class TinyProvider:
    """`POST {base_url}/ask` with `{"model", "prompt"}`; the answer is `{"answer": text}`."""

    unavailable_reason = None

    def __init__(self, config: Any, *, get_client: Any, clock: Any) -> None:
        self.name = config.name
        self._url = f"{config.base_url}/ask"
        self._get_client = get_client
        self._keys = config.keys

    async def complete(self, request: ProviderRequest, key: str | None) -> ProviderResponse:
        body = {"model": request.model, "prompt": request.messages[-1]["content"]}
        response = await self._get_client().post(
            self._url,
            content=json.dumps(body).encode(),
            headers={"content-type": "application/json", "x-tiny-key": key or ""},
            timeout=request.timeout,
        )
        return ProviderResponse(
            text=json.loads(response.content)["answer"], finish_reason="stop", usage=None
        )

    def stream(self, request: ProviderRequest, key: str | None) -> AsyncIterator[StreamEvent]:
        raise NotImplementedError

    async def aclose(self) -> None:
        return None


def _tiny_read(path: str, query: str, headers: Any, body: object) -> RequestFacts | None:
    if not path.endswith("/tiny/ask"):
        return None
    model = body.get("model") if isinstance(body, dict) else None
    return RequestFacts(key=headers.get("x-tiny-key"), model=model, stream=False)


def _tiny_render(behaviour: Any, **facts: Any) -> Rendered:
    text = behaviour.text if isinstance(behaviour, Reply) and behaviour.text else "tiny"
    body = json.dumps({"answer": text}).encode()
    return Rendered(status=200, headers={"content-type": "application/json"}, body=body)


TINY_WIRE = FakeWire(
    name="tiny",
    base_path="/tiny",
    read=_tiny_read,
    messages=lambda body: [{"role": "user", "content": body.get("prompt")}],  # type: ignore[union-attr]
    tools=lambda body: [],
    prompt_text=lambda body: str(body.get("prompt", "")),
    problem=lambda body: None,
    render=_tiny_render,
)
TINY = ProviderKind(
    name="tiny_test",
    factory=TinyProvider,
    transport="http",
    default_base_url="https://tiny.invalid",
    wire="tiny",
)


async def test_a_new_wire_is_served_by_the_fake_once_registered(tmp_path: Path) -> None:
    register_provider(TINY)
    register_wire(TINY_WIRE)
    raw = {"type": "tiny_test", "base_url": "${TINY_URL}", "api_key": "${TINY_KEY}"}
    lines = fake_env_lines({"tiny": raw}, "http://127.0.0.1:9")
    assert any(line.endswith("TINY_URL=http://127.0.0.1:9/tiny") for line in lines), lines
    async with FakeProviderServer() as server:
        server.script.when(
            lambda r: r.last_message["content"] == "ping", Reply(text="pong"), times=1
        )
        models = {
            "providers": {
                "tiny": {"type": "tiny_test", "base_url": server.url_for("tiny"), "api_key": "t"}
            },
            "models": {"tiny/one": {"provider": "tiny", "model": "one"}},
        }
        async with Router(models, {}, env_file=None, cache_dir=tmp_path) as router:
            assert (await router.complete("tiny/one", "ping")).text == "pong"
            assert (await router.complete("tiny/one", "again")).text == "fake answer from one"
    seen = server.script.requests
    assert [(r.wire, r.model, r.key) for r in seen] == [("tiny", "one", "t")] * 2
