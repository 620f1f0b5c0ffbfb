"""Scenario (e) of the quota benchmark: LiteLLM's Router next to llmroute, in real time.

LiteLLM counts its `rpm` per real minute, so this part cannot run on a scaled clock: it
uses real minutes with small counts. One fake provider in quota mode serves four model
names, each with its own quota (`rpm` per minute, shared by all keys), so the four runs go
at once without touching each other's windows:

- llmroute (a) limits exact, llmroute (c) limits 2x too high with learning;
- LiteLLM (a) `rpm` exact, LiteLLM (c) `rpm` 2x too high, both with
  `routing_strategy="usage-based-routing-v2"` (its strategy for limits) and `num_retries=3`.

LiteLLM runs in its own interpreter (`.venv-peers`, see `make bench-peers`): this script
starts it again there with `--litellm-child`, which imports nothing of llmroute. Prints one
JSON line: a list of outcome rows for bench/quota.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

KEY = "bench-peer-key"
THIS = str(Path(__file__).resolve())


def outcome(
    name: str, title: str, client: str, requests: int, rpm: int, latency: float
) -> dict[str, Any]:
    return {
        "name": name,
        "title": title,
        "client": client,
        "clock": "real time",
        "requests": requests,
        "ok": 0,
        "failed": 0,
        "remote_429": 0,
        "makespan_s": 0.0,
        "minimum_s": (math.ceil(requests / rpm) - 1) * 60.0 + latency,
        "goodput": 0.0,
        "waited_requests": 0,
        "waited_total_s": 0.0,
        "waited_max_s": 0.0,
        "attempts": 0,
        "first_error": None,
        "refused_by": {},
    }


# -- the LiteLLM child (runs in .venv-peers) --------------------------------------------------


async def litellm_child(base_url: str, model: str, rpm: int, requests: int) -> dict[str, Any]:
    import litellm

    litellm.suppress_debug_info = True
    litellm.telemetry = False
    router = litellm.Router(
        model_list=[
            {
                "model_name": "target",
                "litellm_params": {
                    "model": f"openai/{model}",
                    "api_base": base_url,
                    "api_key": KEY,
                    "rpm": rpm,
                },
            }
        ],
        routing_strategy="usage-based-routing-v2",
        num_retries=3,
    )
    failed = 0
    first_error: str | None = None
    start = time.monotonic()

    async def one(i: int) -> None:
        nonlocal failed, first_error
        try:
            await router.acompletion(
                model="target", messages=[{"role": "user", "content": f"request {i}: say hi"}]
            )
        except Exception as exc:
            failed += 1
            first_error = first_error or f"{type(exc).__name__}: {exc}"[:200]

    await asyncio.gather(*(one(i) for i in range(requests)))
    return {
        "failed": failed,
        "first_error": first_error,
        "makespan_s": time.monotonic() - start,
    }


# -- the orchestrator (runs in the project's venv) --------------------------------------------


async def llmroute_run(
    base_url: str, model: str, limit: int, requests: int, out: dict[str, Any]
) -> None:
    import tempfile

    from llmroute import Router

    models = {
        "providers": {"groq": {"type": "openai_compatible", "base_url": base_url, "api_key": KEY}},
        "models": {f"groq/{model}": {"provider": "groq", "model": model}},
    }
    limits = {
        "strategy": {"on_limit": "sleep", "max_wait_seconds": 3600, "max_attempts": 20},
        "models": {f"groq/{model}": {"rpm": limit}},
    }
    with tempfile.TemporaryDirectory() as cache:
        async with Router(models, limits, env_file=None, cache_dir=cache) as router:
            start = time.monotonic()

            async def one(i: int) -> None:
                try:
                    c = await router.complete(f"groq/{model}", f"request {i}: say hi")
                except Exception as exc:
                    out["failed"] += 1
                    out["first_error"] = out["first_error"] or f"{type(exc).__name__}: {exc}"[:200]
                    attempts = getattr(exc, "attempts", [])
                else:
                    out["ok"] += 1
                    attempts = c.attempts
                waited = sum(a.waited_s for a in attempts)
                if waited > 0:
                    out["waited_requests"] += 1
                    out["waited_total_s"] += waited
                    out["waited_max_s"] = max(out["waited_max_s"], waited)

            await asyncio.gather(*(one(i) for i in range(requests)))
            out["makespan_s"] = time.monotonic() - start


async def litellm_run(
    python: str, base_url: str, model: str, limit: int, requests: int, out: dict[str, Any]
) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.endswith("_API_KEY") and key != "PYTHONPATH"
    }
    # LiteLLM fetches a price list from the internet at import unless told not to.
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    proc = await asyncio.create_subprocess_exec(
        python,
        THIS,
        "--litellm-child",
        "--base-url",
        base_url,
        "--model",
        model,
        "--rpm",
        str(limit),
        "--requests",
        str(requests),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    stdout, stderr = await proc.communicate()
    lines = [line for line in stdout.decode().splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = " | ".join(stderr.decode().strip().splitlines()[-3:])
        out["failed"] = out["requests"]
        out["first_error"] = f"LiteLLM run failed (exit {proc.returncode}): {tail}"[:300]
        return
    got = json.loads(lines[-1])
    out.update(got)
    out["ok"] = out["requests"] - got["failed"]


async def orchestrate(args: argparse.Namespace) -> list[dict[str, Any]]:
    from llmroute.testing import FakeProviderServer, Quota, QuotaEnforcer

    rpm, n, latency = args.rpm, args.requests, args.latency
    runs = [
        ("e-a", "(e) limits exact", "llmroute", "peer-llmroute-a", rpm),
        ("e-c", "(e) limits 2x high, learning", "llmroute", "peer-llmroute-c", 2 * rpm),
        ("e-a", "(e) limits exact", "litellm", "peer-litellm-a", rpm),
        ("e-c", "(e) limits 2x high", "litellm", "peer-litellm-c", 2 * rpm),
    ]
    quota = QuotaEnforcer({model: Quota(rpm=rpm, per_key=False) for *_, model, _ in runs})
    rows = []
    async with FakeProviderServer(quota=quota, latency=latency) as server:
        jobs = []
        for name, title, client, model, limit in runs:
            row = outcome(name, title, client, n, rpm, latency)
            rows.append((row, model))
            if client == "llmroute":
                jobs.append(llmroute_run(server.openai_base_url, model, limit, n, row))
            else:
                jobs.append(
                    litellm_run(args.peers_python, server.openai_base_url, model, limit, n, row)
                )
        await asyncio.gather(*jobs)
    for row, model in rows:
        row["remote_429"] = sum(c for (m, _), c in quota.refused_by.items() if m == model)
        row["goodput"] = row["minimum_s"] / row["makespan_s"] if row["makespan_s"] else 0.0
    return [row for row, _ in rows]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--litellm-child", action="store_true")
    parser.add_argument("--peers-python", default=sys.executable)
    parser.add_argument("--base-url")
    parser.add_argument("--model")
    parser.add_argument("--rpm", type=int, default=6)
    parser.add_argument("--requests", type=int, default=18)
    parser.add_argument("--latency", type=float, default=0.005)
    args = parser.parse_args()
    if args.litellm_child:
        result = asyncio.run(litellm_child(args.base_url, args.model, args.rpm, args.requests))
        print(json.dumps(result))
        return 0
    print(json.dumps(asyncio.run(orchestrate(args))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
