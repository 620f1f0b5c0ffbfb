from __future__ import annotations

import asyncio
import logging
import os
import re
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmroute.keys.persist import KeyIndexFile, KeyIndexPersister

SRC = Path(__file__).resolve().parents[2] / "src"


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.levelno == logging.WARNING and r.name.startswith("llmroute.keys")
    ]


class CountingFile(KeyIndexFile):
    def __init__(self, cache_dir: Path, provider: str) -> None:
        super().__init__(cache_dir, provider)
        self.writes: list[int] = []

    def save(self, index: int) -> None:
        self.writes.append(index)
        super().save(index)


def test_round_trip(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cache = tmp_path / "cache" / "nested"
    file = KeyIndexFile(cache, "google_ai_studio")
    file.save(2)
    assert (cache / "google_ai_studio.keyidx").read_text() == "2"
    assert KeyIndexFile(cache, "google_ai_studio").load(3) == 2
    assert file.current == 2
    assert file.read() == 2
    assert not warnings_of(caplog)


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ("", "empty"),
        ("  \n", "empty"),
        ("abc", "corrupt"),
        ("1.5", "corrupt"),
        ("+1", "corrupt"),
        ("1 2", "corrupt"),
        ("9" * 200, "corrupt"),
        ("\xff\xfe", "corrupt"),
        ("-1", "negative"),
        ("3", "out of range"),
        ("17", "out of range"),
    ],
)
def test_bad_contents_start_at_zero_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: str | None, why: str
) -> None:
    path = tmp_path / "groq.keyidx"
    if content is not None:
        path.write_bytes(content.encode("latin-1"))
    caplog.set_level(logging.WARNING, logger="llmroute.keys")
    assert KeyIndexFile(tmp_path, "groq").load(3) == 0
    records = warnings_of(caplog)
    assert len(records) == 1
    assert why in records[0].getMessage()
    assert str(path) in records[0].getMessage()


def test_missing_file_on_a_fresh_cache_starts_at_zero_silently(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="llmroute.keys")
    file = KeyIndexFile(tmp_path / "fresh", "groq")
    assert file.load(3) == 0
    assert file.current is None
    assert [r for r in caplog.records if r.levelno >= logging.INFO] == []
    assert not (tmp_path / "fresh").exists()  # loading creates nothing


STALE = [".groq.keyidx.abcd_123.tmp", ".groq.keyidx.zz99yy88.tmp"]
#: not this index's temporary files: another provider's, or not mkstemp's shape
KEPT = [".groq.keyidx.keyidx.ab12cd34.tmp", ".groqx.keyidx.abcd1234.tmp", "groq.keyidx.tmp"]


