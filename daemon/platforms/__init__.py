"""Broker platforms behind one seam: each is a session (the slow path) and an order codec (the hot path).

A platform registers itself with `register`; `platform_for(name)` is what the client and the config ask.
Both halves speak the typed models of `_models`, so nothing above them reads a platform's JSON.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from daemon.platforms._budget import RequestBudget
from daemon.platforms._defaults import SessionDefaults
from daemon.platforms._models import (
    BrokerOrder,
    BuyingPower,
    Captcha,
    FeeRates,
    Holding,
    Instrument,
    LoginAnswer,
    OrderAnswer,
    Throttled,
    Token,
    TokenRefused,
    Verdict,
    finite,
    whole,
)

__all__ = [
    "Authority",
    "BrokerOrder",
    "BuyingPower",
    "Captcha",
    "Codec",
    "FeeRates",
    "Holding",
    "Instrument",
    "LoginAnswer",
    "OrderAnswer",
    "Platform",
    "RequestBudget",
    "Session",
    "SessionDefaults",
    "SignedRequest",
    "Throttled",
    "Token",
    "TokenRefused",
    "Verdict",
    "finite",
    "names",
    "order_spacing_ms",
    "order_origin",
    "platform_for",
    "register",
    "whole",
]

if TYPE_CHECKING:
    from daemon.clock import Clock
    from daemon.net import OffsetEstimate

T = TypeVar("T")


class Authority(Protocol):
    """What the client lends a session: a token for each call (a refused one answered by one new login), its
    retry policy, and its clock (a platform that signs requests by the second, Exir, reads it).
    `send(token)` raises TokenRefused when the platform refuses the token."""

    @property
    def clock(self) -> Clock: ...

    async def authed(self, what: str, send: Callable[[str], Awaitable[T]], retry: bool = True) -> T: ...

    async def retried(self, what: str, operation: Callable[[], Awaitable[T]]) -> T: ...


class Session(Protocol):
    """One account's slow path at one broker (aiohttp): login with a captcha, reads, order lists.

    The last four members are optional parts with defaults in `SessionDefaults` (inherit it): drafts made before
    the open, the broker's own clock, and the request budget of a broker with a cap (easytrader has all three).
    A captcha with an empty image means the login page asked for none this time: nothing to solve.
    """

    async def fetch_captcha(self) -> Captcha: ...

    async def login(self, username: str, password: str, captcha: Captcha, answer: str) -> LoginAnswer: ...

    async def buying_power(self) -> BuyingPower: ...

    async def probe(self) -> BuyingPower | None:
        """The cheapest authenticated call: proves the token (a refused one logs in again)."""
        ...

    async def instrument(self, isin: str) -> Instrument: ...

    async def fees(self, isin: str) -> FeeRates | None:
        """The broker's own fee rates for `isin` (Exir's wages), or None: the config's `fees` apply (Ephoenix)."""
        ...

    async def holdings(self, isin: str) -> Holding: ...

    async def open_orders(self) -> list[BrokerOrder]: ...

    async def today_orders(self, day: date) -> list[BrokerOrder]: ...

    async def calculate_order(self, isin: str, side: str, price: int, amount: int) -> dict[str, Any]: ...

    async def new_order(self, isin: str, side: str, price: int, volume: int) -> OrderAnswer: ...

    requests: RequestBudget | None
    """Every request this session makes is charged here; the hot path charges what it sends (None: no cap)."""

    async def prepare_order(self, isin: str, side: str, price: int, volume: int) -> str | None:
        """The order's draft made at the broker (at the arm); its id for `Codec.order_request(prepared=)`, or None
        when the platform has no drafts."""
        ...

    async def discard_prepared(self, prepared: str) -> bool:
        """Delete (or at least never use again) a draft: the final check resized the order."""
        ...

    async def broker_clock(self) -> OffsetEstimate | None:
        """broker time = local time + offset, from the broker's own clock endpoint; None: probe it instead."""
        ...


class SignedRequest(Protocol):
    """A request whose bytes depend on the UTC second it is sent in (Exir's X-App-N): everything but the
    signature is built beforehand, so `at()` costs microseconds and the first send stays a single write."""

    def at(self, utc_second: int) -> bytes:
        """The complete request bytes for the Unix-epoch second `utc_second` of the (corrected) clock."""
        ...


class Codec(Protocol):
    """One broker's hot path, pure and synchronous: request bytes, the meaning of an answer, matching."""

    origin_url: str
    """Where orders go: the executor opens its connections here."""

    def order_request(self, token: str, isin: str, side: str, price: int, volume: int) -> bytes | SignedRequest:
        """The order's bytes, or a SignedRequest when they change with the second (Exir).

        A platform with drafts also takes `prepared=<id>` (the id `Session.prepare_order` gave): the bytes then
        send that draft (easytrader's batchCreate). It is passed only when there is an id, so the codecs of
        platforms without drafts need not take it."""
        ...

    def probe_request(self, token: str) -> bytes | SignedRequest: ...

    def classify(self, status: int, body: bytes) -> OrderAnswer: ...

    def find_order(
        self,
        orders: list[Mapping[str, Any]],
        isin: str,
        side: str,
        since: datetime | None,
        tz: tzinfo,
        serial_number: int | None = None,
    ) -> Mapping[str, Any] | None: ...


def order_spacing_ms(codec: Codec, token: str) -> float | None:
    """The platform's own least spacing between one account's orders, in ms, or None when it states none.

    A codec that knows one has `spacing_ms(token)` (Exir: the login's sendOrderDelay); the executor spaces the
    account's sends by at least the larger of it and its own spacing. Other codecs need not define it.
    """
    tell = getattr(codec, "spacing_ms", None)
    return tell(token) if callable(tell) else None


def order_origin(codec: Codec, token: str) -> str:
    """Where `token`'s orders and probes go: the codec's `origin_for(token)` when it has one (Online+: the API base
    the login page named, carried in the token), else its `origin_url` (every other platform)."""
    origin_for = getattr(codec, "origin_for", None)
    return origin_for(token) if callable(origin_for) else codec.origin_url


@dataclass(frozen=True, slots=True)
class Platform:
    """A platform: how to build one account's session and one broker's codec from the broker's endpoints."""

    name: str
    session: Callable[..., Session]
    """session(endpoints, http, authority): `http` has an aiohttp `session`; `authority` is the client."""
    codec: Callable[..., Codec]
    """codec(endpoints)."""
    needs: tuple[str, ...] = ()
    """The `brokers.<code>` settings it cannot do without (Exir: `url`, the tenant's base URL)."""


_REGISTRY: dict[str, Platform] = {}


def register(platform: Platform) -> Platform:
    """Make a platform available to the config (`brokers.<code>.platform`) and the client."""
    _REGISTRY[platform.name] = platform
    return platform


def names() -> list[str]:
    return sorted(_REGISTRY)


def platform_for(name: str) -> Platform:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"no broker platform named {name!r} (known: {', '.join(names())})") from None


from daemon.platforms import easytrader as _easytrader  # noqa: E402
from daemon.platforms import ephoenix as _ephoenix  # noqa: E402  registers itself
from daemon.platforms import exir as _exir  # noqa: E402
from daemon.platforms import onlineplus as _onlineplus  # noqa: E402

register(_ephoenix.PLATFORM)
register(_exir.PLATFORM)
register(_onlineplus.PLATFORM)
register(_easytrader.PLATFORM)
