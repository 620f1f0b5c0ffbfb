"""The limiter windows of the SQLite store: one row per charge, running totals per bucket.

Each charge is a row (bucket, admission time, tokens) flagged with the windows it still
counts in. `windows` holds each bucket's running totals, so an admission reads four
numbers instead of counting a day of rows: before reading, the rows that have left a
window since the last look are subtracted and unflagged (an indexed range of just those
rows). A row leaves the minute window at t + 60 s and the day window at t + 24 h; it is
deleted once it counts nowhere. The rows themselves are read only to tell a refused
request how long to wait.

Every function here runs inside the caller's connection on the store's thread; the
admission, the correction and the refund are each one `BEGIN IMMEDIATE` transaction.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Final

from llmroute.stores.base import Bucket

__all__ = ["SCHEMA", "acquire", "cancel", "commit", "peek", "prune"]

MINUTE: Final = 60.0
DAY: Final = 86_400.0
_MIN_WAIT: Final = 1e-6

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS charges (
    id INTEGER PRIMARY KEY,
    bucket TEXT NOT NULL,
    t REAL NOT NULL,
    tokens INTEGER NOT NULL,
    in_minute INTEGER NOT NULL,
    in_day INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS charges_in_minute ON charges (bucket, t) WHERE in_minute = 1;
CREATE INDEX IF NOT EXISTS charges_in_day ON charges (bucket, t) WHERE in_day = 1;
CREATE INDEX IF NOT EXISTS charges_by_time ON charges (t);
CREATE TABLE IF NOT EXISTS windows (
    bucket TEXT PRIMARY KEY,
    min_req INTEGER NOT NULL,
    min_tok INTEGER NOT NULL,
    day_req INTEGER NOT NULL,
    day_tok INTEGER NOT NULL
);
"""

_TOTALS = "SELECT min_req, min_tok, day_req, day_tok FROM windows WHERE bucket = ?"
_ADD = (
    "INSERT INTO windows (bucket, min_req, min_tok, day_req, day_tok) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (bucket) DO UPDATE SET min_req = min_req + excluded.min_req, "
    "min_tok = min_tok + excluded.min_tok, day_req = day_req + excluded.day_req, "
    "day_tok = day_tok + excluded.day_tok"
)
# A charge at t has left the minute window once t + 60 <= now, computed exactly so (as
# the memory store does); `t <= ?` (now - 60, a hair later) only narrows the index range.
_GONE_MINUTE = "bucket = ? AND in_minute = 1 AND t <= ? AND t + 60.0 <= ?"
_GONE_DAY = "bucket = ? AND in_day = 1 AND t <= ? AND t + 86400.0 <= ?"
_MARGIN = 1e-3
_MINUTE_ROWS = "SELECT t, tokens FROM charges WHERE bucket = ? AND in_minute = 1 ORDER BY t, id"
_DAY_ROWS = "SELECT t, tokens FROM charges WHERE bucket = ? AND in_day = 1 ORDER BY t, id"
# The same rows for a dry run, which cannot expire anything: those already gone are skipped.
_LIVE_MINUTE_ROWS = (
    "SELECT t, tokens FROM charges WHERE bucket = ? AND in_minute = 1 AND t + 60.0 > ? "
    "ORDER BY t, id"
)
_LIVE_DAY_ROWS = (
    "SELECT t, tokens FROM charges WHERE bucket = ? AND in_day = 1 AND t + 86400.0 > ? "
    "ORDER BY t, id"
)


def transaction(conn: sqlite3.Connection) -> _Transaction:
    return _Transaction(conn)


