"""Where cache entries' bytes live: the small backend interface and the file backend.

The cache (`daemon.cache`) only ever speaks to a `CacheBackend`, in names and bytes, so a Redis backend
can be added without touching its callers. The file backend is the one the earlier tool used:
one JSON file per entry, written atomically (temp file, fsync, rename) with mode 0600 in a 0700
directory, and never through a symlink.

File I/O runs in `asyncio.to_thread`, one hop per whole operation (open, read, close), rather than
through aiofiles, which hops to a thread for every call and cannot open with O_NOFOLLOW, fsync a
directory or rename.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import shutil
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import orjson

from daemon.logs import get_logger
from daemon.private_files import ensure_private_dir

log = get_logger("cache")

STATS_NAME = "stats.json"

MAX_ENTRY_BYTES = 1 << 20
"""A cache entry is a few hundred bytes; anything past this is not one of ours and is treated as corrupt."""


class UnreadableEntry(Exception):
    """The name exists but is not a regular file we may read (a symlink, a directory, no permission, too big)."""


class CacheBackend(Protocol):
    """Raw entries by name. Every method may raise OSError when the store itself fails."""

    location: str
    """Where the entries are, for people (a directory, a URL)."""

    async def read(self, name: str) -> bytes | None:
        """The entry's bytes, or None when there is none; `UnreadableEntry` when it cannot be read."""

    async def write(self, name: str, payload: bytes, ttl_s: float | None = None) -> bool:
        """Replace the entry atomically: a reader sees the old bytes or the new, never a part.

        `ttl_s` is how long the entry is valid; a store that expires entries itself (Redis) uses it.
        True when the store was missing and had to be made again (so entries written before are gone).
        """

    async def delete(self, name: str) -> bool:
        """Remove the entry; False when there was none."""

    async def names(self, prefix: str, suffix: str) -> list[str]:
        """The entries whose names start with `prefix` and end with `suffix`, sorted."""

    async def quarantine(self, name: str) -> str | None:
        """Move a bad entry aside (to `<name>.corrupt`) so it is read once; the new name, or None if it was gone."""

    async def add_counts(self, counts: dict[str, tuple[int, int]]) -> None:
        """Add hits and misses per type to the stored counters, which every process writing here shares."""

    async def read_counts(self) -> dict[str, dict[str, int]]:
        """The stored counters per type ({"hits": n, "misses": n}); unreadable ones count from zero."""

    async def aclose(self) -> None:
        """Let go of connections, if the store has any."""


