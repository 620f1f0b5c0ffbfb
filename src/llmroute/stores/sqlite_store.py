"""A store in one SQLite file: shared by the processes of one host, kept across restarts.

Every admission is one `BEGIN IMMEDIATE` transaction (check all windows of all buckets,
then charge them), so processes sharing the file never admit more than the limits. The
file is in WAL mode with a busy timeout: readers never block the writer, and a writer
waits its turn instead of failing. Each charge is one row per bucket, so the history
answers any limit passed at admission time, and a tightened limit applies at once.

The event loop never touches the file: every call runs on one dedicated thread (one
connection, calls in order), so a slow disk delays the requests that need the store and
nothing else. `now` is Unix time (`uses_wall_clock`), the one clock the processes of a host
share.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final, TypeVar

from llmroute.errors import StoreError
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
CREATE TABLE IF NOT EXISTS charges (
    id INTEGER PRIMARY KEY,
    bucket TEXT NOT NULL,
    t REAL NOT NULL,
    tokens INTEGER NOT NULL,
    day INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS charges_by_bucket ON charges (bucket, t);
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

_MINUTE_USE = "SELECT count(*), coalesce(sum(tokens), 0) FROM charges WHERE bucket = ? AND t > ?"
_DAY_USE = (
    "SELECT count(*), coalesce(sum(tokens), 0) FROM charges WHERE bucket = ? AND t > ? AND day = 1"
)
_MINUTE_ROWS = "SELECT t, tokens FROM charges WHERE bucket = ? AND t > ? ORDER BY t, id"
_DAY_ROWS = "SELECT t, tokens FROM charges WHERE bucket = ? AND t > ? AND day = 1 ORDER BY t, id"


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
        self._executor: ThreadPoolExecutor | None = None
        # Touched only on the executor's thread.
        self._conn: sqlite3.Connection | None = None
        self._admissions = 0
        self._pruned_at = -math.inf

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r})"

    # -- running on the store's thread -------------------------------------------------------

    def _submit(self, fn: Callable[..., _T], *args: Any) -> Future[_T]:
        executor = self._executor
        if executor is None:
            executor = self._executor = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="llmroute-sqlite"
            )
        return executor.submit(self._guarded, fn, *args)

    async def _run(self, fn: Callable[..., _T], *args: Any) -> _T:
        return await asyncio.wrap_future(self._submit(fn, *args))

    def _guarded(self, fn: Callable[..., _T], *args: Any) -> _T:
        try:
            return fn(self._connection(), *args)
        except (sqlite3.Error, OSError) as exc:
            # A broken connection is not reused: the next call opens the file afresh.
            self._drop_connection()
            raise StoreError(f"state store {self.path} could not be used: {exc}") from exc

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
                conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
                conn.execute("PRAGMA journal_mode = WAL")
                # WAL with NORMAL survives a process crash; only a power cut can lose the
                # last transactions, which a limiter can afford.
                conn.execute("PRAGMA synchronous = NORMAL")
                conn.executescript(_SCHEMA)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return conn

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    # -- limiter windows ---------------------------------------------------------------------

    async def acquire(self, buckets: Sequence[Bucket], tokens: int, now: float) -> Charge | float:
        future = self._submit(_acquire, tuple(buckets), tokens, now, self._prune_due(now))
        try:
            got = await asyncio.shield(asyncio.wrap_future(future))
        except asyncio.CancelledError:
            # The transaction runs to its end regardless; give back what it charged.
            future.add_done_callback(self._refund_abandoned)
            raise
        if isinstance(got, Charge):
            self._admissions += 1
        return got

    def _prune_due(self, now: float) -> bool:
        if self._admissions % _PRUNE_EVERY == 0 or now - self._pruned_at >= MINUTE:
            self._pruned_at = now
            return True
        return False

    def _refund_abandoned(self, future: Future[Charge | float]) -> None:
        if future.cancelled() or future.exception() is not None:
            return
        got = future.result()
        if isinstance(got, _SQLiteCharge) and self._executor is not None:
            self._executor.submit(self._guarded, _cancel, got.ids)

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
        executor, self._executor = self._executor, None
        if executor is None:
            return
        await asyncio.wrap_future(executor.submit(self._drop_connection))
        executor.shutdown(wait=False)


# -- the transactions, run on the store's thread ---------------------------------------------


def _acquire(
    conn: sqlite3.Connection, buckets: tuple[Bucket, ...], tokens: int, now: float, prune: bool
) -> Charge | float:
    conn.execute("BEGIN IMMEDIATE")
    try:
        wait = 0.0
        for bucket in buckets:
            wait = max(wait, _wait(conn, bucket, tokens, now))
            if wait == math.inf:
                break
        if wait:
            conn.execute("ROLLBACK")
            return wait
        ids = tuple(
            _insert(conn, b.name, now, tokens, b.rpd is not None or b.tpd is not None)
            for b in buckets
        )
        if prune:
            conn.execute(
                "DELETE FROM charges WHERE t <= ? OR (day = 0 AND t <= ?)",
                (now - DAY, now - MINUTE),
            )
            conn.execute("DELETE FROM cooldowns WHERE until <= ?", (now,))
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return _SQLiteCharge(tokens, ids)


def _insert(conn: sqlite3.Connection, bucket: str, now: float, tokens: int, day: bool) -> int:
    cursor = conn.execute(
        "INSERT INTO charges (bucket, t, tokens, day) VALUES (?, ?, ?, ?)",
        (bucket, now, tokens, int(day)),
    )
    rowid = cursor.lastrowid
    assert rowid is not None
    return rowid


def _wait(conn: sqlite3.Connection, b: Bucket, cost: int, now: float) -> float:
    """0.0 when `cost` fits in bucket `b` at `now`, else the seconds until it would."""
    rpm, tpm, rpd, tpd = b.rpm, b.tpm, b.rpd, b.tpd
    if rpm == 0 or rpd == 0 or (tpm is not None and cost > tpm) or (tpd is not None and cost > tpd):
        return math.inf
    free_at = 0.0
    if rpm is not None or tpm is not None:
        free_at = _free_at(conn, _MINUTE_USE, _MINUTE_ROWS, b.name, now, MINUTE, rpm, tpm, cost)
    if rpd is not None or tpd is not None:
        day_free_at = _free_at(conn, _DAY_USE, _DAY_ROWS, b.name, now, DAY, rpd, tpd, cost)
        free_at = max(free_at, day_free_at)
    # Refused means a positive wait: 0.0 would read as "fits".
    return max(free_at - now, _MIN_WAIT) if free_at else 0.0


def _free_at(
    conn: sqlite3.Connection,
    use_sql: str,
    rows_sql: str,
    bucket: str,
    now: float,
    span: float,
    max_requests: int | None,
    max_tokens: int | None,
    cost: int,
) -> float:
    """When the window has room for one more request of `cost` (0.0: it has room now)."""
    since = now - span
    requests, used = conn.execute(use_sql, (bucket, since)).fetchone()
    need_requests = 0 if max_requests is None else requests - max_requests + 1
    need_tokens = 0 if max_tokens is None else used + cost - max_tokens
    if need_requests <= 0 and need_tokens <= 0:
        return 0.0
    # The oldest charges leave first: walk them until enough requests and tokens have gone.
    freed = 0
    admitted_at = now
    for seen, (t, tokens) in enumerate(conn.execute(rows_sql, (bucket, since)), start=1):
        freed += tokens
        admitted_at = t
        if seen >= need_requests and freed >= need_tokens:
            break
    return float(admitted_at) + span


def _commit(conn: sqlite3.Connection, ids: tuple[int, ...], tokens: int) -> None:
    conn.execute(f"UPDATE charges SET tokens = ? WHERE id IN ({_marks(ids)})", (tokens, *ids))


def _cancel(conn: sqlite3.Connection, ids: tuple[int, ...]) -> None:
    conn.execute(f"DELETE FROM charges WHERE id IN ({_marks(ids)})", ids)


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
