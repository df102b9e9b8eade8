"""One broker account's calls through its platform's session: the captcha login, buying power, instruments,
holdings, orders; the captcha flow, retry policy, rate limits and cache are this module's.

Everything here happens before the open (warmup and the refreshes after it); the open itself goes through
the executor's pre-built requests, never through this module.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, AsyncContextManager, NoReturn, Protocol, TypeVar

import aiohttp
import orjson

from daemon import metrics
from daemon.cache import Cache
from daemon.account import CaptchaSolver, CaptchaUnsolved
from daemon.clock import Clock
from daemon.config import AccountSettings, BrokerEndpoints, Config, FeeSettings, OrderSettings
from daemon.errors import AuthError, BrokerError, CaptchaError, OrderRejected, RateLimited
from daemon.logs import get_logger, register_secret, token_slot
from daemon.platforms import (
    BrokerOrder,
    BuyingPower,
    Codec,
    FeeRates,
    Instrument,
    LoginAnswer,
    RequestBudget,
    Session,
    Throttled,
    Token,
    TokenRefused,
    Verdict,
    platform_for,
)
from daemon.account import HostRateLimiter
from daemon.account import RetryPolicy
from daemon.sizing import buy_volume, order_fee, resolve_price, sell_volume, split_amounts
from daemon.account import token_valid_until
from daemon.net import tls_context

T = TypeVar("T")
__all__ = [
    "BrokerClient",
    "EphoenixClient",
    "HttpPool",
    "Instrument",
    "LoginLock",
    "NoLoginLock",
    "OrderAccepted",
    "OrderParams",
]


class LoginLock(Protocol):
    """Held around one account's login so that no other process logs the same account in meanwhile."""

    def hold(self, account_key: str) -> AsyncContextManager[None]: ...


class NoLoginLock:
    """One process alone (the file cache): the client's own lock is enough."""

    @contextlib.asynccontextmanager
    async def hold(self, account_key: str) -> AsyncIterator[None]:
        yield


class HttpPool:
    """One aiohttp session for every account: keep-alive connections pooled per host."""

    def __init__(self, timeout_s: float, ca_bundle: str | None = None) -> None:
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._ssl = tls_context(ca_bundle)
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(ssl=self._ssl, limit=0, limit_per_host=0, keepalive_timeout=120)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout, json_serialize=_dumps)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def __aenter__(self) -> HttpPool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


@dataclass(frozen=True, slots=True)
class OrderParams:
    """An order ready to send: decided price and volume, and what they were computed from."""

    isin: str
    side: str
    price: int
    volume: int
    amount: int
    fee: int

    def to_cache(self) -> dict[str, Any]:
        return {
            "isin": self.isin,
            "side": self.side,
            "price": self.price,
            "volume": self.volume,
            "amount": self.amount,
            "fee": self.fee,
        }

    @classmethod
    def from_cache(cls, data: dict[str, Any]) -> OrderParams:
        return cls(
            data["isin"], data["side"], int(data["price"]), int(data["volume"]), int(data["amount"]), int(data["fee"])
        )


@dataclass(frozen=True, slots=True)
class OrderAccepted:
    body: dict[str, Any]
    serial_number: int | None
    tracking_number: str | None


