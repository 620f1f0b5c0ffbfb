"""Configuration: `load_config` turns models.yaml and limits.yaml (paths or mappings) into
frozen objects, and is the only place that sees YAML or raw dicts."""

from __future__ import annotations

from llmroute.config._loader import ConfigSource, load_config, read_env
from llmroute.config._schema import (
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
    "ConfigSource",
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
]
