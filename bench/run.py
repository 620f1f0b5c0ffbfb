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
import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from figures import aggregate, targets
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
)
from import_cost import run_imports
from plan import MOCK_CLIENTS, OPTIONAL_CLIENTS, Plan, make_plan
from report import write_chart, write_markdown


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


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    plan = make_plan(args)
    started = time.perf_counter()
    result: dict[str, Any] = {"meta": meta(plan, args.commit), "plan": dataclasses.asdict(plan)}
    _drop_missing_litellm(plan, result)
    runs = _measure_against_servers(plan, result)
    log("limiter ...")
    result["limiter"] = run_child([str(BENCH_DIR / "limiter.py"), *plan.limiter_args], timeout=600)
    log("httpx per-request objects ...")
    result["micro"] = run_child([str(BENCH_DIR / "micro.py"), "-n", str(plan.micro_n)], timeout=300)
    result["runs"] = runs
    result["aggregate"] = aggregate(runs, plan)
    result["targets"] = targets(result)
    result["meta"]["elapsed_s"] = time.perf_counter() - started
    _write_results(result, plan, args.out)
    failures = _failures(result)
    for cell in failures:
        log(f"FAILED: {cell['client']}: {cell.get('error') or cell.get('skipped') or cell}")
    return 1 if failures else 0


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
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
    return parser.parse_args(argv)


def _drop_missing_litellm(plan: Plan, result: dict[str, Any]) -> None:
    if "litellm" in plan.clients and not peers_have_litellm():
        plan.clients.remove("litellm")
        plan.stream_clients = [c for c in plan.stream_clients if c != "litellm"]
        result["litellm"] = "skipped: LiteLLM is not installed (`make bench-peers`)"
        log("LiteLLM is not installed: skipping it")


def _measure_against_servers(plan: Plan, result: dict[str, Any]) -> list[dict[str, Any]]:
    """Server capacity, every round of client runs and the import costs, with one fake
    server per latency up for all of it; returns the client runs."""
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
            runs += _round(servers, plan, round_no)
        log("imports ...")
        result["imports"] = run_imports(plan, servers[0.0].base_url if plan.first_call else None)
    finally:
        for server in servers.values():
            server.close()
    return runs


def _round(servers: dict[float, FakeServer], plan: Plan, round_no: int) -> list[dict[str, Any]]:
    """One round: every client over the network, over MockTransport, then streaming. Odd
    rounds take the clients in reverse, so no client always runs first."""
    forward = round_no % 2 == 0
    runs: list[dict[str, Any]] = []
    for latency, server in servers.items():
        for conc in plan.concurrencies:
            for client in plan.clients if forward else list(reversed(plan.clients)):
                run = client_run(server, client, _mode(conc), conc, plan)
                run["round"] = round_no
                runs.append(run)
                log(f"  round {round_no + 1} {latency:g} ms c={conc} {describe(run)}")
    for conc in plan.mock_concurrencies:
        for client in MOCK_CLIENTS if forward else list(reversed(MOCK_CLIENTS)):
            run = client_run(servers[0.0], client, _mode(conc), conc, plan)
            run.update(round=round_no, mode="mock-" + run["mode"])
            runs.append(run)
            log(f"  round {round_no + 1} mock c={conc} {describe(run)}")
    for latency in plan.stream_latencies:
        for client in plan.stream_clients[:: 1 if forward else -1]:
            run = client_run(
                servers[latency], client, "stream", 1, plan, max_requests=plan.max_requests
            )
            run["round"] = round_no
            runs.append(run)
            log(f"  round {round_no + 1} stream {latency:g} ms {describe(run)}")
    return runs


def _mode(concurrency: int) -> str:
    return "seq" if concurrency == 1 else "conc"


def _write_results(result: dict[str, Any], plan: Plan, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.json").write_text(json.dumps(result, indent=1) + "\n")
    if plan.chart:
        result["chart"] = write_chart(result, out / "latest.png")
    markdown = write_markdown(result, out / "latest.md")
    print(markdown)
    log(f"wrote {out}/latest.md, latest.json" + (", latest.png" if plan.chart else ""))


def _failures(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Cells and side measurements that did not run cleanly; LiteLLM's may fail."""
    failures = [
        c
        for c in result["aggregate"]["cells"]
        if c["client"] not in OPTIONAL_CLIENTS
        and (c["error"] or c["skipped"] or c["request_errors"] or c["ok"] < c["runs"])
    ]
    for side in ("limiter", "micro"):
        if "error" in result[side] or "skipped" in result[side]:
            failures.append({"client": side, "error": result[side]})
    return failures


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
