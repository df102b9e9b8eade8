"""Exir (Rayan HamAfza) on the simulator: its routes, cookies, codes and JSON over the shared market, a tenant per
broker code under `/{broker}/` (a real tenant is a host, `{tenant}.exirbroker.com`, serving these at its root).

    /{broker}/exir                                      bootstrap    sets cookiesession1
    /{broker}/captcha                                   captcha      JPEG of 5 digits, client_login_id header + cookie
    /{broker}/api/v2/login                              login        9002 / 40037, or nt, authToken, rlcAuthHeader ...
    /{broker}/api/v1/user/stockInfo                     stockinfo    purchaseUpperBound (a string)
    /{broker}/api/v2/user/buyingPower                   buyingpower  always HTTP 406 / 4047
    /{broker}/api/v2/wages/instrument/{isin}            wages        the fee fractions per side
    /{broker}/api/v1/user/portfoReport                  holdings     the sellable holdings
    /{broker}/api/v1/order                              new_order    the order POST
    /{broker}/api/v1/user/orderbookReport?size=&...     orders       the orders by Jalali date range
    /rlc//StockInformationHandler?{blob}&jsoncallback=  rlc_prices   (and the rest of RLC: daemon.sim.rlc)

Facts and tags are exir-api.md's. Every route after the login needs the session cookies (JWT-TOKEN and
cookiesession1) and an `X-App-N` signature over the request target relative to the tenant root, for the
simulator's UTC second. What the document leaves open is an `ExirSettings` knob (see `exir_state(sim).settings`),
and the market's refusals are named in the codes of `REFUSAL_CODES` (Ephoenix's numbers where Exir's are unknown).
"""

from __future__ import annotations

import hashlib
import hmac
import random
import re
import secrets
import uuid
import zlib
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any, Literal

import jdatetime
from aiohttp import web

from daemon.sim import rlc
from daemon.sim._auth import b64url, jwt_payload, signed_jwt
from daemon.sim._captcha_image import render_captcha
from daemon.sim._fills import Execution
from daemon.sim._http import ERROR_CODE, NO_IMAGE, USERNAME, add_route, json_response, read_json
from daemon.sim._http import state_of as _state
from daemon.sim._market import BUY, CANCELLED, SELL, Account, Order, OrderRequest, Refusal, created_at, fee_of
from daemon.sim._platform import register_platform
from daemon.sim._side import Sides, side_rng
from daemon.sim._state import SimState

NAME = "exir"
SIGNATURE_HEADER = "X-App-N"
SESSION_COOKIE = "JWT-TOKEN"
BOOTSTRAP_COOKIE = "cookiesession1"
CAPTCHA_COOKIE = "client_login_id"
BALANCER_COOKIE = "BIGipServerexir_pool"  # set twice, on two paths, as a load balancer does (exir-api.md quirks)
NT_DIGITS = 130  # "a string of about 130 decimal digits" [confirmed live]
KNOWN_BROKER_IDS = {"khobregan": 116}  # [confirmed live]; other codes get a stable made-up id (broker_id)
PUSH_SERVERS = ("push103.irbroker.com", "push3.rhabroker.ir", "push103.irbroker.com")  # names only, never served

# Codes: the first five are exir-api.md's; the rest are Ephoenix's numbers (seen in the same logs, unknown for
# Exir) or the simulator's own, so the mapping from the market's refusals is explicit here.
WRONG_CAPTCHA = 9002  # HTTP 401 [confirmed live]
WRONG_CREDENTIALS = 40037  # HTTP 403 [confirmed live]
NOT_ACCEPTABLE = 4047  # HTTP 406 on /api/v2/user/buyingPower [confirmed live]
TOO_SOON = 1005  # inside sendOrderDelay [confirmed live as a code; meaning ambiguous]
MARKET_CLOSED = 1017  # Ephoenix's number; Exir's unknown
INVALID_REQUEST = 1000  # simulator's own: a field missing, of the wrong type or value
INVALID_VOLUME = 1001  # Ephoenix's number
PRICE_OUT_OF_RANGE = 1003  # simulator's own (as on the Ephoenix simulator)
UNKNOWN_INSTRUMENT = 1004  # simulator's own
BELOW_MIN_VALUE = 1006  # Ephoenix's number
INSUFFICIENT_BALANCE = 1011  # Ephoenix's number
INSUFFICIENT_HOLDINGS = 1012  # simulator's own
NO_SESSION = 9001  # simulator's own: no, an unknown, an expired or a revoked session
BAD_SIGNATURE = 9003  # simulator's own: a wrong or stale X-App-N (exir-api.md open question 1)

