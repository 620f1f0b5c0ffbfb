"""The persisted key index: `{cache_dir}/{provider}.keyidx` holds the next key slot to use.

The file holds one decimal integer and nothing else (never a key). Writers replace it
atomically (temporary file in the same directory, fsync, `os.replace`) while holding
`fcntl.flock` on a sibling `.lock` file, so concurrent processes never see a partial file
and read-modify-write cycles under `locked()` never lose an update. Readers need no lock.
A process killed half way through a write leaves its temporary file behind; as only a
lock holder writes one, any found under the lock is stale and is removed.

`KeyIndexFile` does blocking I/O; `KeyIndexPersister` keeps it off the request path by
writing behind in one worker thread, coalescing bursts into one write. That thread does not
depend on any event loop, and the interpreter waits for it at exit, so a router that is
never closed still leaves the last index it handed out on disk.
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
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

__all__ = ["KeyIndexFile", "KeyIndexPersister"]

logger = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
_INTEGER = re.compile(r"-?[0-9]+")
# A valid file is a few digits; reading more than this only proves it corrupt.
_MAX_READ = 64
_TMP_SUFFIX = ".tmp"
# tempfile.mkstemp puts this many characters (never a dot) between prefix and suffix.
_TMP_RANDOM = 8


class KeyIndexFile:
    """The `.keyidx` file of one provider. Blocking I/O; every method is synchronous.

    `load(n_keys)` never fails: a missing file (a fresh cache) gives 0 silently; an empty,
    corrupt or out-of-range one gives 0 and one WARNING. When the directory cannot be
    created or written, `save` warns once and from then on keeps the index in memory only.

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
        self._swept = False
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
        if self._stale_files():
            with self.locked():
                pass  # taking the lock sweeps them
        try:
            text = self._read_text()
        except FileNotFoundError:
            logger.debug("key index %s does not exist yet; starting at key 0", self.path)
            self._current = None
            return 0
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
        if fd is not None and not self._swept:
            self._swept = True
            self._remove_stale_files()
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

    def _stale_files(self) -> list[Path]:
        """Temporary files of this index in the directory; under the lock, all are stale."""
        prefix = self._tmp_prefix
        try:
            with os.scandir(self._dir) as entries:
                names = [entry.name for entry in entries if entry.name.startswith(prefix)]
        except OSError:
            return []
        return [
            self._dir / name
            for name in names
            if name.endswith(_TMP_SUFFIX)
            and len(name) == len(prefix) + _TMP_RANDOM + len(_TMP_SUFFIX)
            and "." not in name[len(prefix) : -len(_TMP_SUFFIX)]
        ]

    def _remove_stale_files(self) -> None:
        for path in self._stale_files():
            with contextlib.suppress(OSError):
                path.unlink()
                logger.info("removed %s, left by a process that stopped mid-write", path)

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
        fd, tmp = tempfile.mkstemp(dir=self._dir, prefix=self._tmp_prefix, suffix=_TMP_SUFFIX)
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

    `mark(i)` is O(1) and, if no write is pending, hands one to the shared writer thread;
    at most one write per file is in flight, and the last marked value always lands, even
    when no event loop ever runs again (the interpreter joins the writer thread at exit).
    `flush()` waits for it (the router calls it from `aclose`); `flush_sync()` is the same
    for code without an event loop.
    """

    def __init__(self, file: KeyIndexFile) -> None:
        self._file = file
        self._latest: int | None = None
        self._lock = threading.Lock()
        self._pending: Future[None] | None = None

    def __repr__(self) -> str:
        return f"KeyIndexPersister({self._file!r})"

    def mark(self, index: int) -> None:
        """Remember `index` as the next key to use; persist it soon, from any thread."""
        with self._lock:
            self._latest = index
            if self._pending is not None or index == self._file.current:
                return
            self._pending = _submit(self._drain)
            if self._pending is not None:
                return
        self._drain()  # the interpreter is shutting down: no thread takes new work

    async def flush(self) -> None:
        """Wait until the last marked index is written (or kept in memory, if unwritable)."""
        for _ in range(2):  # a second round retries a write that raised
            future = self._schedule_if_needed()
            if future is None:
                return
            # Shielded: a cancelled flush must not cancel a queued write.
            await asyncio.shield(asyncio.wrap_future(future))

    def flush_sync(self) -> None:
        """`flush` for code without an event loop."""
        for _ in range(2):
            future = self._schedule_if_needed()
            if future is None:
                return
            future.result()

    def _schedule_if_needed(self) -> Future[None] | None:
        with self._lock:
            if self._pending is not None or self._latest in (None, self._file.current):
                return self._pending
            self._pending = _submit(self._drain)
            if self._pending is not None:
                return self._pending
        self._drain()
        return None

    def _drain(self) -> None:
        """In the writer thread: write until the file holds the latest marked value."""
        while True:
            with self._lock:
                value = self._latest
                if value is None or value == self._file.current:
                    self._pending = None
                    return
            try:
                self._file.save(value)
            except Exception:
                # A background write must never take the process down; flush() retries.
                logger.warning("writing key index %s failed", self._file.path, exc_info=True)
                with self._lock:
                    self._pending = None
                return


#: (pid, executor): one writer thread per process, made again in a forked child
_writer: tuple[int, ThreadPoolExecutor] | None = None
_writer_lock = threading.Lock()


def _submit(write: Callable[[], None]) -> Future[None] | None:
    """Run `write` in the writer thread; None when the interpreter is shutting down."""
    global _writer
    writer = _writer
    if writer is None or writer[0] != os.getpid():
        with _writer_lock:
            writer = _writer
            if writer is None or writer[0] != os.getpid():
                executor = ThreadPoolExecutor(1, thread_name_prefix="llmroute-keyidx")
                writer = _writer = (os.getpid(), executor)
    try:
        return writer[1].submit(write)
    except RuntimeError:  # "cannot schedule new futures after interpreter shutdown"
        return None


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
