"""The cache's storage: entry names, the file and Redis backends, sealed tokens, and the Redis
connection helpers the group and the login lock share. The cache (`daemon.cache`) is its face to the daemon.
"""

from __future__ import annotations

from daemon.store._files import (
    CacheBackend,
    FileBackend,
    UnreadableEntry,
)
from daemon.store._names import (
    ALIASES,
    IDENTITY_FIELDS,
    SUFFIX,
    TYPES,
    CacheKeyError,
    CacheType,
    UnknownCacheType,
    file_name,
    identity_key,
    key_from_name,
    resolve_type,
)
from daemon.store._redis import (
    COMMAND_TIMEOUT_S,
    NAMESPACE,
    RedisBackend,
    StoreUnavailable,
    connect,
    guarded,
    redact_url,
)
from daemon.store._seal import (
    NO_KEY,
    WRONG_KEY,
    TokenCipher,
    TokenKeyError,
    generate_key,
    is_sealed,
    write_new_key,
)

__all__ = [
    "ALIASES",
    "COMMAND_TIMEOUT_S",
    "CacheBackend",
    "CacheKeyError",
    "CacheType",
    "FileBackend",
    "IDENTITY_FIELDS",
    "NAMESPACE",
    "NO_KEY",
    "RedisBackend",
    "SUFFIX",
    "StoreUnavailable",
    "TYPES",
    "TokenCipher",
    "TokenKeyError",
    "UnknownCacheType",
    "UnreadableEntry",
    "WRONG_KEY",
    "connect",
    "file_name",
    "generate_key",
    "guarded",
    "identity_key",
    "is_sealed",
    "key_from_name",
    "redact_url",
    "resolve_type",
    "write_new_key",
]
