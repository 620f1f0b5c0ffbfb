"""Quota benchmark: how much of a provider's quota a backlog uses, and how many 429s it draws.

Each scenario sends a backlog of requests at once through a Router to the fake provider in
quota mode (`llmroute.testing.QuotaEnforcer`: exact sliding windows, real 429s, Groq-style
headers), over real loopback sockets, the fake on its own event loop in a thread. Time is
scaled: the fake runs with `time_scale=S` and the router on `ScaledClock(S)`, so a
provider minute passes in 60/S real seconds and every figure below is in provider seconds.
The router's connections are opened before each backlog (a warm-up on a model without a
quota), as in a long-running process. The fake forgives an arrival `--grace-ms` (real) early
at a window's edge: the order in which requests arrive over loopback jitters by a
scheduling slice, which the time scale multiplies; (d) also runs against the exact fake.
Scenarios:

- (a) limits configured exactly as the provider enforces them;
- (b) no limits configured, learning from the providers' reports on;
- (c) limits configured 2x too high, learning on and off;
- (d) three Gemini keys, each its own project with its own per-minute quota, configured
  `per_key`; and (d') the same with `per_key` but no numbers, learning from the 429s;
- (e) LiteLLM's Router on (a) and (c), when `.venv-peers` (`make bench-peers`) or the
  current interpreter has LiteLLM. LiteLLM counts real minutes, so (e) runs in real time
  with small counts (`bench/quota_peer.py`), next to llmroute on the same scenarios.

For each: remote 429s (counted by the fake), requests failed, makespan against the
theoretical minimum the provider's quota allows (goodput ratio = minimum / makespan), and
the local waits. Also: the cost of reading the rate-limit headers of one answer.

    python bench/quota.py [--quick] [--scale 20] [--grace-ms 10] [--no-peers]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import math
import os
import platform
import subprocess
import sys
import timeit
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from quota_report import markdown, write_results

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
PEERS_PYTHON = ROOT / ".venv-peers" / "bin" / "python"

GROQ_MODEL = "llama-3.1-8b-instant"
GEMINI_MODEL = "gemini-2.5-flash"
KEYS = ("bench-key-1", "bench-key-2", "bench-key-3")
#: a model the fake enforces no quota on, to open the connections before the backlog
WARM_UP_MODEL = "warm-up"


@dataclass
class Scenario:
    name: str
    title: str
    provider: str  # "groq" | "gemini"
    #: the provider's real per-minute request quota (per key for gemini)
    rpm: int
    requests: int
    #: the router's limits.yaml entry for the model (None: none)
    limits: dict[str, Any] | None
    learn: bool = True
    keys: int = 1


@dataclass
class Outcome:
    name: str
    title: str
    requests: int
    ok: int = 0
    failed: int = 0
    remote_429: int = 0
    makespan_s: float = 0.0
    minimum_s: float = 0.0
    goodput: float = 0.0
    waited_requests: int = 0
    waited_total_s: float = 0.0
    waited_max_s: float = 0.0
    attempts: int = 0
    first_error: str | None = None
    refused_by: dict[str, int] = field(default_factory=dict)
    client: str = "llmroute"
    clock: str = ""


def scenarios(requests: int) -> list[Scenario]:
    exact = {"rpm": 30}
    return [
        Scenario("a", "(a) limits exact", "groq", 30, requests, exact),
        Scenario("b", "(b) no limits, learning", "groq", 30, requests, None),
        Scenario("c-learn", "(c) limits 2x high, learning", "groq", 30, requests, {"rpm": 60}),
        Scenario(
            "c-off", "(c) limits 2x high, no learning", "groq", 30, requests, {"rpm": 60}, False
        ),
        Scenario(
            "d",
            "(d) 3 Gemini keys, per_key",
            "gemini",
            10,
            requests * 3 // 5,
            {"rpm": 10, "per_key": True},
            keys=3,
        ),
        Scenario(
            "d-learn",
            "(d') 3 Gemini keys, per_key, no numbers, learning",
            "gemini",
            10,
            requests * 3 // 5,
            {"per_key": True},
            keys=3,
        ),
    ]


def minimum_makespan(requests: int, per_minute: int, latency: float) -> float:
    """The provider's windows allow `per_minute` requests in any trailing minute: a backlog
    goes out in batches a minute apart, the last answered one latency later."""
    return (math.ceil(requests / per_minute) - 1) * 60.0 + latency


def router_config(sc: Scenario, openai_url: str, gemini_url: str) -> tuple[dict, dict]:
    models: dict[str, Any] = {
        "providers": {
            "groq": {"type": "openai_compatible", "base_url": openai_url, "api_key": KEYS[0]},
            "google_ai_studio": {
                "type": "google_ai_studio",
                "base_url": gemini_url,
                "api_keys": list(KEYS[: sc.keys]),
                "rotation": {"strategy": "round_robin"},
            },
        },
        "models": {
            f"groq/{GROQ_MODEL}": {"provider": "groq", "model": GROQ_MODEL},
            "groq/warm-up": {"provider": "groq", "model": WARM_UP_MODEL},
            f"google_ai_studio/{GEMINI_MODEL}": {
                "provider": "google_ai_studio",
                "model": GEMINI_MODEL,
            },
        },
    }
    target = f"groq/{GROQ_MODEL}" if sc.provider == "groq" else f"google_ai_studio/{GEMINI_MODEL}"
    limits: dict[str, Any] = {
        # A backlog waits for its turn: the longest wait is the whole run.
        "strategy": {"on_limit": "sleep", "max_wait_seconds": 3600, "max_attempts": 20},
        "models": {target: sc.limits} if sc.limits else {},
    }
    if not sc.learn:
        limits["learn_from_headers"] = False
    return models, limits


@contextlib.asynccontextmanager
async def provider(
    quota: Any, latency: float, scale: float, clock: Any, inprocess: bool
) -> AsyncIterator[tuple[str, str, Any]]:
    """(OpenAI base URL, Gemini base URL, the router's http_client or None)."""
    from llmroute.testing import FakeScript, FakeTransport, Reply, serve_in_thread

    if inprocess:
        import httpx

        script = FakeScript(record=False)
        # the transport waits on the clock: latency in provider seconds
        script.set_default(None, Reply(text="ok", latency=latency * scale))
        transport = FakeTransport(script, clock=clock, quota=quota)
        async with httpx.AsyncClient(transport=transport) as client:
            yield "http://fake.test/v1", "http://fake.test/v1beta", client
        return
    # The fake runs on its own event loop (a thread), as a provider would: requests are
    # stamped when they arrive, not when the router's loop lets the server run.
    with serve_in_thread(quota=quota, latency=latency) as server:
        yield server.openai_base_url, server.gemini_base_url, None


async def run_llmroute(
    sc: Scenario,
    scale: float,
    latency: float,
    cache_dir: Path,
    inprocess: bool = False,
    grace_ms: float = 0.0,
) -> Outcome:
    from llmroute import Router
    from llmroute.testing import Quota, QuotaEnforcer, ScaledClock

    quota = QuotaEnforcer(
        {
            GROQ_MODEL: Quota(rpm=sc.rpm, tpm=100_000, rpd=14_400, per_key=False),
            GEMINI_MODEL: Quota(rpm=sc.rpm, tpm=250_000, rpd=250, per_key=True),
        },
        time_scale=scale,
        grace=grace_ms / 1000 * scale,
    )
    clock = ScaledClock(scale)
    target = f"groq/{GROQ_MODEL}" if sc.provider == "groq" else f"google_ai_studio/{GEMINI_MODEL}"
    async with provider(quota, latency, scale, clock, inprocess) as (openai, gemini, client):
        models, limits = router_config(sc, openai, gemini)
        router = Router(
            models, limits, env_file=None, cache_dir=cache_dir, clock=clock, http_client=client
        )
        out = Outcome(
            sc.name,
            sc.title,
            sc.requests,
            clock=f"scaled x{scale:g}" + (", in-process" if inprocess else ""),
        )
        now = clock.now
        async with router:
            # A long-running process has its connections open: open them first, so the
            # first batch does not reach the provider a connection set-up later than the
            # next ones (which the provider would count against the gap between them).
            await asyncio.gather(
                *(router.complete("groq/warm-up", "warm up") for _ in range(sc.requests))
            )
            start = now()

            async def one(i: int) -> None:
                try:
                    c = await router.complete(target, f"request {i}: say hi")
                except Exception as exc:
                    out.failed += 1
                    out.first_error = out.first_error or f"{type(exc).__name__}: {exc}"[:200]
                    attempts = getattr(exc, "attempts", [])
                else:
                    out.ok += 1
                    attempts = c.attempts
                waited = sum(a.waited_s for a in attempts)
                out.attempts += sum(1 for a in attempts if a.status is not None)
                if waited > 0:
                    out.waited_requests += 1
                    out.waited_total_s += waited
                    out.waited_max_s = max(out.waited_max_s, waited)

            await asyncio.gather(*(one(i) for i in range(sc.requests)))
            out.makespan_s = now() - start
    out.remote_429 = quota.refused
    out.refused_by = {
        f"{m}#{KEYS.index(k) if k else '*'}": n for (m, k), n in quota.refused_by.items()
    }
    capacity = sc.rpm * sc.keys
    out.minimum_s = minimum_makespan(sc.requests, capacity, latency * scale)
    out.goodput = out.minimum_s / out.makespan_s if out.makespan_s else 0.0
    return out


def header_parse_cost(n: int = 200_000) -> dict[str, float]:
    """Microseconds per answer to read (and, when worth it, parse) the rate-limit headers."""
    import httpx
    from multidict import CIMultiDict, CIMultiDictProxy

    from llmroute.limiter.learn import parse_headers, read_headers, worth_parsing

    raw = {
        "content-type": "application/json",
        "date": "Thu, 01 Jan 2026 00:00:00 GMT",
        "x-request-id": "req_0001",
        "x-ratelimit-limit-requests": "14400",
        "x-ratelimit-limit-tokens": "6000",
        "x-ratelimit-remaining-requests": "14321",
        "x-ratelimit-remaining-tokens": "5800",
        "x-ratelimit-reset-requests": "7m41.52s",
        "x-ratelimit-reset-tokens": "5.73s",
    }
    plain = {k: v for k, v in raw.items() if not k.startswith("x-ratelimit")}
    known = ("14400", "6000")
    aio = CIMultiDictProxy(CIMultiDict(raw))
    aio_plain = CIMultiDictProxy(CIMultiDict(plain))
    hx = httpx.Headers(raw)
    hx_plain = httpx.Headers(plain)

    def common(headers: Any) -> None:
        found = read_headers(headers)
        if found is not None and worth_parsing(found, known):
            found.parse(1.7e9)

    def per_call(fn: Any, arg: Any) -> float:
        best = min(timeit.repeat(lambda: fn(arg), number=n, repeat=5))
        return best / n * 1e6

    return {
        "aiohttp_headers_us": per_call(common, aio),
        "aiohttp_no_headers_us": per_call(common, aio_plain),
        "httpx_headers_us": per_call(common, hx),
        "httpx_no_headers_us": per_call(common, hx_plain),
        "full_parse_us": per_call(lambda h: parse_headers(h, 1.7e9), aio),
    }


def peers_python() -> str | None:
    if PEERS_PYTHON.exists():
        return str(PEERS_PYTHON)
    try:
        import litellm  # noqa: F401
    except ImportError:
        return None
    return sys.executable


def run_peers(python: str, per_minute: int, requests: int, latency: float) -> list[Outcome]:
    """LiteLLM's Router and llmroute on (a) and (c), in real time, side by side."""
    proc = subprocess.run(
        [
            sys.executable,
            str(BENCH_DIR / "quota_peer.py"),
            "--peers-python",
            python,
            "--rpm",
            str(per_minute),
            "--requests",
            str(requests),
            "--latency",
            str(latency),
        ],
        capture_output=True,
        text=True,
        timeout=15 * 60,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("[")]
    if proc.returncode != 0 or not lines:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        print(f"peer run failed: {tail}", file=sys.stderr)
        return []
    return [Outcome(**row) for row in json.loads(lines[-1])]


def meta(args: argparse.Namespace) -> dict[str, Any]:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "commit": commit or None,
        "scale": args.scale,
        "rpm": 30,
        "latency_ms": args.latency_ms,
        "grace_ms": args.grace_ms,
    }


