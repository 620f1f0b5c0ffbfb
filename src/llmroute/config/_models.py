"""models.yaml, parsed: providers, models and routes, with every problem recorded."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from llmroute._hints import did_you_mean
from llmroute._registry import ProviderKind, provider_kind, provider_type_names
from llmroute.config._checker import Checker, kind, present
from llmroute.config._env import Interpolated
from llmroute.config._schema import (
    CAPABILITIES,
    DEFAULT_CLI_TIMEOUT,
    DEFAULT_COOLDOWN_SECONDS,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    ModelConfig,
    ModelsConfig,
    Price,
    ProviderConfig,
    Secret,
)

__all__ = ["MODEL_FIELDS", "ChainExpander", "ModelsBuilder"]

_COMMON_FIELDS = frozenset({"type", "timeout", "retries", "paid", "cooldown_seconds"})
_HTTP_FIELDS = _COMMON_FIELDS | {"base_url", "api_key", "api_keys", "headers", "rotation"}
_CLI_FIELDS = _COMMON_FIELDS | {"command", "env", "max_concurrency"}
MODEL_FIELDS = frozenset(
    {
        "provider",
        "model",
        "paid",
        "context_window",
        "price",
        "fallbacks",
        "capabilities",
        "retired",
    }
)


class ModelsBuilder(Checker):
    def build(self, raw: Any) -> ModelsConfig:
        top = self.mapping(raw, "(top level)")
        self.fields(top, ("providers", "models", "routes"), "(top level)")
        providers = self._providers(self.mapping(top.get("providers"), "providers"))
        raw_models = self.mapping(top.get("models"), "models")
        if not raw_models:
            self.fail("models", "no models defined")
        route_lists = self._route_lists(self.mapping(top.get("routes"), "routes"), raw_models)
        expander = ChainExpander(self, {str(m) for m in raw_models}, route_lists)
        routes = {name: expander.route(name) for name in route_lists}
        models: dict[str, ModelConfig] = {}
        for model_id, body in raw_models.items():
            model = self._model(str(model_id), body, providers, expander)
            if model is not None:
                models[model.id] = model
        secrets = frozenset(s for p in providers.values() for s in p.secrets)
        return ModelsConfig(providers=providers, models=models, routes=routes, secrets=secrets)

    def _providers(self, raw: Mapping[str, Any]) -> dict[str, ProviderConfig]:
        providers: dict[str, ProviderConfig] = {}
        for name, body in raw.items():
            provider = self._provider(str(name), body)
            if provider is not None:
                providers[provider.name] = provider
        # a model of a provider that is itself broken gets no second, misleading problem
        self.broken = {str(n) for n in raw} - set(providers)
        return providers

    def _route_lists(
        self, raw_routes: Mapping[str, Any], raw_models: Mapping[str, Any]
    ) -> dict[str, list[str]]:
        for name in raw_routes:
            if name in raw_models:
                self.fail(f"routes.{name}", "a route cannot have the name of a model id")
        route_lists = {str(n): self.strings(raw_routes, n, "routes") for n in raw_routes}
        for name, entries in route_lists.items():
            if not entries and present(raw_routes.get(name)):
                self.fail(f"routes.{name}", "a route needs at least one entry")
        return route_lists

    def _provider(self, name: str, body: Any) -> ProviderConfig | None:
        path = f"providers.{name}"
        raw = self.mapping(body, path)
        kind_ = raw.get("type")
        # Each provider type is declared by its own module (llmroute._registry).
        types = provider_type_names()
        if not present(kind_):
            self.required(raw, "type", path, "one of " + ", ".join(types))
            return None
        provider_type = provider_kind(kind_) if isinstance(kind_, str) else None
        if provider_type is None:
            hint = did_you_mean(str(kind_), types)
            self.fail(
                f"{path}.type",
                f"unknown provider type {kind_!r}{hint} (one of {', '.join(types)})",
            )
            return None
        is_cli = provider_type.transport == "cli"
        self.fields(
            raw, (_CLI_FIELDS if is_cli else _HTTP_FIELDS) | set(provider_type.options), path
        )
        common: dict[str, Any] = {
            "name": name,
            "type": kind_,
            "uses_keys": not is_cli,
            "timeout": self.number(
                raw,
                "timeout",
                path,
                DEFAULT_CLI_TIMEOUT if is_cli else DEFAULT_TIMEOUT,
                positive=True,
            ),
            "retries": self.integer(raw, "retries", path, DEFAULT_RETRIES),
            "paid": self.boolean(raw, "paid", path, False),
            "cooldown_seconds": self.number(
                raw, "cooldown_seconds", path, DEFAULT_COOLDOWN_SECONDS
            ),
        }
        extra = (
            self._cli(raw, path, provider_type) if is_cli else self._http(raw, path, provider_type)
        )
        return ProviderConfig(**common, **extra, options=self._options(raw, path, provider_type))

    def _options(
        self, raw: Mapping[str, Any], path: str, provider_type: ProviderKind
    ) -> dict[str, object]:
        """The type's own fields; a value must have the type of the field's default."""
        options: dict[str, object] = {}
        for name, default in provider_type.options.items():
            value = raw.get(name, default)
            if present(raw.get(name)) and type(value) is not type(default):
                self.fail(
                    f"{path}.{name}",
                    f"expected {type(default).__name__}, got {kind(raw.get(name))}",
                )
                value = default
            options[name] = value
        return options

    def _http(
        self, raw: Mapping[str, Any], path: str, provider_type: ProviderKind
    ) -> dict[str, Any]:
        base_url = self.typed(
            raw,
            "base_url",
            path,
            lambda v: isinstance(v, str) and bool(v),
            "a URL string",
            provider_type.default_base_url,
        )
        if base_url is None:
            self.required(raw, "base_url", path, "the API's URL")
        if present(raw.get("api_key")) and present(raw.get("api_keys")):
            self.fail(path, "give api_key or api_keys, not both")
        single = self.typed(raw, "api_key", path, lambda v: isinstance(v, str), "a string", "")
        listed = self.strings(raw, "api_keys", path)
        keys = [k for k in ([single] if single else listed) if k]
        headers = self.string_map(raw, "headers", path)
        rotation = self.mapping(raw.get("rotation"), f"{path}.rotation")
        self.fields(rotation, ("strategy",), f"{path}.rotation")
        secrets = set(keys)
        for value in (base_url, *headers.values()):
            if isinstance(value, Interpolated):
                secrets.update(value.pieces)
        return {
            "base_url": base_url.rstrip("/") if base_url else None,
            "keys": tuple(Secret(k) for k in keys),
            "headers": {k: str(v) for k, v in headers.items()},
            "rotation": self.choice(
                rotation,
                "strategy",
                f"{path}.rotation",
                ("round_robin", "failover"),
                "round_robin",
            ),
            "secrets": frozenset(
                {*secrets, base_url.rstrip("/")} if isinstance(base_url, Interpolated) else secrets
            ),
        }

    def _cli(
        self, raw: Mapping[str, Any], path: str, provider_type: ProviderKind
    ) -> dict[str, Any]:
        command = tuple(self.strings(raw, "command", path)) or provider_type.default_command
        env = self.string_map(raw, "env", path)
        # a token passed on the command line is as secret as one in the environment
        secrets = {
            p for v in (*env.values(), *command) if isinstance(v, Interpolated) for p in v.pieces
        }
        return {
            "command": command,
            "env": {k: str(v) for k, v in env.items()},
            "max_concurrency": self.integer(
                raw, "max_concurrency", path, DEFAULT_MAX_CONCURRENCY, positive=True
            ),
            "secrets": frozenset(secrets),
        }

    def _model(
        self,
        model_id: str,
        body: Any,
        providers: Mapping[str, ProviderConfig],
        expander: ChainExpander,
    ) -> ModelConfig | None:
        path = f"models.{model_id}"
        raw = self.mapping(body, path)
        self.fields(raw, MODEL_FIELDS, path)
        provider_name = raw.get("provider")
        if not isinstance(provider_name, str):
            if present(provider_name):
                self.fail(
                    f"{path}.provider", f"expected a provider name, got {kind(provider_name)}"
                )
            else:
                self.required(raw, "provider", path, "the name of a provider")
            return None
        provider = providers.get(provider_name)
        if provider is None and provider_name in self.broken:
            return None
        if provider is None:
            hint = did_you_mean(provider_name, providers)
            self.fail(f"{path}.provider", f"unknown provider {provider_name!r}{hint}")
            return None
        prefix = provider_name + "/"
        default_wire = model_id[len(prefix) :] if model_id.startswith(prefix) else model_id
        fallbacks = expander.chain(self.strings(raw, "fallbacks", path), f"{path}.fallbacks")
        return ModelConfig(
            id=model_id,
            provider=provider_name,
            model=self.typed(
                raw,
                "model",
                path,
                lambda v: isinstance(v, str) and bool(v),
                "a string",
                default_wire,
            ),
            paid=self.boolean(raw, "paid", path, provider.paid),
            context_window=self.integer(raw, "context_window", path, None, positive=True),
            price=self._price(raw, path),
            fallbacks=tuple(f for f in fallbacks if f != model_id),
            capabilities=self._capabilities(raw, path),
            retired=self._retired(raw, path),
        )

    def _price(self, raw: Mapping[str, Any], path: str) -> Price | None:
        price_raw = self.mapping(raw.get("price"), f"{path}.price")
        self.fields(price_raw, ("input_per_mtok", "output_per_mtok"), f"{path}.price")
        if not price_raw:
            return None
        where = f"{path}.price"
        return Price(
            input_per_mtok=self.number(price_raw, "input_per_mtok", where, 0.0, seconds=False),
            output_per_mtok=self.number(price_raw, "output_per_mtok", where, 0.0, seconds=False),
        )

    def _capabilities(self, raw: Mapping[str, Any], path: str) -> frozenset[str] | None:
        if not present(raw.get("capabilities")):
            return None
        found: set[str] = set()
        for i, name in enumerate(self.strings(raw, "capabilities", path)):
            if name in CAPABILITIES:
                found.add(name)
            else:
                hint = did_you_mean(name, CAPABILITIES)
                self.fail(
                    f"{path}.capabilities[{i}]",
                    f"unknown capability {name!r}{hint} (one of {', '.join(CAPABILITIES)})",
                )
        return frozenset(found)

    def _retired(self, raw: Mapping[str, Any], path: str) -> str | None:
        value = raw.get("retired")
        if not present(value) or value is False:
            return None
        if value is True:
            return "retired"
        if isinstance(value, _dt.date):
            return value.isoformat()
        if isinstance(value, str) and value:
            return value
        self.fail(f"{path}.retired", f"expected a date or a note, got {kind(value)}")
        return None


class ChainExpander:
    """Expands route names inside chains, once, with cycle detection."""

    def __init__(self, checker: Checker, model_ids: set[str], routes: Mapping[str, list[str]]):
        self.checker = checker
        self.model_ids = model_ids
        self.routes = routes
        self.done: dict[str, tuple[str, ...]] = {}
        self.active: list[str] = []

    def route(self, name: str) -> tuple[str, ...]:
        if name in self.done:
            return self.done[name]
        if name in self.active:
            cycle = " -> ".join([*self.active[self.active.index(name) :], name])
            self.checker.fail(f"routes.{name}", f"routes refer to each other in a cycle: {cycle}")
            return ()
        with self._visiting(name):
            result = self.chain(self.routes[name], f"routes.{name}")
        self.done[name] = result
        return result

    @contextmanager
    def _visiting(self, name: str) -> Iterator[None]:
        self.active.append(name)
        try:
            yield
        finally:
            self.active.pop()

    def chain(self, entries: list[str], path: str) -> tuple[str, ...]:
        out: list[str] = []
        for i, entry in enumerate(entries):
            if entry in self.model_ids:
                expanded: tuple[str, ...] = (entry,)
            elif entry in self.routes:
                expanded = self.route(entry)
            else:
                hint = did_you_mean(entry, [*self.model_ids, *self.routes])
                self.checker.fail(f"{path}[{i}]", f"unknown model or route {entry!r}{hint}")
                continue
            out.extend(e for e in expanded if e not in out)
        return tuple(out)