REFUSAL_CODES: dict[Refusal, int] = {
    Refusal.UNKNOWN_INSTRUMENT: UNKNOWN_INSTRUMENT,
    Refusal.VOLUME: INVALID_VOLUME,
    Refusal.PRICE: PRICE_OUT_OF_RANGE,
    Refusal.BALANCE: INSUFFICIENT_BALANCE,
    Refusal.HOLDINGS: INSUFFICIENT_HOLDINGS,
    Refusal.MIN_VALUE: BELOW_MIN_VALUE,
}

# (Persian description with the trailing space real answers carry, English description)
MESSAGES: dict[int, tuple[str, str]] = {
    WRONG_CAPTCHA: ("کد امنيتی اشتباه است ", "captcha is not valid"),
    WRONG_CREDENTIALS: ("نام کاربری یا رمز عبور اشتباه است ", "username or password is wrong"),
    NOT_ACCEPTABLE: ("سرويس قابل قبول نیست ", "service not acceptable"),
    TOO_SOON: ("فاصله زمانی ثبت دو سفارش کمتر از حد مجاز ", "order sent too soon after the previous one"),
    MARKET_CLOSED: ("بازار در وضعیت سفارش گیری نمی‌باشد ", "market is not accepting orders"),
    INVALID_REQUEST: ("درخواست نامعتبر است ", "invalid request"),
    INVALID_VOLUME: ("حجم سفارش اشتباه ", "volume out of the allowed range"),
    PRICE_OUT_OF_RANGE: ("قیمت سفارش خارج از محدوده مجاز روزانه است ", "price out of the daily range"),
    UNKNOWN_INSTRUMENT: ("نماد مورد نظر یافت نشد ", "instrument not found"),
    BELOW_MIN_VALUE: ("ارزش سفارش کمتر از حداقل مجاز است ", "order value below the minimum"),
    INSUFFICIENT_BALANCE: ("مانده حساب کافی نیست ", "insufficient buying power"),
    INSUFFICIENT_HOLDINGS: ("دارایی کافی برای فروش وجود ندارد ", "insufficient holdings"),
    NO_SESSION: ("نشست کاربر معتبر نیست ", "session is not valid"),
    BAD_SIGNATURE: ("درخواست نامعتبر است ", "request signature is not valid"),
}

# orderbookReport's Persian names, with the Arabic yeh (U+064A) real rows carry [confirmed live].
SIDE_NAMES = {BUY: "\u062e\u0631\u064a\u062f", SELL: "\u0641\u0631\u0648\u0634"}  # خريد, فروش
STATUS_QUEUED = "\u062f\u0631 \u0635\u0641"  # در صف
STATUS_DONE = "\u0627\u0646\u062c\u0627\u0645 \u06a9\u0644\u064a"  # انجام کلي
STATUS_PARTIAL = "\u0627\u0646\u062c\u0627\u0645 \u062c\u0632\u0626\u064a"  # انجام جزئي (assumed)
STATUS_CANCELLED = "\u062d\u0630\u0641 \u0634\u062f\u0647"  # حذف شده (assumed)
VALIDITY_DAY_NAME = "\u0631\u0648\u0632"  # روز
# orderStatusId as the spike guessed (2 active, 3 filled, 4 cancelled); a row is 3 only on its trade day and
# settles to 4 afterwards, even when fully executed, which is why the status filter cannot be trusted.
STATUS_ACTIVE, STATUS_FILLED, STATUS_SETTLED = 2, 3, 4

ORDER_FIELDS = {
    "bankAccountId": -1,
    "disclosedQuantity": 0,
    "hasUnderCautionAgreement": True,
    "orderType": "ORDER_TYPE_LIMIT",
    "validityType": "VALIDITY_TYPE_DAY",
    "coreType": "c",
}
SIDES = {"SIDE_BUY": BUY, "SIDE_SALE": SELL}
_PRICE = re.compile(r"^[0-9]+(\.0+)?$")
_INTEGER_PRICE = re.compile(r"^[0-9]+$")
_QUANTITY = re.compile(r"^[0-9]+$")
_JALALI = re.compile(r"^([0-9]{4})/([0-9]{1,2})/([0-9]{1,2})$")


