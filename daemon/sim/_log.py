"""The simulator's request log: one record per request, in memory and optionally as JSON lines on disk.

Each record carries the host clock's wall time (`time_ns`) and monotonic time of the request's arrival,
so a benchmark can line the simulator's view up with the client's. No password or token is ever recorded.
The file is written by a background task in batches, off the event loop, so logging does not slow answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO

import orjson


@dataclass(frozen=True, slots=True)
class RequestRecord:
    time_ns: int  # host wall clock at arrival (not skewed)
    monotonic_ns: int  # host monotonic clock at arrival
    handled_monotonic_ns: int  # when the handler had its answer ready
    method: str
    path: str
    route: str | None
    broker: str | None
    username: str | None
    status: int | None  # None when the connection was dropped without an answer
    error_code: int | str | None  # the platform's code: Ephoenix and Exir numbers, Online+ strings
    fault: str | None

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self))


class RequestLog:
    """Records kept in order of completion; `records(...)` filters them."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._records: list[RequestRecord] = []
        self._pending: list[bytes] = []
        self._file: IO[bytes] | None = None
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._closing = False

    def add(self, record: RequestRecord) -> None:
        self._records.append(record)
        if self._file is not None:
            self._pending.append(record.to_json() + b"\n")
            self._wake.set()

    def records(
        self,
        route: str | None = None,
        broker: str | None = None,
        username: str | None = None,
        status: int | None = None,
    ) -> list[RequestRecord]:
        return [
            r
            for r in self._records
            if (route is None or r.route == route)
            and (broker is None or r.broker == broker)
            and (username is None or r.username == username)
            and (status is None or r.status == status)
        ]

    def __len__(self) -> int:
        return len(self._records)

    def clear(self) -> None:
        self._records.clear()

    async def open(self) -> None:
        """Start writing to `path` (appending, mode 0600), if there is one."""
        if self.path is None or self._file is not None:
            return
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._file = os.fdopen(fd, "ab")
        self._closing = False
        self._task = asyncio.create_task(self._writer(), name="sim-request-log")

    async def flush(self) -> None:
        """Write every record taken so far to the file."""
        async with self._lock:
            batch, self._pending = self._pending, []
            if batch and self._file is not None:
                await asyncio.to_thread(self._write, self._file, batch)

    @staticmethod
    def _write(file: IO[bytes], batch: list[bytes]) -> None:
        file.write(b"".join(batch))
        file.flush()

    async def _writer(self) -> None:
        while not self._closing:
            await self._wake.wait()
            self._wake.clear()
            await self.flush()

    async def close(self) -> None:
        if self._file is None:
            return
        self._closing = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()
        self._file.close()
        self._file = None