def test_stale_temp_files_are_removed_at_load(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    for name in STALE + KEPT:
        (tmp_path / name).write_text("1")
    (tmp_path / "groq.keyidx").write_text("2")
    caplog.set_level(logging.INFO, logger="llmroute.keys")
    assert KeyIndexFile(tmp_path, "groq").load(3) == 2
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == sorted([*KEPT, "groq.keyidx", "groq.keyidx.lock"])
    assert not warnings_of(caplog)
    assert sum("mid-write" in r.getMessage() for r in caplog.records) == len(STALE)


def test_stale_temp_files_are_removed_by_the_first_write(tmp_path: Path) -> None:
    file = KeyIndexFile(tmp_path, "groq")
    assert file.load(3) == 0
    for name in STALE:
        (tmp_path / name).write_text("1")  # a process killed after our load
    file.save(1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["groq.keyidx", "groq.keyidx.lock"]


def test_valid_contents_with_newline_are_accepted(tmp_path: Path) -> None:
    (tmp_path / "groq.keyidx").write_text("1\n")
    assert KeyIndexFile(tmp_path, "groq").load(2) == 1


def test_no_keys_reads_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert KeyIndexFile(tmp_path / "absent", "groq").load(0) == 0
    assert not warnings_of(caplog)
    assert not (tmp_path / "absent").exists()


def test_provider_name_is_sanitised(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    evil = KeyIndexFile(cache, "../../etc/passwd")
    evil.save(1)
    lookalike = KeyIndexFile(cache, ".._.._etc_passwd")
    lookalike.save(2)
    files = sorted(p.name for p in cache.iterdir() if p.suffix == ".keyidx")
    assert len(files) == 2
    assert all("/" not in name for name in files)
    assert evil.path.parent == cache
    assert KeyIndexFile(cache, "../../etc/passwd").load(3) == 1
    assert KeyIndexFile(cache, ".._.._etc_passwd").load(3) == 2
    assert KeyIndexFile(cache, "").path.parent == cache


def test_unwritable_dir_warns_once_then_memory_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    file = KeyIndexFile(blocker / "cache", "groq")
    caplog.set_level(logging.WARNING, logger="llmroute.keys")
    file.save(1)
    file.save(2)
    with file.locked():
        file.save_unlocked(0)
    file.save(1)
    assert len(warnings_of(caplog)) == 1
    assert file.memory_only
    assert file.current == 1
    assert blocker.read_text() == "x"


def test_atomic_write_leaves_no_temp_files(tmp_path: Path) -> None:
    file = KeyIndexFile(tmp_path, "groq")
    for i in range(20):
        file.save(i)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["groq.keyidx", "groq.keyidx.lock"]
    assert file.read() == 19


def test_failed_write_removes_its_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    file = KeyIndexFile(tmp_path, "groq")
    file.save(1)

    def broken_replace(src: str, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    file.save(2)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["groq.keyidx", "groq.keyidx.lock"]
    assert file.read() == 1
    assert file.memory_only
    assert len(warnings_of(caplog)) == 1


def test_key_index_never_logs_more_than_path(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "groq.keyidx").write_text("AIzaSy-not-an-index")
    KeyIndexFile(tmp_path, "groq").load(2)
    assert "AIzaSy" not in caplog.text


async def test_persister_coalesces_and_flush_lands_last_value(tmp_path: Path) -> None:
    file = CountingFile(tmp_path, "groq")
    persister = KeyIndexPersister(file)
    for i in range(1000):
        persister.mark(i % 7)
    await persister.flush()
    assert file.read() == 999 % 7
    assert len(file.writes) <= 2
    assert file.writes[-1] == 999 % 7


async def test_persister_marks_during_a_write_land(tmp_path: Path) -> None:
    file = CountingFile(tmp_path, "groq")
    persister = KeyIndexPersister(file)
    persister.mark(1)
    await asyncio.sleep(0)  # the first write is now in flight
    for i in range(2, 50):
        persister.mark(i)
        if i % 10 == 0:
            await asyncio.sleep(0)
    await persister.flush()
    assert file.read() == 49
    assert file.writes[-1] == 49
    assert len(file.writes) < 48
    assert file.writes == sorted(file.writes)


async def test_persister_skips_unchanged_value(tmp_path: Path) -> None:
    (tmp_path / "groq.keyidx").write_text("2")
    file = CountingFile(tmp_path, "groq")
    assert file.load(3) == 2
    persister = KeyIndexPersister(file)
    persister.mark(2)
    await persister.flush()
    assert file.writes == []
    persister.mark(0)
    await persister.flush()
    persister.mark(0)
    await persister.flush()
    await persister.flush()
    assert file.writes == [0]


async def test_persister_with_unwritable_dir_terminates(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    file = CountingFile(blocker, "groq")
    persister = KeyIndexPersister(file)
    for i in range(5):
        persister.mark(i)
        await asyncio.sleep(0)
    await persister.flush()
    assert file.memory_only
    assert file.current == 4
    assert len(warnings_of(caplog)) == 1


def test_persister_marks_from_threads_and_flush_sync(tmp_path: Path) -> None:
    file = CountingFile(tmp_path, "groq")
    persister = KeyIndexPersister(file)

    def mark_many(offset: int) -> None:
        for i in range(500):
            persister.mark((i + offset) % 5)

    threads = [threading.Thread(target=mark_many, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    persister.mark(3)
    persister.flush_sync()
    assert file.read() == 3
    assert file.writes[-1] == 3


async def test_a_cancelled_flush_still_lands(tmp_path: Path) -> None:
    file = CountingFile(tmp_path, "groq")
    persister = KeyIndexPersister(file)
    persister.mark(2)
    flushing = asyncio.ensure_future(persister.flush())
    await asyncio.sleep(0)
    flushing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await flushing
    await persister.flush()
    assert file.read() == 2


NEVER_FLUSHED = """
import asyncio, sys
from llmroute.keys.persist import KeyIndexFile, KeyIndexPersister

persister = KeyIndexPersister(KeyIndexFile(sys.argv[1], "groq"))

async def hand_out() -> None:
    for i in range(1, 200):
        persister.mark(i % 7)

runner = asyncio.Runner()  # never closed, the loop never runs again: nothing may be lost
runner.run(hand_out())
if sys.argv[2] == "asyncio.run":
    runner.close()
    asyncio.run(hand_out())
"""


@pytest.mark.parametrize("how", ["runner", "asyncio.run"])
def test_last_marked_index_is_on_disk_after_exit_without_flush(tmp_path: Path, how: str) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")])),
    }
    done = subprocess.run(
        [sys.executable, "-c", NEVER_FLUSHED, str(tmp_path), how],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert (tmp_path / "groq.keyidx").read_text() == str(199 % 7)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["groq.keyidx", "groq.keyidx.lock"]


async def test_persister_flush_without_marks(tmp_path: Path) -> None:
    file = CountingFile(tmp_path, "groq")
    await KeyIndexPersister(file).flush()
    assert file.writes == []
    assert not os.listdir(tmp_path)


WORKER = """
import sys
from llmroute.keys.persist import KeyIndexFile

file = KeyIndexFile(sys.argv[1], "shared")
for _ in range(int(sys.argv[2])):
    with file.locked():
        index = file.read()
        file.save_unlocked((index or 0) + 1)
"""


@pytest.fixture
def lock_dir(tmp_path: Path) -> Iterator[Path]:
    # fsync on a real disk costs ~0.5 ms, which makes 1000 locked cycles take seconds; tmpfs
    # keeps flock and rename semantics and only drops the durability this test ignores.
    if not os.path.isdir("/dev/shm"):
        yield tmp_path
        return
    with tempfile.TemporaryDirectory(dir="/dev/shm") as shm:
        yield Path(shm)


def test_two_processes_never_lose_an_increment(lock_dir: Path) -> None:
    cycles = 500
    file = KeyIndexFile(lock_dir, "shared")
    file.save(0)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")])),
    }
    stop = threading.Event()
    bad_reads: list[str] = []
    reads = 0

    def reader() -> None:
        nonlocal reads
        while not stop.is_set():
            text = file.path.read_text()
            reads += 1
            if not re.fullmatch(r"[0-9]+", text):
                bad_reads.append(text)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        workers = [
            subprocess.Popen(
                [sys.executable, "-c", WORKER, str(lock_dir), str(cycles)],
                env=env,
                stderr=subprocess.PIPE,
            )
            for _ in range(2)
        ]
        for worker in workers:
            _, err = worker.communicate(timeout=60)
            assert worker.returncode == 0, err.decode()
    finally:
        stop.set()
        thread.join()
    assert file.read() == 2 * cycles
    assert bad_reads == []
    assert reads > 0
    leftovers = sorted(p.name for p in lock_dir.iterdir())
    assert leftovers == ["shared.keyidx", "shared.keyidx.lock"]
