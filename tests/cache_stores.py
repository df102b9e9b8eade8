"""The cache's stores as seen by its contract tests: the same questions (what bytes are stored under this
entry name? put these bytes there) asked of the file backend and of the Redis backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from daemon.cache import Cache
from daemon.clock import Clock
from daemon.config import CacheSettings
from daemon.store import CacheBackend, FileBackend, RedisBackend

TEHRAN = ZoneInfo("Asia/Tehran")


def as_bytes(content: bytes | dict[str, Any]) -> bytes:
    return content if isinstance(content, bytes) else orjson.dumps(content)


class FileStore:
    kind = "file"

    def __init__(self, directory: Path) -> None:
        self.dir = directory

    def settings(self, **fields: Any) -> CacheSettings:
        return CacheSettings(dir=self.dir, **fields)

    def backend(self) -> CacheBackend:
        return FileBackend(self.dir)

    def make_cache(
        self, clock: Clock, backend: CacheBackend | None = None, local_tz: Any = TEHRAN, **fields: Any
    ) -> Cache:
        return Cache(self.settings(**fields), clock, backend=backend, local_tz=local_tz)

    def raw(self, name: str) -> bytes | None:
        path = self.dir / name
        return path.read_bytes() if path.exists() else None

    def put_raw(self, name: str, content: bytes | dict[str, Any]) -> None:
        self.dir.mkdir(mode=0o700, exist_ok=True)
        (self.dir / name).write_bytes(as_bytes(content))

    def corrupt(self, name: str) -> bytes | None:
        return self.raw(f"{name}.corrupt")

    def entry_names(self) -> list[str]:
        if not self.dir.exists():
            return []
        return sorted(p.name for p in self.dir.iterdir() if p.name.endswith(".json") and p.name != "stats.json")

    def is_untouched(self) -> bool:
        return not self.dir.exists()

    def spoil_stats(self) -> None:
        self.put_raw("stats.json", b"{oops")

    def broken_backend(self, tmp_path: Path) -> CacheBackend:
        blocker = tmp_path / "not-a-dir"
        blocker.write_text("")
        return FileBackend(blocker / ".cache")

    def close(self) -> None:
        pass


class RedisStore:
    kind = "redis"

    def __init__(self, url: str) -> None:
        import redis

        self.url = url
        self.client = redis.Redis.from_url(url)
        self._keys = RedisBackend(url)  # only for its name <-> key mapping; never connected

    def settings(self, **fields: Any) -> CacheSettings:
        return CacheSettings(backend="redis", redis_url=self.url, **fields)

    def backend(self) -> CacheBackend:
        return RedisBackend(self.url)

    def make_cache(
        self, clock: Clock, backend: CacheBackend | None = None, local_tz: Any = TEHRAN, **fields: Any
    ) -> Cache:
        return Cache(self.settings(**fields), clock, backend=backend, local_tz=local_tz)

    def raw(self, name: str) -> bytes | None:
        return self.client.get(self._keys.key(name))

    def put_raw(self, name: str, content: bytes | dict[str, Any]) -> None:
        self.client.set(self._keys.key(name), as_bytes(content))

    def corrupt(self, name: str) -> bytes | None:
        return self.client.get(self._keys.corrupt_key(name))

    def entry_names(self) -> list[str]:
        from daemon.cache import TYPES, file_name

        names = []
        for raw in self.client.scan_iter(match="opening-bell:*"):
            _, type_, key = raw.decode().split(":", 2)
            if type_ in TYPES:
                names.append(file_name(TYPES[type_], key))
        return sorted(names)

    def is_untouched(self) -> bool:
        return self.client.dbsize() == 0

    def spoil_stats(self) -> None:
        self.client.hset("opening-bell:stats", "market:misses", "many")

    def broken_backend(self, tmp_path: Path) -> CacheBackend:
        import socket

        with socket.socket() as probe:  # a loopback port nothing listens on
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        return RedisBackend(f"redis://127.0.0.1:{port}/0")

    def close(self) -> None:
        self.client.close()
