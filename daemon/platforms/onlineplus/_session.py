"""Online+'s slow path for one account (aiohttp): the login page (the API base and F5's first cookie), the 4-digit
PNG captcha and login, buying power, fees (a per-broker setting), instruments (from RLC), holdings, today's and
open orders, and the cheap authenticated probe.

Each account session has its own cookie jar (a real aiohttp CookieJar: F5's two cookies of one name on `/` and
`/Web` are kept apart, and Set-Cookie answers keep flowing into it) on the shared pool's connections, environment
proxies never used, and on every call one full browser User-Agent with the web host's Origin and Referer. The jar
is the only credential: the login's Data.Token is never sent (a Bearer header is refused). Tokens, retries and the
captcha's solving stay the client's (the `Authority`).
"""

from __future__ import annotations

from datetime import date
from decimal import ROUND_FLOOR, Decimal
from http.cookies import Morsel
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson
from yarl import URL

from daemon.errors import BrokerUnavailable
from daemon.logs import get_logger
from daemon.platforms._account_http import AccountHttp, HasSession, json_or_none, raise_for_busy
from daemon.platforms._cookies import host_morsels, put_cookie, triples
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
    finite,
)
from daemon.platforms.onlineplus import _endpoints as paths
from daemon.platforms.onlineplus._codec import USER_AGENT, common_headers, interpret, order_body
from daemon.platforms.onlineplus._parse import (
    FALLBACK_FEE,
    RATE_LIMIT,
    TEHRAN,
    WRONG_CAPTCHA,
    WRONG_CREDENTIALS,
    OnlinePlusToken,
    TokenUnreadable,
    accepts_answer,
    api_base_from_page,
    blocked_reason,
    broker_order,
    login_lifetime_s,
    message_code,
    orders_page,
    parse_buying_power,
    parse_captcha,
    parse_holding,
    raw_code,
    read_failure,
    succeeded,
    tenant_of,
    unique_orders,
)
from daemon.platforms.rlc import RlcClient

if TYPE_CHECKING:
    from daemon.clock import Clock
    from daemon.config import BrokerEndpoints
    from daemon.platforms import Authority

AUTH_COOKIE = "AuthCookie_OnlineCookie"  # set by the login on the API host [confirmed live]
CAPTCHA_KEY = "CaptchaKey"
CAPTCHA_DIGITS = 4  # [confirmed live]; Exir and Ephoenix show 5
EXECUTED_STATE = "1"  # GetOrderList's OrderState for executed orders [confirmed live]
ALL_ORDERS_STATE = "0"
"""The OrderState assumed to list every order of the range (open question 4: only "1" is known). Today's orders are
read with both and merged, so an order that has not traded is found too if the tenant knows this value."""
ORDERS_PAGE_SIZE = 100
ORDERS_MAX_PAGES = 50  # 5,000 orders in one account's day: past that the broker is answering nonsense


