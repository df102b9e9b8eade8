"""easytrader's slow path for one account (aiohttp): the OAuth2 code + PKCE login on the identity server with its
BotDetect captcha, the mandatory same-login, buying power, holdings, today's orders, the broker's clock from
server-time, drafts made before the open, and the request budget every call is charged to.

Each account session has its own cookie jar (a real aiohttp CookieJar, `unsafe` so an IP host keeps its cookies)
on the shared pool's connections, environment proxies never used, automatic redirects off: every Location is read
by hand and resolved against the URL that gave it (the identity server's are relative). Tokens, retries and the
captcha's solving stay the client's (the `Authority`).
"""

from __future__ import annotations

import uuid
from datetime import date
from decimal import ROUND_FLOOR, Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urljoin

import aiohttp
import orjson
from yarl import URL

from daemon.errors import BrokerError, BrokerUnavailable, OrderRejected, RateLimited
from daemon.logs import get_logger
from daemon.net import OffsetEstimate
from daemon.platforms._account_http import AccountHttp, HasSession, json_or_none, raise_for_busy
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
    TokenRefused,
    finite,
)
from daemon.platforms.easytrader import _endpoints as paths
from daemon.platforms.easytrader._codec import (
    USER_AGENT,
    api_headers,
    classify,
    draft_body,
    order_body,
    referer,
)
from daemon.platforms.easytrader._oauth import Pkce, authorize_url, code_from, token_form
from daemon.platforms.easytrader._parse import (
    FALLBACK_FEE,
    TEHRAN,
    EasytraderToken,
    TokenUnreadable,
    broker_order,
    login_failure,
    order_rows,
    orders_of_day,
    parse_holding,
    parse_money,
    parse_server_time,
    read_login_page,
    rejected,
    server_offset_ms,
    token_answer,
)
from daemon.platforms.rlc import RlcClient

if TYPE_CHECKING:
    from daemon.clock import Clock
    from daemon.config import BrokerEndpoints
    from daemon.platforms import Authority

FORM = "application/x-www-form-urlencoded"
TOKEN_LIFETIME_S = 43_200.0  # expires_in when the answer has none [confirmed live]
CLOCK_SAMPLES = 3
FAILURE_MESSAGES = {
    "wrong_captcha": "the captcha was wrong; a new one",
    "captcha_required": "the login now asks for a captcha; loading the page again",
    "ambiguous": "the login page named no known error; loading it again",
}


