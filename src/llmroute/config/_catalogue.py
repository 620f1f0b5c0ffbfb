"""The catalogue shipped with llmroute: config/models.yaml, config/limits.yaml,
config/READ_ME_KEY_ROTATION.md and .env.example.

One copy exists in the repository (its `config/` and `.env.example`). The wheel carries the
same files under `llmroute/_catalogue/` (pyproject's force-include maps them there at build
time), and a source checkout installed in editable mode reads them from the repository itself.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Final

from llmroute.config._loader import ConfigSource

__all__ = [
    "CATALOGUE_FILES",
    "DEFAULT_LIMITS",
    "DEFAULT_MODELS",
    "DefaultPath",
    "resolve_sources",
    "shipped_root",
]

logger = logging.getLogger("llmroute")

#: the files `llmroute init` writes, relative to the project directory
CATALOGUE_FILES: Final = (
    "config/models.yaml",
    "config/limits.yaml",
    "config/READ_ME_KEY_ROTATION.md",
    ".env.example",
)


class DefaultPath(str):
    """A path nobody chose: when it is missing, the shipped catalogue stands in."""

    __slots__ = ()


DEFAULT_MODELS: Final = DefaultPath("config/models.yaml")
DEFAULT_LIMITS: Final = DefaultPath("config/limits.yaml")


def shipped_root() -> Path:
    """The directory that holds the shipped `config/` and `.env.example`."""
    here = Path(__file__).resolve()
    packaged = here.parents[1] / "_catalogue"
    if (packaged / "config" / "models.yaml").is_file():
        return packaged
    # A source checkout (editable install): src/llmroute/config/_catalogue.py -> repository
    return here.parents[3]


def resolve_sources(
    models: ConfigSource, limits: ConfigSource | None
) -> tuple[ConfigSource, ConfigSource | None]:
    """The files a Router reads: defaults that are missing become the shipped catalogue.

    `models` left at its default with no `config/models.yaml` here means the shipped
    catalogue (said at INFO), with its limits unless `limits` was given. A default limits
    path that is missing means no limits; one that exists but is no file is the loader's
    error to report.
    """
    if isinstance(models, DefaultPath) and not os.path.lexists(models):
        root = shipped_root()
        logger.info(
            "no %s in %s: using the catalogue shipped with llmroute (%s); "
            "`llmroute init` copies it here to edit",
            models,
            Path.cwd(),
            root / "config",
        )
        shipped_limits = root / "config" / "limits.yaml"
        return root / "config" / "models.yaml", (
            shipped_limits if isinstance(limits, DefaultPath) else limits
        )
    if isinstance(limits, DefaultPath) and not os.path.lexists(limits):
        return models, None
    return models, limits
