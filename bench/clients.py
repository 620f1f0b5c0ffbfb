"""One benchmark client run, in a fresh interpreter; prints one JSON line of results.

Every client does the same work per call: build the chat request body, send it, read and
parse the JSON answer, take the text out. Clients:

- `llmroute`: `Router.complete` with one `openai_compatible` provider and no limits;
- `httpx`: `httpx.AsyncClient()` with its default transport;
- `aiohttp`: `aiohttp.ClientSession()`, the fastest Python client and the floor here;
- `httpx_aiohttp`: `httpx.AsyncClient` over `httpx_aiohttp.AiohttpTransport`;
- `aiohttp_client`: `llmroute._transport.AiohttpClient` used the way the adapters use it;
- `llmroute_aiohttp`: `Router(http_client=AiohttpClient())`, llmroute on that client;
- `litellm`: LiteLLM's `Router.acompletion`, when LiteLLM is importable;
- `llmroute_mock`, `httpx_mock`: the same over `httpx.MockTransport` (no network), so the
  difference between them is the routing work alone.

Modes: `seq` (one call at a time), `conc` (`--concurrency` workers) and `stream`
(sequential streams; time to the first non-empty text delta). A run warms up first, then
measures for `--seconds` or `--max-requests`, whichever comes first, and always stops.

    python bench/clients.py --client httpx --url http://127.0.0.1:8000/v1 --mode conc -c 50
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

# This script runs as `python bench/clients.py`, so bench/ is on sys.path.
from imports import peak_rss_mb
from server import COMPLETION

MODEL = "bench-model"
TARGET = "bench/model"
PROMPT = "Hello"
MESSAGES = [{"role": "user", "content": PROMPT}]
HEADERS = {"authorization": "Bearer bench-dummy-key"}

Call = Callable[[], Awaitable[str]]
StreamCall = Callable[[], AsyncIterator[str]]


class Skip(Exception):
    """The client cannot run here (an optional package is missing)."""


def router_config(base_url: str) -> dict[str, Any]:
    """The bench's models mapping: one OpenAI-compatible provider at the fake server."""
    return {
        "providers": {
            "bench": {"type": "openai_compatible", "base_url": base_url, "api_key": "bench-dummy"}
        },
        "models": {TARGET: {"provider": "bench", "model": MODEL}},
    }


def _delta_text(data: str) -> str:
    if data == "[DONE]":
        return ""
    choices = json.loads(data).get("choices") or [{}]
    return choices[0].get("delta", {}).get("content") or ""


