"""Every fault x both wires x complete and stream, through a Router on its own client and
on a user's `httpx.AsyncClient`.

For every case: it ends in a result or a typed llmroute error within deadline + 0.25 s;
no secret (keys, a header value, a base_url part, all from `${VAR}`) and no 8-character
fragment of one appears in any error, attempt row or DEBUG log line; nothing is warned;
no connection, task or child process is left once the router is closed. The eight cases
of one fault run concurrently, so the suite takes about one deadline per slow fault.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from llmroute import Router
from llmroute.errors import LLMRouteError
from llmroute.testing import FAULTS, FaultServer

from .helpers import GEM, OAI, WIRES, child_pids, exception_texts, leaked, models_config, until

DEADLINE = 1.0
#: what the contract allows past the deadline
GRACE = 0.25
#: a case still running this long after its deadline is stopped, so a broken one cannot
#: hang the suite (it then fails on its time)
GUARD = 3.0
FULL_TEXT = "The quick brown fox jumps over the lazy dog."


@dataclass
class Case:
    router: Router
    client: str  # "own" | "httpx"
    target: str
    mode: str  # "complete" | "stream"
    texts: list[str] = field(default_factory=list)
    elapsed: float = 0.0
    text: str | None = None  # the answer, when there was one
    error: BaseException | None = None

    @property
    def name(self) -> str:
        return f"{self.client}/{WIRES[self.target]}/{self.mode}"


async def run_case(case: Case) -> None:
    started = time.monotonic()
    try:
        async with asyncio.timeout(DEADLINE + GUARD):
            await _call(case.router, case)
    except BaseException as exc:  # every kind is judged below, not just the expected ones
        case.error = exc
        case.texts += exception_texts(exc)
    case.elapsed = time.monotonic() - started


async def _call(router: Router, case: Case) -> None:
    if case.mode == "complete":
        completion = await router.complete(case.target, "hi", deadline=DEADLINE)
        case.text = completion.text
        case.texts.append(repr(completion))
    else:
        pieces: list[str] = []
        async for chunk in router.stream(case.target, "hi", deadline=DEADLINE):
            pieces.append(chunk.text)
            case.texts.append(repr(chunk))
        case.text = "".join(pieces)


def judge(fault: str, case: Case) -> list[str]:
    """What is wrong with one case, in words."""
    problems: list[str] = []
    if case.elapsed > DEADLINE + GRACE:
        problems.append(f"took {case.elapsed:.2f}s, past deadline {DEADLINE}s + {GRACE}s")
    if case.error is not None and not isinstance(case.error, LLMRouteError):
        problems.append(f"ended in a bare {type(case.error).__name__}: {case.error}")
    if fault == "ok":
        if case.text != FULL_TEXT:
            problems.append(f"the control case gave {case.text!r} ({case.error!r})")
    elif case.error is None:
        problems.append(f"a fault was accepted as a good answer: {case.text!r}")
    leaks = leaked("\n".join(case.texts))
    if leaks:
        problems.append(f"secrets in its error, trace or result: {leaks}")
    return problems


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    from .helpers import SECRET_ENV

    for name, value in SECRET_ENV.items():
        monkeypatch.setenv(name, value)


@pytest.mark.usefixtures("secret_env")
@pytest.mark.parametrize("fault", FAULTS)
async def test_fault(fault: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    tasks_before = asyncio.all_tasks()
    children_before = set(child_pids())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        async with FaultServer(drip=0.4, gap=0.7, tick=0.05) as server:
            user_client = httpx.AsyncClient(trust_env=False)
            routers = {
                client: Router(
                    models_config(server, fault),
                    {},
                    env_file=None,
                    cache_dir=tmp_path / client,
                    http_client=user_client if client == "httpx" else None,
                )
                for client in ("own", "httpx")
            }
            cases = [
                Case(router, client, target, mode)
                for client, router in routers.items()
                for target in (OAI, GEM)
                for mode in ("complete", "stream")
            ]
            texts = [text for r in routers.values() for text in (repr(r), repr(r.config))]
            try:
                await asyncio.gather(*(run_case(case) for case in cases))
                texts += [repr(r.usage()) for r in routers.values()]
            finally:
                for router in routers.values():
                    await router.aclose()
                await user_client.aclose()
            connections_closed = await until(lambda: server.open_connections == 0)
        gc.collect()
        # Objects the collector finalised close their async generators through short tasks
        # of their own: a task that ends within a second is clean-up, one that stays a leak.
        await until(lambda: not asyncio.all_tasks() - tasks_before, seconds=1.0)
    report = {case.name: judge(fault, case) for case in cases}
    # httpx's own records included: a user's httpx client logs each request URL at INFO,
    # and the router masks the base_url secrets in them while it is open.
    logged = [r.getMessage() for r in caplog.records]
    logged += [r.exc_text or "" for r in caplog.records]
    report["log lines"] = [f"secret: {found}" for found in leaked("\n".join(logged))]
    report["reprs"] = [f"secret: {found}" for found in leaked("\n".join(texts))]
    report["warnings"] = [str(w.message) for w in caught]
    report["asyncio/aiohttp logs"] = [
        r.getMessage() for r in caplog.records if r.name.split(".")[0] in ("asyncio", "aiohttp")
    ]
    if not connections_closed:
        report["connections"] = [f"{server.open_connections} left open"]
    report["tasks"] = [repr(t) for t in asyncio.all_tasks() - tasks_before]
    report["child processes"] = [str(p) for p in set(child_pids()) - children_before]
    assert {where: found for where, found in report.items() if found} == {}