class EasytraderSession(AccountHttp, SessionDefaults):
    def __init__(self, endpoints: BrokerEndpoints, http: HasSession, authority: Authority) -> None:
        self.endpoints = endpoints
        self.broker = endpoints.code
        self.api_url = (getattr(endpoints, "url", None) or endpoints.trading_url).rstrip("/")
        self.identity_url = endpoints.identity_url.rstrip("/")
        self.spa_url = (getattr(endpoints, "spa_url", None) or paths.DEFAULT_SPA_URL).rstrip("/")
        self.redirect_uri = self.spa_url + paths.CALLBACK_PATH
        self._open_http(http, USER_AGENT)
        self._auth = authority
        self._clock: Clock = authority.clock
        self.rlc = RlcClient(http, getattr(endpoints, "rlc_url", None))
        cap = getattr(endpoints, "requests_per_hour", None) or paths.DEFAULT_REQUESTS_PER_HOUR
        self.requests = RequestBudget(self._clock, cap)
        # "any stable client id" for same-login: the same for this account in every process
        self.device_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"opening-bell:{self.broker}:{authority_name(authority)}"))
        self.log = getattr(authority, "log", None) or get_logger(broker=endpoints.code)

    # ---- the identity server -----------------------------------------------------------------------------

    async def _identity(
        self, method: str, url: str, form: str | None = None, accept: str = "text/html,*/*"
    ) -> tuple[int, bytes, str | None]:
        """One identity-server call on the jar, redirects not followed: (status, body, Location)."""
        self.requests.charge("login")
        headers = {"Accept": accept}
        if form is not None:
            headers["Content-Type"] = FORM
        if url.startswith(self.identity_url + paths.TOKEN_PATH):
            headers["Referer"] = referer(self.spa_url)
        try:
            async with self.client.request(
                method, URL(url, encoded=True), data=form, headers=headers, allow_redirects=False
            ) as response:
                raw = await response.read()
                raise_for_busy(response, self.broker, "the identity server")
                return response.status, raw, response.headers.get("Location")
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise BrokerUnavailable(
                f"broker {self.broker}: the identity server failed ({type(exc).__name__})."
            ) from None

    async def fetch_captcha(self) -> Captcha:
        """Steps 0-2: a new PKCE pair, the authorize (its relative 302), the login page after at most two more
        hops, its antiforgery token, and the BotDetect image when the page shows one (fetched on the same jar).
        The image is empty when the page asks for no captcha, or when the jar's login is still alive and the
        authorize answered the code at once; `login` then needs no answer."""
        pkce = Pkce.new()
        status, body, location = await self._identity(
            "GET", authorize_url(self.identity_url, self.redirect_uri, pkce.challenge)
        )
        if location is None or rejected(_text(body)):
            raise BrokerUnavailable(f"broker {self.broker}: the authorize answered HTTP {status} without a redirect.")
        url = urljoin(self.identity_url + "/", location)
        code = code_from(url, self.redirect_uri)
        if code is not None:
            return Captcha(b"", {"pkce": pkce, "code": code})
        for _ in range(paths.LOGIN_HOPS):
            status, body, location = await self._identity("GET", url)
            if status in (301, 302, 303, 307, 308) and location:
                url = urljoin(url, location)
                continue
            break
        html = _text(body)
        if status != 200 or rejected(html):
            raise BrokerUnavailable(f"broker {self.broker}: the login page answered HTTP {status}.")
        page = read_login_page(html)
        if page.token is None:
            raise BrokerUnavailable(f"broker {self.broker}: the login page has no antiforgery token.")
        state: dict[str, Any] = {
            "pkce": pkce,
            "login_url": url,
            "antiforgery": page.token,
            "captcha": page.captcha_shown,
        }
        if not page.captcha_shown:
            return Captcha(b"", state)
        if page.captcha_image is None:
            raise BrokerUnavailable(f"broker {self.broker}: the login page's captcha has no image.")
        status, image, _ = await self._identity(
            "GET", urljoin(self.identity_url + "/", page.captcha_image), accept="image/*"
        )
        if status != 200 or not image:
            raise BrokerUnavailable(f"broker {self.broker}: the captcha image answered HTTP {status} without an image.")
        return Captcha(image, {**state, "captcha_fields": dict(page.captcha_fields)})

    async def login(self, username: str, password: str, captcha: Captcha, answer: str) -> LoginAnswer:
        """Steps 3-6: the credentials as the form expects them (with the captcha and its four hidden fields when
        the page showed one), the authorize continued to the code, the code exchanged with the verifier for the
        12 h token, then same-login, without which every read is 403. Wrong credentials are final; a wrong or
        newly required captcha, or a page naming no known error, loads the page again (a new round). The answer
        may hold letters: no digit check."""
        state = captcha.state
        pkce: Pkce = state["pkce"]
        code = state.get("code")
        if code is None:
            code_or_answer = await self._post_credentials(username, password, state, answer)
            if isinstance(code_or_answer, LoginAnswer):
                return code_or_answer
            code = code_or_answer
        status, body, _ = await self._identity(
            "POST",
            self.identity_url + paths.TOKEN_PATH,
            token_form(code, self.redirect_uri, pkce.verifier),
            "application/json",
        )
        found = token_answer(json_or_none(body))
        if isinstance(found, str):
            # invalid_grant and the like: the whole login again from step 0 (a new verifier, a new code)
            raise BrokerUnavailable(f"broker {self.broker}: the token exchange answered HTTP {status} ({found}).")
        access_token, expires_in = found
        token = EasytraderToken(access_token)
        await self._same_login(token)
        self.log.info("easytrader.login", **self.requests.summary())
        return LoginAnswer("ok", token=token.pack(), expire_in_s=expires_in or TOKEN_LIFETIME_S, code=0)

    async def _post_credentials(self, username: str, password: str, state: Any, answer: str) -> str | LoginAnswer:
        form: dict[str, str] = {
            "Username": username,
            "Password": password,
            "__RequestVerificationToken": state["antiforgery"],
            "button": "login",
            "RememberLogin": "false",
        }
        if state.get("captcha"):
            form["Captcha"] = answer.strip()
            form.update(state.get("captcha_fields", {}))
        login_url = state["login_url"]
        status, body, location = await self._identity("POST", login_url, _form(form))
        if status == 200:
            html = _text(body)
            meaning = login_failure(read_login_page(html), html)
            if meaning == "wrong_credentials":
                return LoginAnswer("wrong_credentials", message="the identity server refused the username or password")
            return LoginAnswer("wrong_captcha", message=FAILURE_MESSAGES[meaning])
        back = urljoin(login_url, location) if location else None
        if status not in (302, 303) or back is None or not back.startswith(self.identity_url + "/connect/authorize"):
            raise BrokerUnavailable(f"broker {self.broker}: the credential post answered HTTP {status}.")
        status, body, location = await self._identity("GET", back)
        code = code_from(urljoin(back, location), self.redirect_uri) if location else None
        if code is None or rejected(_text(body)):
            raise BrokerUnavailable(
                f"broker {self.broker}: the authorize after the login gave no code (HTTP {status})."
            )
        return code

    async def _same_login(self, token: EasytraderToken) -> None:
        """The device registration that makes the token usable [confirmed live]; 200 with an empty body."""
        body = {
            "uuid": self.device_id,
            "appBuildNo": paths.APP_BUILD_NO,
            "width": paths.SCREEN[0],
            "height": paths.SCREEN[1],
            "devicePlatform": "Desktop",
            "platformInfo": USER_AGENT,
        }
        status, _ = await self._api("POST", paths.SAME_LOGIN_PATH, token, orjson.dumps(body), kind="same-login")
        if status == 401:
            raise TokenRefused(paths.SAME_LOGIN_PATH)
        if status != 200:
            raise BrokerUnavailable(f"broker {self.broker}: same-login answered HTTP {status}.")

    # ---- the trading API -----------------------------------------------------------------------------------

    async def _api(
        self, method: str, path: str, token: EasytraderToken, body: bytes | None = None, kind: str = "read"
    ) -> tuple[int, bytes]:
        """One trading API call with the Bearer, the Referer and the browser UA; 429 is the hourly cap."""
        self.requests.charge(kind)
        headers = api_headers(token.access_token, self.spa_url)
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            async with self.client.request(
                method, URL(self.api_url + path, encoded=True), data=body, headers=headers, allow_redirects=False
            ) as response:
                raw = await response.read()
                if response.status == 429:
                    wait = finite(response.headers.get("Retry-After")) or 60.0
                    raise RateLimited(f"broker {self.broker}: the account's hourly request cap is reached.", wait)
                return response.status, raw
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise BrokerUnavailable(f"broker {self.broker}: {path} failed ({type(exc).__name__}).") from None

    async def _call(
        self, method: str, path: str, token: str, body: bytes | None = None, kind: str = "read"
    ) -> tuple[int, bytes]:
        """A call whose 403 (same-login missing: a token of another process, or evicted) is answered by one
        same-login and the call again; 401, or 403 after that, refuses the token (the client logs in again)."""
        session = _unpack(token)
        status, raw = await self._api(method, path, session, body, kind)
        if status == 403:
            await self._same_login(session)
            status, raw = await self._api(method, path, session, body, kind)
        if status in (401, 403):
            raise TokenRefused(path)
        return status, raw

    async def _read(self, path: str, what: str | None = None) -> Any:
        async def send(token: str) -> Any:
            status, raw = await self._call("GET", path, token)
            if status != 200:
                raise BrokerUnavailable(f"broker {self.broker}: {what or path} answered HTTP {status}.")
            body = json_or_none(raw)
            if body is None:
                raise BrokerUnavailable(f"broker {self.broker}: {what or path} answered with something not JSON.")
            return body

        return await self._auth.authed(what or path, send)

    async def buying_power(self) -> BuyingPower:
        """money/'s buyPower (rial)."""
        return parse_money(await self._read(paths.MONEY_PATH), self.broker)

    async def probe(self) -> BuyingPower | None:
        """money/: proves the token and its same-login (a refused one logs in again), the buying power fresh."""
        return await self.buying_power()

    async def fees(self, isin: str) -> FeeRates:
        """Mofid has no fee endpoint: the doc's fallback 0.005 both ways [from code only]."""
        return FeeRates(FALLBACK_FEE, FALLBACK_FEE, "fallback")

    async def instrument(self, isin: str) -> Instrument:
        """The day's band and mxqo from RLC (Mofid has no price endpoint of its own [confirmed live])."""
        return await self._auth.retried("rlc getstockprice2", lambda: self.rlc.instrument(isin))

    async def holdings(self, isin: str) -> Holding:
        return parse_holding(await self._read(paths.PORTFOLIO_PATH), isin, self.broker)

    async def today_orders(self, day: date) -> list[BrokerOrder]:
        """The account's orders of `day` (Tehran) in any state: the list is recent orders with no date filter, so
        rows are kept by their createDateTime (an unreadable one kept too); fills have executedQuantity > 0."""
        rows = order_rows(await self._read(paths.ORDERS_PATH), self.broker)
        return orders_of_day([broker_order(row) for row in rows], day)

    async def open_orders(self) -> list[BrokerOrder]:
        """Today's orders (the clock's Tehran day) still open: not in a closed state, something left."""
        today = self._clock.now().astimezone(TEHRAN).date()
        return [o for o in await self.today_orders(today) if o.row["open"]]

    async def calculate_order(self, isin: str, side: str, price: int, amount: int) -> dict[str, Any]:
        """The doc's sizing from fresh reads: a buy is floor(amount / (price x 1.005)), a sell the holdings; both
        capped at RLC's mxqo (Mofid has no calculation endpoint)."""
        instrument = await self.instrument(isin)
        if side == "buy":
            rate = Decimal(str(FALLBACK_FEE))
            raw = (Decimal(amount) / (Decimal(price) * (1 + rate))).to_integral_value(ROUND_FLOOR) if price > 0 else 0
            volume = max(int(raw), 0)
        else:
            volume = (await self.holdings(isin)).volume
        volume = min(volume, instrument.limits.maxeq)
        return {"volume": volume, "fee": FALLBACK_FEE, "fee_source": "fallback", "maxeq": instrument.limits.maxeq}

    async def broker_clock(self) -> OffsetEstimate | None:
        """broker time = local time + offset, from server-time/{local ms} (CLOCK_SAMPLES calls, the shortest round
        trip kept): serverTimestamp against the round trip's midpoint, with diff's sign checked against it (open
        question 1); diff alone, taken as server minus local, when serverTimestamp is unusable. None when no
        answer was usable (the executor then measures from its probe)."""
        best: tuple[float, float, str] | None = None  # (rtt ms, offset ms, reading)
        for _ in range(CLOCK_SAMPLES):
            before_ns, after_ns, body = await self._auth.authed("server-time", self._server_time)
            before_ms, after_ms = before_ns / 1e6, after_ns / 1e6
            found = server_offset_ms(parse_server_time(body), int(before_ms), before_ms, after_ms)
            if found is not None and (best is None or after_ms - before_ms < best[0]):
                best = (after_ms - before_ms, found[0], found[1])
        if best is None:
            self.log.warning("easytrader.clock_unreadable", consequence="the executor measures from its probe")
            return None
        rtt_ms, offset_ms, reading = best
        if reading == "local_minus_server":
            self.log.warning("easytrader.diff_sign", reading=reading, note="server-time's diff is local minus server")
        self.log.info("easytrader.clock", offset_ms=round(offset_ms, 2), rtt_ms=round(rtt_ms, 2), reading=reading)
        # serverTimestamp is whole ms: half the round trip plus that ms is how far off the reading can be
        return OffsetEstimate(offset_ms / 1000, (rtt_ms / 2 + 1.0) / 1000, CLOCK_SAMPLES, "server-time")

    async def _server_time(self, token: str) -> tuple[int, int, Any]:
        before = self._clock.time_ns()
        status, raw = await self._call("GET", paths.SERVER_TIME_PATH.format(local_ms=before // 1_000_000), token)
        after = self._clock.time_ns()
        if status != 200:
            raise BrokerUnavailable(f"broker {self.broker}: server-time answered HTTP {status}.")
        return before, after, json_or_none(raw)

    # ---- orders ------------------------------------------------------------------------------------------

    async def prepare_order(self, isin: str, side: str, price: int, volume: int) -> str:
        """The draft of the order at the arm (price and quantity integers); its ULID, which the codec's batch
        sends at the open. A draft places nothing by itself, so a lost answer is simply another draft: retried."""
        if price <= 0 or volume <= 0:
            raise ValueError(f"a draft needs a positive price and volume (got {price} x {volume})")
        body = orjson.dumps(draft_body(isin, side, price, volume))

        async def send(token: str) -> str:
            status, raw = await self._call("POST", paths.DRAFT_PATH, token, body, kind="draft")
            answer = json_or_none(raw)
            draft_id = answer.get("id") if isinstance(answer, dict) else None
            if status == 200 and isinstance(draft_id, str) and draft_id:
                return draft_id
            if status >= 500 or status == 200:
                raise BrokerUnavailable(f"broker {self.broker}: the draft answered HTTP {status} without an id.")
            found = classify(status, raw)
            raise OrderRejected(found.code if found.code is not None else status, found.message or f"HTTP {status}")

        draft_id = await self._auth.authed(paths.DRAFT_PATH, send)
        self.log.info("easytrader.draft", isin=isin, side=side, price=price, volume=volume, draft=draft_id)
        return draft_id

    async def discard_prepared(self, prepared: str) -> bool:
        """Delete a draft the final check replaced. The doc names no such call (the simulator's DELETE is an
        assumption), so this is best effort: a draft left behind is harmless, because only the draft the journal
        holds is ever batched. True when the broker confirmed the delete."""

        async def send(token: str) -> int:
            status, _ = await self._call("DELETE", paths.DRAFT_DELETE_PATH.format(id=prepared), token, kind="draft")
            return status

        try:
            status = await self._auth.authed("draft delete", send, retry=False)
        except BrokerError as exc:
            self.log.info("easytrader.draft_kept", draft=prepared, reason=str(exc))
            return False
        deleted = status in (200, 204)
        if not deleted:
            self.log.info("easytrader.draft_kept", draft=prepared, status=status)
        return deleted

    async def new_order(self, isin: str, side: str, price: int, volume: int) -> OrderAnswer:
        """One immediate v2/order, sent once (a lost answer may hide an accepted order). A 401 (or a 403 that
        same-login does not cure) placed nothing: refused, so one new login and the order again."""
        body = orjson.dumps(order_body(isin, side, price, volume))

        async def send(token: str) -> OrderAnswer:
            status, raw = await self._call("POST", paths.ORDER_PATH, token, body, kind="order")
            return classify(status, raw)

        return await self._auth.authed(paths.ORDER_PATH, send, retry=False)


def authority_name(authority: Any) -> str:
    """The account the session serves (the client's username), for the stable device id."""
    name = getattr(authority, "username", "")
    return name if isinstance(name, str) else ""


def _unpack(token: str) -> EasytraderToken:
    try:
        return EasytraderToken.unpack(token)
    except TokenUnreadable:
        raise TokenRefused("the cached token is not an easytrader login") from None


def _form(fields: dict[str, str]) -> str:
    return urlencode(fields)


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")