async def run_all(args: argparse.Namespace, cache_dir: Path) -> list[Outcome]:
    runs = [(sc, args.grace_ms) for sc in scenarios(args.requests)]
    if args.grace_ms and not args.quick:
        # The same against the exact fake: what the arrival jitter costs at a window's edge.
        runs += [(sc, 0.0) for sc in scenarios(args.requests) if sc.name == "d"]
    outcomes = []
    for sc, grace in runs:
        if args.only and sc.name not in args.only.split(","):
            continue
        print(f"{sc.title} (grace {grace:g} ms) ...", file=sys.stderr, flush=True)
        outcome = await run_llmroute(
            sc, args.scale, args.latency_ms / 1000, cache_dir, args.inprocess, grace
        )
        if grace != args.grace_ms:
            outcome.clock += ", exact fake"
        print(f"  {json.dumps(asdict(outcome))}", file=sys.stderr, flush=True)
        outcomes.append(outcome)
    return outcomes


def render(path: Path) -> None:
    """Write the markdown and the chart again from a saved quota.json (`--render`)."""
    result = json.loads(path.read_text())
    write_results(result, path.parent)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller backlogs, no peers")
    parser.add_argument("--scale", type=float, default=20.0, help="provider seconds per second")
    parser.add_argument("--requests", type=int, help="backlog size of the groq scenarios")
    parser.add_argument("--latency-ms", type=float, default=5.0, help="fake answer latency")
    parser.add_argument("--no-peers", action="store_true", help="skip the real-time peer runs")
    parser.add_argument("--only", help="comma-separated scenario names")
    parser.add_argument(
        "--grace-ms",
        type=float,
        default=10.0,
        help="real ms by which the fake forgives an early arrival (0: exact); see the notes",
    )
    parser.add_argument(
        "--inprocess",
        action="store_true",
        help="the fake as an httpx transport in the router's process (no sockets)",
    )
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results")
    parser.add_argument("--render", type=Path, help="only re-render a saved quota.json")
    args = parser.parse_args(argv)
    if args.render is not None:
        render(args.render)
        return 0
    if args.requests is None:
        args.requests = 60 if args.quick else 120
    import tempfile

    result: dict[str, Any] = {"meta": meta(args), "notes": []}
    with tempfile.TemporaryDirectory() as cache:
        outcomes = asyncio.run(run_all(args, Path(cache)))
    python = None if args.quick or args.no_peers or args.only else peers_python()
    if python is not None:
        print("(e) LiteLLM and llmroute in real time ...", file=sys.stderr, flush=True)
        outcomes += run_peers(python, per_minute=6, requests=18, latency=args.latency_ms / 1000)
    elif not (args.quick or args.no_peers or args.only):
        result["notes"].append(
            "(e) skipped: LiteLLM is not installed (`make bench-peers` builds .venv-peers)"
        )
    result["scenarios"] = [asdict(o) for o in outcomes]
    result["header_parse"] = header_parse_cost(20_000 if args.quick else 200_000)
    write_results(result, args.out)
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
