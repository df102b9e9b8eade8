"""Tadbir Online+ (OnlinePlus) on the simulator: a tenant per broker code, its F5 front door, cookie session,
message codes and JSON over the shared market (onlineplus-api.md; RLC beside it prices the orders).

A real tenant is two hosts, the web `https://online.{d}` and the API `https://api.{d}`; here they are two
sibling prefixes of the tenant, so their cookies stay apart as the hosts' do:

    /{broker}/online/Account/Login                                 login_page  HTML with var ApiBaseURl = '...'
    /{broker}/api/Web/V1/Authenticate/GetCaptchaImage/Captcha      captcha     {"Data": {"Captcha", "CaptchaKey"}}
    /{broker}/api/Web/V2/Authenticate/Login                        login       HTTP 200 always, IsSuccessfull
    /{broker}/api/Web/V1/Accounting/Remain                         remain      Data.PurchasingPower
    /{broker}/api/Web/V1/RealtimePortfolio/Get/RealtimePortfolio   holdings    Data[].SymbolISIN, RemainQuantity
    /{broker}/api/Web/V1/Order/Post                                new_order   orderSide 65 / 86, orderValidity 74
    /{broker}/api/Web/V1/Order/GetOrderList/Customer/GetOrderList  orders      Data.TotalRecord, Data.Result[]
    /rlc//StockInformationHandler?{blob}&jsoncallback=             rlc_prices  (daemon.sim.rlc, shared with Exir)

The front door answers HTTP 401 before any of it: to a User-Agent that is not a full browser string, to an
`Authorization` header, to an API call without the tenant's Origin and Referer, and to a call missing the
cookies it needs. The credential is the cookie jar only. What the document leaves open is an
`OnlinePlusSettings` knob (`onlineplus_state(sim).settings`); codes the document does not name are the
simulator's own (`REFUSAL_CODES`).
"""

from __future__ import annotations

import base64
import random
import re
import zlib
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

import jdatetime
from aiohttp import web

from daemon.sim import rlc
from daemon.sim._captcha_image import render_captcha
from daemon.sim._http import ERROR_CODE, NO_IMAGE, USERNAME, add_route, json_response, read_json
from daemon.sim._http import state_of as _state
from daemon.sim._market import BUY, CANCELLED, SELL, Account, Order, OrderRequest, Refusal, created_at
from daemon.sim._platform import register_platform
from daemon.sim._side import Sides, side_rng
from daemon.sim._state import SimState

NAME = "onlineplus"
WEB, API = "online", "api"  # the two hosts of a tenant, as path segments under /{broker}/
CAPTCHA_DIGITS = 4  # [confirmed live]; Exir and Ephoenix show 5
AUTH_COOKIE = "AuthCookie_OnlineCookie"  # [confirmed live]
F5_COOKIE = "f5avraaaaaaaaaaaaaaaa_session_"  # set twice at login, on the API root and on /Web [confirmed live]
FRONT_COOKIE = "TS01c7e3a9f1"  # F5's cookie from the login page, scoped to the tenant's domain (both hosts)
BROWSER_UA = re.compile(r"^Mozilla/5\.0 \([^)]+\) .*\b(Chrome|Firefox|Safari|Edg|OPR)/[0-9][0-9.]*$")

# Codes: the first four are onlineplus-api.md's (compared case-insensitively; the login's is lower-case);
# the OMS_91xx ones are the simulator's own, for refusals the document has no code for (open question 2).
WRONG_CREDENTIALS = "oms_1000"  # [confirmed live]
WRONG_CAPTCHA = "InvalidCaptcha"  # [confirmed live]
RATE_LIMIT = "OMS_2080"  # [listed]: the captcha/login limiter, and an order inside the spacing
MARKET_CLOSED = "OMS_8018"  # [listed]: before the open
INVALID_REQUEST = "OMS_9100"  # simulator's own: a field missing, of the wrong type or value
INVALID_VOLUME = "OMS_9101"
PRICE_OUT_OF_RANGE = "OMS_9102"
UNKNOWN_INSTRUMENT = "OMS_9103"
INSUFFICIENT_BALANCE = "OMS_9104"
INSUFFICIENT_HOLDINGS = "OMS_9105"
BELOW_MIN_VALUE = "OMS_9106"
HOLDINGS_FAILED = "OMS_9107"

