"""A broken stream falls back before its first chunk and raises after it; errors name the
budget that ended a call and the candidates never tried; keywords cannot reroute a call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from llmroute import Router
from llmroute.errors import RoutingError, StreamInterruptedError
from llmroute.testing import FaultServer

FULL_TEXT = "The quick brown fox jumps over the lazy dog."
WIRE_TYPES = {"openai": "openai_compatible", "gemini": "google_ai_studio"}


def chain_config(server: FaultServer, wire: str, faults: list[str]) -> dict[str, Any]:
    """One provider per fault on `wire`, and a route `chain` through them in order."""
    providers: dict[str, Any] = {}
    models: dict[str, Any] = {}
    for i, fault in enumerate(faults):
        name = f"p{i}"
        providers[name] = {
            "type": WIRE_TYPES[wire],
            "base_url": server.base_url(fault, "openai" if wire == "openai" else "gemini"),
            "api_key": f"sk-chain-{i}-0123456789abcdef",
            "retries": 0,
            "timeout": 5,
        }
        models[f"{name}/m"] = {"provider": name, "model": "m"}
    return {"providers": providers, "models": models, "routes": {"chain": list(models)}}


def router_for(server: FaultServer, wire: str, faults: list[str], tmp_path: Path) -> Router:
    return Router(chain_config(server, wire, faults), {}, env_file=None, cache_dir=tmp_path)


@pytest.mark.parametrize("wire", ["openai", "gemini"])
@pytest.mark.parametrize("fault", ["malformed_json", "html_200", "reset", "truncated_body"])
async def test_a_stream_broken_before_its_first_chunk_falls_back(
    wire: str, fault: str, tmp_path: Path
) -> None:
    async with FaultServer() as server, router_for(server, wire, [fault, "ok"], tmp_path) as r:
        chunks = [chunk async for chunk in r.stream("chain", "hi")]
    assert "".join(c.text for c in chunks) == FULL_TEXT
    attempts = chunks[-1].attempts or []
    assert [a.model for a in attempts] == ["p0/m", "p1/m"]
    assert attempts[0].outcome != "ok"
    assert attempts[1].outcome == "ok"


@pytest.mark.parametrize("wire", ["openai", "gemini"])
@pytest.mark.parametrize(("fault", "delivered"), [("malformed_chunk", 10), ("cut_stream", 20)])
async def test_a_stream_broken_after_its_first_chunk_raises(
    wire: str, fault: str, delivered: int, tmp_path: Path
) -> None:
    texts: list[str] = []
    async with FaultServer() as server, router_for(server, wire, [fault, "ok"], tmp_path) as r:
        with pytest.raises(StreamInterruptedError) as caught:
            async for chunk in r.stream("chain", "hi"):
                texts.append(chunk.text)
        assert server.requests_for("ok") == []  # no fallback once text was handed over
    assert caught.value.delivered_chars == delivered == len("".join(texts))


@pytest.mark.parametrize("wire", ["openai", "gemini"])
@pytest.mark.parametrize("fault", ["malformed_json", "malformed_chunk", "cut_stream", "html_200"])
async def test_a_broken_complete_falls_back(wire: str, fault: str, tmp_path: Path) -> None:
    async with FaultServer() as server, router_for(server, wire, [fault, "ok"], tmp_path) as r:
        completion = await r.complete("chain", "hi")
    assert completion.text == FULL_TEXT
    assert [a.outcome == "ok" for a in completion.attempts] == [False, True]


async def test_max_attempts_names_the_budget_and_the_candidates_never_tried(
    tmp_path: Path,
) -> None:
    async with FaultServer() as server:
        config = chain_config(server, "openai", ["reset", "ok", "ok"])
        limits = {"strategy": {"max_attempts": 1}}
        async with Router(config, limits, env_file=None, cache_dir=tmp_path) as router:
            with pytest.raises(RoutingError) as caught:
                await router.complete("chain", "hi")
    assert "max_attempts" in str(caught.value)
    assert list(caught.value.not_tried) == ["p1/m", "p2/m"]
    assert len(server.requests) == 1


async def test_the_deadline_names_itself_and_the_candidates_never_tried(tmp_path: Path) -> None:
    async with FaultServer() as server:
        config = chain_config(server, "gemini", ["hang", "ok"])
        async with Router(config, {}, env_file=None, cache_dir=tmp_path) as router:
            with pytest.raises(RoutingError) as caught:
                await router.complete("chain", "hi", deadline=0.3)
    assert "deadline" in str(caught.value)
    assert list(caught.value.not_tried) == ["p1/m"]
    assert server.requests_for("ok") == []


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"model": "other"}, TypeError),
        ({"max_tokns": 5}, TypeError),
        ({"extra_body": {"model": "other"}}, ValueError),
        ({"extra_body": {"messages": []}}, ValueError),
        ({"extra_body": {"contents": []}}, ValueError),
        ({"extra_body": {"stream": True}}, ValueError),
    ],
)
async def test_keywords_cannot_reroute_or_slip_through(
    kwargs: dict[str, Any], error: type[Exception], tmp_path: Path
) -> None:
    async with FaultServer() as server:
        config = chain_config(server, "openai", ["ok"])
        async with Router(config, {}, env_file=None, cache_dir=tmp_path) as router:
            with pytest.raises(error):
                await router.complete("p0/m", "hi", **kwargs)
            with pytest.raises(error):
                async for _ in router.stream("p0/m", "hi", **kwargs):
                    pass  # pragma: no cover
    assert server.requests == []
