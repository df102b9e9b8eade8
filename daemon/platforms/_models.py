"""The project's own typed models, what every platform's session and codec speak.

The cache, warmup, executor, report and metrics see only these, never a platform's JSON; the shapes that
go into the cache (`to_cache`) are the documented cache shapes, so files of the earlier tool still read.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any

from daemon.sizing import Limits


class TokenRefused(Exception):
    """A session's call met a refused token (HTTP 401 or the platform's equivalent): the client logs in again."""


class Throttled(Exception):
    """The identity service throttles logins; the client cools its host down for `retry_after_s` (or its default)."""

    def __init__(self, retry_after_s: float | None, why: str) -> None:
        super().__init__(why)
        self.retry_after_s = retry_after_s
        self.why = why


@dataclass(frozen=True, slots=True)
class Token:
    value: str = field(repr=False)
    valid_until: datetime


@dataclass(frozen=True, slots=True)
class Captcha:
    """A captcha to solve: the image, and what the platform needs back with the answer."""

    image: bytes = field(repr=False)
    state: Mapping[str, Any] = field(default_factory=dict)
    digits: int = 5
    """How many digits it shows (Online+'s four; five elsewhere): the solver is asked for that many."""


@dataclass(frozen=True, slots=True)
class LoginAnswer:
    """What a login post meant: ok (a token), a wrong captcha (try another), wrong credentials, blocked (the
    password is right but the account cannot be used, `message` says why: Online+'s SMS/OTP), or failed."""

    outcome: str  # "ok" | "wrong_captcha" | "wrong_credentials" | "blocked" | "failed"
    token: str | None = field(default=None, repr=False)
    expire_in_s: float | None = None
    code: int | str | None = None  # a platform's own: Ephoenix's and Exir's numbers, Online+'s MessageCode text
    message: str = ""


@dataclass(frozen=True, slots=True)
class BuyingPower:
    amount: float
    remain: Any = None
    credit: Any = None
    timestamp: Any = None

    def to_cache(self) -> dict[str, Any]:
        amount: int | float = int(self.amount) if self.amount.is_integer() else self.amount
        return {"buyingPower": amount, "remain": self.remain, "credit": self.credit, "timestamp": self.timestamp}

    @classmethod
    def from_cache(cls, data: Mapping[str, Any]) -> BuyingPower | None:
        """The cached entry, or None when its amount is not a finite number."""
        amount = finite(data.get("buyingPower"))
        if amount is None:
            return None
        return cls(amount, data.get("remain"), data.get("credit"), data.get("timestamp"))


@dataclass(frozen=True, slots=True)
class Instrument:
    """One instrument's day: its price band and order-size caps (`limits`) and last price."""

    isin: str
    symbol: str
    title: str
    limits: Limits
    last_price: int | None

    @classmethod
    def from_cache(cls, data: dict[str, Any]) -> Instrument:
        return cls(
            isin=data["isin"],
            symbol=data.get("symbol", ""),
            title=data.get("title", ""),
            limits=Limits(int(data["mineq"]), int(data["maxeq"]), int(data["minap"]), int(data["maxap"])),
            last_price=data.get("last_price"),
        )

    def to_cache(self) -> dict[str, Any]:
        return {
            "isin": self.isin,
            "symbol": self.symbol,
            "title": self.title,
            "mineq": self.limits.mineq,
            "maxeq": self.limits.maxeq,
            "minap": self.limits.minap,
            "maxap": self.limits.maxap,
            "last_price": self.last_price,
        }


@dataclass(frozen=True, slots=True)
class FeeRates:
    """A broker's own fee rates for one instrument, as fractions (0.003712 = 0.3712 %), where the platform
    tells them (Exir's wages); a session that has none returns None and the config's `fees` apply."""

    buy: float
    sell: float
    source: str = "broker"  # "broker", "fallback" (the broker's answer had no usable rate), "config" (Online+'s fee)


@dataclass(frozen=True, slots=True)
class Holding:
    isin: str
    volume: int

    def to_cache(self) -> dict[str, Any]:
        return {"isin": self.isin, "remain_volume": self.volume}


@dataclass(frozen=True, eq=False)
class BrokerOrder(Mapping[str, Any]):
    """An order in a broker's lists, typed; also a read-only mapping over `row`, the normalised row (the keys
    `isin`, `side` (1 buy, 2 sell), `serialNumber`, `trackingNumber`, `price`, `volume`, `executedVolume`,
    `state`, `createdAt`, `created`, plus the platform's own fields), which matching and the tests read.

    `executed`, `average_price` (rial per share over what was executed, None when the platform does not say) and
    `cancelled` (the broker ended it: cancelled, expired or rejected after booking) are what the tracker follows
    after the window."""

    isin: str | None
    side: str | None  # "buy", "sell" or None when unreadable
    serial: int | None
    tracking: str | None
    created: datetime | None
    volume: int | None = None
    executed: int | None = None
    price: int | None = None
    state: int | None = None
    row: Mapping[str, Any] = field(default_factory=dict, repr=False)
    average_price: float | None = None
    cancelled: bool = False

    def __getitem__(self, key: str) -> Any:
        return self.row[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.row)

    def __len__(self) -> int:
        return len(self.row)


class Verdict(Enum):
    ACCEPTED = "accepted"
    RETRY = "retry"  # the same order again after the spacing
    TERMINAL = "terminal"  # stop this order: resending cannot help
    UNKNOWN = "unknown"  # no usable answer (5xx, garbage): the order may or may not exist


@dataclass(frozen=True, slots=True)
class OrderAnswer:
    """What an order's answer means: accepted (with the broker's ids), retry, terminal (code, message), unknown."""

    verdict: Verdict
    code: int | str | None  # Online+'s codes are text (OMS_8018)
    message: str
    serial_number: int | None = None
    tracking_number: str | None = None
    raw: Any = field(default=None, compare=False, repr=False)


def finite(value: Any) -> float | None:
    """`value` as a finite number (numeric text too), or None: a bool, NaN and infinity are not amounts."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except (OverflowError, ValueError):
        return None
    return number if math.isfinite(number) else None


def whole(value: Any) -> int | None:
    """A whole number (or its text, "601" or "601.0") as int; None for a bool, a fraction or anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    number = finite(value)
    return int(number) if number is not None and number.is_integer() else None