class OnlinePlusSession(AccountHttp):
    def __init__(self, endpoints: BrokerEndpoints, http: HasSession, authority: Authority) -> None:
        self.endpoints = endpoints
        self.broker = endpoints.code
        self.tenant = tenant_of(
            endpoints.code,
            getattr(endpoints, "url", None),
            getattr(endpoints, "domain", None),
            getattr(endpoints, "api_url", None),
        )
        fee = getattr(endpoints, "fee", None)
        self.fee: float = FALLBACK_FEE if fee is None else float(fee)
        self.discovered_api: str | None = None
        """The API base the login page named (or a cached token carried): kept for the next login's fallback."""
        self._open_http(http, USER_AGENT)
        self._auth = authority
        self._clock: Clock = authority.clock
        self.rlc = RlcClient(http, getattr(endpoints, "rlc_url", None))
        self._jar_token: str | None = None  # the token whose cookies the jar holds
        self.log = getattr(authority, "log", None) or get_logger(broker=endpoints.code)

    @property
    def api(self) -> str:
        """The API base calls go to now: the configured one, else the discovered one, else the derived one."""
        return self.tenant.api(self.discovered_api)

    def accepts(self, answer: str) -> bool:
        """Whether a captcha answer may be posted (four digits); `login` refetches otherwise."""
        return accepts_answer(answer)

    # ---- identity ------------------------------------------------------------------------------------

    async def discover(self) -> str:
        """GET the web login page in this jar (F5's first cookie, which the captcha may need) and read the API base
        it names; a page that cannot be read, or names none, leaves the last one known (or the derived one)."""
        url = self.tenant.web + paths.LOGIN_PAGE_PATH
        try:
            status, raw, _ = await self._plain("GET", url, accept="text/html,application/xhtml+xml")
        except BrokerUnavailable as exc:
            self.log.warning("onlineplus.login_page_failed", reason=str(exc), api=self.api)
            return self.api
        found = api_base_from_page(raw.decode("utf-8", "replace")) if status == 200 else None
        if found is None:
            self.log.warning("onlineplus.api_base_unnamed", status=status, api=self.api)
        else:
            self.discovered_api = found
        return self.api

    async def fetch_captcha(self) -> Captcha:
        """A fresh jar, the login page, then the captcha: a PNG of four digits and its CaptchaKey, which goes back
        in the login body (no cookie or header carries it [confirmed live])."""
        self.jar.clear()
        self._jar_token = None
        api = await self.discover()
        status, raw, _ = await self._plain("GET", api + paths.CAPTCHA_PATH)
        if status == 401:
            raise BrokerUnavailable(f"broker {self.broker}: the front door refused the captcha (HTTP 401).")
        body = json_or_none(raw)
        if message_code(body) == RATE_LIMIT:
            raise Throttled(None, "OMS_2080 on the captcha")
        captcha = parse_captcha(body)
        if captcha is None:
            raise Throttled(None, "the captcha answer had no image")
        image, key = captcha
        return Captcha(image, {CAPTCHA_KEY: key, "api": api}, digits=CAPTCHA_DIGITS)

    async def login(self, username: str, password: str, captcha: Captcha, answer: str) -> LoginAnswer:
        """The V2 login, the captcha as a string with its key; HTTP 200 in every case, so the body decides.
        InvalidCaptcha is a wrong captcha, oms_1000 wrong credentials (never retried), OMS_2080 a throttled host
        (waited out like an Ephoenix 429). An account with SMS/OTP on or a password to change is `blocked`: one
        sentence, never retried. Any other answer without a session is unclear: BrokerUnavailable, so the
        client's retry policy starts over with a new captcha."""
        if not accepts_answer(answer):
            return LoginAnswer("wrong_captcha", message="the answer is not four digits; not posted")
        api = captcha.state.get("api") if isinstance(captcha.state.get("api"), str) else self.api
        key = captcha.state.get(CAPTCHA_KEY)
        payload = {"UserName": username, "Password": password, "Captcha": answer, CAPTCHA_KEY: key}
        status, raw, _ = await self._plain("POST", api + paths.LOGIN_PATH, body=orjson.dumps(payload))
        if status == 401:
            raise BrokerUnavailable(f"broker {self.broker}: the front door refused the login (HTTP 401).")
        body = json_or_none(raw)
        code = message_code(body)
        if not succeeded(body):
            if code == WRONG_CAPTCHA:
                return LoginAnswer("wrong_captcha", code=raw_code(body))
            if code == WRONG_CREDENTIALS:
                return LoginAnswer("wrong_credentials", code=raw_code(body))
            if code == RATE_LIMIT:
                raise Throttled(None, "OMS_2080 on the login")
            raise BrokerUnavailable(
                f"broker {self.broker}: the login answered HTTP {status} without a session"
                f"{f' (code {raw_code(body)})' if code else ''}."
            )
        data = body.get("Data") if isinstance(body, dict) else None
        if not isinstance(data, dict) or not isinstance(data.get("Token"), str) or not data["Token"]:
            raise BrokerUnavailable(f"broker {self.broker}: the login succeeded without a Data.Token.")
        reason = blocked_reason(data)
        if reason is not None:
            return LoginAnswer("blocked", message=reason)
        morsels = self._api_morsels(api)
        if not any(m.key == AUTH_COOKIE for m in morsels):
            return LoginAnswer("failed", message=f"the login set no {AUTH_COOKIE} cookie, the session's credential")
        max_age = next((finite(m["max-age"]) for m in morsels if m.key == AUTH_COOKIE and m["max-age"]), None)
        token = OnlinePlusToken(api, triples(morsels)).pack()
        self._jar_token = token
        return LoginAnswer("ok", token=token, expire_in_s=login_lifetime_s(data, max_age, self._clock.now()), code=0)

    async def _plain(
        self, method: str, url: str, body: bytes | None = None, accept: str = "application/json"
    ) -> tuple[int, bytes, Any]:
        headers = {**common_headers(self.tenant), "Accept": accept}
        if body is not None:
            headers["Content-Type"] = "application/json"
        what = URL(url).path
        try:
            async with self.client.request(method, URL(url, encoded=True), data=body, headers=headers) as response:
                raw = await response.read()
                raise_for_busy(response, self.broker, what)
                return response.status, raw, response.headers
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise BrokerUnavailable(f"broker {self.broker}: {what} failed ({type(exc).__name__}).") from None

    # ---- the jar -------------------------------------------------------------------------------------

    def _api_morsels(self, api: str) -> list[Morsel[str]]:
        """The jar's cookies for the API host (its own and its domain's), every path: duplicate names kept."""
        return host_morsels(self.jar, URL(api).raw_host or "")

    def _load(self, token: str) -> OnlinePlusToken:
        """The session a token carries, its cookies put in the jar once per token (a token from the cache in a new
        process works as the login's own; later Set-Cookies then flow into the jar). Not an Online+ session:
        refused, so the client logs in again."""
        try:
            session = OnlinePlusToken.unpack(token)
        except TokenUnreadable:
            raise TokenRefused("the cached token is not an Online+ session") from None
        if self._jar_token != token:
            self.jar.clear()
            base = URL(self.tenant.api(session.api) + "/")
            for name, value, path in session.cookies:
                put_cookie(self.jar, name, value, path, base)
            self._jar_token = token
        if self.discovered_api is None:
            self.discovered_api = session.api
        return session

    # ---- authenticated calls ---------------------------------------------------------------------------

    async def _call(self, method: str, path: str, token: str, body: bytes | None = None) -> tuple[int, Any]:
        session = self._load(token)
        status, raw, _ = await self._plain(method, self.tenant.api(session.api) + path, body)
        return status, json_or_none(raw)

    async def _read(self, method: str, path: str, body: Any = None) -> Any:
        """A read under the client's token and retry policy. 401 (or another 4xx without a code) is a dead cookie
        session: refused, so one new login and one more try [from code only]. OMS_2080 is retried after a back-off;
        another code is an answer."""
        what = path.split("?", 1)[0]
        data = orjson.dumps(body) if body is not None else None

        async def send(token: str) -> Any:
            status, answer = await self._call(method, path, token, data)
            failure = read_failure(answer, what, self.broker)
            if failure is not None:
                raise failure
            if status >= 400:
                raise TokenRefused(what)
            if answer is None:
                raise BrokerUnavailable(f"broker {self.broker}: {what} answered with something not JSON.")
            return answer

        return await self._auth.authed(what, send)

    async def buying_power(self) -> BuyingPower:
        """Remain's PurchasingPower (AccountBalance when it is missing)."""
        return parse_buying_power(await self._read("GET", paths.REMAIN_PATH), self.broker)

    async def probe(self) -> BuyingPower | None:
        """Remain: a dead session is refused (a new login follows), and the buying power comes fresh."""
        return await self.buying_power()

    async def fees(self, isin: str) -> FeeRates:
        """The broker's `fee` setting (0.005 by default): Online+ has no fee endpoint [from code only]."""
        return FeeRates(self.fee, self.fee, "config")

    async def instrument(self, isin: str) -> Instrument:
        """The day's band and mxqo from RLC (Online+ has no price endpoint of its own [confirmed live])."""
        return await self._auth.retried("rlc getstockprice2", lambda: self.rlc.instrument(isin))

    async def holdings(self, isin: str) -> Holding:
        return parse_holding(await self._read("GET", paths.HOLDINGS_PATH), isin, self.broker)

    async def today_orders(self, day: date) -> list[BrokerOrder]:
        """Every order of `day` (Gregorian in the request, Jalali in the answer): the assumed all-orders state and
        the executed state ("1"), every page of each, merged on (OrderDate, OrderId). Fills are ExcutedAmount > 0."""
        orders: list[BrokerOrder] = []
        for state in (ALL_ORDERS_STATE, EXECUTED_STATE):
            orders.extend(broker_order(row) for row in await self._order_pages(day, state))
        return unique_orders(orders)

    async def _order_pages(self, day: date, state: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for index in range(ORDERS_MAX_PAGES):
            query = {
                "FromDate": day.isoformat(),
                "ToDate": day.isoformat(),
                "OrderState": state,
                "PageIndex": index,
                "PageSize": ORDERS_PAGE_SIZE,
            }
            page, total = orders_page(await self._read("POST", paths.ORDERS_PATH, query), self.broker)
            rows.extend(page)
            if not page or total is None or (index + 1) * ORDERS_PAGE_SIZE >= total:
                return rows
        self.log.warning("orders.at_cap", day=day.isoformat(), state=state, rows=len(rows))
        return rows

    async def open_orders(self) -> list[BrokerOrder]:
        """Today's orders (the clock's Tehran day) with something left to trade and not cancelled, or unreadable
        (then it may be open). Online+ has no open-orders list that is known.

        That the all-orders state lists unfilled orders at all is an assumption (onlineplus-api.md, open question
        4). Unless today's list shows one (a row with nothing executed), an order missing from it may just be
        unfilled, so this list cannot show an order absent: it is refused, and a lookup says unknown, never
        absent. No order is then sent again on the strength of a list that could not have shown it."""
        today = self._clock.now().astimezone(TEHRAN).date()
        listed = [broker_order(row) for row in await self._order_pages(today, ALL_ORDERS_STATE)]
        if not any(o.executed == 0 for o in listed):
            raise BrokerUnavailable(
                f"broker {self.broker}: its order list shows no unfilled order today, so it cannot show that an "
                "order is absent (OrderState 0 is assumed to list every order)."
            )
        orders = unique_orders([*listed, *(broker_order(r) for r in await self._order_pages(today, EXECUTED_STATE))])
        return [o for o in orders if not o.cancelled and (o.row.get("remaining") is None or o.row["remaining"] > 0)]

    async def calculate_order(self, isin: str, side: str, price: int, amount: int) -> dict[str, Any]:
        """The doc's sizing from fresh reads, for the warmup's cross-check (Online+ has no calculation endpoint):
        a buy is floor(amount / (price x (1 + fee))), a sell the holdings; both capped at RLC's mxqo."""
        instrument = await self.instrument(isin)
        rate = Decimal(str(self.fee))
        if side == "buy":
            raw = (Decimal(amount) / (Decimal(price) * (1 + rate))).to_integral_value(ROUND_FLOOR) if price > 0 else 0
            volume = max(int(raw), 0)
        else:
            volume = (await self.holdings(isin)).volume
        volume = min(volume, instrument.limits.maxeq)
        return {"volume": volume, "fee": float(rate), "fee_source": "config", "maxeq": instrument.limits.maxeq}

    async def new_order(self, isin: str, side: str, price: int, volume: int) -> OrderAnswer:
        """One order POST, sent once (a lost answer may hide an accepted order). A 401 is the front door or a dead
        session, before the order is taken: refused, so one new login and the order again."""
        body = orjson.dumps(order_body(isin, side, price, volume))

        async def send(token: str) -> OrderAnswer:
            status, answer = await self._call("POST", paths.ORDER_PATH, token, body)
            if status == 401:
                raise TokenRefused(paths.ORDER_PATH)
            return interpret(status, answer)

        return await self._auth.authed(paths.ORDER_PATH, send, retry=False)