REFUSAL_CODES: dict[Refusal, str] = {
    Refusal.UNKNOWN_INSTRUMENT: UNKNOWN_INSTRUMENT,
    Refusal.VOLUME: INVALID_VOLUME,
    Refusal.PRICE: PRICE_OUT_OF_RANGE,
    Refusal.BALANCE: INSUFFICIENT_BALANCE,
    Refusal.HOLDINGS: INSUFFICIENT_HOLDINGS,
    Refusal.MIN_VALUE: BELOW_MIN_VALUE,
}

MESSAGES: dict[str, str] = {
    WRONG_CREDENTIALS: "نام کاربری /رمز عبور نامعتبر می باشد.",  # as the document quotes it
    WRONG_CAPTCHA: "کد امنیتی وارد شده صحیح نمی باشد.",
    RATE_LIMIT: "تعداد درخواست ها بیش از حد مجاز است.",
    MARKET_CLOSED: "بازار در وضعیت پذیرش سفارش نمی باشد.",
    INVALID_REQUEST: "درخواست نامعتبر است.",
    INVALID_VOLUME: "حجم سفارش خارج از محدوده مجاز است.",
    PRICE_OUT_OF_RANGE: "قیمت سفارش خارج از محدوده مجاز روزانه است.",
    UNKNOWN_INSTRUMENT: "نماد مورد نظر یافت نشد.",
    INSUFFICIENT_BALANCE: "قدرت خرید کافی نیست.",
    INSUFFICIENT_HOLDINGS: "دارایی کافی برای فروش وجود ندارد.",
    BELOW_MIN_VALUE: "ارزش سفارش کمتر از حداقل مجاز است.",
}
ORDER_ACCEPTED = "سفارش با موفقیت ثبت شد."

BUY_SIDE, SELL_SIDE, DAY_VALIDITY = 65, 86, 74  # ASCII A(chat), V(ente), J(our)
SIDES = {BUY_SIDE: BUY, SELL_SIDE: SELL}
# GetOrderList's Persian side names, with the Persian yeh (U+06CC) the document writes.
SIDE_NAMES = {BUY: "\u062e\u0631\u06cc\u062f", SELL: "\u0641\u0631\u0648\u0634"}  # خرید, فروش
STATE_QUEUED = "در صف"  # OrderState texts: not in the document (open question 4), the simulator's own
STATE_DONE = "اجرا شده"
STATE_PARTIAL = "بخشی اجرا شده"
STATE_CANCELLED = "لغو شده"
EXECUTED_STATE = "1"  # GetOrderList's OrderState for executed orders [confirmed live]

# The order body's fixed fields, each with its value and JSON type [from code only; fired live with these].
ORDER_FIELDS: dict[str, Any] = {
    "orderValidity": DAY_VALIDITY,
    "CautionAgreementSelected": False,
    "FinancialProviderId": 1,
    "IsSymbolCautionAgreement": False,
    "IsSymbolSepahAgreement": False,
    "SepahAgreementSelected": False,
    "maxShow": 0,
    "minimumQuantity": 0,
    "orderId": 0,
    "orderValiditydate": None,
    "shortSellIncentivePercent": 0,
    "shortSellIsEnabled": False,
}
HOLDINGS_QUERY = {
    "GetJustHasRemain": "true",
    "EndDate": "undefined",
    "BasedOnLastPositivePeriod": "true",
    "ActiveSymbolsStartDate": "",
    "ActiveSymbolsEndDate": "",
}
_INTEGER = re.compile(r"^[0-9]+$")
_GREGORIAN = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
MAX_PAGE_SIZE = 1000
ROTATED = web.RequestKey("onlineplus_rotated_cookies", list)