@dataclass
class ExirSettings:
    """Exir's unknowns (exir-api.md's open questions) as live knobs; the defaults are what the daemon assumes.

    - `signature_skew_s`: how many seconds either side of the simulator's UTC second an X-App-N may be for (q1).
    - `signature_status` / `signature_error_code`: the answer to a wrong or stale X-App-N (q1).
    - `session_status`: the answer (with NO_SESSION) to a missing, unknown, expired or revoked session.
    - `validity_min`: the session lifetime the login states and the simulator enforces (q5; 480 seen live).
    - `send_order_delay_ms`: the per-account spacing the login states and enforces with 1005 (q3, q4; 400 seen).
    - `captcha_ttl_s`: how long a captcha may be answered (its cookie's Max-Age=120 [confirmed live]).
    - `leading_zero`: "refused" (the number 1234 never matches the digits 01234, so such a captcha is unsolvable
      and the client must fetch another) or "accepted" (compared as numbers) (q6).
    - `require_bootstrap`: whether the login needs the cookiesession1 of `GET /exir` (q7).
    - `browser_agent_only`: whether a User-Agent not starting with "Mozilla/" gets 403, as from a WAF.
    - `rejection_status`: the HTTP status of a refused order (q2: "non-2xx with a JSON code", inferred).
    - `order_answer`: "id" (the accepted order's 8-digit id in the body, as the live log shows) or "no_id" (q2).
    - `integer_price`: whether `"9930"` is taken beside the fired `"9930.0"` (q8).
    - `single_session`: whether a new login ends the account's earlier sessions (q5).
    - `wages_known`: False answers the wages call without the instrument (the client falls back to 0.005).
    - `limit_logins`: whether captcha and login calls share the Ephoenix simulator's 429 limiter (q10; none seen).
    - `broker_ids`: numeric broker ids by code (the rlcAuthHeader's `b`, the order's brokerCode).
    """

    signature_skew_s: int = 1
    signature_status: int = 401
    signature_error_code: int = BAD_SIGNATURE
    session_status: int = 401
    validity_min: int = 480
    send_order_delay_ms: float = 400.0
    captcha_ttl_s: float = 120.0
    leading_zero: Literal["refused", "accepted"] = "refused"
    require_bootstrap: bool = True
    browser_agent_only: bool = True
    rejection_status: int = 400
    order_answer: Literal["id", "no_id"] = "id"
    integer_price: bool = True
    single_session: bool = False
    wages_known: bool = True
    limit_logins: bool = False
    broker_ids: dict[str, int] = field(default_factory=lambda: dict(KNOWN_BROKER_IDS))


@dataclass
class ExirSession:
    sid: str
    broker: str
    username: str
    nt: str
    bootstrap: str | None
    expires_ns: int
    generation: int


class ExirState:
    """One simulator's Exir side: its settings, bootstrap cookies, spent captchas, sessions and spacing (fills are
    the market's: `sim.fill`, `sim.set_fill`)."""

    def __init__(self, state: SimState) -> None:
        self.settings = ExirSettings()
        seed = state.settings.seed
        self.rng = side_rng(state, "exir")
        self._secret = self.rng.randbytes(32) if seed is not None else secrets.token_bytes(32)
        self.bootstraps: set[str] = set()
        self.spent_captchas: dict[str, int] = {}  # captcha id -> its expiry (epoch s), so each is answered once
        self.sessions: dict[str, ExirSession] = {}
        self.last_order_ns: dict[tuple[str, str], int] = {}

    def broker_id(self, code: str) -> int:
        """The numeric broker id of a tenant: configured, or a stable made-up one (100-999) from the code."""
        return self.settings.broker_ids.get(code) or 100 + zlib.crc32(code.encode()) % 900

    # ---- signed tokens (HS256 JWTs) -----------------------------------------------------------------
    def jwt(self, payload: dict[str, Any]) -> str:
        return signed_jwt({"alg": "HS256", "typ": "JWT"}, payload, self._jwt_mac)

    def claims(self, token: str | None) -> dict[str, Any] | None:
        """The payload of a token this simulator signed; None for anything else."""
        return jwt_payload(token, self._jwt_mac)

    def _jwt_mac(self, signing_input: str) -> str:
        return b64url(hmac.new(self._secret, signing_input.encode("ascii"), hashlib.sha256).digest())


_SIDES: Sides[ExirState] = Sides(ExirState)


def exir_state(sim: Any) -> ExirState:
    """The Exir side of a simulator (a Simulator or its SimState), made on first use; its settings stay live."""
    return _SIDES.of(sim)