class FileBackend:
    """One JSON file per entry in one directory, created 0700 on the first write."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.dir = Path(directory)
        self.location = str(self.dir)
        self._dir_checked = False

    async def read(self, name: str) -> bytes | None:
        return await asyncio.to_thread(self._read, name)

    async def write(self, name: str, payload: bytes, ttl_s: float | None = None) -> bool:
        return await asyncio.to_thread(self._write, name, payload)

    async def delete(self, name: str) -> bool:
        return await asyncio.to_thread(self._delete, name)

    async def names(self, prefix: str, suffix: str) -> list[str]:
        return await asyncio.to_thread(self._names, prefix, suffix)

    async def quarantine(self, name: str) -> str | None:
        return await asyncio.to_thread(self._quarantine, name)

    async def update(self, name: str, change: Callable[[bytes | None], bytes]) -> None:
        """Read, change and write one entry with no other writer in between (an flock beside it)."""
        await asyncio.to_thread(self._update, name, change)

    async def add_counts(self, counts: dict[str, tuple[int, int]]) -> None:
        def add(current: bytes | None) -> bytes:
            stored = decode_counts(current)
            for name, (hits, misses) in counts.items():
                row = stored.setdefault(name, {"hits": 0, "misses": 0})
                row["hits"] = row.get("hits", 0) + hits
                row["misses"] = row.get("misses", 0) + misses
            return orjson.dumps({"types": stored}, option=orjson.OPT_INDENT_2)

        await self.update(STATS_NAME, add)

    async def read_counts(self) -> dict[str, dict[str, int]]:
        try:
            return decode_counts(await self.read(STATS_NAME))
        except UnreadableEntry:
            return {}

    async def aclose(self) -> None:
        return None

    def _path(self, name: str) -> Path:
        if not name or "/" in name or "\0" in name or name in {".", ".."}:
            raise ValueError(f"{name!r} is not a plain file name")
        return self.dir / name

    def _read(self, name: str) -> bytes | None:
        path = self._path(name)
        try:
            # O_NOFOLLOW: a symlink planted in the cache is never followed; O_NONBLOCK: a FIFO cannot hang us.
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno in _ENTRY_ERRORS:
                raise UnreadableEntry(_why(exc)) from None
            raise  # the store itself fails (the directory replaced by a file, an I/O error): not this entry's fault
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise UnreadableEntry("not a regular file")
            if info.st_size > MAX_ENTRY_BYTES:
                raise UnreadableEntry(f"{info.st_size} bytes, more than an entry can be")
            with os.fdopen(fd, "rb", closefd=False) as handle:
                return handle.read(MAX_ENTRY_BYTES + 1)
        except OSError as exc:
            raise UnreadableEntry(_why(exc)) from None
        finally:
            os.close(fd)

    def _write(self, name: str, payload: bytes) -> bool:
        path = self._path(name)
        remade = self._ensure_dir()
        # mkstemp opens O_EXCL | O_NOFOLLOW with mode 0600; the dot keeps half-written files out of listings.
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=self.dir)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)  # replaces a symlink itself, never its target
        except BaseException:
            _unlink_quietly(tmp)
            raise
        _fsync_dir(self.dir)
        return remade

    def _delete(self, name: str) -> bool:
        try:
            os.unlink(self._path(name))
        except FileNotFoundError:
            return False
        except IsADirectoryError:
            return self._quarantine(name) is not None
        return True

    def _names(self, prefix: str, suffix: str) -> list[str]:
        try:
            found = os.listdir(self.dir)
        except FileNotFoundError:
            return []
        return sorted(n for n in found if n.startswith(prefix) and n.endswith(suffix))

    def _quarantine(self, name: str) -> str | None:
        target = f"{name}.corrupt"
        try:
            os.replace(self._path(name), self._path(target))
        except FileNotFoundError:
            return None
        except IsADirectoryError:  # an earlier `.corrupt` directory is in the way: make room for the new one
            shutil.rmtree(self._path(target), ignore_errors=True)
            os.replace(self._path(name), self._path(target))
        return target

    def _update(self, name: str, change: Callable[[bytes | None], bytes]) -> None:
        self._ensure_dir()
        lock = os.open(self._path(f".{name}.lock"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                current = self._read(name)
            except UnreadableEntry:
                current = None
            self._write(name, change(current))
        finally:
            os.close(lock)  # closing releases the lock

    def _ensure_dir(self) -> bool:
        """Create the directory 0700; tighten one found open to others, once per backend.

        True when a directory this backend had already used was gone and is made again.
        """
        if self._dir_checked:
            try:
                self.dir.mkdir(mode=0o700, parents=True)
            except FileExistsError:
                if not self.dir.is_dir():
                    raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(self.dir)) from None
                return False
            log.warning("cache_dir_recreated", dir=self.location)
            return True
        try:
            was = ensure_private_dir(self.dir)
            if was is not None:
                log.warning("cache_dir_mode_tightened", dir=self.location, was=oct(was), now="0o700")
        except PermissionError as exc:
            log.warning("cache_dir_open_to_others", dir=self.location, error=_why(exc))
        self._dir_checked = True


_ENTRY_ERRORS = frozenset(
    {errno.ELOOP, errno.EACCES, errno.EPERM, errno.ENXIO, errno.EISDIR, errno.EFBIG, errno.EOVERFLOW}
)
"""Errors opening a name that say the entry is bad (a symlink, no permission, not a file), not the store."""


def decode_counts(raw: bytes | None) -> dict[str, dict[str, int]]:
    """The stats file's counters; unreadable ones start again from zero rather than stop the run."""
    if not raw:
        return {}
    try:
        types = orjson.loads(raw)["types"]
        return {name: {"hits": int(row["hits"]), "misses": int(row["misses"])} for name, row in types.items()}
    except (orjson.JSONDecodeError, TypeError, KeyError, ValueError, AttributeError):
        log.warning("cache_stats_unreadable", action="counting again from zero")
        return {}


def _why(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "a symlink, which the cache never follows"
    return exc.strerror or type(exc).__name__


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable: after a power cut the entry is the old one or the new one."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
