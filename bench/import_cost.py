"""Import cost: each statement (and, in full runs, the time to a first answer) timed in a
fresh interpreter by bench/imports.py, and where `from llmroute import Router` spends it."""

from __future__ import annotations

import importlib.util
import subprocess
from typing import Any

from harness import BENCH_DIR, PYTHON, child_env, run_child, summary
from plan import Plan


def run_imports(plan: Plan, first_call_url: str | None) -> dict[str, Any]:
    """Import statements (and, in full runs, import + construct + first answered call),
    each in a fresh interpreter, interleaved and repeated."""
    entries = _entries(plan, first_call_url)
    runs = _time_entries(entries, plan.import_repeats)
    table: dict[str, Any] = {label: _row(results) for label, results in runs.items()}
    table["top_imports_from_llmroute_import_Router"] = import_breakdown()
    return table


def _entries(plan: Plan, first_call_url: str | None) -> list[tuple[str, str]]:
    """(label, statement) pairs; the empty statement `pass` is the interpreter's own cost."""
    entries = [("pass", "pass")] + [(s, s) for s in plan.import_statements]
    if plan.mode == "full" and importlib.util.find_spec("litellm") is not None:
        # only in the interpreter measured here: the peers' venv has other packages
        entries.append(("import litellm", "import litellm"))
    if first_call_url:
        entries += [
            (f"{kind}: import + first call", first_call_snippet(kind, first_call_url))
            for kind in ("llmroute", "httpx", "aiohttp")
        ]
    return entries


def _time_entries(entries: list[tuple[str, str]], repeats: int) -> dict[str, list[dict[str, Any]]]:
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label, _ in entries}
    # One untimed pass first warms the OS file cache and writes any missing .pyc files.
    for repeat in range(repeats + 1):
        for label, statement in entries if repeat % 2 == 0 else entries[::-1]:
            result = run_child([str(BENCH_DIR / "imports.py"), statement], timeout=120)
            if repeat > 0:
                runs[label].append(result)
    return runs


def _row(results: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [r for r in results if "error" not in r]
    return {
        "wall_ms": summary([r["wall_ms"] for r in ok]),
        "cpu_ms": summary([r["cpu_ms"] for r in ok]),
        "maxrss_mb": summary([r["maxrss_mb"] for r in ok]),
        "modules": ok[0]["modules"] if ok else None,
        "error": next((r["error"] for r in results if "error" in r), None),
    }


def first_call_snippet(kind: str, url: str) -> str:
    """Import, construct, one answered request: the time to a first answer."""
    chat = url + "/chat/completions"
    message = "{'model': 'bench-model', 'messages': [{'role': 'user', 'content': 'Hello'}]}"
    if kind == "llmroute":
        models = {
            "providers": {"b": {"type": "openai_compatible", "base_url": url, "api_key": "dummy"}},
            "models": {"b/m": {"provider": "b", "model": "bench-model"}},
        }
        return (
            "import asyncio, tempfile\nfrom llmroute import Router\n"
            "async def main():\n"
            "    with tempfile.TemporaryDirectory() as d:\n"
            f"        async with Router(models={models!r}, limits={{}}, env_file=None,\n"
            "                          cache_dir=d) as r:\n"
            "            await r.complete('b/m', 'Hello')\n"
            "asyncio.run(main())\n"
        )
    if kind == "httpx":
        return (
            "import asyncio, httpx\nasync def main():\n"
            "    async with httpx.AsyncClient() as c:\n"
            f"        (await c.post({chat!r}, json={message})).json()\n"
            "asyncio.run(main())\n"
        )
    return (
        "import asyncio, aiohttp\nasync def main():\n"
        "    async with aiohttp.ClientSession() as s:\n"
        f"        async with s.post({chat!r}, json={message}) as r:\n"
        "            await r.json()\n"
        "asyncio.run(main())\n"
    )


def import_breakdown() -> list[dict[str, Any]]:
    """`-X importtime` for `from llmroute import Router`: top-level packages by self time."""
    proc = subprocess.run(
        [PYTHON, "-X", "importtime", "-c", "from llmroute import Router"],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    totals: dict[str, int] = {}
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, _cumulative, name = line.split(":", 1)[1].split("|")
        package = name.strip().split(".")[0]
        totals[package] = totals.get(package, 0) + int(self_us)
    top = sorted(totals.items(), key=lambda kv: -kv[1])[:12]
    return [{"package": name, "self_ms": us / 1000} for name, us in top]