# ---- the signature -------------------------------------------------------------------------------------
def x_app_n(nt: str, target: str, t: int) -> str:
    """The X-App-N value for seed `nt`, request target `target` (path + query) and second of the UTC day `t`.

    The simulator's own implementation of exir-api.md "The X-App-N request signature" [confirmed live]:
    idx = |(t mod (L-5)) - n0|, W = int(D[idx:idx+5]), X-App-N = f"{W*t*S}.{t*S}", S the sum of code points.
    """
    if not nt.isdigit() or len(nt) < 3:
        raise ValueError("nt must be a string of decimal digits")
    n0, digits = int(nt[:2]), nt[2:]
    span = len(digits) - 5
    if span <= 0:
        raise ValueError("nt is too short to sign with (it needs more than 7 digits)")
    total = sum(map(ord, target))
    idx = abs(t % span - n0)
    window = digits[idx : idx + 5]
    if not window:
        raise ValueError("nt is too short for this second")
    b = t * total
    return f"{int(window) * b}.{b}"


def utc_second_of_day(now_ns: int) -> int:
    return (now_ns // 10**9) % 86_400


def signature_valid(nt: str, target: str, value: str | None, now_ns: int, skew_s: int) -> bool:
    """Whether `value` signs `target` for a UTC second within `skew_s` of `now_ns` (the day wraps at midnight)."""
    if not value:
        return False
    t = utc_second_of_day(now_ns)
    return any(x_app_n(nt, target, (t + d) % 86_400) == value for d in range(-skew_s, skew_s + 1))


def tenant_target(request: web.Request) -> str:
    """The request target as sent, relative to the tenant root: what a real tenant host would verify."""
    return request.raw_path[len(request.match_info["broker"]) + 1 :]


# ---- answers -------------------------------------------------------------------------------------------
def error(request: web.Request, code: int, status: int) -> web.Response:
    """Exir's error body: type, errorCode, a Persian description (with its trailing space), descriptionEn."""
    request[ERROR_CODE] = code
    persian, english = MESSAGES.get(code, ("خطا ", "error"))
    body = {"type": "error", "errorCode": code, "description": persian, "descriptionEn": english}
    return json_response(body, status=status)


def _cookie(name: str, value: str, broker: str, *, sub: str = "", max_age: int | None = None) -> str:
    """A Set-Cookie value scoped to the tenant (a real tenant's `/` is the simulator's `/{broker}`)."""
    parts = [f"{name}={value}", f"Path=/{broker}{sub}"]
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    return "; ".join([*parts, "HttpOnly"])


def _browser_check(request: web.Request) -> web.Response | None:
    if _exir(request).settings.browser_agent_only and not request.headers.get("User-Agent", "").startswith("Mozilla/"):
        return web.Response(status=403, text="<html><body>Request Rejected</body></html>", content_type="text/html")
    return None


def _exir(request: web.Request) -> ExirState:
    return exir_state(_state(request))


def _throttled(request: web.Request) -> web.Response | None:
    st = _state(request)
    if not _exir(request).settings.limit_logins:
        return None
    left = st.limiter.admit(request.match_info["broker"], st.clock.monotonic_ns())
    if left is None:
        return None
    return web.Response(status=429, text="Too Many Requests", headers=st.limiter.retry_after_header(left))


# ---- login ---------------------------------------------------------------------------------------------
async def bootstrap(request: web.Request) -> web.StreamResponse:
    """GET /exir: the SPA's shell, and the cookiesession1 every later call carries [confirmed live]."""
    if (refused := _browser_check(request)) is not None:
        return refused
    ex = _exir(request)
    value = f"{ex.rng.getrandbits(128):032X}"
    ex.bootstraps.add(value)
    response = web.Response(
        text="<!doctype html><html><body><app-root></app-root></body></html>", content_type="text/html"
    )
    response.headers.add("Set-Cookie", _cookie(BOOTSTRAP_COOKIE, value, request.match_info["broker"]))
    return response


async def captcha(request: web.Request) -> web.StreamResponse:
    """GET /captcha: a JPEG of five digits; its id (a JWT) as a `client_login_id` header and a 120 s cookie."""
    if (refused := _browser_check(request) or _throttled(request)) is not None:
        return refused
    st, ex = _state(request), _exir(request)
    broker = request.match_info["broker"]
    now_s = st.now_ns() // 10**9
    salt = st.captchas.new_salt(ex.rng.randbytes(16), st.now_ns())
    ttl = int(ex.settings.captcha_ttl_s)
    login_id = ex.jwt({"kind": "captcha", "salt": salt, "b": broker, "iat": now_s, "exp": now_s + ttl})
    body = b""
    if not request.get(NO_IMAGE):
        answer = st.captchas.answer(salt)
        body = render_captcha(answer, "jpeg", random.Random(salt))
        st.captchas.showed(body, answer)
    response = web.Response(body=body, content_type="image/jpeg", headers={CAPTCHA_COOKIE: login_id})
    response.headers.add("Set-Cookie", _cookie(CAPTCHA_COOKIE, login_id, broker, max_age=ttl))
    return response


def _captcha_matches(ex: ExirState, request: web.Request, number: Any, now_s: int) -> bool:
    """The login's captcha: the cookie's id is ours, this tenant's, unexpired and unspent, and `number` shows it."""
    token = request.cookies.get(CAPTCHA_COOKIE)
    claims = ex.claims(token)
    for spent, expires in list(ex.spent_captchas.items()):
        if expires < now_s:
            del ex.spent_captchas[spent]
    if claims is None or claims.get("kind") != "captcha" or claims.get("b") != request.match_info["broker"]:
        return False
    if int(claims.get("exp", 0)) < now_s or token in ex.spent_captchas:
        return False
    ex.spent_captchas[str(token)] = int(claims["exp"])  # one login attempt per captcha
    if isinstance(number, bool) or not isinstance(number, int):  # a JSON number [confirmed live]
        return False
    digits = _state(request).captchas.answer(str(claims.get("salt")))
    if ex.settings.leading_zero == "accepted":
        return number == int(digits)
    return str(number) == digits


async def login(request: web.Request) -> web.StreamResponse:
    """POST /api/v2/login: the captcha is checked before the password [confirmed live], each with its code."""
    if (refused := _browser_check(request) or _throttled(request)) is not None:
        return refused
    st, ex = _state(request), _exir(request)
    broker = request.match_info["broker"]
    body = await read_json(request)
    if not isinstance(body, dict):
        return web.Response(status=400, text="Bad Request")  # non-JSON: the "ambiguous" class of the doc
    username, password = body.get("username"), body.get("password")
    if isinstance(username, str):
        request[USERNAME] = username
    bootstrap_value = request.cookies.get(BOOTSTRAP_COOKIE)
    if ex.settings.require_bootstrap and bootstrap_value not in ex.bootstraps:
        return web.Response(status=400, text="Bad Request")
    now_ns = st.now_ns()
    if not _captcha_matches(ex, request, body.get("captcha"), now_ns // 10**9):
        return error(request, WRONG_CAPTCHA, 401)
    account = st.market.account(broker, username) if isinstance(username, str) else None
    if account is None or not isinstance(password, str) or password != account.password:
        return error(request, WRONG_CREDENTIALS, 403)
    return _new_session(request, ex, account, bootstrap_value, now_ns)


def _new_session(
    request: web.Request, ex: ExirState, account: Account, bootstrap_value: str | None, now_ns: int
) -> web.Response:
    broker, username = account.broker, account.username
    if ex.settings.single_session:
        for sid in [s.sid for s in ex.sessions.values() if (s.broker, s.username) == (broker, username)]:
            del ex.sessions[sid]
    validity = int(ex.settings.validity_min)
    now_s = now_ns // 10**9
    sid = f"{ex.rng.getrandbits(96):024x}"
    nt = f"{ex.rng.randrange(100):02d}" + "".join(str(ex.rng.randrange(10)) for _ in range(NT_DIGITS - 2))
    ex.sessions[sid] = ExirSession(
        sid, broker, username, nt, bootstrap_value, now_ns + validity * 60 * 10**9, account.token_generation
    )
    number = ex.broker_id(broker)
    auth_token = ex.jwt({"sub": username, "sid": sid, "iat": now_s, "exp": now_s + validity * 60})
    rlc_token = ex.jwt({"b": number, "u": f"{number}{username}", "iat": now_s, "jti": f"{ex.rng.getrandbits(64):x}"})
    request[ERROR_CODE] = 0
    body = {
        "nt": nt,
        "authToken": auth_token,
        "rlcAuthHeader": rlc_token,
        "pushServerUrls": list(PUSH_SERVERS),
        "validity": validity,
        "sendOrderDelay": int(ex.settings.send_order_delay_ms),
        "username": f"{number}{username}",
        "firstName": "کاربر",
        "lastName": f"آزمایشی {username[-3:]}",
        "accountNumberList": [
            {"bourseAccountName": bourse_account(username), "accountNumber": account_number(ex, broker, username)}
        ],
        "bankAccounts": [{"id": -1, "title": "حساب پیش‌فرض"}],
        "brokerName": f"کارگزاری {broker};{broker} saham",
    }
    response = json_response(body)
    for cookie in (
        _cookie(SESSION_COOKIE, auth_token, broker),
        _cookie(BALANCER_COOKIE, f"{ex.rng.getrandbits(32)}.20480.0000", broker),
        _cookie(BALANCER_COOKIE, f"{ex.rng.getrandbits(32)}.20736.0000", broker, sub="/api"),
    ):
        response.headers.add("Set-Cookie", cookie)
    return response


def bourse_account(username: str) -> str:
    """A bourse code shaped like the real ones: three Persian letters and five digits, stable per account."""
    return f"آزم{zlib.crc32(username.encode()) % 100_000:05d}"


def account_number(ex: ExirState, broker: str, username: str) -> str:
    """The account number ends with the login username [confirmed live]."""
    return f"{ex.broker_id(broker)}{username}"


# ---- the session and the signature on every later call -------------------------------------------------
def authenticated(request: web.Request) -> Account | web.Response:
    """The account of this request's live session with a verified X-App-N, or the error answer to send."""
    st, ex = _state(request), _exir(request)
    if (refused := _browser_check(request)) is not None:
        return refused
    claims = ex.claims(request.cookies.get(SESSION_COOKIE))
    session = ex.sessions.get(str(claims.get("sid"))) if claims is not None else None
    now_ns = st.now_ns()
    account = st.market.account(session.broker, session.username) if session is not None else None
    if (
        session is None
        or account is None
        or session.broker != request.match_info["broker"]
        or session.expires_ns <= now_ns
        or session.generation != account.token_generation
        or (ex.settings.require_bootstrap and request.cookies.get(BOOTSTRAP_COOKIE) != session.bootstrap)
    ):
        return error(request, NO_SESSION, ex.settings.session_status)
    request[USERNAME] = account.username
    signature = request.headers.get(SIGNATURE_HEADER)
    if not signature_valid(session.nt, tenant_target(request), signature, now_ns, ex.settings.signature_skew_s):
        return error(request, ex.settings.signature_error_code, ex.settings.signature_status)
    return account


async def stock_info(request: web.Request) -> web.StreamResponse:
    account = authenticated(request)
    if isinstance(account, web.Response):
        return account
    return json_response({"purchaseUpperBound": str(account.buying_power)})  # a string, as the fixture has it


async def buying_power_v2(request: web.Request) -> web.StreamResponse:
    """Always the business refusal the live server gives [confirmed live]; never an auth failure."""
    account = authenticated(request)
    if isinstance(account, web.Response):
        return account
    return error(request, NOT_ACCEPTABLE, 406)


async def wages(request: web.Request) -> web.StreamResponse:
    account = authenticated(request)
    if isinstance(account, web.Response):
        return account
    st, isin = _state(request), request.match_info["isin"]
    if isin not in st.market.instruments or not _exir(request).settings.wages_known:
        return json_response({})
    rules = st.market.rules
    return json_response({isin: {"SIDE_BUY": float(rules.buy_fee), "SIDE_SALE": float(rules.sell_fee)}})


async def portfolio(request: web.Request) -> web.StreamResponse:
    account = authenticated(request)
    if isinstance(account, web.Response):
        return account
    if account.holdings_error is not None:
        request[ERROR_CODE] = INVALID_REQUEST
        body = {"type": "error", "errorCode": INVALID_REQUEST, "description": account.holdings_error}
        return json_response(body, status=500)
    rows = [
        {"insMaxLcode": isin, "asset": volume, "remainQty": volume}
        for isin, volume in account.holdings.items()
        if volume > 0
    ]
    return json_response({"result": rows})


# ---- orders --------------------------------------------------------------------------------------------
def parse_order(body: Any, broker_number: int, integer_price: bool) -> OrderRequest | None:
    """The order POST's body [from code only, fired live], every field as exir-api.md gives it; None otherwise."""
    if not isinstance(body, dict):
        return None
    for name, value in ORDER_FIELDS.items():
        if body.get(name) != value or type(body.get(name)) is not type(value):
            return None
    code, isin, side = body.get("brokerCode"), body.get("insMaxLcode"), body.get("side")
    price, quantity = body.get("price"), body.get("quantity")
    if isinstance(code, bool) or code != broker_number or not isinstance(isin, str) or side not in SIDES:
        return None
    if not isinstance(price, str) or not (_PRICE.match(price) or (integer_price and _INTEGER_PRICE.match(price))):
        return None
    if integer_price is False and "." not in price:
        return None
    if not isinstance(quantity, str) or not _QUANTITY.match(quantity):
        return None
    return OrderRequest(isin=isin, side=SIDES[side], price=int(price.split(".")[0]), volume=int(quantity))


def order_id(order: Order) -> int:
    """The 8-digit id an accepted order answers with and its report row's mmtpOrderId (unique per broker)."""
    return 30_000_000 + order.serial_number


def order_uuid(order: Order) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"exir/{order.broker}/{order.serial_number}"))


