"""What httpx's own per-request objects cost, apart from any network or pool.

The router's hot path builds a request and reads a response per call; these figures say
how much of that is httpx's `AsyncClient` machinery (URL merging, cookies, auth and
redirect flow, event hooks) rather than the bytes on the wire. All over
`httpx.MockTransport` or with no transport at all; microseconds of CPU per operation.

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from server import COMPLETION

URL = "http://127.0.0.1:9/v1/chat/completions"
HEADERS = {"content-type": "application/json", "authorization": "Bearer bench-dummy"}
BODY = {"model": "bench-model", "messages": [{"role": "user", "content": "Hello"}]}


def _time_sync(fn: Callable[[], object], n: int) -> float:
    for _ in range(min(n, 500)):
        fn()
    started = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - started) / n * 1e6


async def _time_async(fn: Callable[[], Awaitable[object]], n: int) -> float:
    for _ in range(min(n, 500)):
        await fn()
    started = time.process_time()
    for _ in range(n):
        await fn()
    return (time.process_time() - started) / n * 1e6


async def main_async(n: int) -> dict[str, Any]:
    import httpx

    body = json.dumps(BODY).encode()
    raw_headers = [(b"content-type", b"application/json")]
    request = httpx.Request("POST", URL, content=body, headers=HEADERS)

    def handler(req: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=COMPLETION, headers=raw_headers)

    transport = httpx.MockTransport(handler)
    results: dict[str, float] = {}
    results["json.dumps(body)"] = _time_sync(lambda: json.dumps(BODY).encode(), n)
    results["json.loads(answer)"] = _time_sync(lambda: json.loads(COMPLETION), n)
    results["httpx.Request(url str, bytes, dict headers)"] = _time_sync(
        lambda: httpx.Request("POST", URL, content=body, headers=HEADERS), n
    )
    results["httpx.Response(bytes) + .json()"] = _time_sync(
        lambda: httpx.Response(
            200, content=COMPLETION, headers=raw_headers, request=request
        ).json(),
        n,
    )

    async def transport_only() -> object:
        response = await transport.handle_async_request(request)
        return await response.aread()

    results["MockTransport.handle_async_request + aread"] = await _time_async(transport_only, n)
    async with httpx.AsyncClient(transport=transport) as client:
        results["AsyncClient.build_request(json=...)"] = _time_sync(
            lambda: client.build_request("POST", URL, json=BODY, headers=HEADERS), n
        )

        async def send_prebuilt() -> object:
            return (await client.send(request)).json()

        async def post_full() -> object:
            return (await client.post(URL, content=body, headers=HEADERS)).json()

        results["AsyncClient.send(prebuilt) + .json()"] = await _time_async(send_prebuilt, n)
        results["AsyncClient.post(...) + .json() (all of it)"] = await _time_async(post_full, n)
    return {"us_per_op": results, "n": n}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20_000)
    args = parser.parse_args(argv)
    print(json.dumps(asyncio.run(main_async(args.n))), flush=True)


if __name__ == "__main__":
    main()
