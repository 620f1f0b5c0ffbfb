"""The Router: resolves a target to a chain of candidates and walks it.

For each candidate: paid gate -> limiter (sleep or move on) -> key choice -> provider call,
with same-candidate retries for transport errors, timeouts and 5xx. One budget governs the
whole call: `max_attempts` counts every request sent and `deadline` bounds waits, retries
and fallbacks together, so retries never multiply across layers.

Everything a request needs is precomputed at construction (candidates, buckets, headers,
labels); the per-request path reads no file, parses no YAML and compiles no pattern.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar

from llmroute._candidate import Candidate
from llmroute._request import (
    build_request,
    estimate_prompt_tokens,
    for_attempt,
)
from llmroute._streaming import close_events, merge_events, open_stream
from llmroute.clock import Clock, SystemClock
from llmroute.config import ConfigSource, RouterConfig, load_config
from llmroute.config._loader import read_env
from llmroute.errors import (
    PaidModelBlockedError,
    ProviderError,
    ProviderUnavailableError,
    RoutingError,
    StreamInterruptedError,
    UnknownTargetError,
)
from llmroute.fallback import Failed, exhausted_error, skip_row, summary
from llmroute.gate import use_paid_models_from
from llmroute.keys.rotation import KeyRing
from llmroute.limiter.store import MemoryStore, StateStore, Ticket
from llmroute.providers import build_provider
from llmroute.providers.base import (
    AttemptFailed,
    Message,
    Provider,
    ProviderRequest,
    ProviderResponse,
    StreamEvent,
)
from llmroute.trace import Attempt, Chunk, Completion, ModelUsage, Outcome, Usage

if TYPE_CHECKING:
    # httpx is imported when the first HTTP provider is built, not with the router.
    import httpx

    from llmroute.keys.persist import KeyIndexPersister
    from llmroute.providers._http import HttpClient

__all__ = ["Router"]

logger = logging.getLogger("llmroute")

_DEFAULT_MODELS: Final = "config/models.yaml"
_DEFAULT_LIMITS: Final = "config/limits.yaml"
RATE_LIMITED: Final = frozenset({"rate_limited_local", "rate_limited_remote", "keys_exhausted"})
_ONE_SLOT: Final = (0,)
_NO_SLOT: Final = ()
_MIN_SLEEP = 0.001  # a float wait can round to zero; never spin on it

_T = TypeVar("_T")


class _Default(str):
    """A default path that may be missing without complaint (only limits.yaml uses it)."""


_DEFAULT_LIMITS_PATH: Final = _Default(_DEFAULT_LIMITS)


@dataclass(slots=True)
class _Served(Generic[_T]):
    result: _T
    slot: int
    ticket: Ticket | None
    started: float
    waited: float


class _Call:
    """The budget and trace of one request."""

    __slots__ = ("attempts", "deadline_at", "max_attempts", "sent", "start")

    def __init__(self, start: float, max_attempts: int, deadline_at: float) -> None:
        self.start = start
        self.max_attempts = max_attempts
        self.deadline_at = deadline_at
        self.sent = 0
        self.attempts: list[Attempt] = []

    def spent(self, now: float) -> bool:
        return self.sent >= self.max_attempts or now >= self.deadline_at


class Router:
    """An in-process LLM router.

    ```
    async with Router() as router:
        c = await router.complete("chat", "Summarise this ...")
        print(c.text, c.model, c.usage.total_tokens)
    ```

    Args:
        models, limits: a path to the YAML file, or an already-parsed mapping.
        env_file: a `.env` file read before `${VAR}` interpolation (never overriding the
            process environment); None reads none.
        cache_dir: where key indexes are persisted (`{cache_dir}/{provider}.keyidx`).
        use_paid_models: None reads `USE_PAID_MODELS`; a bool overrides it.
        http_client: an `httpx.AsyncClient` to use (the router closes only its own); by
            default the router's own aiohttp-backed client.
        store: the state store for limiter windows and cooldowns (default: in memory).
        clock: `now()`, `time()` and `async sleep()`; default the real clock.

    Raises:
        ConfigError: the configuration has problems (all of them are listed).
    """

    def __init__(
        self,
        models: ConfigSource = _DEFAULT_MODELS,
        limits: ConfigSource | None = _DEFAULT_LIMITS_PATH,
        *,
        env_file: str | os.PathLike[str] | None = ".env",
        cache_dir: str | os.PathLike[str] = ".cache",
        use_paid_models: bool | None = None,
        http_client: HttpClient | httpx.AsyncClient | None = None,
        store: StateStore | None = None,
        clock: Clock | None = None,
    ) -> None:
        env = read_env(env_file)
        if isinstance(limits, _Default) and not Path(limits).is_file():
            limits = None
        self.config: RouterConfig = load_config(models, limits, env=env)
        self.use_paid_models = (
            use_paid_models if use_paid_models is not None else use_paid_models_from(env)
        )
        self._clock: Clock = clock if clock is not None else SystemClock()
        # The real clock's now() is time.monotonic: call it directly on the hot path.
        self._mono: Callable[[], float] = (
            time.monotonic if type(self._clock) is SystemClock else self._clock.now
        )
        self._store: StateStore = store if store is not None else self._default_store()
        self._own_store = store is None
        self._wall_clock_store = self._store.uses_wall_clock
        # The default store answers without I/O: skip a coroutine per call on the hot path.
        self._memory_store = self._store if isinstance(self._store, MemoryStore) else None
        self._now = self._clock.time if self._wall_clock_store else self._mono
        self._http_client = http_client
        self._own_client = http_client is None
        self._cache_dir = Path(cache_dir)
        self._secrets: tuple[str, ...] = ()
        self._persisters: list[KeyIndexPersister] = []
        self._keyrings: dict[str, KeyRing] = {}
        self._providers: dict[str, Provider] = {}
        self._build_providers()
        strategy = self.config.limits.strategy
        self._max_attempts = strategy.max_attempts
        self._default_deadline = strategy.deadline_seconds
        self._completion_estimate = self.config.limits.completion_estimate
        self._candidates: dict[str, Candidate] = {}
        for model in self.config.models.models.values():
            pconf = self.config.models.providers[model.provider]
            self._candidates[model.id] = Candidate(
                model,
                self._providers[pconf.name],
                pconf,
                self._keyrings.get(pconf.name),
                self.config.limits.for_model(model.id),
                strategy.on_limit,
                strategy.max_wait_seconds,
            )
        self._chains: dict[str, tuple[Candidate, ...]] = {}
        for model in self.config.models.models.values():
            ids = (model.id, *model.fallbacks)
            self._chains[model.id] = tuple(self._candidates[i] for i in ids)
        for route, ids in self.config.models.routes.items():
            self._chains[route] = tuple(self._candidates[i] for i in ids)
        self._stats: dict[str, list[float]] = {}
        self._rng = random.Random()
        self._runner: asyncio.Runner | None = None
        self._closed = False

    def _default_store(self) -> StateStore:
        state = self.config.limits.state
        if state.backend == "redis":
            from llmroute.errors import ConfigError

            raise ConfigError(
                [
                    "limits: state.backend: the redis backend is not available in this "
                    "version; use {backend: memory} or pass store="
                ]
            )
        return MemoryStore()

    def _build_providers(self) -> None:
        secrets: list[str] = []
        for pconf in self.config.models.providers.values():
            self._providers[pconf.name] = build_provider(
                pconf, get_client=self._client, clock=self._clock
            )
            secrets.extend(s.reveal() for s in pconf.keys)
            secrets.extend(v for k, v in pconf.env.items() if _looks_secret(k) and v)
            if not pconf.keys:
                continue
            start = 0
            on_move: Callable[[int], None] | None = None
            if len(pconf.keys) > 1:
                from llmroute.keys.persist import KeyIndexFile, KeyIndexPersister

                file = KeyIndexFile(self._cache_dir, pconf.name)
                start = file.load(len(pconf.keys))
                persister = KeyIndexPersister(file)
                self._persisters.append(persister)
                on_move = persister.mark
            self._keyrings[pconf.name] = KeyRing(
                pconf.name,
                [s.reveal() for s in pconf.keys],
                strategy=pconf.rotation,
                start=start,
                on_move=on_move,
            )
        # Longest first, so a key that contains another is scrubbed whole.
        self._secrets = tuple(sorted(set(secrets), key=len, reverse=True))

    def _client(self) -> HttpClient:
        client = self._http_client
        if client is None:
            client = self._http_client = _default_client()
        return client

    def __repr__(self) -> str:
        return (
            f"Router(models={len(self._candidates)}, routes={len(self.config.models.routes)}, "
            f"use_paid_models={self.use_paid_models})"
        )

    # -- lifecycle -------------------------------------------------------------------

    async def __aenter__(self) -> Router:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Release connections, flush key indexes, stop CLI work. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        for persister in self._persisters:
            await persister.flush()
        for provider in self._providers.values():
            await provider.aclose()
        if self._own_client and self._http_client is not None:
            await self._http_client.aclose()
            self._http_client = None
        if self._own_store:
            await self._store.aclose()

    def __enter__(self) -> Router:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """`aclose` for scripts that use `complete_sync`."""
        if self._runner is not None:
            self._runner.run(self.aclose())
            self._runner.close()
            self._runner = None
        elif not self._closed:
            asyncio.run(self.aclose())

    # -- introspection -----------------------------------------------------------------

    @property
    def targets(self) -> tuple[str, ...]:
        return tuple(self._chains)

    def chain(self, target: str) -> tuple[str, ...]:
        """The model ids `target` resolves to, in order."""
        chain = self._chains.get(target)
        if chain is None:
            raise UnknownTargetError(target)
        return tuple(c.id for c in chain)

    def unavailable(self) -> dict[str, str]:
        """Model id -> why it cannot be used now (missing keys, binary, refused keys)."""
        out: dict[str, str] = {}
        for cand in self._candidates.values():
            reason = cand.unavailable_reason()
            if reason:
                out[cand.id] = reason
        return out

    async def key_status(self) -> dict[str, dict[str, Any]]:
        """For each provider with keys: index, slot labels, disabled slots and cooldowns
        (`{"model#slot": seconds left}`); never a secret."""
        now = self._now()
        out: dict[str, dict[str, Any]] = {}
        for name, ring in self._keyrings.items():
            cooling: dict[str, float] = {}
            for cand in self._candidates.values():
                if cand.keyring is not ring:
                    continue
                for slot, cname in enumerate(cand.cooldown_names):
                    left = await self._store.cooldown_until(cname) - now
                    if left > 0:
                        cooling[f"{cand.id} {ring.labels[slot]}"] = left
            out[name] = {
                "keys": len(ring),
                "index": ring.index,
                "strategy": ring.strategy,
                "labels": list(ring.labels),
                "disabled": [ring.labels[i] for i in sorted(ring.disabled)],
                "cooling": cooling,
            }
        return out

    def usage(self) -> dict[str, ModelUsage]:
        """Per model: requests sent, tokens, errors and cost since the router was built."""
        return {
            model: ModelUsage(
                requests=int(s[0]),
                prompt_tokens=int(s[1]),
                completion_tokens=int(s[2]),
                errors=int(s[3]),
                cost=s[4],
            )
            for model, s in self._stats.items()
        }

    # -- the request path -----------------------------------------------------------------

    async def complete(
        self,
        target: str,
        prompt: str | Sequence[Message],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        stop: str | Sequence[str] | None = None,
        timeout: float | None = None,
        deadline: float | None = None,
        **extra: Any,
    ) -> Completion:
        """Serve one request through the target's chain.

        Raises:
            UnknownTargetError: `target` is neither a model id nor a route.
            PaidModelBlockedError, ProviderUnavailableError, ProviderError, RateLimitedError:
                a one-candidate request's own failure.
            RoutingError / RateLimitedError: every candidate was skipped or failed.
        """
        call, request, cost = self._begin(
            target, deadline, build_request(prompt, max_tokens, temperature, top_p, stop, extra)
        )
        cand, served = await self._walk(target, call, request, cost, timeout, _send_complete)
        response = served.result
        usage = self._usage(cand, response.usage, request, cost)
        if served.ticket is not None and usage.total_tokens != cost:
            await self._store.settle(served.ticket, usage.total_tokens)
        latency = self._record_ok(cand, call, served, usage)
        self._log_request(target, cand.id, call, usage, latency)
        return Completion(
            text=response.text,
            model=cand.id,
            provider=cand.provider_name,
            finish_reason=response.finish_reason,
            usage=usage,
            latency_ms=(self._mono() - call.start) * 1000.0,
            attempts=call.attempts,
            raw=response.raw,
        )

    def _begin(
        self, target: str, deadline: float | None, request: ProviderRequest
    ) -> tuple[_Call, ProviderRequest, int]:
        if target not in self._chains:
            raise UnknownTargetError(target)
        estimate = estimate_prompt_tokens(request.messages) + (
            request.max_tokens if request.max_tokens is not None else self._completion_estimate
        )
        return self._new_call(deadline), request, estimate

    async def _walk(
        self,
        target: str,
        call: _Call,
        request: ProviderRequest,
        cost: int,
        timeout: float | None,
        send: Callable[[Provider, ProviderRequest, str | None], Awaitable[_T]],
    ) -> tuple[Candidate, _Served[_T]]:
        """Try the chain's candidates in order until one is served; raise when none is."""
        chain = self._chains[target]
        failures: list[Failed] = []
        for cand in chain:
            if not self._admissible(cand, call, single=len(chain) == 1):
                continue
            if call.spent(self._mono()):
                break
            served = await self._serve(cand, call, request, cost, timeout, send)
            if isinstance(served, Failed):
                failures.append(served)
                continue
            return cand, served
        raise self._exhausted(target, chain, call, failures)

    def complete_sync(
        self, target: str, prompt: str | Sequence[Message], **kwargs: Any
    ) -> Completion:
        """`complete` for scripts without an event loop; call `close()` when done."""
        if self._runner is None:
            self._runner = asyncio.Runner()
        return self._runner.run(self.complete(target, prompt, **kwargs))

    async def stream(
        self,
        target: str,
        prompt: str | Sequence[Message],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        stop: str | Sequence[str] | None = None,
        timeout: float | None = None,
        deadline: float | None = None,
        **extra: Any,
    ) -> AsyncIterator[Chunk]:
        """Stream one request: chunks as they arrive; the last carries finish_reason, usage,
        model and attempts. Falls back to the next candidate only before the first chunk;
        a failure after it raises `StreamInterruptedError`."""
        call, request, cost = self._begin(
            target, deadline, build_request(prompt, max_tokens, temperature, top_p, stop, extra)
        )
        cand, served = await self._walk(target, call, request, cost, timeout, open_stream)
        events, first = served.result
        relay = self._relay(target, cand, call, served, request, cost, events, first)
        try:
            async for chunk in relay:
                yield chunk
        finally:
            # A consumer that stops early closes the upstream at once, not at GC time.
            await relay.aclose()

    def _relay(
        self,
        target: str,
        cand: Candidate,
        call: _Call,
        served: _Served[Any],
        request: ProviderRequest,
        cost: int,
        events: AsyncIterator[StreamEvent],
        first: StreamEvent,
    ) -> AsyncGenerator[Chunk, None]:
        return self._relay_events(target, cand, call, served, request, cost, events, first)

    async def _relay_events(
        self,
        target: str,
        cand: Candidate,
        call: _Call,
        served: _Served[Any],
        request: ProviderRequest,
        cost: int,
        events: AsyncIterator[StreamEvent],
        first: StreamEvent,
    ) -> AsyncGenerator[Chunk, None]:
        delivered = 0
        final: StreamEvent | None = None
        finished = False
        try:
            event: StreamEvent | None = first
            while event is not None:
                if event.finish_reason is not None or event.usage is not None:
                    final = event if final is None else merge_events(final, event)
                if event.text:
                    delivered += len(event.text)
                    yield Chunk(text=event.text)
                try:
                    event = await events.__anext__()
                except StopAsyncIteration:
                    event = None
            finished = True
        except AttemptFailed as exc:
            message = self._scrub(exc.message)
            self._count(cand, error=True)
            call.attempts.append(
                self._attempt(cand, served.slot, exc.kind, exc.status, served.started, message)
            )
            raise StreamInterruptedError(
                f"{cand.id}: stream failed after {delivered} characters: {message}",
                call.attempts,
                status=exc.status,
                provider=cand.provider_name,
                model=cand.id,
                delivered_chars=delivered,
            ) from None
        finally:
            if not finished:
                await close_events(events)
                if served.ticket is not None and not delivered:
                    await self._store.release(served.ticket)
        usage = self._usage(cand, final.usage if final else None, request, cost)
        if served.ticket is not None and usage.total_tokens != cost:
            await self._store.settle(served.ticket, usage.total_tokens)
        latency = self._record_ok(cand, call, served, usage)
        self._log_request(target, cand.id, call, usage, latency)
        yield Chunk(
            text="",
            finish_reason=final.finish_reason if final else None,
            usage=usage,
            model=cand.id,
            attempts=call.attempts,
        )

    # -- pipeline stages -------------------------------------------------------------------

    def _new_call(self, deadline: float | None) -> _Call:
        start = self._mono()
        budget = deadline if deadline is not None else self._default_deadline
        return _Call(start, self._max_attempts, start + budget if budget is not None else math.inf)

    def _admissible(self, cand: Candidate, call: _Call, *, single: bool) -> bool:
        """The paid gate and availability: record a skip, or raise for a direct request."""
        if cand.paid and not self.use_paid_models:
            call.attempts.append(
                skip_row(cand, "skipped_paid", "paid model; USE_PAID_MODELS is off")
            )
            if single:
                raise PaidModelBlockedError(
                    f"{cand.id} is a paid model and paid models are off "
                    "(set USE_PAID_MODELS=true or Router(use_paid_models=True))",
                    call.attempts,
                )
            return False
        reason = cand.unavailable_reason()
        if reason:
            call.attempts.append(skip_row(cand, "skipped_unavailable", reason))
            if single:
                raise ProviderUnavailableError(f"{cand.id} is unavailable: {reason}", call.attempts)
            return False
        return True

    async def _serve(
        self,
        cand: Candidate,
        call: _Call,
        request: ProviderRequest,
        cost: int,
        timeout: float | None,
        send: Callable[[Provider, ProviderRequest, str | None], Awaitable[_T]],
    ) -> _Served[_T] | Failed:
        """Limiter, key choice and provider call for one candidate, retries included."""
        clock = self._clock
        mono = self._mono
        store = self._store
        memory = self._memory_store
        ring = cand.keyring
        retries_left = cand.provider_config.retries
        attempt_timeout = timeout if timeout is not None else cand.provider_config.timeout
        wire_request = for_attempt(request, cand.wire_model, attempt_timeout)
        waited = 0.0
        last: Failed | None = None
        while True:
            now = mono()
            if call.spent(now):
                return last or Failed("timeout", None, "deadline or attempt budget spent")
            # Keys that may be used now: enabled (order) and not cooling down.
            if cand.multi_key:
                slots = ring.order()  # type: ignore[union-attr]
            else:
                slots = _ONE_SLOT if ring is None or ring.usable else _NO_SLOT
            free: list[int] = []
            soonest = math.inf
            store_now = self._now() if self._wall_clock_store else now
            for slot in slots:
                name = cand.cooldown_names[slot]
                until = (
                    memory.cooldown_until_nowait(name)
                    if memory is not None
                    else await store.cooldown_until(name)
                )
                if until <= store_now:
                    free.append(slot)
                else:
                    soonest = min(soonest, until - store_now)
            if not free:
                if not slots:
                    return last or Failed("client_error", None, "every key was refused")
                failed = Failed(
                    "keys_exhausted",
                    None,
                    f"all {len(slots)} usable keys are cooling down; the first frees in "
                    f"{soonest:.1f}s",
                    retry_after=soonest,
                )
                call.attempts.append(
                    self._attempt(cand, None, "keys_exhausted", None, now, failed.message, waited)
                )
                return failed
            # Admission: one atomic check-and-reserve per bucket.
            ticket: Ticket | None = None
            wait = 0.0
            slot = free[0]
            if cand.bucket is not None:
                got = (
                    memory.acquire_nowait(cand.bucket, cost, store_now)
                    if memory is not None
                    else await store.acquire(cand.bucket, cost, store_now)
                )
                if isinstance(got, float):
                    wait = got
                else:
                    ticket = got
            elif cand.key_buckets is not None:
                wait = math.inf
                for candidate_slot in free:
                    bucket = cand.key_buckets[candidate_slot]
                    got = (
                        memory.acquire_nowait(bucket, cost, store_now)
                        if memory is not None
                        else await store.acquire(bucket, cost, store_now)
                    )
                    if isinstance(got, float):
                        wait = min(wait, got)
                    else:
                        ticket, slot = got, candidate_slot
                        break
            if ticket is None and (cand.bucket is not None or cand.key_buckets is not None):
                if (
                    cand.on_limit == "sleep"
                    and waited + wait <= cand.max_wait
                    and now + wait < call.deadline_at
                ):
                    pause = max(wait, _MIN_SLEEP)
                    logger.debug("%s: limiter full, waiting %.3fs", cand.id, pause)
                    await clock.sleep(pause)
                    waited += pause
                    continue
                failed = Failed(
                    "rate_limited_local",
                    None,
                    "local limit reached"
                    + (
                        ", the request can never fit"
                        if wait == math.inf
                        else f"; room in {wait:.1f}s"
                    ),
                    retry_after=wait,
                )
                call.attempts.append(
                    self._attempt(
                        cand, None, "rate_limited_local", None, now, failed.message, waited
                    )
                )
                return failed
            # Send.
            if ring is not None:
                ring.take(slot)
            key = cand.secrets[slot]
            remaining = call.deadline_at - now
            this_timeout = attempt_timeout if attempt_timeout < remaining else remaining
            if this_timeout != wire_request.timeout:
                wire_request = for_attempt(wire_request, cand.wire_model, this_timeout)
            call.sent += 1
            started = mono()
            try:
                result = await send(cand.provider, wire_request, key)
            except AttemptFailed as exc:
                if ticket is not None and not exc.reached:
                    await store.release(ticket)
                message = self._scrub(exc.message)
                self._count(cand, error=True)
                call.attempts.append(
                    self._attempt(cand, slot, exc.kind, exc.status, started, message, waited)
                )
                logger.debug(
                    "%s %s: %s (%s)", cand.id, cand.slot_labels[slot] or "", exc.kind, message
                )
                waited = 0.0
                last = Failed(exc.kind, exc.status, message)
                if exc.key_invalid and ring is not None:
                    ring.disable(slot, f"HTTP {exc.status}: key refused")
                    continue
                if exc.kind == "rate_limited_remote":
                    hint = (
                        exc.retry_after
                        if exc.retry_after is not None
                        else cand.provider_config.cooldown_seconds
                    )
                    if exc.quota_reset_at is not None:
                        hint = max(exc.quota_reset_at - clock.time(), hint)
                    await store.set_cooldown(cand.cooldown_names[slot], self._now() + hint)
                    if ring is not None:
                        ring.failed(slot)
                    last.retry_after = hint
                    if ring is not None and len(ring.order()) > 1:
                        continue
                    return last
                if exc.retryable and retries_left > 0:
                    retries_left -= 1
                    backoff = self._backoff(cand, retries_left, exc.retry_after)
                    if backoff is not None and mono() + backoff < call.deadline_at:
                        await clock.sleep(backoff)
                        continue
                return last
            except BaseException:
                # Cancelled (or a bug): the charge goes back, nothing is lost.
                if ticket is not None:
                    await store.release(ticket)
                raise
            return _Served(result, slot, ticket, started, waited)

    def _backoff(self, cand: Candidate, retries_left: int, hint: float | None) -> float | None:
        """Seconds before the next same-candidate retry, or None to move on instead."""
        if hint is not None:
            # A long hint is a rate limit in disguise: the next candidate beats a blocking sleep.
            return hint if hint <= cand.max_wait else None
        from tenacity import RetryCallState, wait_exponential

        state = RetryCallState(None, None, (), {})  # type: ignore[arg-type]
        state.attempt_number = cand.provider_config.retries - retries_left
        base = wait_exponential(multiplier=0.25, max=8.0)(state)
        return float(base) + self._rng.uniform(0.0, 0.25)

    def _usage(
        self, cand: Candidate, reported: Usage | None, request: ProviderRequest, cost: int
    ) -> Usage:
        """The usage to report (the estimate when the provider gave none), counted."""
        if reported is None:
            prompt_est = estimate_prompt_tokens(request.messages)
            usage = Usage(
                prompt_tokens=prompt_est,
                completion_tokens=cost - prompt_est,
                total_tokens=cost,
                estimated=True,
            )
        else:
            usage = reported
        self._count(
            cand,
            error=False,
            prompt=usage.prompt_tokens,
            completion=usage.completion_tokens,
        )
        return usage

    # -- bookkeeping ------------------------------------------------------------------------

    def _count(self, cand: Candidate, *, error: bool, prompt: int = 0, completion: int = 0) -> None:
        stats = self._stats.get(cand.id)
        if stats is None:
            stats = self._stats[cand.id] = [0, 0, 0, 0, 0.0]
        if error:
            stats[0] += 1
            stats[3] += 1
            return
        stats[0] += 1
        stats[1] += prompt
        stats[2] += completion
        stats[4] += (prompt * cand.price_in + completion * cand.price_out) / 1_000_000

    def _attempt(
        self,
        cand: Candidate,
        slot: int | None,
        outcome: Outcome,
        status: int | None,
        started: float,
        error: str | None,
        waited: float = 0.0,
    ) -> Attempt:
        return Attempt(
            model=cand.id,
            provider=cand.provider_name,
            key=cand.slot_labels[slot] if slot is not None else None,
            outcome=outcome,
            status=status,
            waited_s=waited,
            latency_ms=(self._mono() - started) * 1000.0,
            error=error,
        )

    def _record_ok(self, cand: Candidate, call: _Call, served: _Served[Any], usage: Usage) -> float:
        latency = (self._mono() - served.started) * 1000.0
        call.attempts.append(
            Attempt(
                model=cand.id,
                provider=cand.provider_name,
                key=cand.slot_labels[served.slot],
                outcome="ok",
                status=200 if cand.provider_config.uses_keys else None,
                waited_s=served.waited,
                latency_ms=latency,
            )
        )
        return latency

    def _log_request(
        self, target: str, model: str, call: _Call, usage: Usage, latency_ms: float
    ) -> None:
        if logger.isEnabledFor(logging.INFO):
            logger.info(
                "%s -> %s ok: %d tokens%s, %.0f ms, attempts: %s",
                target,
                model,
                usage.total_tokens,
                " (estimated)" if usage.estimated else "",
                (self._mono() - call.start) * 1000.0,
                summary(call.attempts),
            )

    def _exhausted(
        self, target: str, chain: Sequence[Candidate], call: _Call, failures: list[Failed]
    ) -> RoutingError | ProviderError:
        if logger.isEnabledFor(logging.INFO):
            logger.info("%s failed: %s", target, summary(call.attempts) or "nothing was tried")
        return exhausted_error(target, chain, call.attempts, failures)

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, "***")
        return text


def _default_client() -> HttpClient:
    # httpx.AsyncClient costs ~100 us of CPU per request before any transport runs; this
    # look-alike answers the same calls on aiohttp's pool (bench/results/latest.md).
    from llmroute._transport import AiohttpClient

    return AiohttpClient()


def _send_complete(
    provider: Provider, request: ProviderRequest, key: str | None
) -> Awaitable[ProviderResponse]:
    # A plain function handing back the adapter's coroutine: one frame less on every
    # resume of the request's await chain.
    return provider.complete(request, key)


def _looks_secret(name: str) -> bool:
    upper = name.upper()
    return "KEY" in upper or "TOKEN" in upper or "SECRET" in upper or "PASSWORD" in upper