def _too_soon(ex: ExirState, account: Account, monotonic_ns: int) -> bool:
    """Per account, every attempt counts (refused or not), as on the Ephoenix simulator [LOG: only the first
    order in the window is taken]."""
    key = (account.broker, account.username)
    previous = ex.last_order_ns.get(key)
    ex.last_order_ns[key] = monotonic_ns
    return previous is not None and monotonic_ns - previous < ex.settings.send_order_delay_ms * 1_000_000


async def new_order(request: web.Request) -> web.StreamResponse:
    """POST /api/v1/order: closed market, then spacing (1005), then the body, then the market's rules."""
    account = authenticated(request)
    if isinstance(account, web.Response):
        return account
    st, ex = _state(request), _exir(request)
    body = await read_json(request)
    order = parse_order(body, ex.broker_id(account.broker), ex.settings.integer_price)
    now_ns = st.now_ns()
    too_soon = _too_soon(ex, account, st.clock.monotonic_ns())
    if not st.is_open(now_ns):
        code = MARKET_CLOSED
    elif too_soon:
        code = TOO_SOON
    elif order is None:
        code = INVALID_REQUEST
    else:
        refusal = st.market.check_order(account, order)
        code = 0 if refusal is None else REFUSAL_CODES[refusal]
    if code or order is None:
        return error(request, code, ex.settings.rejection_status)
    booked = st.market.accept(account, order, now_ns)
    request[ERROR_CODE] = 0
    if ex.settings.order_answer == "no_id":
        return json_response({"type": "success"})
    return json_response({"type": "success", "message": "orderSuccess", "id": order_id(booked)})