class _Transaction:
    """`with transaction(conn):` one BEGIN IMMEDIATE ... COMMIT, rolled back on error."""

    __slots__ = ("conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.conn.execute("COMMIT")
        elif self.conn.in_transaction:
            self.conn.execute("ROLLBACK")


# -- admission -----------------------------------------------------------------------------


def acquire(
    conn: sqlite3.Connection, buckets: Sequence[Bucket], tokens: int, now: float, prune_all: bool
) -> tuple[int, ...] | float:
    """Check every bucket and charge them all, in one transaction: the new row ids, or the
    seconds until the request would fit (`inf`: never)."""
    for b in buckets:
        if not _can_ever_fit(b, tokens):
            return math.inf
    with transaction(conn):
        wait = 0.0
        for b in buckets:
            expire(conn, b.name, now)
            wait = max(wait, _wait(conn, b, tokens, now))
        if wait:
            return wait
        ids = tuple(_charge(conn, b, tokens, now) for b in buckets)
        if prune_all:
            prune(conn, now)
    return ids


def peek(conn: sqlite3.Connection, buckets: Sequence[Bucket], tokens: int, now: float) -> float:
    """`acquire`'s answer, writing nothing: one read transaction (a consistent snapshot
    that never takes the write lock, so it delays no other process's admission)."""
    for b in buckets:
        if not _can_ever_fit(b, tokens):
            return math.inf
    conn.execute("BEGIN")
    try:
        return max((_peek_wait(conn, b, tokens, now) for b in buckets), default=0.0)
    finally:
        conn.execute("COMMIT")


def _peek_wait(conn: sqlite3.Connection, b: Bucket, cost: int, now: float) -> float:
    """`_wait` on the totals as `expire` would leave them, computed instead of written."""
    row = conn.execute(_TOTALS, (b.name,)).fetchone()
    min_req, min_tok, day_req, day_tok = row if row is not None else (0, 0, 0, 0)
    gone_req, gone_tok = conn.execute(
        f"SELECT count(*), coalesce(sum(tokens), 0) FROM charges WHERE {_GONE_MINUTE}",
        (b.name, now - MINUTE + _MARGIN, now),
    ).fetchone()
    totals = (min_req - gone_req, min_tok - gone_tok)
    gone_req, gone_tok = conn.execute(
        f"SELECT count(*), coalesce(sum(tokens), 0) FROM charges WHERE {_GONE_DAY}",
        (b.name, now - DAY + _MARGIN, now),
    ).fetchone()
    day = (day_req - gone_req, day_tok - gone_tok)
    return _wait_on(conn, b, cost, now, (*totals, *day), (_LIVE_MINUTE_ROWS, _LIVE_DAY_ROWS))


def _can_ever_fit(b: Bucket, cost: int) -> bool:
    return not (
        b.rpm == 0
        or b.rpd == 0
        or (b.tpm is not None and cost > b.tpm)
        or (b.tpd is not None and cost > b.tpd)
    )


def _wait(conn: sqlite3.Connection, b: Bucket, cost: int, now: float) -> float:
    """0.0 when `cost` fits in bucket `b` at `now`, else the seconds until it would."""
    row = conn.execute(_TOTALS, (b.name,)).fetchone()
    totals = row if row is not None else (0, 0, 0, 0)
    return _wait_on(conn, b, cost, now, totals, (_MINUTE_ROWS, _DAY_ROWS), live=False)


def _wait_on(
    conn: sqlite3.Connection,
    b: Bucket,
    cost: int,
    now: float,
    totals: tuple[int, int, int, int],
    rows_sql: tuple[str, str],
    *,
    live: bool = True,
) -> float:
    """The wait for `cost` in bucket `b` given its window totals; `live`: the row queries
    take `now` to skip the rows that have left their window."""
    min_req, min_tok, day_req, day_tok = totals
    params = (b.name, now) if live else (b.name,)
    free_at = 0.0
    if _over(min_req, min_tok, b.rpm, b.tpm, cost):
        free_at = _free_at(conn, rows_sql[0], params, min_req, min_tok, b.rpm, b.tpm, cost)
        free_at += MINUTE
    if _over(day_req, day_tok, b.rpd, b.tpd, cost):
        day = _free_at(conn, rows_sql[1], params, day_req, day_tok, b.rpd, b.tpd, cost) + DAY
        free_at = max(free_at, day)
    # Refused means a positive wait: 0.0 would read as "fits".
    return max(free_at - now, _MIN_WAIT) if free_at else 0.0


def _over(requests: int, used: int, max_req: int | None, max_tok: int | None, cost: int) -> bool:
    return (max_req is not None and requests >= max_req) or (
        max_tok is not None and used + cost > max_tok
    )


def _free_at(
    conn: sqlite3.Connection,
    rows_sql: str,
    params: tuple[object, ...],
    requests: int,
    used: int,
    max_req: int | None,
    max_tok: int | None,
    cost: int,
) -> float:
    """The admission time of the charge whose leaving makes room: the oldest leave first,
    walked until enough requests and tokens have gone."""
    need_requests = 0 if max_req is None else requests - max_req + 1
    need_tokens = 0 if max_tok is None else used + cost - max_tok
    freed = 0
    admitted_at = 0.0
    for seen, (t, tokens) in enumerate(conn.execute(rows_sql, params), start=1):
        freed += tokens
        admitted_at = float(t)
        if seen >= need_requests and freed >= need_tokens:
            break
    return admitted_at


def _charge(conn: sqlite3.Connection, b: Bucket, tokens: int, now: float) -> int:
    day = int(b.rpd is not None or b.tpd is not None)
    cursor = conn.execute(
        "INSERT INTO charges (bucket, t, tokens, in_minute, in_day) VALUES (?, ?, ?, 1, ?)",
        (b.name, now, tokens, day),
    )
    conn.execute(_ADD, (b.name, 1, tokens, day, tokens * day))
    rowid = cursor.lastrowid
    assert rowid is not None
    return rowid


# -- what leaves the windows ---------------------------------------------------------------


def expire(conn: sqlite3.Connection, bucket: str, now: float) -> None:
    """Take out of `bucket`'s totals the charges that have left a window by `now`."""
    gone = (bucket, now - MINUTE + _MARGIN, now)
    left, tokens = conn.execute(
        f"SELECT count(*), coalesce(sum(tokens), 0) FROM charges WHERE {_GONE_MINUTE}", gone
    ).fetchone()
    if left:
        conn.execute(f"DELETE FROM charges WHERE {_GONE_MINUTE} AND in_day = 0", gone)
        conn.execute(f"UPDATE charges SET in_minute = 0 WHERE {_GONE_MINUTE}", gone)
        conn.execute(_ADD, (bucket, -left, -tokens, 0, 0))
    gone = (bucket, now - DAY + _MARGIN, now)
    left, tokens = conn.execute(
        f"SELECT count(*), coalesce(sum(tokens), 0) FROM charges WHERE {_GONE_DAY}", gone
    ).fetchone()
    if left:
        # Past the day window is past the minute window too: nothing else counts these.
        conn.execute(f"DELETE FROM charges WHERE {_GONE_DAY}", gone)
        conn.execute(_ADD, (bucket, 0, 0, -left, -tokens))


def prune(conn: sqlite3.Connection, now: float) -> None:
    """Expire every bucket with rows past the minute, not only the ones still in use."""
    stale = conn.execute(
        "SELECT DISTINCT bucket FROM charges WHERE t <= ? AND (in_minute = 1 OR t <= ?)",
        (now - MINUTE + _MARGIN, now - DAY + _MARGIN),
    ).fetchall()
    for (bucket,) in stale:
        expire(conn, bucket, now)
    conn.execute(
        "DELETE FROM windows WHERE min_req = 0 AND day_req = 0 AND bucket NOT IN "
        "(SELECT bucket FROM charges)"
    )


# -- correction and refund -----------------------------------------------------------------


def _charges(
    conn: sqlite3.Connection, ids: tuple[int, ...]
) -> Iterator[tuple[int, tuple[str, int, int, int]]]:
    """(id, (bucket, tokens, in_minute, in_day)) of each charge still recorded, read one at a
    time so each row is current when the caller changes it."""
    for rowid in ids:
        row = conn.execute(
            "SELECT bucket, tokens, in_minute, in_day FROM charges WHERE id = ?", (rowid,)
        ).fetchone()
        if row is not None:
            yield rowid, row


def commit(conn: sqlite3.Connection, ids: tuple[int, ...], tokens: int) -> None:
    """Correct a charge to the real total, in the windows it still counts in."""
    with transaction(conn):
        for rowid, (bucket, old, in_minute, in_day) in _charges(conn, ids):
            delta = tokens - old
            conn.execute("UPDATE charges SET tokens = ? WHERE id = ?", (tokens, rowid))
            conn.execute(_ADD, (bucket, 0, delta * in_minute, 0, delta * in_day))


def cancel(conn: sqlite3.Connection, ids: tuple[int, ...]) -> None:
    """Give a charge back whole, wherever it still counts."""
    with transaction(conn):
        for rowid, (bucket, old, in_minute, in_day) in _charges(conn, ids):
            conn.execute("DELETE FROM charges WHERE id = ?", (rowid,))
            conn.execute(_ADD, (bucket, -in_minute, -old * in_minute, -in_day, -old * in_day))
