"""What a benchmark run measures, and how long, for each of `--smoke`, `--quick` and full."""

from __future__ import annotations

import argparse
import dataclasses

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
