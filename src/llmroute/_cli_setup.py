"""`llmroute init` and `llmroute fake-server`: the commands of a newcomer's first hour."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from llmroute._registry import provider_kind
from llmroute.config import ENV_REFERENCE
from llmroute.testing import fake_wire

__all__ = ["fake_env_lines", "run_fake_server", "run_init"]


class _Printer(Protocol):
    def print(self, text: str = "", *, end: str = "\n") -> None: ...

    def error(self, text: str) -> None: ...


def run_init(directory: Path, *, force: bool, merge: bool, out: _Printer) -> int:
    from llmroute.config import InitError, init_project, merge_project

    try:
        if merge:
            for line in merge_project(directory).lines():
                out.print(line)
            return 0
        written = init_project(directory, force=force)
    except InitError as exc:
        out.error(f"llmroute init: {exc}")
        return 1
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        out.error(f"llmroute init: cannot write{where}: {exc.strerror or exc}")
        return 1
    for rel in written:
        out.print(f"wrote    {directory / rel}")
    out.print()
    out.print("Next: `llmroute check` says which keys to set (copy .env.example to .env),")
    out.print("or `llmroute fake-server` runs everything offline with no key.")
    return 0


def fake_env_lines(providers: Mapping[str, Mapping[str, Any]], base_url: str) -> list[str]:
    """`NAME=value` lines pointing `providers` (as written, before interpolation) at a fake
    server on `base_url`, with a fake value for every key variable. The same lines serve as
    a `.env` file and, after `set -a`, as shell assignments."""
    lines: list[str] = []
    keys: list[str] = []
    for name, raw in providers.items():
        # the wire the provider type speaks, and where the fake serves it
        kind = provider_kind(str(raw.get("type")))
        wire = fake_wire(kind.wire) if kind is not None and kind.wire else None
        if wire is None:
            continue  # CLI agents run a local program, which no fake replaces
        url = base_url + wire.base_path
        match = ENV_REFERENCE.fullmatch(str(raw.get("base_url", "")))
        if match is None:
            lines.append(f"# {name}: its base_url is fixed in the config, so it stays real")
        else:
            lines.append(f"{match.group(1)}={url}")
        listed = raw.get("api_keys")
        values: list[Any] = listed if isinstance(listed, list) else [raw.get("api_key")]
        for value in values:
            keys += [m.group(1) for m in ENV_REFERENCE.finditer(str(value or ""))]
    lines += [f"{var}=fake-{var.lower().replace('_', '-')}" for var in dict.fromkeys(keys)]
    return lines


def run_fake_server(port: int, providers: Mapping[str, Mapping[str, Any]], out: _Printer) -> int:
    try:
        return asyncio.run(_serve(port, providers, out))
    except OSError as exc:
        out.error(
            f"llmroute fake-server: cannot listen on 127.0.0.1:{port} "
            f"({exc.strerror or exc}); pick another port with --port N"
        )
        return 1


async def _serve(port: int, providers: Mapping[str, Mapping[str, Any]], out: _Printer) -> int:
    from llmroute.testing import FakeProviderServer, FakeScript

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    # A server left running all day must not keep every request it answered.
    async with FakeProviderServer(FakeScript(record=False), port=port) as server:
        out.error(
            f"llmroute fake-server: a fake provider is listening on {server.base_url} "
            "(Ctrl-C stops it). It answers every model with a short fake text."
        )
        out.error(
            "Give your code these variables: save the lines below as .env where it runs "
            "(Router() reads it), or export them."
        )
        for line in fake_env_lines(providers, server.base_url):
            out.print(line)
        sys.stdout.flush()
        await stopping.wait()
    out.error("llmroute fake-server: stopped")
    return 0