def jalali_date(value: str) -> date | None:
    """A `YYYY/MM/DD` Jalali date as the Gregorian day it is; a ValueError for anything else."""
    match = _JALALI.match(value)
    if not match:
        raise ValueError(value)
    return jdatetime.date(int(match[1]), int(match[2]), int(match[3])).togregorian()


def entry_date_time(created_ns: int) -> str:
    """`YYYY/MM/DD-HH:mm:ss`, Jalali, Tehran wall clock [confirmed live]."""
    return jdatetime.datetime.fromgregorian(datetime=created_at(created_ns)).strftime("%Y/%m/%d-%H:%M:%S")


def status_of(order: Order, traded: int, today: date) -> tuple[int, str]:
    """(orderStatusId, mmtpOrderStatusName): 4 from the day after, whatever happened."""
    if order.state == CANCELLED:
        name = STATUS_CANCELLED
    elif traded >= order.volume:
        name = STATUS_DONE
    elif traded:
        name = STATUS_PARTIAL
    else:
        name = STATUS_QUEUED
    if order.day < today or order.state == CANCELLED:
        return STATUS_SETTLED, name
    return (STATUS_FILLED if traded >= order.volume else STATUS_ACTIVE), name


def report_row(ex: ExirState, order: Order, today: date, fee_rate: Decimal, done: Execution) -> dict[str, Any]:
    """An orderbookReport row with what `order` executed: `averageTradedPrice` over its trades (a whole number when
    it is one), `totalValue` the gross traded, `pureValue` with the fee (each trade's, half up, as the market charges
    it), `remainingQuantity` 0 once the order is cancelled."""
    traded = done.quantity
    average = done.average_price
    status_id, status_name = status_of(order, traded, today)
    total = done.value
    fee = sum(fee_of(t.price, t.quantity, fee_rate) for t in done.trades)
    bourse = bourse_account(order.username)
    return {
        "mmtpOrderId": order_id(order),
        "uuid": order_uuid(order),
        "orderSideName": SIDE_NAMES[order.side],
        "quantity": order.volume,
        "remainingQuantity": 0 if order.state == CANCELLED else order.volume - traded,
        "tradedQuantity": traded,
        "price": order.price,
        "averageTradedPrice": 0 if average is None else int(average) if average == int(average) else float(average),
        "totalValue": total,
        "pureValue": total + fee if order.side == BUY else total - fee,
        "insMaxLCode": order.isin,
        "farsiName": order.symbol_title,
        "orderStatusId": status_id,
        "mmtpOrderStatusName": status_name,
        "entryDateTime": entry_date_time(order.created_ns),
        "accountNumber": account_number(ex, order.broker, order.username),
        "bourseAccount": bourse,
        "customerBourseAccount": bourse,
        "validityTypeName": VALIDITY_DAY_NAME,
    }


