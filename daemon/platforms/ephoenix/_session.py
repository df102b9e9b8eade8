"""Ephoenix's slow path for one account (aiohttp): captcha and login, buying power, instruments, holdings,
open and today's orders, CalculateOrderParam, and the cheap authenticated probe.

Tokens, retries and the captcha's solving belong to the client, which lends itself as the `Authority`.
"""

from __future__ import annotations

import asyncio
import base64
from datetime import date
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson

from daemon.errors import BrokerUnavailable
from daemon.logs import get_logger
from daemon.platforms._account_http import HasSession
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
    TokenRefused,
)
from daemon.platforms.ephoenix import _endpoints as paths
from daemon.platforms.ephoenix._codec import SIDE_CODES, bearer, interpret, new_order_body
from daemon.platforms.ephoenix._parse import (
    broker_order,
    error_code,
    float_or_none,
    list_of_orders,
    order_key,
    orders_page,
    parse_buying_power,
    parse_holding,
    parse_instrument,
    raise_for_error_code,
)

if TYPE_CHECKING:
    from daemon.config import BrokerEndpoints
    from daemon.platforms import Authority

LOGIN_WRONG_CAPTCHA = -1000
LOGIN_WRONG_CREDENTIALS = 3000
ORDERS_PAGE_SIZE = 50
ORDERS_MAX_PAGES = 100  # 5,000 orders in one account's day: past that the broker is answering nonsense


