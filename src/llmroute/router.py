"""The Router: resolves a target to a chain of candidates and hands it to the walk.

The pipeline lives in small parts, each built once here: `Admission` (the limiter, FIFO per
bucket, in the store), one `KeyPool` per provider (rotation, cooldowns, disabled keys, in
the store), the pure retry policy, the `Walk` shared by complete, stream and explain, and
the `Recorder` that writes every trace row through the one `Redactor`.

Everything a request needs is precomputed at construction (candidates, buckets, labels);
the per-request path reads no file, parses no YAML and compiles no pattern.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final

from llmroute._admission import Admission
from llmroute._candidate import Candidate
from llmroute._explain import explain_chain, key_status
from llmroute._learning import Learner
from llmroute._lifecycle import LoopGuard, read_now
from llmroute._log_redact import RedactingFilter
from llmroute._prepare import check_budget, prepare
from llmroute._recorder import Call, Recorder
from llmroute._records import completion
from llmroute._redact import Redactor
from llmroute._streaming import Opened, open_stream, relay
from llmroute._walk import Walk
from llmroute.clock import Clock, SystemClock
from llmroute.config import (
    DEFAULT_LIMITS,
    DEFAULT_MODELS,
    ConfigSource,
    RouterConfig,
    load_config,
    read_env,
    resolve_sources,
)
from llmroute.errors import LLMRouteError, UnknownTargetError
from llmroute.gate import use_paid_models_from
from llmroute.keys.rotation import KeyPool, key_pool
from llmroute.providers import build_provider
from llmroute.providers.base import Message, Provider, ProviderRequest, ProviderResponse
from llmroute.stores import StateStore
from llmroute.trace import Chunk, Completion, Explanation, ModelUsage

if TYPE_CHECKING:
    # httpx is imported when the first HTTP provider is built, not with the router.
    import httpx

    from llmroute.keys.persist import KeyIndexPersister

__all__ = ["Router"]

# Defaults that fall back to the shipped catalogue when missing (config.resolve_sources).
_DEFAULT_MODELS: Final = DEFAULT_MODELS


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
        store: the state store for limiter windows, cooldowns and key state (default: in
            memory).
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
        http_client: httpx.AsyncClient | Any | None = None,
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
        self._store: StateStore = store if store is not None else self._default_store(cache_dir)
        self._own_store = store is None
        store_now = self._clock.time if self._store.uses_wall_clock else self._mono
        self._http_client = http_client
        self._own_client = http_client is None
        self._cache_dir = Path(cache_dir)
        self._persisters: list[KeyIndexPersister] = []
        self._pools: dict[str, KeyPool] = {}
        self._providers: dict[str, Provider] = {}
        self._redact = Redactor(self._secrets())
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
                self._pools.get(pconf.name),
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
        self._admission = Admission(self._store, self._clock, self._mono, store_now)
        self._recorder = Recorder(self._mono, self._redact)
        self._walk = Walk(
            store=self._store,
            admission=self._admission,
            recorder=self._recorder,
            clock=self._clock,
            mono=self._mono,
            store_now=store_now,
            use_paid_models=self.use_paid_models,
            rng=random.Random(),
            learner=self._learner(),
        )
        self._runner: asyncio.Runner | None = None
        self._guard = LoopGuard(self._new_loop)
        # A user's httpx client logs request URLs, which may carry a `${VAR}` token.
        self._log_filter = (
            RedactingFilter(self._redact).install() if http_client is not None else None
        )

    def _learner(self) -> Learner | None:
        """What follows the providers' own rate-limit reports (`learn_from_headers`)."""
        if not self.config.limits.learn_from_headers:
            return None
        return Learner(store=self._store, admission=self._admission, wall=self._clock.time)

    def _default_store(self, cache_dir: str | os.PathLike[str]) -> StateStore:
        """The store `limits.yaml`'s `state:` names (memory, SQLite or Redis)."""
        from llmroute.stores.factory import build_store

        return build_store(self.config.limits.state, cache_dir)

    def _secrets(self) -> list[str]:
        """Every secret the config knows, for the one redactor."""
        found: set[str] = set(getattr(self.config, "secrets", ()) or ())
        for pconf in self.config.models.providers.values():
            found.update(s.reveal() for s in pconf.keys)
            found.update(v for k, v in pconf.env.items() if _looks_secret(k) and v)
        return sorted(found)

    def _build_providers(self) -> None:
        """Build adapters and key pools (each pool's index mirrored in its `.keyidx`)."""
        for pconf in self.config.models.providers.values():
            self._providers[pconf.name] = self._new_provider(pconf.name)
            if pconf.keys:
                pool, persister = key_pool(pconf, self._store, self._cache_dir, clock=self._mono)
                self._pools[pconf.name] = pool
                if persister is not None:
                    self._persisters.append(persister)

    def _new_provider(self, name: str) -> Provider:
        pconf = self.config.models.providers[name]
        return build_provider(pconf, get_client=self._client, clock=self._clock)

    def _client(self) -> Any:
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
        if self._guard.closed:
            return
        self._guard.closed = True
        try:
            for persister in self._persisters:
                await persister.flush()
            for provider in self._providers.values():
                await provider.aclose()
            if self._own_client and self._http_client is not None:
                await self._http_client.aclose()
                self._http_client = None
            if self._own_store:
                await self._store.aclose()
        finally:
            if self._log_filter is not None:
                self._log_filter.remove()

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
        elif not self._guard.closed:
            asyncio.run(self.aclose())

    def _new_loop(self) -> None:
        # Loop-bound parts (the CLI providers' semaphores, waiting lines) start afresh.
        self._admission.reset_loop()
        for name in self._providers:
            self._providers[name] = self._new_provider(name)
        for cand in self._candidates.values():
            cand.provider = self._providers[cand.provider_name]

    # -- introspection -----------------------------------------------------------------

    @property
    def targets(self) -> tuple[str, ...]:
        return tuple(self._chains)

    def chain(self, target: str) -> tuple[str, ...]:
        """The model ids `target` resolves to, in order."""
        return tuple(c.id for c in self._chain(target))

    def _chain(self, target: str) -> tuple[Candidate, ...]:
        chain = self._chains.get(target)
        if chain is None:
            raise UnknownTargetError(target, self._chains)
        return chain

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
        (`{"model slot": seconds left}`); never a secret."""
        return await key_status(self._walk, self._pools, self._candidates.values())

    async def learnt_status(self) -> list[str]:
        """What the store holds of the providers' own reports (limits learnt per bucket,
        windows closed until their reset), as lines for `llmroute keys`."""
        from llmroute._learning import learnt_lines

        store = self._store
        now = self._clock.time() if store.uses_wall_clock else self._mono()
        return learnt_lines(await store.snapshot(now))

    def usage(self) -> dict[str, ModelUsage]:
        """Per model: requests sent, tokens, errors and cost since the router was built."""
        return self._recorder.usage()

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
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: str | Mapping[str, Any] | None = None,
        response_format: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        deadline: float | None = None,
        extra_body: Mapping[str, Any] | None = None,
    ) -> Completion:
        """Serve one request through the target's chain.

        Raises:
            UnknownTargetError: `target` is neither a model id nor a route.
            PaidModelBlockedError, ProviderUnavailableError, ProviderError, RateLimitedError:
                a one-candidate request's own failure.
            RoutingError / RateLimitedError: every candidate was skipped or failed.
            StoreError: the state store could not be reached (nothing was sent).
        """
        chain = self._chains.get(target) or self._chain(target)
        request, needs, tokens = prepare(
            self._completion_estimate,
            prompt, max_tokens, temperature, top_p, stop, tools, tool_choice,
            response_format, extra_body,
        )  # fmt: skip
        if timeout is not None or deadline is not None:
            check_budget(timeout, deadline)
        self._guard.enter()
        try:
            call = Call(
                target,
                self._mono(),
                self._max_attempts,
                deadline if deadline is not None else self._default_deadline,
            )
            cand, served = await self._walk.run(
                chain, call, request, needs, tokens, timeout, _send_complete
            )
            response = served.result
            usage, cost, pending = self._walk.finish(
                cand, call, served, response.usage, request, tokens
            )
            if pending is not None:
                await pending
        finally:
            self._guard.leave()
        return completion(
            response.text,
            cand.id,
            cand.provider_name,
            response.finish_reason,
            usage,
            (self._mono() - call.start) * 1000.0,
            call.attempts,
            response.raw,
            list(response.tool_calls),
            cost,
        )

    def complete_sync(
        self,
        target: str,
        prompt: str | Sequence[Message],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        stop: str | Sequence[str] | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: str | Mapping[str, Any] | None = None,
        response_format: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        deadline: float | None = None,
        extra_body: Mapping[str, Any] | None = None,
    ) -> Completion:
        """`complete` for scripts without an event loop; call `close()` when done."""
        self._guard.check_sync()
        if self._runner is None:
            self._runner = asyncio.Runner()
            # A script that never calls close() still ends cleanly: the loop is shut down
            # (its async generators and sessions closed) at exit, with no warning.
            weakref.finalize(self, self._runner.close)
        return self._runner.run(
            self.complete(
                target,
                prompt,
                max_tokens=max_tokens,
                temperature=temperature,
                top_p=top_p,
                stop=stop,
                tools=tools,
                tool_choice=tool_choice,
                response_format=response_format,
                timeout=timeout,
                deadline=deadline,
                extra_body=extra_body,
            )
        )

    async def stream(
        self,
        target: str,
        prompt: str | Sequence[Message],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        stop: str | Sequence[str] | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: str | Mapping[str, Any] | None = None,
        response_format: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        deadline: float | None = None,
        extra_body: Mapping[str, Any] | None = None,
    ) -> AsyncIterator[Chunk]:
        """Stream one request: chunks as they arrive; the last carries finish_reason, usage,
        model and attempts. Falls back to the next candidate only before the first chunk;
        a failure after it (a gap over `timeout`, the deadline) raises
        `StreamInterruptedError`."""
        chain = self._chain(target)
        request, needs, tokens = prepare(
            self._completion_estimate,
            prompt, max_tokens, temperature, top_p, stop, tools, tool_choice,
            response_format, extra_body,
        )  # fmt: skip
        if timeout is not None or deadline is not None:
            check_budget(timeout, deadline)
        self._guard.enter()
        try:
            call = self._new_call(target, deadline)
            cand, served = await self._walk.run(
                chain, call, request, needs, tokens, timeout, _open_stream
            )
            gap = timeout if timeout is not None else cand.provider_config.timeout
            chunks = relay(self._walk, cand, call, served, request, tokens, gap)
            try:
                async for chunk in chunks:
                    yield chunk
            finally:
                # A consumer that stops early closes the upstream at once, not at GC time.
                await chunks.aclose()
        finally:
            self._guard.leave()

    def explain(
        self,
        target: str,
        prompt: str | Sequence[Message],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        stop: str | Sequence[str] | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        tool_choice: str | Mapping[str, Any] | None = None,
        response_format: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        deadline: float | None = None,
        extra_body: Mapping[str, Any] | None = None,
    ) -> Explanation:
        """What a request sent now would meet at each candidate of the chain: skipped and
        why, the key slot it would use, the local wait, a cooldown. Nothing is sent,
        charged or changed.

        Synchronous, from any thread, inside an event loop or not. The memory store answers
        at once; a shared store (SQLite, Redis) is read on a short-lived thread with an
        event loop of its own, so the caller's loop waits for that read. The result may
        also be awaited (`await router.explain(...)`)."""
        chain = self._chain(target)
        _request, needs, tokens = prepare(
            self._completion_estimate,
            prompt, max_tokens, temperature, top_p, stop, tools, tool_choice,
            response_format, extra_body,
        )  # fmt: skip
        if timeout is not None or deadline is not None:
            check_budget(timeout, deadline)
        if self._guard.closed:
            raise LLMRouteError("router is closed")
        return read_now(
            lambda: explain_chain(self._walk, target, chain, needs, tokens),
            inline=not getattr(self._store, "shared", True),
        )

    # -- request preparation -----------------------------------------------------------------

    def _new_call(self, target: str, deadline: float | None) -> Call:
        budget = deadline if deadline is not None else self._default_deadline
        return Call(target, self._mono(), self._max_attempts, budget)


def _default_client() -> Any:
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


def _open_stream(
    provider: Provider, request: ProviderRequest, key: str | None
) -> Awaitable[Opened]:
    return open_stream(provider, request, key)


def _looks_secret(name: str) -> bool:
    upper = name.upper()
    return "KEY" in upper or "TOKEN" in upper or "SECRET" in upper or "PASSWORD" in upper
