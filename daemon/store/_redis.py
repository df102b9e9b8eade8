"""The Redis cache backend, and the login lock that keeps two processes from logging one account in at once.

Entries are Redis strings under `opening-bell:{type}:{key}` (`opening-bell:tokens:0012345678_gs`) holding
the same bytes the file backend writes, and they expire by Redis's own TTL (the cache sets it from the
entry's expiry). Hit and miss counters are one hash, `opening-bell:stats`, incremented atomically by every
process, so `cache stats` shows the whole group. A corrupt entry is renamed to
`opening-bell:corrupt:{type}:{key}` and kept a day for a person to look at.

The cache speaks to backends in file names (`token_0012345678_gs.json`); this module maps them to keys
and back with the cache's own type table. Redis failures surface as `OSError`, as a failing disk does, so
the cache's "keep it in memory, log once" handling applies unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from daemon.errors import UserError
from daemon.logs import get_logger, register_secret
from daemon.store._names import SUFFIX, TYPES, CacheKeyError, CacheType, file_name, key_from_name

try:
    import redis.asyncio as aioredis
    from redis.exceptions import LockError, RedisError
except ImportError:  # the `redis` extra is not installed; `connect` says what to do
    aioredis = None  # type: ignore[assignment]

    class RedisError(Exception):  # type: ignore[no-redef]
        pass

    LockError = RedisError  # type: ignore[misc,assignment]

log = get_logger("cache")
NAMESPACE = "opening-bell"
CORRUPT_KEEP_S = 86400
COMMAND_TIMEOUT_S = 5.0
T = TypeVar("T")


# HINCRBY per field, in one atomic step; a field that is not a number (spoiled by hand) counts again from zero.
_ADD_COUNTS = """
for i = 1, #ARGV, 2 do
  local current = redis.call('HGET', KEYS[1], ARGV[i])
  if current and not tonumber(current) then redis.call('HDEL', KEYS[1], ARGV[i]) end
  redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])
end
return 1
"""


class StoreUnavailable(OSError):
    """Redis could not be reached or refused the command; the cache treats it like a failing disk."""


def connect(url: str) -> Any:
    """A redis-py asyncio client for `url` (nothing is connected until the first command)."""
    if aioredis is None:
        raise UserError("cache.backend redis needs the redis client library: pip install 'opening-bell[redis]'.")
    password = urlsplit(url).password
    if password:
        register_secret(password)
    # socket_timeout=None on purpose: with a socket timeout redis-py sends through asyncio.wait_for, which on
    # Python 3.11 can swallow a task's cancellation (CPython gh-86296), so a cancelled heartbeat or refresh
    # would never end. Commands get their time limit from `guarded` (asyncio.timeout, cancellation-safe).
    return aioredis.Redis.from_url(
        url, socket_connect_timeout=COMMAND_TIMEOUT_S, socket_timeout=None, health_check_interval=30
    )


def redact_url(url: str) -> str:
    """The URL with any password replaced by ***, for messages and `location`."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


async def guarded(call: Awaitable[T], where: str, timeout_s: float | None = COMMAND_TIMEOUT_S) -> T:
    """Run one Redis call within `timeout_s`; its failure becomes `StoreUnavailable` naming the server, never the password."""
    try:
        async with asyncio.timeout(timeout_s):
            return await call
    except RedisError as exc:
        raise StoreUnavailable(errno.EIO, f"redis at {where}: {type(exc).__name__}") from None
    except TimeoutError:
        raise StoreUnavailable(errno.ETIMEDOUT, f"redis at {where}: no answer within {timeout_s:g} s") from None


