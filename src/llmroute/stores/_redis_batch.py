"""Script calls made in one event-loop tick travel to Redis together.

Fifty concurrent requests each running three scripts would cost 150 round trips, and
redis-py spends more CPU per command than the server does. Calls made before the loop
next turns are written together on one connection (a pipeline, not a transaction): each
script still atomic on its own and run in the order it was called, exactly as if sent
one by one. A lone call waits for nothing but one turn of the loop.
"""

from __future__ import annotations

import asyncio
import functools
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import redis.asyncio as aioredis

__all__ = ["Batcher", "Script"]


class Script:
    """A Lua script known by its SHA1; loaded on the server when it says it lacks it."""

    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        import hashlib

        self.source = source
        self.sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()


_Call = tuple[Script, list[Any], "asyncio.Future[Any]"]


class Batcher:
    """Collects `call`s and flushes each tick's worth as one pipeline."""

    __slots__ = ("_client", "_loop", "_pending", "_tasks")

    def __init__(self, client: aioredis.Redis, loop: asyncio.AbstractEventLoop) -> None:
        self._client = client
        self._loop = loop
        self._pending: list[_Call] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def call(self, script: Script, keys: list[str], args: list[Any]) -> asyncio.Future[Any]:
        """Queue one EVALSHA; the future gets its reply (or the error)."""
        future: asyncio.Future[Any] = self._loop.create_future()
        if not self._pending:
            self._loop.call_soon(self._flush_soon)
        self._pending.append((script, ["EVALSHA", script.sha, len(keys), *keys, *args], future))
        return future

    def _flush_soon(self) -> None:
        batch, self._pending = self._pending, []
        if batch:
            task = self._loop.create_task(self._flush(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _flush(self, batch: list[_Call]) -> None:
        try:
            replies = await self._send(batch)
            await self._rerun_unloaded(batch, replies)
        except BaseException as exc:
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, _, future), reply in zip(batch, replies, strict=True):
            if future.done():
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    async def _rerun_unloaded(self, batch: list[_Call], replies: list[Any]) -> None:
        """A restarted server forgets its scripts: load them and run those calls again (a
        NOSCRIPT reply means the script never ran)."""
        missing = [i for i, r in enumerate(replies) if _is_noscript(r)]
        if not missing:
            return
        for script in {batch[i][0].sha: batch[i][0] for i in missing}.values():
            await self._client.script_load(script.source)
        again = await self._send([batch[i] for i in missing])
        for i, reply in zip(missing, again, strict=True):
            replies[i] = reply

    async def _send(self, batch: list[_Call]) -> list[Any]:
        """One write of every command, then every reply, on one pooled connection;
        once more on a fresh connection if a pooled one turns out dead (a restarted
        server). A script that ran before the connection died may then run twice: its
        charge counts twice, which can only make the limiter stricter."""
        from redis.exceptions import ConnectionError as RedisConnectionError

        packed = b"".join(_pack(command) for _, command, _ in batch)
        try:
            return await self._exchange(packed, len(batch))
        except (RedisConnectionError, OSError):
            return await self._exchange(packed, len(batch))

    async def _exchange(self, packed: bytes, count: int) -> list[Any]:
        from redis.exceptions import ResponseError

        pool = self._client.connection_pool
        get_connection: Any = pool.get_connection
        # redis-py before 5.3 requires a command name; later versions deprecate it.
        conn = await (get_connection("EVALSHA") if _named_get() else get_connection())
        try:
            await conn.send_packed_command(packed, check_health=False)
            replies: list[Any] = []
            for _ in range(count):
                try:
                    replies.append(await conn.read_response())
                except ResponseError as exc:
                    replies.append(exc)
            return replies
        except BaseException:
            # Replies may be left unread on it: this connection cannot be reused.
            await conn.disconnect()
            raise
        finally:
            await pool.release(conn)

    async def aclose(self) -> None:
        """Let calls already queued finish."""
        self._flush_soon()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


@functools.cache
def _named_get() -> bool:
    import inspect

    from redis.asyncio import ConnectionPool

    param = inspect.signature(ConnectionPool.get_connection).parameters.get("command_name")
    return param is not None and param.default is inspect.Parameter.empty


def _pack(args: list[Any]) -> bytes:
    """One command in the Redis protocol (RESP): redis-py's own packing costs more CPU
    than the server spends running the script."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def _is_noscript(reply: Any) -> bool:
    from redis.exceptions import NoScriptError

    return isinstance(reply, NoScriptError)