@dataclass
class OnlinePlusSettings:
    """Online+'s unknowns (onlineplus-api.md's open questions) as live knobs; the defaults are what the daemon
    assumes.

    - `session_ttl_s` / `session_sliding`: the cookie session's lifetime from the login (q1; the bot assumes 600 s),
      and whether each authenticated call restarts it (False: a fixed lifetime, so only a new login renews it).
    - `single_session`: whether a new login ends the account's earlier sessions (q1).
    - `captcha_ttl_s`: how long a CaptchaKey may be answered (not documented).
    - `check_user_agent`: the F5 rule, a full browser User-Agent or 401 [confirmed live].
    - `require_origin`: whether an API call without the tenant's Origin and Referer gets 401 (q5).
    - `require_login_page`: whether captcha and login need the F5 cookie of `GET /Account/Login` (not tested live).
    - `bearer`: "refused" (an `Authorization` header gets 401 even beside the cookies) or "ignored" (the cookies
      decide); a Bearer header alone is 401 either way [confirmed live].
    - `limit_logins`: whether captcha and login calls share the simulator's login limiter, answered OMS_2080 (q9).
    - `rejection_status`: the HTTP status of a refused order (q2: "probably 200", like the login's).
    - `page_api_base`: how the login page writes `var ApiBaseURl` ("single" or "double" quotes, or "missing"),
      `page_api_base_slash` whether with a trailing `/`, and `page_api_base_url` another base to advertise.
    - `purchasing_power`: False leaves `Data.PurchasingPower` out of Remain (the client then reads AccountBalance).
    - `all_orders_state`: the GetOrderList `OrderState` that lists every order of the range, not only executed
      ones (q4; None: no such value, any other than "1" lists nothing).
    - `f5_rotate_after_s`: F5 rotating its session cookie mid-session (q6; 0: never): the first authenticated call
      that long after the cookie was set answers with new values of both, and the old ones are refused from then on.
    """

    session_ttl_s: float = 600.0
    session_sliding: bool = False
    single_session: bool = False
    captcha_ttl_s: float = 120.0
    check_user_agent: bool = True
    require_origin: bool = True
    require_login_page: bool = True
    bearer: Literal["refused", "ignored"] = "refused"
    limit_logins: bool = True
    rejection_status: int = 200
    page_api_base: Literal["single", "double", "missing"] = "single"
    page_api_base_slash: bool = False
    page_api_base_url: str | None = None
    purchasing_power: bool = True
    all_orders_state: str | None = "0"
    f5_rotate_after_s: float = 0.0


@dataclass
class AccountFlags:
    """What the login's Data says about an account the bot cannot use (onlineplus-api.md "Login")."""

    active_sms: bool = False
    active_otp: bool = False
    must_change_password: bool = False

    @property
    def blocks(self) -> bool:
        return self.active_sms or self.active_otp or self.must_change_password


@dataclass
class Captcha:
    broker: str
    digits: str
    expires_ns: int


@dataclass
class OnlinePlusSession:
    sid: str
    broker: str
    username: str
    f5_values: frozenset[str]
    f5_set_ns: int
    expires_ns: int
    generation: int


class OnlinePlusState:
    """One simulator's Online+ side: settings, front-door cookies, captchas, sessions and account flags (fills are
    the market's: `sim.fill`, `sim.set_fill`)."""

    def __init__(self, state: SimState) -> None:
        self.settings = OnlinePlusSettings()
        self.rng = side_rng(state, "onlineplus")
        self.front_values: set[str] = set()
        self.captchas: dict[str, Captcha] = {}
        self.sessions: dict[str, OnlinePlusSession] = {}
        self.flags: dict[tuple[str, str], AccountFlags] = {}

    def set_flags(self, broker: str, username: str, **flags: bool) -> AccountFlags:
        """Mark an account as having SMS/OTP on or a password to change (`active_otp=True`, ...)."""
        found = self.flags[(broker, username)] = AccountFlags(**flags)
        return found

    def token(self, n: int) -> str:
        return f"{self.rng.getrandbits(n * 4):0{n}x}"


