"""`llmroute init`: write the shipped catalogue into a project, or upgrade one (`--merge`).

A merge does what a careful person does by hand and never loses an edit: it backs up each
file it is about to change, adds the shipped catalogue's new providers, models and routes
(and the limits of the models it adds) as text at the end of their sections, leaves every
entry the user has exactly as written, lists the user's models the catalogue marks as
retired, and adds to `.env` the variables of `.env.example` it lacks. A second run finds
nothing to add and changes nothing.
"""

from __future__ import annotations

import datetime as _dt
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmroute.config._catalogue import CATALOGUE_FILES, shipped_root
from llmroute.config._env import VAR
from llmroute.config._loader import load_config
from llmroute.config._textedit import TextEditError, entry_blocks, insert_entries
from llmroute.config._yaml import YamlProblem, parse_yaml
from llmroute.errors import ConfigError

__all__ = ["InitError", "MergeReport", "init_project", "merge_project"]

_MODELS = "config/models.yaml"
_LIMITS = "config/limits.yaml"


class InitError(Exception):
    """`init` refused (files in the way, nothing to merge into): the message says what to do."""


def init_project(directory: Path, *, force: bool = False) -> list[str]:
    """Copy the shipped catalogue into `directory`; the relative paths written."""
    source = shipped_root()
    existing = [rel for rel in CATALOGUE_FILES if (directory / rel).exists()]
    if existing and not force:
        raise InitError(
            f"{', '.join(existing)} already exist{'s' if len(existing) == 1 else ''} in "
            f"{directory}: nothing written. `llmroute init --merge` adds what is new and keeps "
            "your edits; --force overwrites."
        )
    for rel in CATALOGUE_FILES:
        target = directory / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / rel, target)
    return list(CATALOGUE_FILES)


@dataclass
class MergeReport:
    backups: list[tuple[str, str]] = field(default_factory=list)
    added: list[tuple[str, str]] = field(default_factory=list)
    kept: dict[str, int] = field(default_factory=dict)
    #: (model id, the catalogue's retirement note)
    retired: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"backup   {src} -> {dst}" for src, dst in self.backups]
        out += [f"added    {kind:<8} {name}" for kind, name in self.added]
        kept = ", ".join(f"{n} {kind}" for kind, n in self.kept.items())
        if kept:
            out.append(f"kept     {kept} of yours, exactly as written")
        out += [
            f"flagged  {model}: retired ({note}); still in your config"
            for model, note in self.retired
        ]
        out += [f"note     {note}" for note in self.notes]
        if not self.added:
            out.append("nothing to add: your files are unchanged")
        return out


def merge_project(directory: Path, *, now: _dt.datetime | None = None) -> MergeReport:
    """Upgrade the project in `directory` from the shipped catalogue (see the module doc)."""
    source = shipped_root()
    stamp = (now or _dt.datetime.now()).strftime("%Y%m%d_%H%M%S")
    models_path = directory / _MODELS
    if not models_path.is_file():
        raise InitError(f"no {_MODELS} in {directory} to merge into: run `llmroute init` first")
    report = MergeReport()
    shipped_models = (source / _MODELS).read_text(encoding="utf-8")
    user_models = models_path.read_text(encoding="utf-8")
    user = _parsed(user_models, models_path)
    shipped = _parsed(shipped_models, source / _MODELS)
    new_models_text, added_models = _merge_models(
        user, shipped, user_models, shipped_models, report
    )
    writes: dict[Path, str] = {}
    if new_models_text != user_models:
        _validate(new_models_text, models_path)
        writes[models_path] = new_models_text
    limits_path = directory / _LIMITS
    if limits_path.is_file() and added_models:
        user_limits = limits_path.read_text(encoding="utf-8")
        text = _merge_limits(
            user_limits, (source / _LIMITS).read_text("utf-8"), added_models, report, limits_path
        )
        if text != user_limits:
            writes[limits_path] = text
    env_path = directory / ".env"
    env_text = _merge_env(env_path, (source / ".env.example").read_text("utf-8"), report)
    if env_text is not None:
        writes[env_path] = env_text
    for path in writes:
        backup = _free(path.with_name(f"{path.name}.bak.{stamp}"))
        shutil.copy2(path, backup)
        report.backups.append((_rel(path, directory), _rel(backup, directory)))
    for path, text in writes.items():
        path.write_text(text, encoding="utf-8")
    for rel in CATALOGUE_FILES[2:]:
        if not (directory / rel).exists():
            shutil.copyfile(source / rel, directory / rel)
            report.added.append(("file", rel))
    return report


def _free(path: Path) -> Path:
    """`path`, or `path.1`, `path.2`... when a backup of the same second exists."""
    candidate, n = path, 0
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.name}.{n}")
    return candidate


def _rel(path: Path, directory: Path) -> str:
    try:
        return str(path.relative_to(directory))
    except ValueError:
        return str(path)


def _parsed(text: str, path: Path) -> dict[str, Any]:
    try:
        data = parse_yaml(text).data
    except YamlProblem as exc:
        where = f"line {exc.line}: " if exc.line else ""
        raise ConfigError([f"{path}: {where}{exc.message}"]) from None
    if not isinstance(data, dict):
        raise ConfigError([f"{path}: (top level): expected a mapping of sections"])
    return data


