"""Data prepared before the open (tokens, price limits, buying power, order parameters, holdings), kept fresh.

Entries live in a backend (`daemon.store._files`; files in `.cache/` by default, in the earlier tool's
file names so its files are read) behind an in-memory layer, so a hit during the fire window costs no
disk I/O. Nothing here raises on a bad file or a failing disk: a bad entry is a miss that is logged and
moved aside, a failed write keeps the value in memory. Time comes from the injected clock only.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

import orjson

from daemon import metrics
from daemon.clock import Clock, SystemClock
from daemon.config import CacheSettings, Config
from daemon.logs import get_logger, register_secret, token_slot
from daemon.store import (
    ALIASES,
    IDENTITY_FIELDS,
    NO_KEY,
    SUFFIX,
    TYPES,
    CacheBackend,
    CacheKeyError,
    CacheType,
    FileBackend,
    TokenCipher,
    TokenKeyError,
    UnknownCacheType,
    UnreadableEntry,
    file_name,
    identity_key,
    is_sealed,
    key_from_name,
    resolve_type,
)

__all__ = [
    "ALIASES",
    "Cache",
    "CacheKeyError",
    "CacheType",
    "CorruptEntry",
    "Entry",
    "EntryInfo",
    "TYPES",
    "UnknownCacheType",
    "decode_entry",
    "encode_entry",
    "file_name",
    "identity_key",
    "make_backend",
    "parse_time",
    "resolve_type",
]

log = get_logger("cache")

MAX_DEPTH = 32
"""Entries nest two or three levels; deeper ones are not ours (and could not be written back or printed)."""

_FROM_SETTINGS = object()
_EARLIEST = datetime.min.replace(tzinfo=UTC) + timedelta(days=2)
_LATEST = datetime.max.replace(tzinfo=UTC) - timedelta(days=2)


class CorruptEntry(Exception):
    """An entry's bytes are not an entry (not JSON, wrong shape, bad time); the message says which."""


@dataclass(frozen=True)
class Entry:
    data: dict[str, Any]
    expires_at: datetime
    created_at: datetime | None = None
    identity: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class EntryInfo:
    """What `list` and `show` report about one entry (`data` only from `show`)."""

    type: str
    key: str
    created_at: datetime | None
    expires_at: datetime
    valid: bool
    bytes: int
    identity: dict[str, str]
    data: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": self.type,
            "key": self.key,
            "created_at": self.created_at.isoformat() if self.created_at else None,
            "expires_at": self.expires_at.isoformat(),
            "valid": self.valid,
            "bytes": self.bytes,
            "identity": self.identity,
        }
        if self.data is not None:
            out["data"] = self.data
        return out


def parse_time(value: Any, local_tz: tzinfo | None, what: str = "time") -> datetime:
    """An ISO 8601 time; a naive one (the earlier tool's) is local time: `local_tz`, else this machine's zone."""
    if not isinstance(value, str):
        raise CorruptEntry(f"{what} is not text")
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise CorruptEntry(f"{what} is not an ISO 8601 time") from None
    try:
        if when.tzinfo is None:
            when = when.replace(tzinfo=local_tz) if local_tz is not None else when.astimezone()
        in_utc = when.astimezone(UTC)
    except (ValueError, OverflowError):
        raise CorruptEntry(f"{what} is out of range") from None
    if not _EARLIEST <= in_utc <= _LATEST:  # so showing it in any zone stays within datetime's range
        raise CorruptEntry(f"{what} is out of range")
    return when


def decode_entry(raw: bytes, ctype: CacheType, local_tz: tzinfo | None = None) -> Entry:
    """Both forms: the documented `{"data": {...}, "expires_at", ...}` and the earlier tool's flat one."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise CorruptEntry("not JSON (truncated?)") from None
    if not isinstance(obj, dict):
        raise CorruptEntry("not a JSON object")
    if _depth(obj) > MAX_DEPTH:
        raise CorruptEntry(f"nested deeper than {MAX_DEPTH} levels")
    if "expires_at" not in obj:
        raise CorruptEntry("no expires_at")
    expires_at = parse_time(obj["expires_at"], local_tz, "expires_at")
    created_at = parse_time(obj["created_at"], local_tz, "created_at") if obj.get("created_at") is not None else None
    identity: dict[str, str] = {}
    for name in IDENTITY_FIELDS:
        if name in obj:
            value = obj[name]
            if isinstance(value, bool) or not isinstance(value, (str, int)):
                raise CorruptEntry(f"{name} is not text")
            identity[name] = str(value)
    if isinstance(obj.get("data"), dict):
        data = obj["data"]
    else:
        data = {k: v for k, v in obj.items() if k not in ("created_at", "expires_at")}
    for name in ctype.required:
        if not isinstance(data.get(name), str) or not data[name]:
            raise CorruptEntry(f"no {name}")
    return Entry(data=data, expires_at=expires_at, created_at=created_at, identity=identity)


def _depth(value: Any) -> int:
    """How deeply `value` nests lists and objects (iteratively: a hostile file cannot exhaust the stack)."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict):
            node = list(node.values())
        if isinstance(node, list):
            deepest = max(deepest, level + 1)
            if deepest > MAX_DEPTH:
                return deepest
            stack.extend((child, level + 1) for child in node)
    return deepest


