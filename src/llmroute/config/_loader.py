"""YAML or mapping -> validated, frozen config objects, in one pass that collects every problem.

The order matters for the messages a user gets: the file is read with its limits and the line
of every key (`_yaml`); unknown fields are checked on the text as written, before `${VAR}`
interpolation, so a misspelt key is reported whether or not its variable is set; then values
are interpolated (`_env`: an unset variable leaves its value absent, and a required value left
absent names the variable) and validated (`_models`, `_limits`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from llmroute.config._checker import Problems
from llmroute.config._env import interpolate, read_env
from llmroute.config._limits import LimitsBuilder
from llmroute.config._models import ModelsBuilder
from llmroute.config._schema import RouterConfig
from llmroute.config._yaml import Located, YamlProblem, read_yaml
from llmroute.errors import ConfigError

__all__ = ["ConfigSource", "load_config", "read_env"]

ConfigSource = str | os.PathLike[str] | Mapping[str, Any]


def load_config(
    models: ConfigSource,
    limits: ConfigSource | None,
    *,
    env: Mapping[str, str],
) -> RouterConfig:
    """Load and validate both files; raise one `ConfigError` listing every problem."""
    problems = Problems()
    models_source, models_doc = _read(models, "models", problems)
    if limits is None:
        limits_source, limits_doc = "limits", Located({})
    else:
        limits_source, limits_doc = _read(limits, "limits", problems)
    if problems:
        raise ConfigError(problems.items)
    models_builder = ModelsBuilder(problems, models_source, models_doc.lines)
    models_cfg = models_builder.build(_interpolated(models_doc, env, models_builder))
    limits_builder = LimitsBuilder(problems, limits_source, limits_doc.lines, models_cfg)
    limits_cfg = limits_builder.build(_interpolated(limits_doc, env, limits_builder))
    if problems:
        raise ConfigError(problems.items)
    return RouterConfig(models=models_cfg, limits=limits_cfg)


def _interpolated(
    doc: Located, env: Mapping[str, str], checker: ModelsBuilder | LimitsBuilder
) -> Any:
    for path, line, message in doc.problems:
        checker.problems.add(checker.source, path, message, line)
    return interpolate(doc.data, env, "", checker.fail)


def _read(source: ConfigSource, name: str, problems: Problems) -> tuple[str, Located]:
    if isinstance(source, Mapping):
        return name, Located(source)
    path = os.fspath(source)
    try:
        return path, read_yaml(path)
    except YamlProblem as exc:
        problems.add(path, exc.path, exc.message, exc.line)
        return path, Located({})
