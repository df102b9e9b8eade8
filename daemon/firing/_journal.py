"""The day's journal: every plan's intent, every send and every answer of the fire window, as JSON lines.

It is the write-ahead log of the exactly-once promise. Recording is a list append (no I/O on the hot
path). Before the first send every plan's intent is fsynced (`flush(durable=True)`); right after the
first-send loop and at every final answer the queued lines are written in a worker thread
(`flush_soon`: one write at a time, starting at most every `WRITE_GAP_S`): an `os.write` without fsync is
enough then, since a SIGKILL loses nothing the kernel already has. A write that fails is kept queued,
retried at the next flush and counted (`write_failures`), so the summary and the exit code can say that the journal is incomplete. A torn
last line (a crash mid-write) is skipped on read, never fatal.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from datetime import date
from pathlib import Path
from typing import Any

import orjson

from daemon.errors import UserError
from daemon.logs import get_logger, scrub
from daemon.private_files import ensure_private_dir, open_private_append

log = get_logger("journal")
DURABLE_TRIES = 3
"""How often the closing (fsynced) flush is tried before the window's summary says the journal failed."""
RETRY_PAUSE_S = 0.1
LOCK_WAIT_S = 2.0
"""How long `acquire` waits for a lock whose holder is dying (the kernel drops it when the process ends)."""
LOCK_POLL_S = 0.05
WRITE_GAP_S = 0.01
"""A background write starts at most this long after the one before it started: lines that come meanwhile (a
burst of answers, about one per loop turn) go in one write, not a thread hand-off and an open/write/close each."""


class JournalBusy(UserError):
    """Another live process fires today's open from this state directory."""


def journal_path(state_dir: Path, day: date) -> Path:
    return Path(state_dir) / "journal" / f"{day.isoformat()}.jsonl"


class Journal:
    def __init__(self, state_dir: Path, day: date) -> None:
        self.state_dir = Path(state_dir)
        self.day = day
        self.path = journal_path(state_dir, day)
        self._pending: list[dict[str, Any]] = []
        self._lock = asyncio.Lock()
        self._background: set[asyncio.Task[None]] = set()
        self._writing = False
        self._dir_ready = False
        """The directory was made private and the last write succeeded: the next writes skip that check (a failed
        one makes it again, so a journal directory removed mid-window is made anew, as before)."""
        self._failed = False
        self._lock_fd: int | None = None
        self.write_failures = 0
        """Flushes that could not write (each retried later); non-zero means lines may be missing on disk."""

    async def acquire(self, wait_s: float = LOCK_WAIT_S) -> None:
        """Hold the day's lock (an flock on `<day>.lock` beside the journal) until `close`: two processes firing
        from one journal could each send an order the other already sent. A crashed holder's lock ends with it."""
        if self._lock_fd is not None:
            return
        ensure_private_dir(self.path.parent)
        lock_path = self.path.with_suffix(".lock")
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if loop.time() >= deadline:
                    holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "another process"
                    os.close(fd)
                    raise JournalBusy(
                        f"process {holder} is firing today's open from state_dir {self.state_dir} "
                        f"(it holds {lock_path}); stop it, or give this one another state_dir."
                    ) from None
                await asyncio.sleep(LOCK_POLL_S)  # a bounded wait for a dying holder, not a synchronization
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._lock_fd = fd

    def release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor drops the flock
            self._lock_fd = None

    @property
    def unwritten(self) -> int:
        """Lines recorded but not (yet) on disk."""
        return len(self._pending)

    def record(self, kind: str, **fields: Any) -> None:
        """Queue one line; cheap enough for the fire window."""
        fields["kind"] = kind
        self._pending.append(fields)

    def flush_soon(self) -> None:
        """Write what is queued in the background (never waits: for the fire window). One writer at a time takes
        whatever was queued meanwhile too, so a burst of final answers costs a few writes, not a task and a
        thread hand-off each."""
        if not self._pending or self._writing:
            return
        self._writing = True
        task = asyncio.ensure_future(self._write_behind())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _write_behind(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                started = loop.time()
                if not await self.flush():
                    break  # kept queued; the next flush_soon or flush tries again
                if self._pending:  # a rate, not a synchronization: what comes in the next few ms goes along
                    await asyncio.sleep(max(started + WRITE_GAP_S - loop.time(), 0))
        finally:
            self._writing = False
        self._dir_ready = False
        """The directory was made private and the last write succeeded: the next writes skip that check (a failed
        one makes it again, so a journal directory removed mid-window is made anew, as before)."""

    async def flush(self, durable: bool = False) -> bool:
        """Write what is queued (in a thread); `durable` also fsyncs (the intents, the window's end).
        False when the write failed: the lines stay queued for the next flush."""
        async with self._lock:
            batch, self._pending = self._pending, []
            if not batch and not durable:
                return True
            data = b"".join(_line(record) for record in batch)
            try:
                await asyncio.to_thread(self._append, data, durable)
            except OSError as exc:
                self._pending[:0] = batch  # kept for the next try; nothing recorded is dropped
                self.write_failures += 1
                if not self._failed:
                    log.error(
                        "journal.write_failed",
                        path=str(self.path),
                        error=exc.strerror or type(exc).__name__,
                        consequence="kept in memory and retried; a restart may not see these lines",
                    )
                self._failed = True
                return False
            if self._failed:
                log.info("journal.write_recovered", path=str(self.path))
            self._failed = False
            return True

    async def close(self) -> bool:
        """The background writes finished, then everything fsynced, tried a few times (False if lines are lost);
        the day's lock is given back."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        try:
            for attempt in range(DURABLE_TRIES):
                if await self.flush(durable=True):
                    return True
                if attempt + 1 < DURABLE_TRIES:
                    await asyncio.sleep(RETRY_PAUSE_S)  # a pause between tries of a failing disk, not a synchronization
            return False
        finally:
            self.release()

    def records(self) -> list[dict[str, Any]]:
        """Everything known of the day: what is on disk, then what could not be written yet."""
        try:
            written = read_journal(self.state_dir, self.day)
        except OSError:
            written = []  # the state directory went away: what this process recorded is still here
        return written + [dict(r) for r in self._pending]

    def _append(self, data: bytes, durable: bool) -> None:
        if not self._dir_ready:
            ensure_private_dir(self.path.parent)
        self._dir_ready = False
        fd = open_private_append(self.path)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        self._dir_ready = True


def _line(record: dict[str, Any]) -> bytes:
    body = record.get("body")
    if isinstance(body, (bytes, bytearray)):
        record["body"] = scrub(bytes(body).decode("utf-8", "replace"))
    elif isinstance(body, str):
        record["body"] = scrub(body)
    return orjson.dumps(record, default=str) + b"\n"


def read_journal(state_dir: Path, day: date) -> list[dict[str, Any]]:
    """The day's records in order; a torn or garbled line is skipped with a log line."""
    path = journal_path(state_dir, day)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    records = []
    for number, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            log.warning("journal.line_unreadable", path=str(path), line=number)
            continue
        if isinstance(record, dict):
            records.append(record)
    return records
