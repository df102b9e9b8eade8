"""The identity side of the simulated broker: captchas, JWT-shaped tokens, and the 429 limiter.

Captchas carry no server-side state. The salt is random bytes plus the instant it was issued; the digits
are derived from the salt with a per-simulator secret, and `hashedCaptcha` is an HMAC of salt + answer
with that secret. So the login check needs nothing stored, and a client that sees salt and hash still
cannot compute the answer: it has to read the picture.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import secrets
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def signed_jwt(header: dict[str, Any], payload: dict[str, Any], sign: Callable[[str], str]) -> str:
    """A compact JWT whose signature is `sign(signing input)`: each simulated platform signs its own way."""
    signing_input = f"{b64url(orjson.dumps(header))}.{b64url(orjson.dumps(payload))}"
    return f"{signing_input}.{sign(signing_input)}"


def jwt_payload(token: str | None, sign: Callable[[str], str]) -> dict[str, Any] | None:
    """The payload of a JWT `sign` made (expired or not); None for anything else, never an exception."""
    parts = (token or "").split(".")
    if len(parts) != 3 or not hmac.compare_digest(parts[2], sign(f"{parts[0]}.{parts[1]}")):
        return None
    try:
        payload = orjson.loads(b64url_decode(parts[1]))
    except (ValueError, TypeError):
        return None
    return payload if isinstance(payload, dict) else None


class CaptchaBook:
    """Issues captcha salts and checks answers against the hash, with nothing stored per captcha for the check.

    The last SHOWN_KEPT images served are remembered by digest only so that an in-process test solver
    (daemon.testing.SimulatorSolver) can read them without OCR; the login check never looks at them.
    """

    DIGITS = 5
    SHOWN_KEPT = 4096

    def __init__(self, secret: bytes, ttl_s: Callable[[], float]) -> None:
        self._secret = secret
        self._ttl_s = ttl_s
        self._shown: OrderedDict[bytes, str] = OrderedDict()

    def showed(self, image: bytes, answer: str) -> None:
        """Remember that `image` shows `answer` (bounded: the oldest is forgotten first)."""
        self._shown[hashlib.sha256(image).digest()] = answer
        while len(self._shown) > self.SHOWN_KEPT:
            self._shown.popitem(last=False)

    def answer_for_image(self, image: bytes) -> str | None:
        """The digits a recently served `image` shows, or None for an image this simulator did not serve."""
        return self._shown.get(hashlib.sha256(image).digest())

    def _mac(self, *parts: bytes) -> bytes:
        return hmac.new(self._secret, b"\x00".join(parts), hashlib.sha256).digest()

    def new_salt(self, random_bytes: bytes, issued_ns: int) -> str:
        return b64url(random_bytes + (issued_ns // 1_000_000).to_bytes(8, "big"))

    def answer(self, salt: str) -> str:
        """The digits shown for `salt` (the server re-derives them; a client cannot, lacking the secret)."""
        number = int.from_bytes(self._mac(b"digits", salt.encode())[:8], "big") % 10**self.DIGITS
        return f"{number:0{self.DIGITS}d}"

    def hash(self, salt: str, value: str) -> str:
        return self._mac(b"answer", salt.encode(), value.encode()).hex()

    def verify(self, salt: Any, hashed: Any, value: Any, now_ns: int) -> bool:
        """True when `value` is the answer that `hashed` was issued for and the captcha has not expired."""
        if not all(isinstance(x, str) for x in (salt, hashed, value)):
            return False
        try:
            raw = b64url_decode(salt)
        except (binascii.Error, ValueError):
            return False
        if len(raw) < 9:
            return False
        issued_ms = int.from_bytes(raw[-8:], "big")
        if now_ns // 1_000_000 - issued_ms > self._ttl_s() * 1000:
            return False
        return hmac.compare_digest(hashed, self.hash(salt, value))


@dataclass(frozen=True)
class Claims:
    broker: str
    username: str
    generation: int
    expires_s: int


class TokenSigner:
    """HS256 JWTs carrying the username, the broker and `exp`; the signature keeps forgeries out."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _sign(self, signing_input: str) -> str:
        return b64url(hmac.new(self._secret, signing_input.encode("ascii"), hashlib.sha256).digest())

    def issue(self, broker: str, username: str, generation: int, now_s: int, ttl_s: int) -> tuple[str, int]:
        """A token and its lifetime in seconds."""
        payload = {
            "sub": username,
            "unique_name": username,
            "broker": broker,
            "gen": generation,
            "iat": now_s,
            "nbf": now_s,
            "exp": now_s + ttl_s,
            "jti": secrets.token_hex(8),
        }
        return signed_jwt({"alg": "HS256", "typ": "JWT"}, payload, self._sign), ttl_s

    def verify(self, token: str) -> Claims | None:
        """The claims of a token this simulator signed, expired or not; None for anything else."""
        payload = jwt_payload(token, self._sign)
        try:
            return Claims(str(payload["broker"]), str(payload["sub"]), int(payload["gen"]), int(payload["exp"]))
        except (ValueError, KeyError, TypeError):
            return None


@dataclass
class LimiterSettings:
    window_s: float = 60.0
    max_calls: int = 150
    cooldown_s: float = 420.0
    retry_after: bool = False


class CallLimiter:
    """Too many captcha/login calls on one identity host within the window start a cooldown of 429s.

    Calls refused during the cooldown do not count; when it ends the window starts empty.
    """

    def __init__(self, settings: LimiterSettings) -> None:
        self.settings = settings
        self._calls: dict[str, deque[int]] = {}
        self._cooldown_until: dict[str, int] = {}

    def admit(self, key: str, monotonic_ns: int) -> float | None:
        """None when the call may go ahead, else the seconds left of the cooldown."""
        until = self._cooldown_until.get(key)
        if until is not None:
            if monotonic_ns < until:
                return (until - monotonic_ns) / 1e9
            del self._cooldown_until[key]
            self._calls.pop(key, None)
        calls = self._calls.setdefault(key, deque())
        horizon = monotonic_ns - int(self.settings.window_s * 1e9)
        while calls and calls[0] <= horizon:
            calls.popleft()
        if len(calls) >= self.settings.max_calls:
            self._cooldown_until[key] = monotonic_ns + int(self.settings.cooldown_s * 1e9)
            calls.clear()
            return self.settings.cooldown_s
        calls.append(monotonic_ns)
        return None

    def retry_after_header(self, seconds_left: float) -> dict[str, str]:
        return {"Retry-After": str(max(1, math.ceil(seconds_left)))} if self.settings.retry_after else {}