class RedisBackend:
    """The `CacheBackend` over one Redis database; one client (a connection pool) per backend."""

    def __init__(self, url: str, *, namespace: str = NAMESPACE, client: Any = None) -> None:
        self.redis = client if client is not None else connect(url)
        self.location = redact_url(url)
        self.namespace = namespace
        self._by_prefix = {t.prefix: t for t in TYPES.values()}

    # ---- names <-> keys --------------------------------------------------------------------------------

    def key(self, name: str) -> str:
        """`token_u1_gs.json` -> `opening-bell:tokens:u1_gs`."""
        ctype = self._type_of(name)
        return f"{self.namespace}:{ctype.name}:{key_from_name(ctype, name)}"

    def corrupt_key(self, name: str) -> str:
        ctype = self._type_of(name)
        return f"{self.namespace}:corrupt:{ctype.name}:{key_from_name(ctype, name)}"

    @property
    def stats_key(self) -> str:
        return f"{self.namespace}:stats"

    def _type_of(self, name: str) -> CacheType:
        if name.endswith(SUFFIX):
            for prefix, ctype in self._by_prefix.items():
                if name.startswith(prefix):
                    return ctype
        raise ValueError(f"{name!r} is not a cache entry's name")

    # ---- CacheBackend ----------------------------------------------------------------------------------

    async def read(self, name: str) -> bytes | None:
        value = await self._call(self.redis.get(self.key(name)))
        return bytes(value) if value is not None else None

    async def write(self, name: str, payload: bytes, ttl_s: float | None = None) -> bool:
        ttl_ms = None if ttl_s is None else max(1, int(ttl_s * 1000))
        await self._call(self.redis.set(self.key(name), payload, px=ttl_ms))
        return False  # a Redis database is never "made again" by a write

    async def delete(self, name: str) -> bool:
        return bool(await self._call(self.redis.delete(self.key(name))))

    async def names(self, prefix: str, suffix: str) -> list[str]:
        ctype = self._by_prefix.get(prefix)
        if ctype is None or suffix != SUFFIX:
            return []
        head = f"{self.namespace}:{ctype.name}:"
        found: list[str] = []

        async def scan() -> None:
            async for raw in self.redis.scan_iter(match=_glob_escape(head) + "*", count=500):
                key = (raw.decode("utf-8", "surrogateescape") if isinstance(raw, bytes) else raw)[len(head) :]
                try:
                    found.append(file_name(ctype, key))
                except CacheKeyError:
                    continue  # not a key this cache could have written

        await self._call(scan())
        return sorted(found)

    async def quarantine(self, name: str) -> str | None:
        source, target = self.key(name), self.corrupt_key(name)

        async def move() -> bool:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.rename(source, target)
                pipe.expire(target, CORRUPT_KEEP_S)
                try:
                    await pipe.execute()
                except aioredis.ResponseError as exc:  # type: ignore[union-attr]
                    if "no such key" in str(exc).lower():
                        return False
                    raise
            return True

        return target if await self._call(move()) else None

    async def add_counts(self, counts: dict[str, tuple[int, int]]) -> None:
        args: list[Any] = []
        for name, (hits, misses) in counts.items():
            args += [f"{name}:hits", hits, f"{name}:misses", misses]
        await self._call(self.redis.eval(_ADD_COUNTS, 1, self.stats_key, *args))

    async def read_counts(self) -> dict[str, dict[str, int]]:
        raw = await self._call(self.redis.hgetall(self.stats_key))
        counts: dict[str, dict[str, int]] = {}
        for field, value in raw.items():
            name, _, kind = _text(field).rpartition(":")
            if kind not in ("hits", "misses") or not name:
                continue
            try:
                counts.setdefault(name, {"hits": 0, "misses": 0})[kind] = int(value)
            except ValueError:
                log.warning("cache_stats_unreadable", field=_text(field), action="counting it from zero")
        return counts

    async def aclose(self) -> None:
        with contextlib.suppress(RedisError, OSError, RuntimeError):
            await self.redis.aclose()

    def login_lock(self) -> RedisLoginLock:
        return RedisLoginLock(self.redis, self.location, namespace=self.namespace)

    async def _call(self, call: Awaitable[T]) -> T:
        return await guarded(call, self.location)


class RedisLoginLock:
    """One login per account across every process on this Redis (captcha budget, 429s, tokens revoked by a
    second login). Waiters block until the holder is done; a holder that dies frees the lock after `ttl_s`,
    and a live one keeps it by renewing it every third of that."""

    def __init__(self, client: Any, where: str, *, namespace: str = NAMESPACE, ttl_s: float = 30.0) -> None:
        self._redis = client
        self._where = where
        self._namespace = namespace
        self._ttl_s = ttl_s

    @contextlib.asynccontextmanager
    async def hold(self, account_key: str) -> AsyncIterator[None]:
        lock = self._redis.lock(
            f"{self._namespace}:login-lock:{account_key}",
            timeout=self._ttl_s,
            sleep=0.05,
            blocking=True,
            blocking_timeout=None,
        )
        await guarded(lock.acquire(), self._where, timeout_s=None)  # waits for the holder, however long it logs in
        renewer = asyncio.create_task(self._renew(lock), name=f"login-lock-{account_key}")
        try:
            yield
        finally:
            renewer.cancel()
            await asyncio.wait([renewer], timeout=COMMAND_TIMEOUT_S)
            with contextlib.suppress(LockError, RedisError, TimeoutError):
                async with asyncio.timeout(COMMAND_TIMEOUT_S):
                    await lock.release()

    async def _renew(self, lock: Any) -> None:
        while True:
            await asyncio.sleep(self._ttl_s / 3)
            try:
                await lock.reacquire()
            except (LockError, RedisError) as exc:
                log.warning("login_lock.renew_failed", reason=type(exc).__name__)
                return


def _glob_escape(text: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value
