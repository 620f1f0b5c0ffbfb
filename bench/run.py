"""Run the llmroute benchmark suite and write bench/results/latest.{md,json,png}.

    python bench/run.py            # full: 3 rounds, a few minutes (`make bench`)
    python bench/run.py --quick    # 1 round, under a minute
    python bench/run.py --smoke    # a few hundred requests: does everything still run?

Every client run is a fresh interpreter (bench/clients.py) against a fake
OpenAI-compatible server in its own process (bench/server.py). Clients are interleaved
within each round (A B C, then C B A in the next round) so that ratios between them hold
on a noisy machine; figures are medians with min-max over rounds, and ratios are taken
within a round, between runs of the same scenario, before the median.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from harness import (
    BENCH_DIR,
    PEERS_PYTHON,
    PYTHON,
    ROOT,
    FakeServer,
    child_env,
    peers_have_litellm,
    python_for,
    run_child,
    summary,
)
from report import find_cell, write_chart, write_markdown

MAIN_CLIENTS = ["llmroute", "httpx", "aiohttp"]
# Transport study: why the router's default client is what it is (see the report).
STUDY_CLIENTS = ["httpx_aiohttp", "aiohttp_client"]
OPTIONAL_CLIENTS = {"litellm"}
MOCK_CLIENTS = ["llmroute_mock", "httpx_mock"]
IMPORT_STATEMENTS = [
    "import httpx",
    "import llmroute",
    "from llmroute import Router",
    "import aiohttp",
    "import asyncio",
    "import yaml",
    "import tenacity",
    "import dotenv",
    "import httpx_aiohttp",
]


@dataclasses.dataclass
class Plan:
    mode: str
    rounds: int
    seconds: float
    max_requests: int
    warmup_seconds: float
    warmup_requests: int
    latencies: list[float]
    concurrencies: list[int]
    clients: list[str]
    mock_concurrencies: list[int]
    stream_latencies: list[float]
    stream_clients: list[str]
    import_statements: list[str]
    import_repeats: int
    first_call: bool
    limiter_args: list[str]
    micro_n: int
    capacity_seconds: float
    capacity_processes: int
    chart: bool


def make_plan(args: argparse.Namespace) -> Plan:
    litellm = [] if args.no_litellm or args.smoke else ["litellm"]
    if args.smoke:
        plan = Plan(
            mode="smoke",
            rounds=1,
            seconds=2.0,
            max_requests=50,
            warmup_seconds=0.5,
            warmup_requests=10,
            latencies=[0.0],
            concurrencies=[1, 50],
            clients=list(MAIN_CLIENTS),
            mock_concurrencies=[1],
            stream_latencies=[0.0],
            stream_clients=["llmroute", "httpx"],
            import_statements=["import httpx", "import llmroute"],
            import_repeats=1,
            first_call=False,
            limiter_args=[
                "--models",
                "1",
                "100",
                "--admissions",
                "2000",
                "--memory-admissions",
                "20000",
            ],
            micro_n=300,
            capacity_seconds=0.3,
            capacity_processes=1,
            chart=True,
        )
    elif args.quick:
        plan = Plan(
            mode="quick",
            rounds=1,
            seconds=0.6,
            max_requests=100_000,
            warmup_seconds=0.15,
            warmup_requests=100,
            latencies=[0.0, 20.0],
            concurrencies=[1, 50, 200],
            clients=MAIN_CLIENTS + litellm,
            mock_concurrencies=[1],
            stream_latencies=[0.0],
            stream_clients=["llmroute", "httpx", "aiohttp"],
            import_statements=IMPORT_STATEMENTS[:4],
            import_repeats=3,
            first_call=False,
            limiter_args=["--admissions", "30000", "--memory-admissions", "300000"],
            micro_n=3000,
            capacity_seconds=1.0,
            capacity_processes=2,
            chart=True,
        )
    else:
        plan = Plan(
            mode="full",
            rounds=3,
            seconds=2.5,
            max_requests=1_000_000,
            warmup_seconds=0.4,
            warmup_requests=300,
            latencies=[0.0, 20.0],
            concurrencies=[1, 50, 200],
            clients=MAIN_CLIENTS + litellm + STUDY_CLIENTS,
            mock_concurrencies=[1, 50],
            stream_latencies=[0.0, 20.0],
            stream_clients=["llmroute", "httpx", "aiohttp", "aiohttp_client", *litellm],
            import_statements=list(IMPORT_STATEMENTS),
            import_repeats=7,
            first_call=True,
            limiter_args=[],
            micro_n=20_000,
            capacity_seconds=2.0,
            capacity_processes=2,
            chart=True,
        )
    if args.rounds:
        plan.rounds = args.rounds
    if args.seconds:
        plan.seconds = args.seconds
    if args.clients:
        plan.clients = args.clients.split(",")
    return plan


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def measure_capacity(server: FakeServer, plan: Plan) -> dict[str, Any]:
    """Drive the server with bare load generators; its CPU per request gives its ceiling."""
    before = server.stats()
    procs = [
        subprocess.Popen(
            [
                PYTHON,
                str(BENCH_DIR / "capacity.py"),
                "--url",
                server.base_url,
                "--seconds",
                str(plan.capacity_seconds),
            ],
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=child_env(),
        )
        for _ in range(plan.capacity_processes)
    ]
    try:
        for proc in procs:
            proc.communicate(timeout=plan.capacity_seconds + 30)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    after = server.stats()
    requests = after["requests"] - before["requests"]
    cpu = after["cpu"] - before["cpu"]
    wall = after["wall"] - before["wall"]
    cpu_per_req = cpu / requests if requests else None
    return {
        "loadgen_processes": plan.capacity_processes,
        "requests": requests,
        "req_per_s": requests / wall if wall else None,
        "server_busy": cpu / wall if wall else None,
        "server_cpu_us_per_req": cpu_per_req * 1e6 if cpu_per_req else None,
        "ceiling_req_per_s_one_core": 1 / cpu_per_req if cpu_per_req else None,
    }


def client_run(
    server: FakeServer,
    client: str,
    mode: str,
    concurrency: int,
    plan: Plan,
    *,
    max_requests: int | None = None,
) -> dict[str, Any]:
    argv = [
        str(BENCH_DIR / "clients.py"),
        "--client",
        client,
        "--url",
        server.base_url,
        "--mode",
        mode,
        "-c",
        str(concurrency),
        "--seconds",
        str(plan.seconds),
        "--max-requests",
        str(max_requests or plan.max_requests),
        "--warmup-seconds",
        str(plan.warmup_seconds),
        "--warmup-requests",
        str(plan.warmup_requests),
    ]
    before = server.stats()
    result = run_child(
        argv, timeout=plan.seconds + plan.warmup_seconds + 90, python=python_for(client)
    )
    after = server.stats()
    wall = after["wall"] - before["wall"]
    result["server_busy"] = (after["cpu"] - before["cpu"]) / wall if wall else None
    result.update(client=client, mode=mode, concurrency=concurrency, latency_ms=server.latency_ms)
    return result


def run_imports(plan: Plan, first_call_url: str | None) -> dict[str, Any]:
    """Import statements (and, in full runs, import + construct + first answered call),
    each in a fresh interpreter, interleaved and repeated."""
    entries = [("pass", "pass")] + [(s, s) for s in plan.import_statements]
    if plan.mode == "full" and importlib.util.find_spec("litellm") is not None:
        # only in the interpreter measured here: the peers' venv has other packages
        entries.append(("import litellm", "import litellm"))
    if first_call_url:
        entries += [
            (f"{kind}: import + first call", first_call_snippet(kind, first_call_url))
            for kind in ("llmroute", "httpx", "aiohttp")
        ]
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label, _ in entries}
    # One untimed pass first warms the OS file cache and writes any missing .pyc files.
    for repeat in range(plan.import_repeats + 1):
        for label, statement in entries if repeat % 2 == 0 else entries[::-1]:
            result = run_child([str(BENCH_DIR / "imports.py"), statement], timeout=120)
            if repeat > 0:
                runs[label].append(result)
    table: dict[str, Any] = {}
    for label, results in runs.items():
        ok = [r for r in results if "error" not in r]
        table[label] = {
            "wall_ms": summary([r["wall_ms"] for r in ok]),
            "cpu_ms": summary([r["cpu_ms"] for r in ok]),
            "maxrss_mb": summary([r["maxrss_mb"] for r in ok]),
            "modules": ok[0]["modules"] if ok else None,
            "error": next((r["error"] for r in results if "error" in r), None),
        }
    table["top_imports_from_llmroute_import_Router"] = import_breakdown()
    return table


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


def aggregate(runs: list[dict[str, Any]], plan: Plan) -> dict[str, Any]:
    """Medians (min-max) per scenario and client, and within-round ratios to raw clients."""
    by_key: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for run in runs:
        key = (run["mode"], run["latency_ms"], run["concurrency"], run["client"])
        by_key.setdefault(key, []).append(run)
    cells: list[dict[str, Any]] = []
    for (mode, latency, conc, client), results in by_key.items():
        ok = [r for r in results if "error" not in r and "skipped" not in r]
        cell: dict[str, Any] = {
            "mode": mode,
            "latency_ms": latency,
            "concurrency": conc,
            "client": client,
            "runs": len(results),
            "ok": len(ok),
            "skipped": next((r["skipped"] for r in results if "skipped" in r), None),
            "error": next((r["error"] for r in results if "error" in r), None),
            "request_errors": sum(r.get("errors", 0) for r in ok),
            "first_request_error": next(
                (r["first_error"] for r in ok if r.get("first_error")), None
            ),
            "server_busy_max": max((r["server_busy"] or 0 for r in results), default=None),
        }
        for metric in (
            "rps",
            "p50_ms",
            "p99_ms",
            "cpu_us_per_req",
            "ttfc_p50_ms",
            "ttfc_p99_ms",
            "total_p50_ms",
            "maxrss_mb",
        ):
            values = [r[metric] for r in ok if r.get(metric) is not None]
            if values:
                cell[metric] = summary(values)
        for base in ("httpx", "aiohttp", "httpx_mock"):
            for metric in ("rps", "cpu_us_per_req", "ttfc_p50_ms"):
                ratios = []
                for r in ok:
                    partner = next(
                        (
                            p
                            for p in by_key.get((mode, latency, conc, base), [])
                            if p.get("round") == r.get("round") and p.get(metric)
                        ),
                        None,
                    )
                    if partner is not None and r.get(metric) is not None:
                        ratios.append(r[metric] / partner[metric])
                if ratios and client != base:
                    cell[f"{metric}_vs_{base}"] = summary(ratios)
        cells.append(cell)
    return {"cells": cells}


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    cells = result["aggregate"]["cells"]
    out: list[dict[str, Any]] = []

    def add(name: str, value: float | None, limit: float, higher_is_better: bool) -> None:
        met = None if value is None else (value >= limit if higher_is_better else value <= limit)
        out.append({"target": name, "value": value, "limit": limit, "met": met})

    for latency in sorted({c["latency_ms"] for c in cells if c["mode"] == "seq"}):
        cell = find_cell(cells, mode="seq", latency_ms=latency, client="llmroute")
        ratio = cell.get("cpu_us_per_req_vs_httpx") if cell else None
        add(
            f"sequential CPU/request, llmroute / httpx ({latency:g} ms)",
            ratio["median"] if ratio else None,
            1.15,
            False,
        )
    for cell in cells:
        if cell["client"] == "llmroute" and cell["mode"] == "conc":
            ratio = cell.get("rps_vs_aiohttp")
            add(
                f"req/s at c={cell['concurrency']}, llmroute / aiohttp ({cell['latency_ms']:g} ms)",
                ratio["median"] if ratio else None,
                0.85,
                True,
            )
    imports = result.get("imports") or {}
    httpx_ms = (imports.get("import httpx") or {}).get("wall_ms")
    for statement in ("import llmroute", "from llmroute import Router"):
        entry = imports.get(statement) or {}
        if httpx_ms and entry.get("wall_ms"):
            add(
                f"`{statement}` wall / `import httpx`",
                entry["wall_ms"]["median"] / httpx_ms["median"],
                1.5,
                False,
            )
        if entry.get("maxrss_mb"):
            add(f"`{statement}` peak RSS, MB", entry["maxrss_mb"]["median"], 45.0, False)
    limiter = result.get("limiter") or {}
    for row in limiter.get("cost", []):
        add(
            f"limiter acquire+settle, {row['models']:,} models, us",
            row["acquire_settle_us"],
            5.0,
            False,
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true", help="one round, under a minute")
    group.add_argument("--smoke", action="store_true", help="a few hundred requests; for CI")
    parser.add_argument("--rounds", type=int, help="override the number of rounds")
    parser.add_argument("--seconds", type=float, help="override seconds per client run")
    parser.add_argument("--clients", help="comma-separated clients (see bench/clients.py)")
    parser.add_argument("--no-litellm", action="store_true", help="skip LiteLLM")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results")
    parser.add_argument("--commit", help="what was measured (default: the repository's HEAD)")
    args = parser.parse_args(argv)
    plan = make_plan(args)
    started = time.perf_counter()
    result: dict[str, Any] = {"meta": meta(plan, args.commit), "plan": dataclasses.asdict(plan)}
    if "litellm" in plan.clients and not peers_have_litellm():
        plan.clients.remove("litellm")
        plan.stream_clients = [c for c in plan.stream_clients if c != "litellm"]
        result["litellm"] = "skipped: LiteLLM is not installed (`make bench-peers`)"
        log("LiteLLM is not installed: skipping it")
    runs: list[dict[str, Any]] = []
    servers = {latency: FakeServer(latency) for latency in plan.latencies}
    try:
        for server in servers.values():
            server.__enter__()
            log(f"fake server: {server.base_url} (latency {server.latency_ms:g} ms)")
        log("server capacity ...")
        result["server_capacity"] = measure_capacity(servers[0.0], plan)
        log(f"  {json.dumps(result['server_capacity'])}")
        for round_no in range(plan.rounds):
            order = plan.clients if round_no % 2 == 0 else list(reversed(plan.clients))
            for latency, server in servers.items():
                for conc in plan.concurrencies:
                    mode = "seq" if conc == 1 else "conc"
                    for client in order:
                        run = client_run(server, client, mode, conc, plan)
                        run["round"] = round_no
                        runs.append(run)
                        log(f"  round {round_no + 1} {latency:g} ms c={conc} {describe(run)}")
            mocks = MOCK_CLIENTS if round_no % 2 == 0 else list(reversed(MOCK_CLIENTS))
            for conc in plan.mock_concurrencies:
                for client in mocks:
                    run = client_run(
                        servers[0.0], client, "seq" if conc == 1 else "conc", conc, plan
                    )
                    run.update(round=round_no, mode="mock-" + run["mode"])
                    runs.append(run)
                    log(f"  round {round_no + 1} mock c={conc} {describe(run)}")
            for latency in plan.stream_latencies:
                stream_order = plan.stream_clients[:: 1 if round_no % 2 == 0 else -1]
                for client in stream_order:
                    run = client_run(
                        servers[latency], client, "stream", 1, plan, max_requests=plan.max_requests
                    )
                    run["round"] = round_no
                    runs.append(run)
                    log(f"  round {round_no + 1} stream {latency:g} ms {describe(run)}")
        log("imports ...")
        result["imports"] = run_imports(plan, servers[0.0].base_url if plan.first_call else None)
    finally:
        for server in servers.values():
            server.close()
    log("limiter ...")
    result["limiter"] = run_child([str(BENCH_DIR / "limiter.py"), *plan.limiter_args], timeout=600)
    log("httpx per-request objects ...")
    result["micro"] = run_child([str(BENCH_DIR / "micro.py"), "-n", str(plan.micro_n)], timeout=300)
    result["runs"] = runs
    result["aggregate"] = aggregate(runs, plan)
    result["targets"] = targets(result)
    result["meta"]["elapsed_s"] = time.perf_counter() - started

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps(result, indent=1) + "\n")
    if plan.chart:
        result["chart"] = write_chart(result, args.out / "latest.png")
    markdown = write_markdown(result, args.out / "latest.md")
    print(markdown)
    log(f"wrote {args.out}/latest.md, latest.json" + (", latest.png" if plan.chart else ""))
    failures = [
        c
        for c in result["aggregate"]["cells"]
        if c["client"] not in OPTIONAL_CLIENTS
        and (c["error"] or c["skipped"] or c["request_errors"] or c["ok"] < c["runs"])
    ]
    for side in ("limiter", "micro"):
        if "error" in result[side] or "skipped" in result[side]:
            failures.append({"client": side, "error": result[side]})
    for cell in failures:
        log(f"FAILED: {cell['client']}: {cell.get('error') or cell.get('skipped') or cell}")
    return 1 if failures else 0


def describe(run: dict[str, Any]) -> str:
    name = run["client"]
    if "error" in run:
        return f"{name}: ERROR {run['error']}"
    if "skipped" in run:
        return f"{name}: skipped ({run['skipped']})"
    if run["mode"] == "stream":
        return f"{name}: first chunk p50 {run['ttfc_p50_ms']:.2f} ms, n={run['n']}"
    busy = run.get("server_busy") or 0
    return (
        f"{name}: {run['rps']:,.0f} req/s, {run['cpu_us_per_req']:,.0f} us CPU/req, "
        f"p99 {run['p99_ms']:.1f} ms, n={run['n']}, errors={run['errors']}, "
        f"server busy {busy:.0%}"
    )


def meta(plan: Plan, commit: str | None) -> dict[str, Any]:
    versions = {}
    for dist in ("llmroute", "httpx", "aiohttp", "httpx-aiohttp", "litellm"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    if versions["litellm"] is None and PEERS_PYTHON.exists():
        versions["litellm"] = (
            subprocess.run(
                [
                    str(PEERS_PYTHON),
                    "-c",
                    "import importlib.metadata as m; print(m.version('litellm'))",
                ],
                capture_output=True,
                text=True,
                check=False,
            ).stdout.strip()
            or None
        )
    if commit is None:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "mode": plan.mode,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "commit": commit,
        "versions": versions,
    }


if __name__ == "__main__":
    sys.exit(main())