_SIDES: Sides[OnlinePlusState] = Sides(OnlinePlusState)


def onlineplus_state(sim: Any) -> OnlinePlusState:
    """The Online+ side of a simulator (a Simulator or its SimState), made on first use; its settings stay live."""
    return _SIDES.of(sim)


def _op(request: web.Request) -> OnlinePlusState:
    return onlineplus_state(_state(request))


# ---- answers -------------------------------------------------------------------------------------------
def envelope(request: web.Request, code: str, status: int = 200) -> web.Response:
    """Online+'s failure: HTTP 200 (unless said) with IsSuccessfull false, the code and its Persian text."""
    request[ERROR_CODE] = code
    body = {"IsSuccessfull": False, "MessageCode": code, "MessageDesc": MESSAGES.get(code, "خطا"), "Data": None}
    return json_response(body, status=status)


def refused_by_front_door() -> web.Response:
    """What the F5 in front answers when it does not let a request through [confirmed live: HTTP 401]."""
    return web.Response(
        status=401,
        text="<html><head><title>Request Rejected</title></head><body>401</body></html>",
        content_type="text/html",
    )


def tenant_cookie(name: str, value: str, broker: str, where: str = "", *, max_age: int | None = None) -> str:
    """A Set-Cookie scoped to a host of the tenant (`/{broker}/{where}`, a real host's `/`); no `where`: both."""
    path = f"/{broker}/{where}" if where else f"/{broker}"
    parts = [f"{name}={value}", f"Path={path.rstrip('/')}"]
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    return "; ".join([*parts, "HttpOnly"])


def sent_cookies(request: web.Request, name: str) -> list[str]:
    """Every value of cookie `name` the request carries: a jar sends two of one name on a nested path."""
    values = []
    for header in request.headers.getall("Cookie", []):
        for part in header.split(";"):
            key, eq, value = part.strip().partition("=")
            if eq and key == name:
                values.append(value.strip('"'))
    return values


def web_root(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}/{request.match_info['broker']}/{WEB}"


def api_base(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}/{request.match_info['broker']}/{API}"


def front_door(request: web.Request, *, api: bool = True) -> web.Response | None:
    """The F5's checks, before the application sees anything: None lets the request through."""
    op = _op(request).settings
    if op.check_user_agent and not BROWSER_UA.match(request.headers.get("User-Agent", "")):
        return refused_by_front_door()
    if not api:
        return None
    if "Authorization" in request.headers and (op.bearer == "refused" or not request.headers.get("Cookie")):
        return refused_by_front_door()
    if op.require_origin:
        root = web_root(request)
        origin = f"{request.scheme}://{request.host}"
        if request.headers.get("Origin") != origin or not request.headers.get("Referer", "").startswith(root + "/"):
            return refused_by_front_door()
    return None


def _front_cookie_ok(request: web.Request) -> bool:
    op = _op(request)
    return not op.settings.require_login_page or any(v in op.front_values for v in sent_cookies(request, FRONT_COOKIE))


def _throttled(request: web.Request) -> web.Response | None:
    st, op = _state(request), _op(request)
    if not op.settings.limit_logins:
        return None
    if st.limiter.admit(request.match_info["broker"], st.clock.monotonic_ns()) is None:
        return None
    return envelope(request, RATE_LIMIT)


