"""`llmroute check`: what the config holds and what can be used now, the actionable first.

The first block says what to do (which variables to set, which routes have nothing usable,
the paid gate); the inventory of providers, models and routes follows.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from llmroute.config import ENV_REFERENCE

if TYPE_CHECKING:
    from pathlib import Path

    from llmroute.config import ModelsConfig
    from llmroute.router import Router

__all__ = ["key_vars", "keys_listed", "report"]


class _Printer(Protocol):
    def print(self, text: str = "", *, end: str = "\n") -> None: ...


class _Source(Protocol):
    models: Path
    limits: Path | None
    env_file: Path
    shipped: bool

    def raw_providers(self) -> Mapping[str, Mapping[str, Any]]: ...


def key_vars(raw: Mapping[str, Any]) -> list[str]:
    """The variables a provider's `api_key` / `api_keys` read."""
    values: list[Any] = []
    if isinstance(raw.get("api_keys"), list):
        values += raw["api_keys"]
    if "api_key" in raw:
        values.append(raw["api_key"])
    return [m.group(1) for v in values if isinstance(v, str) for m in ENV_REFERENCE.finditer(v)]


def keys_listed(raw: Mapping[str, Any]) -> int:
    if isinstance(raw.get("api_keys"), list):
        return len(raw["api_keys"])
    return 1 if "api_key" in raw else 0


def report(router: Router, cfg: _Source, out: _Printer) -> list[str]:
    """Print the check; return the routes with no usable candidate (for `--strict`)."""
    from llmroute.config import read_env

    env = read_env(cfg.env_file)
    raw = cfg.raw_providers()
    models_cfg = router.config.models
    unavailable = router.unavailable()
    dead = _dead_routes(router, unavailable)
    _header(router, cfg, out, len(unavailable))
    _todo(router, raw, env, unavailable, dead, out)
    _paid(router, out)
    _providers(router, raw, env, out)
    _models(models_cfg, unavailable, out)
    _routes(router, unavailable, out)
    return dead


def _usable(router: Router, model_id: str, unavailable: Mapping[str, str]) -> bool:
    model = router.config.models.models[model_id]
    return model_id not in unavailable and (router.use_paid_models or not model.paid)


def _dead_routes(router: Router, unavailable: Mapping[str, str]) -> list[str]:
    routes = router.config.models.routes
    return [
        r for r, chain in routes.items() if not any(_usable(router, m, unavailable) for m in chain)
    ]


def _header(router: Router, cfg: _Source, out: _Printer, n_unavailable: int) -> None:
    models_cfg = router.config.models
    env_note = "read" if cfg.env_file.is_file() else "not found, environment only"
    limits_note = str(cfg.limits) if cfg.limits else "no limits.yaml: no limits"
    where = f"{cfg.models}"
    if cfg.shipped:
        where += " (the catalogue shipped with llmroute; `llmroute init` copies it here)"
    out.print(f"Config OK: {where}, {limits_note}  (env file {cfg.env_file}: {env_note})")
    usable = len(models_cfg.models) - n_unavailable
    out.print(
        f"  {len(models_cfg.providers)} providers, {len(models_cfg.models)} models "
        f"({usable} usable now), {len(models_cfg.routes)} routes"
    )
    out.print()


def _todo(
    router: Router,
    raw: Mapping[str, Mapping[str, Any]],
    env: Mapping[str, str],
    unavailable: Mapping[str, str],
    dead: list[str],
    out: _Printer,
) -> None:
    models_cfg = router.config.models
    lines: list[str] = []
    grouped: dict[tuple[str, str], int] = {}
    for model_id, reason in unavailable.items():
        key = (models_cfg.models[model_id].provider, reason)
        grouped[key] = grouped.get(key, 0) + 1
    for (provider, reason), count in grouped.items():
        missing = [v for v in key_vars(raw.get(provider, {})) if not env.get(v)]
        hint = ""
        if missing and "no API key" in reason:
            hint = f"; set {', '.join(missing)} in the environment or .env"
        lines.append(f"{provider}: {count} model{'s' if count != 1 else ''}, {reason}{hint}")
    if dead:
        listed = ", ".join(dead)
        lines.append(
            f"no usable candidate now in route{'s' if len(dead) > 1 else ''} {listed} "
            "(`--strict` fails on this)"
        )
    if not lines:
        out.print("Nothing to do: every model can be used.")
        out.print()
        return
    out.print("To do")
    for line in lines:
        out.print(f"  - {line}")
    if dead or len(unavailable) == len(models_cfg.models):
        out.print("  - or run `llmroute fake-server` to try everything offline, no key needed")
    out.print()