def encode_entry(entry: Entry) -> bytes:
    body: dict[str, Any] = {"data": entry.data, "expires_at": entry.expires_at.isoformat()}
    if entry.created_at is not None:
        body["created_at"] = entry.created_at.isoformat()
    body.update(entry.identity)
    return orjson.dumps(body, option=orjson.OPT_INDENT_2)


def _stored_slot(entry: Entry | EntryInfo, key: str) -> tuple[str, ...]:
    """The secret registry's slot of a stored token: its account and broker, or the key an old entry is under."""
    username, broker = entry.identity.get("username"), entry.identity.get("broker_code")
    return token_slot(username, broker) if username and broker else ("token", key)


def same_identity(stored: dict[str, str], wanted: dict[str, str] | None) -> bool:
    """Whether an entry belongs to `wanted`: every field it stores must match.

    An entry that stores no identity (the earlier tool's buying power, say) is trusted only when the key
    cannot collide, i.e. no part of it holds `_` (`a_b` + `c` and `a` + `b_c` share a file name).
    """
    if not wanted:
        return True
    if any(name in stored and stored[name] != value for name, value in wanted.items()):
        return False
    return all(name in stored for name in wanted) or not any("_" in value for value in wanted.values())


def make_backend(settings: CacheSettings) -> CacheBackend:
    """The configured store: files in `cache.dir`, or Redis at `cache.redis_url` (the `redis` extra)."""
    if settings.backend == "redis":
        from daemon.store import RedisBackend  # redis-py is optional: imported only when configured

        return RedisBackend(str(settings.redis_url))
    return FileBackend(settings.dir)


def _aware(when: datetime) -> datetime:
    if when.tzinfo is None:
        raise ValueError("expires_at must be timezone-aware (take it from the clock)")
    return when