# ---- the login page, the captcha, the login -----------------------------------------------------------
async def login_page(request: web.Request) -> web.StreamResponse:
    """GET /Account/Login on the web host: the SPA's page naming the API base, and F5's first cookie."""
    if (refused := front_door(request, api=False)) is not None:
        return refused
    op = _op(request)
    base = op.settings.page_api_base_url or api_base(request)
    if op.settings.page_api_base_slash:
        base += "/"
    quote = '"' if op.settings.page_api_base == "double" else "'"
    script = "" if op.settings.page_api_base == "missing" else f"        var ApiBaseURl = {quote}{base}{quote};\n"
    html = (
        '<!DOCTYPE html>\n<html lang="fa" dir="rtl">\n<head>\n    <meta charset="utf-8" />\n'
        "    <title>سامانه معاملات برخط</title>\n    <script>\n"
        f"{script}        var ClientVersion = '4.6.1';\n    </script>\n</head>\n"
        '<body>\n    <div id="app"></div>\n</body>\n</html>\n'
    )
    value = op.token(32)
    op.front_values.add(value)
    response = web.Response(text=html, content_type="text/html")
    response.headers.add("Set-Cookie", tenant_cookie(FRONT_COOKIE, value, request.match_info["broker"]))
    return response


async def captcha(request: web.Request) -> web.StreamResponse:
    """GET .../GetCaptchaImage/Captcha: a PNG of four digits, base64 in `Data.Captcha`, with its `CaptchaKey`."""
    if (refused := front_door(request)) is not None:
        return refused
    if not _front_cookie_ok(request):
        return refused_by_front_door()
    if (throttled := _throttled(request)) is not None:
        return throttled
    st, op = _state(request), _op(request)
    now_ns = st.now_ns()
    for key in [k for k, c in op.captchas.items() if c.expires_ns <= now_ns]:
        del op.captchas[key]
    digits = f"{op.rng.randrange(10**CAPTCHA_DIGITS):0{CAPTCHA_DIGITS}d}"
    key = op.token(32)
    op.captchas[key] = Captcha(request.match_info["broker"], digits, now_ns + int(op.settings.captcha_ttl_s * 1e9))
    image = b""
    if not request.get(NO_IMAGE):
        image = render_captcha(digits, "png", random.Random(key))
        st.captchas.showed(image, digits)
    return json_response({"Data": {"Captcha": base64.b64encode(image).decode("ascii"), "CaptchaKey": key}})


def _captcha_matches(request: web.Request, key: Any, answer: Any) -> bool:
    """The key is this tenant's, unexpired and unspent (each answers one login), and `answer` is its digits as a
    string [confirmed live: `Captcha` is a string]."""
    op = _op(request)
    found = op.captchas.pop(key, None) if isinstance(key, str) else None
    if found is None or found.broker != request.match_info["broker"] or found.expires_ns <= _state(request).now_ns():
        return False
    return isinstance(answer, str) and answer == found.digits


async def login(request: web.Request) -> web.StreamResponse:
    """POST /Web/V2/Authenticate/Login: HTTP 200 in every case; the captcha is checked before the password."""
    if (refused := front_door(request)) is not None:
        return refused
    if not _front_cookie_ok(request):
        return refused_by_front_door()
    if (throttled := _throttled(request)) is not None:
        return throttled
    st, op = _state(request), _op(request)
    body = await read_json(request)
    if not isinstance(body, dict):
        return envelope(request, INVALID_REQUEST)
    username, password = body.get("UserName"), body.get("Password")
    if isinstance(username, str):
        request[USERNAME] = username
    if not _captcha_matches(request, body.get("CaptchaKey"), body.get("Captcha")):
        return envelope(request, WRONG_CAPTCHA)
    account = st.market.account(request.match_info["broker"], username) if isinstance(username, str) else None
    if account is None or not isinstance(password, str) or password != account.password:
        return envelope(request, WRONG_CREDENTIALS)
    flags = op.flags.get((account.broker, account.username), AccountFlags())
    answer = json_response(
        {
            "IsSuccessfull": True,
            "MessageCode": None,
            "MessageDesc": None,
            "Data": {
                "Token": op.token(64),
                "LsToken": op.token(32),
                "CustomerName": f"کاربر آزمایشی {account.username[-3:]}",
                "BourseCode": bourse_code(account.username),
                "ActiveSms": flags.active_sms,
                "ActiveOtp": flags.active_otp,
                "MustChangePassword": flags.must_change_password,
            },
        }
    )
    if not flags.blocks:  # a second factor or a password to change: no usable session
        for cookie in _new_session(op, account, st.now_ns()):
            answer.headers.add("Set-Cookie", cookie)
    return answer