async def orderbook_report(request: web.Request) -> web.StreamResponse:
    """GET /api/v1/user/orderbookReport?size=&startDate=&mmtpTypeId=null&endDate=[&orderStatusId=]: the account's
    orders placed between two Jalali days (empty = unbounded), newest first, at most `size` rows, no pages."""
    account = authenticated(request)
    if isinstance(account, web.Response):
        return account
    st, ex, query = _state(request), _exir(request), request.query
    size, status = query.get("size", ""), query.get("orderStatusId")
    try:
        if not size.isdigit() or int(size) < 1 or "startDate" not in query or "endDate" not in query:
            raise ValueError(size)
        start = jalali_date(query["startDate"]) if query["startDate"] else None
        end = jalali_date(query["endDate"]) if query["endDate"] else None
        if query.get("mmtpTypeId", "null") != "null" or (status is not None and not status.isdigit()):
            raise ValueError(status)
    except ValueError:
        return error(request, INVALID_REQUEST, 400)
    today = created_at(st.now_ns()).date()
    rows = []
    orders = sorted(st.market.orders_of(account), key=lambda o: (o.created_ns, o.row_id), reverse=True)
    for order in orders:
        if (start is not None and order.day < start) or (end is not None and order.day > end):
            continue
        row = report_row(ex, order, today, st.market.rules.fee_rate(order.side), st.execution(order))
        if status is None or row["orderStatusId"] == int(status):
            rows.append(row)
    return json_response({"result": rows[: int(size)]})