class Cache:
    """The five cache types over one backend, an in-memory layer in front, and hit/miss counters."""

    def __init__(
        self,
        settings: CacheSettings,
        clock: Clock,
        *,
        backend: CacheBackend | None = None,
        local_tz: tzinfo | None = None,
        cipher: TokenCipher | None | object = _FROM_SETTINGS,
    ) -> None:
        """`cipher` seals tokens at rest; by default it comes from the settings' key (none: tokens stay plain)."""
        self.settings = settings
        self._clock = clock
        self._backend = backend or make_backend(settings)
        self._local_tz = local_tz
        self._memory: dict[tuple[str, str], Entry] = {}
        self._unflushed = {name: [0, 0] for name in TYPES}  # hits, misses since the last flush
        self._failing: set[str] = set()
        self._corrupt_reported: set[str] = set()
        if cipher is _FROM_SETTINGS:
            found = settings.resolve_token_key()
            cipher = TokenCipher(*found) if found else None
        self._cipher: TokenCipher | None = cipher  # type: ignore[assignment]

    @classmethod
    def from_config(cls, config: Config, clock: Clock | None = None, **kwargs: Any) -> Cache:
        return cls(config.cache, clock or SystemClock(), **kwargs)

    @property
    def location(self) -> str:
        return self._backend.location

    @property
    def backend(self) -> CacheBackend:
        return self._backend

    async def __aenter__(self) -> Cache:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.flush()
        await self._backend.aclose()

    # --- the generic API -------------------------------------------------------------------------

    async def get(self, type: str, key: str, *, identity: dict[str, str] | None = None) -> dict[str, Any] | None:
        """The entry's data while it is valid (and belongs to `identity`, when given), else None."""
        entry = await self._lookup(resolve_type(type), key, identity)
        return dict(entry.data) if entry else None

    async def set(
        self,
        type: str,
        key: str,
        data: dict[str, Any],
        *,
        expires_at: datetime | None = None,
        identity: dict[str, str] | None = None,
    ) -> None:
        """Store `data` for the type's TTL; `expires_at` can only shorten that (a token's own expiry caps it)."""
        ctype = resolve_type(type)
        name = file_name(ctype, key)
        unknown = set(identity or ()) - set(IDENTITY_FIELDS)
        if unknown:
            raise ValueError(f"identity fields must be among {IDENTITY_FIELDS}, not {sorted(unknown)}")
        now = self._clock.now()
        expiry = now + timedelta(seconds=getattr(self.settings.ttl, ctype.name))
        if expires_at is not None:
            expiry = min(expiry, _aware(expires_at))
        entry = Entry(dict(data), expiry, now, {k: str(v) for k, v in (identity or {}).items()})
        payload = encode_entry(entry)
        self._memory[(ctype.name, key)] = entry
        try:
            remade = await self._backend.write(name, payload, ttl_s=(expiry - now).total_seconds())
        except OSError as exc:
            self._failed("cache_write_failed", "the value is kept in memory only", exc)
            return
        if self._recovered("cache_write_failed") or remade:
            await self._write_back(skip=(ctype.name, key))

    async def _write_back(self, skip: tuple[str, str]) -> None:
        """After the store failed or vanished, put back what memory still holds, so a restart needs no login."""
        now = self._clock.now()
        for (type_name, key), entry in list(self._memory.items()):
            if (type_name, key) == skip or entry.expires_at <= now:
                continue
            try:
                await self._backend.write(
                    file_name(TYPES[type_name], key),
                    encode_entry(entry),
                    ttl_s=(entry.expires_at - now).total_seconds(),
                )
            except OSError as exc:
                self._failed("cache_write_failed", "the value is kept in memory only", exc)
                return

    async def delete(self, type: str, key: str) -> bool:
        ctype = resolve_type(type)
        in_memory = self._memory.pop((ctype.name, key), None) is not None
        return await self._backend.delete(file_name(ctype, key)) or in_memory

    async def clear(self, type: str | None = None) -> int:
        """Remove every entry (of one type); the number of entries removed."""
        removed = 0
        for ctype in self._types(type):
            self._forget(lambda k, _e, t=ctype.name: k[0] == t)
            for name in await self._names(ctype):
                removed += await self._backend.delete(name)
        return removed

    async def clean_expired(self) -> int:
        """Remove expired entries (corrupt ones are moved aside); the number removed."""
        now = self._clock.now()
        self._forget(lambda _k, e: e.expires_at <= now)
        removed = 0
        for ctype in TYPES.values():
            for name in await self._names(ctype):
                found = await self._read(ctype, name)
                if found is not None and found[0].expires_at <= now:
                    removed += await self._backend.delete(name)
        return removed

    async def list(self, type: str) -> builtins.list[EntryInfo]:
        """Every entry of a type as stored (not the memory layer), valid or not, in file-name order."""
        ctype = resolve_type(type)
        now = self._clock.now()
        infos = []
        for name in await self._names(ctype):
            found = await self._read(ctype, name)
            if found is not None:
                infos.append(self._info(ctype, key_from_name(ctype, name), *found, now))
        return infos

    async def show(self, type: str, key: str, *, decrypt: bool = False) -> EntryInfo | None:
        """One stored entry with its data, valid or not; None when there is none (or it was corrupt).

        A sealed token stays sealed unless `decrypt` (for `cache show --reveal`).
        """
        ctype = resolve_type(type)
        found = await self._read(ctype, file_name(ctype, key))
        if found is None:
            return None
        data = found[0].data
        if decrypt and ctype.name == "tokens":
            data = {**data, "token": self._open_token(data["token"], _stored_slot(found[0], key))}
        return replace(self._info(ctype, key, *found, self._clock.now()), data=data)

    async def check_token_key(self) -> int:
        """Open every stored token with the configured key, so a wrong or missing key stops the start.

        Raises TokenKeyError (one sentence) rather than let every account fall back to a login, which
        would spend captchas and throttle the brokers. Returns how many sealed tokens opened.
        """
        opened = 0
        for info in await self.list("tokens"):
            shown = await self.show("tokens", info.key)
            if shown is not None and shown.data is not None and is_sealed(shown.data.get("token")):
                self._open_token(shown.data["token"], _stored_slot(shown, info.key))
                opened += 1
        return opened

    async def stats(self) -> dict[str, dict[str, Any]]:
        """Per type: entries, valid, expired, bytes, soonest expiry (of the valid ones) and hits/misses across runs."""
        counts = await self._persisted_counts()
        out: dict[str, dict[str, Any]] = {}
        for name in TYPES:
            infos = await self.list(name)
            hits = counts.get(name, {}).get("hits", 0) + self._unflushed[name][0]
            misses = counts.get(name, {}).get("misses", 0) + self._unflushed[name][1]
            valid = [i for i in infos if i.valid]
            out[name] = {
                "entries": len(infos),
                "valid": len(valid),
                "expired": len(infos) - len(valid),
                "hits": hits,
                "misses": misses,
                "hit_rate": hits / (hits + misses) if hits + misses else None,
                "bytes": sum(i.bytes for i in infos),
                "soonest_expiry": min((i.expires_at for i in valid), default=None),
            }
        return out

    async def entry_counts(self) -> dict[str, int]:
        """Stored entries per type, by name only (no entry is read): cheap enough for a metrics scrape."""
        return {t.name: len(await self._backend.names(t.prefix, SUFFIX)) for t in TYPES.values()}

    async def flush(self) -> None:
        """Add this run's hits and misses to the stored counters (so runs add up); nothing to do, nothing written."""
        snapshot = {name: (c[0], c[1]) for name, c in self._unflushed.items() if any(c)}
        if not snapshot:
            return
        try:
            await self._backend.add_counts(snapshot)
        except OSError as exc:
            self._failed("cache_stats_flush_failed", "the counters are kept for the next flush", exc)
            return
        self._recovered("cache_stats_flush_failed")
        for name, (hits, misses) in snapshot.items():
            self._unflushed[name][0] -= hits
            self._unflushed[name][1] -= misses

    # --- typed helpers the client uses --------------------------------------------------------------

    async def get_token(self, username: str, broker: str) -> dict[str, Any] | None:
        """The login token with `token`, `username`, `broker_code` and `expires_at` (ISO text), or None."""
        ctype = TYPES["tokens"]
        key, identity = identity_key(ctype, username, broker)
        entry = await self._lookup(ctype, key, identity)
        if entry is None:
            return None
        stored = entry.data["token"]
        token = self._open_token(stored, token_slot(username, broker))
        if self._cipher is not None and not is_sealed(stored):
            # A plain token from before the key was configured: kept (no login, no captcha) and sealed now.
            log.info("cache_token_sealed", dir=self.location, key=key)
            await self.set(
                "tokens",
                key,
                {**entry.data, "token": self._cipher.seal(token)},
                expires_at=entry.expires_at,
                identity=entry.identity,
            )
        return {**identity, "expires_at": entry.expires_at.isoformat(), **entry.data, "token": token}

    async def save_token(self, username: str, broker: str, token: str, expires_at: datetime, **extra: Any) -> None:
        """Keep a token until the TTL or its own expiry, whichever is sooner; never logged, sealed when a key is set."""
        register_secret(token, slot=token_slot(username, broker))
        key, identity = identity_key(TYPES["tokens"], username, broker)
        stored = self._cipher.seal(token) if self._cipher is not None else token
        data = {**extra, **identity, "token": stored, "expires_at": _aware(expires_at).isoformat()}
        await self.set("tokens", key, data, expires_at=expires_at, identity=identity)

    async def drop_token(self, username: str, broker: str) -> bool:
        return await self.delete("tokens", identity_key(TYPES["tokens"], username, broker)[0])

    async def get_buying_power(self, username: str, broker: str) -> dict[str, Any] | None:
        return await self._get_typed("buying_power", username, broker)

    async def save_buying_power(self, username: str, broker: str, data: dict[str, Any]) -> None:
        await self._save_typed("buying_power", data, username, broker)

    async def get_market_data(self, isin: str) -> dict[str, Any] | None:
        return await self._get_typed("market", isin)

    async def save_market_data(self, isin: str, data: dict[str, Any]) -> None:
        await self._save_typed("market", data, isin)

    async def get_order_params(self, username: str, broker: str, isin: str) -> dict[str, Any] | None:
        return await self._get_typed("order_params", username, broker, isin)

    async def save_order_params(self, username: str, broker: str, isin: str, data: dict[str, Any]) -> None:
        await self._save_typed("order_params", data, username, broker, isin)

    async def get_holdings(self, username: str, broker: str, isin: str) -> dict[str, Any] | None:
        return await self._get_typed("holdings", username, broker, isin)

    async def save_holdings(self, username: str, broker: str, isin: str, data: dict[str, Any]) -> None:
        await self._save_typed("holdings", data, username, broker, isin)

    # --- internals ---------------------------------------------------------------------------------

    async def _names(self, ctype: CacheType) -> builtins.list[str]:
        """The stored entries of a type; none (and one logged error) while the store cannot be listed."""
        try:
            names = await self._backend.names(ctype.prefix, SUFFIX)
        except OSError as exc:
            self._failed("cache_read_failed", "reads are misses", exc)
            return []
        self._recovered("cache_read_failed")
        return names

    def _open_token(self, stored: str, slot: tuple[str, ...]) -> str:
        """The token a stored value holds, registered in `slot`; a sealed one needs its key (else TokenKeyError)."""
        if not is_sealed(stored):
            register_secret(stored, slot=slot)
            return stored
        if self._cipher is None:
            raise TokenKeyError(NO_KEY)
        return self._cipher.open(stored, slot=slot)

    async def _get_typed(self, type: str, *parts: str) -> dict[str, Any] | None:
        key, identity = identity_key(TYPES[type], *parts)
        return await self.get(type, key, identity=identity)

    async def _save_typed(self, type: str, data: dict[str, Any], *parts: str) -> None:
        key, identity = identity_key(TYPES[type], *parts)
        await self.set(type, key, data, identity=identity)

    async def _lookup(self, ctype: CacheType, key: str, identity: dict[str, str] | None) -> Entry | None:
        """Memory first (no I/O), then the backend; counts the hit or miss."""
        now = self._clock.now()

        def usable(entry: Entry | None) -> bool:
            return entry is not None and entry.expires_at > now and same_identity(entry.identity, identity)

        entry = self._memory.get((ctype.name, key))
        if not usable(entry):
            found = await self._read(ctype, file_name(ctype, key))
            entry = found[0] if found else None
            if not usable(entry):
                self._unflushed[ctype.name][1] += 1
                metrics.cache_lookup(ctype.name, hit=False)
                return None
            self._memory[(ctype.name, key)] = entry
        self._unflushed[ctype.name][0] += 1
        metrics.cache_lookup(ctype.name, hit=True)
        return entry

    async def _read(self, ctype: CacheType, name: str) -> tuple[Entry, int] | None:
        """The stored entry and its size; a bad one is a miss, logged and moved aside to `<name>.corrupt`."""
        try:
            raw = await self._backend.read(name)
            self._recovered("cache_read_failed")
            if raw is None:
                return None
            return decode_entry(raw, ctype, self._local_tz), len(raw)
        except (UnreadableEntry, CorruptEntry) as exc:
            await self._set_aside(name, str(exc))
        except OSError as exc:
            self._failed("cache_read_failed", "reads are misses", exc)
        return None

    async def _set_aside(self, name: str, reason: str) -> None:
        try:
            moved_to = await self._backend.quarantine(name)
        except OSError as exc:
            moved_to, problem = None, exc.strerror or type(exc).__name__
        else:
            problem = None
        if name in self._corrupt_reported:
            return
        log.warning(
            "cache_entry_corrupt", dir=self.location, file=name, reason=reason, moved_to=moved_to, move_failed=problem
        )
        if moved_to is None:  # still in place: say so once, not on every read
            self._corrupt_reported.add(name)

    def _info(self, ctype: CacheType, key: str, entry: Entry, size: int, now: datetime) -> EntryInfo:
        return EntryInfo(
            ctype.name, key, entry.created_at, entry.expires_at, entry.expires_at > now, size, entry.identity
        )

    async def _persisted_counts(self) -> dict[str, dict[str, int]]:
        try:
            return await self._backend.read_counts()
        except OSError:
            return {}

    def _types(self, type: str | None) -> builtins.list[CacheType]:
        return list(TYPES.values()) if type is None else [resolve_type(type)]

    def _forget(self, drop: Any) -> None:
        for k in [k for k, e in self._memory.items() if drop(k, e)]:
            del self._memory[k]

    def _failed(self, event: str, consequence: str, exc: OSError) -> None:
        """Log a failing store once, not on every call, until it works again."""
        if event not in self._failing:
            self._failing.add(event)
            log.error(event, dir=self.location, error=exc.strerror or type(exc).__name__, consequence=consequence)

    def _recovered(self, event: str) -> bool:
        """Say once that a failing store works again; True when it had been failing."""
        if event not in self._failing:
            return False
        self._failing.discard(event)
        log.info(event.replace("_failed", "_recovered"), dir=self.location)
        return True