def _new_session(op: OnlinePlusState, account: Account, now_ns: int) -> list[str]:
    """The session's Set-Cookie values: the auth cookie, and F5's session cookie twice (API root and /Web)."""
    broker, username = account.broker, account.username
    if op.settings.single_session:
        for sid in [s.sid for s in op.sessions.values() if (s.broker, s.username) == (broker, username)]:
            del op.sessions[sid]
    sid, root_f5, web_f5 = op.token(48), op.token(24), op.token(24)
    expires = now_ns + int(op.settings.session_ttl_s * 1e9)
    op.sessions[sid] = OnlinePlusSession(
        sid, broker, username, frozenset({root_f5, web_f5}), now_ns, expires, account.token_generation
    )
    return [tenant_cookie(AUTH_COOKIE, sid, broker, API), *_f5_cookies(broker, root_f5, web_f5)]


def _f5_cookies(broker: str, root_value: str, web_value: str) -> list[str]:
    return [
        tenant_cookie(F5_COOKIE, root_value, broker, API),
        tenant_cookie(F5_COOKIE, web_value, broker, f"{API}/Web"),
    ]


def _rotate_f5(request: web.Request, op: OnlinePlusState, session: OnlinePlusSession, now_ns: int) -> None:
    """New values for the session's F5 cookies, sent with this answer (`add_rotated_cookies`); the old ones die."""
    root_value, web_value = op.token(24), op.token(24)
    session.f5_values, session.f5_set_ns = frozenset({root_value, web_value}), now_ns
    request[ROTATED] = _f5_cookies(session.broker, root_value, web_value)


async def add_rotated_cookies(request: web.BaseRequest, response: web.StreamResponse) -> None:
    for cookie in request.get(ROTATED, []) if isinstance(request, web.Request) else []:
        response.headers.add("Set-Cookie", cookie)


def bourse_code(username: str) -> str:
    """A bourse code shaped like the real ones: three Persian letters and five digits, stable per account."""
    return f"حفظ{zlib.crc32(username.encode()) % 100_000:05d}"


def authenticated(request: web.Request) -> Account | web.Response:
    """The account of this request's live cookie session (the auth cookie and one of its F5 values), or a 401."""
    if (refused := front_door(request)) is not None:
        return refused
    st, op = _state(request), _op(request)
    now_ns = st.now_ns()
    session = next((op.sessions[s] for s in sent_cookies(request, AUTH_COOKIE) if s in op.sessions), None)
    account = st.market.account(session.broker, session.username) if session is not None else None
    if (
        session is None
        or account is None
        or session.broker != request.match_info["broker"]
        or session.expires_ns <= now_ns
        or session.generation != account.token_generation
        or not session.f5_values.intersection(sent_cookies(request, F5_COOKIE))
    ):
        return web.Response(status=401)  # the cookie session is dead or missing: a bare 401
    rotate_ns = int(op.settings.f5_rotate_after_s * 1e9)
    if rotate_ns > 0 and now_ns - session.f5_set_ns >= rotate_ns:
        _rotate_f5(request, op, session, now_ns)
    if op.settings.session_sliding:
        session.expires_ns = now_ns + int(op.settings.session_ttl_s * 1e9)
    request[USERNAME] = account.username
    return account


# ---- reads ---------------------------------------------------------------------------------------------
async def remain(request: web.Request) -> web.StreamResponse:
    """GET /Web/V1/Accounting/Remain: the spendable cash as `PurchasingPower` (a number)."""
    account = authenticated(request)
    if isinstance(account, web.Response):
        return account
    data: dict[str, int] = {"AccountBalance": account.remain}
    if _op(request).settings.purchasing_power:
        data = {"PurchasingPower": account.buying_power, **data}
    return json_response({"Data": data})