class EphoenixSession(SessionDefaults):
    def __init__(self, endpoints: BrokerEndpoints, http: HasSession, authority: Authority) -> None:
        self.endpoints = endpoints
        self.broker = endpoints.code
        self._http = http
        self._auth = authority
        self.log = getattr(authority, "log", None) or get_logger(broker=endpoints.code)

    # ---- identity (no token) -------------------------------------------------------------------------

    async def fetch_captcha(self) -> Captcha:
        body = await self._identity_call("GET", paths.CAPTCHA_PATH)
        data = body.get("captchaByteData") if isinstance(body, dict) else None
        if not data:
            raise Throttled(None, "the captcha answer had no image")
        try:
            image = base64.b64decode(data, validate=False)
        except (ValueError, TypeError):
            raise BrokerUnavailable(f"broker {self.broker}: the captcha image is not base64.") from None
        return Captcha(image, {"salt": body.get("salt"), "hash": body.get("hashedCaptcha")})

    async def login(self, username: str, password: str, captcha: Captcha, answer: str) -> LoginAnswer:
        payload = {
            "loginName": username,
            "password": password,
            "captcha": {"hash": captcha.state.get("hash"), "salt": captcha.state.get("salt"), "value": answer},
        }
        body = await self._identity_call("POST", paths.LOGIN_PATH, json=payload)
        if not isinstance(body, dict):
            body = {}
        code = error_code(body)
        if code == LOGIN_WRONG_CREDENTIALS:
            return LoginAnswer("wrong_credentials", code=code)
        if code == LOGIN_WRONG_CAPTCHA:
            return LoginAnswer("wrong_captcha", code=code)
        token = body.get("token")
        if code not in (0, None) or not isinstance(token, str) or not token or body.get("isSuccess") is False:
            return LoginAnswer("failed", code=code, message=str(body.get("errorMessage") or "no token in the answer"))
        return LoginAnswer("ok", token=token, expire_in_s=float_or_none(body.get("expireIn")), code=code)

    async def _identity_call(self, method: str, path: str, json: Any = None) -> Any:
        url = self.endpoints.identity_url + path
        try:
            async with self._http.session.request(method, url, json=json) as response:
                if response.status == 429:
                    raise Throttled(float_or_none(response.headers.get("Retry-After")), "HTTP 429")
                return await json_body(response, f"broker {self.broker}", path)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise BrokerUnavailable(f"broker {self.broker}: {path} failed ({describe(exc)}).") from None

    # ---- authenticated calls -------------------------------------------------------------------------

    async def _authed(self, method: str, base: str, path: str, json: Any = None, retry: bool = True) -> Any:
        """One call with the client's token; with `retry` an unavailable broker is retried by its policy (reads
        and pure calculations); an order is sent once, because a lost answer may hide an accepted order."""

        async def send(token: str) -> Any:
            return await self._send_authed(method, base + path, path, json, token)

        return await self._auth.authed(path, send, retry=retry)

    async def _send_authed(self, method: str, url: str, path: str, json: Any, token: str) -> Any:
        try:
            async with self._http.session.request(method, url, json=json, headers=bearer(token)) as response:
                if response.status == 401:
                    raise TokenRefused(path)
                return await json_body(response, f"broker {self.broker}", path, allow_error_status=True)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise BrokerUnavailable(f"broker {self.broker}: {path} failed ({describe(exc)}).") from None

    async def buying_power(self) -> BuyingPower:
        body = await self._authed("GET", self.endpoints.trading_url, paths.BOOK_PATH)
        return parse_buying_power(body, self.broker)

    async def probe(self) -> BuyingPower | None:
        """GetLastTradingBook: a token revoked or expired since warmup gets 401 (a new login follows), and the
        answer is a fresh buying power on the way."""
        return await self.buying_power()

    async def instrument(self, isin: str) -> Instrument:
        url = self.endpoints.market_data_url + paths.INSTRUMENTS_PATH

        async def fetch() -> Any:
            try:
                async with self._http.session.post(url, json={"isinList": [isin]}) as response:
                    return await json_body(response, "market data", paths.INSTRUMENTS_PATH)
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                raise BrokerUnavailable(f"market data: instruments/full failed ({describe(exc)}).") from None

        return parse_instrument(await self._auth.retried(paths.INSTRUMENTS_PATH, fetch), isin)

    async def fees(self, isin: str) -> FeeRates | None:
        """Ephoenix tells no fee rate of its own: the config's `fees` apply (CalculateOrderParam checks them)."""
        return None

    async def holdings(self, isin: str) -> Holding:
        body = await self._authed("POST", self.endpoints.backoffice_url, paths.HOLDINGS_PATH, json={"entity": True})
        return parse_holding(body, isin, self.broker)

    async def calculate_order(self, isin: str, side: str, price: int, amount: int) -> dict[str, Any]:
        """The broker's own volume formula (CalculateOrderParam); a rejection raises OrderRejected."""
        payload = {"isin": isin, "side": SIDE_CODES[side], "totalNetAmount": amount, "price": price}
        body = await self._authed("POST", self.endpoints.trading_url, paths.CALCULATE_PATH, json=payload)
        raise_for_error_code(body)
        return body

    async def new_order(self, isin: str, side: str, price: int, volume: int) -> OrderAnswer:
        body = await self._authed(
            "POST",
            self.endpoints.trading_url,
            paths.NEW_ORDER_PATH,
            json=new_order_body(isin, side, price, volume),
            retry=False,
        )
        return interpret(200, body)  # an error status with a JSON error code reaches here as that code

    async def open_orders(self) -> list[BrokerOrder]:
        """The account's open orders. An answer that is not a list of orders raises BrokerUnavailable: an
        unreadable answer must never pass for "no orders"."""
        path = paths.OPEN_ORDERS_PATH
        body = await self._authed("GET", self.endpoints.trading_url, path)
        raise_for_error_code(body)
        return [broker_order(row) for row in list_of_orders(body, self.broker, path)]

    async def today_orders(self, day: date) -> list[BrokerOrder]:
        """Every order of this account on `day` (the broker's Tehran day) in any state, from GetOrders.

        Every page is read (each through the retry policy; a 401 logs in once and asks for the same page
        again) until `totalRecords` rows are in, or a page comes back short or empty when the total is
        missing. A row seen on two pages (a new order shifts the newest-first pages while they are read) is
        kept once. A garbage answer raises BrokerUnavailable.
        """
        path = paths.ORDERS_PATH
        stamp = f"{day:%Y/%m/%d}"
        found: dict[tuple[Any, ...], BrokerOrder] = {}
        for page in range(1, ORDERS_MAX_PAGES + 1):
            payload = {
                "page": page,
                "pageSize": ORDERS_PAGE_SIZE,
                "fromDate": stamp,
                "toDate": stamp,
                "side": None,
                "isin": None,
                "includeStatus": [],
                "pamCode": None,
            }
            body = await self._authed("POST", self.endpoints.trading_url, path, json=payload)
            raise_for_error_code(body)
            rows, total = orders_page(body, self.broker, path)
            before = len(found)
            for n, row in enumerate(rows):
                order = broker_order(row)
                found.setdefault(order_key(order, page, n), order)
            if rows and len(found) == before:
                raise BrokerUnavailable(
                    f"broker {self.broker}: {path} answered page {page} with the rows already read."
                )
            if (
                not rows
                or (total is not None and len(found) >= total)
                or (total is None and len(rows) < ORDERS_PAGE_SIZE)
            ):
                if total is not None and len(found) < total:
                    self.log.warning("orders.fewer_than_total", day=stamp, rows=len(found), total=total)
                return list(found.values())
        raise BrokerUnavailable(f"broker {self.broker}: {path} still had rows after {ORDERS_MAX_PAGES} pages.")


async def json_body(response: aiohttp.ClientResponse, who: str, path: str, allow_error_status: bool = False) -> Any:
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


def describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect: {exc.os_error.strerror or exc.os_error}" if exc.os_error else "cannot connect"
    return type(exc).__name__
