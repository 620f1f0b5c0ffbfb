"""What every fault case checks: secrets and their fragments, leaks, and the config."""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from llmroute.testing import FaultServer

#: the shortest fragment of a secret that must never appear
FRAGMENT = 8

# Random, so no 8-character window of one can occur in ordinary text by chance.
SECRET_ENV: dict[str, str] = {
    "FAULT_OAI_KEY": "sk-fault-" + secrets.token_hex(20),
    "FAULT_GEM_KEY_1": "AIza" + secrets.token_hex(18),
    "FAULT_GEM_KEY_2": "AIza" + secrets.token_hex(18),
    "FAULT_ORG_TOKEN": "org-" + secrets.token_hex(16),
    "FAULT_TENANT": "tenant-" + secrets.token_hex(12),
    "FAULT_CLI_KEY": "sk-ant-" + secrets.token_hex(20),
}
SECRETS = tuple(SECRET_ENV.values())

OAI = "oai/m"
GEM = "gem/m"
WIRES = {OAI: "openai", GEM: "gemini"}


def fragments(secret: str) -> Iterable[str]:
    return (secret[i : i + FRAGMENT] for i in range(len(secret) - FRAGMENT + 1))


def leaked(text: str) -> list[str]:
    """Each secret fragment found in `text`, named by its variable (never shown itself)."""
    found = []
    for name, secret in SECRET_ENV.items():
        hits = [f for f in fragments(secret) if f in text]
        if hits:
            whole = secret in text
            found.append(f"{name}: {'whole' if whole else f'{len(hits)} fragment(s)'}")
    return found


def exception_texts(exc: BaseException) -> list[str]:
    """str and repr of an exception, its attempts and every exception in its chain."""
    texts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        texts += [str(current), repr(current), repr(current.args)]
        texts += [repr(a) for a in getattr(current, "attempts", None) or []]
        texts += [repr(n) for n in getattr(current, "not_tried", None) or []]
        current = current.__cause__ or current.__context__
    return texts


def base_url(server: FaultServer, fault: str, wire: str) -> str:
    """The fault's URL with the tenant token (a secret, from `${FAULT_TENANT}`) in its path."""
    url = server.base_url(fault, "openai" if wire == "openai" else "gemini")
    root, version = url.rsplit("/", 1)
    return f"{root}/${{FAULT_TENANT}}/{version}"


def models_config(
    server: FaultServer, fault: str, *, timeout: float = 0.5, retries: int = 1
) -> dict[str, Any]:
    """One OpenAI-compatible and one Gemini provider, both pointed at `fault`, with every
    kind of secret: keys, a header and a base_url part, all from `${VAR}`."""
    headers = {"X-Org-Token": "${FAULT_ORG_TOKEN}"}
    return {
        "providers": {
            "oai": {
                "type": "openai_compatible",
                "base_url": base_url(server, fault, "openai"),
                "api_key": "${FAULT_OAI_KEY}",
                "headers": headers,
                "timeout": timeout,
                "retries": retries,
            },
            "gem": {
                "type": "google_ai_studio",
                "base_url": base_url(server, fault, "gemini"),
                "api_keys": ["${FAULT_GEM_KEY_1}", "${FAULT_GEM_KEY_2}"],
                "headers": headers,
                "timeout": timeout,
                "retries": retries,
            },
        },
        "models": {
            OAI: {"provider": "oai", "model": "m"},
            GEM: {"provider": "gem", "model": "gemini-2.5-flash"},
        },
    }


def set_secret_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    return {**(os.environ if environ is None else environ), **SECRET_ENV}


def child_pids() -> list[int]:
    """Live children of this process (zombies reaped by nobody count too)."""
    pids: list[int] = []
    for task in Path("/proc/self/task").iterdir():
        children = task / "children"
        if children.exists():
            pids += [int(p) for p in children.read_text().split()]
    return pids


async def until(predicate: Any, *, seconds: float = 2.0) -> bool:
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while not predicate():
        if loop.time() > end:
            return False
        await asyncio.sleep(0.01)
    return True