@contextlib.asynccontextmanager
async def make_client(name: str, base_url: str) -> AsyncIterator[tuple[Call, StreamCall | None]]:
    url = base_url + "/chat/completions"
    if name in ("llmroute", "llmroute_mock", "llmroute_aiohttp"):
        import httpx

        from llmroute import Router

        http_client: Any = None
        if name == "llmroute_aiohttp":
            from llmroute._transport import AiohttpClient

            http_client = AiohttpClient()
        elif name == "llmroute_mock":

            def handler(request: httpx.Request) -> httpx.Response:
                return httpx.Response(
                    200, content=COMPLETION, headers={"content-type": "application/json"}
                )

            http_client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        with tempfile.TemporaryDirectory() as cache_dir:
            router = Router(
                models=router_config(base_url),
                limits={},
                env_file=None,
                cache_dir=cache_dir,
                http_client=http_client,
            )
            async with router:

                async def call() -> str:
                    return (await router.complete(TARGET, PROMPT)).text

                async def stream() -> AsyncIterator[str]:
                    async for chunk in router.stream(TARGET, PROMPT):
                        yield chunk.text

                yield call, stream
            if http_client is not None:
                await http_client.aclose()
    elif name in ("httpx", "httpx_mock", "httpx_aiohttp"):
        import httpx

        transport: httpx.AsyncBaseTransport | None = None
        if name == "httpx_mock":
            transport = httpx.MockTransport(
                lambda request: httpx.Response(
                    200, content=COMPLETION, headers={"content-type": "application/json"}
                )
            )
        elif name == "httpx_aiohttp":
            from httpx_aiohttp import AiohttpTransport

            transport = AiohttpTransport()
        async with httpx.AsyncClient(transport=transport) as client:

            async def call() -> str:
                response = await client.post(
                    url, json={"model": MODEL, "messages": MESSAGES}, headers=HEADERS
                )
                response.raise_for_status()
                text: str = response.json()["choices"][0]["message"]["content"]
                return text

            async def stream() -> AsyncIterator[str]:
                body = {"model": MODEL, "messages": MESSAGES, "stream": True}
                async with client.stream("POST", url, json=body, headers=HEADERS) as response:
                    response.raise_for_status()
                    async for line in response.aiter_lines():
                        if line.startswith("data:"):
                            yield _delta_text(line[5:].strip())

            yield call, (None if name == "httpx_mock" else stream)
    elif name == "aiohttp_client":
        from llmroute._transport import AiohttpClient

        wire = AiohttpClient()
        headers = {"content-type": "application/json", **HEADERS}

        async def call() -> str:
            body = json.dumps({"model": MODEL, "messages": MESSAGES}).encode()
            response = await wire.post(url, content=body, headers=headers, timeout=60.0)
            if response.status_code != 200:
                raise RuntimeError(f"HTTP {response.status_code}")
            text: str = response.json()["choices"][0]["message"]["content"]
            return text

        async def stream() -> AsyncIterator[str]:
            body = json.dumps({"model": MODEL, "messages": MESSAGES, "stream": True}).encode()
            async with wire.stream(
                "POST", url, content=body, headers=headers, timeout=60.0
            ) as response:
                async for line in response.aiter_lines():
                    if line.startswith("data:"):
                        yield _delta_text(line[5:].strip())

        try:
            yield call, stream
        finally:
            await wire.aclose()
    elif name == "aiohttp":
        import aiohttp

        async with aiohttp.ClientSession() as session:

            async def call() -> str:
                async with session.post(
                    url, json={"model": MODEL, "messages": MESSAGES}, headers=HEADERS
                ) as response:
                    response.raise_for_status()
                    text: str = (await response.json())["choices"][0]["message"]["content"]
                    return text

            async def stream() -> AsyncIterator[str]:
                body = {"model": MODEL, "messages": MESSAGES, "stream": True}
                async with session.post(url, json=body, headers=HEADERS) as response:
                    response.raise_for_status()
                    async for raw in response.content:
                        line = raw.decode().strip()
                        if line.startswith("data:"):
                            yield _delta_text(line[5:].strip())

            yield call, stream
    elif name == "litellm":
        try:
            import litellm
        except ImportError as exc:
            raise Skip("LiteLLM is not installed (optional)") from exc
        litellm.suppress_debug_info = True
        router = litellm.Router(
            model_list=[
                {
                    "model_name": TARGET,
                    "litellm_params": {
                        "model": f"openai/{MODEL}",
                        "api_base": base_url,
                        "api_key": "bench-dummy",
                    },
                }
            ]
        )

        async def call() -> str:
            response = await router.acompletion(model=TARGET, messages=MESSAGES)
            return str(response.choices[0].message.content)

        async def stream() -> AsyncIterator[str]:
            response = await router.acompletion(model=TARGET, messages=MESSAGES, stream=True)
            async for chunk in response:
                yield chunk.choices[0].delta.content or ""

        yield call, stream
    else:
        raise SystemExit(f"unknown client {name!r}")


