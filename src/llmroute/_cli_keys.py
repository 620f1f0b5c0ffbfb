"""`llmroute keys`: each key pool's rotation index, cooling and disabled keys, by slot label."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llmroute._cli_out import Out as _Out
    from llmroute.cli import _Config

__all__ = ["run_keys"]


async def run_keys(args: argparse.Namespace, cfg: _Config, out: _Out) -> int:
    from llmroute._cli_check import keys_listed
    from llmroute.keys.persist import KeyIndexFile

    router = cfg.router(out, args.verbose, cache_dir=args.cache_dir)
    async with router:
        status = await router.key_status()
        learnt = await router.learnt_status()
    if learnt:
        out.print("Limits learnt from the providers (in the state store)")
        for line in learnt:
            out.print(line)
    raw = cfg.raw_providers()
    providers = router.config.models.providers
    pools = [
        name
        for name, pconf in providers.items()
        if pconf.uses_keys
        and (isinstance(raw.get(name, {}).get("api_keys"), list) or len(pconf.keys) > 1)
    ]
    cache_dir = Path(args.cache_dir)
    if not pools:
        out.print(f"No provider in {cfg.models} has an api_keys pool; nothing rotates.")
        return 0
    out.print(f"Key pools (indexes in {cache_dir}/)")
    for name in pools:
        pconf = providers[name]
        listed = keys_listed(raw.get(name, {}))
        n = len(pconf.keys)
        file = KeyIndexFile(cache_dir, name)
        out.print(
            f"  {name}: {n} of {listed} keys set, rotation {pconf.rotation}, "
            f"cooldown after a 429 without a hint {pconf.cooldown_seconds:g}s"
        )
        out.print(f"    index file  {file.path}: {_index_state(file.path, n)}")
        info = status.get(name)
        if info is None:
            out.print("    no key is set, so nothing rotates (`llmroute check` says which to set)")
            continue
        out.print(f"    next key    {name}#{info['index']} (slots {', '.join(info['labels'])})")
        cooling: dict[str, float] = info["cooling"]
        if cooling:
            for where, left in sorted(cooling.items()):
                out.print(f"    cooling     {where}: {left:.0f}s left")
        else:
            out.print("    cooling     none")
        disabled: list[str] = info["disabled"]
        out.print(f"    disabled    {', '.join(disabled) if disabled else 'none'}")
    out.print()
    out.print(
        "Cooldowns and disabled keys live in the router's state store (in memory by default), "
        "so a fresh process sees only what it shares through a store; the index is on disk."
    )
    return 0


def _index_state(path: Path, n_keys: int) -> str:
    """What the index file says, in words, without trusting its content."""
    try:
        text = path.read_bytes()[:64].decode("ascii", errors="replace").strip()
    except FileNotFoundError:
        return "not written yet (starts at key 0)"
    except OSError as exc:
        return f"unreadable ({exc.strerror or type(exc).__name__}; starts at key 0)"
    if not re.fullmatch(r"-?[0-9]+", text):
        return "corrupt (starts at key 0)"
    value = int(text)
    if n_keys and not 0 <= value < n_keys:
        return f"{value}, out of range for {n_keys} keys (starts at key 0)"
    return str(value)
