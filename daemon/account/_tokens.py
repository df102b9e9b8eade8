"""How long a broker token may be trusted: the smallest of the configured TTL, the login's `expireIn` and
the JWT's own `exp` claim, less a safety margin (the seed says one hour, tokens in the wild carry eight).
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import orjson


def jwt_expiry(token: str) -> datetime | None:
    """The `exp` claim of a JWT-shaped token, read without verifying (we only need to know when it ends)."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = orjson.loads(base64.urlsafe_b64decode(payload))
        exp = claims.get("exp") if isinstance(claims, dict) else None
        return datetime.fromtimestamp(float(exp), UTC) if exp is not None else None
    except (ValueError, TypeError, orjson.JSONDecodeError, OverflowError):
        return None


def token_valid_until(token: str, now: datetime, ttl_s: float, expire_in_s: float | None, margin_s: float) -> datetime:
    candidates = [now + timedelta(seconds=ttl_s)]
    if expire_in_s and expire_in_s > 0:
        candidates.append(now + timedelta(seconds=expire_in_s))
    exp = jwt_expiry(token)
    if exp is not None:
        candidates.append(exp)
    return min(candidates) - timedelta(seconds=margin_s)
