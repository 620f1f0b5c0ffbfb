"""Provider types: what each `type:` of models.yaml is, declared by its own module.

A provider module declares its `ProviderKind`s in a module-level `KINDS` tuple: the type
name, the adapter class, HTTP or CLI, what its models accept beyond text, the config fields
of its own (with their defaults), its default base URL or command, and the fake-provider
wire that speaks it. Shared code (config validation, the router, `llmroute fake-server`)
asks this registry and never names a provider type itself.

The built-in modules are known here by name only and imported when a config first uses
one of their types, so a router that only talks to OpenAI-compatible endpoints never
imports the subprocess machinery. `register_provider` adds a type from outside the package.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

__all__ = ["ProviderKind", "provider_kind", "provider_type_names", "register_provider"]

#: type name -> the module that declares it
_BUILTIN: Final = {
    "openai_compatible": "llmroute.providers.openai_compatible",
    "google_ai_studio": "llmroute.providers.google_ai_studio",
    "codex_cli": "llmroute.providers.cli",
    "claude_code": "llmroute.providers.cli",
}
_KINDS: dict[str, ProviderKind] = {}


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderKind:
    """One provider type."""

    name: str
    #: builds the adapter: `factory(config, get_client=..., clock=...)` for HTTP types,
    #: `factory(config)` for CLI types
    factory: Callable[..., Any]
    transport: Literal["http", "cli"]
    #: what its models accept beyond text when their entry has no `capabilities`
    capabilities: frozenset[str] = frozenset()
    #: fields of this type's own in models.yaml, with their defaults (a str, bool, int or
    #: float default also fixes the type a value must have)
    options: Mapping[str, object] = field(default_factory=dict)
    default_base_url: str | None = None
    default_command: tuple[str, ...] = ()
    #: the wire `llmroute.testing`'s fake provider answers this type on (None: no fake)
    wire: str | None = None
    #: its answers carry rate-limit headers on every answer (learning's cold start waits
    #: for the first one), not only in their 429s
    reports_limits: bool = False


def register_provider(kind: ProviderKind) -> None:
    """Make `kind.name` usable as a `type:` in models.yaml."""
    existing = _KINDS.get(kind.name)
    if existing is not None and existing is not kind:
        raise ValueError(f"provider type {kind.name!r} is already registered")
    _KINDS[kind.name] = kind


def provider_type_names() -> tuple[str, ...]:
    """Every known type name, built-in first."""
    return tuple(dict.fromkeys((*_BUILTIN, *_KINDS)))


def provider_kind(name: str) -> ProviderKind | None:
    """The kind for a type name (importing its module on first use), or None."""
    kind = _KINDS.get(name)
    if kind is not None:
        return kind
    module = _BUILTIN.get(name)
    if module is None:
        return None
    for declared in importlib.import_module(module).KINDS:
        register_provider(declared)
    return _KINDS.get(name)
