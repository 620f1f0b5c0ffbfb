"""`llmroute demo`: the whole request pipeline, live, against a fake provider on loopback.

A `FakeProviderServer` (real HTTP on 127.0.0.1, OpenAI-compatible and Gemini wire formats)
is scripted so that every stage of the router shows within a few seconds: a three-key Gemini
pool where one key answers 429 with a RetryInfo hint and another runs out of its daily quota,
a paid model that the gate skips, a model whose tight rpm makes the limiter wait and then
give up, and one 503 that is retried. A real `Router` (default transport, temporary cache
dir, no `.env`) serves a few dozen concurrent requests, and each one is printed as a table
row when it finishes. No key, no network, nothing left running afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import string
import sys
import tempfile
import textwrap
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Final, TextIO

import yaml

from llmroute._demo_tools import script_tool_round_trip, tool_round_trip
from llmroute.errors import LLMRouteError, RequestError
from llmroute.router import Router
from llmroute.stores import Bucket, MemoryStore
from llmroute.testing import (
    FakeProviderServer,
    FakeScript,
    RateLimit,
    Reply,
    ServerError,
)
from llmroute.trace import Attempt, Completion

__all__ = ["run_demo"]

#: obviously fake: the point of the demo is that no real key is needed
_DEMO_KEYS: Final = {
    "GEMINI_KEY_1": "demo-gemini-key-1",
    "GEMINI_KEY_2": "demo-gemini-key-2",
    "GEMINI_KEY_3": "demo-gemini-key-3",
    "GROQ_KEY": "demo-groq-key",
    "OPENROUTER_KEY": "demo-openrouter-key",
}
_GEMINI_WIRE: Final = "gemini-2.5-flash"
_TIGHT_MODEL: Final = "groq/llama-8b"
#: chat, fast and a direct model id, in a fixed rotation so that even a short run meets
#: every scripted event
_TARGET_CYCLE: Final = ("chat", "fast", "chat", "groq/llama-70b", "fast", "chat")
_BURST: Final = 6
_RETRY_DELAY: Final = 2.5
_BURST_GAP: Final = 0.7
#: when the seeded limiter entries leave the tight model's window, in seconds from the start
_SEEDED_FREE_AT: Final = (0.6, 1.2, 1.8, 2.4, 3.0, 3.6)
_PROMPTS: Final = (
    "Summarise the plot of Hamlet in one sentence.",
    "Give me three names for a grey cat.",
    "What is the capital of Australia?",
    "Translate 'good morning' into Italian.",
    "Write a haiku about rate limits.",
    "Explain a sliding window in ten words.",
)
_ANSWERS: Final = (
    "Sure, here is a short answer.",
    "Canberra.",
    "Buongiorno!",
    "Smoke, Ash and Pebble.",
    "Quota drains like rain; the window slides, and I wait.",
    "A prince hesitates to avenge his father and everyone dies.",
)


@dataclass(slots=True)
class _Tally:
    """What the run did, counted from the attempt rows, for the closing legend."""

    outcomes: Counter[str] = field(default_factory=Counter)
    #: requests the tight model's limiter turned away (after waiting, or at once)
    tight_gave_up: int = 0
    served_by: Counter[str] = field(default_factory=Counter)
    rotated: int = 0
    #: remote 429s with a RetryInfo hint, and those for a spent daily quota
    hinted: int = 0
    daily: int = 0
    waited: list[float] = field(default_factory=list)
    fell_back: int = 0
    retried_5xx: int = 0
    failed: int = 0


def _config(values: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The bundled demo config with the server address and fake keys filled in."""
    folder = resources.files("llmroute.demo_config")
    models_text = (folder / "models.yaml").read_text(encoding="utf-8")
    limits_text = (folder / "limits.yaml").read_text(encoding="utf-8")
    # The same ${VAR} syntax as a real config, filled in here rather than through the
    # process environment, so the demo changes nothing outside itself.
    models = yaml.safe_load(string.Template(models_text).substitute(values))
    limits = yaml.safe_load(string.Template(limits_text).substitute(values))
    return models, limits


