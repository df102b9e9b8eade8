"""The cache's entry names: its five types, their file names and keys (the earlier tool's names, so its
files still read). Shared by the cache and every backend, so the backends need nothing from the cache."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote, unquote

from daemon.errors import UserError

SUFFIX = ".json"
IDENTITY_FIELDS = ("username", "broker_code", "isin")
_MAX_NAME_BYTES = 255


@dataclass(frozen=True)
class CacheType:
    name: str
    prefix: str
    identity: tuple[str, ...]
    required: tuple[str, ...] = ()
    """Fields the entry's data must hold as non-empty text; without them the entry is wrongly shaped."""


TYPES: dict[str, CacheType] = {
    t.name: t
    for t in (
        CacheType("tokens", "token_", ("username", "broker_code"), required=("token",)),
        CacheType("market", "market_data_", ("isin",)),
        CacheType("buying_power", "buying_power_", ("username", "broker_code")),
        CacheType("order_params", "order_params_", ("username", "broker_code", "isin")),
        CacheType("holdings", "holdings_", ("username", "broker_code", "isin")),
    )
}
ALIASES = {"buying": "buying_power", "bp": "buying_power", "orders": "order_params", "params": "order_params"}


class UnknownCacheType(UserError):
    pass


class CacheKeyError(UserError):
    pass


def resolve_type(name: str) -> CacheType:
    """A cache type by its name or one of its aliases."""
    found = TYPES.get(ALIASES.get(name, name))
    if found is None:
        names = ", ".join([*TYPES, *ALIASES])
        raise UnknownCacheType(f"{name!r} is not a cache type; use one of {names}.")
    return found


def file_name(ctype: CacheType, key: str) -> str:
    """The entry's file name: the earlier tool's for plain keys; anything else percent-encoded, so no key leaves the directory."""
    if not key:
        raise CacheKeyError(f"a {ctype.name} cache key cannot be empty.")
    # surrogateescape: a key from argv with bytes that are not UTF-8 maps back to those bytes, not a crash
    name = f"{ctype.prefix}{quote(key, safe='', errors='surrogateescape')}{SUFFIX}"
    if len(name.encode()) > _MAX_NAME_BYTES:
        raise CacheKeyError(f"the {ctype.name} cache key {key[:40]!r}... is too long for a file name; shorten it.")
    return name


def key_from_name(ctype: CacheType, name: str) -> str:
    return unquote(name[len(ctype.prefix) : -len(SUFFIX)], errors="surrogateescape")


def identity_key(ctype: CacheType, *values: str) -> tuple[str, dict[str, str]]:
    """The key (`{username}_{broker}`, ...) and the identity stored beside the data to tell colliding keys apart."""
    identity = {name: str(value) for name, value in zip(ctype.identity, values, strict=True)}
    return "_".join(identity.values()), identity