async def holdings(request: web.Request) -> web.StreamResponse:
    """GET .../RealtimePortfolio with the SPA's query (`EndDate=undefined` literally): rows with `SymbolISIN`."""
    account = authenticated(request)
    if isinstance(account, web.Response):
        return account
    query = request.query
    if any(query.get(name) != value for name, value in HOLDINGS_QUERY.items()):
        return envelope(request, INVALID_REQUEST)
    if account.holdings_error is not None:
        request[ERROR_CODE] = HOLDINGS_FAILED
        body = {"IsSuccessfull": False, "MessageCode": HOLDINGS_FAILED, "MessageDesc": account.holdings_error}
        return json_response({**body, "Data": None})
    instruments = _state(request).market.instruments
    rows = [
        {
            "SymbolISIN": isin,
            "Symbol": instruments[isin].symbol if isin in instruments else "",
            "RemainQuantity": volume,
        }
        for isin, volume in account.holdings.items()
        if volume > 0
    ]
    return json_response({"Data": rows})


# ---- orders --------------------------------------------------------------------------------------------
def parse_order(body: Any) -> OrderRequest | None:
    """The order POST's body, every field as onlineplus-api.md gives it (numbers as integer strings); None else."""
    if not isinstance(body, dict):
        return None
    for name, value in ORDER_FIELDS.items():
        if name not in body or body[name] != value or type(body[name]) is not type(value):
            return None
    isin, count, price, side = body.get("isin"), body.get("orderCount"), body.get("orderPrice"), body.get("orderSide")
    if not isinstance(isin, str) or type(side) is not int or side not in SIDES:
        return None
    if not all(isinstance(v, str) and _INTEGER.match(v) for v in (count, price)):
        return None
    return OrderRequest(isin=isin, side=SIDES[side], price=int(price), volume=int(count), validity=DAY_VALIDITY)


async def new_order(request: web.Request) -> web.StreamResponse:
    """POST /Web/V1/Order/Post: closed market (OMS_8018), then spacing (OMS_2080), then the body, then the
    market's rules; success is `IsSuccessfull`, with no usable order id [confirmed live]."""
    account = authenticated(request)
    if isinstance(account, web.Response):
        return account
    st, op = _state(request), _op(request)
    order = parse_order(await read_json(request))
    now_ns = st.now_ns()
    too_soon = st.market.spacing_violated(account, order.isin if order else None, st.clock.monotonic_ns())
    if not st.is_open(now_ns):
        code = MARKET_CLOSED
    elif too_soon:
        code = RATE_LIMIT
    elif order is None:
        code = INVALID_REQUEST
    else:
        refusal = st.market.check_order(account, order)
        code = "" if refusal is None else REFUSAL_CODES[refusal]
    if code or order is None:
        return envelope(request, code, op.settings.rejection_status)
    st.market.accept(account, order, now_ns)
    return json_response(
        {"IsSuccessfull": True, "MessageCode": None, "MessageDesc": ORDER_ACCEPTED, "Data": {"OrderId": 0}}
    )


def _gregorian(value: Any) -> date:
    if not isinstance(value, str) or not _GREGORIAN.match(value):
        raise ValueError(value)
    return date.fromisoformat(value)


def state_text(order: Order, executed: int) -> str:
    if order.state == CANCELLED:
        return STATE_CANCELLED
    if executed >= order.volume:
        return STATE_DONE
    return STATE_PARTIAL if executed else STATE_QUEUED