def _script(rng: random.Random, requests: int) -> FakeScript:
    script = FakeScript(record=False)

    def replies(n: int) -> list[Reply]:
        # Latency drawn per reply, from a seeded generator, so each run looks live and the
        # same seed gives the same run.
        return [
            Reply(text=rng.choice(_ANSWERS), latency=round(rng.uniform(0.05, 0.30), 3))
            for _ in range(n)
        ]

    enough = 3 * requests + 10
    script.script(_GEMINI_WIRE, *replies(enough))
    # Key 2: rate limited at once, with Gemini's RetryInfo hint; the router cools it down
    # for exactly that long and moves the same request to the next key.
    script.script(
        _GEMINI_WIRE,
        RateLimit(retry_delay=_RETRY_DELAY, latency=0.04),
        key=_DEMO_KEYS["GEMINI_KEY_2"],
    )
    # Key 3: three good answers, then its daily quota runs out: cooled until midnight Pacific.
    script.script(
        _GEMINI_WIRE,
        *replies(3),
        RateLimit(per_day=True, latency=0.04),
        key=_DEMO_KEYS["GEMINI_KEY_3"],
    )
    script.script("llama-3.1-8b-instant", *replies(enough))
    # One 503 on the first request to this model: retried on the same model after a backoff.
    script.script(
        "llama-3.3-70b-versatile", ServerError(status=503, latency=0.03), *replies(enough)
    )
    script.script("anthropic/claude-sonnet-4.5", *replies(4))
    script_tool_round_trip(script)
    return script


async def _seed_tight_window(store: MemoryStore, limits: dict[str, Any], start: float) -> None:
    """Fill the tight model's window with requests made just under a minute ago.

    As if the app had been busy then: those requests leave the 60 s window one by one during
    the first seconds of the demo, so the limiter can be seen waiting for room, and giving up
    once the wait would pass max_wait_seconds. The bucket must match the router's own.
    """
    rpm = int(limits["models"][_TIGHT_MODEL]["rpm"])
    bucket = Bucket(name=_TIGHT_MODEL, rpm=rpm)
    for free_at in _SEEDED_FREE_AT[:rpm]:
        await store.acquire([bucket], 1, start - 60.0 + free_at)


@contextlib.contextmanager
def _new_cache_dir_quiet() -> Iterator[None]:
    """Build routers on a brand-new cache dir without the missing-index warning.

    "No key index yet, starting at key 0" is right for a real app and only noise here,
    where the cache dir was created a moment ago.
    """
    log = logging.getLogger("llmroute.keys.persist")
    level = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(level)


def _short(attempt: Attempt) -> str:
    where = attempt.model + (attempt.key[attempt.key.index("#") :] if attempt.key else "")
    error = attempt.error or ""
    words = {
        "ok": "ok",
        "skipped_paid": "paid, skipped",
        "skipped_unavailable": "unavailable",
        "rate_limited_local": "local limit",
        "keys_exhausted": "all keys cooling",
        "timeout": "timeout",
        "transport_error": "connection error",
    }
    if attempt.outcome == "rate_limited_remote":
        word = "429 daily quota" if "PerDay" in error else "429"
    elif attempt.outcome in ("server_error", "client_error"):
        word = str(attempt.status or attempt.outcome)
    else:
        word = words.get(attempt.outcome, attempt.outcome)
    if attempt.waited_s >= 0.01:
        word += f" after {attempt.waited_s:.1f}s wait"
    return f"{where} {word}"


_HEADER: Final = (
    f"{'#':>3} {'start':>6}  {'target':<15} {'served by':<18} {'key':<12} "
    f"{'wait':>5} {'latency':>8}  attempts"
)


def _row(
    n: int, start: float, target: str, completion: Completion | None, error: str | None,
    attempts: Sequence[Attempt],
) -> str:  # fmt: skip
    path = " > ".join(_short(a) for a in attempts)
    waited = sum(a.waited_s for a in attempts)
    if completion is not None:
        ok = completion.attempts[-1]
        served = completion.model
        key = ok.key or "-"
        latency = f"{completion.latency_ms:.0f} ms"
    else:
        served, key, latency = "FAILED", "-", "-"
        path = f"{path} | {error}"
    return (
        f"{n:>3} {start:>5.2f}s  {target:<15} {served:<18} {key:<12} "
        f"{waited:>4.1f}s {latency:>8}  {path}"
    )


def _count(tally: _Tally, attempts: Sequence[Attempt], served: str | None) -> None:
    outcomes = [a.outcome for a in attempts]
    tally.outcomes.update(outcomes)
    if served is not None:
        tally.served_by[served] += 1
    else:
        tally.failed += 1
    tally.waited.extend(a.waited_s for a in attempts if a.waited_s >= 0.01)
    tally.tight_gave_up += sum(
        a.model == _TIGHT_MODEL and a.outcome == "rate_limited_local" for a in attempts
    )
    models = [a.model for a in attempts if a.outcome != "skipped_paid"]
    if len(set(models)) > 1:
        tally.fell_back += 1
    _count_retries(tally, attempts)