async def drive(
    call: Call, concurrency: int, seconds: float, max_requests: int
) -> tuple[list[float], int, str | None, float]:
    """Run `call` from `concurrency` workers until the time or count runs out.

    Returns per-call latencies (s), the error count, the first error, and the wall time.
    """
    latencies: list[float] = []
    errors = 0
    first_error: str | None = None
    issued = 0
    perf = time.perf_counter
    deadline = perf() + seconds

    async def worker() -> None:
        nonlocal issued, errors, first_error
        while issued < max_requests and perf() < deadline:
            issued += 1
            started = perf()
            try:
                await call()
            except Exception as exc:
                errors += 1
                if first_error is None:
                    first_error = f"{type(exc).__name__}: {exc}"[:300]
                continue
            latencies.append(perf() - started)

    started = perf()
    # A hard stop well past the soft one, in case a call hangs.
    await asyncio.wait_for(
        asyncio.gather(*(worker() for _ in range(concurrency))), timeout=seconds + 30
    )
    return latencies, errors, first_error, perf() - started


async def first_chunk_times(
    stream: StreamCall, seconds: float, max_requests: int
) -> tuple[list[float], list[float], int, str | None]:
    """Sequential streams: time to the first non-empty text delta, and to the stream's end."""
    ttfc: list[float] = []
    totals: list[float] = []
    errors = 0
    first_error: str | None = None
    perf = time.perf_counter
    deadline = perf() + seconds
    count = 0
    while count < max_requests and perf() < deadline:
        count += 1
        started = perf()
        first: float | None = None
        try:
            async for text in stream():
                if first is None and text:
                    first = perf() - started
        except Exception as exc:
            errors += 1
            if first_error is None:
                first_error = f"{type(exc).__name__}: {exc}"[:300]
            continue
        totals.append(perf() - started)
        if first is not None:
            ttfc.append(first)
    return ttfc, totals, errors, first_error


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100.0 * len(ordered) + 0.5)))
    return ordered[rank - 1]


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {
        "client": args.client,
        "mode": args.mode,
        "concurrency": args.concurrency if args.mode == "conc" else 1,
    }
    async with make_client(args.client, args.url) as (call, stream):
        concurrency = args.concurrency if args.mode == "conc" else 1
        if args.mode == "stream":
            if stream is None:
                raise Skip("no streaming for this client")
            await first_chunk_times(stream, args.warmup_seconds, args.warmup_requests)
            gc.collect()
            cpu0 = time.process_time()
            ttfc, totals, errors, first_error = await first_chunk_times(
                stream, args.seconds, args.max_requests
            )
            cpu = time.process_time() - cpu0
            result.update(
                n=len(totals),
                errors=errors,
                first_error=first_error,
                ttfc_p50_ms=_ms(_pct(ttfc, 50)),
                ttfc_p99_ms=_ms(_pct(ttfc, 99)),
                total_p50_ms=_ms(_pct(totals, 50)),
                cpu_us_per_req=cpu / max(1, len(totals) + errors) * 1e6,
            )
        else:
            await drive(call, concurrency, args.warmup_seconds, args.warmup_requests)
            gc.collect()
            cpu0 = time.process_time()
            latencies, errors, first_error, wall = await drive(
                call, concurrency, args.seconds, args.max_requests
            )
            cpu = time.process_time() - cpu0
            done = len(latencies)
            result.update(
                n=done,
                errors=errors,
                first_error=first_error,
                wall_s=wall,
                rps=done / wall if wall > 0 else None,
                p50_ms=_ms(_pct(latencies, 50)),
                p99_ms=_ms(_pct(latencies, 99)),
                cpu_us_per_req=cpu / max(1, done + errors) * 1e6,
            )
    result["maxrss_mb"] = peak_rss_mb()
    return result


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000.0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--client", required=True)
    parser.add_argument("--url", default="http://127.0.0.1:1/v1", help="the server's /v1 URL")
    parser.add_argument("--mode", choices=("seq", "conc", "stream"), default="seq")
    parser.add_argument("-c", "--concurrency", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--max-requests", type=int, default=100_000)
    parser.add_argument("--warmup-seconds", type=float, default=0.3)
    parser.add_argument("--warmup-requests", type=int, default=200)
    args = parser.parse_args(argv)
    try:
        result = asyncio.run(main_async(args))
    except Skip as exc:
        result = {"client": args.client, "mode": args.mode, "skipped": str(exc)}
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
