"""YAML or mapping -> validated, frozen config objects, in one pass that collects every problem.

`${VAR}` is replaced from the process environment, then from the `.env` file (which never
overrides the process). A value whose variable is unset or empty is treated as absent: the key
disappears, a list entry is dropped. Unknown fields are errors, because a typo must not be
silently ignored.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final, TypeVar, cast

from llmroute.config._schema import (
    DEFAULT_CLI_TIMEOUT,
    DEFAULT_COMPLETION_ESTIMATE,
    DEFAULT_COOLDOWN_SECONDS,
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MAX_WAIT_SECONDS,
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    LimitsConfig,
    LimitSpec,
    ModelConfig,
    ModelsConfig,
    Price,
    ProviderConfig,
    RouterConfig,
    Secret,
    StateConfig,
    Strategy,
)
from llmroute.errors import ConfigError

__all__ = ["ConfigSource", "load_config", "read_env"]

ConfigSource = str | os.PathLike[str] | Mapping[str, Any]

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
_MISSING: Final = object()
_T = TypeVar("_T")

_PROVIDER_TYPES = ("openai_compatible", "google_ai_studio", "codex_cli", "claude_code")
_HTTP_FIELDS = frozenset(
    {
        "type",
        "base_url",
        "api_key",
        "api_keys",
        "timeout",
        "retries",
        "headers",
        "paid",
        "rotation",
        "cooldown_seconds",
    }
)
_CLI_FIELDS = frozenset(
    {"type", "command", "env", "timeout", "retries", "paid", "cooldown_seconds", "max_concurrency"}
)
_DEFAULT_BASE_URLS = {"google_ai_studio": "https://generativelanguage.googleapis.com/v1beta"}
_DEFAULT_COMMANDS = {
    "claude_code": (
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
    "codex_cli": (
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
}
_MODEL_FIELDS = frozenset({"provider", "model", "paid", "context_window", "price", "fallbacks"})
_LIMIT_FIELDS = frozenset({"rpm", "tpm", "rpd", "tpd", "per_key", "on_limit", "max_wait_seconds"})


def read_env(env_file: str | os.PathLike[str] | None) -> dict[str, str]:
    """The process environment over the `.env` file's values (a missing file is fine)."""
    merged: dict[str, str] = {}
    if env_file is not None and Path(env_file).is_file():
        from dotenv import dotenv_values

        merged.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    merged.update(os.environ)
    return merged


def load_config(
    models: ConfigSource,
    limits: ConfigSource | None,
    *,
    env: Mapping[str, str],
) -> RouterConfig:
    """Load and validate both files; raise one `ConfigError` listing every problem."""
    problems = _Problems()
    models_raw = _read(models, "models", problems)
    limits_raw = _read(limits, "limits", problems) if limits is not None else {}
    if problems:
        raise ConfigError(problems.items)
    models_cfg = _ModelsBuilder(problems.scoped(_label(models, "models"))).build(
        _interpolate(models_raw, env)
    )
    limits_cfg = _LimitsBuilder(problems.scoped(_label(limits, "limits")), models_cfg).build(
        _interpolate(limits_raw, env) if limits is not None else {}
    )
    if problems:
        raise ConfigError(problems.items)
    return RouterConfig(models=models_cfg, limits=limits_cfg)


def _label(source: ConfigSource | None, name: str) -> str:
    if source is None or isinstance(source, Mapping):
        return name
    return os.fspath(source)


def _read(source: ConfigSource, name: str, problems: _Problems) -> Any:
    if isinstance(source, Mapping):
        return source
    path = os.fspath(source)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        problems.add(f"{path}: file not found")
        return None
    except (OSError, UnicodeDecodeError) as exc:
        problems.add(f"{path}: cannot read ({type(exc).__name__}: {exc})")
        return None
    import yaml  # only files need it; a mapping config never does

    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problems.add(f"{path}: {where}YAML syntax error: {exc.problem or exc}")
        return None
    except yaml.YAMLError as exc:
        problems.add(f"{path}: YAML error: {exc}")
        return None
    return {} if data is None else data


def _interpolate(value: Any, env: Mapping[str, str]) -> Any:
    if isinstance(value, str):
        if "${" not in value:
            return value
        missing = False

        def substitute(match: re.Match[str]) -> str:
            nonlocal missing
            found = env.get(match.group(1), "")
            if not found:
                missing = True
            return found

        result = _VAR.sub(substitute, value)
        return _MISSING if missing else result
    if isinstance(value, Mapping):
        out: dict[Any, Any] = {}
        for k, v in value.items():
            new = _interpolate(v, env)
            if new is not _MISSING:
                out[k] = new
        return out
    if isinstance(value, list | tuple):
        return [x for x in (_interpolate(v, env) for v in value) if x is not _MISSING]
    return value