def _count_retries(tally: _Tally, attempts: Sequence[Attempt]) -> None:
    """Same-model moves after a 429 (another key) or a 5xx (a retry), and the 429 kinds."""
    for before, after in itertools.pairwise(attempts):
        if before.outcome == "rate_limited_remote" and after.model == before.model:
            tally.rotated += 1
        if before.outcome == "server_error" and after.model == before.model:
            tally.retried_5xx += 1
    for attempt in attempts:
        if attempt.outcome == "rate_limited_remote":
            if "PerDay" in (attempt.error or ""):
                tally.daily += 1
            else:
                tally.hinted += 1


async def _one(
    router: Router, n: int, target: str, prompt: str, delay: float, t0: float,
    out: TextIO, tally: _Tally,
) -> None:  # fmt: skip
    await asyncio.sleep(delay)
    start = time.perf_counter() - t0
    completion: Completion | None = None
    error: str | None = None
    attempts: Sequence[Attempt] = ()
    try:
        completion = await router.complete(target, prompt, max_tokens=64)
        attempts = completion.attempts
    except RequestError as exc:
        error = f"{type(exc).__name__}: {exc}"
        attempts = exc.attempts
    except LLMRouteError as exc:
        error = f"{type(exc).__name__}: {exc}"
    _count(tally, attempts, completion.model if completion else None)
    out.write(_row(n, start, target, completion, error, attempts) + "\n")
    out.flush()


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{int(seconds // 3600)}h {int(seconds % 3600 // 60):02d}m"
    if seconds >= 60:
        return f"{int(seconds // 60)}m {int(seconds % 60):02d}s"
    return f"{seconds:.1f}s"


async def _print_keys(router: Router, cache_dir: Path, out: TextIO) -> None:
    out.write("\nKey pools  (router.key_status(); the index persists in cache_dir)\n")
    for provider, status in (await router.key_status()).items():
        if status["keys"] < 2:
            continue
        file = cache_dir / f"{provider}.keyidx"
        persisted = file.read_text().strip() if file.is_file() else "not written yet"
        out.write(
            f"  {provider}: {status['keys']} keys, {status['strategy']}, next key "
            f"{provider}#{status['index']} (file {file.name}: {persisted})\n"
        )
        for where, left in sorted(status["cooling"].items()):
            out.write(f"    cooling  {where:<28} {_duration(left)} left\n")
        for label in status["disabled"]:
            out.write(f"    disabled {label}\n")


def _print_usage(router: Router, out: TextIO) -> None:
    out.write("\nUsage  (router.usage())\n")
    out.write(
        f"  {'model':<18} {'requests':>8} {'prompt tok':>10} {'compl. tok':>10} "
        f"{'errors':>6} {'cost $':>8}\n"
    )
    for model, usage in sorted(router.usage().items()):
        out.write(
            f"  {model:<18} {usage.requests:>8} {usage.prompt_tokens:>10} "
            f"{usage.completion_tokens:>10} {usage.errors:>6} {usage.cost:>8.4f}\n"
        )


def _n(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def _legend(tally: _Tally, total: int, elapsed: float, limits: dict[str, Any]) -> str:
    tight = limits["models"][_TIGHT_MODEL]
    gemini = limits["models"]["gemini/flash"]
    waits = tally.waited
    gemini_full = tally.outcomes["rate_limited_local"] - tally.tight_gave_up
    cooled = []
    if tally.hinted:
        cooled.append(f"a 429 with a RetryInfo hint cooled its key for {_RETRY_DELAY:g}s")
    if tally.daily:
        cooled.append("a spent daily quota cooled its key until midnight Pacific")
    rotation = (
        f"  - Key rotation: HTTP 429 {_n(tally.outcomes['rate_limited_remote'], 'time')}, "
        f"and {tally.rotated} of those moved the same request straight on to the next key"
        + (f" ({'; '.join(cooled)})." if cooled else ".")
    )
    limiter = (
        f"  - Limiter: {_TIGHT_MODEL} allows {tight['rpm']} requests a minute and its window "
        "was already full: "
        + (
            f"{_n(len(waits), 'request')} waited for it to slide (longest {max(waits):.1f}s)"
            if waits
            else "no request had to wait this time"
        )
        + f", {tally.tight_gave_up} gave up (max_wait_seconds: {tight['max_wait_seconds']}) "
        "and fell back."
    )
    if gemini_full:
        limiter += (
            f" gemini/flash allows {gemini['rpm']} a minute per key with on_limit: fallback, "
            f"so {_n(gemini_full, 'time')} a full key pool moved on at once."
        )
    lines = [
        "",
        "What you just saw",
        f"  {total} requests, {total - tally.failed} served, in {elapsed:.1f}s, by one real "
        "Router over real HTTP on 127.0.0.1.",
        f"  - Paid gate: openrouter/sonnet is paid, so 'chat' skipped it "
        f"{_n(tally.outcomes['skipped_paid'], 'time')} (USE_PAID_MODELS is off); the last row "
        "shows it serving once paid models are on.",
        rotation,
        limiter,
        f"  - Retries: {_n(tally.retried_5xx, 'HTTP 503 answer')} retried on the same model "
        "after a short backoff.",
        f"  - Fallbacks: {_n(tally.fell_back, 'request')} served by a later candidate of "
        "the chain.",
        "  Each row is Completion.attempts: one entry per model or key tried (slot labels, "
        "never a key).",
    ]
    wrapped = [
        textwrap.fill(line, width=100, subsequent_indent="    ") if line.startswith("  ") else line
        for line in lines
    ]
    return "\n".join(wrapped) + "\n"


async def run_demo(*, requests: int = 36, seed: int = 7, out: TextIO | None = None) -> int:
    """Run the demo and print it to `out` (stdout); the exit status (0, or 1 if any
    request failed unexpectedly)."""
    out = out if out is not None else sys.stdout
    if requests < 1:
        raise ValueError("requests: at least 1")
    rng = random.Random(seed)
    script = _script(rng, requests)
    t_begin = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="llmroute-demo-") as tmp:
        cache_dir = Path(tmp)
        async with FakeProviderServer(script) as server:
            values = {
                "OPENAI_URL": server.openai_base_url,
                "GEMINI_URL": server.gemini_base_url,
                **_DEMO_KEYS,
            }
            models, limits = _config(values)
            store = MemoryStore()
            out.write(
                f"llmroute demo: fake OpenAI-compatible + Gemini provider on {server.base_url}\n"
                f"  routes: chat = {' > '.join(models['routes']['chat'])}\n"
                f"          fast = {' > '.join(models['routes']['fast'])}\n"
                f"  {requests} requests in bursts of {_BURST}, {_BURST_GAP}s apart "
                f"(seed {seed})\n\n"
            )
            out.write(_HEADER + "\n")
            out.flush()
            with _new_cache_dir_quiet():
                router = Router(
                    models,
                    limits,
                    env_file=None,
                    cache_dir=cache_dir,
                    use_paid_models=False,
                    store=store,
                )
            async with router:
                t0 = time.perf_counter()
                await _seed_tight_window(store, limits, time.monotonic())
                tally = _Tally()
                async with asyncio.TaskGroup() as group:
                    for i in range(requests):
                        group.create_task(
                            _one(
                                router,
                                i + 1,
                                _TARGET_CYCLE[i % len(_TARGET_CYCLE)],
                                _PROMPTS[i % len(_PROMPTS)],
                                (i // _BURST) * _BURST_GAP,
                                t0,
                                out,
                                tally,
                            )
                        )
                elapsed = time.perf_counter() - t0
                _print_usage(router, out)
                await _print_keys(router, cache_dir, out)
            await _paid_once(models, limits, cache_dir, requests + 1, out)
            with _new_cache_dir_quiet():
                await tool_round_trip(models, limits, cache_dir / "tools", out)
            out.write(_legend(tally, requests, elapsed, limits))
    out.write(
        f"\nDone in {time.perf_counter() - t_begin:.1f}s; the fake server is stopped and the "
        "router closed. Next: `llmroute check` on your own config/.\n"
    )
    out.flush()
    return 1 if tally.failed else 0


async def _paid_once(
    models: dict[str, Any], limits: dict[str, Any], cache_dir: Path, n: int, out: TextIO
) -> None:
    out.write("\nPaid gate  (Router(use_paid_models=True), i.e. USE_PAID_MODELS=true)\n")
    with _new_cache_dir_quiet():
        router = Router(
            models, limits, env_file=None, cache_dir=cache_dir / "paid", use_paid_models=True
        )
    async with router:
        completion = await router.complete("chat", "One more, on the paid model.", max_tokens=64)
        out.write(_row(n, 0.0, "chat", completion, None, completion.attempts) + "\n")
        cost = sum(u.cost for u in router.usage().values())
        out.write(
            f"  the same route now starts at the paid model; this request cost ${cost:.6f} "
            "by its price in models.yaml\n"
        )
