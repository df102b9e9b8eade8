"""Tokens encrypted at rest: the cached `token` field sealed with Fernet when a key is configured.

A login token opens the account to anyone who reads it, and the cache directory outlives the process
(backups, a copied home directory). With a key (`cache.token_key_env`, `cache.token_key_file`, or
systemd's `$CREDENTIALS_DIRECTORY/token-key`; see `CacheSettings.resolve_token_key`) only the token
itself is sealed, so `cache list` still shows every entry's account, broker and times.

A sealed value is `fernet:` and the Fernet token; no JWT starts that way, so sealed and plain values are
told apart without a second field. `cryptography` is imported only once a key is in use (a cipher made, a key
generated): a service with no token key never loads it (issue 18's memory).
"""

from __future__ import annotations

import os
from collections.abc import Hashable
from pathlib import Path

from daemon.errors import ConfigError, UserError
from daemon.logs import register_secret

SEALED_PREFIX = "fernet:"
WRONG_KEY = "the token key does not decrypt the cached tokens; fix cache.token_key_* or run `cache clear tokens`."
NO_KEY = (
    "the cached tokens are encrypted but no token key is configured; set cache.token_key_* or run `cache clear tokens`."
)


class TokenKeyError(ConfigError):
    """The configured key is missing, malformed, or not the one the cached tokens were sealed with."""


def is_sealed(value: object) -> bool:
    return isinstance(value, str) and value.startswith(SEALED_PREFIX)


class TokenCipher:
    """Seals and opens token strings with one Fernet key (AES-128-CBC and HMAC-SHA256, from `cryptography`)."""

    def __init__(self, key: str, source: str) -> None:
        from cryptography.fernet import Fernet

        try:
            self._fernet = Fernet(key.strip().encode())
        except (ValueError, TypeError):
            raise TokenKeyError(
                f"the token key from {source} is not a Fernet key (32 url-safe base64 bytes); "
                "make one with `python -m daemon cache keygen`."
            ) from None
        register_secret(key.strip())
        self.source = source

    def seal(self, token: str) -> str:
        return SEALED_PREFIX + self._fernet.encrypt(token.encode()).decode("ascii")

    def open(self, value: str, slot: Hashable | None = None) -> str:
        """The token inside a sealed value, registered as a secret in `slot`; TokenKeyError when this key did not seal it."""
        from cryptography.fernet import InvalidToken

        try:
            token = self._fernet.decrypt(value[len(SEALED_PREFIX) :].encode()).decode()
        except (InvalidToken, UnicodeError, ValueError):
            raise TokenKeyError(WRONG_KEY) from None
        register_secret(token, slot=slot)
        return token


def generate_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode("ascii")


def write_new_key(path: Path) -> str:
    """A new key in a new file, created 0600; an existing file (or a symlink in its place) is never overwritten."""
    key = generate_key()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        raise UserError(f"{path} already exists; remove it or give another --out file.") from None
    except OSError as exc:
        raise UserError(f"cannot create {path} ({exc.strerror}); give another --out file.") from None
    with os.fdopen(fd, "w") as handle:
        handle.write(key + "\n")
    return key
