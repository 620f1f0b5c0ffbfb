"""Frozen configuration objects: the only form of config the rest of the code sees."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "CAPABILITIES",
    "DEFAULT_COMPLETION_ESTIMATE",
    "DEFAULT_COOLDOWN_SECONDS",
    "DEFAULT_MAX_ATTEMPTS",
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_MAX_WAIT_SECONDS",
    "DEFAULT_RETRIES",
    "DEFAULT_STATE_PREFIX",
    "DEFAULT_TIMEOUT",
    "LimitSpec",
    "LimitsConfig",
    "ModelConfig",
    "ModelsConfig",
    "OnLimit",
    "Price",
    "ProviderConfig",
    "ProviderType",
    "RouterConfig",
    "Secret",
    "StateBackend",
    "StateConfig",
    "Strategy",
]

#: a provider type name, as its module registered it (llmroute._registry)
ProviderType = str
OnLimit = Literal["sleep", "fallback"]
RotationStrategy = Literal["round_robin", "failover"]

DEFAULT_TIMEOUT = 60.0
DEFAULT_CLI_TIMEOUT = 300.0
DEFAULT_RETRIES = 2
DEFAULT_COOLDOWN_SECONDS = 60.0
DEFAULT_MAX_CONCURRENCY = 2
DEFAULT_MAX_WAIT_SECONDS = 10.0
DEFAULT_MAX_ATTEMPTS = 8
DEFAULT_COMPLETION_ESTIMATE = 256
MASK = "***"
#: what a model may accept beyond text (`capabilities:` in models.yaml)
CAPABILITIES = ("json", "tools", "vision")


class Secret:
    """A credential whose repr and str never show it; `.reveal()` is the one way out."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderConfig:
    name: str
    type: ProviderType
    base_url: str | None = None
    #: usable keys in slot order (`{name}#{i}`), empty entries already dropped
    keys: tuple[Secret, ...] = ()
    #: True when the provider takes keys at all (HTTP types); False for CLIs
    uses_keys: bool = True
    timeout: float = DEFAULT_TIMEOUT
    retries: int = DEFAULT_RETRIES
    headers: Mapping[str, str] = field(default_factory=dict)
    paid: bool = False
    rotation: RotationStrategy = "round_robin"
    cooldown_seconds: float = DEFAULT_COOLDOWN_SECONDS
    #: CLI providers: argv template (`{model}` substituted) and extra child environment
    command: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    #: the fields of the provider's own type (its registered `options`), defaults filled in
    options: Mapping[str, object] = field(default_factory=dict)
    #: the keys and every `${VAR}` value interpolated into headers, env or base_url
    secrets: frozenset[str] = field(default=frozenset(), repr=False, compare=False)

    def __repr__(self) -> str:
        # Header and env values may carry credentials: only their names are shown.
        base_url = MASK if self.base_url in self.secrets else self.base_url
        command = tuple(
            MASK if any(s and s in arg for s in self.secrets) else arg for arg in self.command
        )
        return (
            f"ProviderConfig(name={self.name!r}, type={self.type!r}, base_url={base_url!r}, "
            f"keys={len(self.keys)}, headers={_masked(self.headers)}, "
            f"env={_masked(self.env)}, command={command!r}, paid={self.paid!r})"
        )


def _masked(values: Mapping[str, str]) -> dict[str, str]:
    return dict.fromkeys(values, MASK)


@dataclass(frozen=True, slots=True, kw_only=True)
class Price:
    input_per_mtok: float = 0.0
    output_per_mtok: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelConfig:
    id: str
    provider: str
    #: the provider's own name for the model
    model: str
    paid: bool = False
    context_window: int | None = None
    price: Price | None = None
    #: resolved chain entries (model ids), route names already expanded
    fallbacks: tuple[str, ...] = ()
    #: what the model accepts beyond text (`tools`, `vision`, `json`); None: what its
    #: provider type supports
    capabilities: frozenset[str] | None = None
    #: the catalogue's note that the provider retired the model (still callable), else None
    retired: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelsConfig:
    providers: Mapping[str, ProviderConfig]
    models: Mapping[str, ModelConfig]
    #: route name -> model ids, nested route names already expanded
    routes: Mapping[str, tuple[str, ...]]
    #: every secret the providers hold (keys, `${VAR}` values in headers, env, base_url),
    #: for the one Redactor
    secrets: frozenset[str] = field(default=frozenset(), repr=False, compare=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class LimitSpec:
    rpm: int | None = None
    tpm: int | None = None
    rpd: int | None = None
    tpd: int | None = None
    per_key: bool = False
    on_limit: OnLimit | None = None
    max_wait_seconds: float | None = None

    @property
    def is_unlimited(self) -> bool:
        return self.rpm is None and self.tpm is None and self.rpd is None and self.tpd is None


@dataclass(frozen=True, slots=True, kw_only=True)
class Strategy:
    on_limit: OnLimit = "sleep"
    max_wait_seconds: float = DEFAULT_MAX_WAIT_SECONDS
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    deadline_seconds: float | None = None


StateBackend = Literal["memory", "sqlite", "redis"]
DEFAULT_STATE_PREFIX = "llmroute"


@dataclass(frozen=True, slots=True, kw_only=True)
class StateConfig:
    backend: StateBackend = "memory"
    #: redis: the server URL (may carry a password)
    url: Secret | None = None
    #: sqlite: the database file; None: `{cache_dir}/llmroute.sqlite3`
    path: str | None = None
    #: redis: the prefix of every key, so routers that must not share state can share a server
    prefix: str = DEFAULT_STATE_PREFIX


@dataclass(frozen=True, slots=True, kw_only=True)
class LimitsConfig:
    defaults: LimitSpec = field(default_factory=LimitSpec)
    strategy: Strategy = field(default_factory=Strategy)
    completion_estimate: int = DEFAULT_COMPLETION_ESTIMATE
    state: StateConfig = field(default_factory=StateConfig)
    #: follow the providers' own rate-limit headers
    learn_from_headers: bool = True
    models: Mapping[str, LimitSpec] = field(default_factory=dict)

    def for_model(self, model_id: str) -> LimitSpec:
        return self.models.get(model_id, self.defaults)


@dataclass(frozen=True, slots=True, kw_only=True)
class RouterConfig:
    models: ModelsConfig
    limits: LimitsConfig

    @property
    def secrets(self) -> frozenset[str]:
        """Every secret of both files: what the Redactor must know."""
        url = self.limits.state.url
        return self.models.secrets | ({url.reveal()} if url is not None else frozenset())
