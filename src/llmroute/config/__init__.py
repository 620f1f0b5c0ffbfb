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
from llmroute.config._env import VAR as ENV_REFERENCE
from llmroute.config._init import InitError, init_project, merge_project
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