class _Problems:
    def __init__(self, items: list[str] | None = None, prefix: str = "") -> None:
        self.items: list[str] = [] if items is None else items
        self.prefix = prefix

    def scoped(self, prefix: str) -> _Problems:
        return _Problems(self.items, prefix)

    def add(self, message: str) -> None:
        self.items.append(f"{self.prefix}: {message}" if self.prefix else message)

    def __bool__(self) -> bool:
        return bool(self.items)


class _Checker:
    """Field readers that record a problem and return a default instead of raising."""

    def __init__(self, problems: _Problems) -> None:
        self.problems = problems

    def fail(self, path: str, message: str) -> None:
        self.problems.add(f"{path}: {message}")

    def mapping(self, value: Any, path: str) -> Mapping[str, Any]:
        if isinstance(value, Mapping):
            return value
        if value is not None:
            self.fail(path, f"expected a mapping, got {_kind(value)}")
        return {}

    def fields(self, value: Mapping[str, Any], allowed: frozenset[str], path: str) -> None:
        for key in value:
            if key not in allowed:
                self.fail(f"{path}.{key}", f"unknown field (allowed: {', '.join(sorted(allowed))})")

    def typed(
        self,
        raw: Mapping[str, Any],
        key: str,
        path: str,
        check: Callable[[Any], bool],
        want: str,
        default: _T,
    ) -> _T:
        if key not in raw or raw[key] is None:
            return default
        value = raw[key]
        if not check(value):
            self.fail(f"{path}.{key}", f"expected {want}, got {value!r}")
            return default
        return cast(_T, value)

    def number(
        self, raw: Mapping[str, Any], key: str, path: str, default: _T, *, positive: bool = False
    ) -> float | _T:
        def ok(v: Any) -> bool:
            return _is_number(v) and (v > 0 if positive else v >= 0)

        want = "a positive number" if positive else "a non-negative number"
        value: Any = self.typed(raw, key, path, ok, want, default)
        return float(value) if _is_number(value) else value  # type: ignore[no-any-return,unused-ignore]

    def integer(
        self, raw: Mapping[str, Any], key: str, path: str, default: _T, *, positive: bool = False
    ) -> int | _T:
        def ok(v: Any) -> bool:
            return (
                isinstance(v, int) and not isinstance(v, bool) and (v > 0 if positive else v >= 0)
            )

        want = "a positive integer" if positive else "a non-negative integer"
        return self.typed(raw, key, path, ok, want, default)

    def boolean(self, raw: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
        return self.typed(raw, key, path, lambda v: isinstance(v, bool), "true or false", default)

    def choice(
        self, raw: Mapping[str, Any], key: str, path: str, options: tuple[str, ...], default: _T
    ) -> str | _T:
        return self.typed(
            raw, key, path, lambda v: v in options, "one of " + ", ".join(options), default
        )

    def strings(self, raw: Mapping[str, Any], key: str, path: str) -> list[str]:
        value = raw.get(key)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            self.fail(f"{path}.{key}", "expected a list of strings")
            return []
        return list(value)

    def string_map(self, raw: Mapping[str, Any], key: str, path: str) -> dict[str, str]:
        value = self.mapping(raw.get(key), f"{path}.{key}")
        out: dict[str, str] = {}
        for k, v in value.items():
            if isinstance(v, bool) or not isinstance(v, str | int | float):
                self.fail(f"{path}.{key}.{k}", f"expected a string, got {_kind(v)}")
            else:
                out[str(k)] = str(v)
        return out


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and v == v


def _kind(value: Any) -> str:
    names: dict[type, str] = {dict: "a mapping", list: "a list", str: "a string"}
    return names.get(type(value), type(value).__name__)


class _ModelsBuilder(_Checker):
    def build(self, raw: Any) -> ModelsConfig:
        top = self.mapping(raw, "(top level)") if raw is not None else {}
        self.fields(top, frozenset({"providers", "models", "routes"}), "(top level)")
        providers = {
            str(name): cfg
            for name, body in self.mapping(top.get("providers"), "providers").items()
            if (cfg := self._provider(str(name), body)) is not None
        }
        raw_models = self.mapping(top.get("models"), "models")
        raw_routes = self.mapping(top.get("routes"), "routes")
        if not raw_models:
            self.fail("models", "no models defined")
        for name in raw_routes:
            if name in raw_models:
                self.fail(f"routes.{name}", "a route cannot have the name of a model id")
        route_lists = {str(n): self.strings(raw_routes, n, "routes") for n in raw_routes}
        for name, entries in route_lists.items():
            if not entries and raw_routes.get(name) is not None:
                self.fail(f"routes.{name}", "a route needs at least one entry")
        expander = _ChainExpander(self, set(raw_models), route_lists)
        routes = {name: expander.route(name) for name in route_lists}
        models: dict[str, ModelConfig] = {}
        for model_id, body in raw_models.items():
            model = self._model(str(model_id), body, providers, expander)
            if model is not None:
                models[model.id] = model
        return ModelsConfig(providers=providers, models=models, routes=routes)

    def _provider(self, name: str, body: Any) -> ProviderConfig | None:
        path = f"providers.{name}"
        raw = self.mapping(body, path)
        kind = raw.get("type")
        if kind is None:
            self.fail(f"{path}.type", f"missing (one of {', '.join(_PROVIDER_TYPES)})")
            return None
        if kind not in _PROVIDER_TYPES:
            self.fail(
                f"{path}.type",
                f"unknown provider type {kind!r} (one of {', '.join(_PROVIDER_TYPES)})",
            )
            return None
        is_cli = kind in ("codex_cli", "claude_code")
        self.fields(raw, _CLI_FIELDS if is_cli else _HTTP_FIELDS, path)
        keys: list[Secret] = []
        base_url: str | None = None
        command: tuple[str, ...] = ()
        if is_cli:
            command = tuple(self.strings(raw, "command", path)) or _DEFAULT_COMMANDS[kind]
        else:
            base_url = self.typed(
                raw,
                "base_url",
                path,
                lambda v: isinstance(v, str) and bool(v),
                "a URL string",
                _DEFAULT_BASE_URLS.get(kind),
            )
            if base_url is None:
                self.fail(f"{path}.base_url", "missing")
            else:
                base_url = base_url.rstrip("/")
            if "api_key" in raw and "api_keys" in raw:
                self.fail(path, "give api_key or api_keys, not both")
            single = self.typed(raw, "api_key", path, lambda v: isinstance(v, str), "a string", "")
            listed = self.strings(raw, "api_keys", path)
            keys = [Secret(k) for k in ([single] if single else listed) if k]
        rotation = self.mapping(raw.get("rotation"), f"{path}.rotation")
        self.fields(rotation, frozenset({"strategy"}), f"{path}.rotation")
        return ProviderConfig(
            name=name,
            type=kind,
            base_url=base_url,
            keys=tuple(keys),
            uses_keys=not is_cli,
            timeout=self.number(
                raw,
                "timeout",
                path,
                DEFAULT_CLI_TIMEOUT if is_cli else DEFAULT_TIMEOUT,
                positive=True,
            ),
            retries=self.integer(raw, "retries", path, DEFAULT_RETRIES),
            headers=self.string_map(raw, "headers", path),
            paid=self.boolean(raw, "paid", path, False),
            rotation=self.choice(  # type: ignore[arg-type]
                rotation,
                "strategy",
                f"{path}.rotation",
                ("round_robin", "failover"),
                "round_robin",
            ),
            cooldown_seconds=self.number(raw, "cooldown_seconds", path, DEFAULT_COOLDOWN_SECONDS),
            command=command,
            env=self.string_map(raw, "env", path),
            max_concurrency=self.integer(
                raw, "max_concurrency", path, DEFAULT_MAX_CONCURRENCY, positive=True
            ),
        )

    def _model(
        self,
        model_id: str,
        body: Any,
        providers: Mapping[str, ProviderConfig],
        expander: _ChainExpander,
    ) -> ModelConfig | None:
        path = f"models.{model_id}"
        raw = self.mapping(body, path)
        self.fields(raw, _MODEL_FIELDS, path)
        provider_name = raw.get("provider")
        if not isinstance(provider_name, str):
            self.fail(f"{path}.provider", "missing" if provider_name is None else "expected a name")
            return None
        provider = providers.get(provider_name)
        if provider is None:
            self.fail(f"{path}.provider", f"unknown provider {provider_name!r}")
            return None
        prefix = provider_name + "/"
        default_wire = model_id[len(prefix) :] if model_id.startswith(prefix) else model_id
        price_raw = self.mapping(raw.get("price"), f"{path}.price")
        self.fields(price_raw, frozenset({"input_per_mtok", "output_per_mtok"}), f"{path}.price")
        price = (
            Price(
                input_per_mtok=self.number(price_raw, "input_per_mtok", f"{path}.price", 0.0),
                output_per_mtok=self.number(price_raw, "output_per_mtok", f"{path}.price", 0.0),
            )
            if price_raw
            else None
        )
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
            price=price,
            fallbacks=tuple(f for f in fallbacks if f != model_id),
        )


