"""Exir's slow path for one account (aiohttp): the cookie bootstrap, the JPEG captcha and login, buying power,
fees, instruments (from RLC), holdings, today's and open orders, and the cheap authenticated probe.

Each account session has its own cookie jar (a real aiohttp CookieJar: two cookies of one name on different
paths are kept apart) on the shared pool's connections, environment proxies never used. Every authenticated
call is signed with X-App-N over its exact target relative to the tenant root, for the current UTC second of
the injected clock, moved by the tenant's own clock when its Date headers show it a second or more away. Tokens, retries and the captcha's solving stay the client's (the `Authority`).
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
from daemon.platforms._cookies import Cookies, host_morsels, put_cookie, triples
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
    TokenRefused,
    finite,
)
from daemon.platforms.exir import _endpoints as paths
from daemon.platforms.exir._codec import SIGNATURE_HEADER, USER_AGENT, interpret, order_body
from daemon.platforms.exir._parse import (
    TEHRAN,
    ExirToken,
    TokenUnreadable,
    accepts_answer,
    broker_code,
    broker_order,
    error_code,
    jalali,
    login_lifetime_s,
    order_rows,
    parse_buying_power,
    parse_fees,
    parse_holding,
    unique_orders,
)
from daemon.platforms.exir._server_clock import ServerClock
from daemon.platforms.exir._signature import SeedError, Signer
from daemon.platforms.rlc import RlcClient

if TYPE_CHECKING:
    from daemon.clock import Clock
    from daemon.config import BrokerEndpoints
    from daemon.platforms import Authority

LOGIN_WRONG_CAPTCHA = 9002  # HTTP 401 [confirmed live]
LOGIN_WRONG_CREDENTIALS = 40037  # HTTP 403 [confirmed live]: never retried
LOGIN_ID = "client_login_id"
ORDERS_SIZE = 5000  # no pagination: `size` caps the rows (the mgmt client asks 5000 and warns at the cap)


class ExirSession(AccountHttp, SessionDefaults):
    def __init__(self, endpoints: BrokerEndpoints, http: HasSession, authority: Authority) -> None:
        self.endpoints = endpoints
        self.broker = endpoints.code
        self.base_url = (getattr(endpoints, "url", None) or endpoints.identity_url).rstrip("/")
        self._base = URL(self.base_url + "/")
        self._open_http(http, USER_AGENT)
        self._auth = authority
        self._clock: Clock = authority.clock
        self.rlc = RlcClient(http, getattr(endpoints, "rlc_url", None))
        self._jar_token: str | None = None  # the token whose cookies the jar holds
        self._signers: dict[str, Signer] = {}
        self.server_clock = ServerClock()  # the tenant's clock from its Date headers, for signing reads
        self.log = getattr(authority, "log", None) or get_logger(broker=endpoints.code)

    def accepts(self, answer: str) -> bool:
        """Whether a captcha answer may be posted (five digits, no leading zero); `login` refetches otherwise."""
        return accepts_answer(answer)

    # ---- identity (no signature) ----------------------------------------------------------------------

    async def fetch_captcha(self) -> Captcha:
        """A fresh jar, the bootstrap (`cookiesession1`), then the JPEG; its `client_login_id` header is copied
        into the jar as a cookie, as both known clients do [from code only: whether Set-Cookie alone suffices
        was not tested]."""
        self.jar.clear()
        self._jar_token = None
        await self._plain("GET", paths.BOOTSTRAP_PATH, accept="*/*")
        status, raw, headers = await self._plain("GET", paths.CAPTCHA_PATH, accept="*/*")
        if status != 200 or not raw:
            raise BrokerUnavailable(f"broker {self.broker}: the captcha answered HTTP {status} without an image.")
        login_id = headers.get(LOGIN_ID) or self._jar_value(LOGIN_ID)
        if not login_id:
            raise BrokerUnavailable(f"broker {self.broker}: the captcha came without its client_login_id.")
        if self._jar_value(LOGIN_ID) != login_id:
            self._set_cookie(LOGIN_ID, login_id, "/")
        return Captcha(raw, {LOGIN_ID: login_id})

    async def login(self, username: str, password: str, captcha: Captcha, answer: str) -> LoginAnswer:
        """The login with the captcha as a JSON number [confirmed live]. An answer that is not five digits or
        starts with 0 is not posted (the number would lose the zero): it counts as a wrong captcha, so the
        client fetches another. 9002 is a wrong captcha, 40037 wrong credentials; anything else without a
        session is unclear, so BrokerUnavailable: the client's retry policy starts over with a new captcha."""
        if not accepts_answer(answer):
            return LoginAnswer("wrong_captcha", message="the answer is not five digits without a leading 0; not posted")
        login_id = captcha.state.get(LOGIN_ID)
        if isinstance(login_id, str) and login_id and self._jar_value(LOGIN_ID) != login_id:
            self._set_cookie(LOGIN_ID, login_id, "/")
        payload = {"username": username, "password": password, "captcha": int(answer), "otp": ""}
        status, raw, _ = await self._plain("POST", paths.LOGIN_PATH, body=orjson.dumps(payload))
        body = json_or_none(raw)
        code = error_code(body)
        if code == LOGIN_WRONG_CAPTCHA:
            return LoginAnswer("wrong_captcha", code=code)
        if code == LOGIN_WRONG_CREDENTIALS:
            return LoginAnswer("wrong_credentials", code=code)
        if status != 200 or not isinstance(body, dict) or not body.get("nt"):
            raise BrokerUnavailable(
                f"broker {self.broker}: the login answered HTTP {status} without a session"
                f"{f' (code {code})' if code is not None else ''}."
            )
        broker = broker_code(body, username)
        if broker is None:
            return LoginAnswer("failed", message="the login answer names no broker id (rlcAuthHeader's b claim)")
        try:
            self._signer(body["nt"])
        except SeedError as exc:
            return LoginAnswer("failed", message=str(exc))
        token = ExirToken(self._tenant_cookies(), body["nt"], broker, finite(body.get("sendOrderDelay")))
        return LoginAnswer("ok", token=token.pack(), expire_in_s=login_lifetime_s(body, self._clock.now()), code=0)

    async def _plain(
        self, method: str, path: str, body: bytes | None = None, accept: str = "application/json"
    ) -> tuple[int, bytes, Any]:
        headers = {"Accept": accept}
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            sent = self._clock.time_ns()
            async with self.client.request(method, self.base_url + path, data=body, headers=headers) as response:
                self.server_clock.note(response.headers.get("Date"), sent, self._clock.time_ns())
                raw = await response.read()
                raise_for_busy(response, self.broker, path)
                return response.status, raw, response.headers
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise BrokerUnavailable(f"broker {self.broker}: {path} failed ({type(exc).__name__}).") from None

    # ---- the jar -------------------------------------------------------------------------------------

    def _set_cookie(self, name: str, value: str, path: str) -> None:
        put_cookie(self.jar, name, value, path, self._base)

    def _jar_value(self, name: str) -> str | None:
        return next((m.value for m in self._tenant_morsels() if m.key == name), None)

    def _tenant_morsels(self) -> list[Morsel[str]]:
        return host_morsels(self.jar, self._base.raw_host or "")

    def _tenant_cookies(self) -> Cookies:
        """Every cookie of the tenant host as (name, value, path): duplicate names on other paths kept."""
        return triples(self._tenant_morsels())

    def _load(self, token: str) -> ExirToken:
        """The session a token carries, its cookies put in the jar (once per token: a token from the cache in
        a new process works as the login's own). Not an Exir session: refused, so the client logs in again."""
        try:
            session = ExirToken.unpack(token)
        except TokenUnreadable:
            raise TokenRefused("the cached token is not an Exir session") from None
        if self._jar_token != token:
            self.jar.clear()
            for name, value, path in session.cookies:
                self._set_cookie(name, value, path)
            self._jar_token = token
        return session

    def _signer(self, nt: str) -> Signer:
        signer = self._signers.get(nt)
        if signer is None:
            signer = self._signers[nt] = Signer(nt)
        return signer

    # ---- authenticated calls ---------------------------------------------------------------------------

    async def _signed(self, method: str, target: str, body: bytes | None, token: str) -> tuple[int, Any]:
        """One signed call: X-App-N over `target` (path and query relative to the tenant root, sent exactly as
        signed: never re-encoded) for this UTC second, the session's cookies from the jar."""
        session = self._load(token)
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        url = URL(self.base_url + target, encoded=True)
        try:
            sent = self._clock.time_ns()
            headers[SIGNATURE_HEADER] = self._signer(session.nt).sign(target, self.server_clock.second(sent))
            async with self.client.request(method, url, data=body, headers=headers) as response:
                self.server_clock.note(response.headers.get("Date"), sent, self._clock.time_ns())
                return response.status, json_or_none(await response.read())
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise BrokerUnavailable(f"broker {self.broker}: {_path(target)} failed ({type(exc).__name__}).") from None

    async def _read(self, target: str) -> Any:
        """A signed GET under the client's token and retry policy. Any 4xx on a read means the server dropped
        the session (exir-api.md, Error codes [from code only]): refused, so one new login and one more try."""

        async def send(token: str) -> Any:
            status, body = await self._signed("GET", target, None, token)
            if status >= 500:
                raise BrokerUnavailable(f"broker {self.broker}: {_path(target)} answered HTTP {status}.")
            if status >= 400:
                raise TokenRefused(_path(target))
            if body is None:
                raise BrokerUnavailable(f"broker {self.broker}: {_path(target)} answered with something not JSON.")
            return body

        return await self._auth.authed(_path(target), send)

    async def buying_power(self) -> BuyingPower:
        """stockInfo's purchaseUpperBound (never /api/v2/user/buyingPower: 406/4047 there [confirmed live])."""
        return parse_buying_power(await self._read(paths.STOCK_INFO_PATH), self.broker)

    async def probe(self) -> BuyingPower | None:
        """stockInfo: a dropped session is refused (a new login follows), and the buying power comes fresh."""
        return await self.buying_power()

    async def fees(self, isin: str) -> FeeRates:
        """The broker's fee rates for `isin` from its wages; a missing or non-positive rate is 0.005."""
        fees = parse_fees(await self._read(paths.WAGES_PATH.format(isin=isin)), isin)
        if fees.source == "fallback":
            self.log.warning("fees.fallback", isin=isin, buy=fees.buy, sell=fees.sell)
        return fees

    async def instrument(self, isin: str) -> Instrument:
        """The day's band and mxqo from RLC (Exir has no price endpoint of its own [confirmed live])."""
        return await self._auth.retried("rlc getstockprice2", lambda: self.rlc.instrument(isin))

    async def holdings(self, isin: str) -> Holding:
        return parse_holding(await self._read(paths.HOLDINGS_PATH), isin, self.broker)

    async def today_orders(self, day: date) -> list[BrokerOrder]:
        """Every order of `day` (the Tehran day, in Jalali) in any state: no status filter, which cannot be
        trusted [confirmed live]; fills are the rows with tradedQuantity > 0."""
        stamp = jalali(day)
        target = paths.ORDERBOOK_PATH.format(size=ORDERS_SIZE, start=stamp, end=stamp)
        rows = order_rows(await self._read(target), self.broker)
        if len(rows) >= ORDERS_SIZE:
            self.log.warning("orders.at_cap", day=stamp, rows=len(rows))
        return unique_orders(broker_order(row) for row in rows)

    async def open_orders(self) -> list[BrokerOrder]:
        """Today's orders (the clock's Tehran day) with something left and not ended: remainingQuantity > 0, or
        unreadable (then it may be open). Exir has no open-orders list of its own that is known."""
        today = self._clock.now().astimezone(TEHRAN).date()
        orders = await self.today_orders(today)
        return [o for o in orders if not o.cancelled and (o.row.get("remaining") is None or o.row["remaining"] > 0)]

    async def calculate_order(self, isin: str, side: str, price: int, amount: int) -> dict[str, Any]:
        """Exir's own sizing [confirmed live, exir-api.md Price and volume], from fresh reads: a buy is
        floor(amount / (price x (1 + wages SIDE_BUY))), a sell the holdings; both capped at RLC's mxqo. It
        checks the local formula against the broker's rate and caps (Exir has no CalculateOrderParam)."""
        instrument = await self.instrument(isin)
        fees = await self.fees(isin)
        if side == "buy":
            rate = Decimal(str(fees.buy))
            raw = (Decimal(amount) / (Decimal(price) * (1 + rate))).to_integral_value(ROUND_FLOOR) if price > 0 else 0
            volume = max(int(raw), 0)
        else:
            rate = Decimal(str(fees.sell))
            volume = (await self.holdings(isin)).volume
        volume = min(volume, instrument.limits.maxeq)
        return {"volume": volume, "fee": float(rate), "fee_source": fees.source, "maxeq": instrument.limits.maxeq}

    async def new_order(self, isin: str, side: str, price: int, volume: int) -> OrderAnswer:
        """One signed order POST, sent once (a lost answer may hide an accepted order). A 401/403 without a
        business code is a dropped session: refused, so one new login and the order again (it was not taken)."""

        async def send(token: str) -> OrderAnswer:
            session = self._load(token)
            body = orjson.dumps(order_body(session.broker_code, isin, side, price, volume))
            status, answer = await self._signed("POST", paths.ORDER_PATH, body, token)
            if status in (401, 403) and error_code(answer) is None:
                raise TokenRefused(paths.ORDER_PATH)
            return interpret(status, answer)

        return await self._auth.authed(paths.ORDER_PATH, send, retry=False)


def _path(target: str) -> str:
    return target.split("?", 1)[0]