def _paid(router: Router, out: _Printer) -> None:
    paid = [m for m in router.config.models.models.values() if m.paid]
    if router.use_paid_models:
        out.print(f"Paid models: ON (USE_PAID_MODELS is true); {len(paid)} models are paid")
    else:
        out.print(
            f"Paid models: OFF (USE_PAID_MODELS is not true): the {len(paid)} paid models are "
            "skipped in chains\n  and refused when asked for directly"
        )
    out.print()


def _providers(
    router: Router, raw: Mapping[str, Mapping[str, Any]], env: Mapping[str, str], out: _Printer
) -> None:
    models_cfg = router.config.models
    counts: dict[str, int] = dict.fromkeys(models_cfg.providers, 0)
    for model in models_cfg.models.values():
        counts[model.provider] += 1
    out.print("Providers")
    width = max((len(n) for n in models_cfg.providers), default=0)
    for name, pconf in models_cfg.providers.items():
        if pconf.uses_keys:
            listed = keys_listed(raw.get(name, {}))
            keys = f"{len(pconf.keys)} of {listed} key{'s' if listed != 1 else ''} set"
            if len(pconf.keys) > 1:
                keys += f", rotation {pconf.rotation}"
            unset = [v for v in key_vars(raw.get(name, {})) if not env.get(v)]
            if pconf.keys and unset:
                keys += f" (unset: {', '.join(unset)})"
        else:
            keys = "command " + (pconf.command[0] if pconf.command else "?")
        flags = ", paid" if pconf.paid else ""
        n = counts[name]
        out.print(
            f"  {name:<{width}}  {pconf.type:<17}  {keys}{flags}; {n} model{'s' if n != 1 else ''}"
        )
    out.print()


def _models(models_cfg: ModelsConfig, unavailable: Mapping[str, str], out: _Printer) -> None:
    by_provider: dict[str, list[str]] = {name: [] for name in models_cfg.providers}
    for model in models_cfg.models.values():
        by_provider[model.provider].append(model.id)
    out.print("Models")
    for name, ids in by_provider.items():
        out.print(f"  {name}")
        for model_id in ids:
            model = models_cfg.models[model_id]
            notes = []
            if model.context_window:
                notes.append(f"{_tokens(model.context_window)} context")
            if model.paid:
                notes.append("paid")
            if model.retired:
                notes.append(f"retired {model.retired}")
            if model_id in unavailable:
                notes.append("unavailable")
            out.print(f"    {model_id}" + (f"  ({', '.join(notes)})" if notes else ""))
    out.print()


def _routes(router: Router, unavailable: Mapping[str, str], out: _Printer) -> None:
    out.print("Routes")
    for route, chain in router.config.models.routes.items():
        ready = [m for m in chain if _usable(router, m, unavailable)]
        first = f", first {ready[0]}" if ready else ", NONE usable"
        head = f"  {route} ({len(ready)} of {len(chain)} usable now{first}): "
        out.print(
            textwrap.fill(
                " > ".join(chain),
                width=100,
                initial_indent=head,
                subsequent_indent=" " * 6,
                break_on_hyphens=False,
            )
        )


def _tokens(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1_000_000:.2g}M"
    if n >= 1000:
        return f"{round(n / 1000)}k"
    return str(n)
