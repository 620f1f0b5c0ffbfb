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
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, TypeVar

from llmroute._candidate import Candidate
from llmroute._engine import Call, Engine, Served
from llmroute._request import (
    build_request,
    estimate_prompt_tokens,
)
from llmroute._streaming import close_events, merge_events, open_stream
from llmroute.clock import Clock, SystemClock
from llmroute.config import (
    DEFAULT_LIMITS,
    DEFAULT_MODELS,
    ConfigSource,
    RouterConfig,
    load_config,
    resolve_sources,
)
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
from llmroute.limiter.store import MemoryStore, StateStore
from llmroute.providers import build_provider
from llmroute.providers.base import (
    AttemptFailed,
    Message,
    Provider,
    ProviderRequest,
    ProviderResponse,
    StreamEvent,
)
from llmroute.trace import Chunk, Completion, ModelUsage, Usage

if TYPE_CHECKING:
    # httpx is imported when the first HTTP provider is built, not with the router.
    import httpx

    from llmroute.keys.persist import KeyIndexPersister
    from llmroute.providers._http import HttpClient

__all__ = ["Router"]

logger = logging.getLogger("llmroute")

# Defaults that fall back to the shipped catalogue when missing (config.resolve_sources).
_DEFAULT_MODELS: Final = DEFAULT_MODELS
RATE_LIMITED: Final = frozenset({"rate_limited_local", "rate_limited_remote", "keys_exhausted"})

_T = TypeVar("_T")


_DEFAULT_LIMITS_PATH: Final = DEFAULT_LIMITS


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
        models, limits = resolve_sources(models, limits)
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
        self._http_client = http_client
        self._own_client = http_client is None
        self._cache_dir = Path(cache_dir)
        self._persisters: list[KeyIndexPersister] = []
        self._keyrings: dict[str, KeyRing] = {}
        self._providers: dict[str, Provider] = {}
        secrets = self._build_providers()
        self._engine = Engine(
            store=self._store, clock=self._clock, mono=self._mono, secrets=secrets
        )
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

    def _build_providers(self) -> tuple[str, ...]:
        """Build adapters and key rings; return every secret, for scrubbing."""
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
        return tuple(secrets)

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
            raise UnknownTargetError(target, self._chains)
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
        now = self._engine.store_now()
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
        return self._engine.usage()

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
        usage = self._engine.usage_of(cand, response.usage, request, cost)
        if served.ticket is not None and usage.total_tokens != cost:
            await self._store.settle(served.ticket, usage.total_tokens)
        latency = self._engine.record_ok(cand, call, served, usage)
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
    ) -> tuple[Call, ProviderRequest, int]:
        if target not in self._chains:
            raise UnknownTargetError(target, self._chains)
        estimate = estimate_prompt_tokens(request.messages) + (
            request.max_tokens if request.max_tokens is not None else self._completion_estimate
        )
        return self._new_call(deadline), request, estimate

    async def _walk(
        self,
        target: str,
        call: Call,
        request: ProviderRequest,
        cost: int,
        timeout: float | None,
        send: Callable[[Provider, ProviderRequest, str | None], Awaitable[_T]],
    ) -> tuple[Candidate, Served[_T]]:
        """Try the chain's candidates in order until one is served; raise when none is."""
        chain = self._chains[target]
        failures: list[Failed] = []
        for cand in chain:
            if not self._admissible(cand, call, single=len(chain) == 1):
                continue
            if call.spent(self._mono()):
                break
            served = await self._engine.serve(cand, call, request, cost, timeout, send)
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

    async def _relay(
        self,
        target: str,
        cand: Candidate,
        call: Call,
        served: Served[Any],
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
            message = self._engine.scrub(exc.message)
            self._engine.count(cand, error=True)
            call.attempts.append(
                self._engine.attempt(
                    cand, served.slot, exc.kind, exc.status, served.started, message
                )
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
        usage = self._engine.usage_of(cand, final.usage if final else None, request, cost)
        if served.ticket is not None and usage.total_tokens != cost:
            await self._store.settle(served.ticket, usage.total_tokens)
        latency = self._engine.record_ok(cand, call, served, usage)
        self._log_request(target, cand.id, call, usage, latency)
        yield Chunk(
            text="",
            finish_reason=final.finish_reason if final else None,
            usage=usage,
            model=cand.id,
            attempts=call.attempts,
        )

    # -- pipeline stages -------------------------------------------------------------------

    def _new_call(self, deadline: float | None) -> Call:
        start = self._mono()
        budget = deadline if deadline is not None else self._default_deadline
        return Call(start, self._max_attempts, start + budget if budget is not None else math.inf)

    def _admissible(self, cand: Candidate, call: Call, *, single: bool) -> bool:
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
                raise ProviderUnavailableError(
                    f"{cand.id} is unavailable: {reason} (`llmroute check` says what to set)",
                    call.attempts,
                )
            return False
        return True

    def _log_request(
        self, target: str, model: str, call: Call, usage: Usage, latency_ms: float
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
        self, target: str, chain: Sequence[Candidate], call: Call, failures: list[Failed]
    ) -> RoutingError | ProviderError:
        if logger.isEnabledFor(logging.INFO):
            logger.info("%s failed: %s", target, summary(call.attempts) or "nothing was tried")
        return exhausted_error(target, chain, call.attempts, failures)


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