def _section(data: dict[str, Any], name: str) -> dict[str, Any]:
    value = data.get(name)
    return value if isinstance(value, dict) else {}


def _merge_models(
    user: dict[str, Any],
    shipped: dict[str, Any],
    user_text: str,
    shipped_text: str,
    report: MergeReport,
) -> tuple[str, list[str]]:
    text = user_text
    plan = _plan(user, shipped, report)
    added_models: list[str] = []
    for section, kind in (("providers", "provider"), ("models", "model"), ("routes", "route")):
        report.kept[section] = len(_section(user, section))
        new = plan[section]
        if not new:
            continue
        blocks = entry_blocks(shipped_text, section)
        try:
            text = insert_entries(
                text, section, [blocks[n] for n in new], "added by llmroute init --merge"
            )
        except TextEditError as exc:
            report.notes.append(f"{section}: {exc}")
            if section != "routes":
                # what is built on this section cannot be added either
                plan["routes"] = []
                if section == "providers":
                    plan["models"] = []
            continue
        report.added += [(kind, n) for n in new]
        if section == "models":
            added_models = new
    shipped_models = _section(shipped, "models")
    for model_id in _section(user, "models"):
        entry = shipped_models.get(model_id)
        if isinstance(entry, dict) and _is_retired(entry):
            report.retired.append((str(model_id), str(entry["retired"])))
    return text, added_models


def _plan(
    user: dict[str, Any], shipped: dict[str, Any], report: MergeReport
) -> dict[str, list[str]]:
    """The shipped entries to add: new, not retired, and with everything they name present."""
    new = {
        section: {
            name: body
            for name, body in _section(shipped, section).items()
            if name not in _section(user, section) and not _is_retired(body)
        }
        for section in ("providers", "models", "routes")
    }
    providers = set(_section(user, "providers")) | set(new["providers"])
    models = {
        m: body
        for m, body in new["models"].items()
        if isinstance(body, dict) and body.get("provider") in providers
    }
    routes = dict(new["routes"])
    known = set(_section(user, "models")) | set(_section(user, "routes"))
    for route in _complete(models, routes, known):
        report.notes.append(f"route {route!r} not added: it names models your config lacks")
    return {"providers": list(new["providers"]), "models": list(models), "routes": list(routes)}


def _complete(models: dict[str, Any], routes: dict[str, Any], known: set[str]) -> list[str]:
    """Drop from `models` and `routes`, until nothing changes, what names a model or route
    that will not be there; the routes dropped."""
    dropped: list[str] = []
    while True:
        names = known | set(models) | set(routes)
        bad_models = [m for m, b in models.items() if not set(_list(b.get("fallbacks"))) <= names]
        bad_routes = [r for r, b in routes.items() if not set(_list(b)) <= names]
        if not bad_models and not bad_routes:
            return dropped
        for m in bad_models:
            del models[m]
        for r in bad_routes:
            del routes[r]
        dropped += bad_routes


def _list(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


def _is_retired(entry: Any) -> bool:
    return isinstance(entry, dict) and entry.get("retired") not in (None, False)


def _validate(text: str, path: Path) -> None:
    """The merged file must still load, or nothing is written."""
    try:
        located = parse_yaml(text)
        # every variable set, so only the structure is judged, not the user's environment
        env = {m.group(1): "placeholder" for m in VAR.finditer(text)}
        load_config(located.data, None, env=env)
    except (YamlProblem, ConfigError) as exc:
        raise InitError(
            f"the merged {path.name} would not load, so nothing was written: {exc}"
        ) from None


def _merge_limits(
    user_text: str, shipped_text: str, added: Iterable[str], report: MergeReport, path: Path
) -> str:
    mine = _section(_parsed(user_text, path), "models")
    blocks = entry_blocks(shipped_text, "models")
    new = [m for m in added if m in blocks and m not in mine]
    if not new:
        return user_text
    try:
        text = insert_entries(
            user_text, "models", [blocks[m] for m in new], "added by llmroute init --merge"
        )
    except TextEditError as exc:
        report.notes.append(f"limits models: {exc}")
        return user_text
    report.added += [("limit", m) for m in new]
    return text


def _merge_env(path: Path, example: str, report: MergeReport) -> str | None:
    """`.env` with the variables of `.env.example` it lacks appended (None: no change)."""
    if not path.is_file():
        report.notes.append(".env: none here; copy .env.example to .env to use one")
        return None
    text = path.read_text(encoding="utf-8")
    have = _env_names(text)
    missing: list[str] = []
    comment: list[str] = []
    for line in example.splitlines():
        stripped = line.strip()
        if not stripped:
            comment = []
            continue
        if stripped.startswith("#"):
            comment.append(line)
            continue
        name = _env_name(stripped)
        if name and name not in have:
            missing += [*comment, line]
            report.added.append(("env", name))
        comment = []
    if not missing:
        return None
    sep = "" if not text or text.endswith("\n") else "\n"
    return f"{text}{sep}\n# added by llmroute init --merge\n" + "\n".join(missing) + "\n"


def _env_name(line: str) -> str | None:
    if "=" not in line or line.startswith("#"):
        return None
    name = line.split("=", 1)[0].strip().removeprefix("export ").strip()
    return name if name and VAR.fullmatch("${" + name + "}") else None


def _env_names(text: str) -> set[str]:
    return {n for line in text.splitlines() if (n := _env_name(line.strip()))}
