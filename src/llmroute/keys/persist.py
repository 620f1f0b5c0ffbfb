"""The persisted key index: `{cache_dir}/{provider}.keyidx` holds the next key slot to use.

The file holds one decimal integer and nothing else (never a key). Writers replace it
atomically (temporary file in the same directory, fsync, `os.replace`) while holding
`fcntl.flock` on a sibling `.lock` file, so concurrent processes never see a partial file
and read-modify-write cycles under `locked()` never lose an update. Readers need no lock.

`KeyIndexFile` does blocking I/O; `KeyIndexPersister` keeps it off the request path by
writing behind, in a worker thread, coalescing bursts into one write.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["KeyIndexFile", "KeyIndexPersister"]

logger = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
_INTEGER = re.compile(r"-?[0-9]+")
# A valid file is a few digits; reading more than this only proves it corrupt.
_MAX_READ = 64


class KeyIndexFile:
    """The `.keyidx` file of one provider. Blocking I/O; every method is synchronous.

    `load(n_keys)` never fails: a missing, empty, corrupt or out-of-range file gives 0
    and one WARNING. When the directory cannot be created or written, `save` warns once
    and from then on keeps the index in memory only.

        file = KeyIndexFile(".cache", "google_ai_studio")
        start = file.load(n_keys=3)
        file.save((start + 1) % 3)
    """

    def __init__(self, cache_dir: str | os.PathLike[str], provider: str) -> None:
        self._dir = Path(cache_dir)
        stem = _file_stem(provider)
        self.path = self._dir / f"{stem}.keyidx"
        self._lock_path = self._dir / f"{stem}.keyidx.lock"
        self._tmp_prefix = f".{stem}.keyidx."
        self._dir_ready = False
        self._memory_only = False
        self._current: int | None = None

    def __repr__(self) -> str:
        return f"KeyIndexFile({str(self.path)!r})"

    @property
    def memory_only(self) -> bool:
        """True once writing failed: saves are then kept in memory only."""
        return self._memory_only

    @property
    def current(self) -> int | None:
        """The index this object last loaded or saved (to disk, or to memory only)."""
        return self._current

    def load(self, n_keys: int) -> int:
        """The persisted next index for a provider with `n_keys` keys, or 0."""
        if n_keys < 1:
            return 0
        try:
            text = self._read_text()
        except FileNotFoundError:
            return self._start_at_zero("missing")
        except OSError as exc:
            return self._start_at_zero(f"unreadable ({exc.strerror or type(exc).__name__})")
        value = _parse(text)
        if value is None:
            return self._start_at_zero("empty" if not text.strip() else "corrupt")
        if value < 0:
            return self._start_at_zero("negative")
        if value >= n_keys:
            return self._start_at_zero(f"out of range for {n_keys} keys")
        self._current = value
        return value

    def read(self) -> int | None:
        """The raw persisted value (any integer), or None when missing or unreadable.

        No warning, no range check: for read-modify-write cycles under `locked()`.
        """
        try:
            return _parse(self._read_text())
        except OSError:
            return None

    def save(self, index: int) -> None:
        """Persist `index` atomically under the inter-process lock."""
        with self.locked():
            self.save_unlocked(index)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the inter-process lock; do not nest (flock would wait on itself)."""
        fd = self._open_lock()
        if fd is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError as exc:
                # e.g. ENOLCK on a network file system: without the lock, writes are unsafe.
                os.close(fd)
                fd = None
                self._degrade(exc)
        try:
            yield
        finally:
            if fd is not None:
                # Closing the descriptor releases the flock too.
                os.close(fd)

    def save_unlocked(self, index: int) -> None:
        """Write `index` atomically; the caller holds `locked()`."""
        if not self._memory_only:
            try:
                self._replace(index)
            except OSError as exc:
                self._degrade(exc)
        self._current = index

    def _read_text(self) -> str:
        with open(self.path, "rb") as fh:
            return fh.read(_MAX_READ + 1).decode("ascii", errors="replace")

    def _open_lock(self) -> int | None:
        if self._memory_only:
            return None
        try:
            if not self._dir_ready:
                self._dir.mkdir(parents=True, exist_ok=True)
                self._dir_ready = True
            return os.open(self._lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            self._degrade(exc)
            return None

    def _replace(self, index: int) -> None:
        fd, tmp = tempfile.mkstemp(dir=self._dir, prefix=self._tmp_prefix, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(str(index).encode("ascii"))
                fh.flush()
                os.fsync(fh.fileno())
            # No fsync of the directory: after a power cut an older index is harmless,
            # while a partial one cannot happen either way.
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def _degrade(self, exc: OSError) -> None:
        self._memory_only = True
        logger.warning(
            "key index %s cannot be written (%s); keeping it in memory only",
            self.path,
            exc.strerror or type(exc).__name__,
        )

    def _start_at_zero(self, why: str) -> int:
        logger.warning("key index %s is %s; starting at key 0", self.path, why)
        self._current = None
        return 0


class KeyIndexPersister:
    """Write-behind for a `KeyIndexFile`, so the request path never touches the disk.

    `mark(i)` is O(1) and schedules a write in a worker thread if none is pending; at most
    one write is in flight, and the last marked value always lands. `flush()` waits for it
    (the router calls it from `aclose`).
    """

    def __init__(self, file: KeyIndexFile) -> None:
        self._file = file
        self._latest: int | None = None
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"KeyIndexPersister({self._file!r})"

    def mark(self, index: int) -> None:
        """Remember `index` as the next key to use; persist it soon. Needs a running loop."""
        self._latest = index
        if self._task is None and self._pending():
            self._task = asyncio.get_running_loop().create_task(self._drain())

    async def flush(self) -> None:
        """Wait until the last marked index is written (or kept in memory, if unwritable)."""
        while (task := self._task) is not None:
            # Shielded: a cancelled flush must not abandon a write half way.
            await asyncio.shield(task)
        if self._pending():
            await self._drain()

    def _pending(self) -> bool:
        return self._latest is not None and self._latest != self._file.current

    async def _drain(self) -> None:
        try:
            # No await between the last check and clearing _task below, so a mark() in
            # between either sees the task still set (and the loop picks its value up) or
            # starts a new one.
            while (value := self._latest) is not None and value != self._file.current:
                await asyncio.to_thread(self._file.save, value)
        except Exception:
            # A background write must never take the event loop down; flush() retries.
            logger.warning("writing key index %s failed", self._file.path, exc_info=True)
        finally:
            if self._task is asyncio.current_task():
                self._task = None


def _file_stem(provider: str) -> str:
    stem = _UNSAFE.sub("_", provider)
    if stem != provider or not stem.strip("."):
        # Two names that sanitise alike ("a/b", "a_b") must not share a file.
        digest = hashlib.sha256(provider.encode()).hexdigest()[:8]
        stem = f"{stem}-{digest}"
    return stem


def _parse(text: str) -> int | None:
    stripped = text.strip()
    if len(stripped) > _MAX_READ or not _INTEGER.fullmatch(stripped):
        return None
    return int(stripped)
