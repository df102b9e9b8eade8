"""Everything one running simulator holds: its settings, its clock, the market and the identity machinery.

The simulator's clock is the injected host clock plus a skew, as a broker's own clock would be off from
ours. It stamps the `Date` header, the trading book's `timestamp`, token expiry and the open instant.
Spacing and the 429 window use the host's monotonic clock: they measure intervals, not instants.
"""

from __future__ import annotations

import asyncio
import random
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from daemon.sim._auth import CallLimiter, CaptchaBook, LimiterSettings, TokenSigner
from daemon.sim._clock import SimClock
from daemon.sim._faults import FaultPlan
from daemon.sim._fills import Execution, FillPlan
from daemon.sim._log import RequestLog
from daemon.sim._market import Market, Order, OrderRules
from daemon.sim._platform import DEFAULT_PLATFORM, platform, reserved_names
from daemon.sim._transport import ArrivalBook

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class SimSettings:
    """The simulator's knobs; the object stays live, so changes while it runs apply to the next request.

    `fills` maps an ISIN to its `FillPlan`: accepted orders of it execute that share of their volume from that long
    after the open on (read lazily on the simulator's clock, so fake time serves; `Simulator.set_fill`).

    Options for what ephoenix-api.md leaves unconfirmed (they shape Ephoenix's answers only): `order_response` ("flat": ids and errorCode 0 at
    the top; "nested": no errorCode, ids under `result`), `rejection_status` (HTTP 200 or 400 for a refused
    order) and `login_limit.retry_after` (whether a 429 carries Retry-After).
    """

    rules: OrderRules = field(default_factory=OrderRules)
    login_limit: LimiterSettings = field(default_factory=LimiterSettings)
    token_ttl_s: int = 3600
    captcha_ttl_s: float = 300.0
    order_response: Literal["flat", "nested"] = "flat"
    rejection_status: Literal[200, 400] = 200
    skew_ms: float = 0.0
    open_at: datetime | None = None  # on the simulator clock; None = accepting orders already
    seed: int | None = None  # makes captchas, serial numbers and fault draws repeatable (each fault its own stream)
    request_log_path: Path | None = None
    fills: dict[str, FillPlan] = field(default_factory=dict)


@dataclass
class SimBroker:
    code: str
    captcha_format: Literal["png", "jpeg"] = "png"
    platform: str = DEFAULT_PLATFORM  # the registered platform whose routes serve this broker code


def to_ns(when: datetime) -> int:
    """An aware datetime as epoch nanoseconds, exactly (no float rounding)."""
    if when.tzinfo is None:
        raise ValueError("the simulator needs timezone-aware datetimes")
    return (when - _EPOCH) // timedelta(microseconds=1) * 1000


class SimState:
    """The simulator's moving parts, shared by its request handlers."""

    def __init__(self, settings: SimSettings, clock: SimClock) -> None:
        self.settings = settings
        self.clock = clock
        self.rng = random.Random(settings.seed)
        secret = self.rng.randbytes(32) if settings.seed is not None else secrets.token_bytes(32)
        self.market = Market(settings.rules, self.rng, lambda: self.settings.fills)
        self.captchas = CaptchaBook(secret, lambda: self.settings.captcha_ttl_s)
        self.tokens = TokenSigner(secret)
        self.limiter = CallLimiter(settings.login_limit)
        self.faults = FaultPlan(settings.seed)
        self.log = RequestLog(settings.request_log_path)
        self.arrivals = ArrivalBook(clock)
        self.brokers: dict[str, SimBroker] = {}
        self.sleep: Callable[[float], Awaitable[None]] = asyncio.sleep  # injected latency goes through here

    def now_ns(self) -> int:
        """The simulator's wall clock: the host clock plus the skew."""
        return self.clock.time_ns() + int(self.settings.skew_ms * 1_000_000)

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.now_ns() / 1e9, UTC)

    def is_open(self, now_ns: int) -> bool:
        open_at = self.settings.open_at
        return open_at is None or now_ns >= to_ns(open_at)

    def open_ns(self) -> int | None:
        """The open instant on the simulator clock (fill plans count from it); None: open already."""
        return None if self.settings.open_at is None else to_ns(self.settings.open_at)

    def execution(self, order: Order) -> Execution:
        """What `order` has executed by now (the simulator clock), as every platform's rows show it."""
        return self.market.execution(order, self.now_ns(), self.open_ns())

    def is_live(self, order: Order) -> bool:
        """Still in the book now: not cancelled, not fully executed (what open-order lists show)."""
        return self.market.is_live(order, self.now_ns(), self.open_ns())

    def add_broker(
        self, code: str, captcha_format: Literal["png", "jpeg"] | None = None, platform_name: str = DEFAULT_PLATFORM
    ) -> SimBroker:
        """A broker code served by `platform_name`'s routes; adding it again may change its captcha format only."""
        reserved = sorted(reserved_names())
        if not code.isalnum() or not code.islower() or code in reserved:
            raise ValueError(
                f"broker code {code!r} must be lowercase letters and digits, and not {', '.join(reserved)}"
            )
        platform(platform_name)  # refuses an unknown platform
        known = self.brokers.get(code)
        if known is not None and known.platform != platform_name:
            raise ValueError(f"broker {code!r} is already simulated on {known.platform}, not {platform_name}")
        if known is None:
            fmt = captcha_format or ("png" if len(self.brokers) % 2 == 0 else "jpeg")
            self.brokers[code] = SimBroker(code, fmt, platform_name)
        elif captcha_format is not None:
            self.brokers[code].captcha_format = captcha_format
        return self.brokers[code]