def order_rows(st: SimState, orders: list[Order]) -> list[dict[str, Any]]:
    """The account's orders as GetOrderList rows, newest first; `OrderId` is the account's sequence of the day."""
    sequence: dict[int, int] = {}
    per_day: dict[date, int] = {}
    for order in sorted(orders, key=lambda o: (o.created_ns, o.row_id)):
        per_day[order.day] = sequence[order.row_id] = per_day.get(order.day, 0) + 1
    rows = []
    for order in sorted(orders, key=lambda o: (o.created_ns, o.row_id), reverse=True):
        executed = st.execution(order).quantity
        placed = jdatetime.datetime.fromgregorian(datetime=created_at(order.created_ns))
        rows.append(
            {
                "OrderId": sequence[order.row_id],
                "OrderDate": placed.strftime("%Y/%m/%d"),
                "OrderTime": placed.strftime("%H:%M:%S"),
                "OrderSide": SIDE_NAMES[order.side],
                "Symbol": order.symbol,
                "SymbolIsin": order.isin,
                "Quantity": order.volume,
                "OrderPrice": order.price,
                "ExcutedAmount": executed,
                "OrderState": state_text(order, executed),
            }
        )
    return rows


async def order_list(request: web.Request) -> web.StreamResponse:
    """POST .../GetOrderList with Gregorian `FromDate`/`ToDate`, `OrderState` (a string) and a 0-based page."""
    account = authenticated(request)
    if isinstance(account, web.Response):
        return account
    st, op = _state(request), _op(request)
    body = await read_json(request)
    try:
        if not isinstance(body, dict):
            raise ValueError(body)
        start, end = _gregorian(body.get("FromDate")), _gregorian(body.get("ToDate"))
        state, index, size = body.get("OrderState"), body.get("PageIndex"), body.get("PageSize")
        if not isinstance(state, str) or type(index) is not int or type(size) is not int:
            raise ValueError(body)
        if index < 0 or not 1 <= size <= MAX_PAGE_SIZE:
            raise ValueError(body)
    except ValueError:
        return envelope(request, INVALID_REQUEST)
    orders = [o for o in st.market.orders_of(account) if start <= o.day <= end]
    rows = order_rows(st, orders)
    if state == EXECUTED_STATE:
        rows = [r for r in rows if r["ExcutedAmount"] > 0]
    elif state != op.settings.all_orders_state:
        rows = []
    return json_response({"Data": {"TotalRecord": len(rows), "Result": rows[index * size : (index + 1) * size]}})


# ---- the platform --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OnlinePlusSim:
    """Online+'s routes on the shared app (a tenant per broker code), RLC beside them, and the daemon's config."""

    name: str = NAME
    title: str = "Online+"
    routes: tuple[str, ...] = (
        "login_page",
        "captcha",
        "login",
        "remain",
        "holdings",
        "new_order",
        "orders",
        *rlc.ROUTES,
    )
    reserved: frozenset[str] = frozenset({rlc.PREFIX.strip("/")})

    def add_routes(self, app: web.Application) -> None:
        api = f"/{{broker}}/{API}/Web"
        for method, path, handler, route in (
            ("GET", f"/{{broker}}/{WEB}/Account/Login", login_page, "login_page"),
            ("GET", f"{api}/V1/Authenticate/GetCaptchaImage/Captcha", captcha, "captcha"),
            ("POST", f"{api}/V2/Authenticate/Login", login, "login"),
            ("GET", f"{api}/V1/Accounting/Remain", remain, "remain"),
            ("GET", f"{api}/V1/RealtimePortfolio/Get/RealtimePortfolio", holdings, "holdings"),
            ("POST", f"{api}/V1/Order/Post", new_order, "new_order"),
            ("POST", f"{api}/V1/Order/GetOrderList/Customer/GetOrderList", order_list, "orders"),
        ):
            add_route(app, self.name, method, path, handler, route)
        app.on_response_prepare.append(add_rotated_cookies)
        rlc.add_routes(app, self.name)

    def broker_config(self, base_url: str, code: str) -> dict[str, str]:
        """`url`: the tenant's web root (a real one is `https://online.{domain}`), whose `/Account/Login` names the
        API base; `rlc_url`: RLC's base, to which the client appends `//{Handler}?...`."""
        return {"platform": self.name, "url": f"{base_url}/{code}/{WEB}", "rlc_url": f"{base_url}{rlc.PREFIX}"}


PLATFORM = register_platform(OnlinePlusSim())
