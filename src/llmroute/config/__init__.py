"""Configuration: `load_config` turns models.yaml and limits.yaml (paths or mappings) into
frozen objects, and is the only place that sees YAML or raw dicts."""

from __future__ import annotations

from llmroute.config._catalogue import (
    CATALOGUE_FILES,
    DEFAULT_LIMITS,
    DEFAULT_MODELS,
    DefaultPath,
    resolve_sources,
    shipped_root,
)
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

__all__ = [
    "CAPABILITIES",
    "CATALOGUE_FILES",
    "DEFAULT_LIMITS",
    "DEFAULT_MODELS",
    "ConfigSource",
    "DefaultPath",
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
    "load_config",
    "read_env",
    "resolve_sources",
    "shipped_root",
]
