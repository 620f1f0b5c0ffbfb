"""A store in one SQLite file: shared by the processes of one host, kept across restarts.

Every admission is one `BEGIN IMMEDIATE` transaction (check all windows of all buckets,
then charge them), so processes sharing the file never admit more than the limits. The
file is in WAL mode with a busy timeout: readers never block the writer, and a writer
waits its turn instead of failing. Each charge is one row per bucket, so the history
answers any limit passed at admission time, and a tightened limit applies at once.

The event loop never touches the file: every call runs on one dedicated thread (one
connection, calls in order, the calls of one loop tick handed over together), so a slow
disk delays the requests that need the store and nothing else. `now` is Unix time
(`uses_wall_clock`), the one clock the processes of a host share.
"""

from __future__ import annotations

import contextlib
import math
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar

from llmroute.errors import StoreError
from llmroute.stores import _sqlite_windows as windows
from llmroute.stores._thread import TickQueue, forget
from llmroute.stores.base import Bucket, Charge, LimitKind

__all__ = ["SQLiteStore"]

_T = TypeVar("_T")

MINUTE: Final = 60.0
DAY: Final = 86_400.0
_MIN_WAIT: Final = 1e-6
#: prune expired rows every this many admissions (and at least once a minute)
_PRUNE_EVERY: Final = 256
DEFAULT_BUSY_TIMEOUT: Final = 5.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cooldowns (name TEXT PRIMARY KEY, until REAL NOT NULL);
CREATE TABLE IF NOT EXISTS disabled_keys (
    provider TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    PRIMARY KEY (provider, fingerprint)
);
CREATE TABLE IF NOT EXISTS key_indexes (provider TEXT PRIMARY KEY, idx INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS learned_limits (
    bucket TEXT NOT NULL,
    kind TEXT NOT NULL,
    value INTEGER NOT NULL,
    PRIMARY KEY (bucket, kind)
);
"""


class _SQLiteCharge(Charge):
    __slots__ = ("ids",)

    def __init__(self, tokens: int, ids: tuple[int, ...]) -> None:
        super().__init__(tokens)
        self.ids = ids


class SQLiteStore:
    """Limiter windows, cooldowns and key state in the SQLite file at `path`.

    The file (and its directory) is created on first use. A file that cannot be opened or
    written raises `StoreError` for the request at hand; the next request tries again.
    """

    uses_wall_clock = True
    shared = True

    def __init__(self, path: str | Path, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self._queue = TickQueue("llmroute-sqlite", self._guarded, self._undo_abandoned)
        # Touched only on the store's thread.
        self._conn: sqlite3.Connection | None = None
        self._admissions = 0
        self._pruned_at = -math.inf

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r})"

    # -- running on the store's thread -------------------------------------------------------

    async def _run(self, fn: Callable[..., _T], *args: Any) -> _T:
        result: _T = await self._queue.call(fn, *args)
        return result

    def _guarded(self, fn: Callable[..., _T], args: tuple[Any, ...]) -> _T:
        try:
            return fn(self._connection(), *args)
        except (sqlite3.Error, OSError) as exc:
            # A broken connection is not reused: the next call opens the file afresh.
            self._drop_connection()
            raise StoreError(f"state store {self.path} could not be used: {exc}") from exc

    def _undo_abandoned(self, fn: Callable[..., Any], result: Any) -> None:
        """An admission whose caller was cancelled still ran: give its charge back."""
        if fn is _acquire and isinstance(result, _SQLiteCharge):
            forget(self._queue.call(_cancel, result.ids))

    def _connection(self) -> sqlite3.Connection:
        conn = self._conn
        if conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(
                self.path,
                timeout=self.busy_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
            try:
                self._prepare(conn)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return conn

    def _prepare(self, conn: sqlite3.Connection) -> None:
        """WAL mode and the schema, retried while other processes do the same: switching
        a fresh file to WAL can answer "database is locked" at once, without waiting out
        the busy timeout, when several processes open it together. This runs on the
        store's own thread, so the pause between tries never blocks the event loop."""
        conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        give_up = time.monotonic() + self.busy_timeout
        pause = 0.005
        while True:
            try:
                if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    conn.execute("PRAGMA journal_mode = WAL")
                # WAL with NORMAL survives a process crash; only a power cut can lose the
                # last transactions, which a limiter can afford.
                conn.execute("PRAGMA synchronous = NORMAL")
                conn.executescript("BEGIN IMMEDIATE;" + windows.SCHEMA + _SCHEMA + "COMMIT;")
                return
            except sqlite3.OperationalError as exc:
                if conn.in_transaction:
                    conn.rollback()
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if time.monotonic() + pause > give_up:
                    raise
                time.sleep(pause)
                pause = min(pause * 2, 0.1)

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    # -- limiter windows ---------------------------------------------------------------------

    async def acquire(self, buckets: Sequence[Bucket], tokens: int, now: float) -> Charge | float:
        # A cancelled caller does not stop the transaction: `_undo_abandoned` refunds it.
        got = await self._run(_acquire, tuple(buckets), tokens, now, self._prune_due(now))
        if isinstance(got, Charge):
            self._admissions += 1
        return got

    async def peek(self, buckets: Sequence[Bucket], tokens: int, now: float) -> float:
        return await self._run(windows.peek, tuple(buckets), tokens, now)

    def _prune_due(self, now: float) -> bool:
        if self._admissions % _PRUNE_EVERY == 0 or now - self._pruned_at >= MINUTE:
            self._pruned_at = now
            return True
        return False

    async def commit(self, charge: Charge, tokens: int) -> None:
        assert isinstance(charge, _SQLiteCharge)
        await self._run(_commit, charge.ids, tokens)
        charge.tokens = tokens

    async def cancel(self, charge: Charge) -> None:
        assert isinstance(charge, _SQLiteCharge)
        await self._run(_cancel, charge.ids)
        charge.tokens = 0

    # -- cooldowns ---------------------------------------------------------------------------

    async def set_cooldown(self, name: str, seconds: float, now: float) -> None:
        await self._run(_set_cooldown, name, now + seconds)

    async def cooldowns(self, names: Sequence[str], now: float) -> list[float]:
        if not names:
            return []
        return await self._run(_cooldowns, tuple(names), now)

    # -- keys --------------------------------------------------------------------------------

    async def disable_key(self, provider: str, fingerprint: str) -> None:
        await self._run(_execute, _DISABLE, (provider, fingerprint))

    async def disabled_keys(self, provider: str) -> frozenset[str]:
        rows = await self._run(_fetch, _DISABLED, (provider,))
        return frozenset(row[0] for row in rows)

    async def rotate_index(self, provider: str, n_keys: int) -> int:
        return await self._run(_rotate_index, provider, n_keys)

    async def get_index(self, provider: str) -> int | None:
        rows = await self._run(_fetch, _GET_INDEX, (provider,))
        return int(rows[0][0]) if rows else None

    async def set_index(self, provider: str, index: int) -> None:
        await self._run(_execute, _SET_INDEX, (provider, index))

    async def set_index_if_absent(self, provider: str, index: int) -> int:
        return await self._run(_set_index_if_absent, provider, index)

    # -- learnt limits -----------------------------------------------------------------------

    async def learn_limit(self, bucket: str, kind: LimitKind, value: int) -> None:
        await self._run(_execute, _LEARN, (bucket, kind, value))

    async def learned_limits(self, bucket: str) -> dict[str, int]:
        rows = await self._run(_fetch, _LEARNED, (bucket,))
        return {kind: int(value) for kind, value in rows}

    # -- inspection and lifetime -------------------------------------------------------------

    async def snapshot(self, now: float) -> dict[str, Any]:
        return await self._run(_snapshot, now)

    async def aclose(self) -> None:
        await self._queue.shutdown(self._drop_connection)


# -- the transactions, run on the store's thread ---------------------------------------------


def _acquire(
    conn: sqlite3.Connection, buckets: tuple[Bucket, ...], tokens: int, now: float, prune: bool
) -> Charge | float:
    got = windows.acquire(conn, buckets, tokens, now, prune)
    if isinstance(got, float):
        return got
    if prune:
        conn.execute("DELETE FROM cooldowns WHERE until <= ?", (now,))
    return _SQLiteCharge(tokens, got)


def _commit(conn: sqlite3.Connection, ids: tuple[int, ...], tokens: int) -> None:
    windows.commit(conn, ids, tokens)


def _cancel(conn: sqlite3.Connection, ids: tuple[int, ...]) -> None:
    windows.cancel(conn, ids)


def _marks(values: Sequence[object]) -> str:
    return ", ".join("?" * len(values))


def _set_cooldown(conn: sqlite3.Connection, name: str, until: float) -> None:
    conn.execute(
        "INSERT INTO cooldowns (name, until) VALUES (?, ?) "
        "ON CONFLICT (name) DO UPDATE SET until = max(until, excluded.until)",
        (name, until),
    )


def _cooldowns(conn: sqlite3.Connection, names: tuple[str, ...], now: float) -> list[float]:
    rows = conn.execute(
        f"SELECT name, until FROM cooldowns WHERE name IN ({_marks(names)})", names
    ).fetchall()
    until = dict(rows)
    return [max(float(until.get(name, 0.0)) - now, 0.0) for name in names]


_DISABLE = "INSERT OR IGNORE INTO disabled_keys (provider, fingerprint) VALUES (?, ?)"
_DISABLED = "SELECT fingerprint FROM disabled_keys WHERE provider = ?"
_GET_INDEX = "SELECT idx FROM key_indexes WHERE provider = ?"
_SET_INDEX = (
    "INSERT INTO key_indexes (provider, idx) VALUES (?, ?) "
    "ON CONFLICT (provider) DO UPDATE SET idx = excluded.idx"
)
_LEARN = (
    "INSERT INTO learned_limits (bucket, kind, value) VALUES (?, ?, ?) "
    "ON CONFLICT (bucket, kind) DO UPDATE SET value = excluded.value"
)
_LEARNED = "SELECT kind, value FROM learned_limits WHERE bucket = ? ORDER BY kind"


def _execute(conn: sqlite3.Connection, sql: str, params: tuple[object, ...]) -> None:
    conn.execute(sql, params)


def _fetch(conn: sqlite3.Connection, sql: str, params: tuple[object, ...]) -> list[Any]:
    return conn.execute(sql, params).fetchall()


def _rotate_index(conn: sqlite3.Connection, provider: str, n_keys: int) -> int:
    conn.execute("BEGIN IMMEDIATE")
    try:
        row = conn.execute(_GET_INDEX, (provider,)).fetchone()
        index = int(row[0]) % n_keys if row is not None and n_keys > 0 else 0
        conn.execute(_SET_INDEX, (provider, index + 1))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return index


def _set_index_if_absent(conn: sqlite3.Connection, provider: str, index: int) -> int:
    # One statement, atomic on its own: the row another process inserted first wins.
    row = conn.execute(
        "INSERT INTO key_indexes (provider, idx) VALUES (?, ?) "
        "ON CONFLICT (provider) DO UPDATE SET idx = idx RETURNING idx",
        (provider, index),
    ).fetchone()
    return int(row[0])


def _snapshot(conn: sqlite3.Connection, now: float) -> dict[str, Any]:
    cooldowns = conn.execute(
        "SELECT name, until FROM cooldowns WHERE until > ? ORDER BY name", (now,)
    ).fetchall()
    disabled: dict[str, list[str]] = {}
    for provider, fingerprint in conn.execute(
        "SELECT provider, fingerprint FROM disabled_keys ORDER BY provider, fingerprint"
    ):
        disabled.setdefault(provider, []).append(fingerprint)
    indexes = conn.execute("SELECT provider, idx FROM key_indexes ORDER BY provider").fetchall()
    learned: dict[str, dict[str, int]] = {}
    for bucket, kind, value in conn.execute(
        "SELECT bucket, kind, value FROM learned_limits ORDER BY bucket, kind"
    ):
        learned.setdefault(bucket, {})[kind] = int(value)
    return {
        "cooldowns": {name: float(until) - now for name, until in cooldowns},
        "disabled": disabled,
        "indexes": {provider: int(idx) for provider, idx in indexes},
        "learned": learned,
    }