# ---- the platform --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExirSim:
    """Exir's routes on the shared app (a tenant per broker code), RLC beside them, and the daemon's config keys."""

    name: str = NAME
    title: str = "Exir"
    routes: tuple[str, ...] = (
        "bootstrap",
        "captcha",
        "login",
        "stockinfo",
        "buyingpower",
        "wages",
        "holdings",
        "new_order",
        "orders",
        *rlc.ROUTES,
    )
    reserved: frozenset[str] = frozenset({rlc.PREFIX.strip("/")})

    def add_routes(self, app: web.Application) -> None:
        for method, path, handler, route in (
            ("GET", "/{broker}/exir", bootstrap, "bootstrap"),
            ("GET", "/{broker}/captcha", captcha, "captcha"),
            ("POST", "/{broker}/api/v2/login", login, "login"),
            ("GET", "/{broker}/api/v1/user/stockInfo", stock_info, "stockinfo"),
            ("GET", "/{broker}/api/v2/user/buyingPower", buying_power_v2, "buyingpower"),
            ("GET", "/{broker}/api/v2/wages/instrument/{isin}", wages, "wages"),
            ("GET", "/{broker}/api/v1/user/portfoReport", portfolio, "holdings"),
            ("POST", "/{broker}/api/v1/order", new_order, "new_order"),
            ("GET", "/{broker}/api/v1/user/orderbookReport", orderbook_report, "orders"),
        ):
            add_route(app, self.name, method, path, handler, route)
        rlc.add_routes(app, self.name)

    def broker_config(self, base_url: str, code: str) -> dict[str, str]:
        """`url`: the tenant root (a real one is `https://{code}.exirbroker.com`); `rlc_url`: RLC's base, to
        which the client appends `//{Handler}?...` as for `https://core.tadbirrlc.com`."""
        return {"platform": self.name, "url": f"{base_url}/{code}", "rlc_url": f"{base_url}{rlc.PREFIX}"}


PLATFORM = register_platform(ExirSim())