class BrokerClient:
    """One account at one broker, on the broker's platform. Tokens come from the cache while valid; a refused
    token logs in again once. Every broker call goes through the platform's session."""

    def __init__(
        self,
        account: AccountSettings,
        endpoints: BrokerEndpoints,
        config: Config,
        cache: Cache,
        http: HttpPool,
        solver: CaptchaSolver,
        limiter: HostRateLimiter,
        clock: Clock,
        retry: RetryPolicy | None = None,
        shared_lock: LoginLock | None = None,
    ) -> None:
        self.account = account
        self._config = config
        self._cache = cache
        self._http = http
        self._solver = solver
        self._limiter = limiter
        self._clock = clock
        self._retry = retry or RetryPolicy(config.client.retry, clock)
        self._login_lock = asyncio.Lock()
        self._shared_lock = shared_lock or NoLoginLock()
        # Spacing and cooldowns are kept per identity service: its base URL, which is the broker's own host in
        # production and tells apart brokers that one host serves under path prefixes (the simulator).
        self._identity_host = endpoints.identity_url.rstrip("/")
        self.log = get_logger(account=account.name, broker=endpoints.code)
        self._fees: dict[str, FeeRates] = {}
        """The broker's own fee rates by ISIN (`fee_rates`): they hold for the day."""
        self.endpoints = endpoints

    @property
    def endpoints(self) -> BrokerEndpoints:
        return self._endpoints

    @endpoints.setter
    def endpoints(self, endpoints: BrokerEndpoints) -> None:
        """The broker's addresses; its platform's session and codec are built on them (again when they change)."""
        self._endpoints = endpoints
        self.platform = platform_for(endpoints.platform)
        self.session: Session = self.platform.session(endpoints, self._http, self)
        self.codec: Codec = self.platform.codec(endpoints)
        """The broker's hot path (request bytes, answers, matching): what the executor builds and reads with."""

    @property
    def clock(self) -> Clock:
        """The clock a platform's session reads (Exir signs each call for its UTC second)."""
        return self._clock

    @property
    def requests(self) -> RequestBudget | None:
        """This account's request budget at its broker, where the platform has a cap (easytrader); the hot path
        charges each request it sends itself (`requests.charge("batch", urgent=True)`)."""
        return getattr(self.session, "requests", None)

    @property
    def username(self) -> str:
        return self.account.username

    @property
    def broker(self) -> str:
        return self.endpoints.code

    @property
    def cross_check(self) -> bool:
        """Whether warmup asks the broker's own volume formula to check the local one."""
        return self._config.client.cross_check

    # ---- tokens -------------------------------------------------------------------------------------

    async def cached_token(self) -> dict[str, Any] | None:
        entry = await self._cache.get_token(self.username, self.broker)
        if entry and entry.get("token"):
            register_secret(entry["token"], slot=token_slot(self.username, self.broker))
            metrics.token_expiry(self.account.name, entry["expires_at"])
            return entry
        return None

    async def current_token(self) -> Token:
        """A valid token (as `token()` gets it) with the instant it stops being used."""
        value = await self.token()
        entry = await self.cached_token()
        until = _instant(entry.get("expires_at")) if entry and entry.get("token") == value else None
        return Token(value, until or self._clock.now())

    async def token(self) -> str:
        """A valid token: the cached one, or a fresh login (one login at a time per account).

        A throttled broker is waited out (the host limiter holds the next call until the cooldown ends),
        a bounded number of times; other brokers are not held up by it.
        """
        entry = await self.cached_token()
        if entry:
            return entry["token"]
        async with self._login_lock:
            for _ in range(self._config.captcha.throttle_waits):
                entry = await self.cached_token()
                if entry:
                    return entry["token"]
                try:
                    return (await self._login_once())["token"]
                except RateLimited:
                    continue
            return (await self._login_once())["token"]

    async def _login_once(self) -> dict[str, Any]:
        """A login under the shared lock; another process may have logged in while we waited for it."""
        async with self._shared_lock.hold(f"{self.username}_{self.broker}"):
            entry = await self.cached_token()
            if entry:
                return entry
            return await self.login()

    async def login(self) -> dict[str, Any]:
        """The captcha flow: fetch (spaced per identity host), solve, post; wrong captchas retried.

        A round that meets an unavailable broker (a dropped login, a 5xx captcha) starts again with a new
        captcha under the retry policy, since the old one may have been spent; wrong captchas count
        against `captcha.max_attempts` instead.
        """
        attempts = self._config.captcha.max_attempts
        for attempt in range(1, attempts + 1):
            try:
                answer = await self._retry.call("login", self._login_round, self.log)
            except CaptchaUnsolved as exc:
                self.log.info("captcha.unsolved", attempt=attempt, reason=str(exc))
                continue
            if answer.outcome == "wrong_credentials":
                raise AuthError(
                    f"account {self.account.name}: the broker refused the username or password; fix them in the config."
                )
            if answer.outcome == "blocked":
                raise AuthError(f"account {self.account.name}: {answer.message}.")
            if answer.outcome == "wrong_captcha":
                self.log.info("captcha.wrong", attempt=attempt)
                continue
            if answer.outcome != "ok" or not answer.token:
                raise BrokerError(
                    f"account {self.account.name}: login failed with code {answer.code}: {answer.message}"
                )
            register_secret(answer.token, slot=token_slot(self.username, self.broker))
            return await self._store_token(answer.token, answer.expire_in_s)
        raise CaptchaError(f"account {self.account.name}: {attempts} captcha attempts failed.")

    async def _login_round(self) -> LoginAnswer:
        await self._limiter.acquire(self._identity_host)
        try:
            captcha = await self.session.fetch_captcha()
            if not captcha.image:  # the login page asked for no captcha this time (easytrader): nothing to solve
                answer = ""
            elif captcha.digits == 5:
                answer = await self._solver.solve(captcha.image)
            else:  # only then the solver's `digits` (a solver of its own may take the image alone)
                answer = await self._solver.solve(captcha.image, digits=captcha.digits)  # type: ignore[call-arg]
            return await self.session.login(self.username, self.account.resolve_password(), captcha, answer)
        except Throttled as exc:
            self._throttled(exc.retry_after_s, exc.why)

    async def _store_token(self, token: str, expire_in_s: float | None) -> dict[str, Any]:
        now = self._clock.now()
        valid_until = token_valid_until(
            token,
            now,
            ttl_s=self._config.cache.ttl.tokens,
            expire_in_s=expire_in_s,
            margin_s=self._config.client.token_margin_s,
        )
        if valid_until <= now:
            raise BrokerError(f"account {self.account.name}: the broker's token expires within the safety margin.")
        await self._cache.save_token(self.username, self.broker, token, valid_until, obtained_at=now.isoformat())
        metrics.token_expiry(self.account.name, valid_until)
        self.log.info("login.ok", valid_until=valid_until.isoformat())
        return {
            "token": token,
            "username": self.username,
            "broker_code": self.broker,
            "expires_at": valid_until.isoformat(),
        }

    def _throttled(self, retry_after_s: float | None, why: str) -> NoReturn:
        seconds = retry_after_s or self._config.captcha.cooldown_s
        self._limiter.cool_down(self._identity_host, seconds)
        self.log.warning("broker.throttled", why=why, cooldown_s=seconds)
        raise RateLimited(f"broker {self.broker} throttles logins ({why}); waiting {seconds:.0f} s.", seconds)

    # ---- the session's authority --------------------------------------------------------------------

    async def authed(self, what: str, send: Callable[[str], Awaitable[T]], retry: bool = True) -> T:
        """`send(token)` with this account's token; a refused token (TokenRefused) is dropped and the call made
        once more after a new login. With `retry` an unavailable broker is retried by the policy (reads and
        pure calculations); an order is sent once, because a lost answer may hide an accepted order.
        """
        for fresh_login in (False, True):
            token = await self.token()

            async def attempt(token: str = token) -> T:
                return await send(token)

            try:
                return await (self._retry.call(what, attempt, self.log) if retry else attempt())
            except TokenRefused:
                pass
            await self._cache.drop_token(self.username, self.broker)
            if fresh_login:
                raise AuthError(f"account {self.account.name}: the broker refuses even a fresh token.")
            self.log.info("token.refused", path=what)
        raise AssertionError("unreachable")

    async def retried(self, what: str, operation: Callable[[], Awaitable[T]]) -> T:
        """An unauthenticated call under the retry policy (market data)."""
        return await self._retry.call(what, operation, self.log)

    # ---- reads ----------------------------------------------------------------------------------------

    async def ensure_token_live(self) -> None:
        """Prove the token still works with the platform's cheap authenticated probe, before it is needed at
        the open: a token revoked or expired since warmup is refused, which logs in again (`authed`); an
        Ephoenix probe refreshes the cached buying power on the way. A login that then fails raises
        (AuthError for a wrong password).
        """
        power = await self.session.probe()
        if power is not None:
            await self._cache.save_buying_power(self.username, self.broker, power.to_cache())

    async def buying_power(self, use_cache: bool = True) -> BuyingPower:
        if use_cache and (cached := await self._cache.get_buying_power(self.username, self.broker)):
            power = BuyingPower.from_cache(cached)
            if power is not None:
                return power
            self.log.warning("cache.buying_power.unusable")
        power = await self.session.buying_power()
        await self._cache.save_buying_power(self.username, self.broker, power.to_cache())
        return power

    async def get_buying_power(self, use_cache: bool = True) -> dict[str, Any]:
        """The buying power in its cache shape (`buyingPower`, `remain`, `credit`, `timestamp`)."""
        return (await self.buying_power(use_cache=use_cache)).to_cache()

    async def order_amounts(self, use_cache: bool = True) -> list[int]:
        """Each order's part of the buying power, in the account's order list; no read when nothing is a buy."""
        orders = self.account.orders
        if not any(o.side == "buy" for o in orders):
            return [0] * len(orders)
        power = await self.buying_power(use_cache=use_cache)
        return split_amounts(power.amount, [o.share for o in orders])

    async def get_instrument(self, isin: str, use_cache: bool = True) -> Instrument:
        if use_cache and (cached := await self._cache.get_market_data(isin)):
            try:
                return Instrument.from_cache(cached)
            except _UNUSABLE:
                self.log.warning("cache.market.unusable", isin=isin)
        instrument = await self.session.instrument(isin)
        await self._cache.save_market_data(isin, instrument.to_cache())
        return instrument

    async def get_holdings(self, isin: str, use_cache: bool = True) -> int:
        """Shares of `isin` this account can sell (a sell's volume comes from here, never buying power)."""
        if use_cache and (cached := await self._cache.get_holdings(self.username, self.broker, isin)):
            try:
                return max(int(cached["remain_volume"]), 0)
            except _UNUSABLE:
                self.log.warning("cache.holdings.unusable", isin=isin)
        holding = await self.session.holdings(isin)
        await self._cache.save_holdings(self.username, self.broker, isin, holding.to_cache())
        return holding.volume

    async def order_params(
        self, order: OrderSettings, amount: int | None = None, use_cache: bool = True
    ) -> OrderParams:
        """Price and volume for `order`, computed locally; `amount` is this order's part of the buying power."""
        if use_cache and (cached := await self._cache.get_order_params(self.username, self.broker, order.isin)):
            try:
                params = OrderParams.from_cache(cached)
                if params.side == order.side:
                    return params
            except _UNUSABLE:
                self.log.warning("cache.order_params.unusable", isin=order.isin)
        instrument = await self.get_instrument(order.isin, use_cache=use_cache)
        price = resolve_price(order.price, instrument.limits)
        fees = await self.fee_rates(order.isin, use_cache=use_cache)
        if order.side == "sell":
            held = await self.get_holdings(order.isin, use_cache=use_cache)
            volume = order.volume if order.volume != "auto" else sell_volume(held, instrument.limits)
            amount = held
            fee_rate = fees.sell
        else:
            if amount is None:
                amount = int((await self.buying_power(use_cache=use_cache)).amount)
            volume = order.volume if order.volume != "auto" else buy_volume(amount, price, fees.buy, instrument.limits)
            fee_rate = fees.buy
        params = OrderParams(
            order.isin, order.side, price, int(volume), int(amount), order_fee(int(volume), price, fee_rate)
        )
        await self._cache.save_order_params(self.username, self.broker, order.isin, params.to_cache())
        return params

    async def fee_rates(self, isin: str, use_cache: bool = True) -> FeeRates | FeeSettings:
        """The fee rates that size an order of `isin`: the broker's own when its platform tells them (Exir's
        wages, read once per process unless `use_cache` is off), else the config's `fees` (Ephoenix)."""
        if use_cache and isin in self._fees:
            return self._fees[isin]
        told = getattr(self.session, "fees", None)  # a platform's session may leave it out: no rates of its own
        rates = await told(isin) if told is not None else None
        if rates is None:
            return self._config.fees
        self._fees[isin] = rates
        return rates

    async def calculate_order_param(self, isin: str, side: str, price: int, amount: int) -> dict[str, Any]:
        """The broker's own volume formula, to cross-check the local one at warmup."""
        return await self.session.calculate_order(isin, side, price, amount)

    async def broker_volume(self, isin: str, side: str, price: int, amount: int) -> int | None:
        """The volume the broker's own formula gives (None when its answer names none)."""
        body = await self.calculate_order_param(isin, side, price, amount)
        volume = body.get("volume") if isinstance(body, dict) else None
        return int(volume) if volume is not None else None

    async def new_order(self, isin: str, side: str, price: int, volume: int) -> OrderAccepted:
        answer = await self.session.new_order(isin, side, price, volume)
        if answer.verdict is not Verdict.ACCEPTED:
            raise OrderRejected(answer.code if answer.code is not None else -1, answer.message)
        body = answer.raw
        return OrderAccepted(
            body if isinstance(body, dict) else {"result": body}, answer.serial_number, answer.tracking_number
        )

    async def open_orders(self) -> list[BrokerOrder]:
        """The account's open orders (typed, and mappings over the normalised rows `normalise_order` gives).
        An answer that is not a list of orders raises BrokerUnavailable: unreadable is never "no orders"."""
        return await self.session.open_orders()

    async def today_orders(self, day: date) -> list[BrokerOrder]:
        """Every order of this account on `day` (the broker's day) in any state, open, filled or cancelled:
        filled orders are no longer "open", so only this tells what exists. Every page is read; a garbage
        answer raises BrokerUnavailable."""
        return await self.session.today_orders(day)


EphoenixClient = BrokerClient
"""The name of the days when Ephoenix was the only platform; the same class."""


# ---- helpers ----------------------------------------------------------------------------------------------

_UNUSABLE = (KeyError, TypeError, ValueError, OverflowError, AttributeError)
"""What converting a cached or answered value can raise when the value is not what it should be."""


def _instant(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None
