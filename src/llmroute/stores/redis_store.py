"""A store on a Redis (or Valkey) server: shared by processes on any number of hosts.

Every admission is one Lua script that checks and charges all four windows of every
bucket together, so no number of processes ever admits more than the limits. Time comes
from the server's `TIME` inside the scripts: hosts with skewed clocks still agree, and the
`now` arguments are ignored (`use_server_time=False` is for tests that drive time by
hand). Every key carries an expiry, so an abandoned prefix cleans itself up.

Needs the `redis` extra (redis-py's asyncio client), imported when the store is built.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from llmroute.errors import ConfigError, StoreError
from llmroute.stores import _redis_lua as lua
from llmroute.stores._redis_batch import Batcher, Script
from llmroute.stores.base import Bucket, Charge, LimitKind

if TYPE_CHECKING:
    import redis.asyncio as aioredis

__all__ = ["RedisStore"]

DEFAULT_PREFIX: Final = "llmroute"
#: how long key state (disabled keys, indexes) outlives its last change
KEY_STATE_TTL: Final = 30 * 86_400
#: how long a learnt limit outlives the provider's last report of it
LEARNED_TTL: Final = 7 * 86_400
#: the longest cooldown kept (an "until further notice" is held for a year)
_MAX_COOLDOWN: Final = 365 * 86_400.0
_SEP: Final = "\n"
_SCRIPTS: Final = {
    "acquire": Script(lua.ACQUIRE),
    "peek": Script(lua.PEEK),
    "commit": Script(lua.COMMIT),
    "cancel": Script(lua.CANCEL),
    "cooldown": Script(lua.COOLDOWN),
    "cooldowns": Script(lua.COOLDOWNS_LEFT),
    "rotate": Script(lua.ROTATE),
    "index_if_absent": Script(lua.INDEX_IF_ABSENT),
}
#: connections per event loop
MAX_CONNECTIONS: Final = 32


class _RedisCharge(Charge):
    __slots__ = ("keys", "member")

    def __init__(self, tokens: int, member: str, keys: tuple[str, ...]) -> None:
        super().__init__(tokens)
        self.member = member
        self.keys = keys


class RedisStore:
    """Limiter windows, cooldowns and key state on the Redis server at `url`.

    Every key is named `{prefix}:...`, so routers that should not share state use
    different prefixes on one server. A server that cannot be reached raises `StoreError`
    for the request at hand; the next request connects again.
    """

    uses_wall_clock = True
    shared = True

    def __init__(
        self,
        url: str,
        prefix: str = DEFAULT_PREFIX,
        *,
        use_server_time: bool = True,
        socket_timeout: float = 5.0,
        connect_timeout: float = 2.0,
    ) -> None:
        try:
            import redis.asyncio  # noqa: F401
        except ImportError as exc:
            raise ConfigError(
                ["the Redis store needs the redis extra: pip install llmroute[redis]"]
            ) from exc
        self._url = url
        self.prefix = prefix
        self.use_server_time = use_server_time
        self._socket_timeout = socket_timeout
        self._connect_timeout = connect_timeout
        parts = urlsplit(url)
        # Where the server is, for messages: never the URL, which may carry a password.
        self._where = f"{parts.hostname or 'localhost'}:{parts.port or 6379}"
        #: per event loop (a client cannot move between loops): one router per thread may
        #: share this store
        self._clients: dict[asyncio.AbstractEventLoop, tuple[aioredis.Redis, Batcher]] = {}
        self._lock = threading.Lock()
        self._window_keys: dict[str, tuple[str, str, str, str]] = {}
        self._seq = f"{prefix}:seq"
        self._cooldowns = f"{prefix}:cooldowns"
        self._disabled = f"{prefix}:disabled"
        self._indexes = f"{prefix}:indexes"
        self._learned = f"{prefix}:learned"

    def __repr__(self) -> str:
        return f"RedisStore({self._where!r}, prefix={self.prefix!r})"

    # -- connection --------------------------------------------------------------------------

    def _connect(self) -> tuple[aioredis.Redis, Batcher]:
        """The client of the running event loop, made on its first call."""
        loop = asyncio.get_running_loop()
        made = self._clients.get(loop)
        if made is not None:
            return made
        with self._lock:
            for dead in [other for other in self._clients if other.is_closed()]:
                _abandon(self._clients.pop(dead)[0])
            made = self._clients[loop] = self._new_client(loop)
        return made

    def _new_client(self, loop: asyncio.AbstractEventLoop) -> tuple[aioredis.Redis, Batcher]:
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff

        pool = aioredis.BlockingConnectionPool.from_url(
            self._url,
            # Many concurrent requests share a few connections; one waits for a free one
            # (up to the socket timeout) rather than failing.
            max_connections=MAX_CONNECTIONS,
            timeout=self._socket_timeout,
            decode_responses=True,
            socket_timeout=self._socket_timeout,
            socket_connect_timeout=self._connect_timeout,
            # One immediate retry replaces a pooled connection the server dropped (a
            # restart); a server that is down fails the request at once.
            retry=Retry(NoBackoff(), 1),
        )
        client = aioredis.Redis.from_pool(pool)
        return client, Batcher(client, loop)

    def _call(self, name: str, keys: list[str], args: list[Any]) -> asyncio.Future[Any]:
        return self._connect()[1].call(_SCRIPTS[name], keys, args)

    async def _script(self, name: str, keys: list[str], args: list[Any]) -> Any:
        try:
            return await self._call(name, keys, args)
        except Exception as exc:
            raise self._failure(exc) from exc

    def _failure(self, exc: Exception) -> Exception:
        from redis.exceptions import RedisError

        if not isinstance(exc, RedisError | OSError):
            return exc
        return StoreError(f"state store redis at {self._where} could not be used: {_describe(exc)}")

    def _now_arg(self, now: float) -> str:
        return "" if self.use_server_time else str(round(now * 1_000_000))

    async def _server_now(self, client: aioredis.Redis, now: float) -> int:
        if not self.use_server_time:
            return round(now * 1_000_000)
        seconds, micros = await client.time()
        return int(seconds) * 1_000_000 + int(micros)

    # -- limiter windows ---------------------------------------------------------------------

    def _keys_of(self, bucket: str) -> tuple[str, str, str, str]:
        keys = self._window_keys.get(bucket)
        if keys is None:
            base = f"{self.prefix}:w:{bucket}"
            keys = self._window_keys[bucket] = (
                f"{base}:m",
                f"{base}:ms",
                f"{base}:d",
                f"{base}:ds",
            )
        return keys

    def _window_call(
        self, buckets: Sequence[Bucket], tokens: int, now: float
    ) -> tuple[list[str], list[Any]]:
        """KEYS and ARGV of a window script: four keys and four limits (-1: none) a bucket."""
        keys: list[str] = []
        args: list[Any] = [self._now_arg(now), tokens]
        for b in buckets:
            keys.extend(self._keys_of(b.name))
            args.extend(-1 if v is None else v for v in (b.rpm, b.tpm, b.rpd, b.tpd))
        return keys, args

    async def acquire(self, buckets: Sequence[Bucket], tokens: int, now: float) -> Charge | float:
        if not buckets:
            return _RedisCharge(tokens, "", ())
        keys, args = self._window_call(buckets, tokens, now)
        keys.append(self._seq)
        future = self._call("acquire", keys, args)
        try:
            status, value = await asyncio.shield(future)
        except asyncio.CancelledError:
            # The script runs regardless; give back what it charged.
            pairs = tuple(keys[:-1])
            future.add_done_callback(lambda done: self._refund_abandoned(done, pairs))
            raise
        except Exception as exc:
            raise self._failure(exc) from exc
        if status == 0:
            return _RedisCharge(tokens, str(value), tuple(keys[:-1]))
        return math.inf if int(value) < 0 else int(value) / 1_000_000

    async def peek(self, buckets: Sequence[Bucket], tokens: int, now: float) -> float:
        if not buckets:
            return 0.0
        keys, args = self._window_call(buckets, tokens, now)
        micros = int(await self._script("peek", keys, args))
        return math.inf if micros < 0 else micros / 1_000_000

    def _refund_abandoned(self, done: asyncio.Future[Any], pairs: tuple[str, ...]) -> None:
        if done.cancelled() or done.exception() is not None:
            return
        status, member = done.result()
        if status == 0:
            refund = self._call("cancel", list(pairs), [member])
            refund.add_done_callback(_swallow)

    async def commit(self, charge: Charge, tokens: int) -> None:
        assert isinstance(charge, _RedisCharge)
        if charge.keys:
            charge.member = str(
                await self._script("commit", list(charge.keys), [charge.member, tokens])
            )
        charge.tokens = tokens

    async def cancel(self, charge: Charge) -> None:
        assert isinstance(charge, _RedisCharge)
        if charge.keys:
            await self._script("cancel", list(charge.keys), [charge.member])
        charge.tokens = 0

    # -- cooldowns ---------------------------------------------------------------------------

    async def set_cooldown(self, name: str, seconds: float, now: float) -> None:
        micros = round(min(max(seconds, 0.0), _MAX_COOLDOWN) * 1_000_000)
        await self._script("cooldown", [self._cooldowns], [self._now_arg(now), name, micros])

    async def cooldowns(self, names: Sequence[str], now: float) -> list[float]:
        if not names:
            return []
        left = await self._script("cooldowns", [self._cooldowns], [self._now_arg(now), *names])
        return [int(micros) / 1_000_000 for micros in left]

    # -- keys --------------------------------------------------------------------------------

    async def _write(self, key: str, field: str, value: Any, ttl: int) -> None:
        client = self._connect()[0]
        try:
            async with client.pipeline(transaction=True) as pipe:
                pipe.hset(key, field, value)
                pipe.expire(key, ttl)
                await pipe.execute()
        except Exception as exc:
            raise self._failure(exc) from exc

    async def _read_all(self, key: str) -> dict[str, str]:
        client = self._connect()[0]
        try:
            fields = await client.hgetall(key)
            return {str(f): str(v) for f, v in fields.items()}
        except Exception as exc:
            raise self._failure(exc) from exc

    async def disable_key(self, provider: str, fingerprint: str) -> None:
        await self._write(self._disabled, f"{provider}{_SEP}{fingerprint}", 1, KEY_STATE_TTL)

    async def disabled_keys(self, provider: str) -> frozenset[str]:
        head = provider + _SEP
        fields = await self._read_all(self._disabled)
        return frozenset(f[len(head) :] for f in fields if f.startswith(head))

    async def rotate_index(self, provider: str, n_keys: int) -> int:
        return int(await self._script("rotate", [self._indexes], [provider, n_keys, KEY_STATE_TTL]))

    async def get_index(self, provider: str) -> int | None:
        client = self._connect()[0]
        try:
            value = await client.hget(self._indexes, provider)
        except Exception as exc:
            raise self._failure(exc) from exc
        return None if value is None else int(value)

    async def set_index(self, provider: str, index: int) -> None:
        await self._write(self._indexes, provider, index, KEY_STATE_TTL)

    async def set_index_if_absent(self, provider: str, index: int) -> int:
        held = await self._script(
            "index_if_absent", [self._indexes], [provider, index, KEY_STATE_TTL]
        )
        return int(held)

    # -- learnt limits -----------------------------------------------------------------------

    async def learn_limit(self, bucket: str, kind: LimitKind, value: int) -> None:
        await self._write(self._learned, f"{bucket}{_SEP}{kind}", value, LEARNED_TTL)

    async def learned_limits(self, bucket: str) -> dict[str, int]:
        head = bucket + _SEP
        fields = await self._read_all(self._learned)
        return {f[len(head) :]: int(v) for f, v in sorted(fields.items()) if f.startswith(head)}

    # -- inspection and lifetime -------------------------------------------------------------

    async def snapshot(self, now: float) -> dict[str, Any]:
        client = self._connect()[0]
        try:
            async with client.pipeline(transaction=True) as pipe:
                for key in (self._cooldowns, self._disabled, self._indexes, self._learned):
                    pipe.hgetall(key)
                cooling, disabled_raw, indexes, learned_raw = await pipe.execute()
            at = await self._server_now(client, now)
        except Exception as exc:
            raise self._failure(exc) from exc
        disabled: dict[str, list[str]] = {}
        for field in sorted(disabled_raw):
            provider, _, fingerprint = field.partition(_SEP)
            disabled.setdefault(provider, []).append(fingerprint)
        learned: dict[str, dict[str, int]] = {}
        for field, value in sorted(learned_raw.items()):
            bucket, _, kind = field.partition(_SEP)
            learned.setdefault(bucket, {})[kind] = int(value)
        return {
            "cooldowns": {
                name: (int(u) - at) / 1_000_000
                for name, u in sorted(cooling.items())
                if int(u) > at
            },
            "disabled": disabled,
            "indexes": {p: int(i) for p, i in sorted(indexes.items())},
            "learned": learned,
        }

    async def aclose(self) -> None:
        """Close this event loop's connections, and let go of those of loops that ended
        (another thread's running loop keeps its own until that loop closes them)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            mine = self._clients.pop(loop, None)
            for dead in [other for other in self._clients if other.is_closed()]:
                _abandon(self._clients.pop(dead)[0])
        if mine is None:
            return
        client, batcher = mine
        await batcher.aclose()
        with contextlib.suppress(Exception):
            await client.aclose()


def _swallow(done: asyncio.Future[Any]) -> None:
    """Retrieve a background call's outcome, so a failure is not reported as unhandled."""
    if not done.cancelled():
        done.exception()


def _abandon(client: aioredis.Redis) -> None:
    """Let go of a client whose event loop has ended.

    Its sockets belong to that loop, which can no longer close them: close each socket
    itself, or it would linger (and warn) until garbage collection. This reaches into
    asyncio's and redis-py's internals, on this one rare path only (a router reused from
    a second `asyncio.run`).
    """
    pool = client.connection_pool
    for attr in ("_available_connections", "_in_use_connections"):
        for conn in list(getattr(pool, attr, ())):
            transport = getattr(getattr(conn, "_writer", None), "transport", None)
            sock = getattr(transport, "_sock", None)
            with contextlib.suppress(Exception):
                if sock is not None:
                    sock.close()
                    # Marked closed, so neither the transport nor its writer warns later.
                    transport._sock = None  # type: ignore[union-attr]
                    transport._closing = True  # type: ignore[union-attr]
            with contextlib.suppress(Exception):
                conn._writer = conn._reader = None
        with contextlib.suppress(Exception):
            getattr(pool, attr).clear()


def _describe(exc: BaseException) -> str:
    """What went wrong, in words (never a library's internal error numbers)."""
    from redis import exceptions as rx

    chain = _chain(exc)
    texts = " ".join(str(e).lower() for e in chain)
    if any(isinstance(e, ConnectionRefusedError) for e in chain) or (
        # redis-py words a refused connect as "Error 111 connecting to ..." (ECONNREFUSED)
        # and may drop the OSError that said so.
        "refused" in texts or "error 111 connecting" in texts
    ):
        return "connection refused"
    for kind, words in (
        (rx.AuthenticationError, "authentication failed"),
        ((ConnectionResetError, BrokenPipeError), "connection lost"),
        ((TimeoutError, rx.TimeoutError), "timed out"),
        (rx.ResponseError, "the server answered with an error"),
    ):
        if any(isinstance(e, kind) for e in chain):
            return words
    if any(isinstance(e, rx.ConnectionError | OSError) for e in chain):
        return "could not connect" if "connecting to" in texts else "connection lost"
    return "the server gave a malformed answer"


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and what caused it, nearest first."""
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and len(chain) < 8:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    return chain