class _ChainExpander:
    """Expands route names inside chains, once, with cycle detection."""

    def __init__(self, checker: _Checker, model_ids: set[str], routes: Mapping[str, list[str]]):
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
                self.checker.fail(f"{path}[{i}]", f"unknown model or route {entry!r}")
                continue
            out.extend(e for e in expanded if e not in out)
        return tuple(out)


class _LimitsBuilder(_Checker):
    def __init__(self, problems: _Problems, models: ModelsConfig) -> None:
        super().__init__(problems)
        self.models = models

    def build(self, raw: Any) -> LimitsConfig:
        top = self.mapping(raw, "(top level)")
        self.fields(
            top,
            frozenset(
                {
                    "defaults",
                    "strategy",
                    "completion_estimate",
                    "state",
                    "learn_from_headers",
                    "models",
                }
            ),
            "(top level)",
        )
        strategy_raw = self.mapping(top.get("strategy"), "strategy")
        self.fields(
            strategy_raw,
            frozenset({"on_limit", "max_wait_seconds", "max_attempts", "deadline_seconds"}),
            "strategy",
        )
        strategy = Strategy(
            on_limit=self.choice(  # type: ignore[arg-type]
                strategy_raw, "on_limit", "strategy", ("sleep", "fallback"), "sleep"
            ),
            max_wait_seconds=self.number(
                strategy_raw, "max_wait_seconds", "strategy", DEFAULT_MAX_WAIT_SECONDS
            ),
            max_attempts=self.integer(
                strategy_raw, "max_attempts", "strategy", DEFAULT_MAX_ATTEMPTS, positive=True
            ),
            deadline_seconds=self.number(
                strategy_raw, "deadline_seconds", "strategy", None, positive=True
            ),
        )
        state_raw = self.mapping(top.get("state"), "state")
        self.fields(state_raw, frozenset({"backend", "url", "path", "prefix"}), "state")
        backend = self.choice(
            state_raw, "backend", "state", ("memory", "sqlite", "redis"), "memory"
        )
        url = self.typed(state_raw, "url", "state", lambda v: isinstance(v, str), "a string", "")
        if backend == "redis" and not url:
            self.fail("state.url", "the redis backend needs a url (is REDIS_URL set?)")
        state_path = self.typed(
            state_raw,
            "path",
            "state",
            lambda v: isinstance(v, str) and bool(v),
            "a file path",
            None,
        )
        prefix = self.typed(
            state_raw,
            "prefix",
            "state",
            lambda v: isinstance(v, str) and bool(v),
            "a string",
            "llmroute",
        )
        models: dict[str, LimitSpec] = {}
        for model_id, body in self.mapping(top.get("models"), "models").items():
            path = f"models.{model_id}"
            model = self.models.models.get(str(model_id))
            if model is None:
                self.fail(path, "no such model in the models config")
                continue
            spec = self._spec(body, path)
            provider = self.models.providers.get(model.provider)
            if spec.per_key and provider is not None and not provider.uses_keys:
                self.fail(f"{path}.per_key", f"provider {provider.name!r} has no API keys")
            models[str(model_id)] = spec
        return LimitsConfig(
            defaults=self._spec(top.get("defaults"), "defaults"),
            strategy=strategy,
            completion_estimate=self.integer(
                top, "completion_estimate", "(top level)", DEFAULT_COMPLETION_ESTIMATE
            ),
            state=StateConfig(
                backend=backend,  # type: ignore[arg-type]
                url=Secret(url) if url else None,
                path=state_path,
                prefix=prefix,
            ),
            learn_from_headers=self.boolean(top, "learn_from_headers", "(top level)", True),
            models=models,
        )

    def _spec(self, body: Any, path: str) -> LimitSpec:
        raw = self.mapping(body, path)
        self.fields(raw, _LIMIT_FIELDS, path)
        return LimitSpec(
            rpm=self.integer(raw, "rpm", path, None),
            tpm=self.integer(raw, "tpm", path, None),
            rpd=self.integer(raw, "rpd", path, None),
            tpd=self.integer(raw, "tpd", path, None),
            per_key=self.boolean(raw, "per_key", path, False),
            on_limit=self.choice(  # type: ignore[arg-type]
                raw, "on_limit", path, ("sleep", "fallback"), None
            ),
            max_wait_seconds=self.number(raw, "max_wait_seconds", path, None),
        )
