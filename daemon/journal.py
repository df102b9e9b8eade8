"""The day's journal: every send and every answer of the fire window, as JSON lines.

Recording is a list append (no I/O on the hot path); lines reach the disk in a worker thread and are
fsynced when the window closes. The journal is what `report` reads and what a restart inside the window
reconciles against, so a torn last line (a crash mid-write) is skipped on read, never fatal.
"""

from __future__ import annotations

import asyncio
import os
from datetime import date
from pathlib import Path
from typing import Any

import orjson

from daemon.logs import get_logger, scrub
from daemon.private_files import ensure_private_dir, open_private_append

log = get_logger("journal")


def journal_path(state_dir: Path, day: date) -> Path:
    return Path(state_dir) / "journal" / f"{day.isoformat()}.jsonl"


class Journal:
    def __init__(self, state_dir: Path, day: date) -> None:
        self.path = journal_path(state_dir, day)
        self._pending: list[dict[str, Any]] = []
        self._lock = asyncio.Lock()
        self._failed = False

    def record(self, kind: str, **fields: Any) -> None:
        """Queue one line; cheap enough for the fire window."""
        fields["kind"] = kind
        self._pending.append(fields)

    async def flush(self, durable: bool = False) -> None:
        """Write what is queued (in a thread); `durable` also fsyncs, as after the window."""
        async with self._lock:
            batch, self._pending = self._pending, []
            if not batch and not durable:
                return
            data = b"".join(_line(record) for record in batch)
            try:
                await asyncio.to_thread(self._append, data, durable)
            except OSError as exc:
                self._pending[:0] = batch  # keep them for the next try; nothing recorded is dropped
                if not self._failed:
                    log.error("journal.write_failed", path=str(self.path), error=exc.strerror or type(exc).__name__)
                self._failed = True
                return
            if self._failed:
                log.info("journal.write_recovered", path=str(self.path))
            self._failed = False

    def _append(self, data: bytes, durable: bool) -> None:
        ensure_private_dir(self.path.parent)
        fd = open_private_append(self.path)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)


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
