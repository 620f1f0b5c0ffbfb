"""Configuration: `load_config` turns models.yaml and limits.yaml (paths or mappings) into
frozen objects, and is the only place that sees YAML or raw dicts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmroute.config._catalogue import (
    CATALOGUE_FILES,
    DEFAULT_LIMITS,
    DEFAULT_MODELS,
    DefaultPath,
    resolve_sources,
    shipped_root,
)
from llmroute.config._env import VAR as ENV_REFERENCE
from llmroute.config._loader import ConfigSource, load_config, read_env
from llmroute.config._schema import (
    CAPABILITIES,
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
from llmroute.config._yaml import YamlProblem, read_yaml

if TYPE_CHECKING:
    from llmroute.config._init import InitError, init_project, merge_project

#: `llmroute init` and `--merge`, loaded when first asked for: never on a request's way
_INIT_NAMES = frozenset({"InitError", "init_project", "merge_project"})

__all__ = [
    "CAPABILITIES",
    "CATALOGUE_FILES",
    "DEFAULT_LIMITS",
    "DEFAULT_MODELS",
    "ENV_REFERENCE",
    "ConfigSource",
    "DefaultPath",
    "InitError",
    "LimitSpec",
    "LimitsConfig",
    "ModelConfig",
    "ModelsConfig",
    "Price",
    "ProviderConfig",
    "RouterConfig",
    "Secret",
    "StateConfig",
    "Strategy",
    "YamlProblem",
    "init_project",
    "load_config",
    "merge_project",
    "read_env",
    "read_yaml",
    "resolve_sources",
    "shipped_root",
]


def __getattr__(name: str) -> Any:
    if name in _INIT_NAMES:
        from llmroute.config import _init

        return getattr(_init, name)
    raise AttributeError(f"module 'llmroute.config' has no attribute {name!r}")
