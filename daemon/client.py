"""One broker account's HTTP calls: the captcha login, buying power, instruments, holdings, orders.

Everything here happens before the open (warmup and the refreshes after it); the open itself goes through
the executor's pre-built requests, never through this module.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import math
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, AsyncContextManager, Protocol
from zoneinfo import ZoneInfo

import aiohttp
import orjson

from daemon.cache import Cache
from daemon.captcha import CaptchaSolver, CaptchaUnsolved
from daemon.clock import Clock
from daemon import metrics
from daemon.config import AccountSettings, BrokerEndpoints, Config, OrderSettings
from daemon.errors import AuthError, BrokerError, BrokerUnavailable, CaptchaError, OrderRejected, RateLimited
from daemon.logs import get_logger, register_secret, token_slot
from daemon.order_answer import Verdict, interpret
from daemon.ratelimit import HostRateLimiter
from daemon.retry import RetryPolicy
from daemon.sizing import Limits, buy_volume, order_fee, resolve_price, sell_volume, split_amounts
from daemon.tokens import token_valid_until
from daemon.wire import tls_context

LOGIN_WRONG_CAPTCHA = -1000
LOGIN_WRONG_CREDENTIALS = 3000
SIDE_CODES = {"buy": 1, "sell": 2}
BROKER_ZONE = ZoneInfo("Asia/Tehran")  # where a broker's times without an offset are wall-clock times
ORDERS_PAGE_SIZE = 50
ORDERS_MAX_PAGES = 100  # 5,000 orders in one account's day: past that the broker is answering nonsense


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
class Instrument:
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
class OrderParams:
    """An order ready to send: decided price and volume, and what they were computed from."""

    isin: str
    side: str
    price: int
    volume: int
    amount: int
    fee: int

    def to_cache(self) -> dict[str, Any]:
        return {"isin": self.isin, "side": self.side, "price": self.price, "volume": self.volume,
                "amount": self.amount, "fee": self.fee}

    @classmethod
    def from_cache(cls, data: dict[str, Any]) -> OrderParams:
        return cls(data["isin"], data["side"], int(data["price"]), int(data["volume"]), int(data["amount"]), int(data["fee"]))


@dataclass(frozen=True, slots=True)
class OrderAccepted:
    body: dict[str, Any]
    serial_number: int | None
    tracking_number: str | None


class EphoenixClient:
    """One account at one broker. Tokens come from the cache while valid; a 401 logs in again once."""

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
        self.endpoints = endpoints
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

    @property
    def username(self) -> str:
        return self.account.username

    @property
    def broker(self) -> str:
        return self.endpoints.code

    # ---- tokens -------------------------------------------------------------------------------------

    async def cached_token(self) -> dict[str, Any] | None:
        entry = await self._cache.get_token(self.username, self.broker)
        if entry and entry.get("token"):
            register_secret(entry["token"], slot=token_slot(self.username, self.broker))
            metrics.token_expiry(self.account.name, entry["expires_at"])
            return entry
        return None

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
                body = await self._retry.call("login", self._login_round, self.log)
            except CaptchaUnsolved as exc:
                self.log.info("captcha.unsolved", attempt=attempt, reason=str(exc))
                continue
            code = _int_or_none(body.get("errorCode"))
            if code == LOGIN_WRONG_CREDENTIALS:
                raise AuthError(f"account {self.account.name}: the broker refused the username or password; fix them in the config.")
            if code == LOGIN_WRONG_CAPTCHA:
                self.log.info("captcha.wrong", attempt=attempt)
                continue
            token = body.get("token")
            if code not in (0, None) or not isinstance(token, str) or not token or body.get("isSuccess") is False:
                message = body.get("errorMessage") or "no token in the answer"
                raise BrokerError(f"account {self.account.name}: login failed with code {code}: {message}")
            register_secret(token, slot=token_slot(self.username, self.broker))
            return await self._store_token(token, body.get("expireIn"))
        raise CaptchaError(f"account {self.account.name}: {attempts} captcha attempts failed.")

    async def _login_round(self) -> dict[str, Any]:
        captcha = await self._fetch_captcha()
        answer = await self._solver.solve(captcha["image"])
        return await self._post_login(captcha, answer)

    async def _store_token(self, token: str, expire_in: Any) -> dict[str, Any]:
        now = self._clock.now()
        valid_until = token_valid_until(
            token,
            now,
            ttl_s=self._config.cache.ttl.tokens,
            expire_in_s=_float_or_none(expire_in),
            margin_s=self._config.client.token_margin_s,
        )
        if valid_until <= now:
            raise BrokerError(f"account {self.account.name}: the broker's token expires within the safety margin.")
        await self._cache.save_token(self.username, self.broker, token, valid_until, obtained_at=now.isoformat())
        metrics.token_expiry(self.account.name, valid_until)
        self.log.info("login.ok", valid_until=valid_until.isoformat())
        return {"token": token, "username": self.username, "broker_code": self.broker, "expires_at": valid_until.isoformat()}

    async def _fetch_captcha(self) -> dict[str, Any]:
        await self._limiter.acquire(self._identity_host)
        body = await self._identity_call("GET", "/api/Captcha/GetCaptcha")
        data = body.get("captchaByteData")
        if not data:
            self._throttled(None, "the captcha answer had no image")
        try:
            image = base64.b64decode(data, validate=False)
        except (ValueError, TypeError):
            raise BrokerUnavailable(f"broker {self.broker}: the captcha image is not base64.") from None
        return {"image": image, "salt": body.get("salt"), "hash": body.get("hashedCaptcha")}

    async def _post_login(self, captcha: dict[str, Any], answer: str) -> dict[str, Any]:
        payload = {
            "loginName": self.username,
            "password": self.account.resolve_password(),
            "captcha": {"hash": captcha["hash"], "salt": captcha["salt"], "value": answer},
        }
        return await self._identity_call("POST", "/api/v2/accounts/login", json=payload)

    async def _identity_call(self, method: str, path: str, json: Any = None) -> dict[str, Any]:
        url = self.endpoints.identity_url + path
        try:
            async with self._http.session.request(method, url, json=json) as response:
                if response.status == 429:
                    self._throttled(response.headers.get("Retry-After"), "HTTP 429")
                return await _json_body(response, f"broker {self.broker}", path)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise BrokerUnavailable(f"broker {self.broker}: {path} failed ({_describe(exc)}).") from None

    def _throttled(self, retry_after: str | None, why: str) -> None:
        seconds = _float_or_none(retry_after) or self._config.captcha.cooldown_s
        self._limiter.cool_down(self._identity_host, seconds)
        self.log.warning("broker.throttled", why=why, cooldown_s=seconds)
        raise RateLimited(f"broker {self.broker} throttles logins ({why}); waiting {seconds:.0f} s.", seconds)

    # ---- authenticated calls ------------------------------------------------------------------------

    async def _authed(self, method: str, base: str, path: str, json: Any = None, retry: bool = True) -> Any:
        """A trading/backoffice call with the bearer token; a 401 drops the token and logs in again once.

        With `retry` an unavailable broker is retried by the policy (reads and pure calculations); an
        order is sent once, because a lost answer may hide an accepted order.
        """
        for fresh_login in (False, True):
            token = await self.token()

            async def send(token: str = token) -> tuple[bool, Any]:
                return await self._send_authed(method, base + path, path, json, token)

            refused, body = await (self._retry.call(path, send, self.log) if retry else send())
            if not refused:
                return body
            await self._cache.drop_token(self.username, self.broker)
            if fresh_login:
                raise AuthError(f"account {self.account.name}: the broker refuses even a fresh token.")
            self.log.info("token.refused", path=path)
        raise AssertionError("unreachable")

    async def _send_authed(self, method: str, url: str, path: str, json: Any, token: str) -> tuple[bool, Any]:
        """(True, None) when the token is refused (401), else (False, the answer's JSON)."""
        try:
            async with self._http.session.request(
                method, url, json=json, headers={"authorization": f"Bearer {token}"}
            ) as response:
                if response.status == 401:
                    return True, None
                return False, await _json_body(response, f"broker {self.broker}", path, allow_error_status=True)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            raise BrokerUnavailable(f"broker {self.broker}: {path} failed ({_describe(exc)}).") from None

    async def ensure_token_live(self) -> None:
        """Prove the token still works with one cheap authenticated call, before it is needed at the open.

        GetLastTradingBook is that call: a token revoked or expired since warmup gets 401, which logs in
        again (the `_authed` path), and the answer refreshes the cached buying power on the way. A login
        that then fails raises (AuthError for a wrong password).
        """
        await self.get_buying_power(use_cache=False)

    async def get_buying_power(self, use_cache: bool = True) -> dict[str, Any]:
        if use_cache and (cached := await self._cache.get_buying_power(self.username, self.broker)):
            if _finite(cached.get("buyingPower")) is not None:
                return cached
            self.log.warning("cache.buying_power.unusable")
        body = await self._authed("GET", self.endpoints.trading_url, "/api/v2/tradingbook/GetLastTradingBook")
        if not isinstance(body, dict) or _finite(body.get("buyingPower")) is None:
            raise BrokerUnavailable(f"broker {self.broker}: the trading book has no usable buyingPower.")
        data = {k: body.get(k) for k in ("buyingPower", "remain", "credit", "timestamp")}
        await self._cache.save_buying_power(self.username, self.broker, data)
        return data

    async def order_amounts(self, use_cache: bool = True) -> list[int]:
        """Each order's part of the buying power, in the account's order list; no read when nothing is a buy."""
        orders = self.account.orders
        if not any(o.side == "buy" for o in orders):
            return [0] * len(orders)
        power = await self.get_buying_power(use_cache=use_cache)
        return split_amounts(float(power.get("buyingPower") or 0), [o.share for o in orders])

    async def get_instrument(self, isin: str, use_cache: bool = True) -> Instrument:
        if use_cache and (cached := await self._cache.get_market_data(isin)):
            try:
                return Instrument.from_cache(cached)
            except _UNUSABLE:
                self.log.warning("cache.market.unusable", isin=isin)
        url = self.endpoints.market_data_url + "/api/v2/instruments/full"

        async def fetch() -> Any:
            try:
                async with self._http.session.post(url, json={"isinList": [isin]}) as response:
                    return await _json_body(response, "market data", "/api/v2/instruments/full")
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                raise BrokerUnavailable(f"market data: instruments/full failed ({_describe(exc)}).") from None

        body = await self._retry.call("/api/v2/instruments/full", fetch, self.log)
        instrument = parse_instrument(body, isin)
        await self._cache.save_market_data(isin, instrument.to_cache())
        return instrument

    async def get_holdings(self, isin: str, use_cache: bool = True) -> int:
        """Shares of `isin` this account can sell (a sell's volume comes from here, never buying power)."""
        if use_cache and (cached := await self._cache.get_holdings(self.username, self.broker, isin)):
            try:
                return max(int(cached["remain_volume"]), 0)
            except _UNUSABLE:
                self.log.warning("cache.holdings.unusable", isin=isin)
        body = await self._authed(
            "POST", self.endpoints.backoffice_url, "/api/portfolio/getrealsecuritypositionbydate", json={"entity": True}
        )
        volume = parse_holdings(body, isin, self.broker)
        await self._cache.save_holdings(self.username, self.broker, isin, {"isin": isin, "remain_volume": volume})
        return volume

    async def order_params(self, order: OrderSettings, amount: int | None = None, use_cache: bool = True) -> OrderParams:
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
        fees = self._config.fees
        if order.side == "sell":
            held = await self.get_holdings(order.isin, use_cache=use_cache)
            volume = order.volume if order.volume != "auto" else sell_volume(held, instrument.limits)
            amount = held
            fee_rate = fees.sell
        else:
            if amount is None:
                amount = int(float((await self.get_buying_power(use_cache=use_cache))["buyingPower"] or 0))
            volume = order.volume if order.volume != "auto" else buy_volume(amount, price, fees.buy, instrument.limits)
            fee_rate = fees.buy
        params = OrderParams(order.isin, order.side, price, int(volume), int(amount), order_fee(int(volume), price, fee_rate))
        await self._cache.save_order_params(self.username, self.broker, order.isin, params.to_cache())
        return params

    async def calculate_order_param(self, isin: str, side: str, price: int, amount: int) -> dict[str, Any]:
        """The broker's own volume formula, to cross-check the local one at warmup."""
        payload = {"isin": isin, "side": SIDE_CODES[side], "totalNetAmount": amount, "price": price}
        body = await self._authed("POST", self.endpoints.trading_url, "/api/v2/orders/CalculateOrderParam", json=payload)
        _raise_for_error_code(body)
        return body

    async def new_order(self, isin: str, side: str, price: int, volume: int) -> OrderAccepted:
        payload = {"isin": isin, "side": SIDE_CODES[side], "validity": 1, "validityDate": None, "accountType": 1,
                   "price": price, "volume": volume, "serialNumber": 0}
        body = await self._authed("POST", self.endpoints.trading_url, "/api/v2/orders/NewOrder", json=payload, retry=False)
        answer = interpret(200, body)  # an error status with a JSON error code reaches here as that code
        if answer.verdict is not Verdict.ACCEPTED:
            raise OrderRejected(answer.code if answer.code is not None else -1, answer.message)
        return OrderAccepted(body if isinstance(body, dict) else {"result": body}, answer.serial_number,
                             answer.tracking_number)

    async def open_orders(self) -> list[dict[str, Any]]:
        """The account's open orders, normalised as `normalise_order` says. An answer that is not a list of
        orders raises BrokerUnavailable: an unreadable answer must never pass for "no orders"."""
        path = "/api/v2/orders/GetOpenOrders?type=1"
        body = await self._authed("GET", self.endpoints.trading_url, path)
        _raise_for_error_code(body)
        return [normalise_order(row) for row in _list_of_orders(body, self.broker, path)]

    async def today_orders(self, day: date) -> list[dict[str, Any]]:
        """Every order of this account on `day` (the broker's Tehran day) in any state, open, filled or
        cancelled, from GetOrders: filled orders are no longer "open", so only this tells what exists.

        Every page is read (through the retry policy; a 401 logs in once and asks for the same page again)
        until `totalRecords` rows are in, or a page comes back short or empty when the total is missing.
        Rows are normalised as `normalise_order` says; a row seen on two pages (a new order shifts the
        newest-first pages while they are read) is kept once. A garbage answer raises BrokerUnavailable.
        """
        path = "/api/v2/orders/GetOrders"
        stamp = f"{day:%Y/%m/%d}"
        found: dict[tuple[Any, ...], dict[str, Any]] = {}
        for page in range(1, ORDERS_MAX_PAGES + 1):
            payload = {"page": page, "pageSize": ORDERS_PAGE_SIZE, "fromDate": stamp, "toDate": stamp, "side": None,
                       "isin": None, "includeStatus": [], "pamCode": None}
            body = await self._authed("POST", self.endpoints.trading_url, path, json=payload)
            _raise_for_error_code(body)
            rows, total = _orders_page(body, self.broker, path)
            before = len(found)
            for n, row in enumerate(rows):
                order = normalise_order(row)
                found.setdefault(_order_key(order, page, n), order)
            if rows and len(found) == before:
                raise BrokerUnavailable(f"broker {self.broker}: {path} answered page {page} with the rows already read.")
            if not rows or (total is not None and len(found) >= total) or (total is None and len(rows) < ORDERS_PAGE_SIZE):
                if total is not None and len(found) < total:
                    self.log.warning("orders.fewer_than_total", day=stamp, rows=len(found), total=total)
                return list(found.values())
        raise BrokerUnavailable(f"broker {self.broker}: {path} still had rows after {ORDERS_MAX_PAGES} pages.")


# ---- answer parsing (pure, so each broker quirk is tested without a network) -----------------------------

_UNUSABLE = (KeyError, TypeError, ValueError, OverflowError, AttributeError)
"""What converting a cached or answered value can raise when the value is not what it should be."""


async def _json_body(response: aiohttp.ClientResponse, who: str, path: str, allow_error_status: bool = False) -> Any:
    raw = await response.read()
    if response.status >= 500:
        raise BrokerUnavailable(f"{who}: {path} answered HTTP {response.status}.")
    try:
        body = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        kind = "an HTML page" if raw.lstrip()[:1] == b"<" else "malformed JSON"
        raise BrokerUnavailable(f"{who}: {path} answered HTTP {response.status} with {kind}.") from None
    if response.status >= 400 and not (allow_error_status and isinstance(body, dict) and "errorCode" in body):
        raise BrokerUnavailable(f"{who}: {path} answered HTTP {response.status}.")
    return body


def _raise_for_error_code(body: Any) -> None:
    """Any answer with a non-zero error code (or isSuccess false) is a rejection; key on the code, not the text."""
    if not isinstance(body, dict):
        return
    code = _int_or_none(body.get("errorCode"))
    if (code not in (None, 0)) or body.get("isSuccess") is False:
        raise OrderRejected(code if code is not None else -1, str(body.get("errorMessage") or body.get("message") or ""))


def parse_instrument(body: Any, isin: str) -> Instrument:
    items = body if isinstance(body, list) else (body.get("result") or body.get("data") or body.get("instruments") or [body]) if isinstance(body, dict) else []
    for item in items if isinstance(items, list) else [items]:
        if not isinstance(item, dict):
            continue
        info, today = item.get("i") or {}, item.get("t") or {}
        if (item.get("isin") or info.get("isin") or isin) != isin:
            continue
        try:
            limits = Limits(int(info["mineq"]), int(info["maxeq"]), int(today["minap"]), int(today["maxap"]))
        except (KeyError, TypeError, ValueError):
            continue
        last = _int_or_none(today.get("cup"))
        return Instrument(isin, str(info.get("s", "")), str(info.get("t", "")), limits, last)
    raise BrokerUnavailable(f"market data: no usable limits for {isin} in the answer.")


def parse_holdings(body: Any, isin: str, broker: str) -> int:
    if isinstance(body, dict) and body.get("isError"):
        raise BrokerError(f"broker {broker}: holdings refused: {body.get('message') or body.get('errorMessage') or 'no reason given'}")
    rows = body
    if isinstance(body, dict):
        rows = body.get("result") or body.get("data") or body.get("positions") or []
    for row in rows if isinstance(rows, list) else []:
        if isinstance(row, dict) and (row.get("isin") or row.get("ISIN")) == isin:
            try:
                return max(int(float(row.get("remainVolume") or 0)), 0)
            except (TypeError, ValueError):
                raise BrokerUnavailable(f"broker {broker}: holdings for {isin} have no number.") from None
    return 0


def _list_of_orders(body: Any, broker: str, path: str) -> list[dict[str, Any]]:
    """The rows of an open-orders answer: a list, or one under result/data/orders/rows; anything else raises."""
    rows = body if isinstance(body, list) else None
    if isinstance(body, dict):
        rows = next((body[key] for key in ("result", "data", "orders", "rows") if isinstance(body.get(key), list)), None)
    if rows is None or not all(isinstance(row, dict) for row in rows):
        raise BrokerUnavailable(f"broker {broker}: {path} answered something that is not a list of orders.")
    return rows


def _orders_page(body: Any, broker: str, path: str) -> tuple[list[dict[str, Any]], int | None]:
    """A GetOrders page: its rows and `totalRecords` (None when missing or not a count); garbage raises."""
    if isinstance(body, dict) and "rows" not in body and isinstance(body.get("result"), dict):
        body = body["result"]
    rows = body.get("rows") if isinstance(body, dict) else None
    if not isinstance(rows, list) or not all(isinstance(row, dict) for row in rows):
        raise BrokerUnavailable(f"broker {broker}: {path} answered something that is not a page of orders.")
    total = _whole_or_none(body.get("totalRecords"))
    return rows, total if total is not None and total >= 0 else None


def normalise_order(row: dict[str, Any]) -> dict[str, Any]:
    """An order row from GetOpenOrders or GetOrders with the keys the executor reads, typed alike for both.

    The row's own fields stay; these are replaced or added: `isin` (str or None), `side` (1 buy, 2 sell or
    None; GetOrders calls it `orderSide`), `serialNumber`, `price`, `volume`, `executedVolume`, `state` (int
    or None), `trackingNumber` (str or None), `createdAt` (the broker's own text: `created` in GetOrders) and
    `created`: an aware datetime, or None when the broker's time cannot be read (see `broker_time`).
    """
    created = next((row[key] for key in ("created", "createdAt") if row.get(key) is not None), None)
    side = next((row[key] for key in ("orderSide", "side") if row.get(key) is not None), None)
    return {
        **row,
        "isin": row.get("isin") if isinstance(row.get("isin"), str) else None,
        "side": _side_code(side),
        "serialNumber": _whole_or_none(row.get("serialNumber")),
        "trackingNumber": _id_text(row.get("trackingNumber")),
        "price": _whole_or_none(row.get("price")),
        "volume": _whole_or_none(row.get("volume")),
        "executedVolume": _whole_or_none(row.get("executedVolume")),
        "state": _whole_or_none(row.get("state")),
        "createdAt": created,
        "created": broker_time(created),
    }


def broker_time(value: Any) -> datetime | None:
    """A broker's ISO time as an aware datetime: with its offset (or Z) as given, without one as Tehran wall
    time (the brokers' own zone); None for anything without a time of day or not ISO text."""
    if not isinstance(value, str) or ":" not in value:
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return moment.replace(tzinfo=BROKER_ZONE) if moment.tzinfo is None else moment


def _order_key(order: dict[str, Any], page: int, n: int) -> tuple[Any, ...]:
    """What tells two rows apart: the broker's row id, else the serial number, else the row's place."""
    row_id = _id_text(order.get("id"))
    if row_id is not None:
        return ("id", row_id)
    if order["serialNumber"] is not None:
        return ("serial", order["serialNumber"])
    return ("place", page, n)


def _id_text(value: Any) -> str | None:
    """An id the broker may send as text or as a number, as text; None when empty or of another type."""
    if isinstance(value, str):
        return value.strip() or None
    number = _whole_or_none(value)
    return str(number) if number is not None else None


def _side_code(value: Any) -> int | None:
    code = _whole_or_none(value)
    return code if code in (1, 2) else None


def _whole_or_none(value: Any) -> int | None:
    """A whole number (or its text) as int; None for a bool, a fraction or anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    return _int_or_none(value) if isinstance(value, (int, str)) else None


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value is not None and value != "" else None
    except (TypeError, ValueError):
        return None


def _finite(value: Any) -> float | None:
    """`value` as a finite number (numeric text too), or None: a bool, NaN and infinity are not amounts."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        number = float(value)
    except (OverflowError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _float_or_none(value: Any) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect: {exc.os_error.strerror or exc.os_error}" if exc.os_error else "cannot connect"
    return type(exc).__name__
